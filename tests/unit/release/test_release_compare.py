"""The compare gate through the executor and the status reducer: both groups read over one window at the
same time, folded into one gauges row; never judged in the last phase or the watch window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sim import make_spec

from controller.gates.compare import Samples
from controller.models.release import PhaseStatus, ReleaseStatus
from controller.release.actions import CaptureBaseline, EvaluateGates
from controller.release.executor import Executor, ReleaseRef
from controller.release.plan import gates_for
from controller.release.status import reduce as reduce_status

REF = ReleaseRef(namespace="shop", name="web-3f9c2e1", uid="u1")
NOW = datetime(2026, 12, 1, 12, 10, tzinfo=UTC)
GATE = {
    "name": "latency",
    "compare": {"query": 'lat{ns="{{ namespace }}", workload=~"{{ workloads }}"}', "window": "2m", "minSamples": 5},
}
SPEC = make_spec(gates=[GATE, {"name": "load", "query": "up", "max": 1}])


class Metrics:
    def __init__(self, answers: dict[str, list[float]]) -> None:
        self.answers = answers
        self.ranges: list[tuple[str, datetime, datetime, float]] = []
        self.instant: list[str] = []

    async def query(self, url: str, query: str) -> Any:
        from controller.gates.evaluate import Measurement

        self.instant.append(query)
        return Measurement(0.5, NOW)

    async def query_range(self, url: str, query: str, start: datetime, end: datetime, step: float) -> Samples:
        self.ranges.append((query, start, end, step))
        values = self.answers.get(query)
        return Samples(tuple(values), 1) if values is not None else Samples()


def executor(metrics: Metrics) -> Executor:
    return Executor(
        cluster=None,  # type: ignore[arg-type]
        git=None,  # type: ignore[arg-type]
        metrics=metrics,  # type: ignore[arg-type]
        experiments=None,
        default_prometheus="http://prometheus.test",
        clock=lambda: NOW,
    )


def holding_canary() -> ReleaseStatus:
    return ReleaseStatus(
        phase="Holding",
        current_phase="canary",
        phases=[
            PhaseStatus(
                name="canary",
                state="Holding",
                started_at=NOW - timedelta(minutes=5),
                available_at=NOW - timedelta(seconds=40),
                workloads=["Deployment/web-canary"],
            ),
            PhaseStatus(name="chat", workloads=["Deployment/chat-a", "Deployment/chat-b"]),
            PhaseStatus(name="everything-else", workloads=["Deployment/web"]),
        ],
    )


CANARY_Q = 'lat{ns="shop", workload=~"(web-canary)"}'
BASELINE_Q = 'lat{ns="shop", workload=~"(chat-a|chat-b|web)"}'


async def test_both_groups_are_read_over_the_same_window_and_folded_into_one_row() -> None:
    metrics = Metrics({CANARY_Q: [200.0 + i % 3 for i in range(40)], BASELINE_Q: [100.0 + i % 3 for i in range(40)]})
    status = holding_canary()
    action = EvaluateGates("canary", ("latency", "load"))
    readings = await executor(metrics).read_gates(REF, SPEC, "canary", action.gates, status)
    assert [q for q, *_ in metrics.ranges] == [CANARY_Q, BASELINE_Q]
    windows = {(start, end, step) for _, start, end, step in metrics.ranges}
    assert windows == {(NOW - timedelta(seconds=40), NOW, 1.0)}  # since Available, within the 2m window
    after = reduce_status(SPEC, status, action, readings, NOW)
    row = next(r for r in after.gauges if r.gate == "latency")
    assert (row.verdict, row.pre_push, row.post_push) == ("Fail", 101.0, 201.0)
    assert row.delta == 100.0 and row.delta_percent is not None and round(row.delta_percent) == 99
    assert row.message.startswith("canary median 201 vs baseline 101 (+99.0%), U=1600, p=")
    assert row.threshold.startswith("canary vs baseline median >+0%")


async def test_drift_both_groups_share_passes() -> None:
    drift = [100.0 + 3 * i + (i % 4) for i in range(40)]
    metrics = Metrics({CANARY_Q: drift, BASELINE_Q: [v + 0.5 for v in drift]})
    status = holding_canary()
    action = EvaluateGates("canary", ("latency",))
    readings = await executor(metrics).read_gates(REF, SPEC, "canary", action.gates, status)
    row = next(r for r in reduce_status(SPEC, status, action, readings, NOW).gauges if r.gate == "latency")
    assert row.verdict == "Pass", row.message


async def test_no_data_is_inconclusive_and_capture_reads_no_range() -> None:
    metrics = Metrics({})
    status = holding_canary()
    readings = await executor(metrics).read_gates(REF, SPEC, "canary", ("latency",), status)
    row = next(r for r in reduce_status(SPEC, status, EvaluateGates("canary", ("latency",)), readings, NOW).gauges)
    assert row.verdict == "Inconclusive" and "too few samples" in row.message
    metrics.ranges.clear()
    captured = await executor(metrics).read_gates(REF, SPEC, "canary", ("latency", "load"), baseline=True)
    assert metrics.ranges == [] and "latency" not in captured.checks
    before = reduce_status(
        SPEC, ReleaseStatus(phases=status.phases), CaptureBaseline("canary", ("latency",)), captured, NOW
    )
    assert [(r.gate, r.pre_push) for r in before.gauges] == [("latency", None)]


async def test_a_phase_whose_later_phases_have_no_workloads_has_no_baseline() -> None:
    status = holding_canary()
    status.phases[1].workloads = []
    status.phases[2].workloads = []
    readings = await executor(Metrics({})).read_gates(REF, SPEC, "canary", ("latency",), status)
    assert readings.checks["latency"].error == "no baseline: no phase after canary has workloads"


async def test_an_unknown_template_variable_is_an_error() -> None:
    spec = make_spec(gates=[{"name": "latency", "compare": {"query": "lat{w=~'{{ nodes }}'}"}}])
    readings = await executor(Metrics({})).read_gates(REF, spec, "canary", ("latency",), holding_canary())
    row = reduce_status(spec, holding_canary(), EvaluateGates("canary", ("latency",)), readings, NOW).gauges[0]
    assert row.verdict == "Error" and "unknown template variable" in row.message


def test_compare_gates_do_not_judge_the_last_phase_or_the_watch_window() -> None:
    spec = make_spec(gates=[GATE, {"name": "load", "query": "up", "max": 1}], watch="1m")
    assert [g.name for g in gates_for(spec, "canary")] == ["latency", "load"]
    assert [g.name for g in gates_for(spec, "everything-else")] == ["load"]
    assert [g.name for g in gates_for(spec, "watch")] == ["load"]
    assert [g.kind for g in spec.gates] == ["compare", "query"]
