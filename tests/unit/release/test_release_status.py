"""The status reducer, state in → state out: one parametrized case per (action, outcome)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from sim import RELEASE, at, make_spec, phases, release_status, row

from controller.gates.evaluate import Measurement
from controller.models.common import get_condition
from controller.models.release import (
    ReleaseSpec,
    ReleaseStatus,
    RevertStatus,
    UndoStatus,
)
from controller.release.actions import (
    Action,
    ActionFailed,
    ApplyPhase,
    Begin,
    CaptureBaseline,
    CompletePhase,
    Done,
    EvaluateGates,
    FailPush,
    MarkAvailable,
    MarkRolledBack,
    Outcome,
    Readings,
    RevertResult,
    SetPause,
    Snapshot,
    SnapshotTaken,
    Undo,
    Undone,
    Wait,
)
from controller.release.status import reduce, snapshot_configmap_name

LOAD = {"name": "load", "query": "avg(node_load1)", "max": 6, "maxIncreasePercent": 25, "interval": "10s"}
REGS = {"name": "registrations", "query": "sum(rate(reg[1m]))", "maxDecreasePercent": 20, "interval": "10s"}
SPEC = make_spec(gates=[LOAD, REGS])
WATCHED = make_spec(gates=[LOAD, REGS], watch="10m")
LIMITS = make_spec(gates=[{**LOAD, "failureLimit": 2}, REGS])
DRY = make_spec(gates=[{**LOAD, "dryRun": True}, REGS])
EXPERIMENT = make_spec(gates=[{"name": "ab", "experiment": {"name": "gdc", "failOn": "harm"}}])
NO_ROLLBACK = make_spec(gates=[LOAD], onFailure={"rollback": False})
NO_REVERT = make_spec(gates=[LOAD], onFailure={"revertCommit": False})
NEITHER = make_spec(gates=[LOAD], onFailure={"rollback": False, "revertCommit": False})

CM = f"{RELEASE}-snapshot"


def holding(rows: list[Any] | None = None, **extra: Any) -> ReleaseStatus:
    pre = [row("load", "canary", pre=4.0), row("registrations", "canary", pre=100.0)]
    extra.setdefault("phase", "Holding")
    return release_status(
        current="canary",
        phases=phases(canary="Holding"),
        gauges=pre if rows is None else rows,
        snapshot=["web-canary"],
        **extra,
    )


def readings(now: float = 10, **values: float | None) -> Readings:
    return Readings({k: Measurement(v, at(now)) for k, v in values.items()})


def cond(status: ReleaseStatus, type_: str) -> tuple[str, str] | None:
    c = get_condition(status.conditions, type_)
    return None if c is None else (c.status, c.reason)


def gauge(status: ReleaseStatus, gate: str, phase: str) -> tuple[Any, ...]:
    r = next(r for r in status.gauges if (r.gate, r.phase) == (gate, phase))
    return (r.pre_push, r.post_push, r.verdict, r.readings, r.breaches, r.inconclusive)


Check = Callable[[ReleaseStatus], Any]


@dataclass(frozen=True)
class Case:
    id: str
    status: ReleaseStatus
    action: Action
    outcome: Outcome
    expect: dict[str, Any]
    spec: ReleaseSpec | None = None
    now: float = 10
    checks: tuple[tuple[Check, Any], ...] = field(default_factory=tuple)


def fields(status: ReleaseStatus, keys: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in keys:
        if key.startswith("cond:"):
            out[key] = cond(status, key[5:])
        elif key == "states":
            out[key] = {p.name: p.state for p in status.phases}
        else:
            value: Any = status
            for part in key.split("."):
                value = getattr(value, part)
            out[key] = value
    return out


CASES = [
    # ---- starting
    Case(
        "begin",
        ReleaseStatus(),
        Begin((("canary", ("web-canary",)), ("chat", ("chat-a", "chat-b"))), ("web",), ("aaa", "bbb")),
        Done(),
        {
            "phase": "Progressing",
            "current_phase": "canary",
            "started_at": at(0),
            "states": {"canary": "Pending", "chat": "Pending"},
            "skipped_commits": ["aaa", "bbb"],
            "message": "pushing 3f9c2e1 in 2 phase(s); not in any phase: web",
            "cond:Ready": ("False", "Progressing"),
        },
        now=0,
    ),
    Case(
        "snapshot-merges-sorted",
        release_status(current="chat", phases=phases(canary="Passed"), snapshot=["web-canary"]),
        Snapshot("chat", ("chat-b", "chat-a")),
        SnapshotTaken(CM, ("chat-b",), ("chat-a",)),
        {"snapshot.config_map": CM, "snapshot.deployments": ["chat-b", "web-canary"], "snapshot.absent": ["chat-a"]},
    ),
    Case(
        "snapshot-first",
        release_status(current="canary", phases=phases()),
        Snapshot("canary", ("web-canary",)),
        SnapshotTaken(CM, ("web-canary",), ()),
        {"snapshot.deployments": ["web-canary"], "snapshot.absent": []},
    ),
    Case(
        "capture-baseline",
        release_status(current="canary", phases=phases(), snapshot=["web-canary"]),
        CaptureBaseline("canary", ("load", "registrations")),
        readings(0, load=4.13, registrations=None),
        {"phase": "Progressing", "states": {"canary": "Pending", "chat": "Pending", "everything-else": "Pending"}},
        checks=(
            (lambda s: gauge(s, "load", "canary"), (4.13, None, "Inconclusive", 0, 0, 0)),
            (lambda s: gauge(s, "registrations", "canary"), (None, None, "Inconclusive", 0, 0, 0)),
            (lambda s: [(r.at, r.threshold) for r in s.gauges], [(None, ">6 or >+25%"), (None, "<-20%")]),
        ),
    ),
    Case(
        "capture-baseline-nan-is-no-value",
        release_status(current="canary", phases=phases(), snapshot=["web-canary"]),
        CaptureBaseline("canary", ("load",)),
        readings(0, load=math.nan),
        {},
        checks=((lambda s: gauge(s, "load", "canary")[0], None),),
    ),
    Case(
        "apply",
        release_status(current="canary", phases=phases(), snapshot=["web-canary"]),
        ApplyPhase("canary", ("web-canary",)),
        Done(),
        {"phase": "Progressing", "states": {"canary": "Progressing", "chat": "Pending", "everything-else": "Pending"}},
        now=1,
        checks=((lambda s: s.phases[0].started_at, at(1)), (lambda s: s.message, "phase canary: applied web-canary")),
    ),
    Case(
        "mark-available-starts-hold",
        release_status(current="canary", phases=phases(canary="Progressing")),
        MarkAvailable("canary"),
        Done(),
        {"phase": "Holding", "message": "phase canary Available; holding until 12:01:05Z"},
        now=5,
        checks=(
            (
                lambda s: (s.phases[0].state, s.phases[0].available_at, s.phases[0].hold_until),
                ("Holding", at(5), at(65)),
            ),
        ),
    ),
    Case(
        "mark-available-while-user-paused",
        release_status(
            "Paused",
            current="canary",
            phases=phases(canary="Progressing"),
            paused_from="Progressing",
            pause_reason="User",
        ),
        MarkAvailable("canary"),
        Done(),
        {"phase": "Paused", "paused_from": "Holding", "pause_reason": "User"},
        now=5,
    ),
    # ---- gates
    Case(
        "evaluate-pass",
        holding(),
        EvaluateGates("canary", ("load", "registrations")),
        readings(load=4.95, registrations=99.0),
        {"phase": "Holding", "cond:GatesPassing": ("True", "GatesPass")},
        checks=(
            (lambda s: gauge(s, "load", "canary"), (4.0, 4.95, "Pass", 1, 0, 0)),
            (lambda s: next(r.at for r in s.gauges if r.gate == "load"), at(10)),
        ),
    ),
    Case(
        "evaluate-only-listed-gates",
        holding(),
        EvaluateGates("canary", ("load",)),
        readings(load=4.95, registrations=1.0),
        {},
        checks=((lambda s: gauge(s, "registrations", "canary"), (100.0, None, "Inconclusive", 0, 0, 0)),),
    ),
    Case(
        "evaluate-missing-reading-leaves-row",
        holding(),
        EvaluateGates("canary", ("load", "registrations")),
        readings(load=4.95),
        {},
        checks=((lambda s: gauge(s, "registrations", "canary"), (100.0, None, "Inconclusive", 0, 0, 0)),),
    ),
    Case(
        "evaluate-inconclusive-pauses",
        holding(),
        EvaluateGates("canary", ("load", "registrations")),
        readings(load=None, registrations=99.0),
        {
            "phase": "Paused",
            "pause_reason": "Inconclusive",
            "paused_from": "Holding",
            "message": "paused: gate(s) inconclusive: load (no data)",
            "cond:GatesPassing": ("Unknown", "GatesInconclusive"),
        },
    ),
    Case(
        "evaluate-error-pauses",
        holding(),
        EvaluateGates("canary", ("load",)),
        Readings({"load": Measurement(None, at(10), error="bad_data: parse error", invalid_query=True)}),
        {"phase": "Paused", "pause_reason": "Inconclusive"},
        checks=((lambda s: gauge(s, "load", "canary"), (4.0, None, "Error", 1, 0, 1)),),
    ),
    Case(
        "evaluate-recovers-from-inconclusive",
        holding(
            [row("load", "canary", pre=4.0, verdict="Inconclusive", readings=1, inconclusive=1, when=at(0))],
            phase="Paused",
            paused_from="Holding",
            pause_reason="Inconclusive",
        ),
        EvaluateGates("canary", ("load",)),
        readings(load=4.1),
        {
            "phase": "Holding",
            "pause_reason": None,
            "paused_from": None,
            "message": "gates conclusive again in canary",
            "cond:GatesPassing": ("True", "GatesPass"),
        },
    ),
    Case(
        "evaluate-inconclusive-under-user-pause-stays-user",
        holding(phase="Paused", paused_from="Holding", pause_reason="User"),
        EvaluateGates("canary", ("load", "registrations")),
        readings(load=None, registrations=None),
        {"phase": "Paused", "pause_reason": "User", "paused_from": "Holding"},
    ),
    Case(
        "evaluate-dry-run-inconclusive-does-not-pause",
        holding(),
        EvaluateGates("canary", ("load", "registrations")),
        readings(load=None, registrations=99.0),
        {"phase": "Holding", "pause_reason": None, "cond:GatesPassing": ("True", "GatesPass")},
        spec=DRY,
    ),
    Case(
        "evaluate-tolerated-breach-is-not-passing",
        holding(),
        EvaluateGates("canary", ("load", "registrations")),
        readings(load=7.2, registrations=99.0),
        {"phase": "Holding", "cond:GatesPassing": ("False", "GateBreaching")},
        spec=LIMITS,
        checks=((lambda s: gauge(s, "load", "canary"), (4.0, 7.2, "Fail", 1, 1, 0)),),
    ),
    Case(
        "evaluate-dry-run-breach-is-not-acted-on",
        holding(),
        EvaluateGates("canary", ("load", "registrations")),
        readings(load=7.2, registrations=99.0),
        {"phase": "Holding", "cond:GatesPassing": ("True", "GatesPass")},
        spec=DRY,
        checks=((lambda s: gauge(s, "load", "canary"), (4.0, 7.2, "Fail", 1, 1, 0)),),
    ),
    Case(
        "evaluate-watch-compares-with-first-phase",
        release_status(
            "Watching",
            "watch",
            phases(canary="Passed", chat="Passed", everything_else="Passed"),
            gauges=[
                row("load", "canary", pre=4.0),
                row("load", "chat", pre=5.0),
                row("load", "everything-else", pre=6.0),
            ],
            watch_until=at(600),
        ),
        EvaluateGates("watch", ("load",)),
        readings(load=4.5),
        {"phase": "Watching"},
        spec=WATCHED,
        checks=(
            (lambda s: gauge(s, "load", "watch"), (4.0, 4.5, "Pass", 1, 0, 0)),
            (lambda s: next((r.delta, r.delta_percent) for r in s.gauges if r.phase == "watch"), (0.5, 12.5)),
        ),
    ),
    Case(
        "evaluate-experiment-harm",
        holding([]),
        EvaluateGates("canary", ("ab",)),
        Readings({}, {"ab": ("Harm:enhanced", True)}),
        {"cond:GatesPassing": ("False", "GateBreaching")},
        spec=EXPERIMENT,
        checks=((lambda s: gauge(s, "ab", "canary"), (None, None, "Fail", 1, 1, 0)),),
    ),
    # ---- completing
    Case(
        "complete-moves-to-next-phase",
        holding(),
        CompletePhase("canary"),
        Done(),
        {"phase": "Progressing", "current_phase": "chat", "message": "phase canary passed; next: chat"},
        now=65,
        checks=((lambda s: (s.phases[0].state, s.phases[0].completed_at), ("Passed", at(65))),),
    ),
    Case(
        "complete-promoted",
        holding(),
        CompletePhase("canary", promoted="t1"),
        Done(),
        {"current_phase": "chat", "promoted": "t1", "message": "phase canary passed (promoted); next: chat"},
        now=20,
    ),
    Case(
        "complete-promoted-while-inconclusive-lifts-the-overlay",
        holding(phase="Paused", paused_from="Holding", pause_reason="Inconclusive"),
        CompletePhase("canary", promoted="t1"),
        Done(),
        {"phase": "Progressing", "paused_from": None, "pause_reason": None, "current_phase": "chat"},
        now=20,
    ),
    Case(
        "complete-under-user-pause-stays-paused",
        holding(phase="Paused", paused_from="Holding", pause_reason="User"),
        CompletePhase("canary", promoted="t1"),
        Done(),
        {"phase": "Paused", "paused_from": "Progressing", "pause_reason": "User", "current_phase": "chat"},
        now=20,
    ),
    Case(
        "complete-last-phase-starts-watch",
        release_status("Holding", "everything-else", phases(canary="Passed", chat="Passed", everything_else="Holding")),
        CompletePhase("everything-else"),
        Done(),
        {"phase": "Watching", "current_phase": "watch", "watch_until": at(900), "completed_at": None},
        spec=WATCHED,
        now=300,
    ),
    Case(
        "complete-last-phase-without-watch-succeeds",
        release_status("Holding", "everything-else", phases(canary="Passed", chat="Passed", everything_else="Holding")),
        CompletePhase("everything-else"),
        Done(),
        {
            "phase": "Succeeded",
            "current_phase": None,
            "completed_at": at(300),
            "message": "every phase passed",
            "cond:Ready": ("True", "Succeeded"),
        },
        now=300,
    ),
    Case(
        "complete-watch-succeeds",
        release_status(
            "Paused",
            "watch",
            phases(canary="Passed", chat="Passed", everything_else="Passed"),
            paused_from="Watching",
            pause_reason="Inconclusive",
        ),
        CompletePhase("watch", promoted="t9"),
        Done(),
        {"phase": "Succeeded", "pause_reason": None, "paused_from": None, "promoted": "t9", "completed_at": at(900)},
        spec=WATCHED,
        now=900,
    ),
    # ---- failing
    Case(
        "fail-before-anything-applied",
        release_status(current="canary", phases=phases(), snapshot=["web-canary"]),
        FailPush("Aborted", "aborted by user: x", phase="canary"),
        Done(),
        {
            "phase": "Failed",
            "completed_at": at(10),
            "failure.reason": "Aborted",
            "failed_gate": None,
            "cond:Ready": ("False", "Aborted"),
            "cond:GatesPassing": None,
        },
    ),
    Case(
        "fail-manifest-error-before-begin",
        ReleaseStatus(),
        FailPush("ManifestError", "no Deployment found under deploy/"),
        Done(),
        {
            "phase": "Failed",
            "failure.message": "no Deployment found under deploy/",
            "cond:Ready": ("False", "ManifestError"),
        },
    ),
    Case(
        "fail-gate-after-apply-rolls-back",
        holding(phase="Paused", paused_from="Holding", pause_reason="User"),
        FailPush("GateFailed", "gate load 7.20 > 6 in phase canary", gate="load", phase="canary"),
        Done(),
        {
            "phase": "RollingBack",
            "pause_reason": None,
            "paused_from": None,
            "failed_gate": "load",
            "failure.phase": "canary",
            "failure.at": at(10),
            "completed_at": None,
            "states": {"canary": "Failed", "chat": "Pending", "everything-else": "Pending"},
            "cond:GatesPassing": ("False", "GateFailed"),
            "cond:Ready": ("False", "GateFailed"),
        },
    ),
    Case(
        "fail-in-watch-keeps-phases",
        release_status("Watching", "watch", phases(canary="Passed", chat="Passed", everything_else="Passed")),
        FailPush("GateFailed", "gate load ... in phase watch", gate="load", phase="watch"),
        Done(),
        {"phase": "RollingBack", "states": {"canary": "Passed", "chat": "Passed", "everything-else": "Passed"}},
        spec=WATCHED,
    ),
    Case(
        "fail-with-neither-rollback-nor-revert",
        holding(),
        FailPush("GateFailed", "gate load 7.20 > 6 in phase canary", gate="load", phase="canary"),
        Done(),
        {"phase": "Failed", "completed_at": at(10)},
        spec=NEITHER,
    ),
    # ---- rolling back
    Case(
        "undo-restored-and-pushed",
        release_status("RollingBack", "canary", phases(canary="Failed"), snapshot=["web-canary"]),
        Undo(("web-canary",), (), True),
        Undone(("web-canary",), (), RevertResult("Pushed", commit="c" * 40, attempts=1, message="Revert 3f9c2e1")),
        {
            "phase": "RollingBack",
            "undo.at": at(10),
            "undo.restored": ["web-canary"],
            "revert.state": "Pushed",
            "revert.commit": "c" * 40,
            "revert.attempts": 1,
            "revert.pushed_at": at(10),
            "cond:GitReverted": ("True", "Pushed"),
            "cond:RolledBack": None,
        },
    ),
    Case(
        "undo-retry-counts-attempts-and-keeps-undo",
        release_status(
            "RollingBack",
            "canary",
            phases(canary="Failed"),
            undo=UndoStatus(at=at(10), restored=["web-canary"]),
            revert=RevertStatus(state="Error", attempts=2, pushed_at=at(15)),
        ),
        Undo((), (), True),
        Undone((), (), RevertResult("Error", reason="remote hung up", attempts=1)),
        {
            "undo.at": at(10),
            "undo.restored": ["web-canary"],
            "revert.state": "Error",
            "revert.attempts": 3,
            "revert.reason": "remote hung up",
            "cond:GitReverted": ("False", "Error"),
        },
        now=20,
    ),
    Case(
        "undo-conflict",
        release_status("RollingBack", "canary", phases(canary="Failed"), snapshot=["web-canary"]),
        Undo(("web-canary",), (), True),
        Undone(("web-canary",), (), RevertResult("Conflict", reason="deploy/web.yaml conflicts", attempts=1)),
        {"revert.state": "Conflict", "cond:GitReverted": ("False", "Conflict")},
    ),
    Case(
        "undo-without-revert-marks-skipped",
        release_status("RollingBack", "canary", phases(canary="Failed"), snapshot=["web-canary"]),
        Undo(("web-canary",), (), False),
        Undone(("web-canary",), (), None),
        {"revert.state": "Skipped", "revert.commit": None, "cond:GitReverted": ("False", "Skipped")},
        spec=NO_REVERT,
    ),
    Case(
        "undo-restore-error",
        release_status("RollingBack", "canary", phases(canary="Failed"), snapshot=["web-canary"]),
        Undo(("web-canary",), (), True),
        Undone((), (), RevertResult("Pushed", commit="c" * 40, attempts=1), restore_error="web-canary: forbidden"),
        {"undo.error": "web-canary: forbidden", "cond:RolledBack": ("False", "RestoreFailed")},
    ),
    Case(
        "mark-rolled-back",
        release_status(
            "RollingBack",
            None,
            phases(canary="Passed", chat="Failed"),
            undo=UndoStatus(at=at(80), restored=["chat-a", "chat-b", "web-canary"], deleted=["new"]),
            failure=None,
        ),
        MarkRolledBack(),
        Done(),
        {
            "phase": "RolledBack",
            "rolled_back_at": at(83),
            "completed_at": at(83),
            "states": {"canary": "RolledBack", "chat": "Failed", "everything-else": "Pending"},
            "cond:RolledBack": ("True", "Restored"),
        },
        now=83,
        checks=(
            (lambda s: get_condition(s.conditions, "RolledBack").message, "restored chat-a, chat-b, web-canary, new"),  # type: ignore[union-attr]
        ),
    ),
    Case(
        "mark-rolled-back-without-rollback-is-failed",
        release_status("RollingBack", "chat", phases(canary="Passed", chat="Failed"), undo=UndoStatus(at=at(80))),
        MarkRolledBack(),
        Done(),
        {"phase": "Failed", "rolled_back_at": None, "cond:RolledBack": ("False", "NotRolledBack")},
        spec=NO_ROLLBACK,
        now=83,
    ),
    Case(
        "mark-rolled-back-after-restore-error-is-failed",
        release_status(
            "RollingBack", "chat", phases(canary="Passed", chat="Failed"), undo=UndoStatus(at=at(80), error="forbidden")
        ),
        MarkRolledBack(),
        Done(),
        {"phase": "Failed", "cond:RolledBack": ("False", "NotRolledBack")},
        now=83,
    ),
    # ---- pause and failures of actions
    Case(
        "pause",
        holding(),
        SetPause(True),
        Done(),
        {"phase": "Paused", "paused_from": "Holding", "pause_reason": "User", "cond:Paused": ("True", "UserPaused")},
    ),
    Case(
        "pause-over-inconclusive-keeps-underlying-state",
        holding(phase="Paused", paused_from="Holding", pause_reason="Inconclusive"),
        SetPause(True),
        Done(),
        {"phase": "Paused", "paused_from": "Holding", "pause_reason": "User"},
    ),
    Case(
        "resume",
        holding(phase="Paused", paused_from="Holding", pause_reason="User"),
        SetPause(False),
        Done(),
        {"phase": "Holding", "paused_from": None, "pause_reason": None, "cond:Paused": ("False", "Resumed")},
    ),
    Case(
        "wait-changes-nothing",
        holding(),
        Wait(at(20), "holding canary"),
        Done(),
        {"phase": "Holding", "message": None},
    ),
    Case(
        "transient-action-failure-only-sets-message",
        release_status(current="canary", phases=phases(), snapshot=["web-canary"]),
        ApplyPhase("canary", ("web-canary",)),
        ActionFailed("apiserver timeout"),
        {"phase": "Progressing", "message": "ApplyPhase failed: apiserver timeout", "failure": None},
    ),
    Case(
        "permanent-apply-failure-in-first-phase-rolls-back-what-it-touched",
        release_status(current="canary", phases=phases(), snapshot=["web-canary"]),
        ApplyPhase("canary", ("web-canary",)),
        ActionFailed("Deployment web-canary: spec.replicas: Invalid value", permanent=True),
        {"phase": "RollingBack", "failure.reason": "ActionFailed", "failure.phase": "canary"},
    ),
    Case(
        "permanent-action-failure-after-apply-rolls-back",
        release_status(current="chat", phases=phases(canary="Passed"), snapshot=["web-canary", "chat-a", "chat-b"]),
        ApplyPhase("chat", ("chat-a", "chat-b")),
        ActionFailed("too large", permanent=True),
        {
            "phase": "RollingBack",
            "failure.reason": "ActionFailed",
            "states": {"canary": "Passed", "chat": "Failed", "everything-else": "Pending"},
        },
    ),
    Case(
        "permanent-undo-failure-keeps-rolling-back",
        release_status("RollingBack", "canary", phases(canary="Failed"), snapshot=["web-canary"]),
        Undo(("web-canary",), (), True),
        ActionFailed("snapshot ConfigMap missing", permanent=True),
        {"phase": "RollingBack", "undo": None, "message": "Undo failed: snapshot ConfigMap missing"},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_reduce(case: Case) -> None:
    before = case.status.model_copy(deep=True)
    after = reduce(case.spec or SPEC, case.status, case.action, case.outcome, at(case.now))
    assert fields(after, list(case.expect)) == case.expect
    for check, expected in case.checks:
        assert check(after) == expected
    assert case.status == before, "reduce must not mutate its input"


def test_snapshot_configmap_name_fits_a_kubernetes_name() -> None:
    assert snapshot_configmap_name("web-3f9c2e1") == "web-3f9c2e1-snapshot"
    assert len(snapshot_configmap_name("x" * 253)) == 253


def test_permanent_apply_failure_rolls_back_the_half_applied_phase() -> None:
    from controller.release.actions import ActionFailed as _ActionFailed
    from controller.release.actions import ApplyPhase as _ApplyPhase
    from controller.release.actions import Facts as _Facts
    from controller.release.plan import plan as _plan

    spec = make_spec(gates=[])
    status = release_status("Progressing", "canary", phases(), snapshot=["web-canary"], absent=())
    after = reduce(
        spec, status, _ApplyPhase("canary", ("web-canary",)), _ActionFailed("422 Invalid", permanent=True), at(5)
    )
    assert after.phase == "RollingBack"
    assert after.failure is not None and after.failure.reason == "ActionFailed"
    canary = next(p for p in after.phases if p.name == "canary")
    assert canary.started_at == at(5) and canary.state == "Failed"
    undo = _plan(spec, after, _Facts(now=at(6)))
    assert isinstance(undo, Undo) and undo.restore == ("web-canary",) and undo.revert is True
