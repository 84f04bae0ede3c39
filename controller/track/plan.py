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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from controller.models.common import Token, parse_token
from controller.models.release import FINAL_PHASES
from controller.models.track import HistoryEntry, MissingRevert, TrackSpec, TrackStatus
from controller.notify.outbox import (
    DeliveryAction,
    DeliveryJob,
    RecordDelivery,
    apply_results,
    next_delivery,
)
from controller.track.daily import count_late_revert, count_outcome

ANNOTATION_UNLOCK = "stopline.dev/unlock"
ANNOTATION_LOCK = "stopline.dev/lock"
LABEL_TRACK = "stopline.dev/track"


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
    revert_state: str | None = None  # status.revert.state
    revert_reason: str | None = None
    author: str | None = None  # status.author: who wrote the revision

    @property
    def revert_missing(self) -> bool:
        """The Release wants a revert that has not landed (and was not waived): the bad commit is on the branch."""
        return self.revert_state in ("Pending", "Error", "Conflict")

    @property
    def revert_landed(self) -> bool:
        """The revert commit is on the branch."""
        return self.revert_state in ("Pushed", "AlreadyReverted")


@dataclass(frozen=True)
class TrackFacts:
    """Observations for one Track iteration."""

    now: datetime
    tip: str | None = None
    tip_error: str | None = None
    tip_error_reason: str = "GitError"  # the git adapter's class of failure: Unreachable, Timeout, ...
    new_commits: Sequence[Commit] = ()  # last_pushed..tip, oldest first
    current: ReleaseFacts | None = None
    in_flight: Sequence[ReleaseFacts] = ()  # this Track's Releases that are not final (current or not)
    annotations: Mapping[str, str] = field(default_factory=dict)
    reverting: Mapping[str, ReleaseFacts] = field(default_factory=dict)  # Releases of status.missingReverts
    delivery_job: DeliveryJob | None = None  # the notification delivery task beside the loop


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
    """Clear the commit lock (``waive``: the rolled-back revisions whose revert is missing stay on the branch)."""

    token: Token
    waive: tuple[MissingRevert, ...] = ()


@dataclass(frozen=True)
class RefuseUnlock:
    """An unlock while a revert is missing, without ``withoutRevert``: record it as handled, keep the lock."""

    token: Token
    missing: tuple[MissingRevert, ...]


@dataclass(frozen=True)
class RevertsLanded:
    """Reverts of these revisions are on the branch now (or their Release says so); ``commits``: the revert
    commit of each, where known (same order)."""

    revisions: tuple[str, ...]
    commits: tuple[str | None, ...] = ()


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


TrackAction = (
    CreateRelease | FinishRelease | Adopt | Unlock | RefuseUnlock | RevertsLanded | Lock | Observe | DeliveryAction
)
FINAL = FINAL_PHASES
RESULT_WORDS = {"Succeeded": "succeeded", "RolledBack": "rolled back", "Failed": "failed"}


def release_name(track: str, revision: str) -> str:
    """Deterministic Release name: creating it twice is a no-op (idempotent across restarts)."""
    return f"{track[:54]}-{revision[:7]}"


def plan_track(track: str, spec: TrackSpec, status: TrackStatus, facts: TrackFacts) -> TrackAction:
    """The next action for this Track: the line's, else (only where the line would just observe) a
    notification's — delivery never comes before a Release, a lock or an unlock."""
    action = _plan_line(track, spec, status, facts)
    if isinstance(action, Observe):
        return next_delivery(status.notifications, facts.delivery_job, facts.now) or action
    return action


def _plan_line(track: str, spec: TrackSpec, status: TrackStatus, facts: TrackFacts) -> TrackAction:
    """The line's next action (Releases, locks)."""
    if not status.current:  # first: the push lock is never broken, whatever else is pending
        finished = {h.release for h in status.history if h.result != "InProgress"}
        orphans = [r for r in facts.in_flight if r.exists and r.phase not in FINAL and r.name not in finished]
        if orphans:
            return Adopt(min(orphans, key=lambda r: r.name))

    lock_raw = facts.annotations.get(ANNOTATION_LOCK, "").strip()
    if lock_raw and lock_raw != status.commit_lock.last_lock and not status.commit_lock.locked:
        return Lock(parse_token(lock_raw))
    landed = _landed(status, facts)
    if landed:
        return RevertsLanded(tuple(r for r, _c in landed), tuple(c for _r, c in landed))
    unlock_raw = facts.annotations.get(ANNOTATION_UNLOCK, "").strip()
    blocked = status.commit_lock.locked or bool(status.missing_reverts)
    if blocked and unlock_raw and unlock_raw != status.commit_lock.last_unlock:
        token = parse_token(unlock_raw)
        missing = tuple(status.missing_reverts)
        if missing and not token.without_revert:
            return RefuseUnlock(token, missing)
        return Unlock(token, waive=missing)

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
    if status.missing_reverts:
        shas = ", ".join(m.revision[:7] for m in status.missing_reverts)
        return Observe(
            pending,
            message=f"not pushing: rolled-back {shas} still on {spec.source.branch} without its revert",
        )
    if spec.suspend:
        return Observe(pending, message="suspended")
    if facts.tip is None or not facts.new_commits:
        return Observe(pending)
    if all(c.sha in ignorable for c in facts.new_commits):
        return Observe((), skip_to=facts.tip, message="only stopline revert commits since the last push")
    skipped = tuple(c.sha for c in facts.new_commits if c.sha != facts.tip)
    return CreateRelease(release_name(track, facts.tip), facts.tip, skipped)


def _landed(status: TrackStatus, facts: TrackFacts) -> list[tuple[str, str | None]]:
    """Missing reverts that are on the branch now (with the revert commit where known): a new commit says
    so, or the Release that pushes it."""
    on_branch = {c.reverts: c.sha for c in facts.new_commits if c.reverts}
    out: list[tuple[str, str | None]] = []
    for m in status.missing_reverts:
        rel = facts.reverting.get(m.release)
        if m.revision in on_branch or (rel is not None and rel.revert_landed):
            commit = rel.revert_commit if rel is not None and rel.revert_commit else on_branch.get(m.revision)
            out.append((m.revision, commit))
    return out


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
        result = cur.phase if cur.exists and cur.phase in FINAL and cur.phase is not None else "Failed"
        words = RESULT_WORDS[result]
        why = cur.failure or ("deleted before it finished" if not cur.exists else "release did not succeed")
        s.current = None
        s.push_lock.held = False
        s.push_lock.release = None
        s.push_lock.since = None
        for i, h in enumerate(s.history):
            if h.release == cur.name:
                revert_counted = h.revert_counted
                if not h.counted:  # once per outcome: a second observation finds the mark
                    reverted = cur.revert_commit is not None
                    s.daily = count_outcome(s.daily, cur.completed_at or now, result, reverted=reverted, now=now)
                    revert_counted = reverted and result == "RolledBack"
                s.history[i] = h.model_copy(
                    update={
                        "result": result,
                        "at": cur.completed_at or now,
                        "duration_seconds": _duration(cur),
                        "failed_gate": cur.failed_gate,
                        "revert_commit": cur.revert_commit,
                        "counted": True,
                        "revert_counted": revert_counted,
                    }
                )
        if cur.exists and cur.revert_missing and cur.revision:
            missing = MissingRevert(revision=cur.revision, release=cur.name, since=now, reason=cur.revert_reason)
            s.missing_reverts = [*(m for m in s.missing_reverts if m.revision != cur.revision), missing]
            why = f"{why}; revert of {cur.revision[:7]} not on the branch yet ({cur.revert_reason or 'retrying'})"
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
        if action.waive:
            shas = ", ".join(m.revision[:7] for m in action.waive)
            note = f"unlocked without revert: {shas} still on {spec.source.branch}"
            s.commit_lock.unlock_reason = f"{action.token.reason} ({note})"
            s.message += f" ({note})"
            waived = {m.release for m in action.waive}
            s.history = [
                h.model_copy(update={"revert_waived_by": action.token.by}) if h.release in waived else h
                for h in s.history
            ]
            s.missing_reverts = []
    elif isinstance(action, RefuseUnlock):
        shas = ", ".join(m.revision[:7] for m in action.missing)
        s.commit_lock.last_unlock = action.token.raw
        s.message = (
            f"unlock by {action.token.by} refused: the revert of {shas} is not on {spec.source.branch} yet; "
            "wait for it, or unlock with --without-revert to push with the bad commit still on the branch"
        )
    elif isinstance(action, RevertsLanded):
        _count_late_reverts(s, action, now)
        s.missing_reverts = [m for m in s.missing_reverts if m.revision not in action.revisions]
        s.message = f"revert of {', '.join(r[:7] for r in action.revisions)} is on {spec.source.branch}"
        if s.commit_lock.locked and s.commit_lock.reason:
            s.commit_lock.reason = s.commit_lock.reason.split("; revert of ")[0]
    elif isinstance(action, Lock):
        s.commit_lock.locked = True
        s.commit_lock.last_lock = action.token.raw
        s.commit_lock.reason = action.token.reason or "locked by hand"
        s.commit_lock.since = now
        s.commit_lock.by = action.token.by
        s.commit_lock.release = None
        s.commit_lock.revision = None
        s.message = f"locked by {action.token.by}: {s.commit_lock.reason}"
    elif isinstance(action, RecordDelivery):
        s.notifications = apply_results(s.notifications, action.results, now)
    # StartDelivery: the outbox it sends was written first; nothing of the line changes
    return s


def _count_late_reverts(s: TrackStatus, action: RevertsLanded, now: datetime) -> None:
    """A revert that lands after its Release finished counts in ``status.daily`` now, once: on the day the
    push finished (where the rollback was counted), marked ``revertCounted`` on its history entry (set by the
    finish too when the revert was there first) in the same status write that drops the missing revert."""
    commits = dict(zip(action.revisions, action.commits, strict=False))
    releases = {m.release: m.revision for m in s.missing_reverts if m.revision in action.revisions}
    for i, h in enumerate(s.history):
        revision = releases.get(h.release)
        if revision is None or not h.counted or h.result != "RolledBack" or h.revert_counted or h.revert_commit:
            continue  # not finished yet (counted with its outcome then), or counted already
        s.daily = count_late_revert(s.daily, h.at or now, now=now)
        s.history[i] = h.model_copy(
            update={"revert_counted": True, "revert_commit": commits.get(revision) or h.revert_commit}
        )


def _consume_stale_tokens(s: TrackStatus, action: TrackAction, annotations: Mapping[str, str]) -> None:
    """Record, as handled, a new lock token while locked or a new unlock token while open (a no-op each)."""
    if isinstance(action, Lock | Unlock | RefuseUnlock):
        return  # the other token, if also new, is judged next time against the new state
    lock = s.commit_lock
    lock_raw = annotations.get(ANNOTATION_LOCK, "").strip()
    if lock.locked and lock_raw and lock_raw != lock.last_lock:
        lock.last_lock = lock_raw
        s.message = f"ignored lock request by {parse_token(lock_raw).by}: already locked"
    unlock_raw = annotations.get(ANNOTATION_UNLOCK, "").strip()
    if not lock.locked and not s.missing_reverts and unlock_raw and unlock_raw != lock.last_unlock:
        lock.last_unlock = unlock_raw
        s.message = f"ignored unlock request by {parse_token(unlock_raw).by}: the line was open"
