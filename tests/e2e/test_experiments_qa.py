"""Experiments for a growth team on the real stack (issue 16): forced QA users, segments and balance.

The app side is the SDK: it reads the ConfigMap the controller published, exposes users (QA forced by
``spec.force`` or a cookie), and its analysis counters are fed to the exporter as an app's ``/metrics``
would be scraped. The controller's report must count only the randomly assigned users.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

from helpers import set_metric, wait_scraped
from operator_proc import Controller
from prometheus_client import CollectorRegistry
from test_experiments import create_experiment, sdk_from_configmap, wait_published, wait_status

from controller.sdk import EXPOSURES, FORCED_EXPOSURES, Experiments, ForcedBranch, parse_forced

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
