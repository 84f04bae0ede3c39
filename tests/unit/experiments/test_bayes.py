"""Bayesian read-out: gbstats' published cases, Monte Carlo estimates, the report columns and the engine."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import integrate
from scipy import stats as sps

from controller.experiments.bayes import BayesResult, binomial_bayes, gaussian_bayes
from controller.experiments.decide import decide
from controller.experiments.report import BranchCounts, build_report
from controller.models.experiment import ExperimentSpec

# gbstats packages/stats/tests/bayesian/test_tests.py (BinomialBayesianABTest / GaussianBayesianABTest,
# default priors), values rounded to 5 decimals there: expected, ci, chance_to_win, risk, relative_risk.
GBSTATS_BINOMIAL = {
    "expected": 0.0404,
    "ci": (-0.21099, 0.37189),
    "chance_to_win": 0.61052,
    "risk": (0.03872, 0.01912),
    "relative_risk_treatment": 0.03748,
}
GBSTATS_GAUSSIAN = {
    "expected": 0.05,
    "ci": (-0.01772, 0.12239),
    "chance_to_win": 0.92427,
    "risk": (0.51256, 0.01256),
    "relative_risk_treatment": 0.0012,
}


def rounded(x: float) -> float:
    return float(np.round(x, 5))


def test_gbstats_binomial_case() -> None:
    r = binomial_bayes(49, 100, 51, 100)  # ProportionStatistic(sum=49, n=100) vs (sum=51, n=100)
    assert r.error is None and r.ci is not None
    assert r.expected is not None and r.chance_to_win is not None and r.loss_control is not None
    assert r.loss_treatment is not None and r.relative_loss is not None
    assert rounded(r.expected) == GBSTATS_BINOMIAL["expected"]
    assert tuple(map(rounded, r.ci)) == GBSTATS_BINOMIAL["ci"]
    assert rounded(r.chance_to_win) == GBSTATS_BINOMIAL["chance_to_win"]
    assert (rounded(r.loss_control), rounded(r.loss_treatment)) == GBSTATS_BINOMIAL["risk"]
    assert rounded(r.relative_loss) == GBSTATS_BINOMIAL["relative_risk_treatment"]


def test_gbstats_gaussian_case() -> None:
    # SampleMeanStatistic(sum=100, sum_squares=1002.25, n=10) vs (sum=105, sum_squares=1111.5, n=10):
    # means 10 and 10.5, sample variances (1002.25 - 100²/10)/9 = 0.25 and (1111.5 - 105²/10)/9 = 1
    r = gaussian_bayes(10.0, (1002.25 - 1000) / 9, 10, 10.5, (1111.5 - 1102.5) / 9, 10)
    assert r.error is None and r.ci is not None
    assert r.expected is not None and r.chance_to_win is not None and r.loss_control is not None
    assert r.loss_treatment is not None and r.relative_loss is not None
    assert rounded(r.expected) == GBSTATS_GAUSSIAN["expected"]
    assert tuple(map(rounded, r.ci)) == GBSTATS_GAUSSIAN["ci"]
    assert rounded(r.chance_to_win) == GBSTATS_GAUSSIAN["chance_to_win"]
    assert (rounded(r.loss_control), rounded(r.loss_treatment)) == GBSTATS_GAUSSIAN["risk"]
    assert rounded(r.relative_loss) == GBSTATS_GAUSSIAN["relative_risk_treatment"]


DRAWS = 400_000


@pytest.mark.parametrize(
    ("c", "n_c", "t", "n_t"),
    [(49, 100, 51, 100), (120, 1000, 150, 1000), (3, 40, 1, 35), (64630, 148266, 66903, 150702)],
    ids=["gbstats", "one-k", "tiny", "imvu"],
)
def test_binomial_chance_to_win_and_loss_against_monte_carlo(c: int, n_c: int, t: int, n_t: int) -> None:
    """400k posterior draws; tolerance 5 Monte Carlo standard errors, plus 0.01 for chance to win
    (gbstats' normal approximation of the log ratio, which the tiny case stresses)."""
    rng = np.random.default_rng(16)
    a = rng.beta(1 + c, 1 + n_c - c, DRAWS)
    b = rng.beta(1 + t, 1 + n_t - t, DRAWS)
    r = binomial_bayes(c, n_c, t, n_t)
    assert r.chance_to_win is not None and r.loss_control is not None and r.loss_treatment is not None
    win = b > a
    se = np.sqrt(win.mean() * (1 - win.mean()) / DRAWS)
    assert abs(r.chance_to_win - win.mean()) <= 5 * se + 0.01
    for exact, draws in ((r.loss_treatment, np.maximum(a - b, 0)), (r.loss_control, np.maximum(b - a, 0))):
        if (draws > 0).sum() >= 1000:  # enough draws for the Monte Carlo error estimate to hold
            assert abs(exact - draws.mean()) <= 5 * draws.std() / np.sqrt(DRAWS)
    # and against adaptive quadrature of E[max(A, B)] (scipy.integrate.quad), independent of the module's
    A, B = sps.beta(1 + c, 1 + n_c - c), sps.beta(1 + t, 1 + n_t - t)

    def part(X: Any, Y: Any) -> float:
        m, s = float(X.mean()), float(X.std())
        lo, hi = max(0.0, m - 40 * s), min(1.0, m + 40 * s)
        return float(integrate.quad(lambda x: x * X.pdf(x) * Y.cdf(x), lo, hi, points=[m], limit=400)[0])

    emax = part(A, B) + part(B, A)
    assert r.loss_control == pytest.approx(emax - A.mean(), rel=1e-6, abs=1e-12)
    assert r.loss_treatment == pytest.approx(emax - B.mean(), rel=1e-6, abs=1e-12)


def test_gaussian_chance_to_win_and_loss_against_monte_carlo() -> None:
    rng = np.random.default_rng(7)
    mean_c, var_c, n_c, mean_t, var_t, n_t = 12.0, 30.0, 800, 12.6, 36.0, 820
    a = rng.normal(mean_c, np.sqrt(var_c / n_c), DRAWS)
    b = rng.normal(mean_t, np.sqrt(var_t / n_t), DRAWS)
    r = gaussian_bayes(mean_c, var_c, n_c, mean_t, var_t, n_t)
    assert r.chance_to_win is not None and r.loss_control is not None and r.loss_treatment is not None
    win = (b > a).mean()
    assert abs(r.chance_to_win - win) <= 5 * np.sqrt(win * (1 - win) / DRAWS) + 0.002  # log approximation
    for exact, draws in ((r.loss_treatment, np.maximum(a - b, 0)), (r.loss_control, np.maximum(b - a, 0))):
        assert abs(exact - draws.mean()) <= 5 * draws.std() / np.sqrt(DRAWS)


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (binomial_bayes(0, 0, 1, 10), "no samples"),
        (binomial_bayes(11, 10, 1, 10), "invalid input"),
        (gaussian_bayes(0.1, 1.0, 10, 0.2, 1.0, 10), "log approximation inexact"),
        (gaussian_bayes(1.0, 0.0, 10, 1.0, 0.0, 10), "zero variance"),
    ],
    ids=["empty", "conversions-over-samples", "mean-near-zero", "no-variance"],
)
def test_degenerate_input_gives_an_error_not_nan(result: BayesResult, message: str) -> None:
    assert result.chance_to_win is None
    assert message in str(result.error)


def test_report_rows_carry_the_bayesian_columns_in_percent() -> None:
    report = build_report([BranchCounts.binomial("control", 49, 100), BranchCounts.binomial("enhanced", 51, 100)])
    row = report.row("enhanced")
    direct = binomial_bayes(49, 100, 51, 100)
    assert direct.ci is not None and row.credible_interval is not None
    assert (row.chance_to_win, row.expected_loss, row.risk_control) == (
        direct.chance_to_win,
        direct.loss_treatment,
        direct.loss_control,
    )
    assert row.credible_interval == (100 * direct.ci[0], 100 * direct.ci[1])
    assert report.row("control").chance_to_win is None
    assert row.to_dict()["chanceToWin"] == direct.chance_to_win


def bayes_decision(control: tuple[int, int], treatment: tuple[int, int], threshold: float = 0.95) -> str:
    report = build_report(
        [BranchCounts.binomial("control", *control), BranchCounts.binomial("enhanced", *treatment)],
        {"control": 0.5, "enhanced": 0.5},
    )
    return decide(
        report,
        min_samples=100,
        alpha=0.05,
        close_on=None,
        on_winner=False,
        on_harm=True,
        control="control",
        engine="bayesian",
        chance_to_win=threshold,
    ).label


@pytest.mark.parametrize(
    ("control", "treatment", "threshold", "label"),
    [
        ((500, 5000), (580, 5000), 0.95, "Winner:enhanced"),  # chance to win ≈ 99.5 %
        ((580, 5000), (500, 5000), 0.95, "Harm:enhanced"),
        ((500, 5000), (530, 5000), 0.95, "NoSignificance"),  # ≈ 83 %
        ((500, 5000), (530, 5000), 0.8, "Winner:enhanced"),
    ],
    ids=["winner", "harm", "not-yet", "lower-threshold"],
)
def test_decide_with_the_bayesian_engine(
    control: tuple[int, int], treatment: tuple[int, int], threshold: float, label: str
) -> None:
    assert bayes_decision(control, treatment, threshold) == label


def test_bayesian_engine_can_decide_where_the_frequentist_one_does_not() -> None:
    report = build_report([BranchCounts.binomial("control", 500, 5000), BranchCounts.binomial("enhanced", 555, 5000)])
    row = report.row("enhanced")
    assert row.p_value is not None and row.p_value > 0.05  # not significant at 5 % (two-sided)
    assert row.chance_to_win is not None and row.chance_to_win > 0.95  # but a 95 % chance to beat control
    kwargs = {"min_samples": 100, "alpha": 0.05, "close_on": None, "on_winner": False, "on_harm": True}
    assert decide(report, control="control", **kwargs).label == "NoSignificance"  # type: ignore[arg-type]
    assert decide(report, control="control", engine="bayesian", **kwargs).label == "Winner:enhanced"  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0.5, 1.0, 0.2])
def test_chance_to_win_threshold_must_be_between_half_and_one(value: float) -> None:
    with pytest.raises(ValidationError, match="chanceToWin"):
        ExperimentSpec.model_validate(
            {"key": "k", "branches": {"control": 0.5, "b": 0.5}, "engine": "bayesian", "chanceToWin": value}
        )
