"""Notifications on the real stack: a failed push tells a loopback webhook receiver (Slack-style and signed
JSON) and a loopback SMTP server exactly once each — also when the controller is killed right after the
rollback — and a sink that is down first is retried and delivers later, its failure shown meanwhile. A
Track whose push is rolled back tells its sink once that the line is locked, and once that it was unlocked."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from dsl import API, App, Given, Then, When, gate
from helpers import apply, branch_sha, wait_for, wait_scraped
from operator_proc import Controller
from receivers import Request, SmtpReceiver, WebhookReceiver
from test_track import pushed, rel_name, stopline_cli, wait_track

from controller.notify.signing import verify

LOAD = "stopline_e2e_notify_load"
HMAC_KEY = "e2e-signing-key-0123456789"
AUTHOR = "stopline-e2e"


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver().start()
    yield r
    r.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    r = SmtpReceiver().start()
    yield r
    r.stop()


def secrets(ns: str, hook: WebhookReceiver) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "notify"},
        "stringData": {"slack-url": f"{hook.url}/slack", "hmac": HMAC_KEY},
    }
    apply(json.dumps(doc), ns)


def sinks(hook: WebhookReceiver, smtp: SmtpReceiver | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"name": "chat", "slack": {"urlSecretRef": {"name": "notify", "key": "slack-url"}}},
        {
            "name": "ops-hook",
            "webhook": {"url": f"{hook.url}/hook", "signingSecretRef": {"name": "notify", "key": "hmac"}},
        },
    ]
    if smtp is not None:
        out.append(
            {
                "name": "mail",
                "email": {
                    "host": "127.0.0.1",
                    "port": smtp.port,
                    "from": "stopline <stopline@example.com>",
                    "to": ["oncall@example.com"],
                    "toAuthor": True,
                },
            }
        )
    return out


def fail_a_push(app: App, when: When, then: Then, ns: str, notify: list[dict[str, Any]]) -> str:
    when.metric(LOAD, 4.1)
    wait_scraped()
    sha = app.commit("v2-bad")
    phases = [{"name": "canary", "deployments": ["web-canary"], "hold": "60s"}]
    rel = when.release(app, sha, phases=phases, gates=[gate("chat-loadavg", LOAD, ns, max=6)], notify=notify)
    then.release_in(rel, "Holding", "canary")
    when.metric(LOAD, 7.2)
    return rel


def check_rolled_back_texts(hook: WebhookReceiver, smtp: SmtpReceiver | None, *, exact: bool = True) -> None:
    """One RolledBack message per sink. ``exact``: not even a repeat with the same delivery key (a repeat is
    possible only when the controller dies between the receiver's answer and the status write)."""
    if exact:
        assert len(hook.raw("/slack")) == len(hook.raw("/hook")) == 1, [r.path for r in hook.requests]
        assert smtp is None or len(smtp.mails) == 1
    [slack] = hook.on("/slack")
    text = slack.json()["text"]
    assert "rolled back" in text and AUTHOR in text and "chat-loadavg" in text, text
    blocks = json.dumps(slack.json()["blocks"])
    assert "pre 4.10, post 7.20" in blocks, blocks

    [doc] = hook.on("/hook")
    body = doc.json()
    assert body["event"] == "RolledBack"
    assert body["gauge"]["gate"] == "chat-loadavg"
    assert body["gauge"]["prePush"] == pytest.approx(4.1) and body["gauge"]["postPush"] == pytest.approx(7.2)
    assert body["author"].startswith(AUTHOR)
    assert body["revertState"] == "Pushed" and len(body["revertCommit"]) == 40
    headers = {k.lower(): v for k, v in doc.headers.items()}
    assert headers["x-stopline-delivery"] == body["deliveryId"] == headers["idempotency-key"]
    assert headers["x-stopline-signature"].startswith("sha256=")
    assert verify(
        HMAC_KEY.encode(), headers["x-stopline-timestamp"], doc.body, headers["x-stopline-signature"], now=time.time()
    )
    assert not verify(b"another key", headers["x-stopline-timestamp"], doc.body, headers["x-stopline-signature"])

    if smtp is not None:
        [(rcpts, mail)] = smtp.messages()
        assert rcpts == ["oncall@example.com", "e2e@stopline.invalid"]
        assert "rolled back" in mail["Subject"] and AUTHOR in mail["Subject"]
        body_text = mail.get_payload(decode=True).decode()
        assert "chat-loadavg" in body_text and "pre 4.10, post 7.20" in body_text, body_text
        assert mail["Message-ID"].endswith("@stopline.dev>")


def test_rolled_back_push_is_told_once_to_each_sink(
    controller: Controller,
    given: Given,
    when: When,
    then: Then,
    ns: str,
    hook: WebhookReceiver,
    smtp: SmtpReceiver,
) -> None:
    app = given.app(f"{ns}-notify")
    secrets(ns, hook)
    rel = fail_a_push(app, when, then, ns, sinks(hook, smtp))
    status = then.release_reaches(rel, "RolledBack", "Failed", timeout=60)
    assert status["phase"] == "RolledBack"

    box = then.notifications_sent(rel, 3)
    assert {(e["sink"], e["event"]) for e in box} == {
        ("chat", "RolledBack"),
        ("ops-hook", "RolledBack"),
        ("mail", "RolledBack"),
    }
    wait_for(lambda: len(hook.requests) >= 2 and len(smtp.mails) >= 1, timeout=10, message="messages received")
    check_rolled_back_texts(hook, smtp)
    secret_text = json.dumps(then.get("release", rel)) + json.dumps(then.events(rel))
    assert HMAC_KEY not in secret_text and f"{hook.url}/slack" not in secret_text
    assert {"NotificationSent"} <= {e["reason"] for e in then.events(rel)}


def test_killed_right_after_the_rollback_still_tells_exactly_once(
    controller: Controller,
    given: Given,
    when: When,
    then: Then,
    ns: str,
    hook: WebhookReceiver,
    smtp: SmtpReceiver,
) -> None:
    app = given.app(f"{ns}-notify-kill")
    secrets(ns, hook)
    rel = fail_a_push(app, when, then, ns, sinks(hook, smtp))
    then.release_reaches(rel, "RolledBack", "Failed", timeout=60)
    controller.kill()
    controller.start()
    then.notifications_sent(rel, 3, timeout=90)
    wait_for(lambda: len(hook.requests) >= 2 and len(smtp.mails) >= 1, timeout=10, message="messages received")
    # killed while a delivery may be in flight: at most a repeat under the same key, never a second message
    check_rolled_back_texts(hook, smtp, exact=False)


def test_sink_down_first_is_retried_and_delivers_later(
    controller: Controller, given: Given, when: When, then: Then, ns: str
) -> None:
    down = WebhookReceiver()  # not listening yet: connection refused
    app = given.app(f"{ns}-notify-down")
    secrets(ns, down)
    rel = fail_a_push(app, when, then, ns, sinks(down, None))
    then.release_reaches(rel, "RolledBack", "Failed", timeout=60)

    def failing() -> list[dict[str, Any]] | None:
        box = then.outbox(rel)
        return box if box and all(e.get("lastError") and e["state"] == "Pending" for e in box) else None

    box = wait_for(failing, timeout=60, message="the outbox to show the failing sinks")
    assert all(e["lastError"] == "cannot connect" and e["nextAttemptAt"] for e in box), box
    reasons = {e["reason"] for e in then.events(rel)}
    assert "NotificationFailed" in reasons
    down.start()
    try:
        box = then.notifications_sent(rel, 2, timeout=60)
        assert all(e["attempts"] >= 2 for e in box)
        check_rolled_back_texts(down, None)
    finally:
        down.stop()


def lock_messages(hook: WebhookReceiver, event: str, count: int = 1, timeout: float = 60) -> list[Request]:
    """Wait until the receiver got ``count`` distinct ``event`` messages on /hook (repeats of a delivery key
    dropped, as a receiver does); fails with what it got."""

    def got() -> list[Request]:
        return [r for r in hook.on("/hook") if r.json()["event"] == event]

    wait_for(lambda: len(got()) >= count, timeout=timeout, message=f"{count} {event} message(s) on /hook")
    return got()


def test_track_lock_and_unlock_are_told_once_each(
    controller: Controller, given: Given, when: When, then: Then, ns: str, hook: WebhookReceiver
) -> None:
    app = given.app(f"{ns}-notify-line")
    secrets(ns, hook)
    when.metric(LOAD, 4.1)
    wait_scraped()
    lock_sink = {
        "name": "ops-hook",
        "events": ["Locked", "Unlocked"],
        "webhook": {"url": f"{hook.url}/hook", "signingSecretRef": {"name": "notify", "key": "hmac"}},
    }
    template = {
        "phases": [{"name": "canary", "deployments": ["web-canary"], "hold": "60s"}],
        "gates": [gate("chat-loadavg", LOAD, ns, max=6)],
        "watch": "0s",
        "notify": [lock_sink],
    }
    spec = {
        "source": {"repo": app.repo, "branch": "main", "path": "deploy/"},
        "pollInterval": "1s",
        "template": template,
    }
    apply(json.dumps({"apiVersion": API, "kind": "Track", "metadata": {"name": "line"}, "spec": spec}), ns)
    r0 = rel_name("line", branch_sha(app.repo))
    then.release_in(r0, "Holding", "canary", timeout=120)
    when.annotate("release", r0, "stopline.dev/promote", "e2e-skip-the-first-hold")
    pushed(ns, "line", r0)

    bad = app.commit("v2-bad", "web v2 (bad)")
    r1 = rel_name("line", bad)
    then.release_in(r1, "Holding", "canary", timeout=120)
    when.metric(LOAD, 7.2)
    status = then.release_reaches(r1, "RolledBack", "Failed", timeout=90)
    assert status["phase"] == "RolledBack", status.get("message")
    wait_track(ns, "line", lambda s: (s.get("commitLock") or {}).get("locked"), "commit lock set")

    [locked] = lock_messages(hook, "Locked")
    box = then.notifications_sent("line", 1, kind="track")
    body = locked.json()
    assert (body["kind"], body["name"], body["release"], body["revision"], body["by"]) == (
        "Track",
        "line",
        r1,
        bad,
        "stopline",
    ), body
    assert "chat-loadavg" in body["title"] and AUTHOR in body["title"] and body["author"].startswith(AUTHOR), body
    assert body["deliveryId"] == box[0]["key"] and box[0]["event"] == "Locked"
    headers = {k.lower(): v for k, v in locked.headers.items()}
    assert headers["x-stopline-event"] == "Locked"
    assert verify(
        HMAC_KEY.encode(),
        headers["x-stopline-timestamp"],
        locked.body,
        headers["x-stopline-signature"],
        now=time.time(),
    )
    assert not [r for r in hook.requests if r.json()["event"] != "Locked"], "the Release's sinks want no RolledBack"

    out = stopline_cli("unlock", "line", "-n", ns, "--reason", "fixed the query", "--by", "e2e")
    assert "unlock requested" in out, out
    [unlocked] = lock_messages(hook, "Unlocked")
    box = then.notifications_sent("line", 2, kind="track")
    doc = unlocked.json()
    assert (doc["by"], doc["reason"]) == ("e2e", "fixed the query") and "unlocked by e2e" in doc["title"], doc
    assert len(hook.raw("/hook")) == 2, [r.json()["deliveryId"] for r in hook.raw("/hook")]
    assert len({r.json()["deliveryId"] for r in hook.raw("/hook")}) == 2, "distinct delivery keys"
    assert [e["event"] for e in box] == ["Locked", "Unlocked"]
    assert {"NotificationSent"} <= {e["reason"] for e in then.events("line")}
    assert HMAC_KEY not in json.dumps(then.get("track", "line"))
