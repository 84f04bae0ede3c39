"""The compare gate on the real stack (issue 15): the pushed pods against the not-yet-pushed baseline pods.

Every workload of the app publishes its own latency series on the exporter (label ``workload``), the way
a per-pod metric is scraped. A canary whose series is shifted while the baseline's is not is rolled back
and reverted; a shift both groups share (diurnal drift) passes, even though a pre/post delta gate on the
same metric (here in dry run) calls it a failure.
"""

from __future__ import annotations

from typing import Any

from dsl import APP_DEPLOYMENTS, THREE_PHASES, App, Given, Then, When
from helpers import set_metric, wait_scraped
from operator_proc import Controller

LATENCY = "stopline_e2e_latency_ms"


def latency(ns: str, **per_workload: float) -> None:
    for workload, value in per_workload.items():
        set_metric(LATENCY, value, test=ns, workload=workload)
    wait_scraped()


def everyone(ns: str, value: float) -> None:
    latency(ns, **dict.fromkeys(APP_DEPLOYMENTS, value))


def compare_gate(ns: str) -> dict[str, Any]:
    return {
        "name": "latency-vs-baseline",
        "compare": {
            "query": f'{LATENCY}{{test="{ns}", workload=~"{{{{ workloads }}}}"}}',
            "window": "1m",
            "maxIncreasePercent": 20,
            "minSamples": 5,
        },
        "interval": "1s",
        "inconclusiveLimit": 2,  # the first 5 s collect samples: those readings must not count
    }


def phases(hold: str) -> list[dict[str, Any]]:
    return [{**THREE_PHASES[0], "hold": hold}, {**THREE_PHASES[1], "hold": "2s"}, dict(THREE_PHASES[2])]


def reverts(app: App) -> list[str]:
    return [subject for _, subject in app.log() if subject.startswith("stopline: revert")]


def test_a_shifted_canary_is_rolled_back_and_reverted(
    controller: Controller, given: Given, when: When, then: Then, ns: str
) -> None:
    app = given.app(f"{ns}-cmp-fail")
    everyone(ns, 100)
    sha = app.commit("v2-slow")
    rel = when.release(app, sha, phases=phases("30s"), gates=[compare_gate(ns)])
    then.release_in(rel, "Holding", "canary")
    latency(ns, **{"web-canary": 230})  # only the pushed pods got slower
    status = then.release_reaches(rel, "RolledBack", "Failed", timeout=90)
    assert status["phase"] == "RolledBack", status.get("message")
    row = then.gauge(status, "latency-vs-baseline", "canary")
    assert row["verdict"] == "Fail", row
    assert row["prePush"] == 100 and row["postPush"] == 230, row  # baseline and canary medians
    assert row["deltaPercent"] == 130, row
    assert row["message"].startswith("canary median 230 vs baseline 100 (+130.0%), U="), row["message"]
    assert status["failedGate"] == "latency-vs-baseline"
    assert app.image("web-canary").endswith(":v1")
    then.release_reaches(rel, "RolledBack", timeout=60)
    assert then.condition(then.status("Release", rel), "GitReverted")["status"] == "True"
    assert len(reverts(app)) == 1


def test_drift_both_groups_share_passes(controller: Controller, given: Given, when: When, then: Then, ns: str) -> None:
    app = given.app(f"{ns}-cmp-pass")
    everyone(ns, 100)
    sha = app.commit("v2")
    delta_gate = {  # the pre/post delta on the same metric, for contrast: dry run, never acts
        "name": "latency-delta",
        "query": f'max({LATENCY}{{test="{ns}", workload="web-canary"}})',
        "maxIncreasePercent": 20,
        "interval": "1s",
        "dryRun": True,
        "phases": ["canary"],
    }
    rel = when.release(app, sha, phases=phases("12s"), gates=[compare_gate(ns), delta_gate])
    then.release_in(rel, "Holding", "canary")
    everyone(ns, 160)  # the evening peak: every pod, pushed or not
    status = then.release_reaches(rel, "Succeeded", "RolledBack", "Failed", timeout=120)
    assert status["phase"] == "Succeeded", status.get("message")
    row = then.gauge(status, "latency-vs-baseline", "canary")
    assert row["verdict"] == "Pass", row
    assert "no significant difference" in row["message"] or "within the bound" in row["message"], row
    assert then.gauge(status, "latency-vs-baseline", "chat")["verdict"] == "Pass"
    assert not any(r["gate"] == "latency-vs-baseline" and r["phase"] == "rest" for r in status["gauges"])
    delta = then.gauge(status, "latency-delta", "canary")
    assert delta["verdict"] == "Fail" and "dry run" in delta["message"], delta
    assert reverts(app) == []
