"""stopline's own workload watch: one paged LIST and then a WATCH per workload kind, cluster-wide, of the
objects stopline has applied (label ``stopline.dev/app``), keeping only what this replica serves — and, the
same way, of the namespaces themselves (all of them listed, only the served ones kept): whether a namespace
is being deleted is then known from memory before each side effect (it was a LIST each time).

Why not a kopf handler (as before): kopf takes one unpaged LIST of every Deployment in the cluster, runs a
worker task per object and keeps a memory of each, on every replica — with 2,000 namespaces on 4 shards
that alone held each replica near 300 MiB. Here a page of at most :data:`PAGE_SIZE` objects is parsed at a
time, another shard's object is dropped as soon as its namespace is read, and nothing is kept per object
but the trimmed copy of a served one (``controller.kube.watched``).

The informer contract, with the failures spelled out:
* LIST (paged, ``limit``/``continue``) → replace the kind's copies → WATCH from the list's resourceVersion
  with bookmarks; a watch ending after its ``timeoutSeconds`` resumes from the last resourceVersion seen.
* 410 Gone (the resourceVersion or a continue token expired) → LIST again at once.
* Any other failure — refused, reset, a hung server (no byte for :data:`READ_TIMEOUT`), 5xx, 403 — keeps the
  copies in use for :data:`STALE_GRACE` (as a client-go informer serves its store), then marks the kind not
  live, so every read of it goes to the API server (polling); the watch retries
  with backoff (0.5 s doubling to 30 s), logging a WARNING and counting it in
  ``stopline_workload_watch_errors_total{kind,reason}``; ``stopline_workload_watch_live{kind}`` says which
  kinds are served from the watch.
* :meth:`WorkloadWatch.resync` (this replica's shards changed) ends the current streams and lists again, so
  a namespace it just took over is served from memory at once and one it gave away is forgotten.

Blocking, on one thread per kind of its own (never the shared I/O pool): a stream that waits 60 s for its
next event must not hold a thread other calls need.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.kube.watched import NAMESPACE, WATCHED_KINDS, WORKLOAD_KINDS, WorkloadCache
from controller.release.assign import LABEL_APP

log = logging.getLogger("stopline.watch")

#: Objects per LIST page: what is parsed (and briefly held) at once.
PAGE_SIZE = 250
#: A watch request's server-side ``timeoutSeconds``; it is resumed from its last resourceVersion.
WATCH_SECONDS = 60
#: No byte — event or bookmark — for this long: the stream (or the server) is hung; start again.
READ_TIMEOUT = 90.0
CONNECT_TIMEOUT = 10.0
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0
#: After the watch breaks, its copies (current until then) are still used this long while it retries.
STALE_GRACE = 30.0

PATHS = {kind: f"/apis/apps/v1/{kind.lower()}s" for kind in WORKLOAD_KINDS} | {NAMESPACE: "/api/v1/namespaces"}


class Gone(Exception):
    """410: the resourceVersion (or continue token) is too old — list again."""


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """A chunked watch response as its newline-delimited JSON lines."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from (line for line in complete if line.strip())
    if pending.strip():
        yield pending


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return str(exc.status)
    return type(exc).__name__


def _detail(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        try:
            message = json.loads(exc.body or "{}").get("message")
        except (ValueError, AttributeError):
            message = None
        return str(message or exc.reason or "")[:200]
    return (str(exc).splitlines() or [""])[0][:200]


class WorkloadWatch:
    """Feeds ``cache`` with the served workloads; ``keeps(namespace)`` says whether this replica serves a
    namespace now, ``changed(namespace)`` is told (from the watch thread) of every kept change."""

    def __init__(
        self,
        api_client: client.ApiClient,
        cache: WorkloadCache,
        *,
        keeps: Callable[[str], bool],
        changed: Callable[[str], None],
        kinds: Sequence[str] = WATCHED_KINDS,
        selector: str = LABEL_APP,
        page_size: int = PAGE_SIZE,
        watch_seconds: int = WATCH_SECONDS,
        read_timeout: float = READ_TIMEOUT,
        on_live: Callable[[str, bool], None] | None = None,
        on_error: Callable[[str, str], None] | None = None,
        stale_grace: float = STALE_GRACE,
    ) -> None:
        self._api: Any = api_client
        self.cache = cache
        self.keeps = keeps
        self.changed = changed
        self.kinds = tuple(kinds)
        self.selector = selector
        self.page_size = page_size
        self.watch_seconds = watch_seconds
        self.read_timeout = read_timeout
        self.stale_grace = stale_grace
        self.on_live = on_live or (lambda _kind, _live: None)
        self.on_error = on_error or (lambda _kind, _reason: None)
        self._stopped = threading.Event()
        self._resync = {kind: threading.Event() for kind in self.kinds}
        self._streams: dict[str, Any] = {}  # kind → the urllib3 response being read (to end it from outside)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._live: dict[str, bool] = {}
        self._down_since: dict[str, float] = {}

    # ---------------------------------------------------------------- control
    def start(self) -> None:
        for kind in self.kinds:
            thread = threading.Thread(target=self._run, args=(kind,), name=f"stopline-watch-{kind}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def resync(self) -> None:
        """List every kind again now (the served namespaces changed)."""
        for kind in self.kinds:
            self._resync[kind].set()
        self._end_streams()

    def stop(self, timeout: float = 2.0) -> None:
        self._stopped.set()
        self._end_streams()
        for thread in self._threads:
            thread.join(timeout)

    def _end_streams(self) -> None:
        with self._lock:
            streams = list(self._streams.values())
        for stream in streams:
            with contextlib.suppress(Exception):  # already closed
                stream.shutdown()  # unblocks the thread reading it

    # ---------------------------------------------------------------- the loop
    def _set_live(self, kind: str, live: bool) -> None:
        if self._live.get(kind) != live:
            self._live[kind] = live
            self.on_live(kind, live)
            if live and kind in self._down_since:
                log.warning(
                    "workload watch of %s is back after %.1f s", kind, time.monotonic() - self._down_since.pop(kind)
                )
            elif not live:
                self._down_since[kind] = time.monotonic()

    def _run(self, kind: str) -> None:
        delay = BACKOFF_FIRST
        while not self._stopped.is_set():
            try:
                self._resync[kind].clear()
                version = self._list(kind)
                self._set_live(kind, True)
                delay = BACKOFF_FIRST
                while not self._stopped.is_set() and not self._resync[kind].is_set():
                    version = self._watch(kind, version)
            except Gone:
                log.info("workload watch of %s: resourceVersion expired, listing again", kind)
            except Exception as exc:
                if self._stopped.is_set():
                    break
                if self._resync[kind].is_set():  # the stream was ended on purpose: list again at once
                    continue
                self.cache.failing(kind, self.stale_grace)
                self._set_live(kind, False)
                self.on_error(kind, _reason(exc))
                log.warning(
                    "workload watch of %s failed (%s: %s); reading %s from the API server until it is back, "
                    "retrying in %.1f s",
                    kind,
                    _reason(exc),
                    _detail(exc),
                    kind,
                    delay,
                )
                if self._stopped.wait(delay):
                    break
                delay = min(delay * 2, BACKOFF_MAX)

    def _request(self, kind: str, query: Mapping[str, str | int], *, stream: bool) -> Any:
        # Workloads: only those stopline applied. Namespaces: every one (which are served is decided here).
        selector = [("labelSelector", self.selector)] if kind != NAMESPACE else []
        params = [*selector, *((k, str(v)) for k, v in query.items())]
        request = self._api.param_serialize(
            method="GET",
            resource_path=PATHS[kind],
            query_params=params,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        method, url, headers, _body, _post = request
        resp = self._api.call_api(
            method, url, header_params=headers, _request_timeout=(CONNECT_TIMEOUT, self.read_timeout)
        )
        if not 200 <= resp.status <= 299:
            body = resp.read()
            if resp.status == 410:
                raise Gone(kind)
            raise ApiException(status=resp.status, reason=resp.reason, body=(body or b"").decode(errors="replace"))
        if stream:
            return resp.response  # urllib3, not read yet
        return json.loads(resp.read())

    def _keep(self, kind: str, body: Mapping[str, Any]) -> bool:
        meta = body.get("metadata") or {}
        namespace = meta.get("name") if kind == NAMESPACE else meta.get("namespace")
        return bool(namespace) and self.keeps(str(namespace))

    def _list(self, kind: str) -> str:
        """Page through the kind, keep the served objects, replace the cache's copies; the list's version."""
        kept: list[Mapping[str, Any]] = []
        token = ""
        while True:
            query: dict[str, str | int] = {"limit": self.page_size}
            if token:
                query["continue"] = token
            page = self._request(kind, query, stream=False)
            for item in page.get("items") or []:
                item.setdefault("kind", kind)  # LIST items carry no kind
                if self._keep(kind, item):
                    kept.append(item)
            meta = page.get("metadata") or {}
            token = str(meta.get("continue") or "")
            if not token:
                break
        self.cache.replace(kind, kept)
        return str(meta.get("resourceVersion") or "")

    def _watch(self, kind: str, version: str) -> str:
        """One watch request from ``version``; the last resourceVersion seen when it ends normally."""
        query: dict[str, str | int] = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": self.watch_seconds,
        }
        if version:
            query["resourceVersion"] = version
        stream = self._request(kind, query, stream=True)
        with self._lock:
            self._streams[kind] = stream
        try:
            if self._resync[kind].is_set() or self._stopped.is_set():
                return version
            for line in _lines(stream.stream(amt=None, decode_content=True)):
                event = json.loads(line)
                type_, body = event.get("type"), event.get("object") or {}
                if type_ == "ERROR":
                    if body.get("code") == 410:
                        raise Gone(kind)
                    raise ApiException(status=body.get("code") or 500, reason=str(body.get("message") or "watch error"))
                version = str((body.get("metadata") or {}).get("resourceVersion") or version)
                if type_ == "BOOKMARK" or not self._keep(kind, body):
                    continue
                body.setdefault("kind", kind)
                where = self.cache.on_event(str(type_), body)
                if where is not None:
                    self.changed(where[0])
        except BaseException:
            stream.close()  # ended under it (resync, stop, a broken or hung stream): not reusable
            raise
        else:
            stream.release_conn()
        finally:
            with self._lock:
                self._streams.pop(kind, None)
        return version
