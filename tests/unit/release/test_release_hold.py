"""Holds count observed time only (every acting gate of the phase had readings, the user did not pause),
and an outage alone never reverts a commit: onInconclusive decides, pause by default."""

from __future__ import annotations

from typing import Any

import pytest
from sim import FakeClock, MetricScript, Trace, World, at, make_spec, per_phase, run, series

from controller.models.release import ReleaseSpec, ReleaseStatus
from controller.release.actions import (
    ANNOTATION_PAUSED,
    ANNOTATION_PROMOTE,
    CompletePhase,
    EvaluateGates,
    FailPush,
    StartRevert,
    Undo,
)

ONE_PHASE = [{"name": "canary", "deployments": ["web-canary"], "hold": "8s"}]
FAST = {"name": "load", "query": "avg(node_load1)", "max": 6, "interval": "1s", "inconclusiveLimit": 100}
AVAILABLE = 5  # the canary rollout takes 5 s


def spec(gate: dict[str, Any] | None = None, **extra: Any) -> ReleaseSpec:
    return make_spec(phases=ONE_PHASE, gates=[{**FAST, **(gate or {})}], **extra)


def world(load: MetricScript) -> World:
    return World.of({"web-canary": {"app": "web"}}, metrics={"load": load})


def completed_at(trace: Trace) -> float:
    step = next(st for st in trace.steps if isinstance(st.action, CompletePhase))
    return (step.at - at(0)).total_seconds()


@pytest.mark.parametrize(
    ("gap", "done"),
    [(0, AVAILABLE + 8), (3, AVAILABLE + 3 + 8), (6, AVAILABLE + 6 + 8), (30, AVAILABLE + 30 + 8)],
    ids=["no-gap", "3s-without-data", "6s-without-data", "30s-without-data"],
)
def test_time_without_data_does_not_count(gap: int, done: int) -> None:
    # the first ``gap`` readings of the hold (one a second) have no data, then every reading does
    trace = run(spec(), ReleaseStatus(), world(series(4.0, *([None] * gap), 4.1)), FakeClock())
    assert completed_at(trace) == done
    assert trace.status.phase == "Succeeded"
    holding = [st.status.phases[0] for st in trace.steps if st.status.phases and st.status.phases[0].state == "Holding"]
    assert max(p.observed_seconds for p in holding) <= 8
    if gap:
        # at 8 s of wall time in the hold, the hold is not over
        assert not any(isinstance(st.action, CompletePhase) for st in trace.steps if st.at <= at(AVAILABLE + 8))


def test_an_8s_hold_with_6s_without_data_is_not_over_at_8s_wall_time() -> None:
    trace = run(spec(), ReleaseStatus(), world(series(4.0, *([None] * 6), 4.1)), FakeClock(), until=at(AVAILABLE + 8))
    st = trace.status
    assert (st.phase, st.current_phase) == ("Holding", "canary")
    assert trace.count(CompletePhase) == 0
    # data came back at 11 s: the readings at 11 s and 12 s vouch for one second so far
    assert st.phases[0].observed_seconds == 1.0
    assert st.phases[0].hold_until is not None and st.phases[0].hold_until > at(AVAILABLE + 8)


def test_no_reading_during_the_whole_outage_counts_nothing() -> None:
    s = make_spec(phases=[{**ONE_PHASE[0], "hold": "45s"}], gates=[FAST])
    trace = run(s, ReleaseStatus(), world(series(4.0, None)), FakeClock(), until=at(600))
    assert trace.count(CompletePhase) == 0 and trace.count(FailPush) == 0
    assert trace.status.phases[0].observed_seconds == 0.0
    assert (trace.status.phase, trace.status.pause_reason) == ("Paused", "Inconclusive")


def test_paused_time_does_not_count() -> None:
    s, w, clock = spec(), world(series(4.0, 4.1)), FakeClock()
    first = run(s, ReleaseStatus(), w, clock, until=at(AVAILABLE + 2))
    assert first.status.phases[0].observed_seconds == 1.0  # readings at 5 s and 6 s; 7 s not read yet
    w.annotations[ANNOTATION_PAUSED] = "true"
    paused = run(s, first.status, w, clock, until=at(AVAILABLE + 32))  # paused 30 s, readings keep coming
    # the pause closes the stretch the last reading vouches for (6 s → 7 s), then nothing counts
    assert paused.count(CompletePhase) == 0 and paused.count(EvaluateGates) >= 29
    assert paused.status.phases[0].observed_seconds == 2.0
    del w.annotations[ANNOTATION_PAUSED]
    rest = run(s, paused.status, w, clock)
    assert completed_at(rest) == AVAILABLE + 32 + 6  # the 6 s still missing, after the resume
    assert rest.status.phases[0].observed_seconds == 8.0


def test_promote_ends_the_hold_even_without_data() -> None:
    s, w, clock = spec(), world(series(4.0, None)), FakeClock()
    first = run(s, ReleaseStatus(), w, clock, until=at(AVAILABLE + 3))
    assert first.status.pause_reason == "Inconclusive"
    w.annotations[ANNOTATION_PROMOTE] = "ship-it"
    rest = run(s, first.status, w, clock)
    assert rest.first(CompletePhase) == CompletePhase("canary", promoted="ship-it")
    assert completed_at(rest) == AVAILABLE + 3
    assert (rest.status.phase, rest.status.promoted) == ("Succeeded", "ship-it")


def test_the_watch_window_counts_observed_time_too() -> None:
    s = make_spec(phases=[{**ONE_PHASE[0], "hold": "2s"}], gates=[FAST], watch="10s")
    script = per_phase({"watch": lambda _p, call: None if call < 5 else 4.1}, series(4.0, 4.1))
    trace = run(s, ReleaseStatus(), world(script), FakeClock())
    watch_start = next(st.at for st in trace.steps if isinstance(st.action, CompletePhase))
    done = [st.at for st in trace.steps if isinstance(st.action, CompletePhase)][-1]
    assert (done - watch_start).total_seconds() == 5 + 10
    assert trace.status.phase == "Succeeded" and trace.status.watch_observed_seconds == 10.0


# ---------------------------------------------------------------- onInconclusive
OUTAGE = per_phase({"canary": series(4.0, 4.1, None)}, series(4.0, 4.1))  # data once, then none


@pytest.mark.parametrize(
    ("policy", "fails", "revert_after_fail", "final_revert", "commits"),
    [
        (None, False, None, None, 0),
        ("pause", False, None, None, 0),
        ("rollback", True, "Skipped", "Skipped", 0),
        ("rollbackAndRevert", True, "Pending", "Pushed", 1),
    ],
    ids=["default-pauses", "pause", "rollback", "rollback-and-revert"],
)
def test_on_inconclusive(
    policy: str | None, fails: bool, revert_after_fail: str | None, final_revert: str | None, commits: int
) -> None:
    extra = {"onInconclusive": policy} if policy else {}
    s = spec({"inconclusiveLimit": 3}, **extra)
    w = world(OUTAGE)
    trace = run(s, ReleaseStatus(), w, FakeClock(), until=at(600))
    st = trace.status
    assert trace.count(CompletePhase) == 0, "an outage never promotes"
    fail_steps = [step for step in trace.steps if isinstance(step.action, FailPush)]
    if not fails:
        assert fail_steps == [] and trace.count(Undo) == 0 and trace.count(StartRevert) == 0
        assert (st.phase, st.pause_reason, st.failure, st.revert) == ("Paused", "Inconclusive", None, None)
        assert st.message is not None and "onInconclusive: pause" in st.message
        return
    (fail,) = fail_steps
    assert isinstance(fail.action, FailPush)
    assert (fail.action.reason, fail.action.revert) == ("GatesInconclusive", policy == "rollbackAndRevert")
    assert fail.status.revert is not None and fail.status.revert.state == revert_after_fail
    assert fail.status.failure is not None and fail.status.failure.revert is (policy == "rollbackAndRevert")
    assert trace.count(Undo) == 1 and st.phase == "RolledBack"
    assert st.revert is not None and st.revert.state == final_revert
    assert len(w.git.commits) == commits == trace.count(StartRevert)


def test_a_paused_push_completes_its_observed_hold_when_data_returns() -> None:
    s = spec({"inconclusiveLimit": 3})
    script = per_phase({"canary": series(4.0, 4.1, *([None] * 20), 4.1)}, series(4.0, 4.1))
    trace = run(s, ReleaseStatus(), world(script), FakeClock())
    assert trace.count(FailPush) == 0 and trace.count(StartRevert) == 0
    paused = [st for st in trace.steps if st.status.pause_reason == "Inconclusive"]
    assert paused, "the outage paused the push"
    # the one conclusive reading before the outage vouches for nothing (the next one had no data: the
    # stretch is dropped), 20 s without data, then the whole 8 s hold
    assert completed_at(trace) == AVAILABLE + 1 + 20 + 8
    assert trace.status.phase == "Succeeded"
