"""The IMVU report: build_report rows, SRM, Holm adjustment, guards and the status dict shape."""

from __future__ import annotations

import json
import math

import pytest

from controller.experiments import stats
from controller.experiments.report import BranchCounts, build_report

IMVU = [BranchCounts.binomial("control", 64630, 148266), BranchCounts.binomial("enhanced", 66903, 150702)]
ROW_KEYS = {
    "branch",
    "samples",
    "conversions",
    "mean",
    "variance",
    "pValue",
    "significance",
    "lift",
    "liftPercent",
    "ci",
    "chanceToWin",
    "expectedLoss",
    "riskControl",
    "credibleInterval",
}


def test_imvu_report_comes_out_exactly() -> None:
    data = build_report(IMVU).to_dict()
    assert set(data) == {"report", "srm"}
    control, enhanced = data["report"]
    assert set(control) == set(enhanced) == ROW_KEYS
    assert (control["branch"], control["samples"], control["conversions"]) == ("control", 148266, 64630)
    assert [control[k] for k in ROW_KEYS - {"branch", "samples", "conversions", "mean", "variance"}] == [None] * 9
    # the IMVU report's printed digits, from the full-precision values
    printed = {
        "mean": (f"{control['mean']:.5f}", f"{enhanced['mean']:.5f}"),
        "variance": (f"{control['variance']:.5f}", f"{enhanced['variance']:.5f}"),
    }
    assert printed == {"mean": ("0.43591", "0.44394"), "variance": ("0.24589", "0.24686")}
    assert f"{enhanced['pValue']:.6f}" == "0.000010"
    assert f"{enhanced['significance']:.4f}" == "99.9990"
    assert f"{enhanced['liftPercent']:.2f}" == "1.84"
    assert [f"{x:.2f}" for x in enhanced["ci"]] == ["1.02", "2.67"]
    # ...but the machine shape is not rounded: the IMVU p-value is 9.5934e-06, not "1e-05"
    z = stats.two_proportion_ztest(64630, 148266, 66903, 150702)
    assert enhanced["pValue"] == z.p_value and enhanced["pValue"] != 0.00001
    assert enhanced["mean"] == 66903 / 150702
    assert enhanced["significance"] == 100 * (1 - z.p_value)
    assert data["srm"] == {"pValue": None, "ok": True}  # no weights: not checked


def test_imvu_report_from_rounded_moments_gives_the_same_printed_digits() -> None:
    report = build_report(
        [
            BranchCounts.continuous("control", 0.43591, 0.24589, 148266),
            BranchCounts.continuous("enhanced", 0.44394, 0.24686, 150702),
        ]
    )
    row = report.row("enhanced")
    assert row.p_value is not None and row.significance is not None
    assert f"{row.p_value:.6f}" == "0.000010"
    assert f"{row.significance:.4f}" == "99.9990"
    assert row.to_dict()["conversions"] is None


def test_unrounded_values_stay_on_the_rows() -> None:
    row = build_report(IMVU).row("enhanced")
    assert row.p_value == pytest.approx(stats.two_proportion_ztest(64630, 148266, 66903, 150702).p_value, rel=1e-12)
    assert row.lift == pytest.approx(66903 / 150702 - 64630 / 148266, rel=1e-12)
    assert row.lift_percent == pytest.approx(100 * ((66903 / 150702) / (64630 / 148266) - 1), rel=1e-12)


def test_srm_against_configured_weights() -> None:
    equal = build_report(IMVU, {"control": 0.5, "enhanced": 0.5})
    assert equal.srm.p_value == pytest.approx(8.382413725681093e-06, rel=1e-8)  # scipy chisquare
    assert not equal.srm.ok
    assert equal.to_dict()["srm"] == {"pValue": equal.srm.p_value, "ok": False}
    matching = build_report(IMVU, {"control": 148266 / 298968, "enhanced": 150702 / 298968})
    assert matching.srm.ok and matching.srm.p_value == pytest.approx(1.0)


def test_srm_with_weights_for_other_branches_is_a_mismatch() -> None:
    report = build_report(IMVU, {"control": 0.5, "other": 0.5})
    assert not report.srm.ok
    assert report.srm.error is not None and "other" in report.srm.error


def test_three_branches_are_holm_adjusted() -> None:
    branches = [
        BranchCounts.binomial("control", 500, 5000),
        BranchCounts.binomial("a", 560, 5000),
        BranchCounts.binomial("b", 610, 5000),
    ]
    report = build_report(branches, {"control": 1 / 3, "a": 1 / 3, "b": 1 / 3})
    raw = [stats.two_proportion_ztest(500, 5000, c, 5000).p_value for c in (560, 610)]
    assert report.adjustment == "holm"
    assert [report.row("a").p_value, report.row("b").p_value] == pytest.approx(stats.holm(raw), rel=1e-12)
    assert raw[1] is not None
    assert report.row("b").p_value == pytest.approx(2 * raw[1], rel=1e-12)  # smallest p doubled


def test_explicit_control() -> None:
    report = build_report(IMVU, control="enhanced")
    assert report.row("enhanced").p_value is None
    control_row = report.row("control")
    assert control_row.lift is not None and control_row.lift < 0


def test_sequential_report_uses_always_valid_p_values() -> None:
    fixed = build_report(IMVU).row("enhanced")
    sequential = build_report(IMVU, sequential=True)
    row = sequential.row("enhanced")
    assert sequential.sequential
    pa, pb = 64630 / 148266, 66903 / 150702
    se = math.sqrt(pa * (1 - pa) / 148266 + pb * (1 - pb) / 150702)
    assert row.p_value == pytest.approx(stats.sequential_test(pb - pa, se, 298968).p_value, rel=1e-12)
    assert row.p_value == pytest.approx(0.0012389413704214948, rel=1e-6)  # numerically integrated mixture
    assert fixed.p_value is not None and row.p_value is not None and row.p_value > fixed.p_value
    assert row.ci is not None and fixed.ci is not None
    assert row.ci[0] < fixed.ci[0] and row.ci[1] > fixed.ci[1]


@pytest.mark.parametrize(
    ("branches", "error"),
    [
        ([BranchCounts.binomial("control", 0, 0), BranchCounts.binomial("b", 5, 10)], "insufficient data"),
        ([BranchCounts.binomial("control", 0, 1), BranchCounts.binomial("b", 1, 1)], "insufficient data"),
        ([BranchCounts.binomial("control", 0, 100), BranchCounts.binomial("b", 0, 100)], "zero variance"),
        ([BranchCounts.binomial("control", 5, 10), BranchCounts.binomial("b", 11, 10)], "between 0 and samples"),
        (
            [BranchCounts.continuous("control", 1.0, 0.0, 50), BranchCounts.continuous("b", 1.0, 0.0, 50)],
            "zero variance",
        ),
        ([BranchCounts(name="control", samples=10), BranchCounts.binomial("b", 1, 10)], "needs conversions"),
    ],
    ids=["zero-samples", "n=1", "zero-variance", "conversions>samples", "zero-variance-continuous", "no-metric"],
)
def test_degenerate_rows_carry_errors_not_nan(branches: list[BranchCounts], error: str) -> None:
    report = build_report(branches, {"control": 0.5, "b": 0.5})
    row = report.row("b")
    assert row.error is not None and error in row.error
    assert row.p_value is None and row.significance is None
    json.dumps(report.to_dict(), allow_nan=False)


@pytest.mark.parametrize(
    ("branches", "control", "error"),
    [
        ([BranchCounts.binomial("control", 5, 10)], None, "at least two"),
        (IMVU, "missing", "has no counts"),
        ([IMVU[0], IMVU[0]], None, "unique"),
        ([], None, "at least two"),
    ],
    ids=["one-branch", "unknown-control", "duplicates", "empty"],
)
def test_report_level_errors(branches: list[BranchCounts], control: str | None, error: str) -> None:
    report = build_report(branches, control=control)
    assert report.error is not None and error in report.error
    assert all(row.p_value is None for row in report.rows)
    json.dumps(report.to_dict(), allow_nan=False)


def test_every_row_has_exactly_the_status_keys() -> None:
    for report in (build_report(IMVU), build_report([BranchCounts.binomial("control", 0, 0), IMVU[1]])):
        for row in report.to_dict()["report"]:
            assert set(row) == ROW_KEYS


def test_tiny_p_values_keep_full_precision_through_json() -> None:
    report = build_report([BranchCounts.binomial("control", 1000, 10000), BranchCounts.binomial("b", 1600, 10000)])
    row = json.loads(json.dumps(report.to_dict()))["report"][1]
    p = report.row("b").p_value
    assert p is not None and 0 < p < 1e-20
    assert row["pValue"] == p  # bit for bit, not 3 significant digits
    assert row["significance"] == 100.0


@pytest.mark.parametrize("p", [3e-7, 1.234567890123e-12, 0.049999999999, 0.123456789012345])
def test_json_keeps_1e_12(p: float) -> None:
    from controller.experiments.report import ReportRow

    row = ReportRow("b", 10, 1, 0.1, 0.09, p_value=p, significance=100 * (1 - p))
    back = json.loads(json.dumps(row.to_dict()))
    assert back["pValue"] == pytest.approx(p, rel=1e-12, abs=0)
    assert back["significance"] == pytest.approx(100 * (1 - p), rel=1e-12)


def test_zero_control_mean_keeps_p_value_and_absolute_lift() -> None:
    report = build_report(
        [BranchCounts.continuous("control", 0.0, 1.0, 100), BranchCounts.continuous("b", 0.5, 1.0, 100)]
    )
    row = report.row("b")
    assert row.p_value is not None and row.lift == pytest.approx(0.5)
    assert row.lift_percent is None and row.ci is None
    assert row.error is not None and "control mean is zero" in row.error
