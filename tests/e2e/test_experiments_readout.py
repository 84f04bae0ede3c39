"""Experiment read-outs on the real stack (issue 16): the Bayesian engine deciding, a continuous metric from
the SDK's sufficient statistics judged by Welch's test with and without CUPED, full-precision numbers."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import set_metric, wait_scraped
from operator_proc import Controller
from prometheus_client import CollectorRegistry
from scipy import stats as sps
from test_experiments import condition, create_experiment, wait_status

from controller.experiments.bayes import binomial_bayes
from controller.experiments.hashing import ExperimentConfig
from controller.experiments.stats import two_proportion_ztest
from controller.sdk import (
    COVARIATE_SUM,
    COVARIATE_SUM_SQUARES,
    VALUE_COVARIATE_PRODUCTS,
    VALUE_SUM,
    VALUE_SUM_SQUARES,
    Experiments,
)

SUMS = (VALUE_SUM, VALUE_SUM_SQUARES, COVARIATE_SUM, COVARIATE_SUM_SQUARES, VALUE_COVARIATE_PRODUCTS)

EXPOSURES = "stopline_experiment_exposures_total"
CONVERSIONS = "stopline_experiment_conversions_total"
# p ≈ 0.074 (no frequentist decision at 5 %), chance to beat control ≈ 96 %
COUNTS = {"control": (500, 5000), "enhanced": (555, 5000)}


def feed(label: str) -> None:
    for branch, (conversions, samples) in COUNTS.items():
        set_metric(EXPOSURES, samples, experiment=label, branch=branch)
        set_metric(CONVERSIONS, conversions, experiment=label, branch=branch)
    wait_scraped(timeout=60)


def test_bayesian_engine_decides_with_chance_to_win(controller: Controller, ns: str) -> None:
    label = f"{ns}-bayes"
    feed(label)
    metric = {
        "exposures": f'sum by (branch) ({EXPOSURES}{{experiment="{label}"}})',
        "conversions": f'sum by (branch) ({CONVERSIONS}{{experiment="{label}"}})',
    }
    common = {"branches": {"control": 0.5, "enhanced": 0.5}, "metric": metric, "minSamples": 1000, "interval": "2s"}
    bayes = create_experiment(ns, "bayes", key="Bayes", engine="bayesian", chanceToWin=0.95, **common)
    freq = create_experiment(ns, "freq", key="Freq", **common)

    status = wait_status(ns, bayes, "a Bayesian winner", lambda s: s.get("decision") == "Winner:enhanced")
    enhanced = status["report"][1]
    exact = binomial_bayes(500, 5000, 555, 5000)
    assert enhanced["chanceToWin"] == exact.chance_to_win  # full precision through the API server
    assert enhanced["expectedLoss"] == exact.loss_treatment and enhanced["riskControl"] == exact.loss_control
    assert enhanced["pValue"] == two_proportion_ztest(500, 5000, 555, 5000).p_value
    assert "chance to win" in status["message"]
    assert condition(status, "ReportAvailable")["reason"] == "Winner"

    other = wait_status(ns, freq, "the frequentist read-out", lambda s: s.get("decision") == "NoSignificance")
    assert other["report"][1]["chanceToWin"] == exact.chance_to_win  # both read-outs are always reported


def test_continuous_metric_welch_and_cuped_from_the_sdk_sums(controller: Controller, ns: str) -> None:
    label = f"{ns}-cuped"
    key = "Revenue"
    branches = {"control": 0.5, "enhanced": 0.5}

    def q(name: str) -> str:
        return f'sum by (branch) ({name}{{experiment="{label}"}})'

    name = create_experiment(
        ns,
        "revenue",
        key=key,
        branches=branches,
        metric={
            "exposures": q(EXPOSURES),
            "value": {
                "sum": q(VALUE_SUM),
                "sumSquares": q(VALUE_SUM_SQUARES),
                "covariate": {
                    "sum": q(COVARIATE_SUM),
                    "sumSquares": q(COVARIATE_SUM_SQUARES),
                    "sumProducts": q(VALUE_COVARIATE_PRODUCTS),
                },
            },
        },
        minSamples=500,
        interval="2s",
    )
    # the app: exposes 3000 users and records each one's revenue with last month's as the covariate
    registry = CollectorRegistry()
    sdk = Experiments(
        [ExperimentConfig(key=key, seed=key, rollout=100, branches=tuple(branches.items()))], registry=registry
    )
    rng = np.random.default_rng(16)
    per_user: dict[str, list[tuple[float, float]]] = {"control": [], "enhanced": []}
    for i in range(3000):
        branch = sdk.expose(f"user-{i}", key)
        assert branch is not None
        x = float(rng.gamma(2.0, 1.5))
        y = max(0.0, 1.0 + 0.8 * x + float(rng.normal(0, 1)) + (0.12 if branch == "enhanced" else 0.0))
        sdk.record(key, branch, y, covariate=x)
        per_user[branch].append((x, y))
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name in (EXPOSURES, *SUMS) and sample.labels.get("experiment") == key:
                set_metric(sample.name, sample.value, experiment=label, branch=sample.labels["branch"])
    wait_scraped(timeout=60)

    status = wait_status(ns, name, "a CUPED comparison", lambda s: bool((s.get("cuped") or {}).get("report")))
    xc, yc = np.array(per_user["control"]).T
    xt, yt = np.array(per_user["enhanced"]).T
    welch = sps.ttest_ind(yc, yt, equal_var=False)
    assert status["report"][1]["pValue"] == pytest.approx(float(welch.pvalue), rel=1e-6)
    theta = (((xc - xc.mean()) * (yc - yc.mean())).sum() + ((xt - xt.mean()) * (yt - yt.mean())).sum()) / (
        ((xc - xc.mean()) ** 2).sum() + ((xt - xt.mean()) ** 2).sum()
    )
    x_all = np.concatenate([xc, xt]).mean()
    ac, at = yc - theta * (xc - x_all), yt - theta * (xt - x_all)
    reduction = 1 - (ac.var(ddof=1) / len(ac) + at.var(ddof=1) / len(at)) / (
        yc.var(ddof=1) / len(yc) + yt.var(ddof=1) / len(yt)
    )
    cuped = status["cuped"]
    assert cuped["theta"] == pytest.approx(theta, rel=1e-9)
    assert cuped["varianceReduction"]["enhanced"] == pytest.approx(reduction, abs=1e-9)
    assert cuped["report"][1]["pValue"] == pytest.approx(float(sps.ttest_ind(ac, at, equal_var=False).pvalue), rel=1e-6)
