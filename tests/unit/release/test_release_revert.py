"""The durable git revert: retried beside the loop with capped backoff until it lands, conflicts or a human
waives it; the cluster side never waits for it. Whole pushes through the simulation driver."""

from __future__ import annotations

from typing import Any

import pytest
from sim import GIT_ERRORS, FakeClock, FakeGit, Trace, World, at, make_spec, per_phase, roundtrip, run, seconds, series

from controller.models.common import get_condition
from controller.models.release import ReleaseSpec, ReleaseStatus
from controller.release.actions import (
    ANNOTATION_WAIVE_REVERT,
    MarkRolledBack,
    RecordRevert,
    StartRevert,
    Undo,
    WaiveRevert,
)
from controller.release.plan import revert_backoff, settled

LOAD: dict[str, Any] = {"name": "load", "query": "avg(node_load1)", "max": 6, "interval": "10s"}
BREACH_AT = 15  # the second canary reading breaches


def spec(**extra: Any) -> ReleaseSpec:
    return make_spec(gates=[LOAD], **extra)


def world(script: list[str], **kwargs: Any) -> World:
    load = per_phase({"canary": series(4.0, 4.1, 7.2)}, series(4.0, 4.1))
    return World.of(metrics={"load": load}, git=FakeGit(script=list(script)), **kwargs)


def push(s: ReleaseSpec, w: World, clock: FakeClock | None = None, **kwargs: Any) -> Trace:
    return run(s, ReleaseStatus(), w, clock or FakeClock(), **kwargs)


def at_of(trace: Trace, kind: type[Any]) -> list[float]:
    return [(st.at - at(0)).total_seconds() for st in trace.steps if isinstance(st.action, kind)]


def cond(status: ReleaseStatus, type_: str) -> tuple[str, str, str] | None:
    c = get_condition(status.conditions, type_)
    return None if c is None else (c.status, c.reason, c.message)


@pytest.mark.parametrize("down", [1, 3, 6, 12], ids=lambda n: f"down-for-{n}-attempts")
def test_git_down_then_up_pushes_exactly_one_revert(down: int) -> None:
    s, w = spec(), world(["Unreachable"] * down)
    trace = push(s, w)
    st = trace.status
    assert trace.count(StartRevert) == down + 1
    assert [a.result.state for a in trace.actions if isinstance(a, RecordRevert)] == ["Error"] * down + ["Pushed"]
    assert len(w.git.commits) == 1 and w.git.attempts == down + 1
    assert st.revert is not None and (st.revert.state, st.revert.attempts, st.revert.commit) == (
        "Pushed",
        down + 1,
        w.git.commits[0],
    )
    assert (st.revert.next_attempt_at, st.revert.attempt_started_at, st.revert.reason) == (None, None, None)
    assert cond(st, "GitReverted") == ("True", "Pushed", f"revert {w.git.commits[0]} on main")
    assert settled(s, st) and st.phase == "RolledBack"
    assert trace.count(Undo) == 1 and w.deployments["web-canary"].restored == 1


def test_attempts_back_off_2_4_8_16_30_30() -> None:
    trace = push(spec(), world(["Unreachable"] * 6))
    failed_at = [
        t
        for t, a in zip(
            at_of(trace, RecordRevert), (a for a in trace.actions if isinstance(a, RecordRevert)), strict=True
        )
        if a.result.state == "Error"
    ]
    started_at = at_of(trace, StartRevert)
    assert started_at[0] == BREACH_AT, "the first attempt starts with the rollback"
    gaps = [nxt - failed for failed, nxt in zip(failed_at, started_at[1:], strict=True)]
    assert gaps == [2, 4, 8, 16, 30, 30]


@pytest.mark.parametrize(
    ("failed", "delay"),
    [(0, 0), (1, 2), (2, 4), (3, 8), (4, 16), (5, 30), (6, 30), (40, 30), (10_000, 30)],
    ids=lambda v: str(v),
)
def test_revert_backoff_is_capped_exponential(failed: int, delay: int) -> None:
    assert revert_backoff(failed) == seconds(delay)


@pytest.mark.parametrize("code", ["AuthenticationFailed", "Unreachable", "Timeout"])
def test_the_reason_of_a_failing_attempt_is_carried_while_pending(code: str) -> None:
    s, w, clock = spec(), world([code] * 1000), FakeClock()
    trace = push(s, w, clock, until=at(120))
    st = trace.status
    assert not settled(s, st)
    assert st.phase == "RolledBack", "the cluster side is done whatever Git does"
    reason = f"{code}: {GIT_ERRORS[code][1]}"
    assert st.revert is not None and (st.revert.state, st.revert.reason) == ("Pending", reason)
    assert st.revert.attempts >= 5 and (st.revert.next_attempt_at is not None or st.revert.attempt_started_at)
    c = cond(st, "GitReverted")
    assert c is not None and c[:2] == ("False", "Pending") and code in c[2]
    assert w.git.commits == []


def test_a_conflict_settles_after_one_attempt() -> None:
    s, w = spec(), world(["Conflict"])
    trace = push(s, w)
    st = trace.status
    assert trace.count(StartRevert) == 1 and settled(s, st)
    assert st.revert is not None and (st.revert.state, st.revert.reason) == ("Conflict", "fake conflict")
    assert cond(st, "GitReverted") == ("False", "Conflict", "fake conflict")
    assert (st.phase, w.git.commits) == ("RolledBack", [])


@pytest.mark.parametrize(
    ("token", "by", "reason"),
    [
        ('{"by": "alice", "reason": "fixed forward", "withoutRevert": true}', "alice", "fixed forward"),
        ("revert by hand", "unknown", "revert by hand"),
    ],
    ids=["json-token", "plain-reason"],
)
def test_the_waive_annotation_settles_a_pending_revert(token: str, by: str, reason: str) -> None:
    s, w, clock = spec(), world(["Unreachable"] * 1000), FakeClock()
    first = push(s, w, clock, until=at(100))
    assert not settled(s, first.status)
    tried = w.git.attempts
    w.annotations[ANNOTATION_WAIVE_REVERT] = token
    rest = run(s, first.status, w, clock)
    assert rest.first(WaiveRevert) == WaiveRevert(by, reason)
    assert rest.count(StartRevert) == 0 and w.git.attempts <= tried + 1
    st = rest.status
    assert settled(s, st) and st.revert is not None and st.revert.state == "Waived"
    assert st.revert.reason == f"waived by {by}: {reason}"
    assert cond(st, "GitReverted") == ("False", "Waived", f"waived by {by}: {reason}; the commit stays")
    assert w.git.commits == []


def test_rolled_back_is_reached_while_the_revert_is_pending() -> None:
    s, w = spec(), world(["Unreachable"] * 8)
    trace = push(s, w)
    done = next(st for st in trace.steps if isinstance(st.action, MarkRolledBack))
    assert (done.at, done.status.phase) == (at(BREACH_AT + 3), "RolledBack")
    assert done.status.revert is not None and done.status.revert.state == "Pending"
    assert cond(done.status, "RolledBack") is not None and cond(done.status, "RolledBack")[:2] == ("True", "Restored")  # type: ignore[index]
    assert not settled(s, done.status)
    # the revert lands long after, without touching the cluster again
    assert trace.status.phase == "RolledBack" and trace.status.rolled_back_at == at(BREACH_AT + 3)
    assert trace.status.revert is not None and trace.status.revert.state == "Pushed"
    assert trace.count(Undo) == 1 and len(w.git.commits) == 1


@pytest.mark.parametrize(
    ("landed", "final"),
    [(False, "Pushed"), (True, "AlreadyReverted")],
    ids=["attempt-lost", "attempt-pushed-before-the-crash"],
)
def test_restart_mid_attempt_resumes_with_a_new_attempt(landed: bool, final: str) -> None:
    s, clock = spec(), FakeClock()
    w = world(["Unreachable"], revert_time=seconds(5))
    # run until the second attempt is in flight, then kill the controller
    first = push(
        s,
        w,
        clock,
        stop_when=lambda st: st.revert is not None and st.revert.attempts == 2 and bool(st.revert.attempt_started_at),
    )
    assert w.revert_job is not None
    w.crash(s, landed=landed)
    restarted = run(s, roundtrip(first.status), w, clock)
    assert restarted.actions[0] == StartRevert(), "a new attempt, at once: the one in flight died with the controller"
    st = restarted.status
    assert st.revert is not None and (st.revert.state, st.revert.attempts) == (final, 3)
    assert len(w.git.commits) == 1, "exactly one revert on the branch"
    assert settled(s, st)


def test_restart_while_waiting_for_the_backoff_keeps_the_schedule() -> None:
    s, clock = spec(), FakeClock()
    w = world(["Unreachable"] * 3)
    first = push(
        s,
        w,
        clock,
        stop_when=lambda st: (
            st.revert is not None and st.revert.attempts == 2 and st.revert.next_attempt_at is not None
        ),
    )
    due = first.status.revert.next_attempt_at  # type: ignore[union-attr]
    w.crash(s)
    restarted = run(s, roundtrip(first.status), w, clock)
    assert at_of(restarted, StartRevert)[0] == (due - at(0)).total_seconds()  # type: ignore[operator]
    assert len(w.git.commits) == 1
