"""Whole pushes through the simulation driver: plan → fake execute → reduce on a fake clock."""

from __future__ import annotations

from typing import Any

import pytest
from sim import (
    FakeClock,
    FakeDeployment,
    FakeGit,
    SimError,
    Trace,
    World,
    at,
    describe,
    make_spec,
    per_phase,
    run,
    seconds,
    series,
)

from controller.models.common import get_condition
from controller.models.release import ReleaseSpec, ReleaseStatus
from controller.release.actions import (
    ANNOTATION_ABORT,
    ANNOTATION_PAUSED,
    ANNOTATION_PROMOTE,
    ApplyPhase,
    CaptureBaseline,
    CompletePhase,
    EvaluateGates,
    FailPush,
    MarkRolledBack,
    RecordRevert,
    SetPause,
    Snapshot,
    StartRevert,
    Undo,
    Wait,
)

LOAD: dict[str, Any] = {
    "name": "load",
    "query": "avg(node_load1)",
    "max": 6,
    "maxIncreasePercent": 25,
    "interval": "10s",
}
REGS: dict[str, Any] = {
    "name": "registrations",
    "query": "sum(rate(reg[1m]))",
    "maxDecreasePercent": 20,
    "interval": "10s",
}
ALL_FOUR = ("chat-a", "chat-b", "web", "web-canary")


def spec(*, load: dict[str, Any] | None = None, **extra: Any) -> ReleaseSpec:
    """The scenarios below keep ``onFailure.undo: rolling`` (today's sequences); the fast undo has its own."""
    on_failure = {"undo": "rolling", **extra.pop("onFailure", {})}
    return make_spec(gates=[{**LOAD, **(load or {})}, REGS], onFailure=on_failure, **extra)


def world(load: Any = None, regs: Any = None, **kwargs: Any) -> World:
    """Four live Deployments; healthy metrics unless scripted (load 4.0 → 4.1, registrations 100 → 98)."""
    return World.of(metrics={"load": load or series(4.0, 4.1), "registrations": regs or series(100.0, 98.0)}, **kwargs)


def breach_in(phase: str, value: float = 7.2) -> Any:
    """The load gate breaches on the second reading of ``phase`` (on the first one in the watch window)."""
    return per_phase({phase: series(4.0, 4.1, value, watch=value)}, series(4.0, 4.1))


def cond(status: ReleaseStatus, type_: str) -> tuple[str, str] | None:
    c = get_condition(status.conditions, type_)
    return None if c is None else (c.status, c.reason)


def phase_states(status: ReleaseStatus) -> dict[str, str]:
    return {p.name: p.state for p in status.phases}


def push(s: ReleaseSpec, w: World, **kwargs: Any) -> Trace:
    return run(s, ReleaseStatus(), w, FakeClock(), **kwargs)


HAPPY = [
    "Begin",
    "Snapshot canary web-canary",
    "CaptureBaseline canary load,registrations",
    "ApplyPhase canary web-canary",
    "MarkAvailable canary",
    "EvaluateGates canary load,registrations x7",
    "CompletePhase canary",
    "Snapshot chat chat-a,chat-b",
    "CaptureBaseline chat load,registrations",
    "ApplyPhase chat chat-a,chat-b",
    "MarkAvailable chat",
    "EvaluateGates chat load,registrations x13",
    "CompletePhase chat",
    "Snapshot everything-else web",
    "CaptureBaseline everything-else load,registrations",
    "ApplyPhase everything-else web",
    "MarkAvailable everything-else",
    "EvaluateGates everything-else load,registrations x13",
    "CompletePhase everything-else",
]


# ---------------------------------------------------------------- happy path
@pytest.mark.parametrize(
    ("watch", "tail", "end"),
    [("0s", [], 315), ("1m", ["EvaluateGates watch load,registrations x7", "CompletePhase watch"], 375)],
    ids=["without-watch", "with-watch"],
)
def test_happy_path_three_phases_four_deployments(watch: str, tail: list[str], end: int) -> None:
    s, w = spec(watch=watch), world()
    trace = push(s, w)
    st = trace.status

    assert trace.named() == HAPPY + tail
    assert (st.phase, st.current_phase, st.completed_at, st.failure, st.revert) == (
        "Succeeded",
        None,
        at(end),
        None,
        None,
    )
    assert [(p.name, p.state, p.deployments) for p in st.phases] == [
        ("canary", "Passed", ["web-canary"]),
        ("chat", "Passed", ["chat-a", "chat-b"]),
        ("everything-else", "Passed", ["web"]),
    ]
    assert [(p.started_at, p.available_at, p.hold_until, p.completed_at) for p in st.phases] == [
        (at(0), at(5), at(65), at(65)),
        (at(65), at(70), at(190), at(190)),
        (at(190), at(195), at(315), at(315)),
    ]
    assert st.snapshot is not None and (st.snapshot.deployments, st.snapshot.absent) == (list(ALL_FOUR), [])
    assert cond(st, "Ready") == ("True", "Succeeded")
    assert cond(st, "GatesPassing") == ("True", "GatesPass")
    assert cond(st, "RolledBack") is None and cond(st, "GitReverted") is None
    phases = ["canary", "chat", "everything-else", *(["watch"] if tail else [])]
    load_rows = [r for r in st.gauges if r.gate == "load"]
    assert [(r.phase, r.pre_push, r.post_push, r.verdict, r.threshold) for r in load_rows] == [
        (p, 4.0, 4.1, "Pass", ">6 or >+25%") for p in phases
    ]
    regs = [r for r in st.gauges if r.gate == "registrations"]
    assert {(r.delta, r.delta_percent, r.threshold) for r in regs} == {(-2.0, -2.0, "<-20%")}
    assert all(d.applied == 1 and d.restored == 0 for d in w.deployments.values())
    assert w.git.attempts == 0


# ---------------------------------------------------------------- breaches → rollback + revert
@pytest.mark.parametrize(
    ("phase", "restore", "breach_at", "states"),
    [
        ("canary", ("web-canary",), 15, {"canary": "Failed", "chat": "Pending", "everything-else": "Pending"}),
        (
            "chat",
            ("chat-a", "chat-b", "web-canary"),
            80,
            {"canary": "RolledBack", "chat": "Failed", "everything-else": "Pending"},
        ),
        ("everything-else", ALL_FOUR, 205, {"canary": "RolledBack", "chat": "RolledBack", "everything-else": "Failed"}),
        ("watch", ALL_FOUR, 315, {"canary": "RolledBack", "chat": "RolledBack", "everything-else": "RolledBack"}),
    ],
    ids=["phase-1", "phase-2", "phase-3", "watch"],
)
def test_breach_rolls_back_everything_pushed_and_reverts(
    phase: str, restore: tuple[str, ...], breach_at: int, states: dict[str, str]
) -> None:
    s, w = spec(watch="10m"), world(load=breach_in(phase))
    trace = push(s, w)
    st = trace.status

    fail = trace.first(FailPush)
    expected = f"gate load 7.20 > 6; +80.00% > +25% (pre-push 4.00) in phase {phase}"
    assert fail == FailPush("GateFailed", expected, gate="load", phase=phase)
    i = trace.actions.index(fail)
    after = [(st.at, st.action) for st in trace.steps[i + 1 :] if not isinstance(st.action, Wait)]
    # the restore goes out first, the revert starts right beside it; it lands (1 s) before the restored
    # Deployments are Available (3 s)
    assert [(t, describe(a)) for t, a in after] == [
        (at(breach_at), describe(Undo(restore, ()))),
        (at(breach_at), "StartRevert"),
        (at(breach_at + 1), "RecordRevert Pushed"),
        (at(breach_at + 3), "MarkRolledBack"),
    ]
    assert after[0][1] == Undo(restore, ()) and after[3][1] == MarkRolledBack()
    waits = [st.action for st in trace.steps[i + 1 :] if isinstance(st.action, Wait)]
    assert waits and all(w.reason.startswith("waiting for restored") for w in waits)
    assert trace.steps[i].at == at(breach_at)

    assert (st.phase, st.failed_gate, st.current_phase) == ("RolledBack", "load", None)
    assert st.failure is not None and (st.failure.reason, st.failure.gate, st.failure.phase) == (
        "GateFailed",
        "load",
        phase,
    )
    assert phase_states(st) == states
    assert st.undo is not None and (st.undo.restored, st.undo.deleted, st.undo.at) == (list(restore), [], at(breach_at))
    assert (st.rolled_back_at, st.completed_at) == (at(breach_at + 3), at(breach_at + 3))
    assert st.revert is not None and (st.revert.state, st.revert.commit, st.revert.attempts) == (
        "Pushed",
        w.git.commits[0],
        1,
    )
    assert cond(st, "RolledBack") == ("True", "Restored")
    assert cond(st, "GitReverted") == ("True", "Pushed")
    assert cond(st, "Ready") == ("False", "GateFailed")
    assert cond(st, "GatesPassing") == ("False", "GateFailed")
    assert st.message == f"rolled back: {expected}"
    assert len(w.git.commits) == 1
    assert {n for n, d in w.deployments.items() if d.restored} == set(restore)
    assert all(d.available for d in w.deployments.values())


def test_breach_deletes_deployments_the_push_created() -> None:
    s = spec()
    w = world(load=breach_in("everything-else"))
    w.deployments["web"] = FakeDeployment("web", {"app": "web"}, exists=False, available=False)
    trace = push(s, w)

    assert trace.first(Snapshot) == Snapshot("canary", ("web-canary",))
    assert "Snapshot everything-else web" in trace.named()
    assert trace.status.snapshot is not None and trace.status.snapshot.absent == ["web"]
    assert trace.first(Undo) == Undo(("chat-a", "chat-b", "web-canary"), ("web",))
    assert trace.status.undo is not None and trace.status.undo.deleted == ["web"]
    assert trace.status.phase == "RolledBack"
    assert not w.deployments["web"].exists and w.deployments["web"].deleted == 1


@pytest.mark.parametrize(
    ("readings", "evaluations", "final"),
    [
        ((7.2, 7.2, 7.2), 3, "RolledBack"),
        ((7.2, 7.2, 4.1), 7, "Succeeded"),
        ((7.2, 4.1, 7.2, 7.2, 4.1), 7, "Succeeded"),
        ((7.2, None, 7.2, 7.2), 4, "RolledBack"),
    ],
    ids=["third-breach-fails", "two-breaches-tolerated", "pass-resets-count", "gap-does-not-reset-count"],
)
def test_failure_limit_two(readings: tuple[float | None, ...], evaluations: int, final: str) -> None:
    s = spec(load={"failureLimit": 2})
    trace = push(s, world(load=per_phase({"canary": series(4.0, *readings)}, series(4.0, 4.1))))
    named = trace.named()
    assert named[5] == f"EvaluateGates canary load,registrations x{evaluations}"
    assert trace.status.phase == final
    if final == "RolledBack":
        assert named[6] == "FailPush GateFailed gate=load phase=canary"


# ---------------------------------------------------------------- inconclusive readings
def test_inconclusive_pauses_never_promotes_then_recovers() -> None:
    s = spec(load={"inconclusiveLimit": 10})
    readings: list[float | None] = [None] * 8
    trace = push(s, world(load=per_phase({"canary": series(4.0, *readings, 4.1)}, series(4.0, 4.1))))

    first_reading = next(i for i, st in enumerate(trace.steps) if isinstance(st.action, EvaluateGates))
    canary_steps = [st for st in trace.steps[first_reading:] if st.at < at(85)]
    assert canary_steps, "expected readings before the recovery"
    for step in canary_steps:
        assert (step.status.phase, step.status.pause_reason, step.status.user_paused) == (
            "Paused",
            "Inconclusive",
            False,
        ), step
        assert not isinstance(step.action, CompletePhase)
        assert cond(step.status, "GatesPassing") == ("Unknown", "GatesInconclusive")
    assert any(step.at >= at(65) for step in canary_steps), "the wall-clock hold ended while inconclusive"
    assert all(step.status.phases[0].observed_seconds == 0.0 for step in canary_steps), "time without data counted"
    # the 60 s hold counts from the first conclusive reading (85 s): 60 s of observed time, not wall time
    done = next(st for st in trace.steps if isinstance(st.action, CompletePhase))
    assert (done.action, done.at) == (CompletePhase("canary"), at(145))
    recovered = next(st for st in trace.steps if st.at == at(85) and isinstance(st.action, EvaluateGates))
    assert (recovered.status.phase, recovered.status.pause_reason) == ("Holding", None)
    assert trace.status.phase == "Succeeded"
    assert trace.status.phases[0].observed_seconds == 60.0
    load_canary = next(r for r in trace.status.gauges if (r.gate, r.phase) == ("load", "canary"))
    assert (load_canary.readings, load_canary.inconclusive, load_canary.verdict) == (15, 0, "Pass")


def test_inconclusive_past_limit_keeps_the_push_paused_by_default() -> None:
    s = spec(load={"inconclusiveLimit": 3})
    w = world(load=per_phase({"chat": series(4.0, None)}, series(4.0, 4.1)))
    trace = run(s, ReleaseStatus(), w, FakeClock(), until=at(1000))
    assert trace.count(FailPush) == 0 and trace.count(Undo) == 0 and trace.count(StartRevert) == 0
    assert "CompletePhase chat" not in trace.named()
    st = trace.status
    assert (st.phase, st.pause_reason, st.current_phase, st.failure, st.revert) == (
        "Paused",
        "Inconclusive",
        "chat",
        None,
        None,
    )
    row = next(r for r in st.gauges if (r.gate, r.phase) == ("load", "chat"))
    assert row.verdict == "Inconclusive" and "(limit 3)" in row.message
    assert cond(st, "GatesPassing") == ("Unknown", "InconclusiveLimitExceeded")
    assert st.phases[1].observed_seconds == 0.0
    assert w.git.attempts == 0 and all(d.restored == 0 for d in w.deployments.values())


@pytest.mark.parametrize(
    ("policy", "revert_state", "commits"),
    [("rollback", "Skipped", 0), ("rollbackAndRevert", "Pushed", 1)],
    ids=["rollback-without-revert", "rollback-and-revert"],
)
def test_inconclusive_past_limit_fails_only_by_policy(policy: str, revert_state: str, commits: int) -> None:
    s = spec(load={"inconclusiveLimit": 3}, onInconclusive=policy)
    w = world(load=per_phase({"chat": series(4.0, None)}, series(4.0, 4.1)))
    trace = push(s, w)
    assert trace.first(FailPush) == FailPush(
        "GatesInconclusive",
        f"gate load no data: inconclusive 4 times in a row (limit 3) in phase chat (onInconclusive: {policy})",
        gate="load",
        phase="chat",
        revert=policy == "rollbackAndRevert",
    )
    assert "EvaluateGates chat load,registrations x4" in trace.named()
    assert trace.first(Undo) == Undo(("chat-a", "chat-b", "web-canary"), ())
    st = trace.status
    assert (st.phase, st.pause_reason, st.user_paused) == ("RolledBack", None, False)
    assert st.revert is not None and st.revert.state == revert_state
    assert len(w.git.commits) == commits == trace.count(StartRevert)


@pytest.mark.parametrize(
    ("policy", "final"),
    [("pause", "Paused"), ("rollback", "RolledBack")],
    ids=["pause", "rollback"],
)
def test_pre_push_without_data_and_relative_bound_only_is_inconclusive(policy: str, final: str) -> None:
    s = make_spec(gates=[{**REGS, "inconclusiveLimit": 1}], onInconclusive=policy)
    trace = run(s, ReleaseStatus(), World.of(metrics={"registrations": series(None, 98.0)}), FakeClock(), until=at(600))
    row = next(r for r in trace.status.gauges if r.phase == "canary")
    assert (row.pre_push, row.post_push, row.verdict) == (None, 98.0, "Inconclusive")
    assert row.inconclusive >= 2
    assert trace.status.phase == final
    assert [a.reason for a in trace.actions if isinstance(a, FailPush)] == (
        ["GatesInconclusive"] if policy == "rollback" else []
    )


@pytest.mark.parametrize(
    ("during_watch", "final"),
    [(98.0, "Succeeded"), (70.0, "RolledBack")],
    ids=["healthy", "drops-in-watch"],
)
def test_watch_only_gate_compares_with_the_value_before_the_push(during_watch: float, final: str) -> None:
    s = make_spec(gates=[LOAD, {**REGS, "phases": ["watch"]}], watch="1m")
    # only the watch window reads this gate: call 0 is the capture before the first phase, then readings
    trace = push(s, world(regs=lambda phase, call: 100.0 if call == 0 else during_watch))
    named = trace.named()
    assert named[2:5] == [
        "CaptureBaseline canary load",
        "CaptureBaseline watch registrations",
        "ApplyPhase canary web-canary",
    ]
    assert not any(n.startswith("CaptureBaseline watch") for n in named[5:])
    watch_row = next(r for r in trace.status.gauges if (r.gate, r.phase) == ("registrations", "watch"))
    assert (watch_row.gate, watch_row.pre_push, watch_row.post_push) == ("registrations", 100.0, during_watch)
    assert trace.status.phase == final
    if final == "RolledBack":
        assert trace.first(FailPush) == FailPush(
            "GateFailed",
            "gate registrations -30.00% < -20% (pre-push 100.00) in phase watch",
            gate="registrations",
            phase="watch",
        )


# ---------------------------------------------------------------- dry run
def test_dry_run_gate_breaching_never_fails() -> None:
    s = spec(load={"dryRun": True}, watch="1m")
    trace = push(s, world(load=per_phase({"chat": series(4.0, 9.0)}, series(4.0, 4.1))))
    st = trace.status
    assert st.phase == "Succeeded" and trace.count(FailPush) == 0 and trace.count(Undo) == 0
    chat = next(r for r in st.gauges if (r.gate, r.phase) == ("load", "chat"))
    assert (chat.verdict, chat.breaches, chat.dry_run, chat.post_push) == ("Fail", 13, True, 9.0)
    assert chat.message == "9.00 > 6; +125.00% > +25% (pre-push 4.00) [dry run: not acted on]"


# ---------------------------------------------------------------- abort
def _state(status: ReleaseStatus, name: str) -> str:
    return phase_states(status).get(name, "")


@pytest.mark.parametrize(
    ("where", "stop", "restore"),
    [
        ("progressing", lambda st: _state(st, "chat") == "Progressing", ("chat-a", "chat-b", "web-canary")),
        ("holding", lambda st: _state(st, "chat") == "Holding", ("chat-a", "chat-b", "web-canary")),
        ("between-phases", lambda st: _state(st, "canary") == "Passed", ("web-canary",)),
    ],
    ids=["progressing", "holding", "between-phases"],
)
def test_abort_rolls_back(where: str, stop: Any, restore: tuple[str, ...]) -> None:
    s, w, clock = spec(), world(), FakeClock()
    first = run(s, ReleaseStatus(), w, clock, stop_when=stop)
    w.annotations[ANNOTATION_ABORT] = "numbers look wrong"
    trace = run(s, first.status, w, clock)
    current = first.status.current_phase
    assert trace.actions[0] == FailPush("Aborted", "aborted by user: numbers look wrong", phase=current)
    assert trace.actions[1:3] == [Undo(restore, ()), StartRevert()]
    st = trace.status
    assert (st.phase, st.failure and st.failure.reason) == ("RolledBack", "Aborted")
    assert cond(st, "Ready") == ("False", "Aborted") and cond(st, "GitReverted") == ("True", "Pushed")
    assert len(w.git.commits) == 1


def test_abort_before_anything_applied_fails_without_undo() -> None:
    s, w, clock = spec(), world(), FakeClock()
    first = run(s, ReleaseStatus(), w, clock, stop_when=lambda st: st.snapshot is not None)
    w.annotations[ANNOTATION_ABORT] = "wrong revision"
    trace = run(s, first.status, w, clock)
    assert [describe(a) for a in trace.actions] == ["FailPush Aborted gate=None phase=canary"]
    st = trace.status
    assert (st.phase, st.completed_at, st.undo, st.revert) == ("Failed", at(0), None, None)
    assert cond(st, "Ready") == ("False", "Aborted") and cond(st, "RolledBack") is None
    assert w.undos == 0 and w.git.attempts == 0 and all(d.applied == 0 for d in w.deployments.values())


# ---------------------------------------------------------------- pause / resume
def test_pause_stops_new_phases_but_not_gates_and_resume_continues() -> None:
    s, w, clock = spec(), world(), FakeClock()
    first = run(s, ReleaseStatus(), w, clock, stop_when=lambda st: _state(st, "canary") == "Holding")
    w.annotations[ANNOTATION_PAUSED] = "true"
    paused = run(s, first.status, w, clock, until=at(300))
    assert paused.actions[0] == SetPause(True)
    st = paused.status
    assert (st.phase, st.pause_reason, st.user_paused, st.current_phase) == ("Paused", "User", True, "canary")
    assert cond(st, "Paused") == ("True", "UserPaused")
    assert not any(isinstance(a, CompletePhase | Snapshot | ApplyPhase) for a in paused.actions)
    assert paused.count(EvaluateGates) == 30  # every 10 s from 5 s to 295 s
    assert isinstance(paused.actions[-1], Wait) and paused.actions[-1].reason == "paused in canary"
    assert (st.phases[0].observed_seconds, st.phases[0].observed_since) == (0.0, None)  # paused time never counts

    del w.annotations[ANNOTATION_PAUSED]
    rest = run(s, st, w, clock)
    assert rest.actions[0] == SetPause(False)
    assert rest.steps[0].status.phases[0].observed_since == at(300)
    complete = next(step for step in rest.steps if isinstance(step.action, CompletePhase))
    # the whole 60 s hold is observed after the resume: nothing of the 295 s paused counted
    assert (complete.action, complete.at) == (CompletePhase("canary"), at(360))
    assert rest.status.phase == "Succeeded" and cond(rest.status, "Paused") == ("False", "Resumed")


def test_pause_before_a_phase_holds_it_pending() -> None:
    s, w, clock = spec(), world(), FakeClock()
    first = run(s, ReleaseStatus(), w, clock, stop_when=lambda st: _state(st, "canary") == "Passed")
    w.annotations[ANNOTATION_PAUSED] = "true"
    paused = run(s, first.status, w, clock, until=at(1000))
    assert paused.actions[0] == SetPause(True)
    assert {describe(a) for a in paused.actions[1:]} == {"Wait"}
    assert paused.actions[1] == Wait(None, "paused before phase chat")
    assert (paused.status.phase, paused.status.pause_reason, _state(paused.status, "chat")) == (
        "Paused",
        "User",
        "Pending",
    )


def test_breach_while_paused_still_rolls_back() -> None:
    s, w, clock = (
        spec(),
        world(load=per_phase({"canary": series(4.0, 4.1, 4.1, 4.1, 7.2)}, series(4.0, 4.1))),
        FakeClock(),
    )
    first = run(s, ReleaseStatus(), w, clock, stop_when=lambda st: _state(st, "canary") == "Holding")
    w.annotations[ANNOTATION_PAUSED] = "true"
    trace = run(s, first.status, w, clock)
    fail_step = next(st for st in trace.steps if isinstance(st.action, FailPush))
    assert (describe(fail_step.action), fail_step.at) == ("FailPush GateFailed gate=load phase=canary", at(35))
    assert trace.first(Undo) == Undo(("web-canary",), ())
    st = trace.status
    assert (st.phase, st.pause_reason, st.user_paused) == ("RolledBack", None, False)


# ---------------------------------------------------------------- promote
def test_promote_token_skips_one_hold() -> None:
    s, w, clock = spec(), world(), FakeClock()
    first = run(s, ReleaseStatus(), w, clock, stop_when=lambda st: any(r.readings for r in st.gauges))
    w.annotations[ANNOTATION_PROMOTE] = "ship-it-1"
    trace = run(s, first.status, w, clock)
    completes = [(st.action, st.at) for st in trace.steps if isinstance(st.action, CompletePhase)]
    assert completes == [
        (CompletePhase("canary", promoted="ship-it-1"), at(5)),
        (CompletePhase("chat"), at(130)),
        (CompletePhase("everything-else"), at(255)),
    ]
    st = trace.status
    assert (st.phase, st.promoted) == ("Succeeded", "ship-it-1")
    assert st.phases[0].completed_at == at(5)


def test_new_promote_token_skips_the_next_hold() -> None:
    s, w, clock = spec(), world(), FakeClock()
    w.annotations[ANNOTATION_PROMOTE] = "t1"
    first = run(s, ReleaseStatus(), w, clock, stop_when=lambda st: _state(st, "chat") == "Holding")
    assert first.first(CompletePhase) == CompletePhase("canary", promoted="t1")
    w.annotations[ANNOTATION_PROMOTE] = "t2"
    trace = run(s, first.status, w, clock)
    assert [a for a in trace.actions if isinstance(a, CompletePhase)] == [
        CompletePhase("chat", promoted="t2"),
        CompletePhase("everything-else"),
    ]


def test_promote_while_inconclusive_leaves_the_pause_behind() -> None:
    s, w, clock = (
        spec(load={"inconclusiveLimit": 10}),
        world(load=per_phase({"canary": series(4.0, None)}, series(4.0, 4.1))),
        FakeClock(),
    )
    first = run(s, ReleaseStatus(), w, clock, stop_when=lambda st: st.pause_reason == "Inconclusive")
    assert (first.status.phase, first.status.user_paused, _state(first.status, "canary")) == (
        "Paused",
        False,
        "Holding",
    )
    w.annotations[ANNOTATION_PROMOTE] = "t1"
    trace = run(s, first.status, w, clock)
    i = trace.actions.index(CompletePhase("canary", promoted="t1"))
    chat_rollout = [st.status for st in trace.steps[i : i + 4]]
    assert [describe(st.action) for st in trace.steps[i : i + 4]] == [
        "CompletePhase canary promoted=t1",
        "Snapshot chat chat-a,chat-b",
        "CaptureBaseline chat load,registrations",
        "ApplyPhase chat chat-a,chat-b",
    ]
    assert {(st.phase, st.pause_reason, st.user_paused) for st in chat_rollout} == {("Progressing", None, False)}
    assert trace.status.phase == "Succeeded"


# ---------------------------------------------------------------- rollout deadline
def test_progress_deadline_exceeded_rolls_back() -> None:
    s = spec()
    w = world(rollout_overrides={"chat-b": None})
    trace = push(s, w)
    step = next(st for st in trace.steps if isinstance(st.action, FailPush))
    assert step.action == FailPush(
        "ProgressDeadlineExceeded", "phase chat: chat-b not Available after 10m", phase="chat"
    )
    assert step.at == at(65 + 600)
    assert trace.first(Undo) == Undo(("chat-a", "chat-b", "web-canary"), ())
    assert trace.status.phase == "RolledBack"
    assert cond(trace.status, "Ready") == ("False", "ProgressDeadlineExceeded")
    assert cond(trace.status, "GatesPassing") == ("True", "GatesPass")


def test_restore_that_never_becomes_available_ends_after_the_deadline() -> None:
    s = spec()
    w = world(load=breach_in("chat"), restore_time=None)
    trace = push(s, w)
    last = trace.steps[-1]
    assert last.action == MarkRolledBack("restored, but chat-a, chat-b, web-canary not Available after 10m")
    assert last.at == at(80 + 600)
    assert trace.status.phase == "RolledBack"
    assert cond(trace.status, "RolledBack") == ("True", "Restored")


# ---------------------------------------------------------------- onFailure switches
def test_no_rollback_still_reverts_and_ends_failed() -> None:
    s = spec(onFailure={"rollback": False})
    w = world(load=breach_in("chat"))
    trace = push(s, w)
    assert trace.first(FailPush).revert and trace.count(Undo) == 0  # nothing to restore, the revert still runs
    assert trace.count(StartRevert) == 1
    st = trace.status
    assert st.phase == "Failed"
    assert cond(st, "RolledBack") == ("False", "NotRolledBack")
    assert cond(st, "GitReverted") == ("True", "Pushed")
    assert len(w.git.commits) == 1 and all(d.restored == 0 for d in w.deployments.values())
    assert phase_states(st) == {"canary": "Passed", "chat": "Failed", "everything-else": "Pending"}


def test_no_revert_commit_skips_git() -> None:
    s = spec(onFailure={"revertCommit": False})
    w = world(load=breach_in("chat"))
    trace = push(s, w)
    assert trace.first(Undo) == Undo(("chat-a", "chat-b", "web-canary"), ())
    st = trace.status
    assert st.phase == "RolledBack"
    assert st.revert is not None and (st.revert.state, st.revert.commit) == ("Skipped", None)
    assert cond(st, "GitReverted") == ("False", "Skipped")
    assert w.git.attempts == 0


def test_neither_rollback_nor_revert_fails_in_place() -> None:
    s = spec(onFailure={"rollback": False, "revertCommit": False})
    w = world(load=breach_in("chat"))
    trace = push(s, w)
    assert trace.count(Undo) == 0 and trace.status.phase == "Failed"
    assert w.git.attempts == 0 and all(d.restored == 0 for d in w.deployments.values())


# ---------------------------------------------------------------- git revert retries
@pytest.mark.parametrize(
    ("script", "attempts", "state", "reverted"),
    [
        (["Error"] * 10, 11, "Pushed", ("True", "Pushed")),
        (["Error", "Error"], 3, "Pushed", ("True", "Pushed")),
        (["Conflict"], 1, "Conflict", ("False", "Conflict")),
    ],
    ids=["error-retried-until-it-lands", "error-then-pushed", "conflict-not-retried"],
)
def test_revert_retries(script: list[str], attempts: int, state: str, reverted: tuple[str, str]) -> None:
    s = spec()
    w = world(load=breach_in("canary"), git=FakeGit(script=list(script)))
    trace = push(s, w)
    assert [st.action for st in trace.steps if isinstance(st.action, Undo)] == [Undo(("web-canary",), ())]
    assert trace.count(StartRevert) == attempts == len(w.reverts_started)
    recorded = [a.result.state for a in trace.actions if isinstance(a, RecordRevert)]
    assert recorded == ["Error"] * (attempts - 1) + [state]
    st = trace.status
    assert st.revert is not None and (st.revert.state, st.revert.attempts) == (state, attempts)
    assert cond(st, "GitReverted") == reverted
    assert st.phase == "RolledBack" and cond(st, "RolledBack") == ("True", "Restored")
    # the cluster side never waits for Git: restored 3 s after the breach, whatever the revert does
    assert st.rolled_back_at == at(18)
    assert w.git.attempts == attempts and w.deployments["web-canary"].restored == 1
    assert len(w.git.commits) == (1 if state == "Pushed" else 0)


# ---------------------------------------------------------------- restarts
SCENARIOS: dict[str, tuple[ReleaseSpec, Any]] = {
    "happy": (spec(watch="1m"), lambda: world()),
    "breach-phase-2": (spec(watch="1m"), lambda: world(load=breach_in("chat"))),
    "breach-watch": (spec(watch="1m"), lambda: world(load=breach_in("watch"))),
    "revert-retries": (spec(), lambda: world(load=breach_in("chat"), git=FakeGit(script=["Error"] * 3))),
    "revert-retries-past-the-restore": (
        spec(),
        lambda: world(load=breach_in("chat"), git=FakeGit(script=["Unreachable"] * 6 + ["AuthenticationFailed"])),
    ),
    "revert-conflict": (spec(), lambda: world(load=breach_in("canary"), git=FakeGit(script=["Conflict"]))),
    "inconclusive-rollback-policy": (
        spec(load={"inconclusiveLimit": 2}, onInconclusive="rollback"),
        lambda: world(load=per_phase({"chat": series(4.0, None)}, series(4.0, 4.1))),
    ),
    "inconclusive-recovers": (
        spec(load={"inconclusiveLimit": 10}),
        lambda: world(load=per_phase({"chat": series(4.0, None, None, None, 4.1)}, series(4.0, 4.1))),
    ),
    "watch-only-gate": (
        make_spec(gates=[LOAD, {**REGS, "phases": ["watch"]}], watch="1m"),
        lambda: world(regs=lambda phase, call: 100.0 if call == 0 else 70.0),
    ),
    "tolerated-breaches": (
        spec(load={"failureLimit": 2}),
        lambda: world(load=per_phase({"canary": series(4.0, 7.2, 7.2, 4.1)}, series(4.0, 4.1))),
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS), ids=list(SCENARIOS))
def test_restart_after_every_step_changes_nothing(name: str) -> None:
    s, make_world = SCENARIOS[name]
    plain_world, restarted_world = make_world(), make_world()
    plain = push(s, plain_world)
    restarted = push(s, restarted_world, restart_each_step=True)
    assert restarted.side_effects == plain.side_effects
    assert restarted.actions == plain.actions
    assert restarted.status.model_dump(mode="json") == plain.status.model_dump(mode="json")
    assert restarted_world.git.commits == plain_world.git.commits
    assert [d.applied for d in restarted_world.deployments.values()] == [
        d.applied for d in plain_world.deployments.values()
    ]


def test_side_effects_of_the_breach_path() -> None:
    trace = push(spec(watch="1m"), world(load=breach_in("chat")), restart_each_step=True)
    assert [describe(a) for a in trace.side_effects] == [
        "Snapshot canary web-canary",
        "ApplyPhase canary web-canary",
        "Snapshot chat chat-a,chat-b",
        "ApplyPhase chat chat-a,chat-b",
        "Undo restore=chat-a,chat-b,web-canary delete=",
        "StartRevert",
    ]


# ---------------------------------------------------------------- the driver's own guards
@pytest.mark.parametrize(
    ("first", "again", "message"),
    [
        (Snapshot("canary", ("web-canary",)), Snapshot("chat", ("web-canary", "chat-a")), "second snapshot"),
        (ApplyPhase("canary", ("web-canary",)), ApplyPhase("canary", ("web-canary",)), "applied twice"),
        (ApplyPhase("canary", ("web-canary",)), CaptureBaseline("canary", ("load",)), "after it was applied"),
        (StartRevert(), StartRevert(), "while one is running"),
        (Undo(("web-canary",), ()), Undo(("web-canary",), ()), "second restore"),
    ],
    ids=["snapshot", "apply", "baseline-after-apply", "revert-in-flight", "restore"],
)
def test_sim_guard_catches_repeated_side_effects(first: Any, again: Any, message: str) -> None:
    s, w = spec(), world()
    w.guard(first)
    w.execute(s, first, at(0))
    with pytest.raises(SimError, match=message):
        w.guard(again)


def test_sim_detects_a_stuck_release() -> None:
    w = world(manifests_ready=False)
    with pytest.raises(SimError, match="not final after 20 steps"):
        push(spec(), w, max_steps=20)


def test_sim_restart_mode_round_trips_through_json() -> None:
    trace = push(spec(), world(), restart_each_step=True, stop_when=lambda st: _state(st, "canary") == "Holding")
    assert trace.status.phases[0].hold_until == at(65)
    assert trace.steps[-1].at == at(5) and seconds(5) == trace.steps[-1].at - at(0)


# ---------------------------------------------------------------- fast undo (the default)
@pytest.mark.parametrize("restart", [False, True], ids=["one-controller", "restart-each-step"])
def test_fast_undo_puts_the_strategy_back_once_the_old_version_is_available(restart: bool) -> None:
    s = make_spec(gates=[LOAD, REGS], watch="10m")
    assert s.on_failure.undo == "fast"
    w = world(load=breach_in("chat"))
    trace = push(s, w, restart_each_step=restart)
    st = trace.status

    i = trace.actions.index(trace.first(FailPush))
    after = [(x.at, describe(x.action)) for x in trace.steps[i + 1 :] if not isinstance(x.action, Wait)]
    restore = ("chat-a", "chat-b", "web-canary")
    assert after == [
        (at(80), describe(Undo(restore, ()))),
        (at(80), "StartRevert"),
        (at(81), "RecordRevert Pushed"),
        (at(83), f"RestoreStrategy {','.join(restore)}"),
        (at(83), "MarkRolledBack"),
    ]
    assert trace.first(Undo) == Undo(restore, (), restore)
    assert st.undo is not None and (st.undo.mode, st.undo.strategy_pending) == ("fast", [])
    assert st.undo.strategy_restored_at == at(83)
    assert st.phase == "RolledBack" and cond(st, "RolledBack") == ("True", "Restored")
    assert {n for n, d in w.deployments.items() if d.restored} == set(restore)
