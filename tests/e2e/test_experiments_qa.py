"""Experiments for a growth team on the real stack (issue 16): forced QA users, segments and balance.

The app side is the SDK: it reads the ConfigMap the controller published, exposes users (QA forced by
``spec.force`` or a cookie), and its analysis counters are fed to the exporter as an app's ``/metrics``
would be scraped. The controller's report must count only the randomly assigned users.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from helpers import get_stack, set_metric, wait_scraped
from operator_proc import Controller
from prometheus_client import CollectorRegistry
from test_experiments import create_experiment, sdk_from_configmap, wait_published, wait_status

from controller.sdk import (
    EXPOSURES,
    FORCED_EXPOSURES,
    SEGMENT_EXPOSURES,
    Experiments,
    ForcedBranch,
    parse_forced,
)

KEY = "QaCheckout"
BRANCHES = {"control": 0.5, "enhanced": 0.5}
FORCE = {"users": {"qa-alice": "enhanced", "qa-bob": "control"}, "groups": {"qa": "enhanced"}}
USERS = [f"user-{i}" for i in range(3000)]


def samples(registry: CollectorRegistry, name: str) -> dict[str, float]:
    """``{branch: value}`` of one SDK counter (what Prometheus would scrape from the app)."""
    out: dict[str, float] = {}
    for metric in registry.collect():
        for s in metric.samples:
            if s.name == name and s.labels.get("experiment") == KEY:
                out[s.labels["branch"]] = out.get(s.labels["branch"], 0.0) + s.value
    return out


def scrape_into_exporter(registry: CollectorRegistry, label: str) -> None:
    """Copy the app's analysis and segment counters to the exporter (as Prometheus would scrape the app)."""
    for metric in registry.collect():
        for s in metric.samples:
            if s.labels.get("experiment") != KEY or s.name not in (EXPOSURES, SEGMENT_EXPOSURES):
                continue
            set_metric(s.name, s.value, **{**s.labels, "experiment": label})
    wait_scraped(timeout=60)


def stopline(*args: str) -> str:
    env = {**os.environ, "KUBECONFIG": str(get_stack().kubeconfig), "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", *args], env=env, check=True, capture_output=True, text=True, timeout=60
    ).stdout


def test_forced_qa_users_get_their_branch_and_stay_out_of_the_report(
    controller: Controller, ns: str, tmp_path: Path
) -> None:
    label = f"{ns}-qa"
    name = create_experiment(
        ns,
        "qa-checkout",
        key=KEY,
        rollout=100,
        branches=BRANCHES,
        force=FORCE,
        metric={"exposures": f'sum by (branch) ({EXPOSURES}{{experiment="{label}"}})'},
        minSamples=100,
        interval="2s",
    )
    config = wait_published(ns, "force in the published config", lambda c: "force" in c, key=KEY)
    assert config["force"] == FORCE

    sdk_from_configmap(ns, tmp_path / "app")  # the ConfigMap, mounted
    registry = CollectorRegistry()
    sdk = Experiments.from_path(tmp_path / "app", registry=registry)
    assert sdk.expose("qa-alice", KEY) == "enhanced"
    assert sdk.expose("qa-bob", KEY, groups=("qa",)) == "control"  # the user rule beats the group rule
    assert isinstance(sdk.expose("carol", KEY, groups=("qa",)), ForcedBranch)
    cookie = parse_forced(f"{KEY}=control")
    assert sdk.expose("user-0", KEY, forced=cookie) == "control"
    for user in USERS:
        sdk.expose(user, KEY)

    hashed = samples(registry, EXPOSURES)
    assert samples(registry, FORCED_EXPOSURES) == {"enhanced": 2.0, "control": 2.0}
    assert sum(hashed.values()) == len(USERS)  # user-0 counted once: its forced view went to the QA series
    for branch, value in hashed.items():
        set_metric(EXPOSURES, value, experiment=label, branch=branch)
    wait_scraped(timeout=60)

    status = wait_status(
        ns,
        name,
        "report with the SDK's analysis counts",
        lambda s: (
            {r["branch"]: r["samples"] for r in s.get("report") or []} == {b: round(v) for b, v in hashed.items()}
        ),
    )
    assert sum(r["samples"] for r in status["report"]) == len(USERS)

    page = urllib.request.urlopen(f"{controller.http_url}/experiments", timeout=10).read().decode()
    assert "Forced (not counted)" in page
    for who in ("user qa-alice → enhanced", "user qa-bob → control", "group qa → enhanced"):
        assert who in page


def test_segment_rows_and_balance_flag_an_imbalanced_segment(controller: Controller, ns: str, tmp_path: Path) -> None:
    label = f"{ns}-seg"
    name = create_experiment(
        ns,
        "qa-segments",
        key=KEY,
        rollout=100,
        branches=BRANCHES,
        force={"groups": {"qa": "enhanced"}},
        metric={
            "exposures": f'sum by (branch) ({EXPOSURES}{{experiment="{label}"}})',
            "segments": {
                "exposures": f'sum by (branch, dimension, segment) ({SEGMENT_EXPOSURES}{{experiment="{label}"}})'
            },
        },
        minSamples=100,
        interval="2s",
    )
    wait_published(ns, "published", lambda c: "force" in c, key=KEY)
    sdk_from_configmap(ns, tmp_path / "app")
    registry = CollectorRegistry()
    sdk = Experiments.from_path(tmp_path / "app", registry=registry)
    for i, user in enumerate(USERS):
        platform, country = ("ios" if i % 3 else "web"), ("de" if i % 2 else "fr")
        branch = sdk.get_branch(user, KEY)
        # a bug on the German page: half of its control users never log the country segment
        lost = country == "de" and branch == "control" and i % 4 == 1
        segments = {"platform": platform} if lost else {"platform": platform, "country": country}
        sdk.expose(user, KEY, segments=segments)
    sdk.expose("qa-carol", KEY, groups=("qa",), segments={"platform": "ios", "country": "de"})  # forced: not counted
    scrape_into_exporter(registry, label)

    status = wait_status(
        ns,
        name,
        "segment rows and balance for platform and country",
        lambda s: [b["dimension"] for b in s.get("balance") or []] == ["country", "platform"],
    )
    rows = {
        (x["dimension"], x["segment"]): {r["branch"]: r["samples"] for r in x["report"]} for x in status["segments"]
    }
    assert set(rows) == {("country", "de"), ("country", "fr"), ("platform", "ios"), ("platform", "web")}
    assert sum(sum(r.values()) for (d, _), r in rows.items() if d == "platform") == len(USERS)  # QA not counted
    country, platform = status["balance"]
    assert platform["ok"] is True and platform["imbalanced"] == []
    assert country["ok"] is False and country["imbalanced"] == ["de"]
    assert country["pValue"] < 1e-6 and country["df"] == 2
    assert "imbalanced by country (de)" in status["message"]

    page = urllib.request.urlopen(f"{controller.http_url}/experiments", timeout=10).read().decode()
    assert 'class="segment-row bad" data-dimension="country" data-segment="de"' in page
    assert "IMBALANCED (de)" in page

    out = stopline("experiment", "report", name, "-n", ns)
    assert "Balance by country" in out and "IMBALANCED (segments de)" in out
    de = next(line for line in out.splitlines() if "│ country" in line and " de " in line)
    assert "MISMATCH" in de
    shown = json.loads(stopline("experiment", "report", name, "-n", ns, "-o", "json"))
    assert shown["status"]["balance"] == status["balance"]
