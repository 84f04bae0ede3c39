"""Notifications on the real stack: a failed push tells a loopback webhook receiver (Slack-style and signed
JSON) and a loopback SMTP server exactly once each — also when the controller is killed right after the
rollback — and a sink that is down first is retried and delivers later, its failure shown meanwhile."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from dsl import App, Given, Then, When, gate
from helpers import apply, wait_for, wait_scraped
from operator_proc import Controller
from receivers import SmtpReceiver, WebhookReceiver

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
