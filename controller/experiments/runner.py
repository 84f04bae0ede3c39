"""The per-Experiment loop: publish the live config, read counts, write report and decision. No kopf."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError

from controller.errors import StoplineError
from controller.experiments.reconcile import (
    configmap_key,
    evaluate,
    published_config,
    with_report,
    without_report,
)
from controller.models.common import ConditionStatus, set_condition
from controller.models.experiment import ExperimentSpec, ExperimentStatus

CONFIGMAP_LABELS = {"app.kubernetes.io/managed-by": "stopline", "stopline.dev/experiments": "published"}


class Counts(Protocol):
    """Reads per-branch counts."""

    async def query_by(self, url: str, query: str, label: str) -> dict[str, float]: ...


class Publisher(Protocol):
    """Writes one key of the shared ConfigMap."""

    async def merge_configmap(
        self, namespace: str, name: str, data: dict[str, str | None], labels: dict[str, str]
    ) -> None: ...


async def run_experiment(
    namespace: str,
    read_body: Callable[[], Mapping[str, Any]],
    patch_status: Callable[[dict[str, Any]], Awaitable[None]],
    counts: Counts,
    publisher: Publisher,
    *,
    configmap: str,
    prometheus_url: str | None,
    clock: Callable[[], datetime],
    wait: Callable[[float], Awaitable[None]],
    emit: Callable[[str, str, str], None] = lambda _t, _r, _m: None,
    stopped: Callable[[], bool] = lambda: False,
) -> None:
    """Keep the published config and the report current until stopped."""
    status = ExperimentStatus.model_validate(read_body().get("status") or {})
    persisted = status.model_copy(deep=True)
    published: str | None = None
    while not stopped():
        body = read_body()
        meta = body.get("metadata") or {}
        generation = meta.get("generation")
        try:
            spec = ExperimentSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            status.message = f"invalid spec: {exc.errors()[0]['msg']}"
            status.conditions = set_condition(
                status.conditions, "Ready", "False", "InvalidSpec", status.message, clock(), generation
            )
            await patch_status({"status": status.model_dump(mode="json", by_alias=True)})
            emit("Warning", "InvalidSpec", status.message)
            return
        now = clock()
        if spec.metric is None:
            status = without_report(spec, status, "no metric configured: assignment only", now, generation)
        elif prometheus_url is None:
            status = without_report(spec, status, "no Prometheus URL configured", now, generation)
        else:
            try:
                exposures = await counts.query_by(prometheus_url, spec.metric.exposures, "branch")
                conversions = (
                    await counts.query_by(prometheus_url, spec.metric.conversions, "branch")
                    if spec.metric.conversions
                    else None
                )
                report, decision = evaluate(spec, exposures, conversions)
                before = status.decision
                status = with_report(spec, status, report, decision, now, generation)
                if status.decision != before:
                    kind = "Warning" if status.decision.startswith("Harm") else "Normal"
                    emit(kind, "Decision", f"{status.decision}: {status.message}")
            except StoplineError as exc:
                status = without_report(spec, status, str(exc), now, generation)

        config = published_config(spec, status).to_json()
        status.config_map = configmap
        if config != published:
            try:
                await publisher.merge_configmap(namespace, configmap, {configmap_key(spec): config}, CONFIGMAP_LABELS)
                published = config
                closed = json.loads(config).get("closeOn")
                status.conditions = set_condition(
                    status.conditions,
                    "Published",
                    "True",
                    "ConfigPublished",
                    f"{configmap}/{configmap_key(spec)}" + (f" closed on {closed}" if closed else ""),
                    now,
                    generation,
                )
                emit("Normal", "Published", f"config published to ConfigMap {configmap}")
            except StoplineError as exc:
                status.conditions = set_condition(
                    status.conditions, "Published", "False", "PublishFailed", str(exc), now, generation
                )
        ready: ConditionStatus = "True" if published is not None else "False"
        status.conditions = set_condition(
            status.conditions, "Ready", ready, "Running", status.message or "", now, generation
        )
        if status != persisted:
            await patch_status({"status": status.model_dump(mode="json", by_alias=True)})
            persisted = status.model_copy(deep=True)
        await wait(spec.interval.total_seconds())
