"""The Track state machine: branch tip + current Release + locks → the one next action. Pure.

* Push lock: one Release in flight per Track; commits that land meanwhile queue (``status.pending``)
  and the next Release pushes the newest tip, listing the commits it batched.
* Commit lock: after a rollback (``onFailure.lock``) nothing is pushed until a human unlocks
  (annotation ``stopline.dev/unlock``, written by ``stopline unlock``); a manual lock uses
  ``stopline.dev/lock``. Both annotations carry a JSON token ``{"by", "reason", "at"}`` and are acted on once.
  A token is acted on against the state it finds: an unlock written while the line is open (or a lock
  written while it is locked) is recorded and ignored, so it can never clear (or set) a later lock.
* Revert commits stopline pushed itself (trailer ``Stopline-Revert-Of``) never start a Release on their
  own: when every new commit is such a revert, the cluster is already in that state (it was restored).
* A Release of this Track that is in flight but not recorded in the status (the controller stopped between
  creating it and writing the status) is adopted, never doubled by a second Release.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from controller.models.track import HistoryEntry, TrackSpec, TrackStatus

ANNOTATION_UNLOCK = "stopline.dev/unlock"
ANNOTATION_LOCK = "stopline.dev/lock"
LABEL_TRACK = "stopline.dev/track"
REVERT_TRAILER = "Stopline-Revert-Of"


@dataclass(frozen=True)
class Commit:
    """A commit on the followed branch."""

    sha: str
    subject: str = ""
    reverts: str | None = None  # the revision a stopline revert commit undoes


@dataclass(frozen=True)
class ReleaseFacts:
    """What the Track needs to know about its current Release."""

    name: str
    exists: bool
    phase: str | None = None
    revision: str | None = None
    failure: str | None = None
    failed_gate: str | None = None
    revert_commit: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    lock_on_failure: bool = True


@dataclass(frozen=True)
class TrackFacts:
    """Observations for one Track iteration."""

    now: datetime
    tip: str | None = None
    tip_error: str | None = None
    new_commits: Sequence[Commit] = ()  # last_pushed..tip, oldest first
    current: ReleaseFacts | None = None
    in_flight: Sequence[ReleaseFacts] = ()  # this Track's Releases that are not final (current or not)
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Token:
    """A parsed lock/unlock annotation."""

    raw: str
    by: str
    reason: str


@dataclass(frozen=True)
class CreateRelease:
    """Create the next Release for ``revision``."""

    name: str
    revision: str
    skipped: tuple[str, ...]


@dataclass(frozen=True)
class FinishRelease:
    """The current Release reached a final state: history, push lock, maybe the commit lock."""

    release: ReleaseFacts


@dataclass(frozen=True)
class Adopt:
    """A Release of this Track is in flight but the status does not name it: take the push lock for it."""

    release: ReleaseFacts


@dataclass(frozen=True)
class Unlock:
    """Clear the commit lock."""

    token: Token


@dataclass(frozen=True)
class Lock:
    """Set the commit lock by hand."""

    token: Token


@dataclass(frozen=True)
class Observe:
    """Record the tip and queue; nothing else to do."""

    pending: tuple[str, ...]
    skip_to: str | None = None
    message: str = ""


TrackAction = CreateRelease | FinishRelease | Adopt | Unlock | Lock | Observe
FINAL = frozenset({"Succeeded", "RolledBack", "Failed"})
RESULT_WORDS = {"Succeeded": "succeeded", "RolledBack": "rolled back", "Failed": "failed"}


def parse_token(raw: str) -> Token:
    """``{"by": ..., "reason": ...}`` or a plain reason string."""
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if isinstance(data, dict):
        return Token(raw=raw, by=str(data.get("by") or "unknown"), reason=str(data.get("reason") or ""))
    return Token(raw=raw, by="unknown", reason=raw)


def release_name(track: str, revision: str) -> str:
    """Deterministic Release name: creating it twice is a no-op (idempotent across restarts)."""
    return f"{track[:54]}-{revision[:7]}"


def plan_track(track: str, spec: TrackSpec, status: TrackStatus, facts: TrackFacts) -> TrackAction:
    """The next action for this Track."""
    if not status.current:  # first: the push lock is never broken, whatever else is pending
        finished = {h.release for h in status.history if h.result != "InProgress"}
        orphans = [r for r in facts.in_flight if r.exists and r.phase not in FINAL and r.name not in finished]
        if orphans:
            return Adopt(min(orphans, key=lambda r: r.name))

    lock_raw = facts.annotations.get(ANNOTATION_LOCK, "").strip()
    if lock_raw and lock_raw != status.commit_lock.last_lock and not status.commit_lock.locked:
        return Lock(parse_token(lock_raw))
    unlock_raw = facts.annotations.get(ANNOTATION_UNLOCK, "").strip()
    if status.commit_lock.locked and unlock_raw and unlock_raw != status.commit_lock.last_unlock:
        return Unlock(parse_token(unlock_raw))

    cur = facts.current
    if status.current and cur is not None:
        if not cur.exists:
            return FinishRelease(cur)  # deleted by someone: release the push lock
        if cur.phase in FINAL:
            return FinishRelease(cur)

    ignorable = {c.sha for c in facts.new_commits if c.reverts is not None}
    # An unreadable tip says nothing about the queue: keep the one we had.
    pending = (
        tuple(c.sha for c in facts.new_commits if c.sha not in ignorable)
        if facts.tip is not None
        else tuple(status.pending)
    )
    if status.current:
        return Observe(pending, message=f"push lock held by {status.current}; {len(pending)} commit(s) queued")
    if status.commit_lock.locked:
        return Observe(pending, message=f"commit lock: {status.commit_lock.reason}")
    if spec.suspend:
        return Observe(pending, message="suspended")
    if facts.tip is None or not facts.new_commits:
        return Observe(pending)
    if all(c.sha in ignorable for c in facts.new_commits):
        return Observe((), skip_to=facts.tip, message="only stopline revert commits since the last push")
    skipped = tuple(c.sha for c in facts.new_commits if c.sha != facts.tip)
    return CreateRelease(release_name(track, facts.tip), facts.tip, skipped)


def _duration(cur: ReleaseFacts) -> float | None:
    if cur.started_at and cur.completed_at:
        return (cur.completed_at - cur.started_at).total_seconds()
    return None


def reduce_track(spec: TrackSpec, status: TrackStatus, action: TrackAction, facts: TrackFacts) -> TrackStatus:
    """The Track status after ``action`` (which the executor carried out)."""
    s = status.model_copy(deep=True)
    now = facts.now
    _consume_stale_tokens(s, action, facts.annotations)
    if facts.tip is not None:
        s.last_seen = facts.tip
        s.last_seen_at = now
    if isinstance(action, Observe):
        s.pending = list(action.pending)
        if action.skip_to:
            s.last_pushed = action.skip_to
            s.ignored_reverts = [*s.ignored_reverts, action.skip_to][-20:]
        s.message = action.message or s.message
    elif isinstance(action, Adopt):
        r = action.release
        s.current = r.name
        if r.revision:
            s.last_pushed = r.revision
        s.pending = []
        s.push_lock.held = True
        s.push_lock.release = r.name
        s.push_lock.since = r.started_at or now
        if not any(h.release == r.name for h in s.history):
            entry = HistoryEntry(
                revision=r.revision or "unknown",
                release=r.name,
                result="InProgress",
                at=r.started_at or now,
                started_at=r.started_at or now,
            )
            s.history = [entry, *s.history][: spec.history_limit]
        s.message = f"adopted {r.name}, already in flight"
    elif isinstance(action, CreateRelease):
        s.current = action.name
        s.last_pushed = action.revision
        s.pending = []
        s.push_lock.held = True
        s.push_lock.release = action.name
        s.push_lock.since = now
        entry = HistoryEntry(
            revision=action.revision,
            release=action.name,
            result="InProgress",
            at=now,
            started_at=now,
            skipped=list(action.skipped),
        )
        s.history = [entry, *[h for h in s.history if h.release != action.name]][: spec.history_limit]
        s.message = f"pushing {action.revision[:7]} as {action.name}"
        if action.skipped:
            s.message += f" (batched {len(action.skipped)} earlier commit(s))"
    elif isinstance(action, FinishRelease):
        cur = action.release
        result = cur.phase if cur.exists and cur.phase in FINAL else "Failed"
        words = RESULT_WORDS[result]
        why = cur.failure or ("deleted before it finished" if not cur.exists else "release did not succeed")
        s.current = None
        s.push_lock.held = False
        s.push_lock.release = None
        s.push_lock.since = None
        for i, h in enumerate(s.history):
            if h.release == cur.name:
                s.history[i] = h.model_copy(
                    update={
                        "result": result,
                        "at": cur.completed_at or now,
                        "duration_seconds": _duration(cur),
                        "failed_gate": cur.failed_gate,
                        "revert_commit": cur.revert_commit,
                    }
                )
        if result == "Succeeded":
            s.last_good = cur.revision
            s.message = f"{cur.name} succeeded"
        elif cur.lock_on_failure:
            s.commit_lock.locked = True
            s.commit_lock.reason = f"{cur.name} {words}: {why}"[:500]
            s.commit_lock.since = now
            s.commit_lock.release = cur.name
            s.commit_lock.revision = cur.revision
            s.commit_lock.by = "stopline"
            s.message = f"commit lock set: {s.commit_lock.reason}"
        else:
            s.message = f"{cur.name} {words}: {why} (onFailure.lock is false: line not locked)"
    elif isinstance(action, Unlock):
        s.commit_lock.locked = False
        s.commit_lock.last_unlock = action.token.raw
        s.commit_lock.unlocked_at = now
        s.commit_lock.unlock_reason = action.token.reason
        s.commit_lock.by = action.token.by
        s.message = f"unlocked by {action.token.by}: {action.token.reason}"
    elif isinstance(action, Lock):
        s.commit_lock.locked = True
        s.commit_lock.last_lock = action.token.raw
        s.commit_lock.reason = action.token.reason or "locked by hand"
        s.commit_lock.since = now
        s.commit_lock.by = action.token.by
        s.commit_lock.release = None
        s.commit_lock.revision = None
        s.message = f"locked by {action.token.by}: {s.commit_lock.reason}"
    return s


def _consume_stale_tokens(s: TrackStatus, action: TrackAction, annotations: Mapping[str, str]) -> None:
    """Record, as handled, a new lock token while locked or a new unlock token while open (a no-op each)."""
    if isinstance(action, Lock | Unlock):
        return  # the other token, if also new, is judged next time against the new state
    lock = s.commit_lock
    lock_raw = annotations.get(ANNOTATION_LOCK, "").strip()
    if lock.locked and lock_raw and lock_raw != lock.last_lock:
        lock.last_lock = lock_raw
        s.message = f"ignored lock request by {parse_token(lock_raw).by}: already locked"
    unlock_raw = annotations.get(ANNOTATION_UNLOCK, "").strip()
    if not lock.locked and unlock_raw and unlock_raw != lock.last_unlock:
        lock.last_unlock = unlock_raw
        s.message = f"ignored unlock request by {parse_token(unlock_raw).by}: the line was open"
