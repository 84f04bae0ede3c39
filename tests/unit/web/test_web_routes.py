"""The status page and /metrics routes on an aiohttp app: a fake source, and the real Kubernetes source."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from kubernetes import client as k8s

from controller.errors import ClusterError
from controller.experiments.growthbook import growthbook_payload
from controller.experiments.reconcile import published_config
from controller.metrics import ControllerMetrics
from controller.web import routes
from controller.web.routes import features_payload
from controller.web.source import KubePageSource
from controller.web.views import ExperimentView
from web import samples
from web.fake_apiserver import GROUP, FakeApiServer, serve


class FakeSource:
    """``PageSource`` over in-memory objects; ``broken`` makes every read fail like an unreachable API."""

    def __init__(self) -> None:
        self.objects = samples.cluster()
        self.broken = False
        self.events_broken = False
        self.calls: list[tuple[str, ...]] = []

    async def list_all(self, plural: str) -> list[dict[str, Any]]:
        self.calls.append(("list", plural))
        if self.broken:
            raise ClusterError("connection refused")
        return [copy.deepcopy(o) for o in self.objects.get(plural, {}).values()]

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get", plural, namespace, name))
        if self.broken:
            raise ClusterError("connection refused")
        obj = self.objects.get(plural, {}).get(name)
        return copy.deepcopy(obj) if obj is not None and namespace == samples.NS else None

    async def events(self, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
        if self.events_broken:
            raise ClusterError("403 Forbidden: cannot list events")
        return [e for e in samples.events() if e["involvedObject"] == {"kind": kind, "name": name}]

    def notes(self) -> list[str]:
        return []


@pytest.fixture
def source() -> FakeSource:
    return FakeSource()


@pytest.fixture
async def http(source: FakeSource) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    routes.register_status_page(app, source, clock=lambda: samples.NOW)
    metrics = ControllerMetrics()
    metrics.releases.labels("RolledBack").inc()
    routes.register_metrics(app, metrics)
    async with TestClient(TestServer(app)) as c:
        yield c


async def get(http: TestClient[web.Request, web.Application], path: str) -> tuple[int, str, str]:
    resp = await http.get(path)
    return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def test_index(http: TestClient[web.Request, web.Application]) -> None:
    status, ctype, body = await get(http, "/")
    assert status == 200 and ctype.startswith("text/html")
    assert body.count('class="track"') == 2
    assert body.count('class="release"') == 3
    assert 'data-locked="true"' in body


async def test_release_page(http: TestClient[web.Request, web.Application]) -> None:
    status, _, body = await get(http, "/namespaces/shop/releases/web-3f9c2e1")
    assert status == 200
    assert "This push was rolled back" in body
    assert body.count('class="gauge ') == 3
    assert body.count('<tr class="event ') == 3


async def test_release_page_with_unreadable_events(
    http: TestClient[web.Request, web.Application], source: FakeSource
) -> None:
    source.events_broken = True
    status, _, body = await get(http, "/namespaces/shop/releases/web-3f9c2e1")
    assert status == 200
    assert "Events unavailable: 403 Forbidden: cannot list events" in body
    assert "This push was rolled back" in body


async def test_track_page_lists_only_its_releases(http: TestClient[web.Request, web.Application]) -> None:
    status, _, body = await get(http, "/namespaces/shop/tracks/web")
    assert status == 200
    assert "Commit lock: LOCKED" in body
    assert body.count('<g class="day"') == 30
    releases = body.split("<h2>Releases</h2>", 1)[1]
    assert 'data-name="web-3f9c2e1"' in releases and 'data-name="web-aaaaaaa"' in releases
    assert 'data-name="web-bbbbbbb"' not in releases  # belongs to Track api


async def test_experiments_page(http: TestClient[web.Request, web.Application]) -> None:
    status, _, body = await get(http, "/experiments")
    assert status == 200
    assert "To Users 10%" in body and "QA and Admin only" in body and "Closed:enhanced" in body


async def test_growthbook_features_payload(http: TestClient[web.Request, web.Application]) -> None:
    resp = await http.get("/api/features/shop")
    assert resp.status == 200 and resp.content_type == "application/json"
    payload = await resp.json()
    assert set(payload["features"]) == {"GDCEurope2011"}  # the three samples share the key; last by name wins
    rules = payload["features"]["GDCEurope2011"]["rules"]
    assert [(r["id"], r["coverage"]) for r in rules] == [("experiment", 0.1)]  # gdc, rollout 10 %
    empty = await (await http.get("/api/features/elsewhere")).json()
    assert empty == {"features": {}}


async def test_growthbook_features_payload_matches_what_is_published() -> None:
    obj = samples.experiment_object("qa", rollout=20, force={"users": {"alice": "enhanced"}})
    view = ExperimentView.from_object(obj)
    assert view.spec is not None
    expected = growthbook_payload([published_config(view.spec, view.status)])
    assert features_payload("shop", [obj]) == expected
    assert expected["features"]["GDCEurope2011"]["rules"][0]["condition"] == {"id": {"$in": ["alice"]}}


@pytest.mark.parametrize(
    "path",
    ["/namespaces/shop/releases/nope", "/namespaces/other/releases/web-3f9c2e1", "/namespaces/shop/tracks/nope"],
)
async def test_missing_objects_are_404(http: TestClient[web.Request, web.Application], path: str) -> None:
    status, ctype, body = await get(http, path)
    assert status == 404 and ctype.startswith("text/html")
    assert "not found" in body


@pytest.mark.parametrize(
    "path", ["/", "/namespaces/shop/releases/web-3f9c2e1", "/namespaces/shop/tracks/web", "/experiments"]
)
async def test_api_errors_are_502_pages(
    http: TestClient[web.Request, web.Application], source: FakeSource, path: str
) -> None:
    source.broken = True
    status, _, body = await get(http, path)
    assert status == 502
    assert "connection refused" in body


async def test_metrics_route(http: TestClient[web.Request, web.Application]) -> None:
    status, ctype, body = await get(http, "/metrics")
    assert status == 200
    assert ctype.startswith("text/plain")
    assert 'stopline_releases_total{result="RolledBack"} 1.0' in body
    assert "stopline_active_releases 0.0" in body


# ---------------------------------------------------------------- the real source over HTTP
@pytest.fixture
def apiserver() -> Iterator[FakeApiServer]:
    with serve() as state:
        yield state


def kube_source(state: FakeApiServer, namespaces: list[str]) -> KubePageSource:
    configuration = k8s.Configuration()
    configuration.host = state.url
    return KubePageSource(k8s.ApiClient(configuration), lambda: namespaces)


async def test_kube_source_lists_cluster_wide(apiserver: FakeApiServer) -> None:
    track = samples.track_object("web", samples.locked_track_status())
    apiserver.routes[("GET", f"{GROUP}/tracks")] = (200, {"items": [track]})
    src = kube_source(apiserver, ["shop"])
    assert await src.list_all("tracks") == [track]
    assert src.notes() == []


async def test_kube_source_falls_back_to_watched_namespaces_on_403(apiserver: FakeApiServer) -> None:
    forbidden = {"kind": "Status", "reason": "Forbidden", "message": "cluster-wide list forbidden", "code": 403}
    apiserver.routes[("GET", f"{GROUP}/releases")] = (403, forbidden)
    apiserver.routes[("GET", f"{GROUP}/namespaces/a/releases")] = (200, {"items": [{"metadata": {"name": "r1"}}]})
    apiserver.routes[("GET", f"{GROUP}/namespaces/b/releases")] = (200, {"items": [{"metadata": {"name": "r2"}}]})
    src = kube_source(apiserver, ["b", "a", "a"])
    items = await src.list_all("releases")
    assert [i["metadata"]["name"] for i in items] == ["r1", "r2"]
    assert src.notes() == ["Cluster-wide listing is not allowed; showing the watched namespaces: a, b"]
    await src.list_all("releases")  # once scoped, no more cluster-wide attempts
    assert [p for _, p, *_ in apiserver.requests].count(f"{GROUP}/releases") == 1


async def test_kube_source_get_events_and_errors(apiserver: FakeApiServer) -> None:
    release = samples.release_object("web-3f9c2e1", samples.BAD, samples.rolled_back_status())
    apiserver.routes[("GET", f"{GROUP}/namespaces/shop/releases/web-3f9c2e1")] = (200, release)
    apiserver.routes[("GET", "/api/v1/namespaces/shop/events")] = (200, {"items": samples.events()})
    src = kube_source(apiserver, [])
    assert await src.get("releases", "shop", "web-3f9c2e1") == release
    assert await src.get("releases", "shop", "missing") is None
    events = await src.events("shop", "Release", "web-3f9c2e1")
    assert [e["reason"] for e in events] == ["GateFailed", "PushStarted", "RolledBack"]
    _, _, query, _, _ = apiserver.requests[-1]
    assert query["fieldSelector"] == ["involvedObject.kind=Release,involvedObject.name=web-3f9c2e1"]
    with pytest.raises(ClusterError, match="list tracks: 404"):
        await src.list_all("tracks")  # CRD missing: not a 403, so no fallback
    with pytest.raises(ClusterError, match="list events: 404"):
        await src.events("other", "Release", "x")


async def test_page_over_the_real_source(apiserver: FakeApiServer) -> None:
    release = samples.release_object("web-3f9c2e1", samples.BAD, samples.rolled_back_status())
    apiserver.routes[("GET", f"{GROUP}/namespaces/shop/releases/web-3f9c2e1")] = (200, release)
    forbidden = {"kind": "Status", "reason": "Forbidden", "message": "events is forbidden", "code": 403}
    apiserver.routes[("GET", "/api/v1/namespaces/shop/events")] = (403, forbidden)
    app = web.Application()
    routes.register_status_page(app, kube_source(apiserver, ["shop"]), clock=lambda: samples.NOW)
    async with TestClient(TestServer(app)) as c:
        resp = await c.get("/namespaces/shop/releases/web-3f9c2e1")
        body = await resp.text()
    assert resp.status == 200
    assert "This push was rolled back" in body
    assert "Events unavailable: list events: 403 Forbidden events is forbidden" in body
