"""``stopline experiment report`` through typer's CliRunner."""

from __future__ import annotations

import json

import pytest
import typer
import yaml
from typer.testing import CliRunner

from controller.experiments import stats
from controller.experiments.cli import app
from controller.experiments.report import BranchCounts, build_report

runner = CliRunner()
ENV = {"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"}
IMVU = ["--branch", "control=64630/148266", "--branch", "enhanced=66903/150702"]


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["report", *args], env=ENV)
    return result.exit_code, result.output


def test_table_is_the_imvu_report() -> None:
    code, out = invoke(*IMVU)
    assert code == 0, out
    for header in ("Branch", "Samples", "Conversions", "Mean", "Variance", "P-value", "Significance", "Lift %", "CI"):
        assert header in out
    control = next(line for line in out.splitlines() if "148266" in line)
    enhanced = next(line for line in out.splitlines() if "150702" in line)
    for text in ("control", "64630", "0.43591", "0.24589"):
        assert text in control
    for text in ("enhanced", "66903", "0.44394", "0.24686", "0.000010", "99.9990%", "+1.84%", "[+1.02%, +2.67%]"):
        assert text in enhanced
    assert "Sample ratio: not checked" in out


def test_table_reports_sample_ratio_mismatch_with_weights() -> None:
    code, out = invoke(*IMVU, "--weights", "control=0.5,enhanced=0.5")
    assert code == 0, out
    assert "Sample ratio: p=0.000008 MISMATCH" in out


def test_json_is_report_to_dict() -> None:
    code, out = invoke(*IMVU, "--output", "json")
    assert code == 0, out
    data = json.loads(out)
    expected = build_report(
        [BranchCounts.binomial("control", 64630, 148266), BranchCounts.binomial("enhanced", 66903, 150702)]
    ).to_dict()
    assert data == expected
    enhanced = data["report"][1]
    p = stats.two_proportion_ztest(64630, 148266, 66903, 150702).p_value
    assert p is not None
    assert (enhanced["pValue"], enhanced["significance"]) == (p, 100 * (1 - p))  # not 1e-05 and 99.999
    assert enhanced["pValue"] != 0.00001


def test_yaml_carries_full_precision_too() -> None:
    code, out = invoke(*IMVU, "--output", "yaml")
    assert code == 0, out
    p = stats.two_proportion_ztest(64630, 148266, 66903, 150702).p_value
    assert yaml.safe_load(out)["report"][1]["pValue"] == p


def test_continuous_branches_and_alpha() -> None:
    code, out = invoke(
        "-b", "control=0.43591:0.24589:148266", "-b", "enhanced=0.44394:0.24686:150702", "--alpha", "0.01", "-o", "json"
    )
    assert code == 0, out
    enhanced = json.loads(out)["report"][1]
    assert enhanced["conversions"] is None
    assert f"{enhanced['pValue']:.6f}" == "0.000010"
    assert enhanced["ci"][0] < 1.02 and enhanced["ci"][1] > 2.67  # 99% interval is wider
    code, out = invoke(
        "-b", "control=0.43591:0.24589:148266", "-b", "enhanced=0.44394:0.24686:150702", "--alpha", "0.01"
    )
    assert "CI 99%" in out


def test_three_branches_note_holm() -> None:
    code, out = invoke("-b", "control=500/5000", "-b", "a=560/5000", "-b", "b=610/5000")
    assert code == 0, out
    assert "Holm-adjusted for 2 treatments" in out


def test_sequential_flag() -> None:
    code, out = invoke(*IMVU, "--sequential", "-o", "json")
    assert code == 0, out
    assert f"{json.loads(out)['report'][1]['pValue']:.6f}" == "0.001239"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--branch", "x=abc", "--branch", "enhanced=66903/150702"], "'x=abc'"),
        (["--branch", "control=5/3", "--branch", "enhanced=1/2"], "5 conversions is more than 3 samples"),
        (["--branch", "control=1.5/3", "--branch", "enhanced=1/2"], "whole numbers"),
        (["--branch", "control=0.4:x:10", "--branch", "enhanced=1/2"], "MEAN:VARIANCE:N"),
        (["--branch", "control=0.4:-1:10", "--branch", "enhanced=1/2"], "variance"),
        (["--branch", "=1/2", "--branch", "enhanced=1/2"], "expected NAME="),
        (["--branch", "control=1/2"], "at least two --branch"),
        ([], "at least two --branch"),
        (["--branch", "a=1/2", "--branch", "a=1/3"], "unique"),
        ([*IMVU, "--weights", "control=0.5,enhanced=0.6"], "must sum to 1"),
        ([*IMVU, "--weights", "control=0.5,other=0.5"], "the branches are"),
        ([*IMVU, "--weights", "control=half,enhanced=0.5"], "NAME=WEIGHT"),
        ([*IMVU, "--alpha", "1.5"], "alpha must be between 0 and 1"),
        ([*IMVU, "--output", "csv"], "--output"),
    ],
    ids=[
        "not-a-count",
        "conversions>samples",
        "float-count",
        "bad-mean-variance",
        "negative-variance",
        "no-name",
        "one-branch",
        "no-branch",
        "duplicate",
        "weights-sum",
        "weights-names",
        "weights-number",
        "alpha",
        "output",
    ],
)
def test_bad_input_exits_2_with_a_clear_message(args: list[str], message: str) -> None:
    code, out = invoke(*args)
    assert code == 2, out
    assert message in " ".join(out.split())  # rich may wrap the error box


def test_mounts_as_the_experiment_subcommand() -> None:
    main_app = typer.Typer()

    @main_app.command()
    def version() -> None:
        """Another command, as the real main CLI has."""

    main_app.add_typer(app, name="experiment")
    result = runner.invoke(main_app, ["experiment", "report", *IMVU, "-o", "json"], env=ENV)
    assert result.exit_code == 0, result.output
    assert f"{json.loads(result.output)['report'][1]['pValue']:.6f}" == "0.000010"
