"""The per-Release loop: observe → plan → execute one action → reduce → persist. No kopf here.

Runs as one asyncio task per live Release (a kopf daemon), waking at the earliest gate interval or hold
end, never on a coarse timer. Status is persisted before every side-effecting action and before every
wait, so a controller killed at any point resumes from status without repeating a completed action.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from controller.models.common import set_condition
from controller.models.release import ReleaseSpec, ReleaseStatus
from controller.release.actions import (
    Action,
    ActionFailed,
    ApplyPhase,
    Begin,
    CompletePhase,
    FailPush,
    MarkAvailable,
    MarkRolledBack,
    Outcome,
    SetPause,
    Snapshot,
    Undo,
    Undone,
    Wait,
)
from controller.release.executor import Executor, ReleaseRef
from controller.release.plan import is_final, plan
from controller.release.status import reduce

log = logging.getLogger("stopline.release")

# Status is written before these (they change the world); reads (gates, baselines) need no write first.
SIDE_EFFECTS = (Snapshot, ApplyPhase, Undo)
# A new gate reading that changes no verdict or counter is written at most this often (one PATCH per
# Release per gate interval otherwise); a restart in between only re-reads the gate.
READINGS_PERSIST_SECONDS = 5.0


def readings_only(status: ReleaseStatus, persisted: ReleaseStatus) -> bool:
    """Whether the statuses differ only in the latest values of gauges rows (not verdicts or counters)."""
    if status.model_copy(update={"gauges": persisted.gauges}) != persisted:
        return False

    def key(s: ReleaseStatus) -> list[tuple[str, str, str, int, int, float | None]]:
        return [(r.gate, r.phase, r.verdict, r.breaches, r.inconclusive, r.pre_push) for r in s.gauges]

    return key(status) == key(persisted)


Emit = Callable[[str, str, str], None]
Step = Callable[[ReleaseRef, Action, Outcome, ReleaseStatus, ReleaseStatus], None]


@dataclass
class Hooks:
    """Side channels the loop reports to (events, metrics); all optional."""

    emit: Emit = field(default=lambda _t, _r, _m: None)
    on_action: Callable[[ReleaseRef, Action, float], None] = field(default=lambda _r, _a, _s: None)
    on_final: Callable[[ReleaseRef, ReleaseStatus], None] = field(default=lambda _r, _s: None)
    on_step: Step = field(default=lambda _r, _a, _o, _b, _s: None)  # action, outcome, status before and after


def status_patch(status: ReleaseStatus) -> dict[str, Any]:
    """A JSON merge patch for the status subresource; explicit nulls clear cleared fields."""
    return {"status": status.model_dump(mode="json", by_alias=True)}


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
) -> ReleaseStatus:
    """Drive one Release until it is final (or ``stopped``); returns the last status."""
    hooks = hooks or Hooks()
    body = read_body()
    status = ReleaseStatus.model_validate(body.get("status") or {})
    persisted = status.model_copy(deep=True)
    persisted_at = asyncio.get_running_loop().time()
    while not stopped():
        body = read_body()
        try:
            spec = ReleaseSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            status = _invalid(status, exc, executor.clock())
            await patch_status(status_patch(status))
            hooks.emit("Warning", "InvalidSpec", status.message or "invalid spec")
            return status
        meta = body.get("metadata") or {}
        if status.observed_generation != meta.get("generation"):
            status.observed_generation = meta.get("generation")
        facts = await executor.observe(ref, spec, status, meta.get("annotations") or {}, meta.get("generation"))
        action = plan(spec, status, facts)

        if isinstance(action, Wait):
            if status.phase == "Pending" and not status.phases:
                status.message = action.reason  # e.g. why the manifests cannot be read yet
            now = asyncio.get_running_loop().time()
            if status != persisted and (
                is_final(status)
                or now - persisted_at >= READINGS_PERSIST_SECONDS
                or not readings_only(status, persisted)
            ):
                await patch_status(status_patch(status))
                persisted, persisted_at = status.model_copy(deep=True), now
            if is_final(status):
                hooks.on_final(ref, status)
                return status
            await sleep(_sleep_for(action, status, executor.clock(), tick))
            continue

        if isinstance(action, SIDE_EFFECTS) and status != persisted:
            await patch_status(status_patch(status))
            persisted, persisted_at = status.model_copy(deep=True), asyncio.get_running_loop().time()

        started = asyncio.get_running_loop().time()
        outcome = await executor.execute(ref, spec, status, action)
        hooks.on_action(ref, action, asyncio.get_running_loop().time() - started)
        before = status
        status = reduce(spec, status, action, outcome, executor.clock())
        hooks.on_step(ref, action, outcome, before, status)
        _announce(hooks.emit, before, status, action, outcome)
        if isinstance(outcome, ActionFailed) and not outcome.permanent:
            await patch_status(status_patch(status))
            persisted, persisted_at = status.model_copy(deep=True), asyncio.get_running_loop().time()
            await sleep(min(2.0, tick * 8))
    return status


def _sleep_for(wait: Wait, status: ReleaseStatus, now: datetime, tick: float) -> float:
    """Until the wait ends; capped at ``tick`` while watching the cluster, at 1 s otherwise (annotations)."""
    watching_cluster = status.phase in ("Pending", "Progressing", "RollingBack")
    cap = tick if watching_cluster else 1.0
    if wait.until is None:
        return cap
    return max(0.0, min((wait.until - now).total_seconds(), cap))


def _invalid(status: ReleaseStatus, exc: ValidationError, now: datetime) -> ReleaseStatus:
    s = status.model_copy(deep=True)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"] for e in exc.errors()
    )
    s.phase = "Failed"
    s.message = f"invalid spec: {problems}"
    s.conditions = set_condition(s.conditions, "Ready", "False", "InvalidSpec", s.message, now, s.observed_generation)
    return s


def _announce(emit: Emit, before: ReleaseStatus, after: ReleaseStatus, action: Action, outcome: object) -> None:
    """Kubernetes Events on every transition users care about."""
    if isinstance(action, Begin):
        emit("Normal", "PushStarted", after.message or "push started")
        if action.ignored:
            emit("Warning", "ObjectsNotPushed", f"only Deployments are pushed; ignored {', '.join(action.ignored)}")
    elif isinstance(action, MarkAvailable):
        emit("Normal", "PhaseAvailable", after.message or f"phase {action.phase} Available")
    elif isinstance(action, CompletePhase):
        emit("Normal", "PhasePassed" if after.phase != "Succeeded" else "Succeeded", after.message or "")
    elif isinstance(action, FailPush):
        emit("Warning", action.reason, action.message)
    elif isinstance(action, Undo) and isinstance(outcome, Undone):
        if action.restore or action.delete:
            if outcome.restore_error:
                emit("Warning", "RollbackFailed", outcome.restore_error)
            else:
                emit("Normal", "Restored", f"restored {', '.join(outcome.restored + outcome.deleted)}")
        if outcome.revert is not None:
            r = outcome.revert
            kind = "Normal" if r.state in ("Pushed", "AlreadyReverted") else "Warning"
            emit(kind, f"GitRevert{r.state}", r.commit or r.reason or r.state)
    elif isinstance(action, MarkRolledBack):
        emit("Warning" if after.phase == "Failed" else "Normal", after.phase, after.message or "")
    elif isinstance(action, SetPause):
        emit("Normal", "Paused" if action.paused else "Resumed", after.message or "")
    if isinstance(outcome, ActionFailed):
        emit("Warning", "ActionFailed", f"{type(action).__name__}: {outcome.message}")
    if before.pause_reason != "Inconclusive" and after.pause_reason == "Inconclusive":
        emit("Warning", "GatesInconclusive", after.message or "")
    elif before.pause_reason == "Inconclusive" and after.pause_reason is None:
        emit("Normal", "GatesConclusive", after.message or "")
