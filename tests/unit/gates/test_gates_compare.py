"""The compare gate's judge: Mann-Whitney against scipy reference vectors, the verdict table, groups and
the templated queries. Pure: no Prometheus."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.gates.compare import (
    CompareReading,
    Samples,
    alternative,
    groups,
    judge_compare,
    mann_whitney,
    pods_regex,
    relative_percent,
    render_compare,
    threshold_text,
    window,
    workloads_regex,
)
from controller.gates.evaluate import new_row
from controller.gates.kinds import fold_reading
from controller.models.release import CompareGate, Gate, GaugeRow, PhaseStatus
from controller.release.actions import Readings

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "mannwhitney_reference.json").read_text("utf-8"))
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("case", VECTORS["cases"], ids=[c["name"] for c in VECTORS["cases"]])
def test_mann_whitney_matches_scipy_reference(case: dict[str, Any]) -> None:
    got = mann_whitney(case["canary"], case["baseline"], case["alternative"])
    assert got.error is None
    assert got.u == pytest.approx(case["u"], abs=1e-9)
    assert got.p_value == pytest.approx(case["p_value"], rel=1e-9, abs=1e-300)
    n1, n2 = len(case["canary"]), len(case["baseline"])
    assert got.cliffs_delta == pytest.approx(2 * case["u"] / (n1 * n2) - 1)


def test_mann_whitney_degenerate_input_is_an_error_not_nan() -> None:
    assert mann_whitney([], [1.0]).error == "a group has no samples"
    assert mann_whitney([float("nan")], [1.0]).error == "samples must be finite"
    same = mann_whitney([5.0] * 20, [5.0] * 20, "greater")
    assert (same.error, same.p_value, same.cliffs_delta) == (None, 1.0, 0.0)


def test_alternative_per_direction() -> None:
    assert [alternative(d) for d in ("increase", "decrease", "either")] == ["greater", "less", "two-sided"]


def test_relative_percent() -> None:
    assert relative_percent(212, 100) == pytest.approx(112.0)
    assert relative_percent(-5, -10) == pytest.approx(50.0)
    assert relative_percent(0, 0) == 0.0
    assert relative_percent(1, 0) is None


def cmp(**kw: Any) -> CompareGate:
    return CompareGate(query='lat{workload=~"{{ workloads }}"}', **kw)


def reading(canary: list[float] | None, baseline: list[float] | None, **kw: Any) -> CompareReading:
    return CompareReading(
        at=T0,
        canary=None if canary is None else Samples(tuple(canary), 1),
        baseline=None if baseline is None else Samples(tuple(baseline), 1),
        **kw,
    )


CASE = {c["name"]: c for c in VECTORS["cases"]}
SHIFTED = (CASE["shifted"]["canary"], CASE["shifted"]["baseline"])
EQUAL = (CASE["equal"]["canary"], CASE["equal"]["baseline"])
DRIFT = (CASE["drift-together"]["canary"], CASE["drift-together"]["baseline"])
DECREASE = (CASE["decrease"]["canary"], CASE["decrease"]["baseline"])

VERDICTS = [
    ("shifted-up-fails", cmp(), reading(*SHIFTED), "Fail", "above baseline"),
    ("shifted-up-within-a-large-bound", cmp(max_increase_percent=150), reading(*SHIFTED), "Pass", "within the bound"),
    ("shifted-up-beyond-the-bound", cmp(max_increase_percent=50), reading(*SHIFTED), "Fail", "more than 50%"),
    ("shift-up-is-fine-when-decrease-is-bad", cmp(direction="decrease"), reading(*SHIFTED), "Pass", "p≥0.05"),
    ("decrease-fails-when-decrease-is-bad", cmp(direction="decrease"), reading(*DECREASE), "Fail", "below baseline"),
    ("decrease-either", cmp(direction="either", max_decrease_percent=10), reading(*DECREASE), "Fail", "more than 10%"),
    ("equal-distributions-pass", cmp(), reading(*EQUAL), "Pass", "no significant difference"),
    ("drift-together-passes", cmp(), reading(*DRIFT), "Pass", "no significant difference"),
    ("effect-size-bound", cmp(min_effect_size=1.0), reading([2.0, 3.0] * 10 + [0.5], [1.0, 2.0] * 10), "Pass", "δ"),
    ("all-equal", cmp(), reading([1.0] * 20, [1.0] * 20), "Pass", "p=1"),
    ("too-few-canary", cmp(min_samples=10), reading([1.0] * 9, [1.0] * 30), "Inconclusive", "canary n=9"),
    ("no-data", cmp(), reading([], []), "Inconclusive", "too few samples"),
    ("group-missing", cmp(), reading([1.0], None), "Inconclusive", "no reading of the baseline"),
    ("unreadable", cmp(), reading(None, None, error="no baseline"), "Inconclusive", "no reading: no baseline"),
    ("rejected", cmp(), reading(None, None, error="bad template", invalid_query=True), "Error", "query rejected"),
]


@pytest.mark.parametrize(("c", "r", "verdict", "says"), [v[1:] for v in VERDICTS], ids=[v[0] for v in VERDICTS])
def test_verdicts(c: CompareGate, r: CompareReading, verdict: str, says: str) -> None:
    j = judge_compare(c, r)
    assert j.verdict == verdict, j.message
    assert says in j.message


def test_rejected_group_query_is_an_error() -> None:
    r = CompareReading(at=T0, canary=Samples(error="parse error", invalid_query=True), baseline=Samples((1.0,), 1))
    assert judge_compare(cmp(), r).verdict == "Error"
    r = CompareReading(at=T0, canary=Samples((1.0,), 1), baseline=Samples(error="timeout"))
    assert judge_compare(cmp(), r).verdict == "Inconclusive"


def test_the_message_shows_both_medians_and_the_test() -> None:
    j = judge_compare(cmp(), reading(*SHIFTED))
    assert re.match(
        r"canary median [\d.]+ vs baseline [\d.]+ \(\+\d+\.\d%\), U=3600, p=1\.8e-21, δ=\+1\.00, n=60/60", j.message
    )
    assert j.canary_median is not None and j.baseline_median is not None and j.canary_median > 2 * j.baseline_median


def fold(gate: Gate, row: GaugeRow, r: CompareReading, now: datetime) -> GaugeRow:
    """The row as the reducer folds one compare reading into it."""
    folded = fold_reading(gate, row, Readings({}, checks={gate.name: r}), now)
    assert folded is not None
    return folded


def test_fold_fills_the_gauges_row_with_both_summaries() -> None:
    gate = Gate(name="latency", compare=cmp(max_increase_percent=25), failure_limit=1)
    row = new_row(gate, "canary", None)
    once = fold(gate, row, reading(*SHIFTED), T0)
    j = judge_compare(gate.compare, reading(*SHIFTED))  # type: ignore[arg-type]
    assert (once.post_push, once.pre_push) == (j.canary_median, j.baseline_median)
    assert once.delta == pytest.approx(j.delta) and once.delta_percent == pytest.approx(j.delta_percent)
    assert once.threshold == "canary vs baseline median >+25% (p<0.05)"
    assert (once.verdict, once.breaches, once.readings) == ("Fail", 1, 1) and "tolerated" in once.message
    twice = fold(gate, once, reading(*SHIFTED), T0 + timedelta(seconds=5))
    assert twice.breaches == 2 and twice.at == T0 + timedelta(seconds=5)
    passed = fold(gate, twice, reading(*EQUAL), T0 + timedelta(seconds=10))
    assert (passed.verdict, passed.breaches) == ("Pass", 0)


@pytest.mark.parametrize(
    ("span", "warming", "says"),
    [
        (4.0, True, "collecting samples: canary n=4, baseline n=4 (minSamples 10); window 4s of the 10s"),
        (9.9, True, "collecting samples"),
        (10.0, False, "too few samples: canary n=4"),
        (None, False, "too few samples"),
    ],
    ids=["window-just-opened", "window-almost-long-enough", "window-long-enough", "window-unknown"],
)
def test_too_few_samples_while_the_window_is_shorter_than_min_samples_steps_is_warming_up(
    span: float | None, warming: bool, says: str
) -> None:
    j = judge_compare(cmp(min_samples=10), reading([1.0] * 4, [1.0] * 4, span=span))
    assert (j.verdict, j.warming) == ("Inconclusive", warming)
    assert says in j.message


def test_warming_up_readings_do_not_count_toward_inconclusive_limit() -> None:
    """A compare gate needs minSamples steps of data before its first verdict: readings before that are
    expected to be inconclusive and must not pause or fail the push by inconclusiveLimit."""
    gate = Gate(name="latency", compare=cmp(min_samples=10), inconclusive_limit=1)
    row = new_row(gate, "canary", None)
    for i in range(5):  # five readings in the first 5 s of the window
        row = fold(gate, row, reading([1.0] * i, [1.0] * i, span=float(i)), T0 + timedelta(seconds=i))
    assert (row.verdict, row.inconclusive, row.readings) == ("Inconclusive", 0, 5)
    row = fold(gate, row, reading([1.0] * 4, [1.0] * 4, span=30.0), T0 + timedelta(seconds=30))  # data stopped
    assert row.inconclusive == 1
    row = fold(gate, row, reading(*EQUAL, span=60.0), T0 + timedelta(seconds=60))
    assert (row.verdict, row.inconclusive) == ("Pass", 0)


def test_threshold_text_per_direction() -> None:
    assert threshold_text(cmp(direction="either", max_decrease_percent=5, min_effect_size=0.33)) == (
        "canary vs baseline median >+0% or <-5% (p<0.05, |δ|≥0.33)"
    )


# ---------------------------------------------------------------- groups and queries


def phases() -> list[PhaseStatus]:
    return [
        PhaseStatus(name="canary", workloads=["Deployment/web-canary"]),
        PhaseStatus(name="web", workloads=["Deployment/web", "StatefulSet/db"]),
        PhaseStatus(name="rest", workloads=["DaemonSet/agent"], deployments=[]),
        PhaseStatus(name="empty"),
    ]


def test_groups_are_pushed_so_far_and_left_for_later() -> None:
    assert groups(phases(), "canary") == (
        ("Deployment/web-canary",),
        ("Deployment/web", "StatefulSet/db", "DaemonSet/agent"),
    )
    assert groups(phases(), "web") == (
        ("Deployment/web-canary", "Deployment/web", "StatefulSet/db"),
        ("DaemonSet/agent",),
    )
    assert groups(phases(), "empty")[1] == ()
    assert groups(phases(), "nope") == ((), ())
    old = [PhaseStatus(name="a", deployments=["x"]), PhaseStatus(name="b", deployments=["y"])]
    assert groups(old, "a") == (("x",), ("y",))  # older statuses: bare Deployment names


def test_workloads_regex_is_an_exact_alternation() -> None:
    rx = workloads_regex(["Deployment/web", "StatefulSet/db.v2", "Deployment/web"])
    assert rx == "(db[.]v2|web)"
    assert re.fullmatch(rx, "web") and re.fullmatch(rx, "db.v2")
    assert not re.fullmatch(rx, "web-canary") and not re.fullmatch(rx, "dbxv2")


POD_NAMES = [
    ("Deployment/web", "web-7c5b4f9d8-x2kzq", True),
    ("Deployment/web", "web-canary-7c5b4f9d8-x2kzq", False),  # another Deployment's pod: vowels never appear
    ("Deployment/web-canary", "web-canary-85d9c6b7f4-4vbq2", True),
    ("StatefulSet/db", "db-0", True),
    ("StatefulSet/db", "db-12", True),
    ("StatefulSet/db", "db-x2kzq", False),
    ("DaemonSet/agent", "agent-x2kzq", True),
    ("DaemonSet/agent", "agent-7c5b4f9d8-x2kzq", False),
]


@pytest.mark.parametrize(("key", "pod", "matches"), POD_NAMES, ids=[p[1] + ("" if p[2] else "-not") for p in POD_NAMES])
def test_pods_regex_matches_generated_pod_names(key: str, pod: str, matches: bool) -> None:
    assert bool(re.fullmatch(pods_regex([key]), pod)) is matches


def test_render_compare_fills_both_groups_and_the_usual_variables() -> None:
    q = 'avg(lat{namespace="{{ namespace }}", workload=~"{{workloads}}", pod=~"{{ pods }}", phase="{{ phase }}"})'
    got = render_compare(q, ["Deployment/web"], phase="canary", revision="abc", namespace="shop")
    assert got == (
        'avg(lat{namespace="shop", workload=~"(web)", pod=~"(web-[bcdfghjklmnpqrstvwxz2456789]{1,10}-'
        '[bcdfghjklmnpqrstvwxz2456789]{5})", phase="canary"})'
    )
    with pytest.raises(ValueError, match="unknown template variable"):
        render_compare("x{a=~'{{ nodes }}'}", ["Deployment/web"], phase="p", revision="r", namespace="n")


def test_window_starts_when_the_phase_became_available_capped_to_window() -> None:
    c = cmp(window="2m")
    p = PhaseStatus(name="canary", started_at=T0, available_at=T0 + timedelta(seconds=20))
    assert window(c, p, T0 + timedelta(seconds=50)) == (T0 + timedelta(seconds=20), T0 + timedelta(seconds=50))
    assert window(c, p, T0 + timedelta(minutes=10)) == (T0 + timedelta(minutes=8), T0 + timedelta(minutes=10))
    assert window(c, None, T0) == (T0 - timedelta(minutes=2), T0)
