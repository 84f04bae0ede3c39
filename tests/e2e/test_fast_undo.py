"""Fast undo on the real stack (issue 13): the pushed version stops serving in one step, and afterwards every
Deployment's spec — strategy included — and its revision history are exactly what a rollback leaves."""

from __future__ import annotations

from typing import Any

from dsl import THREE_PHASES, App, Given, Then, When, gate
from helpers import kubectl_json, wait_scraped
from operator_proc import Controller

LOAD = "stopline_e2e_load"
REVISION = "deployment.kubernetes.io/revision"
TOUCHED = ("web-canary", "chat")


def replica_sets(ns: str, app: str) -> dict[str, dict[str, Any]]:
    """The Deployment's ReplicaSets by name: pod-template-hash, revision annotation and replicas."""
    items = kubectl_json("get", "replicasets", "-n", ns)["items"]
    out: dict[str, dict[str, Any]] = {}
    for rs in items:
        owners = rs["metadata"].get("ownerReferences") or []
        if not any(o.get("kind") == "Deployment" and o.get("name") == app for o in owners):
            continue
        out[rs["metadata"]["name"]] = {
            "hash": rs["metadata"]["labels"].get("pod-template-hash"),
            "revision": int(rs["metadata"].get("annotations", {}).get(REVISION, "0")),
            "replicas": rs["spec"].get("replicas"),
            "image": rs["spec"]["template"]["spec"]["containers"][0]["image"],
        }
    return out


def deployment_revision(ns: str, name: str) -> int:
    obj = kubectl_json("get", "deployment", name, "-n", ns)
    return int(obj["metadata"]["annotations"][REVISION])


def breach_mid_hold(given: Given, when: When, then: Then, ns: str, repo: str, on_failure: dict[str, Any]) -> Any:
    app = given.app(f"{ns}-{repo}")
    given.metric(LOAD, 4.1)
    wait_scraped()
    before = app.specs()
    sha = app.commit("v2-bad")
    phases = [dict(THREE_PHASES[0]), {**THREE_PHASES[1], "hold": "60s"}, dict(THREE_PHASES[2])]
    rel = when.release(app, sha, phases=phases, gates=[gate("load", LOAD, ns, max=6)], on_failure=on_failure)
    then.release_in(rel, "Holding", "chat")
    pushed = {d: replica_sets(ns, d) for d in TOUCHED}
    pushed_revision = {d: deployment_revision(ns, d) for d in TOUCHED}
    when.metric(LOAD, 7.2)
    status = then.release_reaches(rel, "RolledBack", "Failed", timeout=90)
    assert status["phase"] == "RolledBack", status.get("message")
    return app, rel, status, before, pushed, pushed_revision


def assert_exact(app: App, ns: str, before: Any, pushed: Any, pushed_revision: Any) -> None:
    after = app.specs()
    for name in app.deployments:
        assert after[name] == before[name], f"{name}: spec (strategy included) is not the pre-push copy"
    for d in TOUCHED:
        now = replica_sets(ns, d)
        assert set(now) == set(pushed[d]), f"{d}: the undo added or removed a ReplicaSet: {now} vs {pushed[d]}"
        old = [rs for rs in now.values() if rs["image"].endswith(":v1")]
        bad = [rs for rs in now.values() if rs["image"].endswith(":v2-bad")]
        assert len(old) == 1 and len(bad) == 1, now
        assert old[0]["replicas"] == before[d]["replicas"] and bad[0]["replicas"] == 0, now
        # the old ReplicaSet is re-adopted as the next revision (as `kubectl rollout undo` does); putting the
        # strategy back changes no pod template, so it adds no revision of its own
        assert deployment_revision(ns, d) == pushed_revision[d] + 1
        assert old[0]["revision"] == pushed_revision[d] + 1


def test_breach_mid_hold_fast_undo_is_exact(
    controller: Controller, given: Given, when: When, then: Then, ns: str
) -> None:
    app, rel, status, before, pushed, pushed_revision = breach_mid_hold(given, when, then, ns, "fast", {})
    undo = status["undo"]
    assert undo["mode"] == "fast"
    assert undo.get("strategyPending", []) == []
    assert undo["strategyRestoredAt"] and undo["startedAt"]
    assert {"Restored", "StrategyRestored"} <= {e["reason"] for e in then.events(rel)}
    assert_exact(app, ns, before, pushed, pushed_revision)


def test_rolling_undo_keeps_the_workloads_own_strategy(
    controller: Controller, given: Given, when: When, then: Then, ns: str
) -> None:
    app, rel, status, before, pushed, pushed_revision = breach_mid_hold(
        given, when, then, ns, "rolling", {"undo": "rolling"}
    )
    undo = status["undo"]
    assert undo["mode"] == "rolling"
    assert not undo.get("strategyPending") and not undo.get("strategyRestoredAt")
    assert "StrategyRestored" not in {e["reason"] for e in then.events(rel)}
    assert_exact(app, ns, before, pushed, pushed_revision)
