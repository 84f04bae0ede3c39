"""controller.experiments.stats against statsmodels/scipy reference vectors, the IMVU report, and guards."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.experiments import stats

REF: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "stats_reference.json").read_text(encoding="utf-8")
)


def _cases(section: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = REF[section]["cases"]
    return cases


def _ids(section: str) -> list[str]:
    return [case["name"] for case in _cases(section)]


def test_reference_file_records_how_it_was_made() -> None:
    assert "make_stats_vectors.py" in REF["_command"]
    for section in ("two_proportion", "welch", "srm", "adjust", "sequential"):
        assert REF[section]["_command"]


@pytest.mark.parametrize("case", _cases("two_proportion"), ids=_ids("two_proportion"))
def test_two_proportion_ztest_matches_statsmodels(case: dict[str, Any]) -> None:
    ca, na, cb, nb, alpha = case["input"]
    result = stats.two_proportion_ztest(ca, na, cb, nb)
    assert result.error is None
    assert result.statistic == pytest.approx(case["z"], rel=1e-10)
    assert result.p_value == pytest.approx(case["p_value"], rel=1e-7)

    pa, pb = ca / na, cb / nb
    lifted = stats.lift(pa, pa * (1 - pa), na, pb, pb * (1 - pb), nb, alpha=alpha)
    assert lifted.error is None
    assert lifted.absolute == pytest.approx(pb - pa, rel=1e-12)
    assert lifted.absolute_ci == pytest.approx(case["absolute_ci"], rel=1e-9)
    assert lifted.relative == pytest.approx(case["relative"], rel=1e-9)
    assert lifted.relative_ci == pytest.approx(case["relative_ci"], rel=1e-6)


@pytest.mark.parametrize("case", _cases("welch"), ids=_ids("welch"))
def test_welch_ttest_matches_scipy_and_statsmodels(case: dict[str, Any]) -> None:
    ma, va, na, mb, vb, nb, alpha = case["input"]
    result = stats.welch_ttest(ma, va, na, mb, vb, nb)
    assert result.error is None
    assert result.statistic == pytest.approx(case["t"], rel=1e-10)
    assert result.p_value == pytest.approx(case["p_value"], rel=1e-7)
    assert result.df == pytest.approx(case["df"], rel=1e-9)

    lifted = stats.lift(ma, va, na, mb, vb, nb, alpha=alpha)
    assert lifted.absolute_ci == pytest.approx(case["absolute_ci"], rel=1e-9)
    assert lifted.relative == pytest.approx(case["relative"], rel=1e-9)
    assert lifted.relative_ci == pytest.approx(case["relative_ci"], rel=1e-6)


@pytest.mark.parametrize("case", _cases("srm"), ids=_ids("srm"))
def test_srm_matches_scipy_chisquare(case: dict[str, Any]) -> None:
    result = stats.srm_test(case["observed"], case["weights"])
    assert result.error is None
    assert result.chi2 == pytest.approx(case["chi2"], rel=1e-10)
    assert result.p_value == pytest.approx(case["p_value"], rel=1e-8)
    assert result.df == len(case["observed"]) - 1


@pytest.mark.parametrize("case", _cases("adjust"), ids=_ids("adjust"))
def test_holm_and_bh_match_statsmodels(case: dict[str, Any]) -> None:
    assert stats.holm(case["p_values"]) == pytest.approx(case["holm"], rel=1e-12)
    assert stats.benjamini_hochberg(case["p_values"]) == pytest.approx(case["bh"], rel=1e-12)


def test_adjustments_skip_missing_p_values() -> None:
    assert stats.holm([0.01, None, 0.04]) == pytest.approx([0.02, None, 0.04])
    assert stats.benjamini_hochberg([None, 0.01, 0.04]) == [None, pytest.approx(0.02), pytest.approx(0.04)]
    assert stats.holm([]) == []
    with pytest.raises(ValueError, match="must be in"):
        stats.holm([1.5])


@pytest.mark.parametrize("case", _cases("sequential"), ids=_ids("sequential"))
def test_sequential_matches_numerically_integrated_mixture(case: dict[str, Any]) -> None:
    estimate, se, n, alpha, tuning = case["input"]
    result = stats.sequential_test(estimate, se, n, alpha=alpha, tuning=tuning)
    assert result.error is None
    assert result.p_value == pytest.approx(case["p_value"], rel=1e-6)
    assert result.ci == pytest.approx(case["ci"], rel=1e-7)


def test_sequential_rho_is_growthbooks_choice() -> None:
    # rho^2 = (-2 ln a + ln(1 - 2 ln a)) / N*, GrowthBook's default N* = 5000
    assert stats.sequential_rho(0.05, 5000) == pytest.approx(math.sqrt((5.991464547 + 1.944690) / 5000), rel=1e-6)


def test_sequential_stays_valid_under_repeated_peeking() -> None:
    """Under no effect, stopping at the first p < alpha over 25 looks rejects <= alpha of the time,
    while the fixed-horizon z-test peeked at the same way does not."""
    rng = np.random.default_rng(2011)
    runs, looks, per_look, alpha = 400, 25, 200, 0.05
    sequential_hits = naive_hits = 0
    for _ in range(runs):
        a = rng.binomial(1, 0.3, size=looks * per_look).cumsum()
        b = rng.binomial(1, 0.3, size=looks * per_look).cumsum()
        seq_rejected = naive_rejected = False
        for look in range(1, looks + 1):
            n = look * per_look
            ca, cb = int(a[n - 1]), int(b[n - 1])
            pa, pb = ca / n, cb / n
            se = math.sqrt(pa * (1 - pa) / n + pb * (1 - pb) / n)
            seq = stats.sequential_test(pb - pa, se, 2 * n, alpha=alpha)
            naive = stats.two_proportion_ztest(ca, n, cb, n)
            seq_rejected |= seq.p_value is not None and seq.p_value < alpha
            naive_rejected |= naive.p_value is not None and naive.p_value < alpha
        sequential_hits += seq_rejected
        naive_hits += naive_rejected
    assert sequential_hits / runs <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)
    assert naive_hits / runs > 2 * alpha  # why the sequential test exists


@settings(max_examples=200, deadline=None)
@given(
    estimate=st.floats(-1, 1),
    se=st.floats(1e-4, 1),
    n=st.integers(4, 10**7),
    alpha=st.floats(0.001, 0.2),
)
def test_sequential_p_below_alpha_iff_interval_excludes_zero(estimate: float, se: float, n: int, alpha: float) -> None:
    result = stats.sequential_test(estimate, se, n, alpha=alpha)
    assert result.p_value is not None and result.ci is not None
    lo, hi = result.ci
    if abs(result.p_value - alpha) > 1e-9 and min(abs(lo), abs(hi)) > 1e-12:
        assert (result.p_value < alpha) == (lo > 0 or hi < 0)


# --- the IMVU report ---------------------------------------------------------------------


def test_imvu_report_from_counts() -> None:
    result = stats.two_proportion_ztest(64630, 148266, 66903, 150702)
    assert result.p_value is not None
    assert f"{result.p_value:.6f}" == "0.000010"
    assert f"{100 * (1 - result.p_value):.4f}" == "99.9990"
    assert f"{stats.binomial_variance(64630, 148266):.5f}" == "0.24589"
    assert f"{stats.binomial_variance(66903, 150702):.5f}" == "0.24686"


def test_imvu_report_from_the_printed_rounded_moments() -> None:
    result = stats.welch_ttest(0.43591, 0.24589, 148266, 0.44394, 0.24686, 150702)
    assert result.p_value is not None
    assert f"{result.p_value:.6f}" == "0.000010"
    assert f"{100 * (1 - result.p_value):.4f}" == "99.9990"


# --- guards ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 0, 5, 10), "insufficient data"),
        ((0, 1, 1, 1), "insufficient data"),
        ((0, 100, 0, 100), "zero variance"),
        ((100, 100, 100, 100), "zero variance"),
        ((11, 10, 5, 10), "more conversions"),
        ((-1, 10, 5, 10), "negative"),
    ],
    ids=["zero-samples", "n=1", "no-conversions", "all-converted", "conversions>samples", "negative"],
)
def test_two_proportion_guards(args: tuple[int, int, int, int], message: str) -> None:
    result = stats.two_proportion_ztest(*args)
    assert result.p_value is None and result.statistic is None
    assert result.error is not None and message in result.error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1.0, 1.0, 0, 2.0, 1.0, 10), "insufficient data"),
        ((1.0, 1.0, 1, 2.0, 1.0, 10), "insufficient data"),
        ((1.0, 0.0, 10, 2.0, 0.0, 10), "zero variance"),
        ((1.0, -1.0, 10, 2.0, 1.0, 10), "negative"),
        ((math.nan, 1.0, 10, 2.0, 1.0, 10), "finite"),
        ((1.0, math.inf, 10, 2.0, 1.0, 10), "finite"),
    ],
    ids=["zero-samples", "n=1", "zero-variance", "negative-variance", "nan-mean", "inf-variance"],
)
def test_welch_guards(args: tuple[float, float, int, float, float, int], message: str) -> None:
    result = stats.welch_ttest(*args)
    assert result.p_value is None and result.df is None
    assert result.error is not None and message in result.error


def test_lift_with_zero_control_mean_keeps_the_absolute_part() -> None:
    result = stats.lift(0.0, 0.0, 100, 0.1, 0.09, 100)
    assert result.absolute == pytest.approx(0.1)
    assert result.absolute_ci is not None
    assert result.relative is None and result.relative_ci is None
    assert result.error is not None and "control mean is zero" in result.error


def test_lift_rejects_bad_alpha() -> None:
    assert stats.lift(0.1, 0.09, 100, 0.2, 0.16, 100, alpha=1.5).error is not None


@pytest.mark.parametrize(
    ("observed", "weights", "message"),
    [
        ([0, 0], [0.5, 0.5], "no samples"),
        ([10], [1.0], "at least two"),
        ([10, 10], [0.5], "one weight per branch"),
        ([10, -1], [0.5, 0.5], "negative"),
        ([10, 10], [0.0, 0.0], "sum to zero"),
    ],
    ids=["no-samples", "one-branch", "length", "negative", "zero-weights"],
)
def test_srm_guards(observed: list[int], weights: list[float], message: str) -> None:
    result = stats.srm_test(observed, weights)
    assert result.p_value is None
    assert result.error is not None and message in result.error


def test_srm_zero_weight_branch_with_samples_is_a_mismatch() -> None:
    result = stats.srm_test([100, 100, 5], [0.5, 0.5, 0.0])
    assert result.p_value == 0.0
    assert stats.srm_test([100, 104, 0], [0.5, 0.5, 0.0]).p_value == pytest.approx(
        stats.srm_test([100, 104], [0.5, 0.5]).p_value
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [((0.1, 0.0, 100), "zero variance"), ((0.1, 0.01, 3), "insufficient data"), ((math.nan, 0.01, 100), "finite")],
    ids=["zero-se", "tiny-n", "nan"],
)
def test_sequential_guards(args: tuple[float, float, int], message: str) -> None:
    result = stats.sequential_test(*args)
    assert result.p_value is None and result.ci is None
    assert result.error is not None and message in result.error


def _finite_or_none(*values: object) -> bool:
    for value in values:
        if isinstance(value, tuple):
            if not _finite_or_none(*value):
                return False
        elif value is not None and not (isinstance(value, float | int) and math.isfinite(value)):
            return False
    return True


counts = st.integers(0, 10**6)


@settings(max_examples=300, deadline=None)
@given(ca=counts, na=counts, cb=counts, nb=counts)
def test_proportion_results_are_never_nan(ca: int, na: int, cb: int, nb: int) -> None:
    result = stats.two_proportion_ztest(ca, na, cb, nb)
    assert _finite_or_none(result.statistic, result.p_value)
    assert (result.error is None) == (result.p_value is not None)


moments = st.floats(-1e6, 1e6)
variances = st.floats(0, 1e6)
sizes = st.integers(0, 10**6)


@settings(max_examples=300, deadline=None)
@given(ma=moments, va=variances, na=sizes, mb=moments, vb=variances, nb=sizes)
def test_mean_results_are_never_nan(ma: float, va: float, na: int, mb: float, vb: float, nb: int) -> None:
    test = stats.welch_ttest(ma, va, na, mb, vb, nb)
    lifted = stats.lift(ma, va, na, mb, vb, nb)
    assert _finite_or_none(test.statistic, test.p_value, test.df)
    assert _finite_or_none(lifted.absolute, lifted.absolute_ci, lifted.relative, lifted.relative_ci)
    assert (test.error is None) == (test.p_value is not None)
