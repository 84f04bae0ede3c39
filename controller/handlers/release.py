"""Release wiring: one async daemon per live Release runs the release loop."""

from __future__ import annotations

from typing import Any

import kopf

from controller.handlers.startup import runtime
from controller.metrics import default_metrics
from controller.models.common import API_GROUP, API_VERSION
from controller.release.executor import ReleaseRef
from controller.release.plan import FINAL
from controller.release.runner import run_release


def _live(status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") not in FINAL


@kopf.daemon(API_GROUP, API_VERSION, "releases", when=_live, cancellation_backoff=2, cancellation_timeout=10, id="push")
async def push(
    body: kopf.Body,
    namespace: str | None,
    name: str,
    uid: str,
    stopped: kopf.DaemonStopped,
    memo: Any,
    **_: Any,
) -> None:
    """Drive the Release from its status to a final state, one action at a time."""
    assert namespace is not None, "Release is a namespaced resource"
    rt = runtime(memo)
    ref = ReleaseRef(namespace=namespace, name=name, uid=uid)

    async def patch_status(patch: dict[str, Any]) -> None:
        await rt.objects.patch_status("releases", namespace, name, patch)

    def emit(type_: str, reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message[:1000])

    async def sleep(seconds: float) -> None:
        await stopped.wait(seconds)

    metrics = default_metrics()
    with metrics.running(ref):
        await run_release(
            ref,
            lambda: body,
            patch_status,
            rt.executor,
            hooks=metrics.hooks(emit),
            stopped=stopped.is_set,
            tick=rt.settings.release_tick_seconds,
            sleep=sleep,
        )
