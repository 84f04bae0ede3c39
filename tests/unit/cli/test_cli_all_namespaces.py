"""List commands take kubectl's ``-A/--all-namespaces`` and then show a Namespace column."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.conftest import FakeApi
from controller import cli

runner = CliRunner()
ENV = {"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"}


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(cli.app, list(args), env=ENV)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def rows(out: str, title: str) -> list[list[str]]:
    """Body rows of the table titled ``title`` (cells stripped)."""
    lines = out.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip() == title)
    body: list[list[str]] = []
    for ln in lines[start + 1 :]:
        if ln.startswith("└"):
            break
        if ln.startswith("│"):
            body.append([c.strip() for c in re.split(r"│", ln)[1:-1]])
    return body


def header(out: str, title: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip() == title)
    first = next(ln for ln in lines[start + 1 :] if ln.startswith("┃"))
    return [c.strip() for c in re.split(r"┃", first)[1:-1]]


def moved(obj: dict[str, Any], name: str, namespace: str) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"].update(name=name, namespace=namespace, uid=f"uid-{namespace}-{name}")
    return out


@pytest.fixture
def two_namespaces(fake: FakeApi) -> FakeApi:
    """The samples in ``shop`` plus one Track, Release and Experiment in ``lab``."""
    fake.objects["tracks"]["lab-web"] = moved(fake.objects["tracks"]["web"], "lab-web", "lab")
    fake.objects["releases"]["lab-web-1"] = moved(fake.objects["releases"]["web-aaaaaaa"], "lab-web-1", "lab")
    fake.objects["experiments"]["lab-gdc"] = moved(fake.objects["experiments"]["gdc"], "lab-gdc", "lab")
    return fake


@pytest.mark.parametrize("flag", ["-A", "--all-namespaces"])
def test_status_lists_every_namespace_with_a_namespace_column(two_namespaces: FakeApi, flag: str) -> None:
    code, out = invoke("status", flag)
    assert code == 0, out
    assert header(out, "Tracks in any namespace")[:2] == ["Namespace", "Track"]
    assert [r[:2] for r in rows(out, "Tracks in any namespace")] == [
        ["lab", "lab-web"],
        ["shop", "api"],
        ["shop", "web"],
    ]
    assert header(out, "Releases in any namespace")[:2] == ["Namespace", "Release"]
    releases = [r[:3] for r in rows(out, "Releases in any namespace")]
    assert ["lab", "lab-web-1", "aaaaaaa"] in releases
    assert len(releases) == 4
    assert two_namespaces.listed == [("tracks", True), ("releases", True)]


def test_status_without_a_flag_stays_in_its_namespace(two_namespaces: FakeApi) -> None:
    code, out = invoke("status")
    assert code == 0, out
    assert header(out, "Tracks in shop")[0] == "Track"
    assert [r[0] for r in rows(out, "Tracks in shop")] == ["api", "web"]
    assert "lab-web-1" not in out
    assert two_namespaces.listed == [("tracks", False), ("releases", False)]


def test_status_all_namespaces_json_names_each_objects_namespace(two_namespaces: FakeApi) -> None:
    code, out = invoke("status", "-A", "-o", "json")
    assert code == 0, out
    data = json.loads(out)
    assert data["namespace"] is None
    assert [(t["namespace"], t["name"]) for t in data["tracks"]] == [
        ("lab", "lab-web"),
        ("shop", "api"),
        ("shop", "web"),
    ]
    assert ("lab", "lab-web-1") in [(r["namespace"], r["name"]) for r in data["releases"]]


def test_status_all_namespaces_does_not_take_a_name(two_namespaces: FakeApi) -> None:
    code, out = invoke("status", "web", "-A")
    assert code == 2
    assert "--all-namespaces lists; it does not go with a NAME" in out
    assert two_namespaces.listed == []


def test_empty_cluster_says_any_namespace(fake: FakeApi) -> None:
    fake.objects = {}
    code, out = invoke("status", "-A")
    assert code == 0, out
    assert "No Tracks in any namespace." in out and "No Releases in any namespace." in out


@pytest.mark.parametrize("flag", ["-A", "--all-namespaces"])
def test_experiment_list_all_namespaces(two_namespaces: FakeApi, flag: str) -> None:
    code, out = invoke("experiment", "list", flag)
    assert code == 0, out
    title = "Experiments in any namespace"
    assert header(out, title)[:2] == ["Namespace", "Experiment"]
    assert [r[:2] for r in rows(out, title)] == [
        ["lab", "lab-gdc"],
        ["shop", "beta"],
        ["shop", "done"],
        ["shop", "gdc"],
    ]

    code, out = invoke("experiment", "list", flag, "-o", "json")
    assert code == 0, out
    listed = [(x["namespace"], x["name"]) for x in json.loads(out)]
    assert listed == [("lab", "lab-gdc"), ("shop", "beta"), ("shop", "done"), ("shop", "gdc")]


def test_experiment_list_without_a_flag_stays_in_its_namespace(two_namespaces: FakeApi) -> None:
    code, out = invoke("experiment", "list")
    assert code == 0, out
    assert header(out, "Experiments in shop")[0] == "Experiment"
    assert "lab-gdc" not in out
