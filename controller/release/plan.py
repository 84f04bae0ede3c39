"""The Release state machine: spec + status + facts → the one next action. Pure: no I/O, no clock.

States (``status.phase``): Pending → Progressing ⇄ Holding → … → Watching → Succeeded, or on failure
RollingBack → RolledBack | Failed. ``Paused`` overlays any live state (``status.pausedFrom``) when a
user pauses the push or a gate has no data. Each phase goes Pending → (snapshot, pre-push baseline)
→ Progressing (applied) → Holding (Available) → Passed.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from controller.gates.evaluate import tripped
from controller.models.common import format_duration
from controller.models.release import Gate, GaugeRow, PhaseStatus, ReleasePhase, ReleaseSpec, ReleaseStatus
from controller.release.actions import (
    ANNOTATION_ABORT,
    ANNOTATION_PAUSED,
    ANNOTATION_PROMOTE,
    ANNOTATION_SKIPPED,
    WATCH_PHASE,
    Action,
    ApplyPhase,
    Begin,
    CaptureBaseline,
    CompletePhase,
    EvaluateGates,
    Facts,
    FailPush,
    Manifests,
    MarkAvailable,
    MarkRolledBack,
    SetPause,
    Snapshot,
    Undo,
    Wait,
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

FINAL: frozenset[str] = frozenset({"Succeeded", "RolledBack", "Failed"})
MAX_REVERT_ATTEMPTS = 5
REVERT_RETRY = timedelta(seconds=5)
MAX_RESTORE_ATTEMPTS = 5
RESTORE_RETRY = timedelta(seconds=2)


def machine_state(status: ReleaseStatus) -> ReleasePhase:
    """The underlying state, looking through a pause."""
    if status.phase == "Paused" and status.paused_from is not None:
        return status.paused_from
    return status.phase


def is_final(status: ReleaseStatus) -> bool:
    """Whether the Release has reached a final state."""
    return machine_state(status) in FINAL


def needs_manifests(status: ReleaseStatus) -> bool:
    """The planner needs the revision's manifests only to resolve the phases, once."""
    return status.phase == "Pending" and not status.phases


def gates_for(spec: ReleaseSpec, phase: str) -> list[Gate]:
    """Gates that judge the given phase (or ``watch``)."""
    return [g for g in spec.gates if g.phases is None or phase in g.phases]


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
    return Begin(phases, unassigned, ignored=manifests.ignored, contents=() if legacy else out.phases)


def _current(status: ReleaseStatus) -> PhaseStatus | None:
    return next((p for p in status.phases if p.name == status.current_phase), None)


def _anything_applied(status: ReleaseStatus) -> bool:
    return any(p.started_at is not None for p in status.phases)


def needs_revert(spec: ReleaseSpec, status: ReleaseStatus) -> bool:
    """A revert commit is wanted when configured and the revision was actually pushed."""
    return spec.on_failure.revert_commit and _anything_applied(status)


def _revert_settled(status: ReleaseStatus, now: datetime) -> tuple[bool, datetime | None]:
    """(settled, retry_at): whether the revert needs no further attempt, else when to retry."""
    revert = status.revert
    if revert is None or revert.state in ("Pushed", "AlreadyReverted", "Conflict", "Skipped"):
        return True, None
    if revert.state == "Error" and revert.attempts >= MAX_REVERT_ATTEMPTS:
        return True, None
    last = revert.last_attempt_at or (status.undo.at if status.undo else None) or now
    return False, last + REVERT_RETRY


def _user_pause(status: ReleaseStatus, facts: Facts) -> SetPause | None:
    want = facts.annotations.get(ANNOTATION_PAUSED, "").strip().lower() in ("true", "1", "yes")
    have = status.pause_reason == "User"
    if want != have:
        return SetPause(want)
    return None


def plan(spec: ReleaseSpec, status: ReleaseStatus, facts: Facts) -> Action:
    """The next action for this Release."""
    state = machine_state(status)
    if state in FINAL:
        return Wait(None, f"release {state.lower()}")
    if state == "RollingBack":
        return _plan_rollback(spec, status, facts)

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
    user_paused = status.pause_reason == "User"

    if state == "Watching":
        return _plan_gates(spec, status, facts, WATCH_PHASE, status.watch_until, user_paused)

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
        return _plan_rollout(spec, current, facts)
    if current.state == "Holding":
        return _plan_gates(spec, status, facts, current.name, current.hold_until, user_paused)
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


def _plan_rollout(spec: ReleaseSpec, current: PhaseStatus, facts: Facts) -> Action:
    workloads = workload_keys(current)
    live = [facts.live.get(d) for d in workloads]
    failures = [f"{d.name}: {d.failure}" for d in live if d is not None and d.failure]
    if failures:
        return FailPush("RolloutFailed", "; ".join(failures), phase=current.name)
    if all(d is not None and d.exists and d.available for d in live):
        return MarkAvailable(current.name)
    started = current.started_at or facts.now
    deadline = started + spec.progress_deadline
    if facts.now >= deadline:
        waiting = [n for n, d in zip(workloads, live, strict=True) if d is None or not d.available]
        return FailPush(
            "ProgressDeadlineExceeded",
            f"phase {current.name}: {', '.join(waiting)} not Available after {format_duration(spec.progress_deadline)}",
            phase=current.name,
        )
    return Wait(deadline, f"waiting for phase {current.name} to become Available")


def _plan_gates(
    spec: ReleaseSpec,
    status: ReleaseStatus,
    facts: Facts,
    phase: str,
    until: datetime | None,
    user_paused: bool,
) -> Action:
    now = facts.now
    gates = gates_for(spec, phase)
    rows = {g.name: row_for(status, g.name, phase) for g in gates}
    for g in gates:
        row = rows[g.name]
        if row is not None and tripped(g, row):
            return FailPush("GateFailed", f"gate {g.name} {row.message} in phase {phase}", gate=g.name, phase=phase)
    due: list[str] = []
    next_due: list[datetime] = []
    for g in gates:
        row = rows[g.name]
        if row is None or row.at is None or row.readings == 0 or row.at + g.interval <= now:
            due.append(g.name)
        else:
            next_due.append(row.at + g.interval)
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
    if (until is None or now >= until) and conclusive:
        return CompletePhase(phase)
    wake = [*next_due, *([until] if until is not None and now < until else [])]
    why = f"holding {phase}" if conclusive else f"holding {phase}: waiting for conclusive gate readings"
    return Wait(min(wake, default=None), why)


def _plan_rollback(spec: ReleaseSpec, status: ReleaseStatus, facts: Facts) -> Action:
    now = facts.now
    revert = needs_revert(spec, status)
    if status.undo is None:
        snap = status.snapshot
        restore = snapshot_keys(snap) if spec.on_failure.rollback and snap else ()
        delete = tuple(snap.absent) if spec.on_failure.rollback and snap else ()
        return Undo(restore, delete, revert)
    settled, retry_at = _revert_settled(status, now) if revert else (True, None)
    undo = status.undo
    restore_again = bool(undo.error) and undo.attempts < MAX_RESTORE_ATTEMPTS and spec.on_failure.rollback
    restore_at = (undo.at or now) + RESTORE_RETRY
    if restore_again and now >= restore_at:
        snap = status.snapshot
        return Undo(
            snapshot_keys(snap),
            tuple(snap.absent) if snap else (),
            revert and not settled and retry_at is not None and now >= retry_at,
        )
    if not settled and retry_at is not None:
        if now >= retry_at:
            return Undo((), (), True)
        return Wait(min(retry_at, restore_at) if restore_again else retry_at, "retrying the git revert")
    if restore_again:
        return Wait(restore_at, f"retrying the restore: {undo.error}")
    restored = restored_keys(status.undo)
    if restored and not status.undo.error:
        pending = [d for d in restored if is_workload_key(d) and not (facts.live.get(d) and facts.live[d].available)]
        deadline = (status.undo.at or now) + spec.progress_deadline
        if pending and now < deadline:
            return Wait(deadline, f"waiting for restored {', '.join(pending)} to become Available")
        if pending:
            return MarkRolledBack(
                f"restored, but {', '.join(pending)} not Available after {format_duration(spec.progress_deadline)}"
            )
    return MarkRolledBack()
