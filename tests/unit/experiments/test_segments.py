"""Segments and the balance check per dimension: against a hand-computed chi-square and scipy."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from scipy import stats as sps

from controller.experiments import stats
from controller.experiments.hashing import ExperimentConfig
from controller.experiments.plan import ExperimentFacts, Refresh, experiment_events, reduce_experiment
from controller.experiments.reconcile import evaluate_segments
from controller.experiments.segments import DEFAULT_DIMENSION, build_segments
from controller.models.experiment import ExperimentSpec, ExperimentStatus
from controller.sdk import SEGMENT_CONVERSIONS, SEGMENT_EXPOSURES, Experiments

NOW = datetime(2011, 8, 15, 12, 0, tzinfo=UTC)
IMVU_EXPOSURES = {"control": 148266.0, "enhanced": 150702.0}
IMVU_CONVERSIONS = {"control": 64630.0, "enhanced": 66903.0}
WEIGHTS = {"control": 0.5, "enhanced": 0.5}
# platform: balanced; country: "de" is badly split (300 vs 700), "fr" fine.
EXPOSURES = {
    ("control", "platform", "ios"): 5020.0,
    ("enhanced", "platform", "ios"): 4980.0,
    ("control", "platform", "web"): 2990.0,
    ("enhanced", "platform", "web"): 3010.0,
    ("control", "country", "de"): 300.0,
    ("enhanced", "country", "de"): 700.0,
    ("control", "country", "fr"): 1010.0,
    ("enhanced", "country", "fr"): 990.0,
}
CONVERSIONS = {
    ("control", "platform", "ios"): 2000.0,
    ("enhanced", "platform", "ios"): 2150.0,
    ("control", "platform", "web"): 900.0,
    ("enhanced", "platform", "web"): 905.0,
}


def test_balance_test_matches_a_hand_computed_chi_square() -> None:
    # segments de (300, 700) and fr (1010, 990), weights 1/2 each:
    # de: E = 500, 500 → (200² + 200²) / 500 = 160;  fr: E = 1000, 1000 → (10² + 10²) / 1000 = 0.2
    result = stats.balance_test([[300, 700], [1010, 990]], [0.5, 0.5])
    assert result.chi2 == pytest.approx(160.2, rel=1e-12)
    assert result.df == 2
    assert result.p_value == pytest.approx(math.exp(-160.2 / 2), rel=1e-9)  # chi2 sf with 2 df is exp(-x/2)
    assert result.p_value == pytest.approx(float(sps.chi2.sf(160.2, 2)), rel=1e-12)
    assert result.expected == (500.0, 500.0, 1000.0, 1000.0)


def test_balance_test_with_uneven_weights_and_three_branches_against_scipy() -> None:
    table = [[310, 290, 400], [95, 120, 185], [0, 0, 0]]
    weights = [0.3, 0.3, 0.4]
    result = stats.balance_test(table, weights)
    per_segment = [sps.chisquare(row, [sum(row) * w for w in weights]) for row in table[:2]]
    chi2 = sum(float(r.statistic) for r in per_segment)
    assert result.chi2 == pytest.approx(chi2, rel=1e-12)
    assert result.df == 4  # the empty segment adds nothing
    assert result.p_value == pytest.approx(float(sps.chi2.sf(chi2, 4)), rel=1e-12)


@pytest.mark.parametrize(
    ("table", "weights", "expect"),
    [
        ([[10, 5]], [1.0, 0.0], "p0"),
        ([[0, 0]], [0.5, 0.5], "insufficient data"),
        ([[1, 2, 3]], [0.5, 0.5], "invalid input"),
        ([[-1, 2]], [0.5, 0.5], "invalid input"),
        ([], [0.5, 0.5], "invalid input"),
    ],
    ids=["zero-weight-branch-with-samples", "no-samples", "ragged", "negative", "empty"],
)
def test_balance_test_degenerate_input(table: list[list[int]], weights: list[float], expect: str) -> None:
    result = stats.balance_test(table, weights)
    if expect == "p0":
        assert result.p_value == 0.0 and result.error is None
    else:
        assert result.p_value is None and result.error is not None and expect in result.error


def test_segments_get_their_own_rows_and_balance_per_dimension() -> None:
    reports, balances = build_segments(
        ["control", "enhanced"], WEIGHTS, EXPOSURES, CONVERSIONS, alpha=0.05, control="control"
    )
    assert [(r.dimension, r.segment) for r in reports] == [
        ("country", "fr"),
        ("country", "de"),
        ("platform", "ios"),
        ("platform", "web"),
    ]  # dimensions by name, segments by samples
    ios = reports[2].report
    assert [(row.branch, row.samples, row.conversions) for row in ios.rows] == [
        ("control", 5020, 2000),
        ("enhanced", 4980, 2150),
    ]
    z = stats.two_proportion_ztest(2000, 5020, 2150, 4980)
    assert ios.row("enhanced").p_value == z.p_value
    country, platform = balances
    assert (country.dimension, country.segments, country.ok, country.imbalanced) == ("country", 2, False, ("de",))
    assert country.chi_square == pytest.approx(160.2, rel=1e-12)
    assert platform.ok and platform.imbalanced == ()
    expected = float(sps.chi2.sf(((5020 - 5000) ** 2 * 2) / 5000 + ((2990 - 3000) ** 2 * 2) / 3000, 2))
    assert platform.p_value == pytest.approx(expected, rel=1e-12)
    assert json.loads(json.dumps(country.to_dict()))["pValue"] == country.p_value  # full precision


def test_series_without_a_dimension_label_and_branches_missing_in_a_segment() -> None:
    reports, balances = build_segments(
        ["control", "enhanced"],
        WEIGHTS,
        {("control", "", "new"): 40.0, ("enhanced", "", "old"): 60.0, ("control", "", ""): 5.0},
        None,
        alpha=0.05,
        control="control",
    )
    assert {r.dimension for r in reports} == {DEFAULT_DIMENSION}
    new = next(r for r in reports if r.segment == "new")
    assert [row.samples for row in new.report.rows] == [40, 0]
    assert balances[0].segments == 2 and balances[0].p_value is not None and not balances[0].ok


def spec(**fields: Any) -> ExperimentSpec:
    body: dict[str, Any] = {
        "key": "GDCEurope2011",
        "branches": WEIGHTS,
        "metric": {
            "exposures": "e",
            "segments": {"exposures": "sum by (branch, dimension, segment) (x)"},
        },
    }
    body.update(fields)
    return ExperimentSpec.model_validate(body)


def test_refresh_writes_segment_rows_balance_and_an_imbalance_event() -> None:
    s = spec()
    facts = ExperimentFacts(
        now=NOW,
        generation=1,
        exposures=IMVU_EXPOSURES,
        conversions=IMVU_CONVERSIONS,
        segment_exposures=EXPOSURES,
        segment_conversions=CONVERSIONS,
        counted=True,
    )
    before = ExperimentStatus()
    after = reduce_experiment(s, before, Refresh(), None, facts)  # type: ignore[arg-type]
    assert [(x.dimension, x.segment) for x in after.segments] == [
        ("country", "fr"),
        ("country", "de"),
        ("platform", "ios"),
        ("platform", "web"),
    ]
    assert [(b.dimension, b.ok, b.imbalanced) for b in after.balance] == [
        ("country", False, ["de"]),
        ("platform", True, []),
    ]
    de = after.segments[1]
    assert de.srm is not None and not de.srm.ok
    assert after.message is not None and "imbalanced by country (de)" in after.message
    events = experiment_events(before, after, Refresh(), None)  # type: ignore[arg-type]
    assert ("Warning", "SegmentImbalance", "branches are imbalanced by country (segments de)") in events
    again = experiment_events(after, after, Refresh(), None)  # type: ignore[arg-type]
    assert not any(reason == "SegmentImbalance" for _, reason, _ in again)
    # the status survives a JSON round trip (what the API server stores)
    stored = ExperimentStatus.model_validate(json.loads(json.dumps(after.model_dump(mode="json", by_alias=True))))
    assert stored == after


def test_no_segment_counts_no_segments() -> None:
    assert evaluate_segments(spec(), None, None) == ([], [])


def test_sdk_counts_segments_for_hashed_users_only() -> None:
    registry = CollectorRegistry()
    config = ExperimentConfig(
        key="k", seed="k", rollout=100, branches=(("control", 0.5), ("enhanced", 0.5)), force_users=(("qa", "control"),)
    )
    sdk = Experiments([config], registry=registry)
    seen: dict[tuple[str, str], int] = {}
    for i in range(500):
        platform = "ios" if i % 3 else "web"
        branch = sdk.expose(f"u{i}", "k", segments={"platform": platform})
        assert branch is not None
        seen[(branch, platform)] = seen.get((branch, platform), 0) + 1
        if i % 5 == 0:
            sdk.convert("k", branch, segments={"platform": platform})
    sdk.expose("qa", "k", segments={"platform": "ios"})  # forced: not in any analysis series
    got: dict[tuple[str, str], float] = {}
    conversions = 0.0
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == SEGMENT_EXPOSURES:
                got[(sample.labels["branch"], sample.labels["segment"])] = sample.value
                assert sample.labels["dimension"] == "platform"
            if sample.name == SEGMENT_CONVERSIONS:
                conversions += sample.value
    assert got == {k: float(v) for k, v in seen.items()}
    assert conversions == 100
