"""Which events a Release reaches, what they say, and the outbox they go into (dedup across a restart)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from conftest import T0, UID, holding, release_spec, rolled_back

from controller.models.notify import Sink
from controller.models.release import ReleaseStatus
from controller.notify.outbox import DeliveryResult, apply_results, due, pending
from controller.notify.release import REVERT_WAIT, reached, record_events

NS, NAME = "shop", "web-3f9c2e1"


def record(spec: Any, status: ReleaseStatus, now_s: float, defaults: tuple[Sink, ...] = ()) -> ReleaseStatus:
    return record_events(spec, status, defaults, NS, NAME, UID, T0 + timedelta(seconds=now_s))


@pytest.mark.parametrize(
    ("status", "now", "events"),
    [
        (holding(), 30, ["PushStarted"]),
        (rolled_back(), 41, ["PushStarted", "RolledBack"]),
        (rolled_back("Pending"), 41, ["PushStarted"]),
        (rolled_back("Pending"), 40 + REVERT_WAIT.total_seconds(), ["PushStarted", "RolledBack"]),
        (rolled_back("Pending", attempts=3), 41, ["PushStarted", "RolledBack", "RevertFailed"]),
        (rolled_back("Conflict"), 41, ["PushStarted", "RolledBack", "RevertFailed"]),
        (rolled_back("Skipped"), 41, ["PushStarted", "RolledBack"]),
    ],
    ids=[
        "holding",
        "rolled-back-reverted",
        "revert-pending-waits",
        "revert-pending-past-the-bound",
        "revert-failing-3-times",
        "revert-conflict",
        "revert-not-wanted",
    ],
)
def test_events_reached(status: ReleaseStatus, now: float, events: list[str]) -> None:
    assert reached(release_spec(), status, T0 + timedelta(seconds=now)) == events


def test_failures_only_by_default() -> None:
    spec = release_spec()
    s = record(spec, holding(), 30)
    assert s.notifications is None, "PushStarted is not a failure: nobody is told, nothing is recorded"
    s = record(spec, rolled_back(), 41)
    assert s.notifications is not None
    assert [(e.event, e.sink, e.state) for e in s.notifications.outbox] == [("RolledBack", "ops", "Pending")]


def test_listed_events_only() -> None:
    spec = release_spec(
        [
            {
                "name": "all",
                "events": ["PushStarted", "Succeeded"],
                "slack": {"urlSecretRef": {"name": "s", "key": "url"}},
            }
        ]
    )
    s = record(spec, holding(), 30)
    assert [e.event for e in s.notifications.outbox] == ["PushStarted"]  # type: ignore[union-attr]
    s = record(spec, rolled_back(), 41)
    assert [e.event for e in s.notifications.outbox] == ["PushStarted"], "RolledBack is not listed"  # type: ignore[union-attr]


def test_rolled_back_message_names_author_gate_numbers_and_revert() -> None:
    s = record(release_spec(), rolled_back(), 41)
    [entry] = s.notifications.outbox  # type: ignore[union-attr]
    m = entry.message
    assert entry.key == f"{NS}/{NAME}/{UID[:8]}/RolledBack/ops"
    assert "Mey Tan" in m.title and "chat-loadavg" in m.title and "rolled back" in m.title
    assert m.gauge is not None and (m.gauge.pre_push, m.gauge.post_push, m.gauge.threshold) == (
        4.13,
        7.2,
        ">6 or >+25%",
    )
    assert m.revert_state == "Pushed" and m.revert_commit and m.revert_commit.startswith("9a8b7c6d5e4f")


def test_outbox_dedup_across_a_simulated_restart() -> None:
    """Status in → status out through its wire form, as a restarted controller reads it: nothing is
    recorded twice, a Sent entry is never due again, a Pending one is still due."""
    spec = release_spec(
        [{"name": "a", "webhook": {"url": "http://a.local/"}}, {"name": "b", "webhook": {"url": "http://b.local/"}}]
    )
    s = record(spec, rolled_back(), 41)
    keys = [e.key for e in s.notifications.outbox]  # type: ignore[union-attr]
    s = s.model_copy(
        update={
            "notifications": apply_results(
                s.notifications,
                [DeliveryResult(keys[0], ok=True, at=T0 + timedelta(seconds=42))],
                T0 + timedelta(seconds=42),
            )
        }
    )

    restarted = ReleaseStatus.model_validate(json.loads(json.dumps(s.model_dump(mode="json", by_alias=True))))
    again = record(spec, restarted, 50)
    assert again.notifications == restarted.notifications, "the restart records nothing again"
    assert [e.key for e in due(again.notifications, T0 + timedelta(seconds=50))] == [keys[1]]
    assert [e.key for e in pending(again.notifications)] == [keys[1]]


def test_revert_failed_follows_a_pending_rolled_back_once() -> None:
    spec = release_spec()
    s = record(spec, rolled_back("Pending"), 40 + REVERT_WAIT.total_seconds())
    assert [e.event for e in s.notifications.outbox] == ["RolledBack"]  # type: ignore[union-attr]
    assert s.notifications.outbox[0].message.revert_state == "Pending"  # type: ignore[union-attr]
    later = s.model_copy(update={"revert": rolled_back("Conflict").revert})
    later = record(spec, later, 100)
    later = record(spec, later, 110)
    assert [e.event for e in later.notifications.outbox] == ["RolledBack", "RevertFailed"]  # type: ignore[union-attr]


def test_defaults_merge_replace_and_disable() -> None:
    defaults = (
        Sink.model_validate({"name": "ops", "webhook": {"url": "http://default.local/"}}),
        Sink.model_validate({"name": "chat", "slack": {"urlSecretRef": {"name": "s", "key": "u"}}}),
    )
    own = release_spec([{"name": "chat", "disabled": True}, {"name": "team", "webhook": {"url": "http://t.local/"}}])
    s = record(own, rolled_back(), 41, defaults)
    box = s.notifications.outbox  # type: ignore[union-attr]
    assert [(e.sink, e.default) for e in box] == [("ops", True), ("team", False)]


def test_no_secret_value_reaches_the_status() -> None:
    spec = release_spec(
        [
            {
                "name": "hook",
                "webhook": {
                    "urlSecretRef": {"name": "hook-secret", "key": "url"},
                    "signingSecretRef": {"name": "hook-secret", "key": "hmac"},
                },
            },
            {
                "name": "mail",
                "email": {
                    "host": "smtp.local",
                    "from": "s@x.org",
                    "to": ["a@x.org"],
                    "username": "u",
                    "passwordSecretRef": {"name": "m", "key": "p"},
                },
            },
        ]
    )
    s = record(spec, rolled_back(), 41)
    wire = json.dumps(s.model_dump(mode="json", by_alias=True))
    assert "hook-secret" not in wire and "passwordSecretRef" not in wire and "smtp.local" not in wire
