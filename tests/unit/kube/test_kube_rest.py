"""The raw REST path through the real kubernetes ApiClient, against a loopback HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client

from controller.kube.cluster import Rest

SEEN: list[dict[str, Any]] = []


class Handler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        SEEN.append({"method": self.command, "path": self.path, "type": self.headers.get("Content-Type"), "body": body})
        out = json.dumps({"metadata": {"uid": "u-1"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_PATCH = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *_: Any) -> None:
        return


@pytest.fixture
def rest() -> Iterator[Rest]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = client.Configuration()
    config.host = f"http://127.0.0.1:{server.server_address[1]}"
    api = client.ApiClient(config)
    SEEN.clear()
    try:
        yield Rest(api)
    finally:
        api.close()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("method", "content_type"),
    [("PATCH", "application/apply-patch+yaml"), ("PUT", "application/json"), ("DELETE", "application/json")],
    ids=["apply", "replace", "delete"],
)
def test_bodies_are_sent_as_json_once(rest: Rest, method: str, content_type: str) -> None:
    body = {"kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}}
    out = rest.call(
        method,
        "/api/v1/namespaces/shop/configmaps/a",
        query={"fieldManager": "stopline"},
        body=body,
        content_type=content_type,
    )
    assert out == {"metadata": {"uid": "u-1"}}
    (seen,) = SEEN
    assert seen["type"] == content_type and json.loads(seen["body"]) == body
    assert seen["path"] == "/api/v1/namespaces/shop/configmaps/a?fieldManager=stopline"
