"""The Experiment kind for the reconcile driver: read counts, fold the report, publish the live config. No kopf."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from controller.errors import StoplineError
from controller.experiments.plan import (
    ExperimentAction,
    ExperimentFacts,
    ExperimentOutcome,
    NoOutcome,
    Publish,
    Published,
    Wait,
    experiment_events,
    plan_experiment,
    reduce_experiment,
)
from controller.models.experiment import ExperimentSpec, ExperimentStatus
from controller.reconcile.driver import Context, Driver, mark_invalid

#: Labels of a segment query's series: the first must be present, the others default to "".
SEGMENT_LABELS = ("branch", "dimension", "segment")
CONFIGMAP_LABELS = {"app.kubernetes.io/managed-by": "stopline", "stopline.dev/experiments": "published"}


class Counts(Protocol):
    """Reads per-branch counts."""

    async def query_by(self, url: str, query: str, label: str) -> dict[str, float]: ...

    async def query_table(self, url: str, query: str, labels: tuple[str, ...]) -> dict[tuple[str, ...], float]: ...


class Publisher(Protocol):
    """Writes one key of the shared ConfigMap."""

    async def merge_configmap(
        self, namespace: str, name: str, data: dict[str, str | None], labels: dict[str, str]
    ) -> None: ...


class ExperimentKind:
    """What the reconcile driver needs to know about Experiments. The loop runs until the object is deleted."""

    kind = "Experiment"

    def __init__(
        self,
        namespace: str,
        counts: Counts,
        publisher: Publisher,
        *,
        configmap: str,
        prometheus_url: str | None,
        clock: Callable[[], datetime],
        alive: Callable[[], bool],
    ) -> None:
        self.namespace = namespace
        self.counts = counts
        self.publisher = publisher
        self.configmap = configmap
        self.prometheus_url = prometheus_url
        self.clock = clock
        self.alive = alive
        self.published: str | None = None
        self.round_started = True

    def parse_status(self, raw: Mapping[str, Any]) -> ExperimentStatus:
        return ExperimentStatus.model_validate(raw)

    def parse_spec(self, raw: Mapping[str, Any]) -> ExperimentSpec:
        return ExperimentSpec.model_validate(raw)

    def invalid(
        self, status: ExperimentStatus, message: str, now: datetime, generation: int | None
    ) -> ExperimentStatus:
        return mark_invalid(status, message, now, generation)

    def with_generation(self, status: ExperimentStatus, generation: int | None) -> ExperimentStatus:
        if status.observed_generation != generation:
            self.round_started = True  # a spec edit: refresh at once
        return status

    async def observe(self, spec: ExperimentSpec, status: ExperimentStatus, meta: Mapping[str, Any]) -> ExperimentFacts:
        now, generation = self.clock(), meta.get("generation")
        base = {"now": now, "generation": generation, "published": self.published, "configmap": self.configmap}
        if not self.round_started:
            return ExperimentFacts(**base)  # type: ignore[arg-type]
        self.round_started = False
        if spec.metric is None:
            return ExperimentFacts(**base, no_counts="no metric configured: assignment only")  # type: ignore[arg-type]
        if self.prometheus_url is None:
            return ExperimentFacts(**base, no_counts="no Prometheus URL configured")  # type: ignore[arg-type]
        try:
            exposures = await self.counts.query_by(self.prometheus_url, spec.metric.exposures, "branch")
            conversions = (
                await self.counts.query_by(self.prometheus_url, spec.metric.conversions, "branch")
                if spec.metric.conversions
                else None
            )
            value_sums = await self._value_sums(spec)
            segments = spec.metric.segments
            seg_exposures = seg_conversions = None
            if segments is not None:
                seg_exposures = await self.counts.query_table(self.prometheus_url, segments.exposures, SEGMENT_LABELS)
                if segments.conversions:
                    seg_conversions = await self.counts.query_table(
                        self.prometheus_url, segments.conversions, SEGMENT_LABELS
                    )
        except StoplineError as exc:
            return ExperimentFacts(**base, no_counts=str(exc), counted=True)  # type: ignore[arg-type]
        return ExperimentFacts(
            **base,  # type: ignore[arg-type]
            exposures=exposures,
            conversions=conversions,
            value_sums=value_sums,
            segment_exposures=seg_exposures,
            segment_conversions=seg_conversions,
            counted=True,
        )

    async def _value_sums(self, spec: ExperimentSpec) -> dict[str, dict[str, float]] | None:
        value = spec.metric.value if spec.metric else None
        if value is None or self.prometheus_url is None:
            return None
        queries = {"sum": value.sum, "sumSquares": value.sum_squares}
        if value.covariate is not None:
            queries |= {
                "xSum": value.covariate.sum,
                "xSumSquares": value.covariate.sum_squares,
                "xySum": value.covariate.sum_products,
            }
        return {key: await self.counts.query_by(self.prometheus_url, q, "branch") for key, q in queries.items()}

    def observe_failed(
        self, spec: ExperimentSpec, status: ExperimentStatus, error: StoplineError, now: datetime
    ) -> ExperimentStatus:
        s = status.model_copy(deep=True)
        s.message = str(error)
        return s

    def plan(self, spec: ExperimentSpec, status: ExperimentStatus, facts: ExperimentFacts) -> ExperimentAction:
        return plan_experiment(spec, status, facts)

    def is_side_effect(self, action: ExperimentAction) -> bool:
        return isinstance(action, Publish)

    async def execute(
        self, spec: ExperimentSpec, status: ExperimentStatus, action: ExperimentAction, facts: ExperimentFacts
    ) -> ExperimentOutcome:
        if not isinstance(action, Publish):
            return NoOutcome()
        if not self.alive():
            return Published(action.config, error="not published: the Experiment is gone")
        try:
            await self.publisher.merge_configmap(self.namespace, self.configmap, action.data(), CONFIGMAP_LABELS)
        except StoplineError as exc:
            self.round_started = False
            return Published(action.config, error=str(exc))
        self.published = action.config
        return Published(action.config)

    def reduce(
        self,
        spec: ExperimentSpec,
        status: ExperimentStatus,
        action: ExperimentAction,
        outcome: ExperimentOutcome,
        facts: ExperimentFacts,
    ) -> ExperimentStatus:
        return reduce_experiment(spec, status, action, outcome, facts)

    def events(
        self,
        before: ExperimentStatus,
        after: ExperimentStatus,
        action: ExperimentAction,
        outcome: ExperimentOutcome,
    ) -> list[tuple[str, str, str]]:
        return experiment_events(before, after, action, outcome)

    def persist_now(
        self, status: ExperimentStatus, persisted: ExperimentStatus, action: ExperimentAction, since: float
    ) -> bool:
        return status != persisted and isinstance(action, Wait | Publish)

    def sleep_for(
        self, spec: ExperimentSpec, status: ExperimentStatus, action: ExperimentAction, facts: ExperimentFacts
    ) -> float | None:
        if isinstance(action, Wait):
            self.round_started = True
            return action.seconds
        if isinstance(action, Publish) and facts.published == self.published:
            # the publication failed: retry at the next round
            self.round_started = True
            return spec.interval.total_seconds()
        return None

    def done(self, spec: ExperimentSpec, status: ExperimentStatus) -> bool:
        return False


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
    on_persist_error: Callable[[str], None] = lambda _k: None,
    on_persist: Callable[[str, str], None] = lambda _k, _a: None,
    may_act: Callable[[], Awaitable[bool]] | None = None,
) -> ExperimentStatus:
    """Keep the published config and the report current until stopped (through the reconcile driver)."""
    alive = lambda: not stopped()  # noqa: E731
    kind = ExperimentKind(
        namespace,
        counts,
        publisher,
        configmap=configmap,
        prometheus_url=prometheus_url,
        clock=clock,
        alive=alive,
    )
    meta = read_body().get("metadata") or {}
    ctx = Context(
        kind="Experiment",
        namespace=namespace,
        name=str(meta.get("name") or ""),
        read_body=read_body,
        patch_status=patch_status,
        wait=wait,
        clock=clock,
        alive=alive,
        emit=emit,
        on_persist_error=on_persist_error,
        on_persist=on_persist,
        may_act=may_act,
    )
    return await Driver(kind, ctx).run()
