"""The real ``KubeApi`` against a loopback stand-in for kube-apiserver: error mapping users see.

The stand-in (``web/fake_apiserver.py``) records every request, so the tests check the HTTP calls
(paths, field selectors, merge-patch content type) as well as the messages.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner
from web import samples
from web.fake_apiserver import GROUP, RESOURCES, FakeApiServer, serve, write_kubeconfig

from controller import cli
from controller.kube import cli_client
from controller.kube.cli_client import CliError


@pytest.fixture
def apiserver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApiServer]:
    with serve() as state:
        monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", state.url)))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        yield state


def with_crds(state: FakeApiServer) -> None:
    state.routes[("GET", GROUP)] = (200, RESOURCES)


# ---------------------------------------------------------------- connect / namespace
def test_namespace_defaults_to_the_context_namespace(apiserver: FakeApiServer) -> None:
    assert cli_client.connect().namespace == "shop"
    assert cli_client.connect(context="other").namespace == "elsewhere"
    assert cli_client.connect("given").namespace == "given"


def test_namespace_falls_back_to_default(
    apiserver: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kc2", apiserver.url, namespace=None)))
    assert cli_client.connect().namespace == "default"


def test_no_kubeconfig_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(CliError, match="no Kubernetes cluster configured"):
        cli_client.connect()


def test_unreachable_cluster_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{port}")))
    api = cli_client.connect()
    with pytest.raises(CliError, match=rf"^cannot reach the Kubernetes API at http://127.0.0.1:{port}: "):
        api.get("releases", "web")
    result = CliRunner().invoke(cli.app, ["status"], env={"NO_COLOR": "1"})
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot reach the Kubernetes API at http://127.0.0.1:{port}")
    assert "Traceback" not in result.output


# ---------------------------------------------------------------- CRDs / objects
def test_missing_crds_are_named(apiserver: FakeApiServer) -> None:
    api = cli_client.connect()
    with pytest.raises(CliError, match=r"the stopline CRDs are not installed in this cluster \(no API stopline.dev"):
        api.get("tracks", "web")
    with pytest.raises(CliError, match="CRDs are not installed"):
        api.list_all("releases")
    result = CliRunner().invoke(cli.app, ["status", "web"], env={"NO_COLOR": "1"})
    assert result.exit_code == 1
    assert result.output.startswith("error: the stopline CRDs are not installed")


def test_one_missing_crd_is_named(apiserver: FakeApiServer) -> None:
    apiserver.routes[("GET", GROUP)] = (200, {**RESOURCES, "resources": RESOURCES["resources"][:1]})
    with pytest.raises(CliError, match=r"the Track CRD is not installed .*tracks\.stopline\.dev"):
        cli_client.connect().get("tracks", "web")


def test_missing_object_is_none_and_the_cli_says_so(apiserver: FakeApiServer) -> None:
    with_crds(apiserver)
    assert cli_client.connect().get("releases", "nope") is None
    result = CliRunner().invoke(cli.app, ["status", "nope"], env={"NO_COLOR": "1"})
    assert result.exit_code == 1
    assert result.output.strip() == "error: no Track or Release named nope in namespace shop"


def test_forbidden_is_a_clear_error(apiserver: FakeApiServer) -> None:
    apiserver.routes[("GET", f"{GROUP}/namespaces/shop/tracks")] = (
        403,
        {
            "kind": "Status",
            "reason": "Forbidden",
            "message": 'tracks.stopline.dev is forbidden: User "dev"',
            "code": 403,
        },
    )
    with pytest.raises(
        CliError, match=r"^not allowed to list tracks in namespace shop: tracks.stopline.dev is forbidden"
    ):
        cli_client.connect().list_all("tracks")


def test_get_list_and_patch_speak_to_the_right_paths(apiserver: FakeApiServer) -> None:
    with_crds(apiserver)
    track = samples.track_object("web", samples.locked_track_status())
    apiserver.routes[("GET", f"{GROUP}/namespaces/shop/tracks/web")] = (200, track)
    apiserver.routes[("GET", f"{GROUP}/namespaces/shop/tracks")] = (200, {"items": [track]})
    apiserver.routes[("PATCH", f"{GROUP}/namespaces/shop/tracks/web")] = (200, track)
    api = cli_client.connect()
    assert api.get("tracks", "web") == track
    assert api.list_all("tracks") == [track]
    api.patch("tracks", "web", {"metadata": {"annotations": {"stopline.dev/unlock": "x"}}})
    method, path, _, headers, body = apiserver.requests[-1]
    assert (method, path) == ("PATCH", f"{GROUP}/namespaces/shop/tracks/web")
    assert headers["Content-Type"] == "application/merge-patch+json"
    assert json.loads(body) == {"metadata": {"annotations": {"stopline.dev/unlock": "x"}}}


def test_patch_of_a_missing_object(apiserver: FakeApiServer) -> None:
    with_crds(apiserver)
    with pytest.raises(CliError, match=r"^Release gone not found in namespace shop$"):
        cli_client.connect().patch("releases", "gone", {"metadata": {}})


def test_events_use_the_involved_object_field_selector(apiserver: FakeApiServer) -> None:
    apiserver.routes[("GET", "/api/v1/namespaces/shop/events")] = (
        200,
        {"kind": "EventList", "apiVersion": "v1", "metadata": {}, "items": samples.events()},
    )
    items = cli_client.connect().events("Release", "web-3f9c2e1")
    _, path, query, _, _ = apiserver.requests[-1]
    assert path == "/api/v1/namespaces/shop/events"
    assert query["fieldSelector"] == ["involvedObject.kind=Release,involvedObject.name=web-3f9c2e1"]
    assert [e["reason"] for e in items] == ["GateFailed", "PushStarted", "RolledBack"]
    assert items[0]["involvedObject"] == {"kind": "Release", "name": "web-3f9c2e1"}
    assert items[0]["lastTimestamp"].startswith("2024-05-30T11:58:00")


def test_logs_end_to_end_over_http(apiserver: FakeApiServer) -> None:
    with_crds(apiserver)
    release = samples.release_object("web-3f9c2e1", samples.BAD, samples.rolled_back_status())
    apiserver.routes[("GET", f"{GROUP}/namespaces/shop/releases/web-3f9c2e1")] = (200, release)
    apiserver.routes[("GET", "/api/v1/namespaces/shop/events")] = (200, {"items": samples.events()})
    result = CliRunner().invoke(cli.app, ["logs", "web-3f9c2e1", "-o", "json"], env={"NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [e["reason"] for e in data["events"]] == ["PushStarted", "GateFailed", "RolledBack"]
    assert data["gauges"][1]["postPush"] == 7.2
