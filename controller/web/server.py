"""The controller's HTTP endpoint (aiohttp, which kopf already ships): health, push webhook, lock API.

Routes are added by ``register_*`` functions so the status page and /metrics can plug in beside them.
Bound to 127.0.0.1 by default (``STOPLINE_HTTP_HOST``); nothing here shows a secret.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

from controller.models.track import TrackStatus
from controller.track.webhook import TrackTarget, WebhookError, matching, parse_push

log = logging.getLogger("stopline.web")

TargetsFn = Callable[[], Awaitable[Iterable[TrackTarget]]]
WakeFn = Callable[[str, str], Awaitable[None] | None]
TrackStatusFn = Callable[[str, str], Awaitable[dict[str, Any] | None]]

MAX_BODY = 5 * 1024 * 1024
EVENT_HEADERS = ("X-GitHub-Event", "X-Gitea-Event", "X-Gogs-Event", "X-Gitlab-Event")
PUSH_EVENTS = frozenset({"push", "push hook"})


def register_webhook(app: web.Application, targets: TargetsFn, wake: WakeFn) -> None:
    """``POST /webhook``: wake every Track following the pushed repo + branch (signature checked).

    202 when a Track was woken, 200 when none follows that branch (or the event is not a push: ping,
    tag push), 400 for a payload naming no branch or repository, 403 when every matching Track refused
    the signature."""

    async def webhook(request: web.Request) -> web.Response:
        body = await request.read()
        event = next((request.headers[h] for h in EVENT_HEADERS if h in request.headers), None)
        if event is not None and event.strip().lower() not in PUSH_EVENTS:
            # ping (sent when a hook is created), tag pushes, issues...: acknowledged, nothing to wake
            return web.json_response({"ignored": event, "woken": []}, status=200)
        try:
            push = parse_push(body)
        except WebhookError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        woken, refused = matching(push, await targets(), body, dict(request.headers))
        for t in woken:
            result = wake(t.namespace, t.name)
            if inspect.isawaitable(result):
                await result
        log.info("webhook %s@%s woke %d track(s), refused %d", push.repos, push.branch, len(woken), len(refused))
        if refused and not woken:
            return web.json_response({"error": "signature mismatch", "woken": []}, status=403)
        return web.json_response(
            {"branch": push.branch, "woken": [f"{t.namespace}/{t.name}" for t in woken], "refused": len(refused)},
            status=202 if woken else 200,
        )

    app.router.add_post("/webhook", webhook)


def lock_summary(namespace: str, name: str, status: TrackStatus) -> dict[str, Any]:
    """The machine-readable lock state CI checks before merging."""
    lock = status.commit_lock
    push = status.push_lock
    return {
        "track": f"{namespace}/{name}",
        "locked": lock.locked,
        "reason": lock.reason,
        "since": lock.since.isoformat() if lock.since else None,
        "release": lock.release,
        "revision": lock.revision,
        "pushLock": {"held": push.held, "release": push.release},
        "lastGood": status.last_good,
        "lastSeen": status.last_seen,
        "missingReverts": [
            {"revision": m.revision, "release": m.release, "reason": m.reason} for m in status.missing_reverts
        ],
        # Merging is safe only when the line is open and no rolled-back commit is still on the branch.
        "open": not lock.locked and not status.missing_reverts,
    }


def register_lock_api(app: web.Application, track_status: TrackStatusFn) -> None:
    """``GET /api/v1/namespaces/{ns}/tracks/{name}/lock``: 200 when open, 423 (Locked) when locked or a
    rolled-back commit's revert is still missing."""

    async def lock(request: web.Request) -> web.Response:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        obj = await track_status(ns, name)
        if obj is None:
            return web.json_response({"error": f"track {ns}/{name} not found"}, status=404)
        summary = lock_summary(ns, name, TrackStatus.model_validate(obj.get("status") or {}))
        return web.json_response(summary, status=200 if summary["open"] else 423)

    app.router.add_get("/api/v1/namespaces/{namespace}/tracks/{name}/lock", lock)


def base_app() -> web.Application:
    """An application with ``/healthz``."""
    app = web.Application(client_max_size=MAX_BODY)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/healthz", healthz)
    return app


async def start(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve ``app``; the caller keeps the runner and calls ``cleanup()`` at shutdown."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("http endpoint on %s:%d", host, port)
    return runner
