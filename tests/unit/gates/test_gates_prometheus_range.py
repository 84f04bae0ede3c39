"""The compare gate's range read against a loopback HTTP server playing Prometheus' /api/v1/query_range."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from test_gates_prometheus import FakePrometheus, prom, provider, success  # noqa: F401

from controller.gates.providers.prometheus_range import parse_matrix

pytestmark = pytest.mark.timeout(30)

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
END = START + timedelta(seconds=30)


def matrix(*series: list[str]) -> list[dict[str, object]]:
    return [
        {"metric": {"workload": f"w{i}"}, "values": [[1700000000.0 + j, v] for j, v in enumerate(s)]}
        for i, s in enumerate(series)
    ]


def test_parse_matrix_pools_every_finite_sample_of_every_series() -> None:
    got = parse_matrix(matrix(["1", "2", "NaN"], ["3", "+Inf", "4"]))
    assert (got.values, got.series, got.error) == ((1.0, 2.0, 3.0, 4.0), 2, None)
    assert parse_matrix([]).values == ()
    assert parse_matrix({"x": 1}).error == "unexpected result dict"
    assert parse_matrix([{"metric": {}, "value": [1, "2"]}]).error == "query did not return a range of samples"


async def test_range_read_sends_start_end_and_step(prom: FakePrometheus) -> None:  # noqa: F811
    prom.answers["lat"] = success("matrix", matrix(["1.5", "2.5"]))
    got = await provider().query_range(prom.url, "lat", START, END, 1.0)
    assert (got.values, got.series) == ((1.5, 2.5), 1)
    assert prom.seen == ["lat"]


@pytest.mark.parametrize(("status", "invalid"), [(400, True), (422, True), (503, False)])
async def test_http_errors(prom: FakePrometheus, status: int, invalid: bool) -> None:  # noqa: F811
    body = json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error"}).encode()
    prom.answers["bad"] = (status, body)
    got = await provider().query_range(prom.url, "bad", START, END, 1.0)
    assert got.error is not None and got.invalid_query is invalid and got.values == ()


async def test_unreachable_is_an_error_not_a_raise() -> None:
    got = await provider(timeout=1.0).query_range("http://127.0.0.1:9", "lat", START, END, 1.0)
    assert got.error is not None and got.error.startswith("prometheus unreachable") and not got.invalid_query
