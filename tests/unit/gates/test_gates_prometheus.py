"""PrometheusProvider against a loopback HTTP server that plays Prometheus' /api/v1/query."""

from __future__ import annotations

import asyncio
import json
import math
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from controller.errors import MetricsError
from controller.gates.evaluate import judge
from controller.gates.providers.prometheus import PrometheusProvider
from controller.gates.providers.promql import PART_LABEL
from controller.models.release import Gate

pytestmark = pytest.mark.timeout(30)

T = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
ALIGNED = re.compile(
    r'^label_replace\(\((.*)\), "stopline_part", "value", "", ""\) or '
    r'label_replace\(max\(timestamp\((.*)\)\), "stopline_part", "ts", "", ""\)$'
)


def success(result_type: str, result: Any) -> tuple[int, bytes]:
    return 200, json.dumps({"status": "success", "data": {"resultType": result_type, "result": result}}).encode()


def vector(*values: str, label: str = "pod") -> list[dict[str, Any]]:
    return [{"metric": {label: f"p{i}"}, "value": [1700000000.0, v]} for i, v in enumerate(values)]


@dataclass
class FakePrometheus:
    """Answers are looked up by PromQL text; every request is recorded. ``hold`` blocks answers until set."""

    answers: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)  # plain query texts (an aligned request counts as its own)
    requests: list[str] = field(default_factory=list)  # the texts as sent
    sample_at: float | None = None  # the newest sample time an aligned request reports (None: no series)
    hold: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""
    ports: set[int] = field(default_factory=set)  # client ports seen: one per connection the provider opened

    def __post_init__(self) -> None:
        self.hold.set()

    def aligned_answer(self, status: int, body: bytes) -> tuple[int, bytes]:
        """What Prometheus answers to the query rewritten by ``with_sample_time``."""
        if status != 200:
            return status, body
        try:
            doc = json.loads(body)
            result_type = doc["data"]["resultType"]
        except (ValueError, KeyError):
            return status, body  # not a query answer (a proxy's page): as it is
        if result_type != "vector":
            return 400, json.dumps({"status": "error", "errorType": "bad_data", "error": "expected vector"}).encode()
        own = [{**r, "metric": {**r["metric"], PART_LABEL: "value"}} for r in doc["data"]["result"]]
        if self.sample_at is not None:
            own.append({"metric": {PART_LABEL: "ts"}, "value": [1700000000.0, str(self.sample_at)]})
        return success("vector", own)

    def count(self, query: str) -> int:
        with self.lock:
            return self.seen.count(query)


@pytest.fixture
def prom() -> Iterator[FakePrometheus]:
    fake = FakePrometheus()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Prometheus does

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            sent = parse_qs(parts.query).get("query", [""])[0]
            aligned = ALIGNED.match(sent)
            query = aligned.group(1) if aligned else sent
            with fake.lock:
                fake.seen.append(query)
                fake.requests.append(sent)
                fake.ports.add(self.client_address[1])
            fake.hold.wait(timeout=20)
            status, body = fake.answers.get(query, success("vector", []))
            if aligned:
                status, body = fake.aligned_answer(status, body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield fake
    finally:
        fake.hold.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def provider(**kwargs: Any) -> PrometheusProvider:
    return PrometheusProvider(clock=lambda: T, **kwargs)


async def test_as_many_connections_are_kept_as_threads_may_read_at_once(prom: FakePrometheus) -> None:
    """requests keeps 10 connections per host: with more readers at once it would drop the rest and
    open new ones on every round (urllib3's "Connection pool is full"). The queries' own threads all
    read at once, whatever the loop's default executor is doing."""
    readers = 16
    p = provider(threads=readers, max_age=0.0)
    for round_ in range(3):
        prom.hold.clear()
        queries = [f'up{{r="{round_}",i="{i}"}}' for i in range(readers)]
        reads = asyncio.gather(*(p.query(prom.url, q) for q in queries))
        for q in queries:  # every reader is in flight at once
            await _wait_for_request(prom, q)
        prom.hold.set()
        await reads
    assert len(prom.ports) == readers, "each connection was reused, none dropped and reopened"


@pytest.mark.parametrize(
    ("answer", "value", "error"),
    [
        (success("scalar", [1700000000.0, "4.13"]), 4.13, None),
        (success("vector", vector("7.25")), 7.25, None),
        (success("vector", vector("+Inf")), math.inf, None),
        (success("vector", []), None, None),
        (success("vector", vector("1", "2")), None, "query returned 2 series; aggregate it to one (e.g. sum/max/avg)"),
        (success("matrix", [{"metric": {}, "values": [[1, "1"]]}]), None, "query returned a range vector"),
        (success("string", [1700000000.0, "hello"]), None, "not a number: 'hello'"),
    ],
    ids=["scalar", "vector", "inf", "empty", "two-series", "matrix", "string"],
)
async def test_parse(prom: FakePrometheus, answer: tuple[int, bytes], value: float | None, error: str | None) -> None:
    prom.answers["q"] = answer
    m = await provider().query(prom.url, "q")
    assert (m.value, m.at, m.invalid_query) == (value, T, False)
    assert (m.error or "").startswith(error or "")
    assert (m.error is None) == (error is None)


async def test_nan_is_read_and_judged_inconclusive(prom: FakePrometheus) -> None:
    prom.answers["q"] = success("vector", vector("NaN"))
    m = await provider().query(prom.url, "q")
    assert m.value is not None and math.isnan(m.value)
    assert not m.usable
    assert judge(Gate(name="g", query="q", max=6), None, m).verdict == "Inconclusive"


@pytest.mark.parametrize(
    ("status", "body", "invalid"),
    [
        (400, b'{"status":"error","errorType":"bad_data","error":"parse error"}', True),
        (422, b'{"status":"error","errorType":"execution","error":"many-to-many matching"}', True),
        (500, b"internal error after 400 ms", False),  # a 500 that mentions "400" is still not the query's fault
        (503, b'{"status":"error","errorType":"timeout","error":"query timed out"}', False),
    ],
    ids=["400", "422", "500", "503"],
)
async def test_http_errors(prom: FakePrometheus, status: int, body: bytes, invalid: bool) -> None:
    prom.answers["q"] = (status, body)
    m = await provider().query(prom.url, "q")
    assert m.value is None
    assert m.invalid_query is invalid
    assert (m.error or "").startswith(f"HTTP Status Code {status}")
    verdict = judge(Gate(name="g", query="q", max=6), None, m).verdict
    assert verdict == ("Error" if invalid else "Inconclusive")


async def test_a_200_that_is_not_a_query_answer_is_an_error_reading(prom: FakePrometheus) -> None:
    prom.answers["html"] = (200, b"<html>login</html>")
    prom.answers["json"] = (200, b'{"status": "success"}')
    p = provider()
    for query in ("html", "json"):
        m = await p.query(prom.url, query)
        assert (m.value, m.invalid_query) == (None, False)
        assert (m.error or "").startswith("unexpected answer from prometheus")
    with pytest.raises(MetricsError, match="unexpected answer from prometheus"):
        await p.query_by(prom.url, "json", "branch")


async def test_refused_connection_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        m = await provider().query(f"http://127.0.0.1:{port}", "q")
    assert m.error == "prometheus unreachable: ConnectionError"
    assert not m.invalid_query


async def test_server_that_never_answers_times_out() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)  # accepts handshakes, never reads or answers
        started = time.monotonic()
        m = await provider(timeout=1.0).query(f"http://127.0.0.1:{s.getsockname()[1]}", "q")
        elapsed = time.monotonic() - started
    assert m.error == "prometheus did not answer within 1s"
    assert 1.0 <= elapsed < 5.0


async def _wait_for_request(prom: FakePrometheus, query: str, n: int = 1) -> None:
    deadline = time.monotonic() + 10
    while prom.count(query) < n:
        assert time.monotonic() < deadline, f"Prometheus saw {prom.count(query)} requests for {query!r}, not {n}"
        await asyncio.sleep(0.01)


async def test_concurrent_identical_queries_send_one_request(prom: FakePrometheus) -> None:
    prom.answers["up"] = success("vector", vector("3"))
    prom.answers["other"] = success("vector", vector("5"))
    prom.hold.clear()
    p = provider()
    same = [asyncio.create_task(p.query(prom.url, "up")) for _ in range(20)]
    different = asyncio.create_task(p.query(prom.url, "other"))
    await _wait_for_request(prom, "up")
    await _wait_for_request(prom, "other")
    prom.hold.set()

    results = await asyncio.gather(*same)
    assert {m.value for m in results} == {3.0}
    assert (await different).value == 5.0
    assert (prom.count("up"), prom.count("other"), p.requests) == (1, 1, 2)


async def test_cancelling_one_caller_leaves_the_shared_request_to_the_others(prom: FakePrometheus) -> None:
    prom.answers["up"] = success("vector", vector("3"))
    prom.hold.clear()
    p = provider()
    first = asyncio.create_task(p.query(prom.url, "up"))
    second = asyncio.create_task(p.query(prom.url, "up"))
    await _wait_for_request(prom, "up")
    first.cancel()
    prom.hold.set()

    assert (await second).value == 3.0
    with pytest.raises(asyncio.CancelledError):
        await first
    assert prom.count("up") == 1


async def test_answers_are_reused_for_max_age_only(prom: FakePrometheus) -> None:
    prom.answers["up"] = success("vector", vector("3"))
    cached = provider(max_age=60)
    for _ in range(3):
        assert (await cached.query(prom.url, "up")).value == 3.0
    assert prom.count("up") == 1

    fresh = provider(max_age=0)
    for _ in range(3):
        await fresh.query(prom.url, "up")
    assert prom.count("up") == 4


async def test_expired_answers_are_forgotten(prom: FakePrometheus) -> None:
    p = provider(max_age=0)
    for revision in range(50):  # queries templated with a revision are each asked a few times, then never
        await p.query(prom.url, f'up{{revision="{revision}"}}')
    assert len(p._cache) == 1


async def test_query_by_sums_series_per_label(prom: FakePrometheus) -> None:
    series = [
        {"metric": {"branch": "control"}, "value": [1, "10"]},
        {"metric": {"branch": "control"}, "value": [1, "5"]},
        {"metric": {"branch": "enhanced"}, "value": [1, "7"]},
        {"metric": {"branch": "broken"}, "value": [1, "NaN"]},
        {"metric": {}, "value": [1, "9"]},
    ]
    prom.answers["exposures"] = success("vector", series)
    assert await provider().query_by(prom.url, "exposures", "branch") == {"control": 15.0, "enhanced": 7.0}
    prom.answers["bad"] = (400, b'{"status":"error","errorType":"bad_data"}')
    with pytest.raises(MetricsError, match="query rejected: HTTP Status Code 400"):
        await provider().query_by(prom.url, "bad", "branch")


async def test_query_table_keys_series_by_several_labels(prom: FakePrometheus) -> None:
    series = [
        {"metric": {"branch": "control", "dimension": "platform", "segment": "ios"}, "value": [1, "10"]},
        {"metric": {"branch": "control", "dimension": "platform", "segment": "ios"}, "value": [1, "2"]},
        {"metric": {"branch": "enhanced", "segment": "web"}, "value": [1, "7"]},
        {"metric": {"dimension": "platform", "segment": "ios"}, "value": [1, "9"]},
    ]
    prom.answers["segments"] = success("vector", series)
    table = await provider().query_table(prom.url, "segments", ("branch", "dimension", "segment"))
    assert table == {("control", "platform", "ios"): 12.0, ("enhanced", "", "web"): 7.0}


# ---------------------------------------------------------------- scrape-aligned readings
class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)


async def test_one_request_carries_the_value_and_the_sample_time(prom: FakePrometheus) -> None:
    q = 'max(load{t="a"})'
    prom.answers[q] = success("vector", vector("4.5"))
    clock = Clock(1000.06)
    p = PrometheusProvider(clock=clock, max_age=0)
    prom.sample_at = 1000.0
    first = await p.query(prom.url, q)
    assert (first.value, first.scrape) == (4.5, None)  # one sample time: no period yet
    clock.t, prom.sample_at = 1001.06, 1001.0
    second = await p.query(prom.url, q)
    assert second.value == 4.5 and second.scrape is not None
    assert (second.scrape.anchor, second.scrape.period) == (1001.0, pytest.approx(1.0))
    assert prom.count(q) == 2 and len(prom.requests) == 2  # one request per reading, no extra query
    assert all(r.startswith("label_replace((") for r in prom.requests)


async def test_a_query_prometheus_rejects_rewritten_is_sent_plainly_from_then_on(prom: FakePrometheus) -> None:
    q = "scalar(max(load))"
    prom.answers[q] = success("scalar", [1700000000.0, "2"])
    p = provider(max_age=0)
    assert (await p.query(prom.url, q)).value == 2.0
    assert (await p.query(prom.url, q)).value == 2.0
    assert [r.startswith("label_replace") for r in prom.requests] == [True, False, False]


async def test_queries_that_do_not_qualify_are_sent_as_they_are(prom: FakePrometheus) -> None:
    q = "max(a) / max(b)"
    prom.answers[q] = success("vector", vector("0.5"))
    m = await provider().query(prom.url, q)
    assert (m.value, m.scrape, prom.requests) == (0.5, None, [q])


async def test_a_cached_answer_is_not_served_across_a_new_sample(prom: FakePrometheus) -> None:
    q = "max(load)"
    prom.answers[q] = success("vector", vector("1"))
    clock = Clock(1000.06)
    p = PrometheusProvider(clock=clock, max_age=60)
    for t, sample in ((1000.06, 1000.0), (1001.06, 1001.0)):
        clock.t, prom.sample_at = t, sample
        p._cache.clear()
        await p.query(prom.url, q)
    assert prom.count(q) == 2
    clock.t = 1001.5  # before the next landing (1002.05): the answer is still the newest
    await p.query(prom.url, q)
    assert prom.count(q) == 2
    clock.t = 1002.1  # a sample landed since the answer was fetched: ask again
    await p.query(prom.url, q)
    assert prom.count(q) == 3
