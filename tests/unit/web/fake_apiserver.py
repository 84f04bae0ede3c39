"""A loopback stand-in for kube-apiserver: answers from a route table and records every request.

Used by the CLI client tests and the status-page source tests to exercise the real Kubernetes client.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

GROUP = "/apis/stopline.dev/v1alpha1"
RESOURCES = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": "stopline.dev/v1alpha1",
    "resources": [
        {"name": p, "singularName": p[:-1], "namespaced": True, "kind": k, "verbs": ["get", "list", "patch"]}
        for p, k in (("releases", "Release"), ("tracks", "Track"), ("experiments", "Experiment"))
    ],
}


def not_found(what: str = "") -> tuple[int, dict[str, Any]]:
    return 404, {
        "kind": "Status",
        "status": "Failure",
        "reason": "NotFound",
        "message": f"{what} not found",
        "code": 404,
    }


@dataclass
class FakeApiServer:
    """Routes ``(method, path)`` to ``(status, body)``; anything else is a 404 like an apiserver's."""

    routes: dict[tuple[str, str], tuple[int, dict[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, list[str]], dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""


class _Handler(BaseHTTPRequestHandler):
    server_state: FakeApiServer

    def _answer(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server_state.requests.append((method, parts.path, parse_qs(parts.query), dict(self.headers), body))
        status, payload = self.server_state.routes.get((method, parts.path), not_found(parts.path))
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer("GET")

    def do_PATCH(self) -> None:
        self._answer("PATCH")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def write_kubeconfig(path: Path, server: str, namespace: str | None = "shop") -> Path:
    context: dict[str, Any] = {"cluster": "fake", "user": "dev"}
    if namespace:
        context["namespace"] = namespace
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": server}}],
                "users": [{"name": "dev", "user": {"token": "not-a-secret"}}],
                "contexts": [
                    {"name": "fake", "context": context},
                    {"name": "other", "context": {"cluster": "fake", "user": "dev", "namespace": "elsewhere"}},
                ],
                "current-context": "fake",
            }
        )
    )
    return path


@contextmanager
def serve() -> Iterator[FakeApiServer]:
    """Run a :class:`FakeApiServer` on a loopback port for the duration of the block."""
    state = FakeApiServer()
    handler = type("Handler", (_Handler,), {"server_state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
