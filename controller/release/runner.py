"""The Release kind for the reconcile driver: observe → plan → execute one action → reduce. No kopf here.

Gate readings run at each gate's own ``interval`` inside the loop, never on a coarse timer. The git
revert of a failed push runs beside the loop (one attempt at a time, retried with capped backoff until it
lands): the cluster side reaches RolledBack as soon as the restore is done, whatever Git is doing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controller.errors import StoplineError
from controller.gates.evaluate import breached
from controller.kube.causes import PROGRESS
from controller.models.release import FailureStatus, ReleaseSpec, ReleaseStatus, StuckStatus
from controller.notify.outbox import RecordDelivery, StartDelivery, delivery_events
from controller.notify.release import record_events
from controller.reconcile.driver import Context, Driver, Event, mark_invalid
from controller.release.actions import (
    Action,
    ActionFailed,
    ApplyPhase,
    Begin,
    CaptureBaseline,
    CompletePhase,
    EvaluateGates,
    Facts,
    FailPush,
    MarkAvailable,
    MarkRolledBack,
    NoteStuck,
    Outcome,
    RecordRevert,
    RestoreStrategy,
    SetPause,
    Snapshot,
    StartRevert,
    Undo,
    Undone,
    Wait,
    WaiveRevert,
)
from controller.release.executor import Executor, ReleaseRef
from controller.release.plan import derive_phase, is_final, pause_reason, plan, settled
from controller.release.status import reduce

log = logging.getLogger("stopline.release")

_background: set[asyncio.Task[Any]] = set()  # fire-and-forget cleanups, referenced until they finish

# Status is written before these (they change the world); reads (gates, baselines) need no write first.
# StartDelivery: the outbox entries it sends are written first, so a restart never records them again.
SIDE_EFFECTS = (Snapshot, ApplyPhase, Undo, RestoreStrategy, StartRevert, StartDelivery)
# A new gate reading that changes no verdict or counter is written at most this often (one PATCH per
# Release per gate interval otherwise); a restart in between only re-reads the gate.
READINGS_PERSIST_SECONDS = 5.0
# ... and, with many Releases rolling out at once, spread so that one replica writes at most this many such
# PATCHes per second: 2,000 Releases on 4 replicas writing every 5 s saturated the API server (run L).
READINGS_WRITES_PER_SECOND = 10.0
READINGS_PERSIST_MAX = 60.0
# Steps whose status the next step writes, at no cost in what status shows: CaptureBaseline is followed by
# the ApplyPhase it is for (a side effect: the status is written first), MarkAvailable by the phase's first
# gate reading or wait, which see the changed phase or baseline and write it. A restart in between only
# takes them again (nothing was changed yet). Two PATCHes fewer per phase.
WRITTEN_BY_THE_NEXT_STEP = (CaptureBaseline, MarkAvailable)


def readings_interval(active: int) -> float:
    """How often a Release's readings-only status is written while ``active`` Releases run on this replica."""
    return min(READINGS_PERSIST_MAX, max(READINGS_PERSIST_SECONDS, active / READINGS_WRITES_PER_SECOND))


def readings_only(status: ReleaseStatus, persisted: ReleaseStatus) -> bool:
    """Whether the statuses differ only in the latest values of gauges rows and hold clocks."""
    volatile = {"gauges": persisted.gauges, "phases": persisted.phases, "watch_until": persisted.watch_until}
    volatile |= {
        "watch_observed_seconds": persisted.watch_observed_seconds,
        "watch_observed_since": persisted.watch_observed_since,
    }
    if status.model_copy(update=volatile) != persisted:
        return False

    def key(s: ReleaseStatus) -> list[tuple[Any, ...]]:
        return [(r.gate, r.phase, r.verdict, r.breaches, r.inconclusive, r.pre_push) for r in s.gauges] + [
            (p.name, p.state, p.started_at, p.available_at, p.completed_at, p.observed_since is None, p.stuck)
            for p in s.phases
        ]

    return key(status) == key(persisted)


def about_to_undo(spec: ReleaseSpec | None, status: ReleaseStatus, action: Action) -> bool:
    """Whether the next steps are FailPush → Undo: a reading just tripped a gate past its failureLimit, or the
    failure was just recorded. Writing the status in between would only delay the restore (by one PATCH
    each): the Undo, a side effect, writes it first anyway, and a restart before that merely reads the
    gate again."""
    if status.completed_at is not None or status.undo is not None:
        return False
    if isinstance(action, FailPush):
        return status.failure is not None
    if isinstance(action, EvaluateGates) and spec is not None and status.failure is None:
        gates = {g.name: g for g in spec.gates}
        return any(r.phase == action.phase and r.gate in gates and breached(gates[r.gate], r) for r in status.gauges)
    return False


Emit = Callable[[str, str, str], None]
Step = Callable[[ReleaseRef, Action, Outcome, ReleaseStatus, ReleaseStatus], None]


@dataclass
class Hooks:
    """Side channels the loop reports to (events, metrics); all optional."""

    emit: Emit = field(default=lambda _t, _r, _m: None)
    on_action: Callable[[ReleaseRef, Action, float], None] = field(default=lambda _r, _a, _s: None)
    on_final: Callable[[ReleaseRef, ReleaseStatus], None] = field(default=lambda _r, _s: None)
    on_step: Step = field(default=lambda _r, _a, _o, _b, _s: None)  # action, outcome, status before and after
    on_persist_error: Callable[[str], None] = field(default=lambda _k: None)
    on_persist: Callable[[str, str], None] = field(default=lambda _k, _a: None)  # a status write, and its action


class ReleaseKind:
    """What the driver needs to know about Releases."""

    kind = "Release"

    def __init__(
        self,
        ref: ReleaseRef,
        executor: Executor,
        hooks: Hooks,
        *,
        tick: float,
        wake: Callable[[], None],
        monotonic: Callable[[], float],
        readings_every: Callable[[], float] = lambda: READINGS_PERSIST_SECONDS,
        rollout_tick: Callable[[], float] | None = None,
    ) -> None:
        self.ref = ref
        self.readings_every = readings_every
        self.rollout_tick = rollout_tick or (lambda: tick)
        self.executor = executor
        self.hooks = hooks
        self.tick = tick
        self.wake = wake
        self.monotonic = monotonic
        self.final_reported = False
        self.spec: ReleaseSpec | None = None  # the spec of the latest plan

    def parse_status(self, raw: Mapping[str, Any]) -> ReleaseStatus:
        status = ReleaseStatus.model_validate(raw)
        # Statuses written before the phase was derived may carry a stored pause: derive it afresh.
        status.phase, status.pause_reason = derive_phase(status), pause_reason(status)
        return status

    def parse_spec(self, raw: Mapping[str, Any]) -> ReleaseSpec:
        return ReleaseSpec.model_validate(raw)

    def invalid(self, status: ReleaseStatus, message: str, now: datetime, generation: int | None) -> ReleaseStatus:
        s = mark_invalid(status, message, now, generation)
        s.completed_at = s.completed_at or now
        if s.failure is None:
            s.failure = FailureStatus(reason="InvalidSpec", message=message, at=now, revert=False)
        s.phase, s.pause_reason = derive_phase(s), pause_reason(s)
        return s

    def with_generation(self, status: ReleaseStatus, generation: int | None) -> ReleaseStatus:
        status.observed_generation = generation
        return status

    async def observe(self, spec: ReleaseSpec, status: ReleaseStatus, meta: Mapping[str, Any]) -> Facts:
        return await self.executor.observe(
            self.ref, spec, status, meta.get("annotations") or {}, meta.get("generation")
        )

    def observe_failed(
        self, spec: ReleaseSpec, status: ReleaseStatus, error: StoplineError, now: datetime
    ) -> ReleaseStatus:
        s = status.model_copy(deep=True)
        s.message = f"cannot observe the cluster, retrying: {error}"
        return s

    def plan(self, spec: ReleaseSpec, status: ReleaseStatus, facts: Facts) -> Action:
        self.spec = spec
        return plan(spec, status, facts)

    def is_side_effect(self, action: Action) -> bool:
        return isinstance(action, SIDE_EFFECTS)

    async def execute(self, spec: ReleaseSpec, status: ReleaseStatus, action: Action, facts: Facts) -> Outcome:
        started = self.monotonic()
        if isinstance(action, StartRevert):
            outcome: Outcome = self.executor.start_revert(self.ref, spec, status, self.wake)
        elif isinstance(action, StartDelivery):
            outcome = self.executor.start_delivery(self.ref, spec, status, action, self.wake)
        else:
            outcome = await self.executor.execute(self.ref, spec, status, action)
        if not isinstance(action, Wait):
            self.hooks.on_action(self.ref, action, self.monotonic() - started)
        return outcome

    def reduce(
        self, spec: ReleaseSpec, status: ReleaseStatus, action: Action, outcome: Outcome, facts: Facts
    ) -> ReleaseStatus:
        if isinstance(action, Wait):
            if status.phase == "Pending" and not status.phases and status.message != action.reason:
                s = status.model_copy(deep=True)
                s.message = action.reason  # e.g. why the manifests cannot be read yet
                return self._record(spec, s, facts)
            return self._record(spec, status, facts)
        after = self._record(spec, reduce(spec, status, action, outcome, facts.now), facts)
        self.hooks.on_step(self.ref, action, outcome, status, after)
        _log_step(self.ref, action, outcome, after)
        return after

    def _record(self, spec: ReleaseSpec, status: ReleaseStatus, facts: Facts) -> ReleaseStatus:
        """Events reached in this step go into the outbox in the same status write that records them."""
        return record_events(
            spec, status, self.executor.notify_defaults, self.ref.namespace, self.ref.name, self.ref.uid, facts.now
        )

    def events(self, before: ReleaseStatus, after: ReleaseStatus, action: Action, outcome: Outcome) -> Iterable[Event]:
        return release_events(before, after, action, outcome)

    def persist_now(
        self, status: ReleaseStatus, persisted: ReleaseStatus, action: Action, since_persist: float
    ) -> bool:
        if status == persisted:
            return False
        if about_to_undo(self.spec, status, action):
            return False  # the Undo next is a side effect: the status that leads to it is written right before it
        if isinstance(action, WRITTEN_BY_THE_NEXT_STEP):
            return False
        every = self.readings_every()
        if isinstance(action, Wait):
            return is_final(status) or since_persist >= every or not readings_only(status, persisted)
        return not readings_only(status, persisted) or since_persist >= every

    def sleep_for(self, spec: ReleaseSpec, status: ReleaseStatus, action: Action, facts: Facts) -> float | None:
        if isinstance(action, Wait):
            return _sleep_for(action, status, facts.now, self.tick, self.rollout_tick())
        err = status.action_error
        if err is not None and not err.permanent and err.at == facts.now:
            return min(2.0, self.tick * 8)  # a transient failure: try again shortly
        return None

    def done(self, spec: ReleaseSpec, status: ReleaseStatus) -> bool:
        if is_final(status) and not self.final_reported:
            self.final_reported = True
            self.hooks.on_final(self.ref, status)
            if any(g.job is not None for g in spec.gates):  # the smoke-test Jobs are done with
                task = asyncio.ensure_future(self.executor.cleanup_jobs(self.ref))
                _background.add(task)
                task.add_done_callback(_background.discard)
        return settled(spec, status)  # also waits for the outbox to drain (sent or given up)


def _log_step(ref: ReleaseRef, action: Action, outcome: Outcome, after: ReleaseStatus) -> None:
    where = f"release {ref.namespace}/{ref.name}"
    if isinstance(outcome, ActionFailed):
        log.warning("%s: %s failed%s: %s", where, type(action).__name__, "" if outcome.permanent else " (retrying)",
                    outcome.message)  # fmt: skip
    elif isinstance(action, FailPush):
        log.warning("%s: push failed: %s: %s", where, action.reason, action.message)
    elif isinstance(action, RecordRevert):
        r, st = action.result, after.revert
        if r.state in ("Pushed", "AlreadyReverted"):
            log.info("%s: git revert %s: %s", where, r.state, r.commit)
        elif r.state == "Conflict":
            log.warning("%s: git revert gives up: conflict: %s", where, r.reason)
        else:
            log.warning(
                "%s: git revert attempt %d failed (%s: %s); next attempt at %s",
                where,
                st.attempts if st else 0,
                r.code or "Error",
                r.reason,
                st.next_attempt_at.isoformat() if st and st.next_attempt_at else "-",
            )
    elif isinstance(action, WaiveRevert):
        log.warning("%s: git revert waived by %s (%s): the commit stays on the branch", where, action.by, action.reason)
    elif isinstance(action, MarkRolledBack) or (isinstance(action, NoteStuck) and action.cause is not None):
        log.info("%s: %s", where, after.message)


async def run_release(
    ref: ReleaseRef,
    read_body: Callable[[], Mapping[str, Any]],
    patch_status: Callable[[dict[str, Any]], Awaitable[None]],
    executor: Executor,
    *,
    hooks: Hooks | None = None,
    stopped: Callable[[], bool] = lambda: False,
    tick: float = 0.25,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    wake: Callable[[], None] = lambda: None,
    may_act: Callable[[], Awaitable[bool]] | None = None,
    readings_every: Callable[[], float] = lambda: READINGS_PERSIST_SECONDS,
    rollout_tick: Callable[[], float] | None = None,
) -> ReleaseStatus:
    """Drive one Release until it is settled (final, revert landed or given up by a human) or ``stopped``.

    ``readings_every()``: how often a status that changed only in its latest readings is written
    (:func:`readings_interval` of the Releases running on this replica). ``rollout_tick()``: the longest
    wait while rolling out (``tick`` by default; longer while the workload watch's events wake the loop)."""
    hooks = hooks or Hooks()
    loop_time = asyncio.get_running_loop().time
    kind = ReleaseKind(
        ref,
        executor,
        hooks,
        tick=tick,
        wake=wake,
        monotonic=loop_time,
        readings_every=readings_every,
        rollout_tick=rollout_tick,
    )
    ctx = Context(
        kind="Release",
        namespace=ref.namespace,
        name=ref.name,
        read_body=read_body,
        patch_status=patch_status,
        wait=sleep,
        clock=executor.clock,
        alive=lambda: not stopped(),
        emit=hooks.emit,
        on_persist_error=hooks.on_persist_error,
        on_persist=hooks.on_persist,
        monotonic=loop_time,
        may_act=may_act,
    )
    try:
        return await Driver(kind, ctx).run()
    finally:
        executor.forget(ref)  # settled, stopped or gone: an attempt still in flight pushes nothing


def _sleep_for(wait: Wait, status: ReleaseStatus, now: datetime, tick: float, rollout_tick: float) -> float:
    """Until the wait ends; capped at ``rollout_tick`` while rolling out, ``tick`` while rolling back (restored
    objects may leave the workload watch's selection: no event wakes the loop), 1 s otherwise (annotations)."""
    cap = {"RollingBack": tick, "Pending": rollout_tick, "Progressing": rollout_tick}.get(status.phase or "", 1.0)
    if wait.until is None:
        return cap
    return max(0.0, min((wait.until - now).total_seconds(), cap))


def _stuck(status: ReleaseStatus, phase: str | None) -> StuckStatus | None:
    if phase is None:
        return status.undo.stuck if status.undo is not None else None
    return next((p.stuck for p in status.phases if p.name == phase), None)


def release_events(before: ReleaseStatus, after: ReleaseStatus, action: Action, outcome: Outcome) -> list[Event]:
    """Kubernetes Events on every transition users care about, derived from the step."""
    out: list[Event] = []
    if isinstance(action, Begin):
        out.append(("Normal", "PushStarted", after.message or "push started"))
        if action.ignored:
            out.append(
                ("Warning", "ObjectsNotPushed", f"only Deployments are pushed; ignored {', '.join(action.ignored)}")
            )
    elif isinstance(action, MarkAvailable):
        out.append(("Normal", "PhaseAvailable", after.message or f"phase {action.phase} Available"))
    elif isinstance(action, CompletePhase):
        out.append(("Normal", "PhasePassed" if after.phase != "Succeeded" else "Succeeded", after.message or ""))
    elif isinstance(action, FailPush):
        out.append(("Warning", action.reason, action.message))
    elif isinstance(action, Undo) and isinstance(outcome, Undone) and (action.restore or action.delete):
        if outcome.restore_error:
            out.append(("Warning", "RollbackFailed", outcome.restore_error))
        else:
            out.append(("Normal", "Restored", f"restored {', '.join(outcome.restored + outcome.deleted)}"))
    elif isinstance(action, RestoreStrategy) and not isinstance(outcome, ActionFailed):
        out.append(("Normal", "StrategyRestored", after.message or "strategy put back"))
    elif isinstance(action, RecordRevert):
        r = action.result
        if r.state in ("Pushed", "AlreadyReverted"):
            out.append(("Normal", f"GitRevert{r.state}", r.commit or r.state))
        elif r.state == "Conflict":
            out.append(("Warning", "GitRevertConflict", r.reason or "conflict"))
        else:
            st = after.revert
            nxt = st.next_attempt_at.strftime("%H:%M:%SZ") if st and st.next_attempt_at else "-"
            out.append(("Warning", "GitRevertPending", f"{r.code or 'Error'}: {r.reason or 'failed'}; retry at {nxt}"))
    elif isinstance(action, WaiveRevert):
        out.append(("Warning", "GitRevertWaived", f"by {action.by}: {action.reason}"))
    elif isinstance(action, MarkRolledBack):
        out.append(("Warning" if after.phase == "Failed" else "Normal", after.phase, after.message or ""))
    elif isinstance(action, SetPause):
        out.append(("Normal", "Paused" if action.paused else "Resumed", after.message or ""))
    elif isinstance(action, NoteStuck) and action.cause is not None and action.cause.reason not in PROGRESS:
        was = _stuck(before, action.phase)
        if was is None or (was.workload, was.reason, was.detail) != action.cause.identity:
            out.append(("Warning", "RolloutStuck" if action.phase else "RestoreStuck", after.message or ""))
    elif isinstance(action, RecordDelivery):
        out += delivery_events(before.notifications, after.notifications)
    if isinstance(outcome, ActionFailed):
        out.append(("Warning", "ActionFailed", f"{type(action).__name__}: {outcome.message}"))
    if before.pause_reason != "Inconclusive" and after.pause_reason == "Inconclusive":
        out.append(("Warning", "GatesInconclusive", after.message or ""))
    elif before.pause_reason == "Inconclusive" and after.pause_reason is None and after.failure is None:
        out.append(("Normal", "GatesConclusive", after.message or ""))
    return out
