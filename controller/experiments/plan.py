"""The Experiment state machine: spec + status + facts → the one next action, and its reducer. Pure.

Each round (every ``interval``, or at once after a spec edit) the driver reads the per-branch counts
once, folds them into the report (``Refresh``), publishes the live config when it differs from what was
last published (``Publish``), then waits (``Wait``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from controller.experiments.growthbook import growthbook_json, growthbook_key
from controller.experiments.reconcile import (
    configmap_key,
    evaluate,
    evaluate_cuped,
    evaluate_segments,
    published_config,
    with_report,
    without_report,
)
from controller.models.common import ConditionStatus, set_condition
from controller.models.experiment import ExperimentSpec, ExperimentStatus


@dataclass(frozen=True)
class ExperimentFacts:
    """What the planner sees: this round's counts (or why there are none) and what is published."""

    now: datetime
    generation: int | None = None
    exposures: Mapping[str, float] | None = None
    conversions: Mapping[str, float] | None = None
    value_sums: Mapping[str, Mapping[str, float]] | None = None
    """``{"sum" | "sumSquares" | "xSum" | "xSumSquares" | "xySum": {branch: value}}`` for ``metric.value``."""
    segment_exposures: Mapping[tuple[str, ...], float] | None = None
    """``{(branch, dimension, segment): users}`` when ``metric.segments`` is set."""
    segment_conversions: Mapping[tuple[str, ...], float] | None = None
    no_counts: str | None = None  # why there are no counts this round (no metric, Prometheus down)
    counted: bool = False  # counts were (tried to be) read this round
    published: str | None = None  # the config this controller last published
    configmap: str = "stopline-experiments"


@dataclass(frozen=True)
class Refresh:
    """Fold this round's counts (or their absence) into report, SRM and decision."""


@dataclass(frozen=True)
class Publish:
    """Write the live config under ``key`` into the shared ConfigMap, and the GrowthBook payload beside it."""

    key: str
    config: str
    growthbook: str = ""
    """The GrowthBook SDK payload of the same config, under ``growthbook_key(key)``."""

    def data(self) -> dict[str, str | None]:
        """The ConfigMap keys this publication writes."""
        out: dict[str, str | None] = {self.key: self.config}
        if self.growthbook:
            out[growthbook_key(self.key)] = self.growthbook
        return out


@dataclass(frozen=True)
class Wait:
    """Nothing to do until the next round."""

    seconds: float


ExperimentAction = Refresh | Publish | Wait


@dataclass(frozen=True)
class Published:
    """Outcome of :class:`Publish` (``error`` when the ConfigMap could not be written)."""

    config: str
    error: str | None = None


@dataclass(frozen=True)
class NoOutcome:
    """A status-only action."""


ExperimentOutcome = Published | NoOutcome


def plan_experiment(spec: ExperimentSpec, status: ExperimentStatus, facts: ExperimentFacts) -> ExperimentAction:
    """The next action for this Experiment."""
    if facts.counted or facts.no_counts is not None:
        return Refresh()
    published = published_config(spec, status)
    config = published.to_json()
    if config != facts.published:
        return Publish(configmap_key(spec), config, growthbook_json(published))
    return Wait(spec.interval.total_seconds())


def reduce_experiment(
    spec: ExperimentSpec,
    status: ExperimentStatus,
    action: ExperimentAction,
    outcome: ExperimentOutcome,
    facts: ExperimentFacts,
) -> ExperimentStatus:
    """The status after ``action`` ran with ``outcome``."""
    now, generation = facts.now, facts.generation
    s = status
    if isinstance(action, Refresh):
        if facts.no_counts is not None or facts.exposures is None:
            s = without_report(spec, status, facts.no_counts or "no counts", now, generation)
        else:
            report, decision = evaluate(spec, facts.exposures, facts.conversions, facts.value_sums)
            segments = evaluate_segments(spec, facts.segment_exposures, facts.segment_conversions)
            cuped = evaluate_cuped(spec, facts.exposures, facts.value_sums)
            s = with_report(spec, status, report, decision, now, generation, segments, cuped)
    elif isinstance(action, Publish) and isinstance(outcome, Published):
        s = status.model_copy(deep=True)
        s.config_map = facts.configmap
        if outcome.error is None:
            closed = json.loads(outcome.config).get("closeOn")
            detail = f"{facts.configmap}/{action.key}" + (f" closed on {closed}" if closed else "")
            s.conditions = set_condition(s.conditions, "Published", "True", "ConfigPublished", detail, now, generation)
        else:
            s.conditions = set_condition(
                s.conditions, "Published", "False", "PublishFailed", outcome.error, now, generation
            )
    else:
        return status
    published = any(c.type == "Published" and c.status == "True" for c in s.conditions)
    ready: ConditionStatus = "True" if published else "False"
    s.conditions = set_condition(s.conditions, "Ready", ready, "Running", s.message or "", now, generation)
    return s


def experiment_events(
    before: ExperimentStatus, after: ExperimentStatus, action: ExperimentAction, outcome: ExperimentOutcome
) -> list[tuple[str, str, str]]:
    """Events of one step: a new decision, a publication."""
    out: list[tuple[str, str, str]] = []
    if isinstance(action, Refresh) and after.decision != before.decision:
        kind = "Warning" if after.decision.startswith("Harm") else "Normal"
        out.append((kind, "Decision", f"{after.decision}: {after.message}"))
    if isinstance(action, Refresh):
        was = {b.dimension for b in before.balance if not b.ok}
        for b in after.balance:
            if not b.ok and b.dimension not in was:
                where = f" (segments {', '.join(b.imbalanced)})" if b.imbalanced else ""
                out.append(("Warning", "SegmentImbalance", f"branches are imbalanced by {b.dimension}{where}"))
    if isinstance(action, Publish) and isinstance(outcome, Published):
        if outcome.error is None:
            out.append(("Normal", "Published", f"config published to ConfigMap {after.config_map}"))
        else:
            out.append(("Warning", "PublishFailed", outcome.error))
    return out
