"""Fold an action and its outcome into a new Release status. Pure: no I/O; time comes in as ``now``."""

from __future__ import annotations

from datetime import UTC, datetime

from controller.gates.evaluate import judge, judge_experiment, new_row, record
from controller.models.common import ConditionStatus, set_condition
from controller.models.release import (
    FailureStatus,
    GaugeRow,
    PhaseStatus,
    ReleasePhase,
    ReleaseSpec,
    ReleaseStatus,
    RevertStatus,
    SnapshotStatus,
    UndoStatus,
)
from controller.release.actions import (
    WATCH_PHASE,
    Action,
    ActionFailed,
    Applied,
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
    SetPause,
    Snapshot,
    SnapshotTaken,
    Undo,
    Undone,
    Wait,
)
from controller.release.assign import (
    PhaseContents,
    deleted_keys,
    deployment_names,
    normal_key,
    restored_keys,
    short_key,
)
from controller.release.plan import gates_for, machine_state, needs_revert, row_for


def _clock_time(t: datetime) -> str:
    """A time as people read it in messages: ``17:24:41Z``."""
    return t.astimezone(UTC).strftime("%H:%M:%SZ")


def snapshot_configmap_name(release: str) -> str:
    """Name of the ConfigMap holding a Release's pre-push objects."""
    return f"{release[:244]}-snapshot"


def _cond(status: ReleaseStatus, type_: str, value: ConditionStatus, reason: str, message: str, now: datetime) -> None:
    status.conditions = set_condition(status.conditions, type_, value, reason, message, now, status.observed_generation)


def _set_phase(status: ReleaseStatus, phase: ReleasePhase) -> None:
    """Set the machine state, keeping a pause overlay in place."""
    if status.phase == "Paused" and status.paused_from is not None:
        status.paused_from = phase
    else:
        status.phase = phase


def _update_phase(status: ReleaseStatus, name: str, **changes: object) -> None:
    status.phases = [p.model_copy(update=changes) if p.name == name else p for p in status.phases]


def _upsert_row(status: ReleaseStatus, row: GaugeRow) -> None:
    rows = [r for r in status.gauges if not (r.gate == row.gate and r.phase == row.phase)]
    status.gauges = [*rows, row]


def _baseline(status: ReleaseStatus, gate: str, phase: str) -> float | None:
    """The pre-push value for a row: the phase's own capture; the watch window compares with the first phase.

    (Watch gates that do not judge the first phase have their own ``watch`` row, captured before the
    first phase was applied, so they never reach the fallback.)
    """
    if phase == WATCH_PHASE:
        first = next((r for r in status.gauges if r.gate == gate and r.phase != WATCH_PHASE), None)
        return first.pre_push if first else None
    row = row_for(status, gate, phase)
    return row.pre_push if row else None


def _lift_inconclusive_pause(status: ReleaseStatus) -> None:
    if status.pause_reason == "Inconclusive":
        status.phase = status.paused_from or status.phase
        status.paused_from = None
        status.pause_reason = None


def _inconclusive_overlay(spec: ReleaseSpec, status: ReleaseStatus, phase: str, now: datetime) -> None:
    """Show ``Paused`` while an acting gate has no conclusive reading; lift it when readings return.

    Also keeps ``GatesPassing`` honest: False while an acting gate is breaching (even within its
    failureLimit), True only when every acting gate's latest verdict is Pass.
    """
    rows = [
        r for g in gates_for(spec, phase) if not g.dry_run for r in [row_for(status, g.name, phase)] if r is not None
    ]
    waiting = [r for r in rows if r.verdict in ("Inconclusive", "Error")]
    breaching = [r for r in rows if r.verdict == "Fail"]
    if waiting:
        names = ", ".join(f"{r.gate} ({r.message})" for r in waiting)
        _cond(status, "GatesPassing", "Unknown", "GatesInconclusive", f"no conclusive reading: {names}", now)
        if status.pause_reason is None:
            status.paused_from = status.phase
            status.phase = "Paused"
            status.pause_reason = "Inconclusive"
        status.message = f"paused: gate(s) inconclusive: {names}"
        return
    if breaching:
        names = ", ".join(f"{r.gate} ({r.message})" for r in breaching)
        _cond(status, "GatesPassing", "False", "GateBreaching", f"breaching in {phase}: {names}", now)
    else:
        _cond(status, "GatesPassing", "True", "GatesPass", f"every gate passes in {phase}", now)
    if status.pause_reason == "Inconclusive":
        _lift_inconclusive_pause(status)
        status.message = f"gates conclusive again in {phase}"


def reduce(spec: ReleaseSpec, status: ReleaseStatus, action: Action, outcome: Outcome, now: datetime) -> ReleaseStatus:
    """The status after ``action`` ran with ``outcome``."""
    s = status.model_copy(deep=True)
    if isinstance(outcome, ActionFailed):
        s.message = f"{type(action).__name__} failed: {outcome.message}"
        if isinstance(action, ApplyPhase) and outcome.applied:
            _record_applied(s, action, Applied(outcome.applied))  # what it created is deleted by UID
        if outcome.permanent and not isinstance(action, Undo):
            phase = getattr(action, "phase", s.current_phase)
            if isinstance(action, ApplyPhase):
                # Some Deployments of the phase may have been applied before the failure: count the phase as
                # started so the failure rolls back what was touched instead of leaving it half-applied.
                _update_phase(s, action.phase, state="Progressing", started_at=now)
            return reduce(spec, s, FailPush("ActionFailed", outcome.message, phase=phase), Done(), now)
        return s

    if isinstance(action, Begin):
        contents = {c.name: c for c in action.contents}
        s.phases = [PhaseStatus(name=n, deployments=list(d), **_contents(contents.get(n))) for n, d in action.phases]
        s.started_at = s.started_at or now
        s.current_phase = action.phases[0][0]
        s.skipped_commits = list(action.skipped)
        s.phase = "Progressing"
        s.message = f"pushing {spec.source.revision[:7]} in {len(action.phases)} phase(s)"
        if action.unassigned:
            s.message += f"; not in any phase: {', '.join(action.unassigned)}"
        if action.ignored:
            s.message += f"; not Deployments, not pushed: {', '.join(action.ignored)}"
        _cond(s, "Ready", "False", "Progressing", s.message, now)
    elif isinstance(action, Snapshot) and isinstance(outcome, SnapshotTaken):
        snap = s.snapshot or SnapshotStatus(config_map=outcome.config_map)
        s.snapshot = snap.model_copy(
            update={
                "config_map": outcome.config_map,
                "secret": outcome.secret or snap.secret,
                "deployments": sorted({*snap.deployments, *deployment_names(outcome.taken)}),
                "objects": sorted({*snap.objects, *outcome.taken}),
                "absent": sorted({*snap.absent, *outcome.absent}),
            }
        )
    elif isinstance(action, CaptureBaseline) and isinstance(outcome, Readings):
        for gate in gates_for(spec, action.phase):
            if gate.name not in action.gates:
                continue
            m = outcome.values.get(gate.name)
            pre = m.value if m is not None and m.usable else None
            _upsert_row(s, new_row(gate, action.phase, pre).model_copy(update={"at": None}))
    elif isinstance(action, ApplyPhase):
        _update_phase(s, action.phase, state="Progressing", started_at=now)
        s.message = f"phase {action.phase}: applied {', '.join(action.objects or action.deployments)}"
        if isinstance(outcome, Applied):
            _record_applied(s, action, outcome)
    elif isinstance(action, MarkAvailable):
        hold = next((p.hold for p in spec.phases if p.name == action.phase), None)
        until = now + hold if hold is not None else now
        _update_phase(s, action.phase, state="Holding", available_at=now, hold_until=until)
        _set_phase(s, "Holding")
        s.message = f"phase {action.phase} Available; holding until {_clock_time(until)}"
    elif isinstance(action, EvaluateGates) and isinstance(outcome, Readings):
        _fold_readings(spec, s, action, outcome, now)
    elif isinstance(action, CompletePhase):
        _complete(spec, s, action, now)
    elif isinstance(action, FailPush):
        _fail(spec, s, action, now)
    elif isinstance(action, Undo) and isinstance(outcome, Undone):
        _undone(spec, s, action, outcome, now)
    elif isinstance(action, MarkRolledBack):
        _finish_rollback(spec, s, action, now)
    elif isinstance(action, SetPause):
        _pause(s, action, now)
    elif isinstance(action, Wait):
        pass
    return s


def _contents(c: PhaseContents | None) -> dict[str, list[str]]:
    if c is None:
        return {}
    return {"workloads": list(c.workloads), "objects": list(c.objects), "pruned": list(c.prune)}


def _record_applied(s: ReleaseStatus, action: ApplyPhase, out: Applied) -> None:
    """UIDs of the objects the push created (absent before it): only those are deleted on rollback."""
    if out.pruned:
        s.message = f"{s.message}; pruned {', '.join(out.pruned)}"
    if s.snapshot is None:
        return
    absent = {normal_key(k) for k in s.snapshot.absent}
    created = {k: uid for k, uid in out.uids.items() if normal_key(k) in absent and uid}
    if created:
        s.snapshot = s.snapshot.model_copy(update={"created": {**created, **s.snapshot.created}})


def _fold_readings(spec: ReleaseSpec, s: ReleaseStatus, action: EvaluateGates, out: Readings, now: datetime) -> None:
    for gate in gates_for(spec, action.phase):
        if gate.name not in action.gates:
            continue
        row = row_for(s, gate.name, action.phase) or new_row(gate, action.phase, _baseline(s, gate.name, action.phase))
        if gate.experiment is not None:
            decision, srm_ok = out.experiments.get(gate.name, (None, None))
            _upsert_row(s, record(gate, row, None, judge_experiment(gate, decision, srm_ok), now))
            continue
        m = out.values.get(gate.name)
        if m is not None:
            # ``at`` is when the reading was taken into account, not when the query started: the next
            # reading is due one interval later, even if the provider answered from its short cache.
            _upsert_row(s, record(gate, row, m.value, judge(gate, row.pre_push, m), max(now, m.at)))
    _inconclusive_overlay(spec, s, action.phase, now)


def _complete(spec: ReleaseSpec, s: ReleaseStatus, action: CompletePhase, now: datetime) -> None:
    if action.promoted:
        s.promoted = action.promoted
    # A promoted phase may end while its gates are inconclusive; the overlay belongs to that phase.
    _lift_inconclusive_pause(s)
    if action.phase == WATCH_PHASE:
        _succeed(s, now)
        return
    _update_phase(s, action.phase, state="Passed", completed_at=now)
    names = [p.name for p in s.phases]
    idx = names.index(action.phase)
    how = " (promoted)" if action.promoted else ""
    if idx + 1 < len(names):
        s.current_phase = names[idx + 1]
        _set_phase(s, "Progressing")
        s.message = f"phase {action.phase} passed{how}; next: {names[idx + 1]}"
    elif spec.watch.total_seconds() > 0:
        s.current_phase = WATCH_PHASE
        s.watch_until = now + spec.watch
        _set_phase(s, "Watching")
        s.message = f"phase {action.phase} passed{how}; watching until {_clock_time(s.watch_until)}"
    else:
        _succeed(s, now)


def _succeed(s: ReleaseStatus, now: datetime) -> None:
    s.phase = "Succeeded"
    s.paused_from = None
    s.pause_reason = None
    s.current_phase = None
    s.completed_at = now
    s.message = "every phase passed"
    _cond(s, "Ready", "True", "Succeeded", "every phase passed its gates", now)


def _fail(spec: ReleaseSpec, s: ReleaseStatus, action: FailPush, now: datetime) -> None:
    s.failure = FailureStatus(
        gate=action.gate, phase=action.phase, reason=action.reason, message=action.message, at=now
    )
    s.failed_gate = action.gate
    s.message = action.message
    s.paused_from = None
    s.pause_reason = None
    if action.phase and action.phase != WATCH_PHASE:
        _update_phase(s, action.phase, state="Failed", completed_at=now)
    if action.gate:
        _cond(s, "GatesPassing", "False", "GateFailed", action.message, now)
    applied = any(p.started_at is not None for p in s.phases)
    if applied and (spec.on_failure.rollback or spec.on_failure.revert_commit):
        s.phase = "RollingBack"
        _cond(s, "Ready", "False", action.reason, action.message, now)
    else:
        s.phase = "Failed"
        s.completed_at = now
        _cond(s, "Ready", "False", action.reason, action.message, now)


def _undone(spec: ReleaseSpec, s: ReleaseStatus, action: Undo, out: Undone, now: datetime) -> None:
    if action.restore or action.delete or s.undo is None:
        tries = (s.undo.attempts if s.undo else 0) + (1 if action.restore or action.delete else 0)
        s.undo = UndoStatus(
            at=out.restored_at or now,
            restored=deployment_names(out.restored),
            deleted=deployment_names(out.deleted),
            objects=list(out.restored),  # keys as the snapshot lists them (bare names in older statuses)
            deleted_objects=list(out.deleted),
            error=out.restore_error,
            attempts=tries,
        )
        if out.restore_error:
            _cond(s, "RolledBack", "False", "RestoreFailed", out.restore_error, now)
    if out.revert is not None:
        prev = s.revert.attempts if s.revert else 0
        r = out.revert
        s.revert = RevertStatus(
            state=r.state,
            commit=r.commit,
            pushed_at=now if r.state in ("Pushed", "AlreadyReverted") else None,
            last_attempt_at=now,
            message=r.message,
            reason=r.reason,
            attempts=prev + max(r.attempts, 1),
        )
        if r.state in ("Pushed", "AlreadyReverted"):
            _cond(s, "GitReverted", "True", r.state, f"revert {r.commit} on {spec.source.branch}", now)
        elif r.state == "Skipped":
            _cond(s, "GitReverted", "False", "Skipped", r.reason or "revert not configured", now)
        else:
            _cond(s, "GitReverted", "False", r.state, r.reason or "revert failed", now)
    elif not needs_revert(spec, s) and s.revert is None:
        s.revert = RevertStatus(state="Skipped", reason="onFailure.revertCommit is false")
        _cond(s, "GitReverted", "False", "Skipped", "onFailure.revertCommit is false", now)


def _finish_rollback(spec: ReleaseSpec, s: ReleaseStatus, action: MarkRolledBack, now: datetime) -> None:
    restored = bool(s.undo and (restored_keys(s.undo) or deleted_keys(s.undo)))
    s.completed_at = now
    s.current_phase = None
    if spec.on_failure.rollback and s.undo and not s.undo.error:
        s.phase = "RolledBack"
        s.rolled_back_at = now
        for p in s.phases:
            if p.started_at is not None and p.state != "Failed":
                _update_phase(s, p.name, state="RolledBack")
        detail = action.message or (
            f"restored {', '.join(map(short_key, restored_keys(s.undo) + deleted_keys(s.undo)))}"
            if restored
            else "nothing to restore"
        )
        _cond(s, "RolledBack", "True", "Restored", detail, now)
        s.message = f"rolled back: {s.failure.message if s.failure else ''}".rstrip(": ")
    else:
        s.phase = "Failed"
        why = s.undo.error if s.undo and s.undo.error else "onFailure.rollback is false"
        _cond(s, "RolledBack", "False", "NotRolledBack", why, now)


def _pause(s: ReleaseStatus, action: SetPause, now: datetime) -> None:
    if action.paused:
        if s.pause_reason is None:
            s.paused_from = machine_state(s)
        s.phase = "Paused"
        s.pause_reason = "User"
        s.message = "paused by user"
        _cond(s, "Paused", "True", "UserPaused", "annotation stopline.dev/paused is set", now)
    else:
        s.phase = s.paused_from or s.phase
        s.paused_from = None
        s.pause_reason = None
        s.message = "resumed by user"
        _cond(s, "Paused", "False", "Resumed", "annotation stopline.dev/paused removed", now)
