"""Track wiring: one daemon per Track; its Releases and push webhooks wake it early."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
from pydantic import ValidationError

from controller.handlers.startup import runtime
from controller.models.common import API_GROUP, API_VERSION
from controller.models.track import TrackSpec
from controller.track.plan import ANNOTATION_LOCK, ANNOTATION_UNLOCK, LABEL_TRACK
from controller.track.runner import TrackRef, run_track, wait_or_wake


def wake_event(memo: Any, namespace: str, name: str) -> asyncio.Event:
    """The event that wakes the daemon of Track ``namespace/name``."""
    events: dict[tuple[str, str], asyncio.Event] = memo.runtime.wakers
    return events.setdefault((namespace, name), asyncio.Event())


@kopf.daemon(API_GROUP, API_VERSION, "tracks", cancellation_timeout=10, id="follow")
async def follow(
    body: kopf.Body,
    namespace: str | None,
    name: str,
    uid: str,
    stopped: kopf.DaemonStopped,
    memo: Any,
    **_: Any,
) -> None:
    """Follow the Track's branch: create Releases, hold the push and commit locks."""
    assert namespace is not None, "Track is a namespaced resource"
    rt = runtime(memo)
    ref = TrackRef(namespace=namespace, name=name, uid=uid)
    event = wake_event(memo, namespace, name)

    async def patch_status(patch: dict[str, Any]) -> None:
        await rt.objects.patch_status("tracks", namespace, name, patch)

    def emit(type_: str, reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message[:1000])

    async def wait(seconds: float) -> None:
        try:
            rt.tracks[(namespace, name)] = TrackSpec.model_validate(body.get("spec") or {})
        except ValidationError:
            rt.tracks.pop((namespace, name), None)
        await wait_or_wake(event, seconds, stopped.wait)

    try:
        await run_track(
            ref,
            lambda: body,
            patch_status,
            rt.git,
            rt.objects,
            clock=rt.clock,
            wait=wait,
            emit=emit,
            stopped=stopped.is_set,
        )
    finally:
        rt.tracks.pop((namespace, name), None)


@kopf.on.event(API_GROUP, API_VERSION, "releases", labels={LABEL_TRACK: kopf.PRESENT})
def release_changed(namespace: str | None, labels: kopf.Labels, memo: Any, **_: Any) -> None:
    """A Track's Release changed: let the Track look now rather than at its next poll."""
    if namespace is not None:
        wake_event(memo, namespace, labels[LABEL_TRACK]).set()


@kopf.on.event(API_GROUP, API_VERSION, "tracks")
def track_event(namespace: str | None, name: str, annotations: kopf.Annotations, memo: Any, **_: Any) -> None:
    """lock/unlock annotations take effect at once (status writes of our own do not wake the loop)."""
    if namespace is None:
        return
    seen: dict[tuple[str, str], tuple[str, str]] = memo.runtime.track_annotations
    now = (annotations.get(ANNOTATION_LOCK, ""), annotations.get(ANNOTATION_UNLOCK, ""))
    if seen.get((namespace, name)) != now:
        seen[(namespace, name)] = now
        wake_event(memo, namespace, name).set()
