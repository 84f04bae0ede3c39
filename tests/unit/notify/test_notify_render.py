"""Each sink's message for one rolled-back push, against golden files (``STOPLINE_UPDATE_GOLDEN=1`` rewrites
them), and the HMAC signature against a reference vector."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import T0, UID, release_spec, rolled_back

from controller.models.notify import OutboxEntry
from controller.notify import render
from controller.notify.release import record_events
from controller.notify.signing import signature, verify

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "notify"


def entry() -> OutboxEntry:
    s = record_events(release_spec(), rolled_back(), (), "shop", "web-3f9c2e1", UID, T0)
    assert s.notifications is not None
    return s.notifications.outbox[0]


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("STOPLINE_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from its golden file (STOPLINE_UPDATE_GOLDEN=1 rewrites it)"


def test_slack_golden() -> None:
    body = render.slack(entry())
    golden("rolled-back.slack.json", json.dumps(json.loads(body), indent=2, sort_keys=True) + "\n")
    assert body == render.slack(entry()), "deterministic: the same entry, the same bytes"


def test_webhook_golden() -> None:
    body = render.webhook(entry())
    golden("rolled-back.webhook.json", json.dumps(json.loads(body), indent=2, sort_keys=True) + "\n")
    assert json.loads(body)["deliveryId"] == "shop/web-3f9c2e1/7c1e0a52/RolledBack/ops"


def test_email_golden() -> None:
    e = entry()
    to = render.recipients(e, ["oncall@example.com"], to_author=True)
    assert to == ["oncall@example.com", "mey@example.com"]
    msg = render.email(e, "stopline <stopline@example.com>", to)
    golden("rolled-back.email.txt", msg.as_string())
    assert msg["Message-ID"] == render.message_id(e.key) == render.email(e, "x@y.z", to)["Message-ID"]


def test_author_address_only_when_known() -> None:
    e = entry()
    e.message.author = "stopline-e2e"
    assert render.recipients(e, [], to_author=True) == []


# printf '%s' '1764609881.{"event":"RolledBack"}' | openssl dgst -sha256 -hmac 'e2e-signing-key'
VECTOR = "b33729643a7776293787d997a4da0e99a13af7fb5fb7d75ecdcb8cab57f108a9"


def test_hmac_signature_matches_the_reference_vector() -> None:
    sig = signature(b"e2e-signing-key", "1764609881", b'{"event":"RolledBack"}')
    assert sig == f"sha256={VECTOR}"
    assert verify(b"e2e-signing-key", "1764609881", b'{"event":"RolledBack"}', sig)
    assert verify(b"e2e-signing-key", "1764609881", b'{"event":"RolledBack"}', sig, now=1764609881 + 10)


@pytest.mark.parametrize(
    ("key", "ts", "body", "now"),
    [
        (b"other", "1764609881", b'{"event":"RolledBack"}', None),
        (b"e2e-signing-key", "1764609882", b'{"event":"RolledBack"}', None),
        (b"e2e-signing-key", "1764609881", b'{"event":"RolledBack" }', None),
        (b"e2e-signing-key", "1764609881", b'{"event":"RolledBack"}', 1764609881 + 301),
    ],
    ids=["wrong-key", "other-timestamp", "body-changed", "too-old"],
)
def test_hmac_rejects(key: bytes, ts: str, body: bytes, now: float | None) -> None:
    assert not verify(key, ts, body, f"sha256={VECTOR}", now=now)
