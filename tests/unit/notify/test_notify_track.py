"""A Track's commit-lock notifications (Locked, Unlocked): recorded once, in the status write that sets or
clears the lock; the merge with the controller's defaults; dedup across a simulated restart; delivery
planned only where the line would just observe; golden messages per sink."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from test_notify_render import golden

from controller.models.common import parse_token
from controller.models.notify import Sink
from controller.models.track import CommitLock, HistoryEntry, PushLock, TrackSpec, TrackStatus
from controller.notify import render
from controller.notify.delivery import Deliveries
from controller.notify.outbox import DeliveryJob, DeliveryResult, RecordDelivery, StartDelivery
from controller.notify.track import transitions
from controller.track.plan import (
    Commit,
    CreateRelease,
    FinishRelease,
    Lock,
    Observe,
    ReleaseFacts,
    TrackAction,
    TrackFacts,
    Unlock,
)
from controller.track.runner import TrackKind, TrackNotify, TrackOutcome, TrackRef

T0 = datetime(2026, 12, 1, 17, 24, 41, tzinfo=UTC)
DONE = T0 + timedelta(seconds=40)
BAD = "3f9c2e1d" + "0" * 32
NEXT = "4a0b1c2d" + "0" * 32
REVERT = "9a8b7c6d5e4f" + "1" * 28
UID = "5d2e9f10-aaaa-bbbb-cccc-000000000002"
NS, NAME, REL = "shop", "web", "web-3f9c2e1"
HOOK = {"url": "http://hooks.local/x"}
LOCK_EVENTS = [{"name": "ops", "events": ["Locked", "Unlocked"], "webhook": HOOK}]
LOCK_TOKEN = json.dumps({"by": "alice", "reason": "freeze for the sale"})
UNLOCK_TOKEN = json.dumps({"by": "bob", "reason": "fixed the query"})


def spec(notify: list[dict[str, Any]] | None = None) -> TrackSpec:
    return TrackSpec.model_validate(
        {
            "source": {"repo": "https://git.example.com/shop/app.git"},
            "template": {
                "phases": [{"name": "canary", "deployments": ["web-canary"]}],
                "notify": LOCK_EVENTS if notify is None else notify,
            },
        }
    )


def sinks(raw: list[dict[str, Any]]) -> tuple[Sink, ...]:
    return tuple(Sink.model_validate(s) for s in raw)


class NoSender:
    """The delivery tasks are never started here (execute is not called)."""


def kind(defaults: tuple[Sink, ...] = ()) -> TrackKind:
    notify = TrackNotify(Deliveries(NoSender()), defaults)  # type: ignore[arg-type]
    ref = TrackRef(NS, NAME, UID)
    return TrackKind(ref, None, None, clock=lambda: T0, owned=None, prune=None, waive=None, notify=notify)  # type: ignore[arg-type]


def rolled_back() -> ReleaseFacts:
    return ReleaseFacts(
        name=REL,
        exists=True,
        phase="RolledBack",
        revision=BAD,
        failure="gate chat-loadavg 7.20 > 6 in phase chat",
        failed_gate="chat-loadavg",
        revert_commit=REVERT,
        started_at=T0,
        completed_at=DONE,
        revert_state="Pushed",
        author="Mey Tan <mey@example.com>",
    )


def in_flight() -> TrackStatus:
    return TrackStatus(
        current=REL,
        last_pushed=BAD,
        push_lock=PushLock(held=True, release=REL, since=T0),
        history=[HistoryEntry(revision=BAD, release=REL, result="InProgress", at=T0, started_at=T0)],
    )


def facts(now: datetime, **kw: Any) -> TrackFacts:
    return TrackFacts(now=now, **kw)


def step(k: TrackKind, sp: TrackSpec, status: TrackStatus, action: TrackAction, now: datetime) -> TrackStatus:
    return k.reduce(sp, status, action, TrackOutcome(), facts(now))


def restart(status: TrackStatus) -> TrackStatus:
    """The status as a new controller reads it back from the API server."""
    return TrackStatus.model_validate(json.loads(json.dumps(status.model_dump(mode="json", by_alias=True))))


def locked_by_rollback(k: TrackKind | None = None, sp: TrackSpec | None = None) -> TrackStatus:
    return step(k or kind(), sp or spec(), in_flight(), FinishRelease(rolled_back()), DONE)


def unlocked(status: TrackStatus, at: datetime) -> TrackStatus:
    return step(kind(), spec(), status, Unlock(parse_token(UNLOCK_TOKEN)), at)


def keys(status: TrackStatus) -> list[str]:
    return [e.key for e in status.notifications.outbox] if status.notifications else []


# ------------------------------------------------------------------------------------------- transitions
OPEN = TrackStatus()
LOCKED = TrackStatus(commit_lock=CommitLock(locked=True, since=T0, by="stopline", release=REL))
RELOCKED = TrackStatus(commit_lock=CommitLock(locked=True, since=T0 + timedelta(hours=1), by="alice"))
UNLOCKED = TrackStatus(commit_lock=CommitLock(locked=False, since=T0, by="bob", unlocked_at=DONE))


@pytest.mark.parametrize(
    ("before", "after", "events"),
    [
        (OPEN, LOCKED, ["Locked"]),
        (LOCKED, LOCKED, []),
        (LOCKED, UNLOCKED, ["Unlocked"]),
        (UNLOCKED, UNLOCKED, []),
        (OPEN, OPEN, []),
        (LOCKED, RELOCKED, ["Locked"]),
    ],
    ids=["lock-set", "still-locked", "unlocked", "still-open", "never-locked", "a-new-episode"],
)
def test_transitions(before: TrackStatus, after: TrackStatus, events: list[str]) -> None:
    assert transitions(before, after) == events


# ------------------------------------------------------------------------------------------- recording
def test_rollback_lock_is_recorded_in_the_same_status_as_the_lock() -> None:
    s = locked_by_rollback()
    assert s.commit_lock.locked and s.commit_lock.release == REL
    assert s.notifications is not None
    [entry] = s.notifications.outbox
    assert (entry.event, entry.sink, entry.state, entry.default) == ("Locked", "ops", "Pending", False)
    assert entry.key == f"{NS}/{NAME}/{UID[:8]}/Locked-20261201T172521.000Z/ops"
    m = entry.message
    assert (m.kind, m.name, m.release, m.revision, m.revert_commit, m.by) == (
        "Track",
        NAME,
        REL,
        BAD,
        REVERT,
        "stopline",
    )
    assert m.author == "Mey Tan <mey@example.com>"
    assert "Mey Tan" in m.title and "chat-loadavg" in m.title and "locked" in m.title
    assert "7.20 > 6" in m.summary and REVERT[:12] in m.summary
    assert s.notifications.recorded == ["Locked-20261201T172521.000Z"]


@pytest.mark.parametrize(
    ("own", "defaults", "expected"),
    [
        ([{"name": "ops", "webhook": HOOK}], [], []),
        ([], [], []),
        ([], [{"name": "org", "events": ["Locked"], "webhook": HOOK}], [("org", True)]),
        (
            [{"name": "org", "disabled": True}],
            [{"name": "org", "events": ["Locked"], "webhook": HOOK}],
            [],
        ),
        (LOCK_EVENTS, [{"name": "org", "webhook": HOOK}], [("ops", False)]),
        (
            [{"name": "org", "events": ["Locked"], "slack": {"urlSecretRef": {"name": "s", "key": "url"}}}],
            [{"name": "org", "events": ["Unlocked"], "webhook": HOOK}],
            [("org", False)],
        ),
    ],
    ids=[
        "failures-only-default-has-no-lock-events",
        "no-sinks",
        "controller-default-listing-Locked",
        "default-disabled-by-the-track",
        "default-without-lock-events-ignored",
        "own-sink-replaces-the-default-of-its-name",
    ],
)
def test_sinks_merge_like_releases(
    own: list[dict[str, Any]], defaults: list[dict[str, Any]], expected: list[tuple[str, bool]]
) -> None:
    s = locked_by_rollback(kind(sinks(defaults)), spec(own))
    assert s.commit_lock.locked
    got = [(e.sink, e.default) for e in s.notifications.outbox] if s.notifications else []
    assert got == expected


def test_manual_lock_then_unlock_name_who() -> None:
    k, sp = kind(), spec()
    s = step(k, sp, TrackStatus(), Lock(parse_token(LOCK_TOKEN)), T0)
    [locked] = s.notifications.outbox  # type: ignore[union-attr]
    assert locked.message.by == "alice" and "alice" in locked.message.title and "freeze" in locked.message.title
    assert locked.message.release is None and locked.message.revision is None
    s = step(k, sp, s, Unlock(parse_token(UNLOCK_TOKEN)), T0 + timedelta(minutes=5))
    assert [e.event for e in s.notifications.outbox] == ["Locked", "Unlocked"]  # type: ignore[union-attr]
    un = s.notifications.outbox[1]  # type: ignore[union-attr]
    assert un.message.by == "bob" and "bob" in un.message.title and un.message.reason == "fixed the query"
    assert un.key == f"{NS}/{NAME}/{UID[:8]}/Unlocked-20261201T172441.000Z/ops", "the episode it ended"
    assert un.message.at == T0 + timedelta(minutes=5)


def test_a_step_that_changes_no_lock_records_nothing() -> None:
    k, sp = kind(), spec()
    s = locked_by_rollback(k, sp)
    again = step(k, sp, s, Observe((), message="commit lock"), DONE + timedelta(seconds=1))
    assert keys(again) == keys(s)


def test_restart_neither_loses_nor_repeats() -> None:
    k, sp = kind(), spec()
    s = restart(locked_by_rollback(k, sp))  # killed right after the lock was written
    k = kind()
    now = DONE + timedelta(seconds=2)
    action = k.plan(sp, s, facts(now))
    assert action == StartDelivery(tuple(keys(s))), "nothing lost: the Pending entry is sent by the new controller"
    job = DeliveryJob(running=False, results=(DeliveryResult(keys(s)[0], ok=True, at=now),))
    record = k.plan(sp, s, facts(now, delivery_job=job))
    assert isinstance(record, RecordDelivery)
    s = restart(step(k, sp, s, record, now))
    assert [e.state for e in s.notifications.outbox] == ["Sent"]  # type: ignore[union-attr]
    assert isinstance(kind().plan(sp, s, facts(now + timedelta(seconds=5))), Observe), "nothing repeated"
    # the same lock observed again after the restart (a FinishRelease redone on a status already locked)
    s2 = step(kind(), sp, s, Observe(()), now + timedelta(seconds=6))
    assert keys(s2) == keys(s)

    # a second episode (unlock, lock again) is a new message with new keys
    s = unlocked(s, now + timedelta(minutes=1))
    s = step(kind(), sp, s, Lock(parse_token(LOCK_TOKEN)), now + timedelta(minutes=2))
    s = restart(s)
    assert [e.event for e in s.notifications.outbox] == ["Locked", "Unlocked", "Locked"]  # type: ignore[union-attr]
    assert len(set(keys(s))) == 3
    assert s.notifications.recorded == [  # type: ignore[union-attr]
        "Locked-20261201T172521.000Z",
        "Unlocked-20261201T172521.000Z",
        "Locked-20261201T172723.000Z",
    ]


def test_delivery_never_comes_before_the_line() -> None:
    k, sp = kind(), spec()
    s = unlocked(locked_by_rollback(k, sp), DONE + timedelta(minutes=1))
    now = DONE + timedelta(minutes=2)
    tip = facts(now, tip=NEXT, new_commits=[Commit(NEXT)])
    assert s.notifications is not None and any(e.state == "Pending" for e in s.notifications.outbox)
    assert isinstance(k.plan(sp, s, tip), CreateRelease), "a push is planned before any notification"
    assert isinstance(k.plan(sp, s, facts(now)), StartDelivery)
    running = k.plan(sp, s, facts(now, delivery_job=DeliveryJob(running=True)))
    assert isinstance(running, Observe), "never a second delivery beside a running one"
    assert k.is_side_effect(StartDelivery(("x",))), "the outbox is written before it is sent"


def test_a_failed_attempt_is_retried_with_backoff() -> None:
    k, sp = kind(), spec()
    s = locked_by_rollback(k, sp)
    now = DONE + timedelta(seconds=1)
    failed = RecordDelivery((DeliveryResult(keys(s)[0], ok=False, at=now, error="HTTP 503"),))
    s = step(k, sp, s, failed, now)
    [e] = s.notifications.outbox  # type: ignore[union-attr]
    assert (e.state, e.attempts, e.last_error, e.next_attempt_at) == (
        "Pending",
        1,
        "HTTP 503",
        now + timedelta(seconds=2),
    )
    assert isinstance(k.plan(sp, s, facts(now)), Observe), "not due yet"
    assert k.sleep_for(sp, s, Observe(()), facts(now)) == 2.0, "woken for the retry, not at the next poll"
    assert k.plan(sp, s, facts(now + timedelta(seconds=2))) == StartDelivery((e.key,))
    events = k.events(TrackStatus(), s, failed, TrackOutcome())
    assert events == [], "no Kubernetes Event for an entry the step did not attempt"
    before = locked_by_rollback(k, sp)
    [(type_, reason, text)] = k.events(before, s, failed, TrackOutcome())
    assert (type_, reason) == ("Warning", "NotificationFailed") and "HTTP 503" in text and "hooks.local" not in text


# ------------------------------------------------------------------------------------------- golden
def entries() -> dict[str, Any]:
    s = locked_by_rollback()
    s = unlocked(s, DONE + timedelta(minutes=7))
    assert s.notifications is not None
    locked, un = s.notifications.outbox
    return {"locked": locked, "unlocked": un}


@pytest.mark.parametrize("event", ["locked", "unlocked"])
def test_slack_golden(event: str) -> None:
    e = entries()[event]
    body = render.slack(e)
    golden(f"track-{event}.slack.json", json.dumps(json.loads(body), indent=2, sort_keys=True) + "\n")
    assert body == render.slack(e.model_copy(deep=True)), "deterministic"


@pytest.mark.parametrize("event", ["locked", "unlocked"])
def test_webhook_golden(event: str) -> None:
    e = entries()[event]
    doc = json.loads(render.webhook(e))
    golden(f"track-{event}.webhook.json", json.dumps(doc, indent=2, sort_keys=True) + "\n")
    assert doc["deliveryId"] == e.key and doc["kind"] == "Track" and doc["event"] == e.event


@pytest.mark.parametrize("event", ["locked", "unlocked"])
def test_email_golden(event: str) -> None:
    e = entries()[event]
    to = render.recipients(e, ["oncall@example.com"], to_author=True)
    msg = render.email(e, "stopline <stopline@example.com>", to)
    golden(f"track-{event}.email.txt", msg.as_string())
    assert msg["Message-ID"] == render.message_id(e.key)
