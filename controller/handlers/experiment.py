"""Experiment wiring: one loop per Experiment (under the Experiments' supervisor); its published key is
removed when it is deleted (kopf's finalizer for the delete handler, given up after a few attempts)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import kopf
from pydantic import ValidationError

from controller.errors import StoplineError
from controller.experiments.growthbook import growthbook_key
from controller.experiments.reconcile import configmap_key
from controller.experiments.runner import CONFIGMAP_LABELS, run_experiment
from controller.handlers.startup import fetcher, namespace_guard, runtime, serves
from controller.metrics import default_metrics
from controller.models.common import API_GROUP, API_VERSION
from controller.models.experiment import ExperimentSpec
from controller.reconcile.supervisor import Run, Supervisor
from controller.wiring import Runtime


def supervisor(rt: Runtime) -> Supervisor:
    """The Experiments' supervisor (made at startup): one loop per Experiment."""

    async def start(run: Run) -> None:
        namespace, name = run.namespace, run.name

        async def patch_status(patch: dict[str, Any]) -> None:
            run.wrote(await rt.objects.patch_status("experiments", namespace, name, patch, uid=run.uid))

        def emit(type_: str, reason: str, message: str) -> None:
            kopf.event(cast(kopf.Body, run.body), type=type_, reason=reason, message=message[:1000])

        await run_experiment(
            namespace,
            run.read_body,
            patch_status,
            rt.prometheus,
            rt.objects,
            configmap=rt.settings.experiments_configmap,
            prometheus_url=rt.settings.prometheus_url,
            clock=rt.clock,
            wait=run.wait,
            emit=emit,
            stopped=lambda: not run.alive(),
            on_persist_error=default_metrics().status_write_error,
            on_persist=default_metrics().status_written,
            may_act=namespace_guard(rt, run),
        )

    return Supervisor(
        "Experiment",
        start,
        wake_on=lambda old, new: old.get("spec") != new.get("spec"),
        serves=lambda ns: serves(rt, ns),
        fetch=fetcher(rt, "experiments"),
    )


@kopf.on.event(API_GROUP, API_VERSION, "experiments")
async def experiment_event(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    """Every Experiment event reaches the supervisor: spec edits (closeOn, rollout, weights) act at once."""
    runtime(memo).supervisors["experiments"].on_event(type, body)


#: Attempts at removing the key before the Experiment is let go (delays 1, 2, 4, 8, 16 s in between).
UNPUBLISH_ATTEMPTS = 6


@kopf.on.delete(API_GROUP, API_VERSION, "experiments")
async def unpublish(
    spec: kopf.Spec, namespace: str | None, name: str, retry: int, logger: kopf.Logger, memo: Any, **_: Any
) -> None:
    """Remove this experiment's key from the shared ConfigMap (a key stopline wrote).

    Retried a few times, then given up with a warning: when the whole namespace is being deleted the
    ConfigMap may already be gone and cannot be written again, and retrying forever would keep the
    finalizer, and so the namespace, forever.
    """
    if namespace is None:
        return
    rt = runtime(memo)
    run = rt.supervisors["experiments"].running(namespace, name)
    if run is not None:  # its loop publishes nothing more; let a publication in flight finish first
        run.stop(deleted=True)
        if run.task is not None:
            await asyncio.wait({run.task}, timeout=5.0)
    try:
        parsed = ExperimentSpec.model_validate(dict(spec))
    except ValidationError:
        return
    key = configmap_key(parsed)
    try:
        await rt.objects.merge_configmap(
            namespace, rt.settings.experiments_configmap, {key: None, growthbook_key(key): None}, CONFIGMAP_LABELS
        )
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
