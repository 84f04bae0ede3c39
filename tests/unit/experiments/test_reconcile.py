"""Experiment reconciliation, the pure part: spec → published config, counts → report, decision, status."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from controller.experiments import stats
from controller.experiments.hashing import ExperimentConfig
from controller.experiments.reconcile import (
    configmap_key,
    counts_from,
    evaluate,
    published_config,
    with_report,
    without_report,
)
from controller.experiments.report import BranchCounts
from controller.models.experiment import ExperimentSpec, ExperimentStatus

NOW = datetime(2011, 8, 15, 12, 0, tzinfo=UTC)
LATER = datetime(2011, 8, 15, 12, 0, 30, tzinfo=UTC)

# IMVU's GDC Europe 2011 report: control 64630/148266, enhanced 66903/150702.
IMVU_EXPOSURES = {"control": 148266.0, "enhanced": 150702.0}
IMVU_CONVERSIONS = {"control": 64630.0, "enhanced": 66903.0}
# Weights matching the observed split (148266 : 150702), so the sample ratio is as configured.
OBSERVED_SPLIT = {"control": 0.496, "enhanced": 0.504}
# Enhanced significantly worse than control.
HARM_EXPOSURES = {"control": 5000.0, "enhanced": 5000.0}
HARM_CONVERSIONS = {"control": 600.0, "enhanced": 500.0}


def spec(**fields: Any) -> ExperimentSpec:
    body: dict[str, Any] = {
        "key": "GDCEurope2011",
        "branches": {"control": 0.5, "enhanced": 0.5},
        "metric": {"exposures": "sum by (branch) (x)", "conversions": "sum by (branch) (y)"},
    }
    body.update(fields)
    return ExperimentSpec.model_validate(body)


def condition(status: ExperimentStatus, type_: str) -> tuple[str, str]:
    found = [(c.status, c.reason) for c in status.conditions if c.type == type_]
    assert len(found) == 1, status.conditions
    return found[0]


# ---------------------------------------------------------------------------------- published config
def test_published_config_carries_the_spec() -> None:
    s = spec(seed="gdc-seed", rollout=10, audience=["qa", "admin"], branches={"control": 0.25, "enhanced": 0.75})
    config = published_config(s, ExperimentStatus())
    assert config == ExperimentConfig(
        key="GDCEurope2011",
        seed="gdc-seed",
        rollout=10.0,
        branches=(("control", 0.25), ("enhanced", 0.75)),
        audience=("qa", "admin"),
        closed_on=None,
        hash_version=2,
        enabled=True,
    )
    assert json.loads(config.to_json()) == {
        "key": "GDCEurope2011",
        "seed": "gdc-seed",
        "rollout": 10.0,
        "audience": ["qa", "admin"],
        "branches": {"control": 0.25, "enhanced": 0.75},
        "closeOn": None,
        "hashVersion": 2,
        "enabled": True,
    }


def test_published_config_seed_defaults_to_key_and_keeps_hash_version() -> None:
    config = published_config(spec(hashVersion=1), ExperimentStatus())
    assert (config.seed, config.hash_version, config.rollout) == ("GDCEurope2011", 1, 100.0)


def test_published_config_close_on_from_spec() -> None:
    assert published_config(spec(closeOn="enhanced"), ExperimentStatus()).closed_on == "enhanced"


def test_published_config_auto_close_from_status() -> None:
    assert published_config(spec(), ExperimentStatus(closed_on="control")).closed_on == "control"


def test_spec_close_on_wins_over_status() -> None:
    assert published_config(spec(closeOn="enhanced"), ExperimentStatus(closed_on="control")).closed_on == "enhanced"


@pytest.mark.parametrize(
    ("key", "expected"),
    [("GDCEurope2011", "GDCEurope2011.json"), ("checkout/v2 new", "checkout_v2_new.json"), ("a-b_c.d", "a-b_c.d.json")],
    ids=["plain", "unsafe-characters", "allowed-punctuation"],
)
def test_configmap_key_is_a_valid_configmap_key(key: str, expected: str) -> None:
    assert configmap_key(spec(key=key)) == expected


# ---------------------------------------------------------------------------------- counts
def test_counts_from_puts_control_first_and_rounds() -> None:
    s = spec(branches={"enhanced": 0.4, "control": 0.3, "bold": 0.3})
    counts = counts_from(s, {"enhanced": 200.4, "control": 100.0, "bold": 50.6}, {"enhanced": 20.0, "control": 9.6})
    assert counts == [
        BranchCounts.binomial("control", 10, 100),
        BranchCounts.binomial("enhanced", 20, 200),
        BranchCounts.binomial("bold", 0, 51),
    ]


def test_counts_from_explicit_control_and_missing_branches_count_zero() -> None:
    s = spec(branches={"a": 0.5, "b": 0.5}, control="b")
    assert counts_from(s, {"a": 10.0}, None) == [BranchCounts.binomial("b", 0, 0), BranchCounts.binomial("a", 0, 10)]


def test_counts_from_caps_conversions_at_samples_and_ignores_unknown_branches() -> None:
    counts = counts_from(spec(), {"control": 5.0, "enhanced": 5.0, "other": 99.0}, {"control": 7.0})
    assert counts == [BranchCounts.binomial("control", 5, 5), BranchCounts.binomial("enhanced", 0, 5)]


# ---------------------------------------------------------------------------------- evaluate
def test_imvu_counts_with_observed_split_weights_declare_the_winner() -> None:
    report, decision = evaluate(spec(branches=OBSERVED_SPLIT), IMVU_EXPOSURES, IMVU_CONVERSIONS)
    assert decision.label == "Winner:enhanced"
    assert decision.close_to is None  # autoClose.onWinner defaults to false
    control, enhanced = report.rows
    assert (control.branch, control.samples, control.conversions) == ("control", 148266, 64630)
    assert control.mean == pytest.approx(0.43591, abs=5e-6)
    assert control.variance == pytest.approx(0.24589, abs=5e-6)
    assert (enhanced.branch, enhanced.samples, enhanced.conversions) == ("enhanced", 150702, 66903)
    assert enhanced.mean == pytest.approx(0.44394, abs=5e-6)
    assert enhanced.variance == pytest.approx(0.24686, abs=5e-6)
    assert enhanced.p_value == pytest.approx(0.000010, abs=5e-7)
    assert enhanced.significance == pytest.approx(99.9990, abs=5e-5)
    assert report.srm.ok is True


def test_imvu_counts_with_even_weights_flag_sample_ratio_mismatch() -> None:
    report, decision = evaluate(spec(), IMVU_EXPOSURES, IMVU_CONVERSIONS)
    assert report.srm.ok is False
    assert report.srm.p_value is not None and report.srm.p_value < 0.001
    assert decision.state == "SampleRatioMismatch"
    assert decision.label == "SampleRatioMismatch"


def test_evaluate_below_min_samples_keeps_running() -> None:
    _, decision = evaluate(spec(minSamples=200000), IMVU_EXPOSURES, IMVU_CONVERSIONS)
    assert decision.label == "Running"
    assert "148266/200000" in decision.reason


def test_evaluate_uses_spec_alpha() -> None:
    # p ≈ 0.00001: significant at 0.05, not at 0.000001.
    _, strict = evaluate(spec(branches=OBSERVED_SPLIT, alpha=0.000001), IMVU_EXPOSURES, IMVU_CONVERSIONS)
    assert strict.label == "NoSignificance"


# ---------------------------------------------------------------------------------- status
def imvu_status(s: ExperimentSpec, status: ExperimentStatus | None = None, now: datetime = NOW) -> ExperimentStatus:
    report, decision = evaluate(s, IMVU_EXPOSURES, IMVU_CONVERSIONS)
    return with_report(s, status or ExperimentStatus(), report, decision, now, 3)


def test_with_report_writes_report_rows_srm_decision_and_p_value() -> None:
    status = imvu_status(spec(branches=OBSERVED_SPLIT))
    rows = [r.model_dump(mode="json", by_alias=True) for r in status.report]
    assert rows[0] == {
        "branch": "control",
        "samples": 148266,
        "conversions": 64630,
        "mean": 64630 / 148266,
        "variance": (64630 / 148266) * (1 - 64630 / 148266),
        "pValue": None,
        "significance": None,
        "lift": None,
        "liftPercent": None,
        "ci": None,
        "chanceToWin": None,
        "expectedLoss": None,
        "riskControl": None,
        "credibleInterval": None,
    }
    p = stats.two_proportion_ztest(64630, 148266, 66903, 150702).p_value
    assert rows[1]["pValue"] == p  # full precision in status.report, not rounded to 1e-05
    assert rows[1]["significance"] == 100 * (1 - p)
    assert f"{rows[1]['liftPercent']:.2f}" == "1.84"
    assert status.srm is not None and status.srm.ok is True
    assert status.decision == "Winner:enhanced"
    assert status.p_value == pytest.approx(0.00001, abs=5e-7)
    assert status.closed_on is None
    assert (status.updated_at, status.observed_generation) == (NOW, 3)
    assert condition(status, "ReportAvailable") == ("True", "Winner")


def test_harm_with_on_harm_closes_on_control_and_keeps_the_harm_decision() -> None:
    s = spec(autoClose={"onHarm": True})
    report, decision = evaluate(s, HARM_EXPOSURES, HARM_CONVERSIONS)
    status = with_report(s, ExperimentStatus(), report, decision, NOW, 1)
    assert status.decision == "Harm:enhanced"  # what experiment gates (failOn: harm) read
    assert status.closed_on == "control"
    assert condition(status, "Closed") == ("True", "AutoCloseOnHarm")
    assert status.message is not None and "closed on control" in status.message
    assert published_config(s, status).closed_on == "control"
    assert json.loads(published_config(s, status).to_json())["closeOn"] == "control"


def test_harm_without_on_harm_does_not_close() -> None:
    s = spec(autoClose={"onHarm": False})
    report, decision = evaluate(s, HARM_EXPOSURES, HARM_CONVERSIONS)
    status = with_report(s, ExperimentStatus(), report, decision, NOW, 1)
    assert (status.decision, status.closed_on) == ("Harm:enhanced", None)
    assert published_config(s, status).closed_on is None


def test_winner_with_on_winner_closes_on_the_winner() -> None:
    status = imvu_status(spec(branches=OBSERVED_SPLIT, autoClose={"onWinner": True}))
    assert (status.decision, status.closed_on) == ("Winner:enhanced", "enhanced")
    assert condition(status, "Closed") == ("True", "AutoCloseOnWinner")


def test_auto_close_is_sticky_when_the_data_changes() -> None:
    s = spec(autoClose={"onHarm": True})
    report, decision = evaluate(s, HARM_EXPOSURES, HARM_CONVERSIONS)
    closed = with_report(s, ExperimentStatus(), report, decision, NOW, 1)
    report2, decision2 = evaluate(s, {"control": 9000.0, "enhanced": 9000.0}, {"control": 900.0, "enhanced": 905.0})
    later = with_report(s, closed, report2, decision2, LATER, 1)
    assert (later.decision, later.closed_on) == ("NoSignificance", "control")
    assert published_config(s, later).closed_on == "control"


def test_spec_close_on_closes_and_removing_it_reopens() -> None:
    closed_spec = spec(branches=OBSERVED_SPLIT, closeOn="enhanced")
    closed = imvu_status(closed_spec)
    assert (closed.decision, closed.closed_on) == ("Closed:enhanced", "enhanced")
    assert condition(closed, "Closed") == ("True", "CloseOn")
    reopened = imvu_status(spec(branches=OBSERVED_SPLIT), closed, LATER)
    assert (reopened.decision, reopened.closed_on) == ("Winner:enhanced", None)
    assert condition(reopened, "Closed") == ("False", "Reopened")
    assert published_config(spec(branches=OBSERVED_SPLIT), reopened).closed_on is None


def test_removing_close_on_may_auto_close_again_at_once() -> None:
    s = spec(autoClose={"onHarm": True})
    report, decision = evaluate(spec(closeOn="enhanced"), HARM_EXPOSURES, HARM_CONVERSIONS)
    manual = with_report(spec(closeOn="enhanced"), ExperimentStatus(), report, decision, NOW, 1)
    report, decision = evaluate(s, HARM_EXPOSURES, HARM_CONVERSIONS)
    after = with_report(s, manual, report, decision, LATER, 2)
    assert (after.decision, after.closed_on) == ("Harm:enhanced", "control")
    assert condition(after, "Closed") == ("True", "AutoCloseOnHarm")


def test_with_report_does_not_touch_the_input_status() -> None:
    before = ExperimentStatus(message="old")
    imvu_status(spec(branches=OBSERVED_SPLIT), before)
    assert before == ExperimentStatus(message="old")


# ---------------------------------------------------------------------------------- without a report
def test_without_report_keeps_the_last_report_and_marks_no_data() -> None:
    s = spec(branches=OBSERVED_SPLIT)
    good = imvu_status(s)
    down = without_report(s, good, "prometheus unreachable: ConnectionError", LATER, 3)
    assert down.report == good.report and down.decision == "Winner:enhanced"
    assert down.message == "prometheus unreachable: ConnectionError"
    assert down.updated_at == LATER
    assert condition(down, "ReportAvailable") == ("False", "NoData")


def test_without_report_close_on_sets_closed_decision() -> None:
    status = without_report(spec(closeOn="control"), ExperimentStatus(), "no metric configured", NOW, 1)
    assert (status.decision, status.closed_on) == ("Closed:control", "control")
    assert condition(status, "Closed") == ("True", "CloseOn")


def test_without_report_reopens_when_close_on_is_removed() -> None:
    closed = without_report(spec(closeOn="control"), ExperimentStatus(), "no metric configured", NOW, 1)
    reopened = without_report(spec(), closed, "no metric configured", LATER, 2)
    assert (reopened.decision, reopened.closed_on) == ("Running", None)


def test_without_report_keeps_an_auto_close() -> None:
    s = spec(autoClose={"onHarm": True})
    report, decision = evaluate(s, HARM_EXPOSURES, HARM_CONVERSIONS)
    closed = with_report(s, ExperimentStatus(), report, decision, NOW, 1)
    down = without_report(s, closed, "prometheus unreachable", LATER, 1)
    assert (down.decision, down.closed_on) == ("Harm:enhanced", "control")
    assert published_config(s, down).closed_on == "control"
