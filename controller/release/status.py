"""Fold an action and its outcome into a new Release status. Pure: no I/O; time comes in as ``now``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.gates.evaluate import new_row, outage
from controller.gates.kinds import baseline, fold_reading
from controller.gates.schedule import next_reading
from controller.models.common import ConditionStatus, format_duration, person_name, set_condition
from controller.models.release import (
    REVERT_LANDED,
    ActionError,
    FailureStatus,
    Gate,
    GaugeRow,
    PhaseStatus,
    ReleaseSpec,
    ReleaseStatus,
    RevertStatus,
    SnapshotStatus,
    StuckStatus,
    UndoStatus,
)
from controller.notify.outbox import RecordDelivery, StartDelivery, apply_results
from controller.release.actions import (
    WATCH_PHASE,
    Action,
    ActionFailed,
    Applied,
    ApplyPhase,
    Begin,
    CaptureBaseline,
    CompletePhase,
    EvaluateGates,
    FailPush,
    MarkAvailable,
    MarkRolledBack,
    NoteStuck,
    Outcome,
    Readings,
    RecordRevert,
    RestoreStrategy,
    RevertResult,
    SetPause,
    Snapshot,
    SnapshotTaken,
    StartRevert,
    Undo,
    Undone,
    Wait,
    WaiveRevert,
)
from controller.release.assign import (
    PhaseContents,
    deleted_keys,
    deployment_names,
    normal_key,
    restored_keys,
    short_key,
)
from controller.release.plan import (
    derive_phase,
    gates_for,
    hold_clock,
    observed_cap,
    observed_seconds,
    pause_reason,
    reading_interval,
    required_hold,
    revert_backoff,
    revert_wanted,
    row_for,
)


def _clock_time(t: datetime) -> str:
    """A time as people read it in messages: ``17:24:41Z``."""
    return t.astimezone(UTC).strftime("%H:%M:%SZ")


def snapshot_configmap_name(release: str) -> str:
    """Name of the ConfigMap holding a Release's pre-push objects."""
    return f"{release[:244]}-snapshot"


def _cond(status: ReleaseStatus, type_: str, value: ConditionStatus, reason: str, message: str, now: datetime) -> None:
    status.conditions = set_condition(status.conditions, type_, value, reason, message, now, status.observed_generation)


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


def _gate_conditions(spec: ReleaseSpec, status: ReleaseStatus, phase: str, now: datetime) -> None:
    """Keep ``GatesPassing`` and the message honest after new readings.

    Unknown while an acting gate has no conclusive reading (the push is then Paused: derived), False while
    one is breaching (even within its failureLimit), True only when every acting gate's latest verdict is Pass.
    """
    acting = {g.name: g for g in gates_for(spec, phase) if not g.dry_run}
    rows = [r for r in status.gauges if r.phase == phase and r.gate in acting]
    waiting = [r for r in rows if r.verdict in ("Inconclusive", "Error")]
    breaching = [r for r in rows if r.verdict == "Fail"]
    was_waiting = any(c.type == "GatesPassing" and c.status == "Unknown" for c in status.conditions)
    if waiting:
        names = ", ".join(f"{r.gate} ({r.message})" for r in waiting)
        over = [r for r in waiting if outage(acting[r.gate], r)]
        reason = "InconclusiveLimitExceeded" if over else "GatesInconclusive"
        _cond(status, "GatesPassing", "Unknown", reason, f"no conclusive reading: {names}", now)
        status.message = f"paused: gate(s) inconclusive: {names}"
        if over and spec.on_inconclusive == "pause":
            status.message += "; the push waits for data (onInconclusive: pause)"
        return
    if breaching:
        names = ", ".join(f"{r.gate} ({r.message})" for r in breaching)
        _cond(status, "GatesPassing", "False", "GateBreaching", f"breaching in {phase}: {names}", now)
    else:
        _cond(status, "GatesPassing", "True", "GatesPass", f"every gate passes in {phase}", now)
    if was_waiting:
        status.message = f"gates conclusive again in {phase}"


def _tick_hold(spec: ReleaseSpec, status: ReleaseStatus, phase: str, now: datetime) -> None:
    """Count observed hold time: the stretch since the last conclusive reading counts only when this
    reading is conclusive too (every acting gate has data), up to one gate interval per reading."""
    acting = [g for g in gates_for(spec, phase) if not g.dry_run]
    rows = [row_for(status, g.name, phase) for g in acting]
    conclusive = all(r is not None and r.readings > 0 and r.verdict in ("Pass", "Fail") for r in rows)
    counted, since = hold_clock(status, phase)
    if since is not None and conclusive and not status.user_paused:
        cap = observed_cap(spec, phase)
        tail = max(0.0, (now - since).total_seconds())
        counted += tail if cap is None else min(tail, cap)
    since = now if conclusive and not status.user_paused else None
    _set_clock(spec, status, phase, counted, since, now)


def _set_clock(
    spec: ReleaseSpec, status: ReleaseStatus, phase: str, counted: float, since: datetime | None, now: datetime
) -> None:
    left = max(0.0, required_hold(spec, phase).total_seconds() - counted)
    until = now + timedelta(seconds=left)
    if phase == WATCH_PHASE:
        status.watch_observed_seconds, status.watch_observed_since = counted, since
        status.watch_until = until
    else:
        _update_phase(status, phase, observed_seconds=counted, observed_since=since, hold_until=until)


def _derive(s: ReleaseStatus) -> ReleaseStatus:
    """The one place ``phase`` and ``pauseReason`` are set: derived from the rest of the status."""
    s.phase = derive_phase(s)
    s.pause_reason = pause_reason(s)
    return s


def reduce(spec: ReleaseSpec, status: ReleaseStatus, action: Action, outcome: Outcome, now: datetime) -> ReleaseStatus:
    """The status after ``action`` ran with ``outcome``: it records what happened; the planner decides."""
    return _derive(_reduce(spec, status.model_copy(deep=True), action, outcome, now))


def _reduce(spec: ReleaseSpec, s: ReleaseStatus, action: Action, outcome: Outcome, now: datetime) -> ReleaseStatus:
    if isinstance(outcome, ActionFailed):
        name = type(action).__name__
        phase = getattr(action, "phase", None) or s.current_phase
        prev = s.action_error
        attempts = prev.attempts + 1 if prev is not None and prev.action == name else 1
        s.action_error = ActionError(
            action=name, message=outcome.message, permanent=outcome.permanent, phase=phase, at=now, attempts=attempts
        )
        s.message = f"{name} failed: {outcome.message}" + ("" if outcome.permanent else " (retrying)")
        if isinstance(action, ApplyPhase) and outcome.applied:
            _record_applied(s, action, Applied(outcome.applied))  # what it created is deleted by UID
        if outcome.permanent and isinstance(action, ApplyPhase):
            # Some objects of the phase may have been applied before the failure: count the phase as
            # started so the failure rolls back what was touched instead of leaving it half-applied.
            _update_phase(s, action.phase, state="Progressing", started_at=now)
        return s
    if isinstance(action, StartDelivery | RecordDelivery):
        # notifications never touch the push's own record (actionError, message, conditions)
        if isinstance(action, RecordDelivery):
            s.notifications = apply_results(s.notifications, action.results, now)
        return s
    if not isinstance(action, Wait):
        s.action_error = None

    if isinstance(action, Begin):
        contents = {c.name: c for c in action.contents}
        s.phases = [PhaseStatus(name=n, deployments=list(d), **_contents(contents.get(n))) for n, d in action.phases]
        s.started_at = s.started_at or now
        s.current_phase = action.phases[0][0]
        s.skipped_commits = list(action.skipped)
        s.author, s.committer = action.author or s.author, action.committer or s.committer
        by = f" by {person_name(s.author)}" if s.author else ""
        s.message = f"pushing {spec.source.revision[:7]}{by} in {len(action.phases)} phase(s)"
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
            base = baseline(gate, outcome)
            _upsert_row(s, new_row(gate, action.phase, base.pre).model_copy(update={"at": None, **base.row}))
    elif isinstance(action, ApplyPhase):
        _update_phase(s, action.phase, state="Progressing", started_at=now)
        s.message = f"phase {action.phase}: applied {', '.join(action.objects or action.deployments)}"
        if isinstance(outcome, Applied):
            _record_applied(s, action, outcome)
    elif isinstance(action, MarkAvailable):
        hold = required_hold(spec, action.phase)
        _update_phase(
            s, action.phase, state="Holding", available_at=now, observed_seconds=0.0, observed_since=now, stuck=None
        )
        _set_clock(spec, s, action.phase, 0.0, now, now)
        s.message = (
            f"phase {action.phase} Available; holding {format_duration(hold)} of observed time "
            f"(until {_clock_time(now + hold)} if every gate keeps reading)"
        )
    elif isinstance(action, EvaluateGates) and isinstance(outcome, Readings):
        _fold_readings(spec, s, action, outcome, now)
    elif isinstance(action, CompletePhase):
        _complete(spec, s, action, now)
    elif isinstance(action, FailPush):
        _fail(spec, s, action, now)
    elif isinstance(action, Undo) and isinstance(outcome, Undone):
        _undone(spec, s, action, outcome, now)
    elif isinstance(action, RestoreStrategy) and s.undo is not None:
        left = [k for k in s.undo.strategy_pending if k not in action.keys]
        s.undo = s.undo.model_copy(update={"strategy_pending": left, "strategy_restored_at": now})
        s.message = f"put back the own strategy of {', '.join(map(short_key, action.keys))}"
    elif isinstance(action, StartRevert):
        _revert_started(spec, s, now)
    elif isinstance(action, RecordRevert):
        _revert_finished(spec, s, action.result, now)
    elif isinstance(action, WaiveRevert):
        r = s.revert or RevertStatus()
        s.revert = r.model_copy(
            update={"state": "Waived", "reason": f"waived by {action.by}: {action.reason}", "next_attempt_at": None}
        )
        _cond(s, "GitReverted", "False", "Waived", f"waived by {action.by}: {action.reason}; the commit stays", now)
    elif isinstance(action, MarkRolledBack):
        _finish_rollback(spec, s, action, now)
    elif isinstance(action, NoteStuck):
        _note_stuck(spec, s, action, now)
    elif isinstance(action, SetPause):
        _pause(spec, s, action, now)
    return s


def _note_stuck(spec: ReleaseSpec, s: ReleaseStatus, action: NoteStuck, now: datetime) -> None:
    """Record why the phase (or the restore) is not Available yet, and say it in ``status.message``."""
    c = action.cause
    stuck = None
    if c is not None:
        stuck = StuckStatus(
            workload=c.workload,
            reason=c.reason,
            message=c.message,
            heals=c.heals,
            detail=c.detail,
            pods=c.pods,
            since=action.since or now,
            fails_at=action.fails_at,
        )
    if action.phase is None:
        if s.undo is not None:
            s.undo = s.undo.model_copy(update={"stuck": stuck})
        where = "restore"
    else:
        _update_phase(s, action.phase, stuck=stuck)
        where = f"phase {action.phase}"
    if stuck is None:
        s.message = f"{where}: no longer stuck; waiting for it to become Available"
        return
    if not stuck.heals and stuck.fails_at is not None:
        what = "fails" if action.phase else "stops waiting"
        s.message = (
            f"{where} stuck: {stuck.message}; cannot heal by waiting, {what} at {_clock_time(stuck.fails_at)} "
            f"(stuckAfter {format_duration(spec.stuck_after)})"
        )
    else:
        s.message = (
            f"{where} waiting: {stuck.message}; can heal, waiting up to progressDeadline "
            f"{format_duration(spec.progress_deadline)}"
        )


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
        row = row_for(s, gate.name, action.phase) or _first_row(s, gate, action.phase)
        recorded = fold_reading(gate, row, out, now)
        if recorded is None:
            continue
        if gate.experiment is not None:
            _upsert_row(s, recorded)
            continue
        # ``at`` is when the reading was taken into account, not when the query started: the next
        # reading is due one interval later, even if the provider answered from its short cache —
        # or, when the provider knows the scrape grid, just after the next sample lands.
        m = out.values.get(gate.name)
        scrape = m.scrape if m is not None else None
        interval = reading_interval(gate, s, action.phase, now).total_seconds()
        assert recorded.at is not None
        due = next_reading(recorded.at.timestamp(), interval, scrape)
        schedule = {
            "next_at": datetime.fromtimestamp(due, UTC),
            "scrape_period": scrape.period if scrape else None,
        }
        _upsert_row(s, recorded.model_copy(update=schedule))
    if _judging(s, action.phase):  # readings taken while the phase rolls out (kubernetes gates) hold nothing
        _tick_hold(spec, s, action.phase, now)
        _gate_conditions(spec, s, action.phase, now)


def _judging(s: ReleaseStatus, phase: str) -> bool:
    """Whether the phase (or the watch window) is in its hold, where readings count toward it."""
    return phase == WATCH_PHASE or any(p.name == phase and p.state == "Holding" for p in s.phases)


def _first_row(s: ReleaseStatus, gate: Gate, phase: str) -> GaugeRow:
    """A row for a gate that has none in this phase yet: its pre-push value from the baseline it falls back on."""
    row = new_row(gate, phase, _baseline(s, gate.name, phase))
    if phase == WATCH_PHASE:  # restarts count from each pod's first baseline (phases capture in order)
        merged: dict[str, int] = {}
        for r in s.gauges:
            if r.gate == gate.name and r.phase != WATCH_PHASE:
                for uid, n in r.restarts_at_start.items():
                    merged.setdefault(uid, n)
        if merged:
            row = row.model_copy(update={"restarts_at_start": merged})
    return row


def _complete(spec: ReleaseSpec, s: ReleaseStatus, action: CompletePhase, now: datetime) -> None:
    if action.promoted:
        s.promoted = action.promoted
    # The observed time that completed the hold, including the stretch the latest reading vouches for.
    total = observed_seconds(spec, s, action.phase, now)
    if action.phase == WATCH_PHASE:
        s.watch_observed_seconds, s.watch_observed_since = total, None
        _succeed(s, now)
        return
    _update_phase(s, action.phase, state="Passed", completed_at=now, observed_seconds=total, observed_since=None)
    names = [p.name for p in s.phases]
    idx = names.index(action.phase)
    how = " (promoted)" if action.promoted else ""
    if idx + 1 < len(names):
        s.current_phase = names[idx + 1]
        s.message = f"phase {action.phase} passed{how}; next: {names[idx + 1]}"
    elif spec.watch.total_seconds() > 0:
        s.current_phase = WATCH_PHASE
        s.watch_observed_seconds, s.watch_observed_since = 0.0, now
        s.watch_until = now + spec.watch
        s.message = f"phase {action.phase} passed{how}; watching {format_duration(spec.watch)} of observed time"
    else:
        _succeed(s, now)


def _succeed(s: ReleaseStatus, now: datetime) -> None:
    s.current_phase = None
    s.user_paused = False
    s.completed_at = now
    s.message = "every phase passed"
    _cond(s, "Ready", "True", "Succeeded", "every phase passed its gates", now)


def _fail(spec: ReleaseSpec, s: ReleaseStatus, action: FailPush, now: datetime) -> None:
    s.failure = FailureStatus(
        gate=action.gate,
        phase=action.phase,
        reason=action.reason,
        message=action.message,
        at=now,
        revert=action.revert,
    )
    s.failed_gate = action.gate
    s.message = action.message
    s.user_paused = False
    if action.phase and action.phase != WATCH_PHASE:
        _update_phase(s, action.phase, state="Failed", completed_at=now, observed_since=None)
    if action.gate:
        _cond(s, "GatesPassing", "False", action.reason, action.message, now)
    _cond(s, "Ready", "False", action.reason, action.message, now)
    applied = any(p.started_at is not None for p in s.phases)
    if not (applied and spec.on_failure.rollback):
        s.completed_at = now  # Failed: nothing to restore (a wanted revert is still pushed)
        if applied:
            _cond(s, "RolledBack", "False", "NotRolledBack", "onFailure.rollback is false", now)
    if revert_wanted(spec, s):
        s.revert = RevertStatus(state="Pending", reason="not attempted yet")
        _cond(s, "GitReverted", "False", "Pending", f"revert of {spec.source.revision[:7]} not pushed yet", now)
    elif applied:
        why = (
            "onFailure.revertCommit is false"
            if not spec.on_failure.revert_commit
            else f"not wanted for {action.reason} (onInconclusive: {spec.on_inconclusive})"
        )
        s.revert = RevertStatus(state="Skipped", reason=why)
        _cond(s, "GitReverted", "False", "Skipped", why, now)


def _undone(spec: ReleaseSpec, s: ReleaseStatus, action: Undo, out: Undone, now: datetime) -> None:
    tries = (s.undo.attempts if s.undo else 0) + (1 if action.restore or action.delete else 0)
    # Every workload a fast restore may have written (even when the write as a whole failed) gets its own
    # strategy put back: writing the exact snapshot again is harmless, a temporary strategy left is not.
    pending = sorted({*(s.undo.strategy_pending if s.undo else ()), *action.fast})
    first = s.undo.started_at if s.undo and s.undo.started_at else out.started_at
    s.undo = UndoStatus(
        at=out.restored_at or now,
        mode=spec.on_failure.undo,
        started_at=first,
        strategy_pending=pending,
        restored=deployment_names(out.restored),
        deleted=deployment_names(out.deleted),
        objects=list(out.restored),  # keys as the snapshot lists them (bare names in older statuses)
        deleted_objects=list(out.deleted),
        error=out.restore_error,
        attempts=tries,
    )
    if out.restore_error:
        _cond(s, "RolledBack", "False", "RestoreFailed", out.restore_error, now)


def _revert_started(spec: ReleaseSpec, s: ReleaseStatus, now: datetime) -> None:
    r = s.revert or RevertStatus()
    attempt = r.attempts + 1
    s.revert = r.model_copy(
        update={"state": "Pending", "attempts": attempt, "attempt_started_at": now, "next_attempt_at": None}
    )
    detail = f"attempt {attempt} in flight" + (f"; last: {r.reason}" if r.reason and attempt > 1 else "")
    _cond(s, "GitReverted", "False", "Pending", detail, now)


def _revert_finished(spec: ReleaseSpec, s: ReleaseStatus, result: RevertResult, now: datetime) -> None:
    r = s.revert or RevertStatus(attempts=1)
    base = {"last_attempt_at": now, "attempt_started_at": None, "message": result.message or r.message}
    if result.state in REVERT_LANDED:
        s.revert = r.model_copy(
            update={
                **base,
                "state": result.state,
                "commit": result.commit,
                "pushed_at": now,
                "reason": None,
                "next_attempt_at": None,
            }
        )
        _cond(s, "GitReverted", "True", result.state, f"revert {result.commit} on {spec.source.branch}", now)
    elif result.state == "Conflict":
        why = result.reason or "the revert does not apply cleanly"
        s.revert = r.model_copy(update={**base, "state": "Conflict", "reason": why, "next_attempt_at": None})
        _cond(s, "GitReverted", "False", "Conflict", why, now)
    else:
        code = result.code or "Error"
        why = f"{code}: {result.reason or 'revert failed'}"
        retry_at = now + revert_backoff(r.attempts)
        s.revert = r.model_copy(update={**base, "state": "Pending", "reason": why, "next_attempt_at": retry_at})
        _cond(
            s,
            "GitReverted",
            "False",
            "Pending",
            f"attempt {r.attempts} failed: {why}; next attempt at {_clock_time(retry_at)}",
            now,
        )


def _finish_rollback(spec: ReleaseSpec, s: ReleaseStatus, action: MarkRolledBack, now: datetime) -> None:
    undo = s.undo
    restored = bool(undo and (restored_keys(undo) or deleted_keys(undo)))
    s.completed_at = now
    s.current_phase = None
    if spec.on_failure.rollback and undo and not undo.error:
        s.rolled_back_at = now
        for p in s.phases:
            if p.started_at is not None and p.state != "Failed":
                _update_phase(s, p.name, state="RolledBack")
        detail = action.message or (
            f"restored {', '.join(map(short_key, restored_keys(undo) + deleted_keys(undo)))}"
            if restored
            else "nothing to restore"
        )
        _cond(s, "RolledBack", "True", "Restored", detail, now)
        s.message = f"rolled back: {s.failure.message if s.failure else ''}".rstrip(": ")
    else:
        why = undo.error if undo and undo.error else "onFailure.rollback is false"
        _cond(s, "RolledBack", "False", "NotRolledBack", why or "", now)


def _pause(spec: ReleaseSpec, s: ReleaseStatus, action: SetPause, now: datetime) -> None:
    phase = s.current_phase
    if action.paused:
        s.user_paused = True
        s.message = "paused by user"
        _cond(s, "Paused", "True", "UserPaused", "annotation stopline.dev/paused is set", now)
    else:
        s.user_paused = False
        s.message = "resumed by user"
        _cond(s, "Paused", "False", "Resumed", "annotation stopline.dev/paused removed", now)
    if phase is not None:
        # Paused time never counts towards a hold: close the current stretch either way.
        counted, since = hold_clock(s, phase)
        if since is not None and action.paused:
            cap = observed_cap(spec, phase)
            tail = max(0.0, (now - since).total_seconds())
            counted += tail if cap is None else min(tail, cap)
        if any(p.name == phase and p.state == "Holding" for p in s.phases) or phase == WATCH_PHASE:
            _set_clock(spec, s, phase, counted, None if action.paused else now, now)
