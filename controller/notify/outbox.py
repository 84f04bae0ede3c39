"""The notification outbox in an object's status. Pure: no I/O; time comes in as ``now``.

* :func:`record` puts one entry per interested sink into the outbox when an event happens — in the same
  status write that records the event, so a restart can neither lose it nor record it twice
  (``recorded`` remembers events whose entries were trimmed).
* :func:`due` says which Pending entries may be attempted now; the delivery task sends them beside the
  loop and :func:`apply_results` folds the answers in: Sent only once the receiver accepted the message,
  else the next attempt after a capped exponential backoff, Failed after :data:`MAX_ATTEMPTS`.
* The key of an entry is deterministic and is what the receiver sees (``X-Stopline-Delivery``,
  ``Idempotency-Key``, the email's ``Message-ID``): a message sent again after a crash between the
  receiver's answer and the status write carries the same key, so the receiver can drop the repeat.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from controller.models.notify import NotificationMessage, NotificationsStatus, OutboxEntry, Sink

#: Failed attempts are retried after 2 s, 4 s, 8 s, ... capped at 5 minutes between attempts.
BACKOFF_BASE = timedelta(seconds=2)
BACKOFF_MAX = timedelta(minutes=5)
#: After this many failed attempts (about 40 minutes) the entry is given up (state Failed).
MAX_ATTEMPTS = 12
#: Sent or Failed entries kept for the record; older ones are trimmed (Pending ones never are).
KEEP_DONE = 20
#: Events remembered as recorded (a Release has at most a handful; a Track's lock events accumulate).
KEEP_RECORDED = 100


@dataclass(frozen=True)
class DeliveryResult:
    """The answer of one attempt: accepted by the receiver, or why not (never a credential)."""

    key: str
    ok: bool
    at: datetime
    error: str | None = None


@dataclass(frozen=True)
class DeliveryJob:
    """The delivery task beside the loop: running, or done with its results (reported once)."""

    running: bool
    results: tuple[DeliveryResult, ...] = ()


@dataclass(frozen=True)
class StartDelivery:
    """Send these due entries in the background (a side effect: the outbox is written first)."""

    keys: tuple[str, ...]


@dataclass(frozen=True)
class RecordDelivery:
    """Fold the answers of the finished delivery task into the outbox."""

    results: tuple[DeliveryResult, ...]


DeliveryAction = StartDelivery | RecordDelivery


@dataclass(frozen=True)
class ActiveSink:
    """A sink in force for an object, and whether it is one of the controller's defaults."""

    sink: Sink
    default: bool = False


def effective_sinks(own: Sequence[Sink], defaults: Sequence[Sink]) -> list[ActiveSink]:
    """The merge rule: the controller's defaults, then the object's own sinks. An own sink named like a
    default replaces it (``disabled: true`` removes it); disabled sinks send nothing."""
    names = {s.name for s in own}
    merged = [ActiveSink(d, True) for d in defaults if d.name not in names]
    merged += [ActiveSink(s) for s in own]
    return [a for a in merged if not a.sink.disabled]


def backoff(attempts: int) -> timedelta:
    """Delay before the next attempt after ``attempts`` failed ones (capped exponential)."""
    if attempts <= 0:
        return timedelta(0)
    delay: timedelta = BACKOFF_BASE * (2 ** min(attempts - 1, 16))
    return min(delay, BACKOFF_MAX)


def delivery_key(prefix: str, event_id: str, sink: str) -> str:
    """``<namespace>/<name>/<uid prefix>/<event id>/<sink>``: the same for every attempt, unique per object."""
    return f"{prefix}/{event_id}/{sink}"


def record(
    notes: NotificationsStatus | None,
    event_id: str,
    message: NotificationMessage,
    sinks: Iterable[ActiveSink],
    prefix: str,
    now: datetime,
) -> NotificationsStatus | None:
    """The outbox with the event's entries added (unchanged when it was recorded before)."""
    if notes is not None and event_id in notes.recorded:
        return notes
    wanting = [a for a in sinks if a.sink.wants(message.event)]
    if not wanting:
        return notes  # nobody listens: nothing to send or remember, the status stays as it was
    out = notes.model_copy(deep=True) if notes is not None else NotificationsStatus()
    for a in wanting:
        out.outbox.append(
            OutboxEntry(
                key=delivery_key(prefix, event_id, a.sink.name),
                event=message.event,
                sink=a.sink.name,
                sink_type=a.sink.type,
                default=a.default,
                created_at=now,
                message=message,
            )
        )
    out.recorded = [*out.recorded, event_id][-KEEP_RECORDED:]
    return trim(out)


def trim(notes: NotificationsStatus) -> NotificationsStatus:
    """Keep every Pending entry and the newest :data:`KEEP_DONE` Sent/Failed ones, in their order."""
    done = [e for e in notes.outbox if e.state != "Pending"]
    if len(done) <= KEEP_DONE:
        return notes
    drop = {id(e) for e in done[: len(done) - KEEP_DONE]}
    return notes.model_copy(update={"outbox": [e for e in notes.outbox if id(e) not in drop]})


def due(notes: NotificationsStatus | None, now: datetime) -> list[OutboxEntry]:
    """Pending entries whose next attempt is due."""
    if notes is None:
        return []
    return [e for e in notes.outbox if e.state == "Pending" and (e.next_attempt_at is None or e.next_attempt_at <= now)]


def next_attempt(notes: NotificationsStatus | None) -> datetime | None:
    """When the earliest Pending entry is due next (None: nothing pending, or due now)."""
    if notes is None:
        return None
    times = [e.next_attempt_at for e in notes.outbox if e.state == "Pending" and e.next_attempt_at is not None]
    return min(times, default=None)


def pending(notes: NotificationsStatus | None) -> list[OutboxEntry]:
    """Entries not delivered yet (and not given up)."""
    return [] if notes is None else [e for e in notes.outbox if e.state == "Pending"]


def failing(notes: NotificationsStatus | None) -> list[OutboxEntry]:
    """Entries whose last attempt failed: Pending with an error, or given up."""
    return [] if notes is None else [e for e in notes.outbox if e.last_error and e.state != "Sent"]


def apply_results(
    notes: NotificationsStatus | None, results: Iterable[DeliveryResult], now: datetime
) -> NotificationsStatus | None:
    """The outbox after these attempts: Sent, retried after :func:`backoff`, or Failed after MAX_ATTEMPTS."""
    if notes is None:
        return None
    by_key = {r.key: r for r in results}
    outbox: list[OutboxEntry] = []
    for e in notes.outbox:
        r = by_key.get(e.key)
        if r is None or e.state != "Pending":
            outbox.append(e)
            continue
        attempts = e.attempts + 1
        if r.ok:
            outbox.append(
                e.model_copy(
                    update={
                        "state": "Sent",
                        "attempts": attempts,
                        "sent_at": r.at,
                        "next_attempt_at": None,
                        "last_error": None,
                    }
                )
            )
            continue
        gave_up = attempts >= MAX_ATTEMPTS
        outbox.append(
            e.model_copy(
                update={
                    "state": "Failed" if gave_up else "Pending",
                    "attempts": attempts,
                    "last_error": (r.error or "failed")[:500],
                    "next_attempt_at": None if gave_up else now + backoff(attempts),
                }
            )
        )
    return trim(notes.model_copy(update={"outbox": outbox}))


def next_delivery(notes: NotificationsStatus | None, job: DeliveryJob | None, now: datetime) -> DeliveryAction | None:
    """The delivery step an object's planner takes where it would otherwise wait: fold in a finished task's
    answers, else start one for the due entries (never a second beside a running one), else nothing."""
    if job is not None and not job.running and job.results:
        return RecordDelivery(job.results)
    if job is not None and job.running:
        return None
    ready = due(notes, now)
    return StartDelivery(tuple(e.key for e in ready)) if ready else None


Event = tuple[str, str, str]  # (type, reason, message), as the reconcile driver emits them


def delivery_events(before: NotificationsStatus | None, after: NotificationsStatus | None) -> list[Event]:
    """NotificationSent per accepted message; a Warning per failed attempt (NotificationFailed, or
    NotificationGaveUp once retries are exhausted). Names the sink, never its URL or credentials."""
    old = {e.key: e for e in (before.outbox if before else [])}
    out: list[Event] = []
    for e in after.outbox if after else []:
        was = old.get(e.key)
        if was is None or was.attempts == e.attempts:
            continue
        what = f"{e.event} to {e.sink_type} sink {e.sink}"
        if e.state == "Sent":
            out.append(("Normal", "NotificationSent", f"{what} (attempt {e.attempts})"))
        elif e.state == "Failed":
            why = f"{what}: {e.last_error}; gave up after {e.attempts} attempts"
            out.append(("Warning", "NotificationGaveUp", why))
        else:
            nxt = e.next_attempt_at.strftime("%H:%M:%SZ") if e.next_attempt_at else "-"
            why = f"{what}: {e.last_error}; attempt {e.attempts}, retry at {nxt}"
            out.append(("Warning", "NotificationFailed", why))
    return out


def summary(notes: NotificationsStatus | None) -> str:
    """One line for people: ``2 pending (1 failing: ops-webhook: HTTP 503), 3 sent``; empty when none."""
    if notes is None or not notes.outbox:
        return ""
    waiting = pending(notes)
    sent = [e for e in notes.outbox if e.state == "Sent"]
    gave_up = [e for e in notes.outbox if e.state == "Failed"]
    parts: list[str] = []
    if waiting:
        bad = [e for e in waiting if e.last_error]
        why = f" ({len(bad)} failing: {bad[0].sink}: {bad[0].last_error})" if bad else ""
        parts.append(f"{len(waiting)} pending{why}")
    if gave_up:
        parts.append(f"{len(gave_up)} failed ({gave_up[0].sink}: {gave_up[0].last_error})")
    if sent:
        parts.append(f"{len(sent)} sent")
    return ", ".join(parts)
