"""Experiments on the real stack: the report from Prometheus counts, the published ConfigMap, closeOn, harm and
the Release experiment gate (issue 7)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from dsl import API, THREE_PHASES, Given, Then, When
from helpers import kubectl, kubectl_json, set_metric, until, wait_for, wait_scraped
from operator_proc import Controller
from prometheus_client import CollectorRegistry

from controller.experiments.hashing import ExperimentConfig, get_branch
from controller.experiments.stats import two_proportion_ztest
from controller.sdk import Experiments

CONFIGMAP = "stopline-experiments"
EXPOSURES = "stopline_experiment_exposures_total"
CONVERSIONS = "stopline_experiment_conversions_total"
KEY = "GDCEurope2011"
# IMVU's GDC Europe 2011 report; the weights are the observed split, so the sample ratio is as configured.
IMVU = {"control": (64630, 148266), "enhanced": (66903, 150702)}
OBSERVED_SPLIT = {"control": 0.496, "enhanced": 0.504}
# enhanced converts at 10 % against control's 12 % on 5000 users each: z ≈ 3.2, p ≈ 0.0014.
HARM = {"control": (600, 5000), "enhanced": (500, 5000)}
USERS = [f"user-{i}" for i in range(400)]


def feed_counts(experiment_label: str, counts: Mapping[str, tuple[int, int]]) -> None:
    """Set exposures/conversions series on the exporter (labelled with a value only this test uses)."""
    for branch, (conversions, samples) in counts.items():
        set_metric(EXPOSURES, samples, experiment=experiment_label, branch=branch)
        set_metric(CONVERSIONS, conversions, experiment=experiment_label, branch=branch)
    wait_scraped(timeout=60)


def metric_spec(experiment_label: str) -> dict[str, str]:
    return {
        "exposures": f'sum by (branch) ({EXPOSURES}{{experiment="{experiment_label}"}})',
        "conversions": f'sum by (branch) ({CONVERSIONS}{{experiment="{experiment_label}"}})',
    }


def create_experiment(ns: str, name: str, **spec: Any) -> str:
    body = {"apiVersion": API, "kind": "Experiment", "metadata": {"name": name, "namespace": ns}, "spec": spec}
    kubectl("apply", "-f", "-", input=json.dumps(body))
    return name


def experiment_status(ns: str, name: str) -> dict[str, Any]:
    return dict(kubectl_json("get", "experiment", name, "-n", ns).get("status") or {})


def wait_status(
    ns: str, name: str, what: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 90
) -> dict[str, Any]:
    return until(lambda: experiment_status(ns, name), predicate, timeout, f"experiment {ns}/{name}: {what}")


def configmap_data(ns: str) -> dict[str, str]:
    proc = kubectl("get", "configmap", CONFIGMAP, "-n", ns, "-o", "json", check=False)
    if proc.returncode != 0:
        return {}
    return dict(json.loads(proc.stdout).get("data") or {})


def published(ns: str, key: str = KEY) -> dict[str, Any] | None:
    text = configmap_data(ns).get(f"{key}.json")
    return None if text is None else dict(json.loads(text))


def wait_published(
    ns: str, what: str, predicate: Callable[[dict[str, Any]], bool], key: str = KEY, timeout: float = 90
) -> dict[str, Any]:
    return until(lambda: published(ns, key), predicate, timeout, f"ConfigMap {ns}/{CONFIGMAP} key {key}.json: {what}")


def sdk_from_configmap(ns: str, directory: Path) -> Experiments:
    """What an app with the ConfigMap mounted at ``directory`` sees: one file per data key."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.iterdir():
        old.unlink()
    for key, text in configmap_data(ns).items():
        (directory / key).write_text(text)
    return Experiments.from_path(directory, registry=CollectorRegistry())


def condition(status: Mapping[str, Any], type_: str) -> dict[str, Any]:
    for c in status.get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    raise AssertionError(f"no condition {type_} in {status.get('conditions')}")


def test_report_from_prometheus_counts(controller: Controller, ns: str) -> None:
    label = f"{ns}-imvu"
    feed_counts(label, IMVU)
    name = create_experiment(
        ns,
        "gdc-europe-2011",
        key=KEY,
        rollout=50,
        branches=OBSERVED_SPLIT,
        metric=metric_spec(label),
        minSamples=1000,
        interval="2s",
    )

    status = wait_status(
        ns,
        name,
        "report with the IMVU counts, config published",
        # the report and the publish are separate steps: under load the report can land first
        lambda s: (
            [r.get("samples") for r in s.get("report") or []] == [148266, 150702]
            and any(c.get("type") == "Published" for c in s.get("conditions") or [])
        ),
    )

    control, enhanced = status["report"]
    assert (control["branch"], control["conversions"]) == ("control", 64630)
    assert control["mean"] == pytest.approx(0.43591, abs=1e-5)
    assert control["variance"] == pytest.approx(0.24589, abs=1e-5)
    assert control.get("pValue") is None
    assert (enhanced["branch"], enhanced["conversions"]) == ("enhanced", 66903)
    assert enhanced["mean"] == pytest.approx(0.44394, abs=1e-5)
    assert enhanced["variance"] == pytest.approx(0.24686, abs=1e-5)
    assert enhanced["pValue"] == pytest.approx(0.00001, abs=1e-6)
    assert enhanced["significance"] == pytest.approx(99.999, abs=1e-4)
    # status.report carries full precision (9.5934e-06), not the display rounding (1e-05)
    exact_p = two_proportion_ztest(64630, 148266, 66903, 150702).p_value
    assert enhanced["pValue"] == pytest.approx(exact_p, rel=1e-12)
    assert enhanced["liftPercent"] == pytest.approx(1.84, abs=0.01)
    assert status["srm"]["ok"] is True and status["srm"]["pValue"] > 0.5
    assert status["decision"] == "Winner:enhanced"
    assert status["pValue"] == pytest.approx(0.00001, rel=0.05)
    assert status.get("closedOn") is None  # autoClose.onWinner is off by default
    assert condition(status, "ReportAvailable")["status"] == "True"
    assert condition(status, "Published")["status"] == "True"
    assert condition(status, "Ready")["status"] == "True"

    lines = kubectl("get", "experiments", "-n", ns).stdout.splitlines()
    assert lines[0].split() == ["NAME", "ROLLOUT", "DECISION", "P-VALUE", "AGE"], lines
    row = lines[1].split()
    assert row[:3] == [name, "50", "Winner:enhanced"], lines
    assert float(row[3]) == pytest.approx(0.00001, rel=0.05)

    config = published(ns)
    assert config == {
        "key": KEY,
        "seed": KEY,
        "rollout": 50.0,
        "audience": [],
        "branches": OBSERVED_SPLIT,
        "closeOn": None,
        "hashVersion": 2,
        "enabled": True,
    }
    cm = kubectl_json("get", "configmap", CONFIGMAP, "-n", ns)
    assert cm["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "stopline"


def test_close_on_reaches_the_configmap_and_the_sdk(controller: Controller, ns: str, tmp_path: Path) -> None:
    # A 10-minute interval: only the spec-change wake-up can explain an update within the deadline.
    name = create_experiment(
        ns,
        "checkout",
        key=KEY,
        seed="checkout-seed",
        rollout=50,
        branches={"control": 0.5, "enhanced": 0.5},
        interval="10m",
    )
    wait_published(ns, "first publication", lambda c: c["closeOn"] is None)
    expected = ExperimentConfig(
        key=KEY, seed="checkout-seed", rollout=50, branches=(("control", 0.5), ("enhanced", 0.5))
    )
    sdk = sdk_from_configmap(ns, tmp_path / "before")
    before = [sdk.get_branch(user, KEY) for user in USERS]
    assert before == [get_branch(expected, user) for user in USERS]
    assert {"control", "enhanced", None} <= set(before)
    assert 0.35 < before.count(None) / len(USERS) < 0.65  # rollout 50 %

    kubectl("patch", "experiment", name, "-n", ns, "--type=merge", "-p", json.dumps({"spec": {"closeOn": "enhanced"}}))
    config = wait_published(ns, "closeOn enhanced", lambda c: c["closeOn"] == "enhanced", timeout=60)
    assert (config["seed"], config["rollout"], config["branches"]) == (
        "checkout-seed",
        50.0,
        {"control": 0.5, "enhanced": 0.5},
    )
    sdk = sdk_from_configmap(ns, tmp_path / "closed")
    assert {sdk.get_branch(user, KEY) for user in USERS} == {"enhanced"}
    status = wait_status(ns, name, "Closed:enhanced", lambda s: s.get("decision") == "Closed:enhanced", timeout=60)
    assert status["closedOn"] == "enhanced"

    kubectl("patch", "experiment", name, "-n", ns, "--type=json", "-p", '[{"op": "remove", "path": "/spec/closeOn"}]')
    wait_published(ns, "reopened (closeOn null)", lambda c: c["closeOn"] is None, timeout=60)
    sdk = sdk_from_configmap(ns, tmp_path / "reopened")
    assert [sdk.get_branch(user, KEY) for user in USERS] == before


def test_harm_auto_closes_to_control_and_fails_the_release_gate(
    controller: Controller, given: Given, when: When, then: Then, ns: str
) -> None:
    label = f"{ns}-harm"
    feed_counts(label, HARM)
    experiment = create_experiment(
        ns,
        "new-checkout",
        key="NewCheckout",
        branches={"control": 0.5, "enhanced": 0.5},
        metric=metric_spec(label),
        minSamples=1000,
        autoClose={"onHarm": True},
        interval="2s",
    )
    status = wait_status(ns, experiment, "harm and auto-close", lambda s: s.get("closedOn") is not None)
    assert status["decision"] == "Harm:enhanced"
    assert status["closedOn"] == "control"
    assert condition(status, "Closed")["reason"] == "AutoCloseOnHarm"
    enhanced = status["report"][1]
    assert enhanced["branch"] == "enhanced" and enhanced["pValue"] < 0.05 and enhanced["liftPercent"] < 0
    assert wait_published(ns, "closeOn control", lambda c: c["closeOn"] == "control", key="NewCheckout")

    app = given.app(f"{ns}-harm")
    before = app.specs()
    sha = app.commit("v2")
    gate = {"name": "checkout-harm", "experiment": {"name": experiment, "failOn": "harm"}, "interval": "1s"}
    rel = when.release(app, sha, phases=THREE_PHASES, gates=[gate])
    result = then.release_reaches(rel, "Succeeded", "RolledBack", "Failed", timeout=120)

    assert result["phase"] == "RolledBack", result.get("message")
    assert result["failedGate"] == "checkout-harm"
    row = then.gauge(result, "checkout-harm", "canary")
    assert row["verdict"] == "Fail"
    assert row["threshold"] == f"experiment {experiment}: harm"
    assert app.spec("web-canary") == before["web-canary"]
    assert then.condition(result, "RolledBack")["status"] == "True"


def test_deleting_an_experiment_unpublishes_only_its_key(controller: Controller, ns: str) -> None:
    create_experiment(ns, "first", key="First", branches={"control": 0.5, "enhanced": 0.5}, interval="10m")
    create_experiment(ns, "second", key="Second", branches={"a": 0.2, "b": 0.8}, interval="10m")
    wait_published(ns, "First published", lambda c: c["key"] == "First", key="First")
    wait_published(ns, "Second published", lambda c: c["key"] == "Second", key="Second")

    kubectl("delete", "experiment", "first", "-n", ns, "--wait=true", timeout=120)

    data = until(
        lambda: configmap_data(ns), lambda d: "First.json" not in d, 60, "First.json removed from the ConfigMap"
    )
    assert set(data) == {"Second.json", "Second.growthbook.json"}  # First's GrowthBook payload went too
    assert json.loads(data["Second.json"])["branches"] == {"a": 0.2, "b": 0.8}


def test_deleting_the_namespace_is_not_blocked_by_an_experiment(controller: Controller, ns: str) -> None:
    create_experiment(ns, "doomed", key="Doomed", branches={"control": 0.5, "enhanced": 0.5}, interval="10m")
    wait_published(ns, "Doomed published", lambda c: c["key"] == "Doomed", key="Doomed")

    # The namespace controller may remove the ConfigMap before the Experiment's delete handler runs, and
    # nothing can be created in a terminating namespace: the handler must not retry that forever.
    kubectl("delete", "configmap", CONFIGMAP, "-n", ns)
    kubectl("delete", "namespace", ns, "--wait=false")

    # The controller's part is to let the Experiment go; the namespace controller then finishes in its own time.
    wait_for(
        lambda: "NotFound" in kubectl("get", "experiment", "doomed", "-n", ns, check=False).stderr,
        timeout=120,
        message=f"Experiment {ns}/doomed to be gone (its finalizer released)",
    )
