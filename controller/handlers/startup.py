"""Operator startup: settings loaded once, adapters built once, kopf persistence kept out of status."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import kopf
from aiohttp import web

from controller.errors import StoplineError
from controller.kube.client import api_client
from controller.kube.workloadwatch import WorkloadWatch
from controller.metrics import default_metrics
from controller.reconcile.shards import RENEW_INTERVAL, shard_of
from controller.reconcile.supervisor import Run
from controller.settings import Settings
from controller.track.webhook import TrackTarget
from controller.web import routes, server
from controller.web.source import KubePageSource
from controller.wiring import Runtime, build_runtime

log = logging.getLogger("stopline")
#: Set on a Track by a replica that received its push webhook but does not serve it (wakes the one that does).
ANNOTATION_WEBHOOK = "stopline.dev/webhook-received"


def utc_stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    """Build the runtime and keep kopf's bookkeeping in annotations (our status schema is strict)."""
    cfg = Settings.from_env()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="stopline.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="stopline.dev", key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        # "Handler 'release_event' succeeded." for every watch event of every Release on every replica:
        # 97% of a replica's log lines at 2,000 Releases, and CPU on a loop that must stay prompt.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
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
    rt.workload_watch = workload_watch(rt, asyncio.get_running_loop())  # started after the first Lease round
    rt.http = await serve(rt)
    rt.background = [asyncio.create_task(keep_membership(rt), name="stopline-membership")]
    if rt.leases is not None:
        rt.membership.renewer = True
        threading.Thread(target=renew_shards, args=(rt,), name="stopline-renewer", daemon=True).start()
    log.info(
        "stopline started: prometheus=%s repo-cache=%s namespaces=%s selector=%s identity=%s %s",
        cfg.prometheus_url,
        cfg.repo_cache,
        ",".join(cfg.namespaces) or "*",
        cfg.namespace_selector or "-",
        cfg.identity,
        f"shards={cfg.shards} leases={cfg.lease_namespace}/{cfg.lease_name}-shard-*"
        if cfg.leader_election
        else "leader election off",
    )


def workload_watch(rt: Runtime, loop: asyncio.AbstractEventLoop) -> WorkloadWatch:
    """The workload watch feeding ``rt.cluster.watched``: it keeps what this replica serves and wakes the
    Release loops of the namespace a change is in (called from its own threads)."""
    metrics = default_metrics()
    releases = rt.supervisors["releases"]
    assert rt.cluster.watched is not None

    def changed(namespace: str) -> None:
        loop.call_soon_threadsafe(releases.wake_namespace, namespace)

    return WorkloadWatch(
        api_client(pool_size=4, on_request=metrics.kube_request),
        rt.cluster.watched,
        keeps=lambda namespace: kept(rt, namespace),
        changed=changed,
        on_live=metrics.workload_watch_live,
        on_error=metrics.workload_watch_error,
    )


def kept(rt: Runtime, namespace: str) -> bool:
    """Whether the workload watch keeps ``namespace``'s workloads: in scope and selected, and of a shard held
    at the last Lease round (``rt.watch_shards``) — not of the Lease's validity this instant, which can lapse
    between rounds; an event dropped then would leave a stale copy that no re-list ever replaces."""
    if not rt.scope.matches(namespace) or (rt.selected is not None and namespace not in rt.selected):
        return False
    return shard_of(namespace, rt.membership.shards) in rt.watch_shards


def fetcher(rt: Runtime, plural: str) -> Callable[[str, str], Awaitable[dict[str, Any] | None]]:
    """Reads one object of ``plural`` fresh: a supervisor starts a taken-over shard's objects from it
    (it keeps only their names while another replica serves them)."""

    async def fetch(namespace: str, name: str) -> dict[str, Any] | None:
        return await rt.objects.get(plural, namespace, name)

    return fetch


def serves(rt: Runtime, namespace: str) -> bool | None:
    """Whether this replica acts in ``namespace`` now: None outside the configured names/patterns; False
    when the namespace's labels do not match the selector or another replica holds its shard."""
    if not rt.scope.matches(namespace):
        return None
    if rt.selected is not None and namespace not in rt.selected:
        return False
    return rt.membership.owns(namespace)


def renew_shards(rt: Runtime) -> None:
    """The renewer thread: the held shard Leases renewed every RENEW_INTERVAL, whatever the event loop does
    (taking, giving up and reading the Leases stay in the rounds on the loop)."""
    assert rt.leases is not None
    write = rt.leases.renew_blocking
    while not rt.renewer_stop.wait(RENEW_INTERVAL.total_seconds()):
        try:
            rt.membership.renew_blocking(write)
        except Exception:  # never end renewing silently
            log.exception("shard Lease renewal failed")


#: The workload watch keeps a shard's workloads for this many Lease rounds (30 s) after the shard was last
#: held: a momentary lapse under load then costs no re-list of every workload (and no GET per tick until
#: the shard is back), and a shard that really moved is forgotten half a minute later.
WATCH_KEEP_ROUNDS = 15


async def keep_membership(rt: Runtime) -> None:
    """Renew/take the shard Leases and refresh the selected namespaces every round; resync the loops."""
    metrics = default_metrics()
    served: tuple[frozenset[int], frozenset[str] | None] | None = None
    recent: collections.deque[frozenset[int]] = collections.deque(maxlen=WATCH_KEEP_ROUNDS)
    while True:
        try:
            if rt.settings.namespace_selector:
                try:
                    rt.selected = await rt.objects.namespaces(rt.settings.namespace_selector)
                except StoplineError as exc:
                    log.warning("namespaces matching %s unreadable: %s", rt.settings.namespace_selector, exc)
            await rt.membership.round()
            metrics.shards_held.set(len(rt.membership.held()))
            recent.append(rt.membership.held())
            rt.watch_shards = frozenset().union(*recent)
            now = (rt.watch_shards, None if rt.selected is None else frozenset(rt.selected))
            if rt.workload_watch is not None and served is None:
                rt.workload_watch.start()  # its first LIST keeps what the first round says is served
            elif rt.workload_watch is not None and now != served:
                rt.workload_watch.resync()  # keep what is served now, from memory at once
            served = now
            for sup in rt.supervisors.values():
                sup.resync()
        except Exception:  # never end leadership silently
            log.exception("membership round failed")
        await asyncio.sleep(RENEW_INTERVAL.total_seconds())


@kopf.on.cleanup()
async def shutdown(memo: Any, **_: Any) -> None:
    """Stop every loop (each persists nothing more once stopped), then the HTTP endpoint."""
    rt = runtime(memo)
    for task in rt.background:
        task.cancel()
    rt.renewer_stop.set()
    if rt.workload_watch is not None:
        rt.workload_watch.stop()
    await asyncio.gather(*(sup.shutdown(grace=8.0) for sup in rt.supervisors.values()))
    await rt.membership.release_all()  # after the loops stopped: a standby takes over at once
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

    async def wake(ns: str, name: str) -> None:
        if rt.supervisors["tracks"].wake(ns, name):
            return
        # Another replica serves this Track: an annotation change reaches it through its watch at once.
        try:
            await rt.objects.patch("tracks", ns, name, {"metadata": {"annotations": {ANNOTATION_WEBHOOK: utc_stamp()}}})
        except StoplineError as exc:
            log.warning("track %s/%s: could not pass the push webhook on: %s", ns, name, exc)

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
    roll back and push a revert in between. Answered from the workload watch's copy of the namespace (its
    deletion mark arrives as an event, and wakes the loops there), else read from the API server."""
    watched = rt.cluster.watched

    async def may_act() -> bool:
        if not serves(rt, run.namespace):  # its shard moved to another replica (or our Lease lapsed)
            log.warning("%s/%s: not acting: namespace no longer served by this replica", run.namespace, run.name)
            run.stop(deleted=False)
            return False
        gone = watched.namespace_gone(run.namespace) if watched is not None else None  # from the watch
        if gone is None:  # the watch cannot tell (not live, or the namespace is new to it): ask
            try:
                gone = await rt.objects.namespace_gone(run.namespace)
            except StoplineError as exc:  # cannot tell: the action itself meets the same API trouble
                log.warning("cannot read namespace %s: %s", run.namespace, exc)
                return True
        if gone:
            run.stop(deleted=True)
        return not gone

    return may_act
