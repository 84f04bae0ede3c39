"""The workload watch through the real kubernetes ApiClient, against a loopback fake API server: paged
LIST, the watch stream (bookmarks, 410, ERROR events), failures degrading to API reads, resync, a hung
stream."""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client

from controller.kube.watched import WorkloadCache
from controller.kube.workloadwatch import WorkloadWatch


def deployment(namespace: str, name: str, generation: int = 1, version: int = 1) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "generation": generation,
            "resourceVersion": str(version),
            "managedFields": [{"manager": "x"}],
        },
        "spec": {"replicas": 1},
        "status": {"observedGeneration": generation, "availableReplicas": 1},
    }


class FakeApi:
    """Deployments only; LIST pages by offset, WATCH serves queued lines until its timeout."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.version = "100"
        self.requests: list[dict[str, str]] = []
        self.events: queue.Queue[bytes | None] = queue.Queue()  # None: end this watch request now
        self.fail_lists = 0  # answer the next N LISTs with 500
        self.hang = threading.Event()  # watch requests send nothing (a hung server)

    def wait(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"condition not reached; requests: {self.requests}"
            time.sleep(0.01)

    def send(self, type_: str, obj: dict[str, Any]) -> None:
        self.events.put(json.dumps({"type": type_, "object": obj}).encode() + b"\n")

    def watch_requests(self) -> list[dict[str, str]]:
        return [q for q in self.requests if q.get("watch") == "true"]


@pytest.fixture
def api() -> Iterator[tuple[FakeApi, client.ApiClient]]:
    fake = FakeApi()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            url = urllib.parse.urlparse(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            fake.requests.append({"path": url.path, **query})
            if query.get("watch") == "true":
                self._watch(float(query.get("timeoutSeconds", "60")))
            else:
                self._list(query)

        def _json(self, status: int, doc: dict[str, Any]) -> None:
            out = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def _list(self, query: dict[str, str]) -> None:
            if fake.fail_lists:
                fake.fail_lists -= 1
                self._json(500, {"kind": "Status", "code": 500, "message": "etcd is sad"})
                return
            start = int(query.get("continue") or 0)
            limit = int(query.get("limit") or 10**9)
            page = fake.items[start : start + limit]  # LIST items carry no kind
            token = str(start + limit) if start + limit < len(fake.items) else ""
            self._json(
                200,
                {
                    "kind": "DeploymentList",
                    "metadata": {"resourceVersion": fake.version, "continue": token},
                    "items": page,
                },
            )

        def _watch(self, seconds: float) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            deadline = time.monotonic() + seconds
            try:
                while time.monotonic() < deadline:
                    if fake.hang.is_set():
                        time.sleep(0.05)
                        continue
                    try:
                        line = fake.events.get(timeout=0.05)
                    except queue.Empty:
                        continue
                    if line is None:
                        break
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except OSError:  # the client went away
                pass
            self.close_connection = True

        def log_message(self, *_: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = client.Configuration()
    config.host = f"http://127.0.0.1:{server.server_address[1]}"
    api_client = client.ApiClient(config)
    try:
        yield fake, api_client
    finally:
        server.shutdown()
        server.server_close()
        api_client.close()


class Run:
    def __init__(self, api_client: client.ApiClient, keep: set[str], **kwargs: Any) -> None:
        self.cache = WorkloadCache()
        self.keep = keep
        self.changed: list[str] = []
        self.live: list[tuple[str, bool]] = []
        self.errors: list[tuple[str, str]] = []
        self.watch = WorkloadWatch(
            api_client,
            self.cache,
            keeps=lambda ns: ns in self.keep,
            changed=self.changed.append,
            kinds=kwargs.pop("kinds", ("Deployment",)),
            on_live=lambda kind, live: self.live.append((kind, live)),
            on_error=lambda kind, reason: self.errors.append((kind, reason)),
            **kwargs,
        )

    def __enter__(self) -> Run:
        self.watch.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.watch.stop()


def test_lists_in_pages_keeps_only_served_namespaces_and_selects_stopline_objects(
    api: tuple[FakeApi, client.ApiClient],
) -> None:
    fake, api_client = api
    fake.items = [deployment("mine" if i % 3 == 0 else "theirs", f"d{i}") for i in range(600)]
    with Run(api_client, {"mine"}, page_size=250) as run:
        fake.wait(lambda: run.cache.live("Deployment") and bool(fake.watch_requests()))
        assert len(run.cache) == 200
        got = run.cache.get("mine", "Deployment/d0")
        assert got is not None and got["kind"] == "Deployment" and "managedFields" not in got["metadata"]
        assert run.cache.get("theirs", "Deployment/d1") is None
        lists = [q for q in fake.requests if q.get("watch") != "true"]
        assert [q.get("continue", "") for q in lists] == ["", "250", "500"]
        assert {q["labelSelector"] for q in fake.requests} == {"stopline.dev/app"}
        assert {q["path"] for q in fake.requests} == {"/apis/apps/v1/deployments"}
        watch = fake.watch_requests()[0]
        assert (watch["resourceVersion"], watch["allowWatchBookmarks"]) == ("100", "true")
        assert run.live == [("Deployment", True)] and run.errors == []


def test_events_update_the_served_copies_wake_their_namespace_and_resume_from_the_last_version(
    api: tuple[FakeApi, client.ApiClient],
) -> None:
    fake, api_client = api
    fake.items = [deployment("mine", "web")]
    with Run(api_client, {"mine"}, watch_seconds=30) as run:
        fake.wait(lambda: bool(fake.watch_requests()))
        fake.send("MODIFIED", {**deployment("mine", "web", generation=2, version=101), "kind": "Deployment"})
        fake.send("MODIFIED", {**deployment("theirs", "x", version=102), "kind": "Deployment"})
        fake.send("BOOKMARK", {"kind": "Deployment", "metadata": {"resourceVersion": "150"}})
        fake.wait(lambda: (run.cache.get("mine", "web") or {}).get("metadata", {}).get("generation") == 2)
        fake.events.put(None)  # the server ends this watch (its timeout): resumed from the bookmark
        fake.wait(lambda: len(fake.watch_requests()) == 2)
        assert fake.watch_requests()[1]["resourceVersion"] == "150"
        assert run.changed == ["mine"], "another shard's change neither kept nor waking"
        assert run.cache.get("theirs", "Deployment/x") is None
        fake.send("DELETED", {**deployment("mine", "web", generation=2, version=151), "kind": "Deployment"})
        fake.wait(lambda: run.cache.get("mine", "web") is None)
        assert run.changed == ["mine", "mine"]
        assert len([q for q in fake.requests if q.get("watch") != "true"]) == 1, "no relist on a normal end"


def test_an_expired_version_lists_again(api: tuple[FakeApi, client.ApiClient]) -> None:
    fake, api_client = api
    fake.items = [deployment("mine", "web")]
    with Run(api_client, {"mine"}, watch_seconds=30) as run:
        fake.wait(lambda: bool(fake.watch_requests()))
        fake.items = [deployment("mine", "api", version=300)]  # web deleted while the stream was behind
        fake.version = "300"
        fake.send("ERROR", {"kind": "Status", "code": 410, "message": "too old resource version"})
        fake.wait(lambda: len(fake.watch_requests()) == 2)
        assert fake.watch_requests()[1]["resourceVersion"] == "300"
        assert run.cache.get("mine", "web") is None and run.cache.get("mine", "api") is not None
        assert run.errors == [], "410 is routine, not a failure"


def test_a_failing_api_server_degrades_to_reads_and_recovers_with_backoff(
    api: tuple[FakeApi, client.ApiClient], caplog: pytest.LogCaptureFixture
) -> None:
    fake, api_client = api
    fake.items = [deployment("mine", "web")]
    with Run(api_client, {"mine"}, watch_seconds=30, stale_grace=0.4) as run:
        fake.wait(lambda: bool(fake.watch_requests()))
        assert run.cache.get("mine", "web") is not None
        fake.fail_lists = 2
        fake.send("ERROR", {"kind": "Status", "code": 500, "message": "internal error"})
        fake.wait(lambda: ("Deployment", False) in run.live)
        assert run.cache.get("mine", "web") is not None, "copies current until the break serve the grace"
        fake.wait(lambda: run.cache.get("mine", "web") is None, timeout=2)  # past it: read from the API
        fake.wait(lambda: len(fake.watch_requests()) == 2, timeout=10)  # 0.5 s, 1 s, 2 s backoff
        assert run.cache.get("mine", "web") is not None
        assert [r for _k, r in run.errors] == ["500", "500", "500"]
        assert run.live == [("Deployment", True), ("Deployment", False), ("Deployment", True)]
    assert "workload watch of Deployment failed (500" in caplog.text


def test_a_hung_stream_is_noticed_by_its_read_timeout(api: tuple[FakeApi, client.ApiClient]) -> None:
    fake, api_client = api
    fake.items = [deployment("mine", "web")]
    with Run(api_client, {"mine"}, watch_seconds=30, read_timeout=0.5) as run:
        fake.wait(lambda: bool(fake.watch_requests()))
        fake.hang.set()
        fake.wait(lambda: ("Deployment", False) in run.live, timeout=5)
        fake.hang.clear()
        fake.wait(lambda: len(fake.watch_requests()) >= 2 and run.cache.live("Deployment"), timeout=10)
        assert run.errors and run.errors[0][0] == "Deployment"


def test_resync_serves_a_namespace_just_taken_over_without_waiting_for_the_stream(
    api: tuple[FakeApi, client.ApiClient],
) -> None:
    fake, api_client = api
    fake.items = [deployment("mine", "web"), deployment("theirs", "api")]
    with Run(api_client, {"mine"}, watch_seconds=30) as run:
        fake.wait(lambda: bool(fake.watch_requests()))
        assert run.cache.get("theirs", "api") is None
        run.keep.clear()
        run.keep.add("theirs")  # the shard changed hands
        started = time.monotonic()
        run.watch.resync()
        fake.wait(lambda: run.cache.get("theirs", "api") is not None and run.cache.get("mine", "web") is None)
        assert time.monotonic() - started < 2, "a stream held open for 30 s was ended at once"
        fake.wait(lambda: len(fake.watch_requests()) == 2)
        assert run.errors == [] and ("Deployment", False) not in run.live


def namespace(name: str, version: int = 1, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": f"uid-{name}", "resourceVersion": str(version)}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    phase = "Terminating" if deleting else "Active"
    return {"metadata": meta, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": phase}}


def test_namespaces_are_watched_unselected_and_their_deletion_is_known_from_memory(
    api: tuple[FakeApi, client.ApiClient],
) -> None:
    fake, api_client = api
    fake.items = [namespace("mine"), namespace("theirs"), namespace("other")]
    with Run(api_client, {"mine", "other"}, kinds=("Namespace",), watch_seconds=30) as run:
        fake.wait(lambda: run.cache.live("Namespace") and bool(fake.watch_requests()))
        assert {q["path"] for q in fake.requests} == {"/api/v1/namespaces"}
        assert all("labelSelector" not in q for q in fake.requests)  # namespaces carry no stopline label
        assert len(run.cache) == 2  # another shard's namespace is not kept
        assert (run.cache.namespace_gone("mine"), run.cache.namespace_gone("theirs")) == (False, None)
        fake.send("MODIFIED", {**namespace("mine", version=101, deleting=True), "kind": "Namespace"})
        fake.wait(lambda: run.cache.namespace_gone("mine") is True)
        assert run.changed == ["mine"]  # its loops are woken, so they stop at their next side effect
        fake.send("DELETED", {**namespace("other", version=102), "kind": "Namespace"})
        fake.wait(lambda: run.cache.namespace_gone("other") is True)
        fake.send("ADDED", {**namespace("other", version=103), "kind": "Namespace"})  # created again
        fake.wait(lambda: run.cache.namespace_gone("other") is False)
