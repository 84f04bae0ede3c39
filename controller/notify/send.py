"""Send one outbox entry to its sink: HTTP (requests) for Slack and JSON webhooks, SMTP (smtplib) for email.

The only notification I/O. Blocking clients run in ``asyncio.to_thread``. Credentials (webhook URLs, HMAC
keys, SMTP passwords) are read from Secrets at each attempt and never logged, returned or written: an
error names what failed (``HTTP 503``, ``cannot connect``, ``SMTP 535``), never the URL or a secret.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Protocol

import requests

from controller.models.notify import EmailSink, OutboxEntry, SecretKeyRef, Sink
from controller.notify import render
from controller.notify.outbox import DeliveryResult
from controller.notify.signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signature,
)

#: Seconds one attempt may take (connect + answer) before it counts as failed.
SEND_TIMEOUT = 10.0
USER_AGENT = "stopline-notify/1"


class SecretsPort(Protocol):
    """Reads a Secret's decoded data (the kube adapter's ``Objects.secret_data``)."""

    async def secret_data(self, namespace: str, name: str) -> dict[str, bytes]: ...


class SendError(Exception):
    """An attempt failed; the message is safe to show (no URL, no credential)."""


class Sender:
    """Delivers entries; one instance serves every Release and Track."""

    def __init__(
        self,
        secrets: SecretsPort,
        controller_namespace: str,
        clock: Callable[[], datetime],
        timeout: float = SEND_TIMEOUT,
    ) -> None:
        self.secrets = secrets
        self.controller_namespace = controller_namespace
        self.clock = clock
        self.timeout = timeout

    async def send(self, namespace: str, sink: Sink, default: bool, entry: OutboxEntry) -> DeliveryResult:
        """One attempt; errors come back in the result, never raised."""
        where = self.controller_namespace if default else namespace
        secrets: list[bytes] = []
        try:
            if sink.slack is not None:
                url = await self._secret(where, sink.slack.url_secret_ref, secrets)
                await asyncio.to_thread(self._post, url.decode().strip(), render.slack(entry), {}, entry)
            elif sink.webhook is not None:
                w = sink.webhook
                url = w.url.encode() if w.url else await self._secret(where, w.url_secret_ref, secrets)
                body = render.webhook(entry)
                headers: dict[str, str] = {}
                if w.signing_secret_ref is not None:
                    key = await self._secret(where, w.signing_secret_ref, secrets)
                    ts = str(int(time.time()))
                    headers = {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: signature(key, ts, body)}
                await asyncio.to_thread(self._post, url.decode().strip(), body, headers, entry)
            elif sink.email is not None:
                password = None
                if sink.email.password_secret_ref is not None:
                    password = (await self._secret(where, sink.email.password_secret_ref, secrets)).decode()
                await asyncio.to_thread(self._mail, sink.email, password, entry)
            else:
                raise SendError("the sink has no kind")
        except Exception as exc:  # every failure is an outcome; its text is scrubbed of credentials
            return DeliveryResult(entry.key, ok=False, at=self.clock(), error=_scrub(_describe(exc), secrets))
        return DeliveryResult(entry.key, ok=True, at=self.clock())

    async def _secret(self, namespace: str, ref: SecretKeyRef | None, seen: list[bytes]) -> bytes:
        if ref is None:
            raise SendError("no Secret configured")
        try:
            data = await self.secrets.secret_data(namespace, ref.name)
        except Exception as exc:
            raise SendError(f"cannot read Secret {namespace}/{ref.name}: {type(exc).__name__}") from None
        value = data.get(ref.key)
        if not value:
            raise SendError(f"Secret {namespace}/{ref.name} has no key {ref.key!r}")
        seen.append(value)
        return value

    def _post(self, url: str, body: bytes, extra: Mapping[str, str], entry: OutboxEntry) -> None:
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            DELIVERY_HEADER: entry.key,
            "Idempotency-Key": entry.key,
            EVENT_HEADER: entry.event,
            **extra,
        }
        try:
            resp = requests.post(url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False)
        except requests.Timeout:
            raise SendError(f"no answer within {self.timeout:g}s") from None
        except requests.ConnectionError:
            raise SendError("cannot connect") from None
        except requests.RequestException as exc:
            raise SendError(f"request failed: {type(exc).__name__}") from None
        if not 200 <= resp.status_code < 300:
            raise SendError(f"HTTP {resp.status_code}")

    def _mail(self, cfg: EmailSink, password: str | None, entry: OutboxEntry) -> None:
        to = render.recipients(entry, cfg.to, cfg.to_author)
        if not to:
            raise SendError("no recipient: the author's email address is not known")
        msg = render.email(entry, cfg.from_, to)
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if cfg.tls:
            smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=self.timeout)
        with smtp:
            smtp.ehlo()
            if cfg.start_tls:
                smtp.starttls(context=context)
                smtp.ehlo()
            if cfg.username:
                smtp.login(cfg.username, password or "")
            smtp.send_message(msg, to_addrs=to)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SendError):
        return str(exc)
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"SMTP {exc.smtp_code}: {text[:200]}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "SMTP: every recipient refused"
    if isinstance(exc, TimeoutError | OSError):
        return f"cannot connect: {type(exc).__name__}"
    return f"{type(exc).__name__}"


def _scrub(text: str, secrets: list[bytes]) -> str:
    for s in secrets:
        value = s.decode(errors="replace").strip()
        if len(value) >= 4:
            text = text.replace(value, "***")
    return text[:500]
