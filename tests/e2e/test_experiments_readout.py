"""Experiment read-outs on the real stack (issue 16): the Bayesian engine deciding, full-precision numbers."""

from __future__ import annotations

from helpers import set_metric, wait_scraped
from operator_proc import Controller
from test_experiments import condition, create_experiment, wait_status

from controller.experiments.bayes import binomial_bayes
from controller.experiments.stats import two_proportion_ztest

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
