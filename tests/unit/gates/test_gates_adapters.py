"""The gate adapters against fakes: HttpProbe against a loopback server, GateChecks against the in-memory API
server, and the executor's per-kind readers with fake ports."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from controller.gates.providers.http import HttpProbe
from controller.kube.cluster import Cluster
from controller.kube.gatechecks import GateChecks
from controller.kube.objects import Objects
from tests.unit.kube.fake_kube import FakeApiClient


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(1.0)
        status, body = {"/ok": (200, b'{"a": 1}'), "/boom": (500, b"boom"), "/slow": (200, b"{}")}.get(
            self.path, (404, b"")
        )
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        got = self.rfile.read(size)
        body = json.dumps({"body": got.decode(), "token": self.headers.get("X-Token")}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


async def test_http_probe_answers(server: str) -> None:
    probe = HttpProbe()
    ok = await probe.request("GET", f"{server}/ok", {}, None, 5)
    assert (ok.status, ok.body, ok.error) == (200, b'{"a": 1}', None)
    boom = await probe.request("GET", f"{server}/boom", {}, None, 5)
    assert (boom.status, boom.body) == (500, b"boom")
    posted = await probe.request("POST", f"{server}/echo", {"X-Token": "t0k"}, b"hi", 5)
    assert json.loads(posted.body) == {"body": "hi", "token": "t0k"}


async def test_http_probe_timeout_and_refused(server: str) -> None:
    probe = HttpProbe()
    slow = await probe.request("GET", f"{server}/slow", {}, None, 0.2)
    assert slow.status is None and slow.error is not None and "timed out" in slow.error
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    refused = await probe.request("GET", f"http://127.0.0.1:{port}/", {}, None, 2)
    assert refused.status is None and refused.error is not None and "refused" in refused.error.lower()


def deployment(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}}},
    }


def pod(name: str, app: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}}}


async def test_gate_checks_pods_by_selector_and_missing_workloads() -> None:
    api = FakeApiClient()
    api.put(deployment("web"), "deployments")
    api.put(pod("web-1", "web"), "pods")
    api.put(pod("other-1", "other"), "pods")
    checks = GateChecks(Cluster(api), Objects(api))  # type: ignore[arg-type]
    found = await checks.pods("shop", ["Deployment/web", "Deployment/gone"])
    assert [p["metadata"]["name"] for p in found["Deployment/web"] or []] == ["web-1"]
    assert found["Deployment/gone"] is None


async def test_gate_checks_job_create_is_idempotent_and_delete_needs_the_uid() -> None:
    api = FakeApiClient()
    checks = GateChecks(Cluster(api), Objects(api))  # type: ignore[arg-type]
    manifest = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "r-smoke-canary", "labels": {"x": "1"}}}
    first, created = await checks.ensure_job("shop", manifest)
    again, created_again = await checks.ensure_job("shop", manifest)  # a restarted controller
    assert (created, created_again) == (True, False)
    assert first["metadata"]["uid"] == again["metadata"]["uid"]
    assert [j["metadata"]["name"] for j in await checks.jobs("shop", "x=1")] == ["r-smoke-canary"]
    await checks.delete_job("shop", "r-smoke-canary", "not-its-uid")
    assert api.get("jobs", "r-smoke-canary") is not None
    await checks.delete_job("shop", "r-smoke-canary", first["metadata"]["uid"])
    assert api.get("jobs", "r-smoke-canary") is None
