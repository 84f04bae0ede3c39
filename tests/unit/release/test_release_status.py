"""The status reducer, state in → state out: one parametrized case per (action, outcome)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from sim import RELEASE, at, make_spec, phases, release_status, row

from controller.gates.evaluate import Measurement
from controller.models.common import get_condition, set_condition
from controller.models.release import (
    ActionError,
    FailureStatus,
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
    RecordRevert,
    RestoreStrategy,
    RevertResult,
    RevertStarted,
    SetPause,
    Snapshot,
    SnapshotTaken,
    StartRevert,
    Undo,
    Undone,
    Wait,
    WaiveRevert,
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
FAILURE = FailureStatus(gate="load", phase="canary", reason="GateFailed", message="gate load 7.20 > 6", at=at(5))

CM = f"{RELEASE}-snapshot"


def holding(
    rows: list[Any] | None = None, *, observed: tuple[float, float | None] = (0.0, 5.0), **extra: Any
) -> ReleaseStatus:
    """Canary holding with these gauges; ``observed``: (seconds counted, start of the uncounted stretch)."""
    pre = [row("load", "canary", pre=4.0), row("registrations", "canary", pre=100.0)]
    extra.setdefault("phase", "Holding")
    counted, since = observed
    resolved = [
        p.model_copy(update={"observed_seconds": counted, "observed_since": None if since is None else at(since)})
        if p.name == "canary"
        else p
        for p in phases(canary="Holding")
    ]
    return release_status(
        current="canary", phases=resolved, gauges=pre if rows is None else rows, snapshot=["web-canary"], **extra
    )


def inconclusive_rows() -> list[Any]:
    """load has had no data once (the push is Paused, derived); registrations passes."""
    return [
        row("load", "canary", pre=4.0, verdict="Inconclusive", readings=1, inconclusive=1, when=at(0)),
        row("registrations", "canary", pre=100.0, post=99.0, verdict="Pass", readings=1, when=at(0)),
    ]


def rolling_back(**extra: Any) -> ReleaseStatus:
    """Canary failed and is being rolled back (the revert wanted, not attempted yet unless given)."""
    extra.setdefault("revert", RevertStatus(state="Pending", reason="not attempted yet"))
    return release_status(
        "RollingBack", "canary", phases(canary="Failed"), snapshot=["web-canary"], failure=FAILURE, **extra
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


PENDING2: dict[str, str] = {"chat": "Pending", "everything-else": "Pending"}
HOLD_ROWS = [
    row("load", "canary", pre=4.0, post=4.1, verdict="Pass", readings=2, when=at(25)),
    row("registrations", "canary", pre=100.0, post=99.0, verdict="Pass", readings=2, when=at(25)),
]
RETRYING = RevertStatus(state="Pending", attempts=3, reason="Unreachable: connection refused", next_attempt_at=at(18))


def in_flight(attempt: int) -> RevertStatus:
    return RevertStatus(state="Pending", attempts=attempt, attempt_started_at=at(9))


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
        {
            "phase": "Holding",
            "message": (
                "phase canary Available; holding 1m of observed time (until 12:01:05Z if every gate keeps reading)"
            ),
        },
        now=5,
        checks=(
            (
                lambda s: (s.phases[0].state, s.phases[0].available_at, s.phases[0].hold_until),
                ("Holding", at(5), at(65)),
            ),
            (lambda s: (s.phases[0].observed_seconds, s.phases[0].observed_since), (0.0, at(5))),
        ),
    ),
    Case(
        "mark-available-while-user-paused",
        release_status("Paused", current="canary", phases=phases(canary="Progressing"), user_paused=True),
        MarkAvailable("canary"),
        Done(),
        {"phase": "Paused", "user_paused": True, "pause_reason": "User", "states": {"canary": "Holding"} | PENDING2},
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
            "user_paused": False,
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
            inconclusive_rows(),
            phase="Paused",
            pause_reason="Inconclusive",
            conditions=set_condition([], "GatesPassing", "Unknown", "GatesInconclusive", "no data", at(0), None),
        ),
        EvaluateGates("canary", ("load",)),
        readings(load=4.1),
        {
            "phase": "Holding",
            "pause_reason": None,
            "user_paused": False,
            "message": "gates conclusive again in canary",
            "cond:GatesPassing": ("True", "GatesPass"),
        },
    ),
    Case(
        "evaluate-inconclusive-under-user-pause-stays-user",
        holding(phase="Paused", user_paused=True),
        EvaluateGates("canary", ("load", "registrations")),
        readings(load=None, registrations=None),
        {"phase": "Paused", "pause_reason": "User", "user_paused": True},
    ),
    Case(
        "evaluate-dry-run-inconclusive-does-not-pause",
        holding([row("load", "canary", pre=4.0, dry_run=True), row("registrations", "canary", pre=100.0)]),
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
        holding(inconclusive_rows(), phase="Paused", pause_reason="Inconclusive"),
        CompletePhase("canary", promoted="t1"),
        Done(),
        {"phase": "Progressing", "user_paused": False, "pause_reason": None, "current_phase": "chat"},
        now=20,
    ),
    Case(
        "complete-under-user-pause-stays-paused",
        holding(phase="Paused", user_paused=True),
        CompletePhase("canary", promoted="t1"),
        Done(),
        {"phase": "Paused", "user_paused": True, "pause_reason": "User", "current_phase": "chat"},
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
            gauges=[row("load", "watch", pre=4.0, verdict="Inconclusive", readings=2, inconclusive=2, when=at(890))],
            user_paused=True,
        ),
        CompletePhase("watch", promoted="t9"),
        Done(),
        {"phase": "Succeeded", "pause_reason": None, "user_paused": False, "promoted": "t9", "completed_at": at(900)},
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
        holding(phase="Paused", user_paused=True),
        FailPush("GateFailed", "gate load 7.20 > 6 in phase canary", gate="load", phase="canary"),
        Done(),
        {
            "phase": "RollingBack",
            "pause_reason": None,
            "user_paused": False,
            "failure.revert": True,
            "revert.state": "Pending",
            "revert.attempts": 0,
            "cond:GitReverted": ("False", "Pending"),
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
        {
            "phase": "Failed",
            "completed_at": at(10),
            "revert.state": "Skipped",
            "revert.reason": "onFailure.revertCommit is false",
            "cond:RolledBack": ("False", "NotRolledBack"),
        },
        spec=NEITHER,
    ),
    Case(
        "fail-without-rollback-still-wants-the-revert",
        holding(),
        FailPush("GateFailed", "gate load 7.20 > 6 in phase canary", gate="load", phase="canary"),
        Done(),
        {
            "phase": "Failed",
            "completed_at": at(10),
            "revert.state": "Pending",
            "cond:GitReverted": ("False", "Pending"),
        },
        spec=NO_ROLLBACK,
    ),
    Case(
        "fail-on-inconclusive-without-revert-skips-it",
        holding(inconclusive_rows()),
        FailPush("GatesInconclusive", "gate load no data ...", gate="load", phase="canary", revert=False),
        Done(),
        {
            "phase": "RollingBack",
            "failure.revert": False,
            "revert.state": "Skipped",
            "revert.reason": "not wanted for GatesInconclusive (onInconclusive: rollback)",
            "cond:GitReverted": ("False", "Skipped"),
        },
        spec=make_spec(gates=[LOAD, REGS], onInconclusive="rollback"),
    ),
    Case(
        "fail-on-inconclusive-with-revert-wants-it",
        holding(inconclusive_rows()),
        FailPush("GatesInconclusive", "gate load no data ...", gate="load", phase="canary", revert=True),
        Done(),
        {"phase": "RollingBack", "failure.revert": True, "revert.state": "Pending"},
        spec=make_spec(gates=[LOAD, REGS], onInconclusive="rollbackAndRevert"),
    ),
    # ---- rolling back: the cluster side
    Case(
        "undo-restored",
        rolling_back(),
        Undo(("web-canary",), ()),
        Undone(("web-canary",), (), restored_at=at(10)),
        {
            "phase": "RollingBack",
            "undo.at": at(10),
            "undo.restored": ["web-canary"],
            "undo.attempts": 1,
            "undo.error": None,
            "revert.state": "Pending",
            "cond:RolledBack": None,
        },
    ),
    Case(
        "undo-retry-counts-attempts",
        rolling_back(undo=UndoStatus(at=at(10), restored=[], error="web-canary: conflict", attempts=1)),
        Undo(("web-canary",), ()),
        Undone(("web-canary",), (), restored_at=at(12)),
        {"undo.at": at(12), "undo.restored": ["web-canary"], "undo.attempts": 2, "undo.error": None},
        now=12,
    ),
    Case(
        "undo-restore-error",
        rolling_back(),
        Undo(("web-canary",), ()),
        Undone((), (), restore_error="web-canary: forbidden"),
        {"undo.error": "web-canary: forbidden", "cond:RolledBack": ("False", "RestoreFailed")},
    ),
    Case(
        "fast-undo-records-the-strategy-still-to-put-back",
        rolling_back(),
        Undo(("web-canary", "ConfigMap/cfg"), (), ("web-canary",)),
        Undone(("web-canary", "ConfigMap/cfg"), (), restored_at=at(10), started_at=at(9)),
        {
            "undo.mode": "fast",
            "undo.started_at": at(9),
            "undo.at": at(10),
            "undo.strategy_pending": ["web-canary"],
            "phase": "RollingBack",
        },
    ),
    Case(
        "failed-fast-undo-still-records-the-strategy",
        rolling_back(),
        Undo(("web-canary",), (), ("web-canary",)),
        Undone((), (), restore_error="web-canary: forbidden", started_at=at(9)),
        {"undo.strategy_pending": ["web-canary"], "undo.error": "web-canary: forbidden"},
    ),
    Case(
        "a-retried-fast-undo-keeps-the-first-write-time",
        rolling_back(
            undo=UndoStatus(at=at(10), error="x", attempts=1, started_at=at(9), strategy_pending=["web-canary"])
        ),
        Undo(("web-canary",), (), ("web-canary",)),
        Undone(("web-canary",), (), restored_at=at(12), started_at=at(11)),
        {"undo.started_at": at(9), "undo.strategy_pending": ["web-canary"], "undo.attempts": 2},
        now=12,
    ),
    Case(
        "strategy-put-back",
        rolling_back(undo=UndoStatus(at=at(10), restored=["web-canary"], strategy_pending=["web-canary"])),
        RestoreStrategy(("web-canary",)),
        Done(),
        {"undo.strategy_pending": [], "undo.strategy_restored_at": at(10), "phase": "RollingBack"},
    ),
    Case(
        "strategy-failure-keeps-it-pending",
        rolling_back(undo=UndoStatus(at=at(10), restored=["web-canary"], strategy_pending=["web-canary"])),
        RestoreStrategy(("web-canary",)),
        ActionFailed("403 forbidden"),
        {"undo.strategy_pending": ["web-canary"], "action_error.action": "RestoreStrategy"},
    ),
    # ---- the git side
    Case(
        "start-revert",
        rolling_back(),
        StartRevert(),
        RevertStarted(at(10)),
        {
            "phase": "RollingBack",
            "revert.state": "Pending",
            "revert.attempts": 1,
            "revert.attempt_started_at": at(10),
            "revert.next_attempt_at": None,
            "cond:GitReverted": ("False", "Pending"),
        },
    ),
    Case(
        "start-revert-again-counts-the-attempt",
        rolling_back(revert=RETRYING),
        StartRevert(),
        RevertStarted(at(18)),
        {"revert.attempts": 4, "revert.attempt_started_at": at(18), "revert.reason": "Unreachable: connection refused"},
        now=18,
        checks=(
            (
                lambda s: get_condition(s.conditions, "GitReverted").message,  # type: ignore[union-attr]
                "attempt 4 in flight; last: Unreachable: connection refused",
            ),
        ),
    ),
    Case(
        "record-revert-pushed",
        rolling_back(revert=in_flight(1)),
        RecordRevert(RevertResult("Pushed", commit="c" * 40, attempts=1, message="Revert 3f9c2e1")),
        Done(),
        {
            "phase": "RollingBack",
            "revert.state": "Pushed",
            "revert.commit": "c" * 40,
            "revert.attempts": 1,
            "revert.pushed_at": at(10),
            "revert.attempt_started_at": None,
            "revert.message": "Revert 3f9c2e1",
            "cond:GitReverted": ("True", "Pushed"),
        },
    ),
    Case(
        "record-revert-already-reverted",
        rolling_back(revert=in_flight(2)),
        RecordRevert(RevertResult("AlreadyReverted", commit="d" * 40, attempts=1)),
        Done(),
        {"revert.state": "AlreadyReverted", "revert.commit": "d" * 40, "cond:GitReverted": ("True", "AlreadyReverted")},
    ),
    Case(
        "record-revert-error-backs-off",
        rolling_back(revert=in_flight(3)),
        RecordRevert(RevertResult("Error", reason="connection refused", attempts=1, code="Unreachable")),
        Done(),
        {
            "revert.state": "Pending",
            "revert.attempts": 3,
            "revert.reason": "Unreachable: connection refused",
            "revert.last_attempt_at": at(10),
            "revert.attempt_started_at": None,
            "revert.next_attempt_at": at(18),
            "cond:GitReverted": ("False", "Pending"),
        },
        checks=(
            (
                lambda s: get_condition(s.conditions, "GitReverted").message,  # type: ignore[union-attr]
                "attempt 3 failed: Unreachable: connection refused; next attempt at 12:00:18Z",
            ),
        ),
    ),
    Case(
        "record-revert-auth-failure-is-named",
        rolling_back(revert=in_flight(1)),
        RecordRevert(
            RevertResult("Error", reason="HTTP 401 from git.example", attempts=1, code="AuthenticationFailed")
        ),
        Done(),
        {
            "revert.state": "Pending",
            "revert.reason": "AuthenticationFailed: HTTP 401 from git.example",
            "revert.next_attempt_at": at(12),
        },
    ),
    Case(
        "record-revert-error-without-a-code",
        rolling_back(revert=in_flight(6)),
        RecordRevert(RevertResult("Error", reason="remote hung up", attempts=1)),
        Done(),
        {"revert.state": "Pending", "revert.reason": "Error: remote hung up", "revert.next_attempt_at": at(40)},
    ),
    Case(
        "record-revert-conflict-settles",
        rolling_back(revert=in_flight(1)),
        RecordRevert(RevertResult("Conflict", reason="deploy/web.yaml conflicts", attempts=1)),
        Done(),
        {
            "revert.state": "Conflict",
            "revert.reason": "deploy/web.yaml conflicts",
            "revert.next_attempt_at": None,
            "cond:GitReverted": ("False", "Conflict"),
        },
    ),
    Case(
        "record-revert-after-the-rollback-keeps-it-rolled-back",
        rolling_back(
            revert=in_flight(2),
            completed_at=at(8),
            rolled_back_at=at(8),
            undo=UndoStatus(at=at(5), restored=["web-canary"]),
        ),
        RecordRevert(RevertResult("Pushed", commit="c" * 40, attempts=1)),
        Done(),
        {"phase": "RolledBack", "completed_at": at(8), "revert.state": "Pushed"},
    ),
    Case(
        "waive-revert",
        rolling_back(revert=RETRYING, completed_at=at(8), rolled_back_at=at(8)),
        WaiveRevert("alice", "fixed forward"),
        Done(),
        {
            "phase": "RolledBack",
            "revert.state": "Waived",
            "revert.reason": "waived by alice: fixed forward",
            "revert.next_attempt_at": None,
            "revert.attempts": 3,
            "cond:GitReverted": ("False", "Waived"),
        },
    ),
    Case(
        "mark-rolled-back",
        release_status(
            "RollingBack",
            None,
            phases(canary="Passed", chat="Failed"),
            undo=UndoStatus(at=at(80), restored=["chat-a", "chat-b", "web-canary"], deleted=["new"]),
            failure=FAILURE,
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
        release_status(
            "RollingBack", "chat", phases(canary="Passed", chat="Failed"), undo=UndoStatus(at=at(80)), failure=FAILURE
        ),
        MarkRolledBack(),
        Done(),
        {"phase": "Failed", "rolled_back_at": None, "cond:RolledBack": ("False", "NotRolledBack")},
        spec=NO_ROLLBACK,
        now=83,
    ),
    Case(
        "mark-rolled-back-after-restore-error-is-failed",
        release_status(
            "RollingBack",
            "chat",
            phases(canary="Passed", chat="Failed"),
            undo=UndoStatus(at=at(80), error="forbidden"),
            failure=FAILURE,
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
        {"phase": "Paused", "user_paused": True, "pause_reason": "User", "cond:Paused": ("True", "UserPaused")},
        # the 5 s since the last conclusive reading count (it vouches for up to one interval); then nothing
        checks=((lambda s: (s.phases[0].observed_seconds, s.phases[0].observed_since), (5.0, None)),),
    ),
    Case(
        "pause-counts-the-stretch-the-last-reading-vouches-for",
        holding(HOLD_ROWS, observed=(20.0, 25.0)),
        SetPause(True),
        Done(),
        {"phase": "Paused", "user_paused": True},
        now=30,
        checks=((lambda s: (s.phases[0].observed_seconds, s.phases[0].observed_since), (25.0, None)),),
    ),
    Case(
        "pause-over-inconclusive-is-a-user-pause",
        holding(inconclusive_rows(), phase="Paused", pause_reason="Inconclusive"),
        SetPause(True),
        Done(),
        {"phase": "Paused", "user_paused": True, "pause_reason": "User"},
    ),
    Case(
        "resume",
        holding(HOLD_ROWS, phase="Paused", user_paused=True, observed=(20.0, None)),
        SetPause(False),
        Done(),
        {"phase": "Holding", "user_paused": False, "pause_reason": None, "cond:Paused": ("False", "Resumed")},
        now=300,
        checks=((lambda s: (s.phases[0].observed_seconds, s.phases[0].observed_since), (20.0, at(300))),),
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
        {
            "phase": "Progressing",
            "message": "ApplyPhase failed: apiserver timeout (retrying)",
            "failure": None,
            "action_error.permanent": False,
            "action_error.attempts": 1,
        },
    ),
    Case(
        "transient-action-failure-again-counts",
        release_status(
            current="canary",
            phases=phases(),
            snapshot=["web-canary"],
            action_error=ActionError(action="ApplyPhase", message="apiserver timeout", phase="canary", at=at(5)),
        ),
        ApplyPhase("canary", ("web-canary",)),
        ActionFailed("apiserver timeout"),
        {"action_error.attempts": 2, "action_error.at": at(10)},
    ),
    Case(
        "action-that-succeeds-clears-the-error",
        release_status(
            current="canary",
            phases=phases(),
            snapshot=["web-canary"],
            action_error=ActionError(action="ApplyPhase", message="apiserver timeout", phase="canary", at=at(5)),
        ),
        ApplyPhase("canary", ("web-canary",)),
        Done(),
        {"action_error": None, "phase": "Progressing"},
    ),
    Case(
        "permanent-apply-failure-in-first-phase-rolls-back-what-it-touched",
        release_status(current="canary", phases=phases(), snapshot=["web-canary"]),
        ApplyPhase("canary", ("web-canary",)),
        ActionFailed("Deployment web-canary: spec.replicas: Invalid value", permanent=True),
        # the reducer records what happened; the planner fails the push next round
        {
            "phase": "Progressing",
            "failure": None,
            "action_error.permanent": True,
            "action_error.action": "ApplyPhase",
            "action_error.phase": "canary",
            "states": {"canary": "Progressing"} | PENDING2,
        },
        checks=((lambda s: s.phases[0].started_at, at(10)),),
    ),
    Case(
        "permanent-action-failure-after-apply-rolls-back",
        release_status(current="chat", phases=phases(canary="Passed"), snapshot=["web-canary", "chat-a", "chat-b"]),
        ApplyPhase("chat", ("chat-a", "chat-b")),
        ActionFailed("too large", permanent=True),
        {
            "phase": "Progressing",
            "failure": None,
            "action_error.message": "too large",
            "states": {"canary": "Passed", "chat": "Progressing", "everything-else": "Pending"},
        },
    ),
    Case(
        "permanent-undo-failure-keeps-rolling-back",
        rolling_back(),
        Undo(("web-canary",), ()),
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
    from controller.release.actions import Facts
    from controller.release.plan import plan

    spec = make_spec(gates=[])
    status = release_status("Progressing", "canary", phases(), snapshot=["web-canary"], absent=())
    recorded = reduce(
        spec, status, ApplyPhase("canary", ("web-canary",)), ActionFailed("422 Invalid", permanent=True), at(5)
    )
    assert (recorded.phase, recorded.failure) == ("Progressing", None)
    # the planner, not the reducer, turns the recorded failure into a failed push
    fail = plan(spec, recorded, Facts(now=at(6)))
    assert fail == FailPush("ActionFailed", "ApplyPhase: 422 Invalid", phase="canary")
    after = reduce(spec, recorded, fail, Done(), at(6))
    assert after.phase == "RollingBack"
    assert after.failure is not None and after.failure.reason == "ActionFailed"
    canary = next(p for p in after.phases if p.name == "canary")
    assert canary.started_at == at(5) and canary.state == "Failed"
    assert plan(spec, after, Facts(now=at(6))) == Undo(("web-canary",), (), ("web-canary",))
