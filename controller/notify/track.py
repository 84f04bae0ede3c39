"""Which notification events a Track's commit lock has reached, and what they say. Pure: no I/O.

* ``Locked`` — the commit lock got set: by a rollback (naming the Release, revision, author, failing gate and
  the revert commit when known) or by hand (``stopline lock``: who and why).
* ``Unlocked`` — a human cleared it (``stopline unlock``: who and why).

Unlike a Release's events (level-triggered from its status) these are edges: the step that sets or clears
the lock records them, in the same status write, so a Track locked before this controller ran is not
announced again at its first round. Each lock episode has its own id — the time the lock was set — so a
restart never repeats one (``notifications.recorded``) and the next episode is announced afresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from controller.models.common import person_name
from controller.models.notify import NotificationMessage, Sink
from controller.models.track import CommitLock, TrackSpec, TrackStatus
from controller.notify.outbox import effective_sinks, record
from controller.notify.release import key_prefix
from controller.track.plan import ReleaseFacts


def episode(lock: CommitLock) -> str:
    """The lock episode's id: when it was set, ``20261201T172441.000Z`` (unique per Track and lock)."""
    since = lock.since
    if since is None:
        return "unknown"
    when = since.astimezone(UTC) if since.tzinfo is not None else since
    return when.strftime("%Y%m%dT%H%M%S.%f")[:-3] + "Z"


def event_id(event: str, lock: CommitLock) -> str:
    """``Locked-<episode>`` / ``Unlocked-<episode>``: what ``recorded`` remembers and the delivery key names."""
    return f"{event}-{episode(lock)}"


def transitions(before: TrackStatus, after: TrackStatus) -> list[str]:
    """The lock events of one step: set (a new episode), cleared, or none."""
    b, a = before.commit_lock, after.commit_lock
    if a.locked and (not b.locked or a.since != b.since):
        return ["Locked"]
    if b.locked and not a.locked:
        return ["Unlocked"]
    return []


def message(
    event: str,
    spec: TrackSpec,
    status: TrackStatus,
    namespace: str,
    name: str,
    now: datetime,
    cause: ReleaseFacts | None = None,
) -> NotificationMessage:
    """What the event says: why the line stopped (the rollback and its gate, or who locked it), or who opened it."""
    lock = status.commit_lock
    src = spec.source
    entry = next((h for h in status.history if lock.release and h.release == lock.release), None)
    gate = (cause.failed_gate if cause is not None else None) or (entry.failed_gate if entry else None)
    revert = (cause.revert_commit if cause is not None else None) or (entry.revert_commit if entry else None)
    author = cause.author if cause is not None else None
    rolled_back = lock.by == "stopline" and lock.release is not None
    summary: list[str] = []
    if event == "Locked":
        at = lock.since or now
        if rolled_back:
            short = (lock.revision or "")[:7]
            who = person_name(author)
            title = f"Line {namespace}/{name} locked: push of {short}" + (f" by {who}" if who else "")
            title += " rolled back" + (f" (gate {gate})" if gate else "")
            summary.append(lock.reason or "")
            if revert:
                summary.append(f"Revert {revert[:12]} on {src.branch}.")
            elif cause is not None and cause.revert_state:
                summary.append(f"Revert {cause.revert_state}: {cause.revert_reason or 'not on the branch yet'}.")
        else:
            title = f"Line {namespace}/{name} locked by {lock.by or 'unknown'}: {lock.reason or 'locked by hand'}"
        summary.append("Nothing new is pushed until a human unlocks it (stopline unlock).")
    else:
        at = lock.unlocked_at or now
        title = f"Line {namespace}/{name} unlocked by {lock.by or 'unknown'}"
        if lock.unlock_reason:
            summary.append(lock.unlock_reason)
        summary.append(f"Pushing from {src.branch} again.")
    return NotificationMessage(
        event=event,
        kind="Track",
        namespace=namespace,
        name=name,
        at=at,
        title=title,
        summary="\n".join(s for s in summary if s),
        repo=src.repo,
        branch=src.branch,
        revision=lock.revision if rolled_back else None,
        author=author if event == "Locked" else None,
        reason=lock.reason if event == "Locked" else lock.unlock_reason,
        revert_commit=revert if event == "Locked" and rolled_back else None,
        release=lock.release if rolled_back else None,
        by=lock.by,
    )


def record_events(
    spec: TrackSpec,
    before: TrackStatus,
    after: TrackStatus,
    defaults: Sequence[Sink],
    namespace: str,
    name: str,
    uid: str,
    now: datetime,
    cause: ReleaseFacts | None = None,
) -> TrackStatus:
    """``after`` with an outbox entry per interested sink for the lock event of this step (if any, once).

    The Track's sinks are its template's ``notify`` merged with the controller's defaults (the Releases' rule)."""
    events = transitions(before, after)
    if not events:
        return after
    sinks = effective_sinks(spec.template.notify, defaults)
    notes = after.notifications
    for event in events:
        m = message(event, spec, after, namespace, name, now, cause)
        notes = record(notes, event_id(event, after.commit_lock), m, sinks, key_prefix(namespace, name, uid), now)
    if notes is after.notifications:
        return after
    return after.model_copy(update={"notifications": notes})
