"""Operator startup: settings loaded once, adapters built once, kopf persistence kept out of status."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import kopf
from aiohttp import web

from controller.errors import StoplineError
from controller.kube.client import api_client
from controller.metrics import default_metrics
from controller.reconcile.supervisor import Run
from controller.settings import Settings
from controller.track.webhook import TrackTarget
from controller.web import routes, server
from controller.web.source import KubePageSource
from controller.wiring import Runtime, build_runtime

log = logging.getLogger("stopline")


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    """Build the runtime and keep kopf's bookkeeping in annotations (our status schema is strict)."""
    cfg = Settings.from_env()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="stopline.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="stopline.dev", key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=cfg.max_threads, thread_name_prefix="stopline-io")
    )
    rt = build_runtime(cfg)
    from controller.handlers import experiment, release, track  # the kinds' supervisors

    rt.supervisors = {
        "releases": release.supervisor(rt),
        "tracks": track.supervisor(rt),
        "experiments": experiment.supervisor(rt),
    }
    memo.runtime = rt
    rt.http = await serve(rt)
    log.info("stopline started: prometheus=%s repo-cache=%s", cfg.prometheus_url, cfg.repo_cache)


@kopf.on.cleanup()
async def shutdown(memo: Any, **_: Any) -> None:
    """Stop every loop (each persists nothing more once stopped), then the HTTP endpoint."""
    rt = runtime(memo)
    await asyncio.gather(*(sup.shutdown(grace=8.0) for sup in rt.supervisors.values()))
    if rt.http is not None:
        await rt.http.cleanup()


async def serve(rt: Runtime) -> web.AppRunner:
    """The HTTP endpoint: health, push webhook, lock API, the push status page and /metrics."""
    app = server.base_app()

    async def targets() -> list[TrackTarget]:
        out: list[TrackTarget] = []
        for (ns, name), spec in list(rt.tracks.items()):
            secret = rt.settings.webhook_secret
            if spec.webhook is not None and spec.webhook.secret_ref is not None:
                try:
                    data = await rt.objects.secret_data(ns, spec.webhook.secret_ref.name)
                    secret = data.get("secret", b"").decode() or secret
                except StoplineError as exc:
                    log.warning("track %s/%s: webhook secret unreadable: %s", ns, name, exc)
                    secret = "\0unreadable"  # never matches: refuse rather than accept unsigned
            out.append(TrackTarget(ns, name, spec.source.repo, spec.source.branch, secret))
        return out

    def wake(ns: str, name: str) -> None:
        rt.supervisors["tracks"].wake(ns, name)

    async def track_status(ns: str, name: str) -> dict[str, Any] | None:
        return await rt.objects.get("tracks", ns, name)

    server.register_webhook(app, targets, wake)
    server.register_lock_api(app, track_status)

    def watched() -> list[str]:  # where the page lists when listing cluster-wide is denied
        return sorted({ns for ns, _ in rt.tracks})

    routes.register_status_page(app, KubePageSource(api_client(pool_size=4), watched))
    routes.register_metrics(app, default_metrics())
    return await server.start(app, rt.settings.http_host, rt.settings.http_port)


def runtime(memo: Any) -> Runtime:
    """The runtime built at startup."""
    rt: Runtime = memo.runtime
    return rt


def namespace_guard(rt: Runtime, run: Run) -> Callable[[], Awaitable[bool]]:
    """Asked before every side effect: False (and the loop stops) once the object's namespace is being deleted.

    Deleting a namespace marks it first and deletes its objects later: without this, a Release could still
    roll back and push a revert in between."""

    async def may_act() -> bool:
        try:
            gone = await rt.objects.namespace_gone(run.namespace)
        except StoplineError as exc:  # cannot tell: the action itself meets the same API trouble
            log.warning("cannot read namespace %s: %s", run.namespace, exc)
            return True
        if gone:
            run.stop(deleted=True)
        return not gone

    return may_act
