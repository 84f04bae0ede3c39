"""Which gate queries qualify for scrape alignment, and the one request that carries the sample time."""

from __future__ import annotations

import pytest

from controller.gates.providers.promql import sample_selector, with_sample_time


@pytest.mark.parametrize(
    ("query", "selector"),
    [
        ('max(chat_load{tier="chat"})', 'chat_load{tier="chat"}'),
        ("up", "up"),
        ('sum(rate(http_requests_total{code=~"5.."}[1m]))', 'http_requests_total{code=~"5.."}'),
        ("sum by (job) (rate(x[5m])) > bool 3", "x"),
        ("avg(node_load1) without (cpu)", "node_load1"),
        ('max(x{a="}"}) / max(x{a="}"})', 'x{a="}"}'),
        ('{__name__="x", job="a"}', '{__name__="x", job="a"}'),
        ("max(a) / max(b)", None),
        ("max(x offset 5m)", None),
        ("max(x @ 1700000000)", None),
        ("vector(1)", None),
        ("1 + 2", None),
        ("scalar(max(x)) * 2", "x"),
    ],
    ids=[
        "aggregated-selector",
        "bare-name",
        "rate-range",
        "grouping-and-bool",
        "without-after",
        "braces-in-strings",
        "name-matcher",
        "two-selectors",
        "offset",
        "at-modifier",
        "no-selector",
        "literals",
        "scalar-of-one",
    ],
)
def test_sample_selector(query: str, selector: str | None) -> None:
    assert sample_selector(query) == selector


def test_with_sample_time_folds_both_into_one_query() -> None:
    assert with_sample_time('max(x{t="a"})') == (
        'label_replace((max(x{t="a"})), "stopline_part", "value", "", "") or '
        'label_replace(max(timestamp(x{t="a"})), "stopline_part", "ts", "", "")'
    )
    assert with_sample_time("max(a) - max(b)") is None
