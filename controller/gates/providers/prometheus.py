"""Prometheus provider (prometheus-api-client, called off the event loop).

Identical queries from many Releases are de-duplicated: concurrent callers share one in-flight request,
and an answer is reused for ``max_age`` seconds (shorter than any gate interval worth having). The
shared request belongs to no caller: cancelling one caller (a deleted Release) never cancels the
others' reading.

Readings are scrape-aligned: a query over one vector selector is sent as one request that also returns
the newest sample's timestamp (:mod:`controller.gates.providers.promql`); a :class:`ScrapeClock` per query
text learns from those when new samples land and every Measurement carries the grid, from which the
status reducer schedules the next reading (:func:`controller.gates.schedule.next_reading`). A cached answer
is never served across a landing it predates. A query Prometheus rejects in that form (e.g. a scalar) is
sent plainly from then on.

``query`` never raises for Prometheus problems: HTTP 400/422 (a query Prometheus rejects) is an
``invalid_query`` Measurement, any other status, a timeout, a refused connection or an unexpected body
is a Measurement with ``error`` (Inconclusive), an empty vector is no data.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import math
import re
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout
from urllib3.util.retry import Retry

from controller.errors import MetricsError
from controller.gates.compare import Samples
from controller.gates.evaluate import Measurement
from controller.gates.providers.promql import PART_LABEL, with_sample_time
from controller.gates.schedule import ScrapeClock

_T = TypeVar("_T")
PROMETHEUS_THREADS = 8
"""Threads (and kept connections) for Prometheus queries; identical queries share one request."""
CLOCK_IDLE = 600.0
"""A query's scrape clock is forgotten after this many seconds without a reading."""


def _now() -> datetime:
    return datetime.now(UTC)


def parse_result(result: Any, at: datetime) -> Measurement:
    """Turn a Prometheus instant-query result into one Measurement."""
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        return _number(result[1], at)  # scalar: [ts, "value"]
    if not isinstance(result, list):
        return Measurement(None, at, error=f"unexpected result {type(result).__name__}")
    if not result:
        return Measurement(None, at)  # no data
    if len(result) > 1:
        return Measurement(
            None, at, error=f"query returned {len(result)} series; aggregate it to one (e.g. sum/max/avg)"
        )
    value = result[0].get("value")
    if not isinstance(value, list) or len(value) != 2:
        return Measurement(None, at, error="query returned a range vector; use an instant vector")
    return _number(value[1], at)


def split_sample_time(result: Any) -> tuple[Any, float | None]:
    """(the query's own result, the newest sample time) from an answer to :func:`with_sample_time`."""
    if not isinstance(result, list):
        return result, None
    own: list[Any] = []
    sample_at: float | None = None
    for series in result:
        metric = series.get("metric") if isinstance(series, dict) else None
        part = (metric or {}).get(PART_LABEL)
        if part == "ts":
            value = series.get("value")
            try:
                sample_at = float(value[1]) if isinstance(value, list) and len(value) == 2 else None
            except (TypeError, ValueError):
                sample_at = None
        else:
            own.append(series)
    return own, sample_at


def _number(raw: Any, at: datetime) -> Measurement:
    """A sample value; NaN and ±Inf are kept (the gate judges them Inconclusive)."""
    try:
        return Measurement(float(raw), at)
    except (TypeError, ValueError):
        return Measurement(None, at, error=f"not a number: {raw!r}")


_STATUS = re.compile(r"HTTP Status Code (\d{3})")
_REJECTED = (400, 422)
"""What Prometheus answers for a query it cannot parse (400 bad_data) or execute (422)."""


_NOT_AN_ANSWER = (requests.JSONDecodeError, KeyError, TypeError)
"""Raised by the client for a 200 whose body is not JSON or lacks ``data.result``."""


def _unreachable(exc: Exception, timeout: float) -> str:
    """Why no answer came: a timeout (also when urllib3 wrapped it into a ConnectionError) or another
    transport failure (refused, reset, name not resolved)."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    # urllib3's NewConnectionError (refused, unresolvable) derives from its TimeoutError: not a timeout
    timed_out = isinstance(reason, Urllib3Timeout) and not isinstance(reason, NewConnectionError)
    if timed_out or (isinstance(exc, requests.Timeout) and not isinstance(reason, NewConnectionError)):
        return f"prometheus did not answer within {timeout:g}s"
    return f"prometheus unreachable: {type(exc).__name__}"


def _rejection(exc: PrometheusApiClientException) -> tuple[str, bool]:
    """``(message, the query itself was rejected)`` for a non-200 answer."""
    text = str(exc)
    match = _STATUS.search(text)
    status = int(match.group(1)) if match else None
    return text[:300], status in _REJECTED


class PrometheusProvider:
    """Prometheus behind the :class:`~controller.gates.providers.base.MetricsProvider` interface."""

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        max_age: float = 0.4,
        clock: Callable[[], datetime] = _now,
        threads: int = PROMETHEUS_THREADS,
    ) -> None:
        self._timeout = timeout
        self._threads = threads
        # Queries run on threads of their own, never queued behind Kubernetes calls on the shared I/O
        # pool: at 500 Releases a gate reading waited seconds there for a thread while the API server was
        # busy, and every hold's end waited with it.
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="stopline-prom")
        self._max_age = max_age
        self._clock = clock
        self._clients: dict[str, PrometheusConnect] = {}
        self._inflight: dict[tuple[str, str], asyncio.Task[Measurement]] = {}
        self._cache: dict[tuple[str, str], tuple[float, Measurement]] = {}
        self._clocks: dict[tuple[str, str], ScrapeClock] = {}
        self._plain: set[tuple[str, str]] = set()  # queries Prometheus rejected with the sample time folded in
        self.requests = 0
        """Requests sent to Prometheus (shared and cached answers do not count)."""

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))

    def _client(self, url: str) -> PrometheusConnect:
        if url not in self._clients:
            # retry=0: the library's default (3 retries, backoff) turned a 5 s timeout into ~26 s per reading
            # A connection per query thread, kept: none dropped and reopened under load.
            # PrometheusConnect mounts a default-sized adapter at the URL; ours replaces it, same prefix.
            session = requests.Session()
            self._clients[url] = PrometheusConnect(
                url=url, disable_ssl=False, timeout=math.ceil(self._timeout), retry=Retry(total=0), session=session
            )
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self._threads, max_retries=Retry(total=0))
            session.mount(url, adapter)
        return self._clients[url]

    def _query_blocking(self, url: str, query: str) -> tuple[Measurement, float | None]:
        """(the reading, the newest sample time of its series when Prometheus told it)."""
        aligned = None if (url, query) in self._plain else with_sample_time(query)
        at = self._clock()
        try:
            try:
                result = self._client(url).custom_query(aligned or query)
            except PrometheusApiClientException as exc:
                if aligned is None or not _rejection(exc)[1]:
                    raise
                self._plain.add((url, query))  # e.g. a scalar query: label_replace needs a vector
                aligned = None
                result = self._client(url).custom_query(query)
        except PrometheusApiClientException as exc:
            text, bad = _rejection(exc)
            return Measurement(None, at, error=text, invalid_query=bad), None
        except _NOT_AN_ANSWER as exc:  # 200 with a body that is not a query answer (a proxy's page)
            return Measurement(None, at, error=f"unexpected answer from prometheus: {type(exc).__name__}"), None
        except (requests.RequestException, OSError) as exc:
            return Measurement(None, at, error=_unreachable(exc, math.ceil(self._timeout))), None
        sample_at = None
        if aligned is not None:
            result, sample_at = split_sample_time(result)
        return parse_result(result, at), sample_at

    def _vector_blocking(self, url: str, query: str, label: str) -> dict[str, float]:
        return {key[0]: value for key, value in self._table_blocking(url, query, (label,)).items()}

    def _table_blocking(self, url: str, query: str, labels: tuple[str, ...]) -> dict[tuple[str, ...], float]:
        try:
            result = self._client(url).custom_query(query)
        except PrometheusApiClientException as exc:
            raise MetricsError(f"query rejected: {str(exc)[:300]}") from exc
        except _NOT_AN_ANSWER as exc:
            raise MetricsError(f"unexpected answer from prometheus: {type(exc).__name__}") from exc
        except (requests.RequestException, OSError) as exc:
            raise MetricsError(_unreachable(exc, math.ceil(self._timeout))) from exc
        out: dict[tuple[str, ...], float] = {}
        for series in result if isinstance(result, list) else []:
            if not isinstance(series, dict):
                continue
            metric = series.get("metric") or {}
            value = series.get("value")
            if metric.get(labels[0]) is None or not isinstance(value, list) or len(value) != 2:
                continue
            key = tuple(str(metric.get(label) or "") for label in labels)
            try:
                number = float(value[1])
            except (TypeError, ValueError):
                continue
            if math.isfinite(number):
                out[key] = out.get(key, 0.0) + number
        return out

    async def query_table(self, url: str, query: str, labels: tuple[str, ...]) -> dict[tuple[str, ...], float]:
        """An instant vector as ``{(value of each label): number}``, series summed per key.

        Series without the first label are skipped; a missing later label reads as ``""``.
        """
        self.requests += 1
        return await self._run(self._table_blocking, url, query, labels)

    async def query_by(self, url: str, query: str, label: str) -> dict[str, float]:
        """An instant vector as ``{value of label: number}``; raises MetricsError when it cannot be read."""
        self.requests += 1
        return await self._run(self._vector_blocking, url, query, label)

    async def query_range(self, url: str, query: str, start: datetime, end: datetime, step: float) -> Samples:
        """Every sample of every series of a range query, pooled (the compare gate's read)."""
        from controller.gates.providers.prometheus_range import read_range

        self.requests += 1
        return await self._run(read_range, self._client(url), query, start, end, step, self._timeout)

    async def query(self, url: str, query: str) -> Measurement:
        """Run an instant query; shares in-flight requests and very recent answers."""
        key = (url, query)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] <= self._max_age and not self._new_sample_since(key, cached[1]):
            return cached[1]
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fetch(key))
            self._inflight[key] = task
        # shield: a caller cancelled while waiting leaves the shared request running for the others
        return await asyncio.shield(task)

    def _new_sample_since(self, key: tuple[str, str], answer: Measurement) -> bool:
        """Whether a new sample should have landed since a cached answer was asked for (then it is stale)."""
        clock = self._clocks.get(key)
        wall = self._clock().timestamp()
        grid = clock.grid(wall) if clock is not None else None
        return grid is not None and grid.landing_after(answer.at.timestamp()) <= wall

    async def _fetch(self, key: tuple[str, str]) -> Measurement:
        try:
            self.requests += 1
            m, sample_at = await self._run(self._query_blocking, *key)
            now = time.monotonic()
            wall = self._clock().timestamp()
            clock = self._clocks.get(key)
            if clock is None:
                clock = self._clocks[key] = ScrapeClock()
            clock.observe(sample_at, m.at.timestamp())  # sent at: Prometheus evaluated it at or after that
            grid = clock.grid(wall)
            if grid is not None:
                m = replace(m, scrape=grid)
            # forget expired answers and idle clocks, so queries templated with a revision do not pile up
            self._cache = {k: v for k, v in self._cache.items() if now - v[0] <= self._max_age}
            self._clocks = {k: c for k, c in self._clocks.items() if wall - (c.last_read or wall) <= CLOCK_IDLE}
            self._cache[key] = (now, m)
            return m
        finally:
            self._inflight.pop(key, None)
