"""Gate kinds beside PromQL (issue 15), on the real stack, with no Prometheus gate at all:

* ``kubernetes``: a push whose new image crash-loops (kwok Stage ``stopline-e2e-crash``: an image ending in
  ``:crash``) is rolled back by the gate while the phase rolls out, and reverted in Git;
* ``job``: a smoke-test Job per phase; one whose pod fails (kwok Stage ``stopline-e2e-exit``) rolls the push
  back, one that completes lets it through; the Jobs are owned by the Release and cleaned up;
* ``http``: a loopback server in the test (the controller under test runs on this host) — a good JSON field
  passes a push, a bad one rolls the next push back; a header value from a Secret reaches the server and
  appears nowhere else.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from dsl import THREE_PHASES, App, Given, Then, When, app_files, deployment_yaml
from dsl_objects import ObjectsThen
from helpers import apply, kubectl_json, wait_for
from operator_proc import Controller

pytestmark = pytest.mark.e2e

SMOKE_POD = {
    "spec": {
        "containers": [
            {"name": "smoke", "image": "registry.example/smoke:v1", "args": ["{{ phase }}", "{{ revision }}"]}
        ],
        "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
    }
}


def crash_chat(app: App, version: str) -> str:
    """A commit whose chat Deployment runs an image that crash-loops; the other Deployments are fine."""
    files = app_files(version)
    files["deploy/chat.yaml"] = deployment_yaml("chat", "chat", "crash")
    return app.commit_files(files, f"app {version}, chat crashes")


def smoke_gate(name: str, exit_code: int | None = None, timeout: str = "60s") -> dict[str, Any]:
    pod = json.loads(json.dumps(SMOKE_POD))
    if exit_code is not None:
        pod["metadata"] = {"labels": {"stopline-e2e/exit": str(exit_code)}}
    return {"name": name, "interval": "1s", "job": {"timeout": timeout, "spec": {"template": pod}}}


def release_jobs(ns: str, release: str) -> list[dict[str, Any]]:
    out = kubectl_json("get", "jobs", "-n", ns, "-l", f"stopline.dev/release={release}", "-o", "json")
    return list(out.get("items") or [])


def test_crash_looping_image_is_rolled_back_by_the_kubernetes_gate(
    controller: Controller, given: Given, when: When, then: Then, ns: str
) -> None:
    app = given.app(f"{ns}-crash")
    before = app.specs()
    sha = crash_chat(app, "v2")
    gates = [{"name": "pods", "kubernetes": {}, "interval": "1s"}]
    phases = [dict(THREE_PHASES[0]), {**THREE_PHASES[1], "hold": "30s"}, dict(THREE_PHASES[2])]
    rel = when.release(app, sha, phases=phases, gates=gates)

    status = then.rolled_back_by(rel, "pods", "chat")
    row = then.gauge(status, "pods", "chat")
    assert row["verdict"] == "Fail" and row["kind"] == "kubernetes"
    assert "CrashLoopBackOff" in row["message"] and "chat-" in row["message"], row
    assert row["postPush"] >= 3, row  # restarts since the phase began: the new pod's own
    assert then.gauge(status, "pods", "canary")["verdict"] == "Pass"
    after = app.specs()
    assert after["chat"] == before["chat"] and after["web-canary"] == before["web-canary"]
    assert status["revert"]["state"] == "Pushed"


def test_failing_smoke_job_rolls_the_push_back_and_a_passing_one_lets_it_through(
    controller: Controller, given: Given, when: When, then: Then, ns: str
) -> None:
    app = given.app(f"{ns}-job")
    phases = [{**p, "hold": "0s"} for p in THREE_PHASES]
    good = app.commit("v2")
    rel = when.release(app, good, phases=phases, gates=[smoke_gate("smoke")])
    status = then.succeeded(rel)
    rows = [then.gauge(status, "smoke", p["name"]) for p in phases]
    assert [r["verdict"] for r in rows] == ["Pass", "Pass", "Pass"], rows
    assert "complete" in rows[0]["message"]
    wait_for(lambda: not release_jobs(ns, rel), timeout=30, message=f"the smoke Jobs of {rel} cleaned up")

    bad = app.commit("v3")
    rel = when.release(app, bad, phases=phases, gates=[smoke_gate("smoke", exit_code=1)])
    job = wait_for(lambda: release_jobs(ns, rel), timeout=30, message="the smoke Job created")[0]
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Release", rel)
    assert job["metadata"]["labels"]["stopline.dev/phase"] == "canary"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["canary", bad], "{{ phase }} and {{ revision }} are filled in"
    status = then.rolled_back_by(rel, "smoke", "canary")
    row = then.gauge(status, "smoke", "canary")
    assert row["verdict"] == "Fail" and "failed" in row["message"], row
    assert app.image("web-canary") == "registry.example/web-canary:v2"
    wait_for(lambda: not release_jobs(ns, rel), timeout=30, message=f"the smoke Job of {rel} cleaned up")


class Health:
    """A loopback health endpoint: ``{"checks": {"errors": N}}``; records the headers it was sent."""

    def __init__(self) -> None:
        self.errors = 0
        self.headers: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.headers.append(dict(self.headers.items()))
                body = json.dumps({"checks": {"errors": outer.errors}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/health"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def health() -> Iterator[Health]:
    h = Health()
    yield h
    h.close()


def test_http_gate_passes_a_good_json_field_and_rolls_back_a_bad_one(
    controller: Controller, given: Given, when: When, then: Then, ns: str, health: Health
) -> None:
    token = f"tok-{ns}-s3cret"
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "health-token"},
        "data": {"token": base64.b64encode(token.encode()).decode()},
    }
    apply(json.dumps(secret), ns)
    app = given.app(f"{ns}-http")
    gate = {
        "name": "health",
        "interval": "1s",
        "http": {
            "url": health.url,
            "field": "checks.errors",
            "headers": [{"name": "X-Token", "valueFrom": {"secretKeyRef": {"name": "health-token", "key": "token"}}}],
        },
        "max": 0,
    }
    phases = [{**p, "hold": "1s"} for p in THREE_PHASES]
    good = app.commit("v2")
    rel = when.release(app, good, phases=phases, gates=[gate])
    status = then.succeeded(rel)
    row = then.gauge(status, "health", "canary")
    assert (row["verdict"], row["postPush"], row["kind"]) == ("Pass", 0, "http"), row
    assert any(h.get("X-Token") == token for h in health.headers), "the Secret's value is sent as the header"

    health.errors = 3
    bad = app.commit("v3")
    rel = when.release(app, bad, phases=phases, gates=[gate])
    status = then.rolled_back_by(rel, "health", "canary")
    row = then.gauge(status, "health", "canary")
    assert row["postPush"] == 3 and "3.00 > 0" in row["message"], row
    assert app.image("web-canary") == "registry.example/web-canary:v2"
    ObjectsThen(ns).secret_nowhere(token, rel, controller.log_path)
