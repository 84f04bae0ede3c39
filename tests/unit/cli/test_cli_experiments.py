"""``stopline experiment list`` and ``experiment report NAME`` read Experiment status from the cluster."""

from __future__ import annotations

import json

from typer.testing import CliRunner
from web import samples

from cli.conftest import FakeApi
from controller import cli

runner = CliRunner()
ENV = {"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"}


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(cli.app, ["experiment", *args], env=ENV)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def line_with(out: str, *needles: str) -> str:
    found = [ln for ln in out.splitlines() if all(n in ln for n in needles)]
    assert len(found) == 1, f"expected one line with {needles}, got {found}\n{out}"
    return found[0]


def test_list_shows_rollout_closed_on_and_decision(fake: FakeApi) -> None:
    code, out = invoke("list")
    assert code == 0, out
    assert "To Users 10%" in line_with(out, "│ gdc ")
    assert "QA and Admin only" in line_with(out, "│ beta ")
    done = line_with(out, "│ done ")
    assert "enhanced" in done and "Closed:enhanced" in done


def test_list_json(fake: FakeApi) -> None:
    code, out = invoke("list", "-o", "json")
    assert code == 0, out
    data = {x["name"]: x for x in json.loads(out)}
    assert data["beta"]["rollout"] == "QA and Admin only"
    assert data["done"]["closedOn"] == "enhanced"
    assert data["gdc"]["decision"] == "Winner:enhanced"
    assert data["gdc"]["branches"] == {"control": 0.5, "enhanced": 0.5}


def test_report_name_shows_the_controller_report(fake: FakeApi) -> None:
    code, out = invoke("report", "gdc")
    assert code == 0, out
    enhanced = line_with(out, "150702")
    for text in ("enhanced", "66903", "0.44394", "0.24686", "0.000010", "99.9990%", "+1.84%", "[+1.02%, +2.67%]"):
        assert text in enhanced
    assert "Decision: Winner:enhanced" in out
    assert "Sample ratio: p=0.410000 ok" in out


def test_report_name_shows_segment_rows_and_balance(fake: FakeApi) -> None:
    fake.objects["experiments"]["seg"] = samples.experiment_object("seg", segmented=True)
    code, out = invoke("report", "seg")
    assert code == 0, out
    de = line_with(out, "│ country", " de ")
    for text in ("control", "300", "120", "0.40000", "2.90e-36 MISMATCH"):
        assert text in de
    assert "Balance by country: p=1.40e-35 over 2 segments IMBALANCED (segments de)" in out
    code, out = invoke("report", "seg", "-o", "json")
    data = json.loads(out)["status"]
    assert data["balance"][0]["chiSquare"] == 160.2 and data["segments"][0]["srm"]["pValue"] == 2.9e-36


def test_report_name_shows_the_cuped_table(fake: FakeApi) -> None:
    fake.objects["experiments"]["c"] = samples.experiment_object("c", cuped=True)
    code, out = invoke("report", "c")
    assert code == 0, out
    assert "CUPED (θ = 0.801235)" in out
    row = line_with(out, "│ enhanced", "3.53311")
    for text in ("1500", "0.99000", "0.001200", "+3.54%", "-67.12%"):
        assert text in row


def test_report_name_json(fake: FakeApi) -> None:
    code, out = invoke("report", "done", "-o", "json", "-n", "shop")
    assert code == 0, out
    data = json.loads(out)
    assert (data["decision"], data["closedOn"]) == ("Closed:enhanced", "enhanced")
    assert data["status"]["report"][1]["pValue"] == 0.00001


def test_report_missing_experiment(fake: FakeApi) -> None:
    code, out = invoke("report", "nope")
    assert code == 1
    assert out.strip() == "error: Experiment nope not found in namespace shop"


def test_report_name_and_branches_are_exclusive(fake: FakeApi) -> None:
    code, out = invoke("report", "gdc", "--branch", "a=1/2", "--branch", "b=1/2")
    assert code == 2
    assert "not both" in out


def test_offline_report_still_works_through_the_main_cli(fake: FakeApi) -> None:
    code, out = invoke("report", "-b", "control=64630/148266", "-b", "enhanced=66903/150702", "-o", "json")
    assert code == 0, out
    assert f"{json.loads(out)['report'][1]['pValue']:.6f}" == "0.000010"
    assert fake.connected == []
