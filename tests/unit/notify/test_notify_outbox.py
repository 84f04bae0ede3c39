"""The outbox on its own: backoff schedule, giving up, trimming, the merge rule."""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import T0

from controller.models.notify import NotificationMessage, NotificationsStatus, OutboxEntry, Sink
from controller.notify.outbox import (
    KEEP_DONE,
    MAX_ATTEMPTS,
    ActiveSink,
    DeliveryResult,
    apply_results,
    backoff,
    due,
    next_attempt,
    record,
    summary,
)

MSG = NotificationMessage(event="RolledBack", namespace="ns", name="r", at=T0, title="t")
SINK = Sink.model_validate({"name": "s", "webhook": {"url": "http://x.local/"}})


def test_backoff_schedule_2_4_8_doubling_capped_at_5_minutes() -> None:
    assert [backoff(n).total_seconds() for n in range(0, 11)] == [0, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]


def test_failed_attempts_are_retried_with_backoff_then_given_up() -> None:
    notes = record(None, "RolledBack", MSG, [ActiveSink(SINK)], "ns/r/u", T0)
    now = T0
    for attempt in range(1, MAX_ATTEMPTS + 1):
        [entry] = due(notes, now)
        notes = apply_results(notes, [DeliveryResult(entry.key, ok=False, at=now, error="HTTP 503")], now)
        assert notes is not None
        [e] = notes.outbox
        assert e.attempts == attempt and e.last_error == "HTTP 503"
        if attempt < MAX_ATTEMPTS:
            assert e.state == "Pending" and e.next_attempt_at == now + backoff(attempt)
            assert due(notes, now) == [] and next_attempt(notes) == e.next_attempt_at
            now = e.next_attempt_at
    assert notes.outbox[0].state == "Failed" and due(notes, now + timedelta(hours=1)) == []
    assert summary(notes) == "1 failed (s: HTTP 503)"


def test_sent_only_after_the_receiver_accepted() -> None:
    notes = record(None, "RolledBack", MSG, [ActiveSink(SINK)], "ns/r/u", T0)
    assert notes is not None and notes.outbox[0].state == "Pending"
    notes = apply_results(notes, [DeliveryResult(notes.outbox[0].key, ok=True, at=T0)], T0)
    assert notes is not None and (notes.outbox[0].state, notes.outbox[0].sent_at) == ("Sent", T0)
    assert summary(notes) == "1 sent"


def test_recorded_once_even_after_trimming() -> None:
    notes: NotificationsStatus | None = None
    for i in range(KEEP_DONE + 5):
        notes = record(notes, f"Locked-{i}", MSG, [ActiveSink(SINK)], "ns/t/u", T0)
        assert notes is not None
        notes = apply_results(notes, [DeliveryResult(notes.outbox[-1].key, ok=True, at=T0)], T0)
    assert notes is not None and len(notes.outbox) == KEEP_DONE
    assert record(notes, "Locked-0", MSG, [ActiveSink(SINK)], "ns/t/u", T0) is notes, "trimmed but remembered"


def test_pending_entries_are_never_trimmed() -> None:
    entries = [
        OutboxEntry(
            key=f"k{i}",
            event="RolledBack",
            sink="s",
            sink_type="webhook",
            message=MSG,
            state="Sent" if i % 2 else "Pending",
        )
        for i in range(3 * KEEP_DONE)
    ]
    notes = record(NotificationsStatus(outbox=entries), "x", MSG, [ActiveSink(SINK)], "p", T0)
    assert notes is not None
    assert len([e for e in notes.outbox if e.state == "Pending"]) == 3 * KEEP_DONE // 2 + 1


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"name": "x"}, "exactly one of slack, webhook or email"),
        (
            {"name": "x", "webhook": {"url": "http://a/"}, "slack": {"urlSecretRef": {"name": "s", "key": "k"}}},
            "exactly one",
        ),
        ({"name": "x", "events": ["Deployed"], "webhook": {"url": "http://a/"}}, "Input should be"),
        ({"name": "x", "webhook": {}}, "exactly one of url or urlSecretRef"),
        ({"name": "x", "email": {"host": "h", "from": "a@b.c"}}, "at least one address"),
        (
            {"name": "x", "email": {"host": "h", "from": "a@b.c", "to": ["x@y.z"], "startTLS": True, "tls": True}},
            "at most one of startTLS or tls",
        ),
        ({"name": "x", "disabled": True, "webhook": {"url": "http://a/"}}, "a disabled sink takes no"),
    ],
    ids=[
        "no-kind",
        "two-kinds",
        "unknown-event",
        "webhook-no-url",
        "email-no-recipient",
        "tls-twice",
        "disabled-with-kind",
    ],
)
def test_bad_sinks_are_rejected(raw: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Sink.model_validate(raw)
