"""Continuous metrics from sufficient statistics, Welch with and without CUPED: against numpy/scipy per-user data."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from scipy import stats as sps

from controller.experiments.cuped import SufficientStats, build_cuped
from controller.experiments.hashing import ExperimentConfig
from controller.experiments.plan import ExperimentFacts, Refresh, reduce_experiment
from controller.experiments.report import build_report
from controller.models.experiment import ExperimentSpec, ExperimentStatus
from controller.sdk import (
    COVARIATE_SUM,
    COVARIATE_SUM_SQUARES,
    EXPOSURES,
    VALUE_COVARIATE_PRODUCTS,
    VALUE_SUM,
    VALUE_SUM_SQUARES,
    Experiments,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def synthetic(seed: int, n_c: int = 4000, n_t: int = 4100, effect: float = 0.15) -> dict[str, tuple[Any, Any]]:
    """Per-user (x, y): y correlates with the pre-period x; the treatment adds ``effect``."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, n, lift in (("control", n_c, 0.0), ("enhanced", n_t, effect)):
        x = rng.gamma(2.0, 1.5, n)
        y = np.maximum(0.0, 1.0 + 0.8 * x + rng.normal(0, 1.0, n) + lift)
        out[name] = (x, y)
    return out


def sums(data: dict[str, tuple[Any, Any]]) -> list[SufficientStats]:
    return [
        SufficientStats(
            name,
            len(y),
            float(y.sum()),
            float((y * y).sum()),
            float(x.sum()),
            float((x * x).sum()),
            float((x * y).sum()),
        )
        for name, (x, y) in data.items()
    ]


def numpy_cuped(data: dict[str, tuple[Any, Any]]) -> tuple[float, dict[str, Any], float, float]:
    """θ pooled within branches, adjusted per-user values, Welch p-value on them, variance reduction."""
    num = sum(((x - x.mean()) * (y - y.mean())).sum() for x, y in data.values())
    den = sum(((x - x.mean()) ** 2).sum() for x, _ in data.values())
    theta = num / den
    x_all = np.concatenate([x for x, _ in data.values()]).mean()
    adjusted = {name: y - theta * (x - x_all) for name, (x, y) in data.items()}
    (_, yc), (_, yt) = data["control"], data["enhanced"]
    ac, at = adjusted["control"], adjusted["enhanced"]
    p = float(sps.ttest_ind(ac, at, equal_var=False).pvalue)
    before = yc.var(ddof=1) / len(yc) + yt.var(ddof=1) / len(yt)
    after = ac.var(ddof=1) / len(ac) + at.var(ddof=1) / len(at)
    return float(theta), adjusted, p, float(1 - after / before)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cuped_matches_numpy_on_per_user_data(seed: int) -> None:
    data = synthetic(seed)
    result = build_cuped(sums(data), {"control": 0.5, "enhanced": 0.5}, 0.05, "control")
    theta, adjusted, p, reduction = numpy_cuped(data)
    assert result.error is None and result.report is not None and result.theta is not None
    assert result.theta == pytest.approx(theta, rel=1e-9)
    assert result.variance_reduction["enhanced"] == pytest.approx(reduction, abs=1e-9)
    assert 0.3 < reduction < 0.95  # the covariate explains a good part of the variance
    row = result.report.row("enhanced")
    control = result.report.row("control")
    assert control.mean == pytest.approx(adjusted["control"].mean(), rel=1e-9)
    assert control.variance == pytest.approx(adjusted["control"].var(ddof=1), rel=1e-9)
    assert row.mean == pytest.approx(adjusted["enhanced"].mean(), rel=1e-9)
    assert row.p_value == pytest.approx(p, rel=1e-6)


def test_unadjusted_welch_from_sums_matches_scipy() -> None:
    data = synthetic(4)
    report = build_report([s.counts() for s in sums(data)], None, 0.05, "control")
    (_, yc), (_, yt) = data["control"], data["enhanced"]
    row = report.row("enhanced")
    assert row.mean == pytest.approx(yt.mean(), rel=1e-12)
    assert row.variance == pytest.approx(yt.var(ddof=1), rel=1e-9)
    assert row.p_value == pytest.approx(float(sps.ttest_ind(yc, yt, equal_var=False).pvalue), rel=1e-6)


def test_cuped_finds_an_effect_the_plain_welch_test_misses() -> None:
    data = synthetic(5, n_c=1500, n_t=1500, effect=0.12)
    plain = build_report([s.counts() for s in sums(data)], None, 0.05, "control").row("enhanced")
    cuped = build_cuped(sums(data), None, 0.05, "control")
    assert cuped.report is not None
    adjusted = cuped.report.row("enhanced")
    assert plain.p_value is not None and adjusted.p_value is not None
    assert adjusted.p_value < 0.05 < plain.p_value


@pytest.mark.parametrize(
    ("branches", "message"),
    [
        ([SufficientStats("control", 1, 1, 1, 1, 1, 1), SufficientStats("b", 5, 1, 1, 1, 1, 1)], "at least 2 users"),
        ([SufficientStats("control", 5, 5, 9, None, None, None), SufficientStats("b", 5, 5, 9)], "no covariate"),
        ([SufficientStats("control", 4, 4, 8, 4, 4, 4), SufficientStats("b", 4, 8, 20, 4, 4, 8)], "does not vary"),
        ([SufficientStats("control", 4, float("nan"), 8, 4, 4, 4), SufficientStats("b", 4, 8, 20, 4, 4, 8)], "finite"),
    ],
    ids=["one-user", "no-covariate", "constant-covariate", "nan"],
)
def test_degenerate_sums_give_an_error(branches: list[SufficientStats], message: str) -> None:
    result = build_cuped(branches, None, 0.05, "control")
    assert result.report is None and result.error is not None and message in result.error


def spec(covariate: bool = True) -> ExperimentSpec:
    value: dict[str, Any] = {"sum": "ys", "sumSquares": "yss"}
    if covariate:
        value["covariate"] = {"sum": "xs", "sumSquares": "xss", "sumProducts": "xys"}
    return ExperimentSpec.model_validate(
        {
            "key": "k",
            "branches": {"control": 0.5, "enhanced": 0.5},
            "metric": {"exposures": "n", "value": value},
            "minSamples": 100,
        }
    )


def facts_for(data: dict[str, tuple[Any, Any]]) -> ExperimentFacts:
    s = sums(data)
    return ExperimentFacts(
        now=NOW,
        exposures={b.name: float(b.n) for b in s},
        value_sums={
            "sum": {b.name: b.sum for b in s},
            "sumSquares": {b.name: b.sum_squares for b in s},
            "xSum": {b.name: b.x_sum or 0.0 for b in s},
            "xSumSquares": {b.name: b.x_sum_squares or 0.0 for b in s},
            "xySum": {b.name: b.xy_sum or 0.0 for b in s},
        },
        counted=True,
    )


def test_status_carries_welch_and_cuped_and_the_decision_reads_cuped() -> None:
    data = synthetic(5, n_c=1500, n_t=1500, effect=0.12)
    status = reduce_experiment(spec(), ExperimentStatus(), Refresh(), None, facts_for(data))  # type: ignore[arg-type]
    _, _, p, reduction = numpy_cuped(data)
    assert status.report[1].conversions is None and status.report[1].mean == pytest.approx(data["enhanced"][1].mean())
    assert status.cuped is not None and status.cuped.error is None
    assert status.cuped.variance_reduction["enhanced"] == pytest.approx(reduction, abs=1e-9)
    assert status.cuped.report[1].p_value == pytest.approx(p, rel=1e-6)
    assert status.decision == "Winner:enhanced"  # CUPED sees it; the unadjusted p is above 0.05
    assert status.report[1].p_value is not None and status.report[1].p_value > 0.05
    plain = reduce_experiment(spec(covariate=False), ExperimentStatus(), Refresh(), None, facts_for(data))  # type: ignore[arg-type]
    assert plain.cuped is None and plain.decision == "NoSignificance"


def test_value_and_conversions_are_exclusive() -> None:
    with pytest.raises(ValueError, match="not both"):
        ExperimentSpec.model_validate(
            {
                "key": "k",
                "branches": {"control": 0.5, "b": 0.5},
                "metric": {"exposures": "n", "conversions": "c", "value": {"sum": "s", "sumSquares": "ss"}},
            }
        )


def test_sdk_record_exports_the_sufficient_statistics() -> None:
    registry = CollectorRegistry()
    config = ExperimentConfig(
        key="k",
        seed="k",
        rollout=100,
        branches=(("control", 0.5), ("enhanced", 0.5)),
        force_users=(("qa", "enhanced"),),
    )
    sdk = Experiments([config], registry=registry)
    data = synthetic(6, n_c=300, n_t=300)
    xs = np.concatenate([data["control"][0], data["enhanced"][0]])
    ys = np.concatenate([data["control"][1], data["enhanced"][1]])
    expected: dict[str, dict[str, float]] = {}
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        branch = sdk.expose(f"user-{i}", "k")
        assert branch is not None and sdk.record("k", branch, float(y), covariate=float(x))
        e = expected.setdefault(
            branch,
            dict.fromkeys(
                (VALUE_SUM, VALUE_SUM_SQUARES, COVARIATE_SUM, COVARIATE_SUM_SQUARES, VALUE_COVARIATE_PRODUCTS), 0.0
            ),
        )
        e[VALUE_SUM] += y
        e[VALUE_SUM_SQUARES] += y * y
        e[COVARIATE_SUM] += x
        e[COVARIATE_SUM_SQUARES] += x * x
        e[VALUE_COVARIATE_PRODUCTS] += x * y
    assert not sdk.record("k", sdk.expose("qa", "k"), 5.0)  # forced: not in the analysis
    assert not sdk.record("k", None, 1.0) and not sdk.record("other", "control", 1.0)
    with pytest.raises(ValueError, match=">= 0"):
        sdk.record("k", "control", -1.0)
    got: dict[str, dict[str, float]] = {}
    n: dict[str, float] = {}
    for metric in registry.collect():
        for s in metric.samples:
            if s.name in (VALUE_SUM, VALUE_SUM_SQUARES, COVARIATE_SUM, COVARIATE_SUM_SQUARES, VALUE_COVARIATE_PRODUCTS):
                got.setdefault(s.labels["branch"], {})[s.name] = s.value
            if s.name == EXPOSURES:
                n[s.labels["branch"]] = s.value
    for branch, values in expected.items():
        for name, value in values.items():
            assert got[branch][name] == pytest.approx(value, rel=1e-12)
    assert sum(n.values()) == 600
