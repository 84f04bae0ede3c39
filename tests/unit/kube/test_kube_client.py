"""The API client counts every request it sends, by verb and resource (``stopline_kube_requests_total``)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.config import kube_config

from controller.kube.client import api_client, request_kind


@pytest.mark.parametrize(
    ("method", "url", "kind"),
    [
        ("GET", "https://h:6443/api/v1/namespaces/shop/pods?labelSelector=app%3Dweb", ("LIST", "pods")),
        ("GET", "https://h/apis/apps/v1/namespaces/shop/replicasets", ("LIST", "replicasets")),
        ("GET", "https://h/apis/apps/v1/namespaces/shop/deployments/web", ("GET", "deployments")),
        ("PATCH", "https://h/apis/stopline.dev/v1alpha1/namespaces/shop/releases/r/status", ("PATCH", "releases")),
        ("GET", "https://h/api/v1/namespaces/shop", ("GET", "namespaces")),
        ("GET", "https://h/api/v1/namespaces", ("LIST", "namespaces")),
        ("GET", "https://h/apis/apps/v1/deployments", ("LIST", "deployments")),
        (
            "GET",
            "https://h/apis/apps/v1/deployments?labelSelector=a&watch=true&timeoutSeconds=60",
            ("WATCH", "deployments"),
        ),
        ("GET", "https://h/version", ("GET", "other")),
    ],
    ids=[
        "list-pods",
        "list-replicasets",
        "get-deployment",
        "patch-status",
        "get-namespace",
        "list-namespaces",
        "list-all-namespaces",
        "watch",
        "not-a-resource",
    ],
)
def test_request_kind_names_requests_as_the_api_server_does(method: str, url: str, kind: tuple[str, str]) -> None:
    assert request_kind(method, url) == kind


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    config = tmp_path / "kubeconfig"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(config))  # read at import time
    try:
        yield str(config)
    finally:
        server.shutdown()
        server.server_close()


def test_every_request_is_told_once(kubeconfig: str) -> None:
    seen: list[tuple[str, str]] = []
    core = client.CoreV1Api(api_client(on_request=lambda verb, resource: seen.append((verb, resource))))
    core.list_namespaced_pod("shop", label_selector="app=web")
    core.list_namespaced_pod("shop")
    assert seen == [("LIST", "pods"), ("LIST", "pods")]
