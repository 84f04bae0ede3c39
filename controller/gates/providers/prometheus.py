"""Prometheus provider (prometheus-api-client, called off the event loop).

Identical queries from many Releases are de-duplicated: concurrent callers share one in-flight request,
and an answer is reused for ``max_age`` seconds (shorter than any gate interval worth having).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from controller.errors import MetricsError
from controller.gates.evaluate import Measurement


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


def _number(raw: Any, at: datetime) -> Measurement:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return Measurement(None, at, error=f"not a number: {raw!r}")
    if not math.isfinite(value):
        return Measurement(value, at)
    return Measurement(value, at)


class PrometheusProvider:
    """Prometheus behind the :class:`~controller.gates.providers.base.MetricsProvider` interface."""

    def __init__(self, *, timeout: float = 5.0, max_age: float = 0.4, clock: Callable[[], datetime] = _now) -> None:
        self._timeout = timeout
        self._max_age = max_age
        self._clock = clock
        self._clients: dict[str, PrometheusConnect] = {}
        self._inflight: dict[tuple[str, str], asyncio.Future[Measurement]] = {}
        self._cache: dict[tuple[str, str], tuple[float, Measurement]] = {}
        self.requests = 0

    def _client(self, url: str) -> PrometheusConnect:
        if url not in self._clients:
            # retry=0: the library's default (3 retries, backoff) turned a 5 s timeout into ~26 s per reading
            self._clients[url] = PrometheusConnect(
                url=url, disable_ssl=False, timeout=math.ceil(self._timeout), retry=Retry(total=0)
            )
        return self._clients[url]

    def _query_blocking(self, url: str, query: str) -> Measurement:
        at = self._clock()
        try:
            result = self._client(url).custom_query(query)
        except PrometheusApiClientException as exc:
            text = str(exc)
            bad = "400" in text or "bad_data" in text or "422" in text
            return Measurement(None, at, error=text[:300], invalid_query=bad)
        except (requests.RequestException, OSError) as exc:
            return Measurement(None, at, error=f"prometheus unreachable: {type(exc).__name__}")
        return parse_result(result, at)

    def _vector_blocking(self, url: str, query: str, label: str) -> dict[str, float]:
        try:
            result = self._client(url).custom_query(query)
        except PrometheusApiClientException as exc:
            raise MetricsError(f"query rejected: {str(exc)[:300]}") from exc
        except (requests.RequestException, OSError) as exc:
            raise MetricsError(f"prometheus unreachable: {type(exc).__name__}") from exc
        out: dict[str, float] = {}
        for series in result if isinstance(result, list) else []:
            if not isinstance(series, dict):
                continue
            key = (series.get("metric") or {}).get(label)
            value = series.get("value")
            if key is None or not isinstance(value, list) or len(value) != 2:
                continue
            try:
                number = float(value[1])
            except (TypeError, ValueError):
                continue
            if math.isfinite(number):
                out[str(key)] = out.get(str(key), 0.0) + number
        return out

    async def query_by(self, url: str, query: str, label: str) -> dict[str, float]:
        """An instant vector as ``{value of label: number}``; raises MetricsError when it cannot be read."""
        self.requests += 1
        return await asyncio.to_thread(self._vector_blocking, url, query, label)

    async def query(self, url: str, query: str) -> Measurement:
        """Run an instant query; shares in-flight requests and very recent answers."""
        key = (url, query)
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] <= self._max_age:
            return cached[1]
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Measurement] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            self.requests += 1
            m = await asyncio.to_thread(self._query_blocking, url, query)
            self._cache[key] = (time.monotonic(), m)
            future.set_result(m)
            return m
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved
            raise
        finally:
            self._inflight.pop(key, None)
