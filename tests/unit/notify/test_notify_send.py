"""The sending adapter against fakes: a local HTTP server (as Flagger tests providers against httptest) and
a local aiosmtpd server; Secrets from a fake port. Errors never carry a credential."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import T0, UID, release_spec, rolled_back

from controller.models.notify import OutboxEntry, Sink
from controller.notify.release import record_events
from controller.notify.send import Sender
from controller.notify.signing import verify

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "e2e"))
from receivers import SmtpReceiver, WebhookReceiver

SECRET_URL_TOKEN = "T000/B000/very-secret-token"


class FakeSecrets:
    def __init__(self, data: dict[tuple[str, str], dict[str, bytes]]) -> None:
        self.data = data
        self.reads: list[tuple[str, str]] = []

    async def secret_data(self, namespace: str, name: str) -> dict[str, bytes]:
        self.reads.append((namespace, name))
        if (namespace, name) not in self.data:
            raise LookupError("not found")
        return self.data[(namespace, name)]


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver().start()
    yield r
    r.stop()


def entry() -> OutboxEntry:
    s = record_events(release_spec(), rolled_back(), (), "shop", "web-3f9c2e1", UID, T0)
    assert s.notifications is not None
    return s.notifications.outbox[0]


def sender(secrets: FakeSecrets) -> Sender:
    return Sender(secrets, "stopline-system", clock=lambda: T0, timeout=2.0)


async def test_slack_url_from_the_secret_in_the_release_namespace(hook: WebhookReceiver) -> None:
    secrets = FakeSecrets({("shop", "chat"): {"url": f"{hook.url}/{SECRET_URL_TOKEN}".encode()}})
    sink = Sink.model_validate({"name": "c", "slack": {"urlSecretRef": {"name": "chat", "key": "url"}}})
    result = await sender(secrets).send("shop", sink, False, entry())
    assert result.ok, result.error
    [req] = hook.requests
    assert req.path == f"/{SECRET_URL_TOKEN}" and "rolled back" in req.json()["text"]
    assert secrets.reads == [("shop", "chat")]


async def test_default_sinks_read_secrets_in_the_controller_namespace(hook: WebhookReceiver) -> None:
    secrets = FakeSecrets({("stopline-system", "k"): {"hmac": b"key-1234"}})
    sink = Sink.model_validate(
        {"name": "d", "webhook": {"url": f"{hook.url}/d", "signingSecretRef": {"name": "k", "key": "hmac"}}}
    )
    result = await sender(secrets).send("shop", sink, True, entry())
    assert result.ok, result.error
    [req] = hook.requests
    h = {k.lower(): v for k, v in req.headers.items()}
    assert verify(b"key-1234", h["x-stopline-timestamp"], req.body, h["x-stopline-signature"])
    assert h["x-stopline-delivery"] == h["idempotency-key"] == entry().key


async def test_http_errors_and_refusals_are_outcomes_without_the_url(hook: WebhookReceiver) -> None:
    hook.status = 503
    secrets = FakeSecrets({("shop", "chat"): {"url": f"{hook.url}/{SECRET_URL_TOKEN}".encode()}})
    sink = Sink.model_validate({"name": "c", "slack": {"urlSecretRef": {"name": "chat", "key": "url"}}})
    result = await sender(secrets).send("shop", sink, False, entry())
    assert (result.ok, result.error) == (False, "HTTP 503")
    hook.stop()
    result = await sender(secrets).send("shop", sink, False, entry())
    assert (result.ok, result.error) == (False, "cannot connect")
    missing = await sender(FakeSecrets({})).send("shop", sink, False, entry())
    assert missing.error == "cannot read Secret shop/chat: LookupError"


async def test_email_to_fixed_addresses_and_the_author() -> None:
    smtp = SmtpReceiver().start()
    try:
        sink = Sink.model_validate(
            {
                "name": "m",
                "email": {
                    "host": "127.0.0.1",
                    "port": smtp.port,
                    "from": "stopline@example.com",
                    "to": ["ops@example.com"],
                    "toAuthor": True,
                },
            }
        )
        result = await sender(FakeSecrets({})).send("shop", sink, False, entry())
        assert result.ok, result.error
        [(rcpts, mail)] = smtp.mails
        assert rcpts == ["ops@example.com", "mey@example.com"]
        assert mail["X-Stopline-Delivery"] == entry().key
    finally:
        smtp.stop()
