"""The Release state machine: spec + status + facts → the one next action. Pure: no I/O, no clock.

States (``status.phase``): Pending → Progressing ⇄ Holding → … → Watching → Succeeded, or on failure
RollingBack → RolledBack | Failed. ``Paused`` overlays any live state (``status.pausedFrom``) when a
user pauses the push or a gate has no data. Each phase goes Pending → (snapshot, pre-push baseline)
→ Progressing (applied) → Holding (Available) → Passed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Literal

from controller.gates.evaluate import breached, outage
from controller.gates.kinds import ROLLOUT_KINDS
from controller.models.common import format_duration, parse_token
from controller.models.release import (
    FINAL_PHASES,
    REVERT_SETTLED,
    Gate,
    GaugeRow,
    PhaseStatus,
    ReleasePhase,
    ReleaseSpec,
    ReleaseStatus,
    SnapshotStatus,
    StuckStatus,
)
from controller.notify.outbox import next_attempt, next_delivery, pending
from controller.release.actions import (
    ANNOTATION_ABORT,
    ANNOTATION_PAUSED,
    ANNOTATION_PROMOTE,
    ANNOTATION_SKIPPED,
    ANNOTATION_WAIVE_REVERT,
    WATCH_PHASE,
    Action,
    ApplyPhase,
    Begin,
    CaptureBaseline,
    Cause,
    CompletePhase,
    EvaluateGates,
    Facts,
    FailPush,
    Manifests,
    MarkAvailable,
    MarkRolledBack,
    NoteStuck,
    RecordRevert,
    RestoreStrategy,
    SetPause,
    Snapshot,
    StartRevert,
    Undo,
    Wait,
    WaiveRevert,
)
from controller.release.assign import (
    ManifestObject,
    assign,
    is_workload_key,
    normal_key,
    phase_keys,
    restored_keys,
    snapshot_keys,
    snapshotted,
    split_key,
    targets_of,
    workload_keys,
)

FINAL = FINAL_PHASES
MAX_RESTORE_ATTEMPTS = 5
RESTORE_RETRY = timedelta(seconds=2)
#: A wanted git revert is retried until it lands: 2 s, 4 s, 8 s, ... capped at 30 s between attempts.
REVERT_BACKOFF_BASE = timedelta(seconds=2)
REVERT_BACKOFF_MAX = timedelta(seconds=30)


def revert_backoff(attempts: int) -> timedelta:
    """Delay before the next revert attempt after ``attempts`` failed ones (capped exponential)."""
    if attempts <= 0:
        return timedelta(0)
    delay: timedelta = REVERT_BACKOFF_BASE * (2 ** min(attempts - 1, 16))
    return min(delay, REVERT_BACKOFF_MAX)


def machine_state(status: ReleaseStatus) -> ReleasePhase:
    """The state of the push, looking through a pause (derived from the rest of the status)."""
    return derive_phase(status, paused=False)


def derive_phase(status: ReleaseStatus, *, paused: bool = True) -> ReleasePhase:
    """``status.phase`` as a function of the rest of the status (never stored on its own).

    Final: ``completedAt`` set — Succeeded without a failure, RolledBack when the restore finished,
    Failed otherwise. In flight: RollingBack once a failure is recorded; Paused (when ``paused``) while the
    user paused the push or an acting gate of the phase being judged has no conclusive reading; Watching
    in the watch window; Holding while the current phase holds; Progressing once phases are resolved.
    """
    if status.completed_at is not None:
        if status.failure is None:
            return "Succeeded"
        return "RolledBack" if status.rolled_back_at is not None else "Failed"
    if status.failure is not None:
        return "RollingBack"
    if not status.phases:
        return "Pending"
    if paused and pause_reason(status) is not None:
        return "Paused"
    if status.current_phase == WATCH_PHASE:
        return "Watching"
    current = next((p for p in status.phases if p.name == status.current_phase), None)
    if current is not None and current.state == "Holding":
        return "Holding"
    return "Progressing"


def pause_reason(status: ReleaseStatus) -> Literal["User", "Inconclusive"] | None:
    """Why the push is paused: the user's annotation, or an acting gate without a conclusive reading."""
    if status.completed_at is not None or status.failure is not None or not status.phases:
        return None
    if status.user_paused:
        return "User"
    phase = status.current_phase
    judging = phase == WATCH_PHASE or any(p.name == phase and p.state == "Holding" for p in status.phases)
    if judging and any(
        r.phase == phase and not r.dry_run and r.verdict in ("Inconclusive", "Error") and r.inconclusive > 0
        for r in status.gauges
    ):
        return "Inconclusive"
    return None


def is_final(status: ReleaseStatus) -> bool:
    """Whether the push has reached a final state (the cluster side is done)."""
    return machine_state(status) in FINAL


def revert_wanted(spec: ReleaseSpec, status: ReleaseStatus) -> bool:
    """A revert commit is wanted when configured, the failure calls for one and the revision was pushed."""
    return (
        spec.on_failure.revert_commit
        and status.failure is not None
        and status.failure.revert
        and _anything_applied(status)
    )


def revert_pending(spec: ReleaseSpec, status: ReleaseStatus) -> bool:
    """A wanted revert that has not landed, conflicted or been waived yet."""
    return revert_wanted(spec, status) and (status.revert is None or status.revert.state not in REVERT_SETTLED)


def settled(spec: ReleaseSpec, status: ReleaseStatus) -> bool:
    """Nothing more will ever be done for this Release: final, no revert still to push, no message to send."""
    return is_final(status) and not revert_pending(spec, status) and not pending(status.notifications)


def needs_manifests(status: ReleaseStatus) -> bool:
    """The planner needs the revision's manifests only to resolve the phases, once."""
    return status.completed_at is None and status.failure is None and not status.phases


def gates_for(spec: ReleaseSpec, phase: str) -> list[Gate]:
    """Gates that judge the given phase (or ``watch``).

    A compare gate never judges the last phase or the watch window: nothing is left unpushed there to
    compare with (see :mod:`controller.gates.compare`)."""
    last = spec.phases[-1].name
    return [
        g
        for g in spec.gates
        if (g.phases is None or phase in g.phases) and not (g.compare is not None and phase in (last, WATCH_PHASE))
    ]


def reading_interval(gate: Gate, status: ReleaseStatus, phase: str, now: datetime) -> timedelta:
    """The gate's reading interval now: ``earlyInterval`` during the first ``earlyFor`` after the phase
    became Available (never in the watch window), ``interval`` otherwise."""
    early = gate.early_interval
    if early is None or gate.early_for <= timedelta(0) or phase == WATCH_PHASE:
        return gate.interval
    current = next((p for p in status.phases if p.name == phase), None)
    if current is None or current.available_at is None or now >= current.available_at + gate.early_for:
        return gate.interval
    return min(early, gate.interval)


def reading_due(gate: Gate, row: GaugeRow, status: ReleaseStatus, phase: str, now: datetime) -> datetime | None:
    """When the gate's next reading is due (None: now — it has not read yet in this phase).

    ``row.nextAt`` when the reducer scheduled it (scrape-aligned), else one reading interval after the last."""
    if row.at is None or row.readings == 0:
        return None
    if row.next_at is not None:
        return row.next_at
    return row.at + reading_interval(gate, status, phase, now)


def row_for(status: ReleaseStatus, gate: str, phase: str) -> GaugeRow | None:
    """The gauges row of a gate in a phase."""
    return next((r for r in status.gauges if r.gate == gate and r.phase == phase), None)


def resolve_phases(spec: ReleaseSpec, manifests: Manifests) -> Begin | FailPush:
    """What each phase pushes (``controller.release.assign``): workloads by target, other objects by use."""
    if manifests.error:
        return FailPush("ManifestError", manifests.error)
    legacy = not manifests.objects
    objects = manifests.objects or tuple(
        ManifestObject("Deployment", d.name, "apps/v1", labels=dict(d.labels)) for d in manifests.deployments
    )
    if legacy and not objects:
        return FailPush("ManifestError", f"no Deployment found under {spec.source.path}")
    if not objects:
        return FailPush("ManifestError", f"no objects found under {spec.source.path}")
    out = assign(targets_of(spec.phases), objects, spec.source.revision[:7], manifests.prune)
    if out.error:
        return FailPush("ManifestError", out.error, phase=out.error_phase)
    phases = tuple((p.name, p.deployments) for p in out.phases)
    unassigned = tuple(split_key(k)[1] if legacy else k for k in out.unassigned)
    return Begin(
        phases,
        unassigned,
        ignored=manifests.ignored,
        contents=() if legacy else out.phases,
        author=manifests.author,
        committer=manifests.committer,
    )


def _current(status: ReleaseStatus) -> PhaseStatus | None:
    return next((p for p in status.phases if p.name == status.current_phase), None)


def _anything_applied(status: ReleaseStatus) -> bool:
    return any(p.started_at is not None for p in status.phases)


def _plan_revert(spec: ReleaseSpec, status: ReleaseStatus, facts: Facts) -> Action | None:
    """The git side of a failed push, planned apart from the cluster side (which never waits for it).

    One attempt runs at a time beside the loop; a failed attempt is retried with capped backoff until the
    revert lands, conflicts, or a human waives it. None when there is nothing to do for Git right now.
    """
    if not revert_pending(spec, status):
        return None
    waive = facts.annotations.get(ANNOTATION_WAIVE_REVERT, "").strip()
    if waive:
        token = parse_token(waive)
        return WaiveRevert(token.by, token.reason)
    job = facts.revert_job
    if job is not None and job.result is not None:
        return RecordRevert(job.result)
    if job is not None and job.running:
        return None
    due = status.revert.next_attempt_at if status.revert else None
    if due is None or facts.now >= due:
        return StartRevert()
    return None


def _revert_wait(spec: ReleaseSpec, status: ReleaseStatus) -> tuple[datetime | None, str]:
    """When the loop must look at the revert again, and what it is waiting for."""
    r = status.revert
    if not revert_pending(spec, status) or r is None:
        return None, ""
    if r.attempt_started_at is not None:
        return None, f"git revert attempt {r.attempts} in flight"
    why = f"git revert pending after {r.attempts} attempt(s): {r.reason or 'not pushed yet'}"
    return r.next_attempt_at, why


def _user_pause(status: ReleaseStatus, facts: Facts) -> SetPause | None:
    want = facts.annotations.get(ANNOTATION_PAUSED, "").strip().lower() in ("true", "1", "yes")
    have = status.user_paused
    if want != have:
        return SetPause(want)
    return None


def plan(spec: ReleaseSpec, status: ReleaseStatus, facts: Facts) -> Action:
    """The next action for this Release: the push's, else (only when the push would wait) a notification's."""
    action = _plan_push(spec, status, facts)
    if isinstance(action, Wait):
        return plan_delivery(status, facts, action)
    return action


def plan_delivery(status: ReleaseStatus, facts: Facts, wait: Wait) -> Action:
    """Notifications go out only where the push would wait anyway: fold in a finished delivery task's answers,
    else start one for the due outbox entries (a background task: the loop never waits for a receiver), else
    wait — no longer than until the next retry is due."""
    step = next_delivery(status.notifications, facts.delivery_job, facts.now)
    if step is not None:
        return step
    retry = next_attempt(status.notifications)
    idle = facts.delivery_job is None or not facts.delivery_job.running
    if retry is not None and idle and (wait.until is None or retry < wait.until):
        return replace(wait, until=retry)
    return wait


def _plan_push(spec: ReleaseSpec, status: ReleaseStatus, facts: Facts) -> Action:
    """The push's next action (the cluster and Git sides)."""
    state = machine_state(status)
    if state == "RollingBack" and status.undo is None:
        # the restore goes out first: the cluster stops serving the pushed version before anything else
        # (the revert attempt is started right after it, beside the wait for the restored workloads)
        return _plan_rollback(spec, status, facts)
    if state in FINAL or state == "RollingBack":
        git = _plan_revert(spec, status, facts)
        if git is not None:
            return git
        if state == "RollingBack":
            return _plan_rollback(spec, status, facts)
        until, why = _revert_wait(spec, status)
        return Wait(until, why or f"release {state.lower()}")

    failed = status.action_error
    if failed is not None and failed.permanent:
        return FailPush(
            "ActionFailed", f"{failed.action}: {failed.message}", phase=failed.phase or status.current_phase
        )

    abort = facts.annotations.get(ANNOTATION_ABORT, "").strip()
    if abort:
        phase = status.current_phase
        return FailPush("Aborted", f"aborted by user: {abort}", phase=phase)

    if not status.phases:
        if facts.manifests is None:
            return Wait(None, "reading manifests")
        if facts.manifests.error and facts.manifests.transient:
            return Wait(None, f"cannot read the manifests yet: {facts.manifests.error}")
        begin = resolve_phases(spec, facts.manifests)
        skipped = tuple(c for c in facts.annotations.get(ANNOTATION_SKIPPED, "").split(",") if c)
        return replace(begin, skipped=skipped) if isinstance(begin, Begin) and skipped else begin

    pause = _user_pause(status, facts)
    if pause is not None:
        return pause
    user_paused = status.user_paused

    if state == "Watching":
        return _plan_gates(spec, status, facts, WATCH_PHASE, user_paused)

    current = _current(status)
    if current is None:
        return FailPush("InternalError", f"current phase {status.current_phase!r} is not in status.phases")
    if current.state == "Pending":
        if user_paused:
            return Wait(None, f"paused before phase {current.name}")
        snapped = snapshotted(status.snapshot)
        to_snap = tuple(k for k in phase_keys(current) if normal_key(k) not in snapped)
        if to_snap:
            return Snapshot(current.name, to_snap)
        missing = tuple(g.name for g in gates_for(spec, current.name) if row_for(status, g.name, current.name) is None)
        if missing:
            return CaptureBaseline(current.name, missing)
        watch_missing = _watch_baseline_missing(spec, status, current)
        if watch_missing:
            return CaptureBaseline(WATCH_PHASE, watch_missing)
        return ApplyPhase(current.name, tuple(current.deployments), tuple(current.objects), tuple(current.pruned))
    if current.state == "Progressing":
        return _plan_progressing(spec, status, current, facts)
    if current.state == "Holding":
        return _plan_gates(spec, status, facts, current.name, user_paused)
    return FailPush("InternalError", f"phase {current.name} is in unexpected state {current.state}")


def _watch_baseline_missing(spec: ReleaseSpec, status: ReleaseStatus, current: PhaseStatus) -> tuple[str, ...]:
    """Watch-window gates that judge no first-phase row get their pre-push value before anything changes.

    The watch window compares with the pre-push value of the first phase; a gate that does not judge
    the first phase (e.g. ``phases: [watch]``) has no such row, so it is captured under ``watch``
    while the first phase is still Pending. Without it a relative bound could never pass.
    """
    if spec.watch <= timedelta(0) or not status.phases or status.phases[0].name != current.name:
        return ()
    first = {g.name for g in gates_for(spec, current.name)}
    return tuple(
        g.name
        for g in gates_for(spec, WATCH_PHASE)
        if g.name not in first and row_for(status, g.name, WATCH_PHASE) is None
    )


def stuck_cause(keys: Iterable[str], facts: Facts) -> tuple[bool, Cause | None]:
    """(known, cause): the first concrete cause among the workloads not Available yet — one that cannot
    heal first. ``known`` is False when a workload was not observed (then the recorded cause stands)."""
    found: list[Cause] = []
    for key in keys:
        d = facts.live.get(key)
        if d is None:
            return False, None
        if d.exists and not d.available and d.cause is not None:
            found.append(d.cause)
    if not found:
        return True, None
    return True, next((c for c in found if not c.heals), found[0])


def _same(recorded: StuckStatus | None, cause: Cause | None) -> bool:
    if recorded is None or cause is None:
        return recorded is None and cause is None
    return (recorded.workload, recorded.reason, recorded.message, recorded.heals) == (
        cause.workload,
        cause.reason,
        cause.message,
        cause.heals,
    )


def note_stuck(
    spec: ReleaseSpec, phase: str | None, recorded: StuckStatus | None, cause: Cause | None, now: datetime
) -> NoteStuck | None:
    """Record a new (or changed, or vanished) cause; None when the status already says it.

    ``since`` survives a change of message (pod counts) and a change from one cause that cannot heal to
    another (ErrImagePull ⇄ ImagePullBackOff): the grace ``stuckAfter`` counts from the first of them.
    """
    if _same(recorded, cause):
        return None
    if cause is None:
        return NoteStuck(phase, None)
    since = now
    if recorded is not None and recorded.since is not None:
        same = (recorded.workload, recorded.reason) == (cause.workload, cause.reason)
        if same or (not recorded.heals and not cause.heals):
            since = recorded.since
    fails_at = None if cause.heals else since + spec.stuck_after
    return NoteStuck(phase, cause, since, fails_at)


def _plan_progressing(spec: ReleaseSpec, status: ReleaseStatus, current: PhaseStatus, facts: Facts) -> Action:
    """The rollout, with the gates of kinds read while it runs (kubernetes: a crash-looping rollout fails
    on the gate within seconds instead of waiting for progressDeadline). Their verdicts never hold the
    rollout up; a breach past failureLimit fails the push as in the hold."""
    gates = [g for g in gates_for(spec, current.name) if g.kind in ROLLOUT_KINDS]
    for g in gates:
        row = row_for(status, g.name, current.name)
        if row is not None and breached(g, row):
            return FailPush(
                "GateFailed", f"gate {g.name} {row.message} in phase {current.name}", gate=g.name, phase=current.name
            )
    action = _plan_rollout(spec, current, facts)
    if not isinstance(action, Wait) or not gates:
        return action
    due: list[str] = []
    wake: list[datetime] = []
    for g in gates:
        row = row_for(status, g.name, current.name)
        when = reading_due(g, row, status, current.name, facts.now) if row is not None else None
        if when is None or when <= facts.now:
            due.append(g.name)
        else:
            wake.append(when)
    if due:
        return EvaluateGates(current.name, tuple(due))
    return Wait(min([*wake, *([action.until] if action.until else [])]), action.reason)


def _plan_rollout(spec: ReleaseSpec, current: PhaseStatus, facts: Facts) -> Action:
    workloads = workload_keys(current)
    live = [facts.live.get(d) for d in workloads]
    failures = [f"{d.name}: {d.failure}" for d in live if d is not None and d.failure]
    if failures:
        return FailPush("RolloutFailed", "; ".join(failures), phase=current.name)
    if all(d is not None and d.exists and d.available for d in live):
        return MarkAvailable(current.name)
    known, cause = stuck_cause(workloads, facts)
    if known:
        note = note_stuck(spec, current.name, current.stuck, cause, facts.now)
        if note is not None:
            return note
    stuck = current.stuck
    started = current.started_at or facts.now
    deadline = started + spec.progress_deadline
    if stuck is not None and stuck.fails_at is not None and not stuck.heals and facts.now >= stuck.fails_at:
        return FailPush(
            stuck.reason,
            f"{stuck.message} (phase {current.name}: cannot heal by waiting; "
            f"stuck {format_duration(spec.stuck_after)})",
            phase=current.name,
        )
    if facts.now >= deadline:
        waiting = [n for n, d in zip(workloads, live, strict=True) if d is None or not d.available]
        why = f": {stuck.message}" if stuck is not None else ""
        return FailPush(
            "ProgressDeadlineExceeded",
            f"phase {current.name}: {', '.join(waiting)} not Available after "
            f"{format_duration(spec.progress_deadline)}{why}",
            phase=current.name,
        )
    if stuck is not None and stuck.fails_at is not None and not stuck.heals:
        return Wait(min(deadline, stuck.fails_at), f"phase {current.name} stuck: {stuck.message}")
    if stuck is not None:
        return Wait(deadline, f"phase {current.name} waiting (can heal): {stuck.message}")
    return Wait(deadline, f"waiting for phase {current.name} to become Available")


def acting_gates(spec: ReleaseSpec, phase: str) -> list[Gate]:
    """Gates of a phase whose verdicts act on the push (not dry-run)."""
    return [g for g in gates_for(spec, phase) if not g.dry_run]


def observed_cap(spec: ReleaseSpec, phase: str) -> float | None:
    """How much time one conclusive reading vouches for: the longest acting gate interval (None: no gates)."""
    gates = acting_gates(spec, phase)
    if not gates:
        return None
    return max(g.interval.total_seconds() for g in gates)


def hold_clock(status: ReleaseStatus, phase: str) -> tuple[float, datetime | None]:
    """(observed seconds counted so far, start of the current uncounted stretch) of a phase or the watch."""
    if phase == WATCH_PHASE:
        return status.watch_observed_seconds, status.watch_observed_since
    current = next((p for p in status.phases if p.name == phase), None)
    if current is None:
        return 0.0, None
    return current.observed_seconds, current.observed_since


def observed_seconds(spec: ReleaseSpec, status: ReleaseStatus, phase: str, now: datetime) -> float:
    """Hold time observed so far: counted stretches plus the current one, which the latest conclusive
    reading vouches for up to one gate interval (while the user pauses or a gate has no data, no time counts)."""
    counted, since = hold_clock(status, phase)
    if since is None or status.user_paused:
        return counted
    tail = max(0.0, (now - since).total_seconds())
    cap = observed_cap(spec, phase)
    return counted + (tail if cap is None else min(tail, cap))


def required_hold(spec: ReleaseSpec, phase: str) -> timedelta:
    """The hold of a phase (``watch`` for the watch window)."""
    if phase == WATCH_PHASE:
        return spec.watch
    return next((p.hold for p in spec.phases if p.name == phase), timedelta(0))


def _plan_gates(
    spec: ReleaseSpec,
    status: ReleaseStatus,
    facts: Facts,
    phase: str,
    user_paused: bool,
) -> Action:
    now = facts.now
    gates = gates_for(spec, phase)
    rows = {g.name: row_for(status, g.name, phase) for g in gates}
    for g in gates:
        row = rows[g.name]
        if row is not None and breached(g, row):
            return FailPush("GateFailed", f"gate {g.name} {row.message} in phase {phase}", gate=g.name, phase=phase)
    out = [g for g in gates if rows[g.name] is not None and outage(g, rows[g.name])]  # type: ignore[arg-type]
    if out and spec.on_inconclusive != "pause":
        g = out[0]
        return FailPush(
            "GatesInconclusive",
            f"gate {g.name} {rows[g.name].message} in phase {phase} (onInconclusive: {spec.on_inconclusive})",  # type: ignore[union-attr]
            gate=g.name,
            phase=phase,
            revert=spec.on_inconclusive == "rollbackAndRevert",
        )
    due: list[str] = []
    next_due: list[datetime] = []
    for g in gates:
        row = rows[g.name]
        when = reading_due(g, row, status, phase, now) if row is not None else None
        if when is None or when <= now:
            due.append(g.name)
        else:
            next_due.append(when)
    if due:
        return EvaluateGates(phase, tuple(due))
    token = facts.annotations.get(ANNOTATION_PROMOTE, "").strip()
    if token and token != status.promoted:
        return CompletePhase(phase, promoted=token)
    if user_paused:
        return Wait(min(next_due, default=None), f"paused in {phase}")
    conclusive = all(
        g.dry_run or (rows[g.name] is not None and rows[g.name].verdict == "Pass")  # type: ignore[union-attr]
        for g in gates
    )
    required = required_hold(spec, phase).total_seconds()
    observed = observed_seconds(spec, status, phase, now)
    if conclusive and observed >= required:
        return CompletePhase(phase)
    wake = list(next_due)
    if conclusive:
        wake.append(now + timedelta(seconds=required - observed))
    if out:
        names = ", ".join(g.name for g in out)
        why = (
            f"paused in {phase}: gate(s) {names} past inconclusiveLimit; waiting for data "
            f"(onInconclusive: pause; observed {observed:.0f}s of {required:.0f}s)"
        )
    elif conclusive:
        why = f"holding {phase}: observed {observed:.0f}s of {required:.0f}s"
    else:
        why = f"holding {phase}: waiting for conclusive gate readings (observed {observed:.0f}s of {required:.0f}s)"
    return Wait(min(wake, default=None), why)


def undo_action(spec: ReleaseSpec, snap: SnapshotStatus | None) -> Undo:
    """Restore every snapshotted object and delete what the push created; with ``onFailure.undo: fast`` the
    restored workloads are written with a surge-all strategy first (put back by :class:`RestoreStrategy`)."""
    if not spec.on_failure.rollback or snap is None:
        return Undo((), ())
    restore = snapshot_keys(snap)
    absent = {normal_key(k) for k in snap.absent}
    fast = (
        tuple(k for k in restore if is_workload_key(k) and normal_key(k) not in absent)
        if spec.on_failure.undo == "fast"
        else ()
    )
    return Undo(restore, tuple(snap.absent), fast)


def _plan_rollback(spec: ReleaseSpec, status: ReleaseStatus, facts: Facts) -> Action:
    """The cluster side of a failed push: restore, wait for the restored workloads to be Available, put
    back the strategies a fast undo replaced, then mark the Release rolled back."""
    now = facts.now
    snap = status.snapshot
    if status.undo is None:
        return undo_action(spec, snap)
    undo = status.undo
    failed = status.action_error
    gave_up = failed is not None and failed.action == "RestoreStrategy" and failed.attempts >= MAX_RESTORE_ATTEMPTS
    if undo.strategy_pending and failed is not None and gave_up:
        return MarkRolledBack(
            f"could not put back the strategy of {', '.join(undo.strategy_pending)}: {failed.message}"
        )
    restore_again = bool(undo.error) and undo.attempts < MAX_RESTORE_ATTEMPTS and spec.on_failure.rollback
    if restore_again:
        restore_at = (undo.at or now) + RESTORE_RETRY
        if now >= restore_at:
            return undo_action(spec, snap)
        return Wait(restore_at, f"retrying the restore: {undo.error}")
    restored = restored_keys(undo)
    if restored and not undo.error:
        pending = [d for d in restored if is_workload_key(d) and not (facts.live.get(d) and facts.live[d].available)]
        if pending:
            known, cause = stuck_cause(pending, facts)
            note = note_stuck(spec, None, undo.stuck, cause, now) if known else None
            if note is not None:
                return note
        stuck = undo.stuck if pending else None
        why = f": {stuck.message}" if stuck is not None else ""
        deadline = (undo.at or now) + spec.progress_deadline
        if stuck is not None and not stuck.heals and stuck.fails_at is not None and now >= stuck.fails_at:
            if undo.strategy_pending:  # exactness first: the temporary fast strategy never stays
                return RestoreStrategy(tuple(undo.strategy_pending))
            return MarkRolledBack(
                f"restored, but {', '.join(pending)} not Available{why} (cannot heal by waiting; "
                f"stuck {format_duration(spec.stuck_after)})"
            )
        if pending and now < deadline:
            until = min(deadline, stuck.fails_at) if stuck is not None and stuck.fails_at is not None else deadline
            return Wait(until, f"waiting for restored {', '.join(pending)} to become Available{why}")
        if undo.strategy_pending:
            # exactness: the temporary strategy never stays, even when the rollout missed its deadline
            return RestoreStrategy(tuple(undo.strategy_pending))
        if pending:
            return MarkRolledBack(
                f"restored, but {', '.join(pending)} not Available after {format_duration(spec.progress_deadline)}{why}"
            )
    elif undo.strategy_pending:
        return RestoreStrategy(tuple(undo.strategy_pending))
    return MarkRolledBack()
