"""Loopback notification receivers for e2e tests: an HTTP webhook receiver (stdlib http.server in a thread)
and an SMTP server (aiosmtpd). Both record everything they get; the webhook one can start late (a sink that
is down first)."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller as SmtpController
from aiosmtpd.smtp import Envelope, Session


def free_port() -> int:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """Accepts POSTs on any path with 200 and records them (``status`` answers something else)."""

    port: int = field(default_factory=free_port)
    status: int = 200
    requests: list[Request] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append(Request(self.path, {k: v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def raw(self, path: str) -> list[Request]:
        """Every request on ``path``, repeats included."""
        return [r for r in self.requests if r.path == path]

    def on(self, path: str) -> list[Request]:
        """The messages on ``path`` as a receiver honouring the delivery key sees them: a repeat (the same
        X-Stopline-Delivery, e.g. resent after a crash between the answer and the status write) is dropped."""
        seen: dict[str, Request] = {}
        for r in self.raw(path):
            key = {k.lower(): v for k, v in r.headers.items()}.get("x-stopline-delivery", "")
            assert key, f"no X-Stopline-Delivery header on {path}"
            seen.setdefault(key, r)
        return list(seen.values())


class _Handler:
    def __init__(self, box: list[tuple[list[str], Message]]) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        self.box.append((list(envelope.rcpt_tos), message_from_bytes(raw)))
        return "250 OK"


@dataclass
class SmtpReceiver:
    """An SMTP server on loopback recording (recipients, message) of every mail."""

    port: int = field(default_factory=free_port)
    mails: list[tuple[list[str], Message]] = field(default_factory=list)
    _ctl: SmtpController | None = None

    def start(self) -> SmtpReceiver:
        self._ctl = SmtpController(_Handler(self.mails), hostname="127.0.0.1", port=self.port)
        self._ctl.start()
        return self

    def stop(self) -> None:
        if self._ctl is not None:
            self._ctl.stop()
            self._ctl = None

    def messages(self) -> list[tuple[list[str], Message]]:
        """The mails with repeats (the same Message-ID) dropped, as a mail system deduplicating does."""
        seen: dict[str, tuple[list[str], Message]] = {}
        for rcpts, mail in self.mails:
            seen.setdefault(str(mail["Message-ID"]), (rcpts, mail))
        return list(seen.values())
