"""Prometheus range reads for the compare gate (prometheus-api-client, called off the event loop).

One range query per group (canary, baseline) over the same ``[start, end]`` and ``step``: every finite
sample of every series of the answer is pooled into one :class:`~controller.gates.compare.Samples`.
Never raises for Prometheus problems: a query Prometheus rejects (HTTP 400/422) is ``invalid_query``
(the gate reads Error), a timeout, refused connection, other status or unexpected body is ``error``
(Inconclusive), an empty matrix is no samples. The same classification as the instant reads in
:mod:`controller.gates.providers.prometheus`.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException

from controller.gates.compare import Samples
from controller.gates.providers.prometheus import _NOT_AN_ANSWER, _rejection, _unreachable

MAX_SAMPLES = 100_000
"""At most this many samples are kept per group (a query returning thousands of series is cut short)."""


def parse_matrix(result: Any) -> Samples:
    """Pool the finite values of a range-query answer (``[{metric, values: [[t, "v"], ...]}, ...]``)."""
    if not isinstance(result, list):
        return Samples(error=f"unexpected result {type(result).__name__}")
    values: list[float] = []
    series = 0
    for s in result:
        points = s.get("values") if isinstance(s, dict) else None
        if not isinstance(points, list):
            return Samples(error="query did not return a range of samples")
        series += 1
        for point in points:
            try:
                v = float(point[1])
            except (TypeError, ValueError, IndexError):
                continue
            if math.isfinite(v) and len(values) < MAX_SAMPLES:
                values.append(v)
    return Samples(tuple(values), series)


def read_range(
    client: PrometheusConnect, query: str, start: datetime, end: datetime, step: float, timeout: float
) -> Samples:
    """One blocking range query, classified (see the module docstring)."""
    try:
        result = client.custom_query_range(query, start_time=start, end_time=end, step=f"{step:g}")
    except PrometheusApiClientException as exc:
        text, bad = _rejection(exc)
        return Samples(error=text, invalid_query=bad)
    except _NOT_AN_ANSWER as exc:
        return Samples(error=f"unexpected answer from prometheus: {type(exc).__name__}")
    except (requests.RequestException, OSError) as exc:
        return Samples(error=_unreachable(exc, math.ceil(timeout)))
    return parse_matrix(result)
