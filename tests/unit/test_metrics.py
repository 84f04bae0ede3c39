"""Controller metrics: the hook methods move the right series, and run_release drives them end to end."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.gates.evaluate import Measurement
from controller.gitops.results import CommitInfo
from controller.metrics import ControllerMetrics
from controller.models.release import FailureStatus, GaugeRow, ReleaseSpec, ReleaseStatus, RevertStatus, UndoStatus
from controller.release.actions import (
    ActionFailed,
    ApplyPhase,
    Done,
    EvaluateGates,
    LiveDeployment,
    Readings,
    RecordRevert,
    RevertResult,
    SetPause,
    Undo,
    Undone,
)
from controller.release.executor import Executor, ReleaseRef
from controller.release.runner import run_release

REF = ReleaseRef(namespace="shop", name="web-3f9c2e1", uid="u1")
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
REVISION = "3f9c2e1d" + "0" * 32


@pytest.fixture
def m() -> ControllerMetrics:
    return ControllerMetrics()


def value(m: ControllerMetrics, name: str, labels: dict[str, str] | None = None) -> float:
    v = m.registry.get_sample_value(name, labels or {})
    assert v is not None, f"{name}{labels} is not exported"
    return v


def row(verdict: str, readings: int, breaches: int = 0, at: datetime = T0, gate: str = "load") -> GaugeRow:
    return GaugeRow(gate=gate, phase="canary", verdict=verdict, readings=readings, breaches=breaches, at=at)


def status(*rows: GaugeRow, **kw: Any) -> ReleaseStatus:
    return ReleaseStatus(phase="Holding", current_phase="canary", gauges=list(rows), **kw)


# ---------------------------------------------------------------- series and names
def test_every_series_is_exported_from_the_start(m: ControllerMetrics) -> None:
    text = m.exposition()[0].decode()
    for name in (
        "stopline_releases_total",
        "stopline_rollbacks_total",
        "stopline_reverts_total",
        "stopline_gate_evaluations_total",
        "stopline_gate_evaluation_seconds_bucket",
        "stopline_detect_to_rollback_seconds_bucket",
        "stopline_reconcile_errors_total",
        "stopline_active_releases",
    ):
        assert name in text, name
    assert value(m, "stopline_gate_evaluations_total", {"verdict": "Fail"}) == 0
    assert value(m, "stopline_releases_total", {"result": "Succeeded"}) == 0
    assert m.exposition()[1].startswith("text/plain")


def test_kube_requests_are_counted_by_verb_and_resource(m: ControllerMetrics) -> None:
    for verb, resource in (("LIST", "pods"), ("LIST", "pods"), ("PATCH", "releases")):
        m.kube_request(verb, resource)
    assert value(m, "stopline_kube_requests_total", {"verb": "LIST", "resource": "pods"}) == 2
    assert value(m, "stopline_kube_requests_total", {"verb": "PATCH", "resource": "releases"}) == 1


def test_process_collectors_only_when_asked() -> None:
    assert "process_" not in ControllerMetrics().exposition()[0].decode()
    assert "python_gc_objects_collected_total" in ControllerMetrics(process=True).exposition()[0].decode()


# ---------------------------------------------------------------- gate evaluations
def test_only_rows_read_this_round_are_counted(m: ControllerMetrics) -> None:
    before = status(row("Pass", 2), row("Pass", 1, gate="errors"))
    after = status(row("Fail", 3, breaches=1), row("Pass", 1, gate="errors"))
    m.on_step(REF, EvaluateGates("canary", ("load",)), Readings({}), before, after)
    assert value(m, "stopline_gate_evaluations_total", {"verdict": "Fail"}) == 1
    assert value(m, "stopline_gate_evaluations_total", {"verdict": "Pass"}) == 0
    new_row = status(row("Fail", 3, breaches=1), row("Pass", 1, gate="errors"), row("Inconclusive", 1, gate="new"))
    m.on_step(REF, EvaluateGates("canary", ("new",)), Readings({}), after, new_row)
    assert value(m, "stopline_gate_evaluations_total", {"verdict": "Inconclusive"}) == 1


def test_gate_verdicts_are_counted_per_gate_kind(m: ControllerMetrics) -> None:
    for kind in ("query", "experiment", "compare"):
        assert value(m, "stopline_gate_verdicts_total", {"kind": kind, "verdict": "Fail"}) == 0
    before = status(row("Pass", 1), row("Pass", 1, gate="latency").model_copy(update={"kind": "compare"}))
    after = status(row("Pass", 2), row("Fail", 2, breaches=1, gate="latency").model_copy(update={"kind": "compare"}))
    m.on_step(REF, EvaluateGates("canary", ("load", "latency")), Readings({}), before, after)
    assert value(m, "stopline_gate_verdicts_total", {"kind": "compare", "verdict": "Fail"}) == 1
    assert value(m, "stopline_gate_verdicts_total", {"kind": "query", "verdict": "Pass"}) == 1
    assert value(m, "stopline_gate_verdicts_total", {"kind": "compare", "verdict": "Pass"}) == 0


def test_gauges_rows_carry_the_gate_kind() -> None:
    from controller.gates.evaluate import new_row
    from controller.models.release import Gate

    gates = [
        Gate(name="q", query="up", max=1),
        Gate(name="e", experiment={"name": "x"}),  # type: ignore[arg-type]
        Gate(name="c", compare={"query": "up"}),  # type: ignore[arg-type]
    ]
    assert [new_row(g, "canary", None).kind for g in gates] == ["query", "experiment", "compare"]


def test_gate_evaluation_seconds_observes_evaluation_rounds_only(m: ControllerMetrics) -> None:
    m.on_action(REF, EvaluateGates("canary", ("load",)), 0.3)
    m.on_action(REF, EvaluateGates("canary", ("load",)), 0.02)
    m.on_action(REF, ApplyPhase("canary", ("web",)), 5.0)
    assert value(m, "stopline_gate_evaluation_seconds_count") == 2
    assert value(m, "stopline_gate_evaluation_seconds_sum") == pytest.approx(0.32)
    assert value(m, "stopline_gate_evaluation_seconds_bucket", {"le": "0.025"}) == 1


# ---------------------------------------------------------------- rollback, revert, detect→rollback
def failed(at: datetime, gate: str | None = "load") -> ReleaseStatus:
    reason = "GateFailed" if gate else "Aborted"
    return ReleaseStatus(
        phase="RollingBack",
        failure=FailureStatus(gate=gate, phase="canary", reason=reason, message="x", at=at),
    )


def undone(s: ReleaseStatus, at: datetime) -> ReleaseStatus:
    out = s.model_copy(deep=True)
    out.undo = UndoStatus(at=at, restored=["web"])
    return out


def test_detect_to_rollback_starts_at_the_first_breaching_reading(m: ControllerMetrics) -> None:
    # failureLimit 1: the first breach at T0+10s is tolerated, the second (T0+20s) fails the push
    s0 = status(row("Pass", 1, at=T0))
    s1 = status(row("Fail", 2, breaches=1, at=T0 + timedelta(seconds=10)))
    s2 = status(row("Fail", 3, breaches=2, at=T0 + timedelta(seconds=20)))
    m.on_step(REF, EvaluateGates("canary", ("load",)), Readings({}), s0, s1)
    m.on_step(REF, EvaluateGates("canary", ("load",)), Readings({}), s1, s2)
    before = failed(T0 + timedelta(seconds=20))
    after = undone(before, T0 + timedelta(seconds=21.5))
    m.on_step(REF, Undo(("web",), ()), Undone(("web",), ()), before, after)
    assert value(m, "stopline_detect_to_rollback_seconds_count") == 1
    assert value(m, "stopline_detect_to_rollback_seconds_sum") == pytest.approx(11.5)
    assert value(m, "stopline_rollbacks_total") == 1
    # the git side reports on its own (RecordRevert), never with the restore
    assert m.registry.get_sample_value("stopline_reverts_total", {"state": "Pushed"}) is None


def test_a_pass_resets_the_breach_streak(m: ControllerMetrics) -> None:
    steps = [
        status(row("Pass", 1, at=T0)),
        status(row("Fail", 2, breaches=1, at=T0 + timedelta(seconds=10))),
        status(row("Pass", 3, at=T0 + timedelta(seconds=20))),
        status(row("Fail", 4, breaches=1, at=T0 + timedelta(seconds=30))),
    ]
    for before, after in itertools.pairwise(steps):
        m.on_step(REF, EvaluateGates("canary", ("load",)), Readings({}), before, after)
    before = failed(T0 + timedelta(seconds=30))
    m.on_step(REF, Undo(("web",), ()), Undone(("web",), ()), before, undone(before, T0 + timedelta(seconds=32)))
    assert value(m, "stopline_detect_to_rollback_seconds_sum") == pytest.approx(2.0)


def test_without_readings_seen_it_falls_back_to_the_failure_time(m: ControllerMetrics) -> None:
    before = failed(T0)  # e.g. the controller restarted between the failure and the restore
    m.on_step(REF, Undo(("web",), ()), Undone(("web",), ()), before, undone(before, T0 + timedelta(seconds=1)))
    assert value(m, "stopline_detect_to_rollback_seconds_sum") == pytest.approx(1.0)


def test_abort_counts_a_rollback_but_no_detection(m: ControllerMetrics) -> None:
    before = failed(T0, gate=None)
    m.on_step(REF, Undo(("web",), ()), Undone(("web",), ()), before, undone(before, T0 + timedelta(seconds=1)))
    assert value(m, "stopline_rollbacks_total") == 1
    assert value(m, "stopline_detect_to_rollback_seconds_count") == 0


def test_failed_restore_and_revert_only_steps(m: ControllerMetrics) -> None:
    before = failed(T0)
    m.on_step(REF, Undo(("web",), ()), Undone((), (), restore_error="boom"), before, before)
    m.on_step(REF, Undo((), ()), Undone((), ()), before, before)
    assert value(m, "stopline_rollbacks_total") == 0
    assert value(m, "stopline_detect_to_rollback_seconds_count") == 0


REVERT_RESULTS = [
    ("pushed", RevertResult("Pushed", commit="c"), "Pushed", "Pushed"),
    ("already-reverted", RevertResult("AlreadyReverted", commit="c"), "AlreadyReverted", "AlreadyReverted"),
    ("conflict", RevertResult("Conflict", reason="x"), "Conflict", "Conflict"),
    (
        "auth-failure",
        RevertResult("Error", reason="401", code="AuthenticationFailed"),
        "Pending",
        "AuthenticationFailed",
    ),
    ("unreachable", RevertResult("Error", reason="refused", code="Unreachable"), "Pending", "Unreachable"),
    ("error-without-code", RevertResult("Error", reason="?"), "Pending", "Error"),
]


@pytest.mark.parametrize(
    ("result", "state", "attempt"), [c[1:] for c in REVERT_RESULTS], ids=[c[0] for c in REVERT_RESULTS]
)
def test_reverts_are_counted_when_recorded(
    m: ControllerMetrics, result: RevertResult, state: str, attempt: str
) -> None:
    before = failed(T0)
    m.on_step(REF, RecordRevert(result), Done(), before, before)
    assert value(m, "stopline_reverts_total", {"state": state}) == 1
    assert value(m, "stopline_revert_attempts_total", {"result": attempt}) == 1


def test_reverts_pending_and_paused_releases_follow_the_status(m: ControllerMetrics) -> None:
    other = ReleaseRef("shop", "other", "u2")
    pending = failed(T0).model_copy(update={"revert": RevertStatus(state="Pending", attempts=2)})
    landed = failed(T0).model_copy(update={"revert": RevertStatus(state="Pushed", commit="c")})
    with m.running(REF), m.running(other):
        m.on_step(REF, RecordRevert(RevertResult("Error", code="Unreachable")), Done(), pending, pending)
        m.on_step(other, RecordRevert(RevertResult("Error", code="Unreachable")), Done(), pending, pending)
        assert value(m, "stopline_reverts_pending") == 2
        m.on_step(REF, RecordRevert(RevertResult("Pushed", commit="c")), Done(), pending, landed)
        assert value(m, "stopline_reverts_pending") == 1

        paused = status(row("Inconclusive", 1), pause_reason="Inconclusive")
        m.on_step(REF, EvaluateGates("canary", ("load",)), Readings({}), status(), paused)
        m.on_step(REF, EvaluateGates("canary", ("load",)), Readings({}), paused, paused)
        assert value(m, "stopline_paused_releases", {"reason": "Inconclusive"}) == 1
        assert value(m, "stopline_inconclusive_pauses_total") == 1  # counted once per pause, not per reading
        user = status(pause_reason="User", user_paused=True)
        m.on_step(REF, SetPause(True), Done(), paused, user)
        assert value(m, "stopline_paused_releases", {"reason": "Inconclusive"}) == 0
        assert value(m, "stopline_paused_releases", {"reason": "User"}) == 1
    # a loop that ends leaves nothing behind
    assert value(m, "stopline_reverts_pending") == 0
    assert value(m, "stopline_paused_releases", {"reason": "User"}) == 0


def test_status_write_errors_by_kind(m: ControllerMetrics) -> None:
    m.status_write_error("Release")
    m.hooks().on_persist_error("Track")
    assert value(m, "stopline_status_write_errors_total", {"kind": "Release"}) == 1
    assert value(m, "stopline_status_write_errors_total", {"kind": "Track"}) == 1
    assert value(m, "stopline_status_write_errors_total", {"kind": "Experiment"}) == 0


# ---------------------------------------------------------------- results, errors, active
@pytest.mark.parametrize("phase", ["Succeeded", "RolledBack", "Failed"])
def test_final_results(m: ControllerMetrics, phase: str) -> None:
    m.on_final(REF, ReleaseStatus(phase=phase))
    assert value(m, "stopline_releases_total", {"result": phase}) == 1
    assert sum(value(m, "stopline_releases_total", {"result": r}) for r in ("Succeeded", "RolledBack", "Failed")) == 1


def test_non_final_status_is_not_a_result(m: ControllerMetrics) -> None:
    m.on_final(REF, ReleaseStatus(phase="Holding"))
    assert m.registry.get_sample_value("stopline_releases_total", {"result": "Holding"}) is None


def test_failed_actions_are_reconcile_errors(m: ControllerMetrics) -> None:
    s = status()
    m.on_step(REF, ApplyPhase("canary", ("web",)), ActionFailed("apiserver said 500"), s, s)
    m.on_step(REF, ApplyPhase("canary", ("web",)), Done(), s, s)
    assert value(m, "stopline_reconcile_errors_total", {"kind": "Release"}) == 1
    m.reconcile_error("Track")
    assert value(m, "stopline_reconcile_errors_total", {"kind": "Track"}) == 1


def test_running_tracks_active_releases_and_crashes(m: ControllerMetrics) -> None:
    with m.running(REF):
        assert value(m, "stopline_active_releases") == 1
        with m.running(ReleaseRef("shop", "other", "u2")):
            assert value(m, "stopline_active_releases") == 2
    assert value(m, "stopline_active_releases") == 0
    with pytest.raises(RuntimeError), m.running(REF):
        raise RuntimeError("bug")
    assert value(m, "stopline_active_releases") == 0
    assert value(m, "stopline_reconcile_errors_total", {"kind": "Release"}) == 1


def test_hooks_forward_events(m: ControllerMetrics) -> None:
    seen: list[tuple[str, str, str]] = []
    hooks = m.hooks(lambda t, r, msg: seen.append((t, r, msg)))
    hooks.emit("Normal", "PushStarted", "x")
    assert seen == [("Normal", "PushStarted", "x")]
    assert hooks.on_step == m.on_step and hooks.on_final == m.on_final and hooks.on_action == m.on_action


# ---------------------------------------------------------------- through the real release loop
class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Cluster:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    async def states(self, namespace: str, names: Iterable[str]) -> dict[str, LiveDeployment]:
        return {n: LiveDeployment(n, exists=True, available=True) for n in names}

    async def snapshot(
        self, namespace: str, configmap: str, owner: Mapping[str, str], names: Iterable[str]
    ) -> tuple[list[str], list[str]]:
        return list(names), []

    async def scopes(self, kinds: Iterable[tuple[str, str]]) -> dict[tuple[str, str], bool | None]:
        return {k: True for k in kinds}

    async def apply(
        self, namespace: str, manifests: Iterable[Mapping[str, Any]], release: str, app: str = "", phase: str = ""
    ) -> dict[str, str]:
        return {}

    async def prune(self, namespace: str, keys: Iterable[str], app: str) -> list[str]:
        return []

    async def managed(self, namespace: str, app: str) -> list[Any]:
        return []

    async def restore(
        self,
        namespace: str,
        configmap: str,
        restore: Iterable[str],
        delete: Iterable[str],
        release: str,
        created: Mapping[str, str] | None = None,
        fast: Iterable[str] = (),
    ) -> tuple[list[str], list[str]]:
        self.clock.advance(1.5)  # the restore takes 1.5 s
        return list(restore), list(delete)


class Git:
    async def commit(self, namespace: str, spec: ReleaseSpec) -> CommitInfo:
        return CommitInfo(
            sha=spec.source.revision,
            subject="app v2",
            author="Ada Lovelace <ada@example.org>",
            committed_at=datetime(2026, 1, 1, tzinfo=UTC),
            parents=(),
            committer="Grace Hopper <grace@example.org>",
        )

    async def manifests(self, namespace: str, spec: ReleaseSpec) -> list[dict[str, Any]]:
        return [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {}}]

    async def revert(
        self,
        namespace: str,
        spec: ReleaseSpec,
        message: str,
        trailers: Mapping[str, str],
        proceed: Callable[[], bool] = lambda: True,
    ) -> RevertResult:
        return RevertResult("Pushed", commit="c0ffee" + "0" * 34, attempts=1, message=message.splitlines()[0])


class Prometheus:
    """4.0 before the push; 7.2 from the second reading of the hold on (4.0 throughout when ``flat``)."""

    def __init__(self, clock: Clock, flat: bool = False) -> None:
        self.clock = clock
        self.flat = flat
        self.calls = 0

    async def query(self, url: str, query: str) -> Measurement:
        self.calls += 1
        return Measurement(4.0 if self.calls <= 2 or self.flat else 7.2, self.clock())


async def run_push(
    phases: list[dict[str, Any]], gate: dict[str, Any], flat: bool = False
) -> tuple[ReleaseStatus, ControllerMetrics, list[str]]:
    """One Release through run_release against the fakes: the final status, the metrics, the status writes
    in order (each as the phase the Release was in). ``flat``: Prometheus reads 4.0 throughout."""
    clock = Clock()
    prometheus = Prometheus(clock, flat)
    executor = Executor(
        cluster=Cluster(clock),
        git=Git(),
        metrics=prometheus,
        experiments=None,
        default_prometheus="http://prometheus.invalid",
        clock=clock,
    )
    spec = {
        "source": {"repo": "https://git.example.com/shop/app.git", "revision": REVISION},
        "phases": phases,
        "gates": [{"name": "load", "query": "avg(load)", "max": 6, **gate}],
    }
    body: dict[str, Any] = {"metadata": {"name": REF.name, "namespace": REF.namespace, "generation": 1}, "spec": spec}
    m = ControllerMetrics()
    writes: list[str] = []

    async def patch_status(patch: dict[str, Any]) -> None:
        body["status"] = patch["status"]
        writes.append(str(patch["status"].get("phase")))

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0)  # let the git revert running beside the loop make progress

    with m.running(REF):
        final = await run_release(REF, lambda: body, patch_status, executor, hooks=m.hooks(), sleep=sleep)
    return final, m, writes


def status_writes(m: ControllerMetrics) -> dict[str, int]:
    """Action → Release status writes counted by stopline_status_writes_total."""
    out: dict[str, int] = {}
    for family in m.registry.collect():
        for sample in family.samples:
            if sample.name == "stopline_status_writes_total" and sample.labels["kind"] == "Release":
                out[sample.labels["action"]] = int(sample.value)
    return out


async def test_a_passing_push_writes_its_status_once_per_step_users_see() -> None:
    phases = [{"name": "canary", "deployments": ["web"], "hold": "30s"}, {"name": "rest", "remaining": True}]
    final, m, writes = await run_push(phases, {"interval": "10s"}, flat=True)
    assert final.phase == "Succeeded", final.message
    by_action = status_writes(m)
    assert sum(by_action.values()) == len(writes)  # the metric counts every PATCH
    # The baseline and the Available mark are written by the step after them (the apply's write first, the
    # first gate reading's): two PATCHes fewer per phase, and no status value is lost.
    assert "CaptureBaseline" not in by_action and "MarkAvailable" not in by_action, by_action
    assert by_action == {
        "Begin": 1,
        "Snapshot": 1,  # "rest" has nothing left to snapshot (web went out in the canary)
        "before:ApplyPhase": 2,  # with the baseline
        "ApplyPhase": 2,
        "EvaluateGates": 2,  # with the Available mark
        "CompletePhase": 2,
    }
    assert writes == ["Progressing"] * 4 + ["Holding"] + ["Progressing"] * 3 + ["Holding", "Succeeded"]
    assert final.gauges[0].pre_push == 4.0 and all(p.available_at is not None for p in final.phases)


async def test_a_rolled_back_push_through_run_release() -> None:
    phases = [{"name": "canary", "deployments": ["web"], "hold": "60s"}]
    final, m, _writes = await run_push(phases, {"interval": "10s", "failureLimit": 1})
    assert final.phase == "RolledBack", final.message
    assert value(m, "stopline_releases_total", {"result": "RolledBack"}) == 1
    assert value(m, "stopline_rollbacks_total") == 1
    assert value(m, "stopline_reverts_total", {"state": "Pushed"}) == 1
    assert value(m, "stopline_revert_attempts_total", {"result": "Pushed"}) == 1
    assert value(m, "stopline_reverts_pending") == 0
    assert final.revert is not None and final.revert.state == "Pushed"
    assert value(m, "stopline_gate_evaluations_total", {"verdict": "Fail"}) == 2  # tolerated breach, then the failure
    assert value(m, "stopline_gate_evaluations_total", {"verdict": "Pass"}) == 1
    assert value(m, "stopline_gate_evaluation_seconds_count") == 3
    # first breaching reading → restore done: one 10 s interval to the second breach, plus the 1.5 s restore
    assert value(m, "stopline_detect_to_rollback_seconds_sum") == pytest.approx(11.5)
    assert value(m, "stopline_active_releases") == 0
    assert value(m, "stopline_reconcile_errors_total", {"kind": "Release"}) == 0


# ---------------------------------------------------------------- the Grafana dashboard
DASHBOARD = Path(__file__).resolve().parents[2] / "charts" / "stopline" / "dashboards" / "stopline.json"
GRAFANA_VARS = {"$__range": "1d", "$__rate_interval": "5m", "$job": ".*"}


def dashboard_exprs() -> list[tuple[str, str]]:
    data = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in data["panels"] for t in p.get("targets", [])]


def exported_names() -> set[str]:
    text = ControllerMetrics(process=True).exposition()[0].decode()
    return {ln.split()[2] for ln in text.splitlines() if ln.startswith("# TYPE ")} | {
        re.split(r"[{ ]", ln)[0] for ln in text.splitlines() if ln and not ln.startswith("#")
    }


def test_dashboard_covers_the_issue_and_queries_only_exported_metrics() -> None:
    data = json.loads(DASHBOARD.read_text())
    assert data["uid"] == "stopline-overview" and data["title"] == "stopline"
    exprs = dashboard_exprs()
    names = exported_names()
    used = {n for _, e in exprs for n in re.findall(r"\b(stopline_\w+|process_\w+)", e)}
    assert used, "no metric used"
    assert used <= names, f"dashboard queries metrics the controller does not export: {sorted(used - names)}"
    for metric in (
        "stopline_releases_total",
        "stopline_rollbacks_total",
        "stopline_reverts_total",
        "stopline_gate_evaluations_total",
        "stopline_gate_evaluation_seconds_bucket",
        "stopline_detect_to_rollback_seconds_bucket",
        "stopline_reconcile_errors_total",
        "stopline_active_releases",
    ):
        assert metric in used, metric
    prevented = [e for t, e in exprs if t == "Rollbacks prevented per day"]
    assert 'sum(increase(stopline_rollbacks_total{job=~"$job"}[1d]))' in prevented
    panel = next(p for p in data["panels"] if p["title"] == "Rollbacks prevented per day")
    assert panel["interval"] == "1d" and panel["fieldConfig"]["defaults"]["custom"]["drawStyle"] == "bars"
    by_kind = [e for t, e in exprs if t == "Gate verdicts by kind"]
    assert by_kind and all("sum by (kind, verdict)" in e and "stopline_gate_verdicts_total" in e for e in by_kind)
    detect = [e for t, e in exprs if t.startswith("Detect")]
    assert any("histogram_quantile(0.5," in e for e in detect) and any("histogram_quantile(0.95," in e for e in detect)
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    for p in data["panels"]:
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool, installed by ``hack/install-promtool.sh`` (Debian's prometheus) when missing: this test
    never skips. ``make unit`` runs the script first; a plain pytest run does it here."""
    found = shutil.which("promtool")
    if found is None:
        script = Path(__file__).resolve().parents[2] / "hack" / "install-promtool.sh"
        proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False, timeout=600)
        found = shutil.which("promtool")
        assert found is not None, f"promtool is required and {script.name} could not install it:\n{proc.stderr}"
    return found


@pytest.mark.timeout(660)
def test_dashboard_queries_are_valid_promql(tmp_path: Path, promtool: str) -> None:
    rules = []
    for i, (_, expr) in enumerate(dashboard_exprs()):
        for var, val in GRAFANA_VARS.items():
            expr = expr.replace(var, val)
        rules.append({"record": f"stopline:dashboard_{i}", "expr": expr})
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout
