"""Gate math: per-reading verdicts, deltas, limits, thresholds, query templating, experiment gates."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.gates.evaluate import (
    Judgement,
    Measurement,
    breached,
    deltas,
    judge,
    judge_experiment,
    new_row,
    outage,
    record,
    render_query,
    threshold_text,
    tripped,
)
from controller.models.release import Gate, GaugeRow

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def gate(**bounds: Any) -> Gate:
    body: dict[str, Any] = {"name": "g", "query": "avg(x)", **bounds}
    return Gate.model_validate(body)


def reading(value: float | None, *, error: str | None = None, invalid: bool = False) -> Measurement:
    return Measurement(value=value, at=T0, error=error, invalid_query=invalid)


# ---------------------------------------------------------------- judge: one reading
JUDGE_CASES: list[tuple[str, dict[str, Any], float | None, Measurement, str, float | None, float | None]] = [
    # id, bounds, pre, measurement, verdict, delta, delta %
    ("max-below", {"max": 6}, None, reading(5.99), "Pass", None, None),
    ("max-equal-passes", {"max": 6}, None, reading(6.0), "Pass", None, None),
    ("max-above", {"max": 6}, None, reading(6.01), "Fail", None, None),
    ("min-above", {"min": 2}, 3.0, reading(2.0), "Pass", -1.0, -100 / 3),
    ("min-below", {"min": 2}, 3.0, reading(1.99), "Fail", 1.99 - 3.0, (1.99 - 3.0) / 3.0 * 100),
    (
        "imvu-chat-loadavg",
        {"max": 6, "maxIncreasePercent": 25},
        4.13,
        reading(4.95),
        "Pass",
        4.95 - 4.13,
        19.85472154963681,
    ),
    ("increase-exactly-limit", {"maxIncreasePercent": 25}, 4.0, reading(5.0), "Pass", 1.0, 25.0),
    (
        "increase-over-limit",
        {"maxIncreasePercent": 25},
        4.0,
        reading(5.01),
        "Fail",
        5.01 - 4.0,
        (5.01 - 4.0) / 4.0 * 100,
    ),
    ("increase-bound-ignores-decrease", {"maxIncreasePercent": 25}, 4.0, reading(1.0), "Pass", -3.0, -75.0),
    ("decrease-exactly-limit", {"maxDecreasePercent": 20}, 100.0, reading(80.0), "Pass", -20.0, -20.0),
    ("decrease-over-limit", {"maxDecreasePercent": 20}, 100.0, reading(79.9), "Fail", 79.9 - 100.0, (79.9 - 100.0)),
    ("decrease-bound-ignores-increase", {"maxDecreasePercent": 20}, 100.0, reading(300.0), "Pass", 200.0, 200.0),
    (
        "max-breach-with-relative-pass",
        {"max": 6, "maxIncreasePercent": 25},
        5.9,
        reading(6.1),
        "Fail",
        6.1 - 5.9,
        (6.1 - 5.9) / 5.9 * 100,
    ),
    ("relative-breach-under-max", {"max": 6, "maxIncreasePercent": 25}, 2.0, reading(3.0), "Fail", 1.0, 50.0),
    ("pre-zero-increase-breaches", {"maxIncreasePercent": 25}, 0.0, reading(0.1), "Fail", 0.1, None),
    ("pre-zero-equal-is-0pct", {"maxIncreasePercent": 25}, 0.0, reading(0.0), "Pass", 0.0, 0.0),
    ("pre-zero-decrease-breaches", {"maxDecreasePercent": 20}, 0.0, reading(-0.5), "Fail", -0.5, None),
    ("pre-zero-decrease-vs-increase-bound", {"maxIncreasePercent": 25}, 0.0, reading(-0.5), "Pass", -0.5, None),
    ("negative-pre-up-50pct-breaches", {"maxIncreasePercent": 25}, -10.0, reading(-5.0), "Fail", 5.0, 50.0),
    ("negative-pre-up-50pct-within-60", {"maxIncreasePercent": 60}, -10.0, reading(-5.0), "Pass", 5.0, 50.0),
    ("negative-pre-down-50pct", {"maxDecreasePercent": 20}, -10.0, reading(-15.0), "Fail", -5.0, -50.0),
    ("pre-missing-relative-only", {"maxIncreasePercent": 25}, None, reading(5.0), "Inconclusive", None, None),
    (
        "pre-missing-both-relative",
        {"maxIncreasePercent": 25, "maxDecreasePercent": 5},
        None,
        reading(5.0),
        "Inconclusive",
        None,
        None,
    ),
    (
        "pre-missing-absolute-still-judged-pass",
        {"max": 6, "maxIncreasePercent": 25},
        None,
        reading(5.0),
        "Pass",
        None,
        None,
    ),
    (
        "pre-missing-absolute-still-judged-fail",
        {"max": 6, "maxIncreasePercent": 25},
        None,
        reading(7.0),
        "Fail",
        None,
        None,
    ),
    ("pre-nan-is-missing", {"maxIncreasePercent": 25}, math.nan, reading(5.0), "Inconclusive", None, None),
    ("no-data", {"max": 6}, 1.0, reading(None), "Inconclusive", None, None),
    ("nan", {"max": 6}, 1.0, reading(math.nan), "Inconclusive", None, None),
    ("inf", {"max": 6}, 1.0, reading(math.inf), "Inconclusive", None, None),
    ("prometheus-error", {"max": 6}, 1.0, reading(None, error="connection refused"), "Inconclusive", None, None),
    ("error-with-stale-value", {"max": 6}, 1.0, reading(99.0, error="timeout"), "Inconclusive", None, None),
    ("invalid-query", {"max": 6}, 1.0, reading(None, error="parse error at char 5", invalid=True), "Error", None, None),
]


@pytest.mark.parametrize(
    ("bounds", "pre", "measurement", "verdict", "delta", "pct"),
    [c[1:] for c in JUDGE_CASES],
    ids=[c[0] for c in JUDGE_CASES],
)
def test_judge(
    bounds: dict[str, Any],
    pre: float | None,
    measurement: Measurement,
    verdict: str,
    delta: float | None,
    pct: float | None,
) -> None:
    j = judge(gate(**bounds), pre, measurement)
    assert j.verdict == verdict, j.message
    assert j.delta == (None if delta is None else pytest.approx(delta, abs=1e-12))
    assert j.delta_percent == (None if pct is None else pytest.approx(pct, rel=1e-12))


def test_imvu_row_numbers_are_exact() -> None:
    j = judge(gate(max=6, maxIncreasePercent=25), 4.13, reading(4.95))
    assert j.delta is not None and j.delta_percent is not None
    assert round(j.delta, 2) == 0.82
    assert round(j.delta_percent, 3) == 19.855
    assert j.message == "4.95 within >6 or >+25%"


@pytest.mark.parametrize(
    ("bounds", "pre", "value", "message"),
    [
        ({"max": 6}, None, 7.2, "7.20 > 6"),
        ({"min": 2}, None, 1.5, "1.50 < 2"),
        ({"max": 6, "maxIncreasePercent": 25}, 4.0, 7.2, "7.20 > 6; +80.00% > +25% (pre-push 4.00)"),
        ({"maxIncreasePercent": 25}, 0.0, 1.0, "+inf% > +25% (pre-push 0.00)"),
        ({"maxDecreasePercent": 20}, 0.0, -1.0, "-inf% < -20% (pre-push 0.00)"),
        ({"maxDecreasePercent": 20}, 100.0, 50.0, "-50.00% < -20% (pre-push 100.00)"),
    ],
    ids=["max", "min", "max-and-increase", "increase-from-zero", "decrease-from-zero", "decrease"],
)
def test_breach_message_names_the_numbers(
    bounds: dict[str, Any], pre: float | None, value: float, message: str
) -> None:
    j = judge(gate(**bounds), pre, reading(value))
    assert (j.verdict, j.message) == ("Fail", message)


@pytest.mark.parametrize(
    ("pre", "post", "expected"),
    [
        (4.0, 5.0, (1.0, 25.0)),
        (-10.0, -5.0, (5.0, 50.0)),
        (-10.0, -20.0, (-10.0, -100.0)),
        (0.0, 0.0, (0.0, 0.0)),
        (0.0, 3.0, (3.0, None)),
        (None, 3.0, (None, None)),
        (math.inf, 3.0, (None, None)),
    ],
    ids=["up", "negative-up", "negative-down", "zero-zero", "zero-up", "no-pre", "inf-pre"],
)
def test_deltas(pre: float | None, post: float, expected: tuple[float | None, float | None]) -> None:
    assert deltas(pre, post) == expected


@pytest.mark.parametrize(
    ("m", "usable"),
    [
        (reading(1.0), True),
        (reading(0.0), True),
        (reading(None), False),
        (reading(math.nan), False),
        (reading(-math.inf), False),
        (reading(1.0, error="x"), False),
    ],
    ids=["value", "zero", "none", "nan", "inf", "error"],
)
def test_measurement_usable(m: Measurement, usable: bool) -> None:
    assert m.usable is usable


# ---------------------------------------------------------------- record / tripped: limits over readings
def fold(g: Gate, values: list[float | None], pre: float | None = 4.0) -> list[GaugeRow]:
    """Rows after each reading, as the reducer folds them."""
    rows: list[GaugeRow] = []
    r = new_row(g, "canary", pre)
    for i, v in enumerate(values):
        m = reading(v)
        r = record(g, r, v, judge(g, r.pre_push, m), T0 + timedelta(seconds=10 * i))
        rows.append(r)
    return rows


def test_new_row() -> None:
    g = gate(max=6, maxIncreasePercent=25, dryRun=True)
    assert new_row(g, "chat", 4.13) == GaugeRow(
        gate="g",
        phase="chat",
        pre_push=4.13,
        threshold=">6 or >+25%",
        verdict="Inconclusive",
        dry_run=True,
        kind="query",
    )


def test_record_fills_the_gauges_row() -> None:
    g = gate(max=6, maxIncreasePercent=25)
    r = fold(g, [4.95], pre=4.13)[-1]
    assert (r.gate, r.phase, r.pre_push, r.post_push, r.verdict) == ("g", "canary", 4.13, 4.95, "Pass")
    assert r.delta == pytest.approx(0.82) and r.delta_percent == pytest.approx(19.854721549636807)
    assert (r.breaches, r.inconclusive, r.readings, r.at) == (0, 0, 1, T0)
    assert r.threshold == ">6 or >+25%"


BR, OUT, NO = "breached", "outage", ""  # what a row says after a reading: breached(), outage(), or neither

LIMIT_CASES: list[tuple[str, dict[str, Any], list[float | None], list[tuple[str, int, int, str]]]] = [
    # id, bounds, readings, per reading: (verdict, breaches, inconclusive, breached/outage/neither)
    (
        "failure-limit-0-trips-on-first-breach",
        {"max": 6},
        [5.0, 7.0],
        [("Pass", 0, 0, NO), ("Fail", 1, 0, BR)],
    ),
    (
        "failure-limit-2-third-breach-trips",
        {"max": 6, "failureLimit": 2},
        [7.0, 7.0, 7.0],
        [("Fail", 1, 0, NO), ("Fail", 2, 0, NO), ("Fail", 3, 0, BR)],
    ),
    (
        "pass-resets-breaches",
        {"max": 6, "failureLimit": 2},
        [7.0, 7.0, 5.0, 7.0, 7.0],
        [("Fail", 1, 0, NO), ("Fail", 2, 0, NO), ("Pass", 0, 0, NO), ("Fail", 1, 0, NO), ("Fail", 2, 0, NO)],
    ),
    (
        "no-data-between-breaches-does-not-reset-them",
        {"max": 6, "failureLimit": 1},
        [7.0, None, 7.0],
        [("Fail", 1, 0, NO), ("Inconclusive", 1, 1, NO), ("Fail", 2, 0, BR)],
    ),
    (
        "inconclusive-past-limit-is-an-outage-not-a-failure",
        {"max": 6, "inconclusiveLimit": 2},
        [None, None, None],
        [("Inconclusive", 0, 1, NO), ("Inconclusive", 0, 2, NO), ("Inconclusive", 0, 3, OUT)],
    ),
    (
        "conclusive-reading-resets-inconclusive",
        {"max": 6, "inconclusiveLimit": 2},
        [None, None, 5.0, None, None],
        [
            ("Inconclusive", 0, 1, NO),
            ("Inconclusive", 0, 2, NO),
            ("Pass", 0, 0, NO),
            ("Inconclusive", 0, 1, NO),
            ("Inconclusive", 0, 2, NO),
        ],
    ),
    (
        "conclusive-reading-ends-an-outage",
        {"max": 6, "inconclusiveLimit": 0},
        [None, 5.0],
        [("Inconclusive", 0, 1, OUT), ("Pass", 0, 0, NO)],
    ),
    (
        "inconclusive-limit-0-outage-on-first-gap",
        {"max": 6, "inconclusiveLimit": 0},
        [None],
        [("Inconclusive", 0, 1, OUT)],
    ),
    (
        "dry-run-breach-recorded-never-trips",
        {"max": 6, "dryRun": True},
        [7.0, 7.0],
        [("Fail", 1, 0, NO), ("Fail", 2, 0, NO)],
    ),
    (
        "dry-run-inconclusive-past-limit-never-trips",
        {"max": 6, "dryRun": True, "inconclusiveLimit": 0},
        [None],
        [("Inconclusive", 0, 1, NO)],
    ),
]


@pytest.mark.parametrize(
    ("bounds", "values", "expected"), [c[1:] for c in LIMIT_CASES], ids=[c[0] for c in LIMIT_CASES]
)
def test_record_counters_breached_and_outage(
    bounds: dict[str, Any], values: list[float | None], expected: list[tuple[str, int, int, str]]
) -> None:
    g = gate(**bounds)
    rows = fold(g, values)

    def which(r: GaugeRow) -> str:
        hit = [name for name, f in ((BR, breached), (OUT, outage)) if f(g, r)]
        assert len(hit) <= 1, hit
        assert tripped(g, r) == bool(hit)  # tripped is breached or outage
        return hit[0] if hit else NO

    got = [(r.verdict, r.breaches, r.inconclusive, which(r)) for r in rows]
    assert got == expected
    assert [r.readings for r in rows] == list(range(1, len(values) + 1))


def test_record_keeps_last_value_through_a_gap() -> None:
    g = gate(max=6, maxIncreasePercent=25)
    before, gap = fold(g, [4.5, None])
    assert (gap.post_push, gap.delta, gap.delta_percent) == (before.post_push, before.delta, before.delta_percent)
    assert gap.message == "no data"
    assert gap.at == T0 + timedelta(seconds=10)


def test_record_messages() -> None:
    tolerated = fold(gate(max=6, failureLimit=2), [7.0])[-1]
    assert tolerated.message == "7.00 > 6 (breach 1 of 2 tolerated)"
    exhausted = fold(gate(max=6, inconclusiveLimit=1), [None, None])[-1]
    assert exhausted.message == "no data: inconclusive 2 times in a row (limit 1)"
    dry = fold(gate(max=6, dryRun=True), [7.0])[-1]
    assert dry.message == "7.00 > 6 [dry run: not acted on]"


def test_tripped_reads_counters_not_verdict() -> None:
    g = gate(max=6, failureLimit=1, inconclusiveLimit=1)
    base = new_row(g, "canary", 1.0)
    assert not tripped(g, base.model_copy(update={"verdict": "Fail", "breaches": 1}))
    assert tripped(g, base.model_copy(update={"breaches": 2}))
    assert tripped(g, base.model_copy(update={"inconclusive": 2}))
    assert breached(g, base.model_copy(update={"breaches": 2})) and not outage(
        g, base.model_copy(update={"breaches": 2})
    )
    assert outage(g, base.model_copy(update={"inconclusive": 2})) and not breached(
        g, base.model_copy(update={"inconclusive": 2})
    )
    dry = gate(max=6, dryRun=True)
    assert not tripped(dry, new_row(dry, "canary", 1.0).model_copy(update={"breaches": 10, "inconclusive": 10}))


# ---------------------------------------------------------------- threshold text and templating
@pytest.mark.parametrize(
    ("bounds", "text"),
    [
        ({"max": 6, "maxIncreasePercent": 25}, ">6 or >+25%"),
        ({"max": 6}, ">6"),
        ({"min": 0.5}, "<0.5"),
        ({"maxDecreasePercent": 20}, "<-20%"),
        ({"max": 6, "min": 1, "maxIncreasePercent": 25, "maxDecreasePercent": 20}, ">6 or <1 or >+25% or <-20%"),
        ({"max": 0.0000001}, ">1e-07"),
        ({"max": 1234567}, ">1.23457e+06"),
        ({"maxIncreasePercent": 2.5}, ">+2.5%"),
    ],
    ids=["imvu", "max", "min", "decrease", "all-four", "tiny", "large", "fraction"],
)
def test_threshold_text(bounds: dict[str, Any], text: str) -> None:
    assert threshold_text(gate(**bounds)) == text


def test_threshold_text_of_experiment_gate() -> None:
    g = Gate.model_validate({"name": "ab", "experiment": {"name": "gdc", "failOn": "harmOrSrm"}})
    assert threshold_text(g) == "experiment gdc: harmOrSrm"


@pytest.mark.parametrize(
    ("query", "rendered"),
    [
        ('avg(node_load1{role="chat"})', 'avg(node_load1{role="chat"})'),
        ('up{namespace="{{ namespace }}"}', 'up{namespace="shop"}'),
        ('x{phase="{{phase}}",rev="{{  revision  }}"}', 'x{phase="chat",rev="3f9c2e1"}'),
        ("{{ phase }}-{{ phase }}", "chat-chat"),
    ],
    ids=["no-template", "namespace", "tight-and-loose-spacing", "repeated"],
)
def test_render_query(query: str, rendered: str) -> None:
    assert render_query(query, phase="chat", revision="3f9c2e1", namespace="shop") == rendered


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ('x{a="{{ cluster }}"}', "cluster"),
        ("{{ phase }} {{ zone }} {{ app }} {{ zone }}", "app, zone"),
        ("{{ Phase }}", "Phase"),
    ],
    ids=["one", "several-deduplicated-sorted", "case-sensitive"],
)
def test_render_query_rejects_unknown_variables(query: str, names: str) -> None:
    with pytest.raises(ValueError, match=f"unknown template variable\\(s\\) in query: {names}$"):
        render_query(query, phase="chat", revision="3f9c2e1", namespace="shop")


# ---------------------------------------------------------------- experiment gates
EXPERIMENT_CASES: list[tuple[str, str, str | None, bool | None, str, str]] = [
    # id, failOn, decision, srm ok, verdict, message
    ("no-report", "harm", None, None, "Inconclusive", "experiment gdc has no report yet"),
    ("running", "harm", "Running", True, "Pass", "experiment gdc: Running"),
    ("harm", "harm", "Harm:enhanced", True, "Fail", "experiment gdc: Harm:enhanced"),
    ("winner-is-not-harm", "harm", "Winner:enhanced", True, "Pass", "experiment gdc: Winner:enhanced"),
    ("harm-gate-ignores-srm", "harm", "Running", False, "Pass", "experiment gdc: Running"),
    ("srm", "srm", "Running", False, "Fail", "experiment gdc: sample ratio mismatch"),
    ("srm-gate-ignores-harm", "srm", "Harm:enhanced", True, "Pass", "experiment gdc: Harm:enhanced"),
    ("srm-unknown-passes", "srm", "Running", None, "Pass", "experiment gdc: Running"),
    ("srm-gate-harm-and-srm-names-srm", "srm", "Harm:enhanced", False, "Fail", "experiment gdc: sample ratio mismatch"),
    ("either-harm", "harmOrSrm", "Harm:enhanced", True, "Fail", "experiment gdc: Harm:enhanced"),
    ("either-srm", "harmOrSrm", "NoSignificance", False, "Fail", "experiment gdc: sample ratio mismatch"),
    ("either-both", "harmOrSrm", "Harm:b", False, "Fail", "experiment gdc: Harm:b; sample ratio mismatch"),
    ("either-neither", "harmOrSrm", "NoSignificance", True, "Pass", "experiment gdc: NoSignificance"),
]


@pytest.mark.parametrize(
    ("fail_on", "decision", "srm_ok", "verdict", "message"),
    [c[1:] for c in EXPERIMENT_CASES],
    ids=[c[0] for c in EXPERIMENT_CASES],
)
def test_judge_experiment(fail_on: str, decision: str | None, srm_ok: bool | None, verdict: str, message: str) -> None:
    g = Gate.model_validate({"name": "ab", "experiment": {"name": "gdc", "failOn": fail_on}})
    assert judge_experiment(g, decision, srm_ok) == Judgement(verdict, message)  # type: ignore[arg-type]
