"""Gate kinds: one table says, per kind, how a reading becomes a baseline and a verdict. Pure.

The executor reads each gate with its kind's reader (``controller.release.executor``); the reducer folds
the readings with :func:`baseline` and :func:`judge_reading`, which dispatch on ``Gate.kind`` through
:data:`JUDGES` — a new kind adds one entry here and one reader there, not an if-chain in each place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from controller.gates.compare import CompareReading
from controller.gates.compare import judged as compare_judged
from controller.gates.evaluate import Judgement, Measurement, judge, judge_experiment, record
from controller.gates.httpcheck import HttpResult, judge_http, read_value
from controller.gates.jobs import JobState, judge_job
from controller.gates.pods import PodsReading, judge_pods, restart_baseline
from controller.models.release import Gate, GaugeRow

GateCheck = PodsReading | JobState | HttpResult | CompareReading
"""What a kubernetes, job, http or compare gate observed (query gates: a Measurement; experiment: a decision)."""

#: Kinds also read while the phase rolls out (a crash-looping rollout fails in seconds, not at progressDeadline).
ROLLOUT_KINDS: frozenset[str] = frozenset({"kubernetes"})
#: Kinds read when capturing the pre-push baseline (a job gate runs nothing before the phase is Available).
BASELINE_KINDS: frozenset[str] = frozenset({"query", "kubernetes", "http"})


@dataclass(frozen=True)
class Judged:
    """A judged reading: the verdict, the number shown as postPush, and when it was taken."""

    judgement: Judgement
    value: float | None
    at: datetime
    row: Mapping[str, Any] = field(default_factory=dict)  # other gauges-row fields the reading sets


@dataclass(frozen=True)
class Baseline:
    """The pre-push value of a gate, and extra fields of its gauges row (kubernetes: restarts per pod)."""

    pre: float | None
    row: Mapping[str, Any] = field(default_factory=dict)


class ReadingsView(Protocol):
    """The part of a Readings outcome the judges look at (``controller.release.actions.Readings``)."""

    @property
    def values(self) -> Mapping[str, Measurement]: ...

    @property
    def experiments(self) -> Mapping[str, tuple[str | None, bool | None]]: ...

    @property
    def checks(self) -> Mapping[str, GateCheck]: ...


Judge = Callable[[Gate, GaugeRow, ReadingsView, datetime], Judged | None]
Capture = Callable[[Gate, ReadingsView], Baseline]


def _judge_query(gate: Gate, row: GaugeRow, r: ReadingsView, now: datetime) -> Judged | None:
    m = r.values.get(gate.name)
    if m is None:
        return None
    return Judged(judge(gate, row.pre_push, m), m.value, max(now, m.at))


def _judge_experiment(gate: Gate, row: GaugeRow, r: ReadingsView, now: datetime) -> Judged | None:
    decision, srm_ok = r.experiments.get(gate.name, (None, None))
    return Judged(judge_experiment(gate, decision, srm_ok), None, now)


def _judge_kubernetes(gate: Gate, row: GaugeRow, r: ReadingsView, now: datetime) -> Judged | None:
    reading = r.checks.get(gate.name)
    if not isinstance(reading, PodsReading):
        return None
    judgement, value = judge_pods(gate, row.restarts_at_start, reading, reading.at)
    return Judged(judgement, value, max(now, reading.at))


def _judge_job(gate: Gate, row: GaugeRow, r: ReadingsView, now: datetime) -> Judged | None:
    state = r.checks.get(gate.name)
    if not isinstance(state, JobState):
        return None
    return Judged(judge_job(gate, state, state.at), None, max(now, state.at))


def _judge_http(gate: Gate, row: GaugeRow, r: ReadingsView, now: datetime) -> Judged | None:
    result = r.checks.get(gate.name)
    if not isinstance(result, HttpResult):
        return None
    judgement, value = judge_http(gate, row.pre_push, result)
    return Judged(judgement, value, max(now, result.at))


def _judge_compare(gate: Gate, row: GaugeRow, r: ReadingsView, now: datetime) -> Judged | None:
    reading = r.checks.get(gate.name)
    if not isinstance(reading, CompareReading):
        return None
    judgement, value, update = compare_judged(gate, reading)
    return Judged(judgement, value, max(now, reading.at), update)


JUDGES: dict[str, Judge] = {
    "query": _judge_query,
    "experiment": _judge_experiment,
    "kubernetes": _judge_kubernetes,
    "job": _judge_job,
    "http": _judge_http,
    "compare": _judge_compare,
}


def _capture_query(gate: Gate, r: ReadingsView) -> Baseline:
    m = r.values.get(gate.name)
    return Baseline(m.value if m is not None and m.usable else None)


def _capture_kubernetes(gate: Gate, r: ReadingsView) -> Baseline:
    reading = r.checks.get(gate.name)
    if not isinstance(reading, PodsReading) or reading.error is not None:
        return Baseline(None)
    counts = restart_baseline(reading)
    return Baseline(float(sum(counts.values())), {"restarts_at_start": counts})


def _capture_http(gate: Gate, r: ReadingsView) -> Baseline:
    result = r.checks.get(gate.name)
    return Baseline(read_value(gate, result) if isinstance(result, HttpResult) else None)


CAPTURES: dict[str, Capture] = {
    "query": _capture_query,
    "kubernetes": _capture_kubernetes,
    "http": _capture_http,
}


def judge_reading(gate: Gate, row: GaugeRow, readings: ReadingsView, now: datetime) -> Judged | None:
    """The gate's reading judged by its kind (None: the outcome holds no reading of this gate)."""
    return JUDGES[gate.kind](gate, row, readings, now)


def fold_reading(gate: Gate, row: GaugeRow, readings: ReadingsView, now: datetime) -> GaugeRow | None:
    """The gauges row with the gate's reading folded in (None: the outcome holds no reading of this gate)."""
    judged = judge_reading(gate, row, readings, now)
    if judged is None:
        return None
    return record(gate, row.model_copy(update=dict(judged.row)), judged.value, judged.judgement, judged.at)


def baseline(gate: Gate, readings: ReadingsView) -> Baseline:
    """The gate's pre-push value from a baseline reading (kinds without one: none)."""
    capture = CAPTURES.get(gate.kind)
    return capture(gate, readings) if capture is not None else Baseline(None)
