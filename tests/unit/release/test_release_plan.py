"""The planner, state in → exact next action out: one parametrized case per situation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from sim import (
    FOUR_DEPLOYMENTS,
    at,
    make_spec,
    phases,
    release_status,
    row,
)

from controller.models.release import FailureStatus, PhaseState, ReleaseSpec, ReleaseStatus, RevertStatus, UndoStatus
from controller.release.actions import (
    ANNOTATION_ABORT,
    ANNOTATION_PAUSED,
    ANNOTATION_PROMOTE,
    ANNOTATION_WAIVE_REVERT,
    Action,
    ApplyPhase,
    Begin,
    CaptureBaseline,
    CompletePhase,
    EvaluateGates,
    Facts,
    FailPush,
    LiveDeployment,
    ManifestDeployment,
    Manifests,
    MarkAvailable,
    MarkRolledBack,
    RecordRevert,
    RestoreStrategy,
    RevertJob,
    RevertResult,
    SetPause,
    Snapshot,
    StartRevert,
    Undo,
    Wait,
    WaiveRevert,
)
from controller.release.plan import plan, resolve_phases

LOAD = {"name": "load", "query": "avg(node_load1)", "max": 6, "maxIncreasePercent": 25, "interval": "10s"}
REGS = {"name": "registrations", "query": "sum(rate(reg[1m]))", "maxDecreasePercent": 20, "interval": "30s"}
SPEC = make_spec(gates=[LOAD, REGS])
NO_GATES = make_spec(gates=[])
WATCHED = make_spec(gates=[LOAD, REGS], watch="10m")
LIMITS = make_spec(gates=[{**LOAD, "failureLimit": 2}, REGS])
DRY = make_spec(gates=[{**LOAD, "dryRun": True}, REGS])
CHAT_ONLY = make_spec(gates=[{**LOAD, "phases": ["chat"]}])
WATCH_ONLY = make_spec(gates=[LOAD, {**REGS, "phases": ["watch"]}], watch="10m")
WATCH_ONLY_NO_WINDOW = make_spec(gates=[LOAD, {**REGS, "phases": ["watch"]}])
NO_ROLLBACK = make_spec(gates=[LOAD], onFailure={"rollback": False})
NO_REVERT = make_spec(gates=[LOAD], onFailure={"revertCommit": False})
INCONCLUSIVE_ROLLBACK = make_spec(gates=[LOAD, REGS], onInconclusive="rollback")
INCONCLUSIVE_REVERT = make_spec(gates=[LOAD, REGS], onInconclusive="rollbackAndRevert")

MANIFESTS = Manifests(tuple(ManifestDeployment(n, labels) for n, labels in FOUR_DEPLOYMENTS.items()))
GATES = ("load", "registrations")


def holding(
    rows: list[Any],
    *,
    current: str = "canary",
    phase: Any = "Holding",
    observed: tuple[float, float | None] | None = None,
    **extra: Any,
) -> ReleaseStatus:
    """Canary (or the named phase) applied and held, everything snapshotted so far, with these gauges.

    ``observed`` is the hold clock (seconds counted, start of the uncounted stretch); by default every
    reading since the phase became Available (5 s) was conclusive: counted up to the latest reading,
    which starts the current stretch.
    """
    states: dict[str, PhaseState] = {"canary": "Holding"}
    if current == "chat":
        states = {"canary": "Passed", "chat": "Holding"}
    if observed is None:
        latest = max((r.at for r in rows if r.at is not None), default=at(5))
        observed = ((latest - at(5)).total_seconds(), (latest - at(0)).total_seconds())
    counted, since = observed
    if extra.get("user_paused"):
        since = None  # a pause closes the stretch: paused time never counts
    resolved = [
        p.model_copy(update={"observed_seconds": counted, "observed_since": None if since is None else at(since)})
        if p.name == current
        else p
        for p in phases(**states)
    ]
    return release_status(phase, current, resolved, gauges=rows, snapshot=["web-canary", "chat-a", "chat-b"], **extra)


def read(gate: str, when: float, verdict: Any = "Pass", phase: str = "canary", **kw: Any) -> Any:
    return row(gate, phase, pre=4.0, post=4.1, verdict=verdict, readings=3, when=at(when), **kw)


#: load has had no data 7 times in a row: past its default inconclusiveLimit (6).
OUTAGE = row(
    "load",
    "canary",
    pre=4.0,
    verdict="Inconclusive",
    readings=9,
    when=at(60),
    inconclusive=7,
    message="no data: inconclusive 7 times in a row (limit 6)",
)


def captured(phase: str = "canary") -> list[Any]:
    return [row(g, phase, pre=4.0) for g in GATES]


def live(available: bool = True, **overrides: bool | str | None) -> dict[str, LiveDeployment]:
    """Every Deployment live; overrides: name=True/False (available), name=None (missing), name='reason' (failed)."""
    out = {n: LiveDeployment(n, available=available) for n in FOUR_DEPLOYMENTS}
    for key, value in overrides.items():
        name = key.replace("_", "-")
        if value is None:
            out.pop(name)
        elif isinstance(value, str):
            out[name] = LiveDeployment(name, available=False, failure=value)
        else:
            out[name] = LiveDeployment(name, available=value)
    return out


def facts(
    now: float = 0,
    *,
    manifests: Manifests | None = MANIFESTS,
    deployments: Mapping[str, LiveDeployment] | None = None,
    revert_job: RevertJob | None = None,
    **annotations: str,
) -> Facts:
    keys = {
        "promote": ANNOTATION_PROMOTE,
        "abort": ANNOTATION_ABORT,
        "paused": ANNOTATION_PAUSED,
        "waive": ANNOTATION_WAIVE_REVERT,
    }
    return Facts(
        now=at(now),
        manifests=manifests,
        live=live() if deployments is None else deployments,
        annotations={keys[k]: v for k, v in annotations.items()},
        revert_job=revert_job,
    )


@dataclass(frozen=True)
class Case:
    id: str
    spec: ReleaseSpec
    status: ReleaseStatus
    facts: Facts
    expected: Action


def cases(*items: Case) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("case", items, ids=[c.id for c in items])


def manifests(*names: str, **labelled: dict[str, str]) -> Manifests:
    found = [ManifestDeployment(n) for n in names] + [ManifestDeployment(n, lab) for n, lab in labelled.items()]
    return Manifests(tuple(found))


# ---------------------------------------------------------------- Pending: resolve the phases
@cases(
    Case("pending-without-manifests", SPEC, ReleaseStatus(), facts(manifests=None), Wait(None, "reading manifests")),
    Case(
        "resolve-deployments-selector-remaining",
        SPEC,
        ReleaseStatus(),
        facts(),
        Begin((("canary", ("web-canary",)), ("chat", ("chat-a", "chat-b")), ("everything-else", ("web",))), ()),
    ),
    Case(
        "resolve-first-phase-wins",
        make_spec(
            [
                {"name": "a", "deployments": ["web", "chat-a"]},
                {"name": "b", "selector": {"matchLabels": {"tier": "chat"}}},
                {"name": "c", "deployments": ["chat-b", "web-canary", "web"]},
            ]
        ),
        ReleaseStatus(),
        facts(),
        Begin((("a", ("web", "chat-a")), ("b", ("chat-b",)), ("c", ("web-canary",))), ()),
    ),
    Case(
        "resolve-without-remaining-lists-unassigned",
        make_spec(
            [
                {"name": "canary", "deployments": ["web-canary"]},
                {"name": "chat", "selector": {"matchLabels": {"tier": "chat"}}},
            ]
        ),
        ReleaseStatus(),
        facts(),
        Begin((("canary", ("web-canary",)), ("chat", ("chat-a", "chat-b"))), ("web",)),
    ),
    Case(
        "resolve-selector-match-expressions",
        make_spec(
            [
                {
                    "name": "web",
                    "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]},
                },
                {"name": "rest", "remaining": True},
            ]
        ),
        ReleaseStatus(),
        facts(),
        Begin((("web", ("web", "web-canary")), ("rest", ("chat-a", "chat-b"))), ()),
    ),
    Case(
        "resolve-selector-matching-nothing-is-an-empty-phase",
        make_spec([{"name": "db", "selector": {"matchLabels": {"tier": "db"}}}, {"name": "rest", "remaining": True}]),
        ReleaseStatus(),
        facts(),
        Begin((("db", ()), ("rest", ("chat-a", "chat-b", "web", "web-canary"))), ()),
    ),
    Case(
        "resolve-name-listed-twice-pushed-once",
        make_spec(
            [{"name": "canary", "deployments": ["web-canary", "web-canary"]}, {"name": "rest", "remaining": True}]
        ),
        ReleaseStatus(),
        facts(),
        Begin((("canary", ("web-canary",)), ("rest", ("chat-a", "chat-b", "web"))), ()),
    ),
    Case(
        "deployment-missing-from-manifests",
        make_spec(
            [{"name": "canary", "deployments": ["web-canary", "nope", "gone"]}, {"name": "rest", "remaining": True}]
        ),
        ReleaseStatus(),
        facts(),
        FailPush(
            "ManifestError", "phase canary: Deployment(s) nope, gone not in the manifests at 3f9c2e1", phase="canary"
        ),
    ),
    Case(
        "empty-manifests",
        SPEC,
        ReleaseStatus(),
        facts(manifests=Manifests()),
        FailPush("ManifestError", "no Deployment found under deploy/"),
    ),
    Case(
        "unreadable-manifests",
        SPEC,
        ReleaseStatus(),
        facts(manifests=Manifests(error="deploy/web.yaml: mapping values are not allowed here")),
        FailPush("ManifestError", "deploy/web.yaml: mapping values are not allowed here"),
    ),
    Case(
        "abort-before-anything",
        SPEC,
        ReleaseStatus(),
        facts(manifests=None, abort="wrong revision"),
        FailPush("Aborted", "aborted by user: wrong revision"),
    ),
)
def test_resolve(case: Case) -> None:
    assert plan(case.spec, case.status, case.facts) == case.expected


def test_resolve_phases_is_the_planners_resolution() -> None:
    assert resolve_phases(SPEC, MANIFESTS) == plan(SPEC, ReleaseStatus(), facts())


# ---------------------------------------------------------------- one phase: snapshot → … → complete
AFTER_BEGIN = release_status("Progressing", "canary", phases())


@cases(
    Case("snapshot-first", SPEC, AFTER_BEGIN, facts(), Snapshot("canary", ("web-canary",))),
    Case(
        "snapshot-only-what-is-missing",
        SPEC,
        release_status("Progressing", "chat", phases(canary="Passed"), snapshot=["web-canary", "chat-a"]),
        facts(),
        Snapshot("chat", ("chat-b",)),
    ),
    Case(
        "absent-deployments-count-as-snapshotted",
        SPEC,
        release_status(
            "Progressing", "chat", phases(canary="Passed"), snapshot=["web-canary"], absent=["chat-a", "chat-b"]
        ),
        facts(),
        CaptureBaseline("chat", GATES),
    ),
    Case(
        "capture-baseline-after-snapshot",
        SPEC,
        release_status("Progressing", "canary", phases(), snapshot=["web-canary"]),
        facts(),
        CaptureBaseline("canary", GATES),
    ),
    Case(
        "capture-only-missing-rows",
        SPEC,
        release_status(
            "Progressing", "canary", phases(), snapshot=["web-canary"], gauges=[row("load", "canary", pre=4.0)]
        ),
        facts(),
        CaptureBaseline("canary", ("registrations",)),
    ),
    Case(
        "capture-skips-gates-of-other-phases",
        CHAT_ONLY,
        release_status("Progressing", "canary", phases(), snapshot=["web-canary"]),
        facts(),
        ApplyPhase("canary", ("web-canary",)),
    ),
    Case(
        "earlier-phase-rows-do-not-count-as-baseline",
        SPEC,
        release_status(
            "Progressing",
            "chat",
            phases(canary="Passed"),
            snapshot=["web-canary", "chat-a", "chat-b"],
            gauges=captured("canary"),
        ),
        facts(),
        CaptureBaseline("chat", GATES),
    ),
    Case(
        "apply-after-baseline",
        SPEC,
        release_status("Progressing", "canary", phases(), snapshot=["web-canary"], gauges=captured()),
        facts(),
        ApplyPhase("canary", ("web-canary",)),
    ),
    Case(
        "apply-baseline-without-data-still-applies",
        SPEC,
        release_status(
            "Progressing", "canary", phases(), snapshot=["web-canary"], gauges=[row(g, "canary") for g in GATES]
        ),
        facts(),
        ApplyPhase("canary", ("web-canary",)),
    ),
    Case(
        "capture-watch-only-gates-before-first-apply",
        WATCH_ONLY,
        release_status(
            "Progressing", "canary", phases(), snapshot=["web-canary"], gauges=[row("load", "canary", pre=4.0)]
        ),
        facts(),
        CaptureBaseline("watch", ("registrations",)),
    ),
    Case(
        "apply-after-watch-baseline",
        WATCH_ONLY,
        release_status(
            "Progressing",
            "canary",
            phases(),
            snapshot=["web-canary"],
            gauges=[row("load", "canary", pre=4.0), row("registrations", "watch", pre=100.0)],
        ),
        facts(),
        ApplyPhase("canary", ("web-canary",)),
    ),
    Case(
        "no-watch-baseline-without-watch-window",
        WATCH_ONLY_NO_WINDOW,
        release_status(
            "Progressing", "canary", phases(), snapshot=["web-canary"], gauges=[row("load", "canary", pre=4.0)]
        ),
        facts(),
        ApplyPhase("canary", ("web-canary",)),
    ),
    Case(
        "no-watch-baseline-after-the-first-phase",
        WATCH_ONLY,
        release_status(
            "Progressing",
            "chat",
            phases(canary="Passed"),
            snapshot=["web-canary", "chat-a", "chat-b"],
            gauges=[row("load", "canary", pre=4.0), row("load", "chat", pre=4.0)],
        ),
        facts(),
        ApplyPhase("chat", ("chat-a", "chat-b")),
    ),
    Case(
        "watch-gates-judging-the-first-phase-need-no-watch-baseline",
        WATCHED,
        release_status("Progressing", "canary", phases(), snapshot=["web-canary"], gauges=captured()),
        facts(),
        ApplyPhase("canary", ("web-canary",)),
    ),
    Case(
        "wait-while-rolling-out",
        SPEC,
        release_status(
            "Progressing", "canary", phases(canary="Progressing"), snapshot=["web-canary"], gauges=captured()
        ),
        facts(3, deployments=live(web_canary=False)),
        Wait(at(600), "waiting for phase canary to become Available"),
    ),
    Case(
        "wait-while-not-yet-created",
        SPEC,
        release_status(
            "Progressing", "canary", phases(canary="Progressing"), snapshot=[], absent=["web-canary"], gauges=captured()
        ),
        facts(3, deployments=live(web_canary=None)),
        Wait(at(600), "waiting for phase canary to become Available"),
    ),
    Case(
        "mark-available",
        SPEC,
        release_status(
            "Progressing", "canary", phases(canary="Progressing"), snapshot=["web-canary"], gauges=captured()
        ),
        facts(5),
        MarkAvailable("canary"),
    ),
    Case(
        "available-needs-every-deployment",
        SPEC,
        release_status(
            "Progressing",
            "chat",
            phases(canary="Passed", chat="Progressing"),
            snapshot=["web-canary", "chat-a", "chat-b"],
        ),
        facts(5, deployments=live(chat_b=False)),
        Wait(at(600), "waiting for phase chat to become Available"),
    ),
    Case(
        "rollout-failure",
        SPEC,
        release_status("Progressing", "chat", phases(canary="Passed", chat="Progressing")),
        facts(5, deployments=live(chat_b="ImagePullBackOff")),
        FailPush("RolloutFailed", "chat-b: ImagePullBackOff", phase="chat"),
    ),
    Case(
        "progress-deadline-exceeded",
        SPEC,
        release_status("Progressing", "chat", phases(canary="Passed", chat="Progressing")),
        facts(600, deployments=live(chat_a=False, chat_b=None)),
        FailPush("ProgressDeadlineExceeded", "phase chat: chat-a, chat-b not Available after 10m", phase="chat"),
    ),
    Case(
        "evaluate-when-hold-starts",
        SPEC,
        holding(captured()),
        facts(5),
        EvaluateGates("canary", GATES),
    ),
    Case(
        "evaluate-only-due-gates",
        SPEC,
        holding([read("load", 5), read("registrations", 5)]),
        facts(15),
        EvaluateGates("canary", ("load",)),
    ),
    Case(
        "wait-for-next-due-gate",
        SPEC,
        holding([read("load", 5), read("registrations", 5)]),
        facts(10),
        Wait(at(15), "holding canary: observed 5s of 60s"),
    ),
    Case(
        "wait-for-hold-end-when-sooner",
        SPEC,
        holding([read("load", 60), read("registrations", 50)]),
        facts(62),
        Wait(at(65), "holding canary: observed 57s of 60s"),
    ),
    Case(
        "complete-at-hold-end",
        SPEC,
        holding([read("load", 60), read("registrations", 50)]),
        facts(65),
        CompletePhase("canary"),
    ),
    Case(
        "evaluate-due-before-completing",
        SPEC,
        holding([read("load", 55), read("registrations", 50)]),
        facts(65),
        EvaluateGates("canary", ("load",)),
    ),
    Case(
        "inconclusive-never-completes",
        SPEC,
        holding([read("load", 60, "Inconclusive", inconclusive=2), read("registrations", 50)]),
        facts(65),
        Wait(at(70), "holding canary: waiting for conclusive gate readings (observed 60s of 60s)"),
    ),
    Case(
        "tolerated-breach-does-not-complete",
        LIMITS,
        holding([read("load", 60, "Fail", breaches=1), read("registrations", 50)]),
        facts(65),
        Wait(at(70), "holding canary: waiting for conclusive gate readings (observed 60s of 60s)"),
    ),
    Case(
        "breach-fails",
        SPEC,
        holding([read("load", 20, "Fail", breaches=1, message="7.20 > 6"), read("registrations", 5)]),
        facts(20),
        FailPush("GateFailed", "gate load 7.20 > 6 in phase canary", gate="load", phase="canary"),
    ),
    Case(
        "breach-within-failure-limit-keeps-evaluating",
        LIMITS,
        holding([read("load", 20, "Fail", breaches=2), read("registrations", 5)]),
        facts(30),
        EvaluateGates("canary", ("load",)),
    ),
    Case(
        "breach-past-failure-limit-fails",
        LIMITS,
        holding([read("load", 20, "Fail", breaches=3, message="7.20 > 6"), read("registrations", 5)]),
        facts(20),
        FailPush("GateFailed", "gate load 7.20 > 6 in phase canary", gate="load", phase="canary"),
    ),
    Case(
        "inconclusive-past-limit-pauses-by-default",
        SPEC,
        holding([OUTAGE, read("registrations", 50)], observed=(20, None)),
        facts(65),
        Wait(
            at(70),
            "paused in canary: gate(s) load past inconclusiveLimit; waiting for data "
            "(onInconclusive: pause; observed 20s of 60s)",
        ),
    ),
    Case(
        "inconclusive-past-limit-never-completes-even-when-observed",
        SPEC,
        holding([OUTAGE, read("registrations", 50)], observed=(60, None)),
        facts(65),
        Wait(
            at(70),
            "paused in canary: gate(s) load past inconclusiveLimit; waiting for data "
            "(onInconclusive: pause; observed 60s of 60s)",
        ),
    ),
    Case(
        "inconclusive-past-limit-rolls-back-by-policy",
        INCONCLUSIVE_ROLLBACK,
        holding([OUTAGE, read("registrations", 50)]),
        facts(60),
        FailPush(
            "GatesInconclusive",
            "gate load no data: inconclusive 7 times in a row (limit 6) in phase canary (onInconclusive: rollback)",
            gate="load",
            phase="canary",
            revert=False,
        ),
    ),
    Case(
        "inconclusive-past-limit-rolls-back-and-reverts-by-policy",
        INCONCLUSIVE_REVERT,
        holding([OUTAGE, read("registrations", 50)]),
        facts(60),
        FailPush(
            "GatesInconclusive",
            "gate load no data: inconclusive 7 times in a row (limit 6) in phase canary "
            "(onInconclusive: rollbackAndRevert)",
            gate="load",
            phase="canary",
            revert=True,
        ),
    ),
    Case(
        "inconclusive-within-limit-does-not-fail-by-policy",
        INCONCLUSIVE_ROLLBACK,
        holding([read("load", 60, "Inconclusive", inconclusive=6), read("registrations", 50)], observed=(20, None)),
        facts(65),
        Wait(at(70), "holding canary: waiting for conclusive gate readings (observed 20s of 60s)"),
    ),
    Case(
        "breach-beats-outage-policy",
        INCONCLUSIVE_ROLLBACK,
        holding([OUTAGE, read("registrations", 50, "Fail", breaches=1, message="-30.00% < -20%")]),
        facts(60),
        FailPush(
            "GateFailed", "gate registrations -30.00% < -20% in phase canary", gate="registrations", phase="canary"
        ),
    ),
    Case(
        "dry-run-breach-never-fails",
        DRY,
        holding([read("load", 60, "Fail", breaches=5, dry_run=True), read("registrations", 50)]),
        facts(65),
        CompletePhase("canary"),
    ),
    Case(
        "no-gates-waits-for-hold", NO_GATES, holding([]), facts(5), Wait(at(65), "holding canary: observed 0s of 60s")
    ),
    Case("no-gates-completes-at-hold-end", NO_GATES, holding([]), facts(65), CompletePhase("canary")),
    Case(
        "chat-phase-gates-only",
        CHAT_ONLY,
        holding([]),
        facts(65),
        CompletePhase("canary"),
    ),
    Case(
        "internal-error-unknown-current-phase",
        SPEC,
        release_status("Holding", "ghost", phases(canary="Holding")),
        facts(5),
        FailPush("InternalError", "current phase 'ghost' is not in status.phases"),
    ),
)
def test_phase_steps(case: Case) -> None:
    assert plan(case.spec, case.status, case.facts) == case.expected


# ---------------------------------------------------------------- annotations: promote, pause, abort
PAUSED_HOLDING: dict[str, Any] = dict(phase="Paused", user_paused=True, pause_reason="User")


@cases(
    Case(
        "promote-skips-hold",
        SPEC,
        holding([read("load", 20), read("registrations", 20)]),
        facts(25, promote="t1"),
        CompletePhase("canary", promoted="t1"),
    ),
    Case(
        "promote-same-token-again-does-nothing",
        SPEC,
        holding([read("load", 20), read("registrations", 20)], promoted="t1"),
        facts(25, promote="t1"),
        Wait(at(30), "holding canary: observed 20s of 60s"),
    ),
    Case(
        "promote-reads-due-gates-first",
        SPEC,
        holding(captured()),
        facts(5, promote="t1"),
        EvaluateGates("canary", GATES),
    ),
    Case(
        "promote-cannot-override-a-breach",
        SPEC,
        holding([read("load", 20, "Fail", breaches=1, message="7.20 > 6"), read("registrations", 20)]),
        facts(25, promote="t1"),
        FailPush("GateFailed", "gate load 7.20 > 6 in phase canary", gate="load", phase="canary"),
    ),
    Case(
        "promote-ends-watch",
        WATCHED,
        release_status(
            "Watching",
            "watch",
            phases(canary="Passed", chat="Passed", everything_else="Passed"),
            gauges=[read("load", 20, phase="watch"), read("registrations", 20, phase="watch")],
            watch_until=at(600),
        ),
        facts(25, promote="t2"),
        CompletePhase("watch", promoted="t2"),
    ),
    Case(
        "pause-annotation",
        SPEC,
        holding([read("load", 20), read("registrations", 20)]),
        facts(25, paused="true"),
        SetPause(True),
    ),
    Case(
        "pause-annotation-while-inconclusive-is-a-user-pause",
        SPEC,
        holding(
            [read("load", 20, "Inconclusive"), read("registrations", 20)],
            phase="Paused",
            pause_reason="Inconclusive",
        ),
        facts(25, paused="yes"),
        SetPause(True),
    ),
    Case(
        "pause-annotation-false-is-no-pause",
        SPEC,
        holding([read("load", 20), read("registrations", 20)]),
        facts(25, paused="false"),
        Wait(at(30), "holding canary: observed 20s of 60s"),
    ),
    Case(
        "resume",
        SPEC,
        holding([read("load", 20), read("registrations", 20)], **PAUSED_HOLDING),
        facts(25),
        SetPause(False),
    ),
    Case(
        "paused-no-new-phase-starts",
        SPEC,
        release_status(
            "Paused",
            "chat",
            phases(canary="Passed"),
            snapshot=["web-canary"],
            user_paused=True,
            pause_reason="User",
        ),
        facts(70, paused="true"),
        Wait(None, "paused before phase chat"),
    ),
    Case(
        "paused-rollout-in-flight-continues",
        SPEC,
        release_status("Paused", "canary", phases(canary="Progressing"), user_paused=True, pause_reason="User"),
        facts(5, paused="true"),
        MarkAvailable("canary"),
    ),
    Case(
        "paused-gates-still-evaluated",
        SPEC,
        holding([read("load", 20), read("registrations", 20)], **PAUSED_HOLDING),
        facts(30, paused="true"),
        EvaluateGates("canary", ("load",)),
    ),
    Case(
        "paused-hold-over-does-not-complete",
        SPEC,
        holding([read("load", 60), read("registrations", 50)], **PAUSED_HOLDING),
        facts(65, paused="true"),
        Wait(at(70), "paused in canary"),
    ),
    Case(
        "paused-breach-still-fails",
        SPEC,
        holding(
            [read("load", 20, "Fail", breaches=1, message="7.20 > 6"), read("registrations", 20)], **PAUSED_HOLDING
        ),
        facts(20, paused="true"),
        FailPush("GateFailed", "gate load 7.20 > 6 in phase canary", gate="load", phase="canary"),
    ),
    Case(
        "abort-while-progressing",
        SPEC,
        release_status("Progressing", "chat", phases(canary="Passed", chat="Progressing")),
        facts(70, abort="bad numbers"),
        FailPush("Aborted", "aborted by user: bad numbers", phase="chat"),
    ),
    Case(
        "abort-while-holding",
        SPEC,
        holding([read("load", 20), read("registrations", 20)]),
        facts(25, abort="bad numbers"),
        FailPush("Aborted", "aborted by user: bad numbers", phase="canary"),
    ),
    Case(
        "abort-while-paused",
        SPEC,
        holding([read("load", 20), read("registrations", 20)], **PAUSED_HOLDING),
        facts(25, abort="x", paused="true"),
        FailPush("Aborted", "aborted by user: x", phase="canary"),
    ),
    Case(
        "abort-blank-is-ignored",
        SPEC,
        holding([read("load", 20), read("registrations", 20)]),
        facts(25, abort="  "),
        Wait(at(30), "holding canary: observed 20s of 60s"),
    ),
)
def test_annotations(case: Case) -> None:
    assert plan(case.spec, case.status, case.facts) == case.expected


# ---------------------------------------------------------------- watch window and final states
ALL_PASSED = phases(canary="Passed", chat="Passed", everything_else="Passed")


@cases(
    Case(
        "watch-starts-evaluating",
        WATCHED,
        release_status("Watching", "watch", ALL_PASSED, gauges=captured(), watch_until=at(600)),
        facts(65),
        EvaluateGates("watch", GATES),
    ),
    Case(
        "watch-waits",
        WATCHED,
        release_status(
            "Watching",
            "watch",
            ALL_PASSED,
            gauges=[read("load", 65, phase="watch"), read("registrations", 65, phase="watch")],
            watch_until=at(600),
            watch_observed_since=at(65),
        ),
        facts(70),
        Wait(at(75), "holding watch: observed 5s of 600s"),
    ),
    Case(
        "watch-breach-fails",
        WATCHED,
        release_status(
            "Watching",
            "watch",
            ALL_PASSED,
            gauges=[
                read("load", 65, "Fail", phase="watch", breaches=1, message="7.20 > 6"),
                read("registrations", 65, phase="watch"),
            ],
            watch_until=at(600),
        ),
        facts(65),
        FailPush("GateFailed", "gate load 7.20 > 6 in phase watch", gate="load", phase="watch"),
    ),
    Case(
        "watch-completes",
        WATCHED,
        release_status(
            "Watching",
            "watch",
            ALL_PASSED,
            gauges=[read("load", 595, phase="watch"), read("registrations", 590, phase="watch")],
            watch_until=at(600),
            watch_observed_seconds=595,
            watch_observed_since=at(595),
        ),
        facts(600),
        CompletePhase("watch"),
    ),
    Case(
        "watch-does-not-complete-on-wall-time",
        WATCHED,
        release_status(
            "Watching",
            "watch",
            ALL_PASSED,
            gauges=[read("load", 595, phase="watch"), read("registrations", 590, phase="watch")],
            watch_until=at(600),
            watch_observed_seconds=300,
            watch_observed_since=at(595),
        ),
        facts(600),
        Wait(at(605), "holding watch: observed 305s of 600s"),
    ),
    Case(
        "succeeded-is-final",
        SPEC,
        release_status("Succeeded", None, ALL_PASSED, completed_at=at(315)),
        facts(900),
        Wait(None, "release succeeded"),
    ),
    Case(
        "rolled-back-is-final",
        SPEC,
        release_status(
            "RolledBack",
            None,
            phases(canary="Failed"),
            failure=FailureStatus(reason="GateFailed", message="gate load 7.20 > 6", gate="load", phase="canary"),
            revert=RevertStatus(state="Pushed", commit="a" * 40, attempts=1),
            completed_at=at(18),
            rolled_back_at=at(18),
        ),
        facts(900, abort="x"),
        Wait(None, "release rolledback"),
    ),
    Case(
        "failed-is-final",
        SPEC,
        release_status(
            "Failed", failure=FailureStatus(reason="ManifestError", message="bad yaml", at=at(0)), completed_at=at(0)
        ),
        facts(900, paused="true"),
        Wait(None, "release failed"),
    ),
)
def test_watch_and_final(case: Case) -> None:
    assert plan(case.spec, case.status, case.facts) == case.expected


# ---------------------------------------------------------------- rolling back: the cluster side
FAILURE = FailureStatus(gate="load", phase="chat", reason="GateFailed", message="gate load 7.20 > 6", at=at(100))


def rolling_back(
    *,
    undo: UndoStatus | None = None,
    revert: RevertStatus | None = None,
    snapshot: list[str] | None = None,
    absent: tuple[str, ...] = ("new-svc",),
    failure: FailureStatus = FAILURE,
    **extra: Any,
) -> ReleaseStatus:
    snap = ["chat-a", "chat-b", "web-canary"] if snapshot is None else snapshot
    return release_status(
        "RollingBack",
        "chat",
        phases(canary="Passed", chat="Failed"),
        snapshot=snap,
        absent=absent,
        undo=undo,
        revert=revert,
        failure=failure,
        **extra,
    )


def rolled_back(*, revert: RevertStatus | None, failure: FailureStatus = FAILURE) -> ReleaseStatus:
    """Final after a restore (RolledBack), with the git side as given."""
    return rolling_back(undo=RESTORED, revert=revert, failure=failure, completed_at=at(103), rolled_back_at=at(103))


RESTORED = UndoStatus(at=at(100), restored=["chat-a", "chat-b", "web-canary"], deleted=["new-svc"])
FAST = ("chat-a", "chat-b", "web-canary")  # onFailure.undo: fast (the default) writes these with surge-all
FAST_RESTORED = RESTORED.model_copy(update={"mode": "fast", "strategy_pending": list(FAST)})
ROLLING = SPEC.model_copy(update={"on_failure": SPEC.on_failure.model_copy(update={"undo": "rolling"})})
PUSHED = RevertStatus(state="Pushed", commit="a" * 40, pushed_at=at(100), attempts=1)
NOT_TRIED = RevertStatus(state="Pending", reason="not attempted yet")
RUNNING = RevertJob(running=True)


def in_flight(attempt: int = 1, started: float = 100) -> RevertStatus:
    return RevertStatus(state="Pending", attempts=attempt, attempt_started_at=at(started))


def retrying(attempts: int, due: float, reason: str = "Unreachable: connection refused") -> RevertStatus:
    return RevertStatus(state="Pending", attempts=attempts, reason=reason, next_attempt_at=at(due))


def revert_status(state: Any, attempts: int, when: float = 100) -> RevertStatus:
    return RevertStatus(state=state, pushed_at=at(when), attempts=attempts, reason="fake")


@cases(
    Case(
        "restore-goes-out-before-the-revert",
        SPEC,
        rolling_back(revert=NOT_TRIED),
        facts(100),
        Undo(("chat-a", "chat-b", "web-canary"), ("new-svc",), FAST),
    ),
    Case(
        "revert-starts-right-after-the-restore",
        SPEC,
        rolling_back(undo=RESTORED, revert=NOT_TRIED),
        facts(100),
        StartRevert(),
    ),
    Case(
        "undo-restores-every-snapshot-and-deletes-created",
        SPEC,
        rolling_back(revert=in_flight()),
        facts(100, revert_job=RUNNING),
        Undo(("chat-a", "chat-b", "web-canary"), ("new-svc",), FAST),
    ),
    Case(
        "undo-without-revert",
        NO_REVERT,
        rolling_back(revert=RevertStatus(state="Skipped", reason="onFailure.revertCommit is false")),
        facts(100),
        Undo(("chat-a", "chat-b", "web-canary"), ("new-svc",), FAST),
    ),
    Case(
        "undo-when-the-failure-wants-no-revert",
        SPEC,
        rolling_back(revert=None, failure=FAILURE.model_copy(update={"reason": "GatesInconclusive", "revert": False})),
        facts(100),
        Undo(("chat-a", "chat-b", "web-canary"), ("new-svc",), FAST),
    ),
    Case(
        "abort-while-rolling-back-changes-nothing",
        SPEC,
        rolling_back(revert=in_flight()),
        facts(100, abort="x", paused="true", revert_job=RUNNING),
        Undo(("chat-a", "chat-b", "web-canary"), ("new-svc",), FAST),
    ),
    Case(
        "wait-for-restored-to-be-available",
        SPEC,
        rolling_back(undo=RESTORED, revert=PUSHED),
        facts(101, deployments=live(chat_b=False, web_canary=False)),
        Wait(at(700), "waiting for restored chat-b, web-canary to become Available"),
    ),
    Case(
        "mark-rolled-back-when-available",
        SPEC,
        rolling_back(undo=RESTORED, revert=PUSHED),
        facts(103),
        MarkRolledBack(),
    ),
    Case(
        "mark-rolled-back-while-the-revert-runs",
        SPEC,
        rolling_back(undo=RESTORED, revert=in_flight()),
        facts(103, revert_job=RUNNING),
        MarkRolledBack(),
    ),
    Case(
        "mark-rolled-back-while-the-revert-waits-to-retry",
        SPEC,
        rolling_back(undo=RESTORED, revert=retrying(3, due=110)),
        facts(103),
        MarkRolledBack(),
    ),
    Case(
        "mark-rolled-back-at-restore-deadline",
        SPEC,
        rolling_back(undo=RESTORED, revert=PUSHED),
        facts(700, deployments=live(web_canary=False)),
        MarkRolledBack("restored, but web-canary not Available after 10m"),
    ),
    Case(
        "restore-error-waits-to-retry",
        SPEC,
        rolling_back(
            undo=UndoStatus(at=at(100), restored=["chat-a"], error="chat-b: forbidden", attempts=1), revert=PUSHED
        ),
        facts(101, deployments=live(chat_a=False)),
        Wait(at(102), "retrying the restore: chat-b: forbidden"),
    ),
    Case(
        "restore-error-retried-from-the-snapshot",
        SPEC,
        rolling_back(
            undo=UndoStatus(at=at(100), restored=["chat-a"], error="chat-b: forbidden", attempts=1), revert=PUSHED
        ),
        facts(102, deployments=live(chat_a=False)),
        Undo(("chat-a", "chat-b", "web-canary"), ("new-svc",), FAST),
    ),
    Case(
        "restore-error-ends-rollback-after-max-attempts",
        SPEC,
        rolling_back(
            undo=UndoStatus(at=at(100), restored=["chat-a"], error="chat-b: forbidden", attempts=5), revert=PUSHED
        ),
        facts(101, deployments=live(chat_a=False)),
        MarkRolledBack(),
    ),
)
def test_rollback(case: Case) -> None:
    assert plan(case.spec, case.status, case.facts) == case.expected


def strategy_failed(attempts: int) -> dict[str, Any]:
    from controller.models.release import ActionError

    return {"action_error": ActionError(action="RestoreStrategy", message="403 forbidden", attempts=attempts)}


@cases(
    Case(
        "rolling-undo-writes-no-temporary-strategy",
        ROLLING,
        rolling_back(revert=in_flight()),
        facts(100, revert_job=RUNNING),
        Undo(("chat-a", "chat-b", "web-canary"), ("new-svc",)),
    ),
    Case(
        "a-workload-the-push-created-is-deleted-not-fast-restored",
        SPEC,
        rolling_back(
            revert=in_flight(), snapshot=["chat-a", "Deployment/new", "ConfigMap/cfg"], absent=("Deployment/new",)
        ),
        facts(100, revert_job=RUNNING),
        Undo(("chat-a", "Deployment/new", "ConfigMap/cfg"), ("Deployment/new",), ("chat-a",)),
    ),
    Case(
        "fast-undo-waits-for-available-before-the-strategy",
        SPEC,
        rolling_back(undo=FAST_RESTORED, revert=PUSHED),
        facts(101, deployments=live(chat_b=False)),
        Wait(at(700), "waiting for restored chat-b to become Available"),
    ),
    Case(
        "fast-undo-puts-the-strategy-back-once-available",
        SPEC,
        rolling_back(undo=FAST_RESTORED, revert=PUSHED),
        facts(101),
        RestoreStrategy(FAST),
    ),
    Case(
        "fast-undo-puts-the-strategy-back-even-past-the-deadline",
        SPEC,
        rolling_back(undo=FAST_RESTORED, revert=PUSHED),
        facts(700, deployments=live(web_canary=False)),
        RestoreStrategy(FAST),
    ),
    Case(
        "strategy-back-then-rolled-back",
        SPEC,
        rolling_back(undo=FAST_RESTORED.model_copy(update={"strategy_pending": []}), revert=PUSHED),
        facts(102),
        MarkRolledBack(),
    ),
    Case(
        "failed-restore-still-puts-the-strategy-back",
        SPEC,
        rolling_back(
            undo=UndoStatus(error="chat-b: forbidden", attempts=5, strategy_pending=list(FAST), at=at(100)),
            revert=PUSHED,
        ),
        facts(101),
        RestoreStrategy(FAST),
    ),
    Case(
        "strategy-retried-while-it-fails",
        SPEC,
        rolling_back(undo=FAST_RESTORED, revert=PUSHED, **strategy_failed(2)),
        facts(101),
        RestoreStrategy(FAST),
    ),
    Case(
        "strategy-given-up-after-max-attempts",
        SPEC,
        rolling_back(undo=FAST_RESTORED, revert=PUSHED, **strategy_failed(5)),
        facts(101),
        MarkRolledBack("could not put back the strategy of chat-a, chat-b, web-canary: 403 forbidden"),
    ),
)
def test_fast_undo(case: Case) -> None:
    assert plan(case.spec, case.status, case.facts) == case.expected


# ---------------------------------------------------------------- the git side: a revert that never gives up
PUSHED_RESULT = RevertResult("Pushed", commit="b" * 40, attempts=1)
UNREACHABLE = RevertResult("Error", reason="connection refused", attempts=1, code="Unreachable")
WAIVE = '{"by": "alice", "reason": "fixed forward", "withoutRevert": true}'


@cases(
    Case(
        "finished-attempt-is-recorded",
        SPEC,
        rolling_back(undo=RESTORED, revert=in_flight()),
        facts(101, revert_job=RevertJob(running=False, result=PUSHED_RESULT)),
        RecordRevert(PUSHED_RESULT),
    ),
    Case(
        "failed-attempt-is-recorded-after-the-rollback",
        SPEC,
        rolled_back(revert=in_flight(4)),
        facts(130, revert_job=RevertJob(running=False, result=UNREACHABLE)),
        RecordRevert(UNREACHABLE),
    ),
    Case(
        "attempt-in-flight-waits",
        SPEC,
        rolled_back(revert=in_flight(2)),
        facts(110, revert_job=RUNNING),
        Wait(None, "git revert attempt 2 in flight"),
    ),
    Case(
        "pending-waits-for-the-backoff",
        SPEC,
        rolled_back(revert=retrying(3, due=120)),
        facts(110),
        Wait(at(120), "git revert pending after 3 attempt(s): Unreachable: connection refused"),
    ),
    Case("pending-retries-when-due", SPEC, rolled_back(revert=retrying(3, due=120)), facts(120), StartRevert()),
    Case(
        "pending-never-gives-up",
        SPEC,
        rolled_back(revert=retrying(500, due=20000)),
        facts(20000),
        StartRevert(),
    ),
    Case(
        "restart-mid-attempt-starts-a-new-one",
        SPEC,
        rolled_back(revert=in_flight(2)),
        facts(110),
        StartRevert(),
    ),
    Case(
        "waive-settles-a-pending-revert",
        SPEC,
        rolled_back(revert=retrying(3, due=120)),
        facts(110, waive=WAIVE),
        WaiveRevert("alice", "fixed forward"),
    ),
    Case(
        "waive-wins-over-a-finished-attempt",
        SPEC,
        rolled_back(revert=in_flight(3)),
        facts(110, waive="plain reason", revert_job=RevertJob(running=False, result=UNREACHABLE)),
        WaiveRevert("unknown", "plain reason"),
    ),
    Case(
        "blank-waive-is-ignored",
        SPEC,
        rolled_back(revert=retrying(3, due=120)),
        facts(120, waive="  "),
        StartRevert(),
    ),
    Case(
        "waive-after-landing-changes-nothing",
        SPEC,
        rolled_back(revert=PUSHED),
        facts(110, waive=WAIVE),
        Wait(None, "release rolledback"),
    ),
    Case(
        "failed-without-rollback-still-reverts",
        NO_ROLLBACK,
        rolling_back(revert=NOT_TRIED, completed_at=at(100)),
        facts(100),
        StartRevert(),
    ),
    Case(
        "conflict-is-not-retried",
        SPEC,
        rolled_back(revert=revert_status("Conflict", 1)),
        facts(105),
        Wait(None, "release rolledback"),
    ),
    Case(
        "already-reverted-is-settled",
        SPEC,
        rolled_back(revert=revert_status("AlreadyReverted", 1)),
        facts(105),
        Wait(None, "release rolledback"),
    ),
    Case(
        "waived-is-settled",
        SPEC,
        rolled_back(revert=revert_status("Waived", 3)),
        facts(105),
        Wait(None, "release rolledback"),
    ),
    Case(
        "no-revert-for-a-failure-that-wants-none",
        SPEC,
        rolled_back(
            revert=revert_status("Skipped", 0),
            failure=FAILURE.model_copy(update={"reason": "GatesInconclusive", "revert": False}),
        ),
        facts(105),
        Wait(None, "release rolledback"),
    ),
)
def test_revert(case: Case) -> None:
    assert plan(case.spec, case.status, case.facts) == case.expected


def test_transient_manifest_error_waits_instead_of_failing() -> None:
    from controller.release.actions import Manifests as _Manifests

    status = ReleaseStatus()
    action = plan(SPEC, status, Facts(now=at(0), manifests=_Manifests(error="git: connection refused", transient=True)))
    assert action == Wait(None, "cannot read the manifests yet: git: connection refused")
    failed = plan(SPEC, status, Facts(now=at(0), manifests=_Manifests(error="bad yaml in deploy/a.yaml")))
    assert isinstance(failed, FailPush) and failed.reason == "ManifestError"


def test_every_object_is_pushed_and_named_in_status() -> None:
    from controller.release.actions import Begin as _Begin
    from controller.release.actions import Done
    from controller.release.executor import objects_in
    from controller.release.status import reduce as _reduce

    docs = [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web-canary", "labels": {"tier": "web"}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}},
    ]
    manifests = objects_in(docs, "shop", {})
    assert [o.key for o in manifests.objects] == ["Deployment/web-canary", "Service/web", "ConfigMap/settings"]
    spec = make_spec(phases=[{"name": "canary", "deployments": ["web-canary"]}])
    begin = plan(spec, ReleaseStatus(), Facts(now=at(0), manifests=manifests))
    assert isinstance(begin, _Begin) and begin.ignored == ()
    status = _reduce(spec, ReleaseStatus(), begin, Done(), at(0))
    (phase,) = status.phases
    assert phase.deployments == ["web-canary"] and phase.workloads == ["Deployment/web-canary"]
    assert phase.objects == ["ConfigMap/settings", "Deployment/web-canary", "Service/web"]
