"""Thin aiohttp handlers for the status page and ``/metrics``; the HTML comes from :mod:`controller.web.page`.

    register_status_page(app, source)      # /, /namespaces/{ns}/releases/{name}, /namespaces/{ns}/tracks/{name},
                                           # /experiments, /api/features/{ns} (GrowthBook SDK payload)
    register_metrics(app, metrics)         # /metrics (Prometheus text format)

``source`` is anything with the :class:`PageSource` methods, so tests (and the e2e page test) can hand
in a fake or the real :class:`controller.web.source.KubePageSource`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web

from controller.errors import StoplineError
from controller.experiments.growthbook import growthbook_payload
from controller.experiments.reconcile import published_config
from controller.metrics import ControllerMetrics
from controller.web import page
from controller.web.views import (
    EventView,
    ExperimentView,
    ReleaseView,
    TrackView,
    newest_first,
    sort_events,
)

log = logging.getLogger("stopline.web")

HTML = "text/html"


class PageSource(Protocol):
    """Read-only access to what the page shows. Raises :class:`StoplineError` when the API cannot answer."""

    async def list_all(self, plural: str) -> list[dict[str, Any]]:
        """Every object of ``plural`` (releases, tracks, experiments) the controller can see."""
        ...

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One object, or None."""
        ...

    async def events(self, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
        """core/v1 Events whose involvedObject is ``kind``/``name``."""
        ...

    def notes(self) -> list[str]:
        """Caveats to show (e.g. listing fell back to the watched namespaces)."""
        ...


def utcnow() -> datetime:
    """Wall clock for ages on the page."""
    return datetime.now(UTC)


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type=HTML, charset="utf-8")


def register_status_page(app: web.Application, source: PageSource, clock: Callable[[], datetime] = utcnow) -> None:
    """Add the push status page routes to ``app``."""

    async def index(_: web.Request) -> web.Response:
        try:
            tracks_raw, releases_raw = await asyncio.gather(source.list_all("tracks"), source.list_all("releases"))
        except StoplineError as exc:
            return _html(page.render_error(502, f"cannot read from the Kubernetes API: {exc}"), 502)
        tracks = sorted((TrackView.from_object(o) for o in tracks_raw), key=lambda t: (t.namespace, t.name))
        releases = newest_first([ReleaseView.from_object(o) for o in releases_raw])
        return _html(page.render_index(tracks, releases, clock(), notes=source.notes()))

    async def release(request: web.Request) -> web.Response:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        try:
            obj = await source.get("releases", ns, name)
        except StoplineError as exc:
            return _html(page.render_error(502, f"cannot read Release {ns}/{name}: {exc}"), 502)
        if obj is None:
            return _html(page.render_error(404, f"Release {ns}/{name} not found"), 404)
        view = ReleaseView.from_object(obj)
        events: list[EventView] | None = None
        error: str | None = None
        try:
            raw = await source.events(ns, "Release", name)
            events = sort_events([EventView.from_object(ev) for ev in raw])
        except StoplineError as exc:
            error = str(exc)
        return _html(page.render_release(view, events, clock(), events_error=error))

    async def track(request: web.Request) -> web.Response:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        try:
            obj = await source.get("tracks", ns, name)
            if obj is None:
                return _html(page.render_error(404, f"Track {ns}/{name} not found"), 404)
            releases_raw = await source.list_all("releases")
        except StoplineError as exc:
            return _html(page.render_error(502, f"cannot read Track {ns}/{name}: {exc}"), 502)
        releases = [
            r for r in (ReleaseView.from_object(o) for o in releases_raw) if r.namespace == ns and r.track == name
        ]
        return _html(page.render_track(TrackView.from_object(obj), newest_first(releases), clock()))

    async def experiments(_: web.Request) -> web.Response:
        try:
            raw = await source.list_all("experiments")
        except StoplineError as exc:
            return _html(page.render_error(502, f"cannot read Experiments: {exc}"), 502)
        views = sorted((ExperimentView.from_object(o) for o in raw), key=lambda x: (x.namespace, x.name))
        return _html(page.render_experiments(views, clock(), notes=source.notes()))

    app.router.add_get("/", index)
    app.router.add_get("/namespaces/{namespace}/releases/{name}", release)
    app.router.add_get("/namespaces/{namespace}/tracks/{name}", track)

    async def features(request: web.Request) -> web.Response:
        ns = request.match_info["namespace"]
        try:
            raw = await source.list_all("experiments")
        except StoplineError as exc:
            return web.json_response({"error": f"cannot read Experiments: {exc}"}, status=502)
        return web.json_response(features_payload(ns, raw))

    app.router.add_get("/experiments", experiments)
    app.router.add_get("/api/features/{namespace}", features)


def features_payload(namespace: str, experiments: list[dict[str, Any]]) -> dict[str, Any]:
    """The GrowthBook SDK payload of every valid Experiment in ``namespace`` (what its ConfigMap publishes).

    A GrowthBook SDK pointed at the controller (``apiHost`` = its HTTP URL, ``clientKey`` = the
    namespace) loads it from ``/api/features/{namespace}``, read only.
    """
    configs = []
    for view in sorted((ExperimentView.from_object(o) for o in experiments), key=lambda x: x.name):
        if view.namespace == namespace and view.spec is not None:
            configs.append(published_config(view.spec, view.status))
    return growthbook_payload(configs)


def register_metrics(app: web.Application, metrics: ControllerMetrics) -> None:
    """``GET /metrics``: the controller's own registry in the Prometheus text format."""

    async def handler(_: web.Request) -> web.Response:
        body, content_type = metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": content_type})

    app.router.add_get("/metrics", handler)
