"""Experiment wiring: one daemon per Experiment; its published key is removed when it is deleted."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
from pydantic import ValidationError

from controller.errors import StoplineError
from controller.experiments.reconcile import configmap_key
from controller.experiments.runner import CONFIGMAP_LABELS, run_experiment
from controller.handlers.startup import runtime
from controller.models.common import API_GROUP, API_VERSION
from controller.models.experiment import ExperimentSpec


def _waker(memo: Any, namespace: str, name: str) -> asyncio.Event:
    events: dict[tuple[str, str], asyncio.Event] = memo.runtime.wakers
    return events.setdefault((namespace, f"experiment/{name}"), asyncio.Event())


@kopf.daemon(API_GROUP, API_VERSION, "experiments", cancellation_backoff=2, cancellation_timeout=10, id="report")
async def report(
    body: kopf.Body,
    namespace: str | None,
    name: str,
    stopped: kopf.DaemonStopped,
    memo: Any,
    **_: Any,
) -> None:
    """Publish the live config and refresh the report every ``interval``."""
    assert namespace is not None, "Experiment is a namespaced resource"
    rt = runtime(memo)
    event = _waker(memo, namespace, name)

    async def patch_status(patch: dict[str, Any]) -> None:
        await rt.objects.patch_status("experiments", namespace, name, patch)

    def emit(type_: str, reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message[:1000])

    async def wait(seconds: float) -> None:
        from controller.track.runner import wait_or_wake

        await wait_or_wake(event, seconds, stopped.wait)

    await run_experiment(
        namespace,
        lambda: body,
        patch_status,
        rt.prometheus,
        rt.objects,
        configmap=rt.settings.experiments_configmap,
        prometheus_url=rt.settings.prometheus_url,
        clock=rt.clock,
        wait=wait,
        emit=emit,
        stopped=stopped.is_set,
    )


@kopf.on.field(API_GROUP, API_VERSION, "experiments", field="spec")
def spec_changed(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """closeOn, rollout and weights take effect at once, not at the next interval."""
    if namespace is not None:
        _waker(memo, namespace, name).set()


#: Attempts at removing the key before the Experiment is let go (delays 1, 2, 4, 8, 16 s in between).
UNPUBLISH_ATTEMPTS = 6


@kopf.on.delete(API_GROUP, API_VERSION, "experiments")
async def unpublish(
    spec: kopf.Spec, namespace: str | None, retry: int, logger: kopf.Logger, memo: Any, **_: Any
) -> None:
    """Remove this experiment's key from the shared ConfigMap (a key stopline wrote).

    Retried a few times, then given up with a warning: when the whole namespace is being deleted the
    ConfigMap may already be gone and cannot be written again, and retrying forever would keep the
    finalizer, and so the namespace, forever.
    """
    if namespace is None:
        return
    rt = runtime(memo)
    try:
        parsed = ExperimentSpec.model_validate(dict(spec))
    except ValidationError:
        return
    key = configmap_key(parsed)
    try:
        await rt.objects.merge_configmap(namespace, rt.settings.experiments_configmap, {key: None}, CONFIGMAP_LABELS)
    except StoplineError as exc:
        if retry + 1 < UNPUBLISH_ATTEMPTS:
            raise kopf.TemporaryError(f"removing {key} from the published ConfigMap: {exc}", delay=2**retry) from exc
        logger.warning(
            "giving up removing %s from ConfigMap %s/%s after %d attempts (%s); remove it by hand if the "
            "namespace is not being deleted",
            key,
            namespace,
            rt.settings.experiments_configmap,
            UNPUBLISH_ATTEMPTS,
            exc,
        )
