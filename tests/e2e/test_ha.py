"""Two or more controller replicas on the real stack (issue 14): leader election through coordination.k8s.io
Leases, failover after SIGKILL within 15 s with no action repeated, and shards that each act only on their
own namespaces and take a dead shard's namespaces over."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from dsl import THREE_PHASES, Given, Then, When, gate
from helpers import create_namespace, delete_namespace, get_stack, kubectl_json, wait_for, wait_scraped
from operator_proc import SESSION_PREFIX, Controller
from test_release import _blocking_hook, revert_commits

from controller.reconcile.shards import shard_of

LOAD = "stopline_e2e_ha_load"
FAILOVER_BOUND = 15.0


@pytest.fixture
def standby(controller: Controller, tmp_path: Path) -> Iterator[Controller]:
    """A second replica of the session's controller: same Lease, its own identity; the session's holds it."""
    wait_for(lambda: controller.lease_holders().get(0) == controller.identity, timeout=30, message="main holds")
    other = Controller(controller.stack, tmp_path, identity="standby")
    other.start(wait_watching=False)
    yield other
    other.stop()
    controller.ensure_running()
    wait_for(lambda: controller.lease_holders().get(0) == controller.identity, timeout=30, message="main back")


def events_of(ns: str, name: str) -> Counter[tuple[str, str]]:
    """(reason, message) → how many times it was posted about ``name``."""
    items = kubectl_json("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}")["items"]
    return Counter((e["reason"], e.get("message", "")) for e in items for _ in range(int(e.get("count") or 1)))


def loop_started(replica: Controller, ns: str, name: str) -> bool:
    return f"Release {ns}/{name}: loop started" in replica.log_path.read_text(errors="replace")


def take_over(controller: Controller, standby: Controller) -> float:
    """SIGKILL the active replica; seconds until the standby holds its Lease."""
    killed = time.monotonic()
    controller.kill()
    wait_for(
        lambda: controller.lease_holders().get(0) == standby.identity,
        timeout=FAILOVER_BOUND + 10,
        interval=0.2,
        message="the standby to take the Lease over",
    )
    return time.monotonic() - killed


def test_a_standby_takes_over_mid_hold_and_nothing_is_done_twice(
    controller: Controller, standby: Controller, given: Given, when: When, then: Then, ns: str
) -> None:
    app = given.app(f"{ns}-ha")
    given.metric(LOAD, 1.0)
    wait_scraped()
    sha = app.commit("v2")
    phases = [dict(THREE_PHASES[0]), {**THREE_PHASES[1], "hold": "20s"}, dict(THREE_PHASES[2])]
    rel = when.release(app, sha, phases=phases, gates=[gate("load", LOAD, ns, max=6)])
    held = then.release_in(rel, "Holding", "chat")
    snapshot = then.get("configmap", f"{rel}-snapshot")["data"]
    assert not loop_started(standby, ns, rel), "the standby acted while the active replica held the Lease"

    took = take_over(controller, standby)
    status = then.release_reaches(rel, "Succeeded", "RolledBack", "Failed", timeout=120)

    assert took <= FAILOVER_BOUND, f"failover took {took:.1f} s"
    assert status["phase"] == "Succeeded", status.get("message")
    assert status["snapshot"]["configMap"] == held["snapshot"]["configMap"]
    after = then.get("configmap", f"{rel}-snapshot")["data"]
    assert {k: after.get(k) for k in snapshot} == snapshot, "a pre-push copy was taken again"
    repeated = {event: n for event, n in events_of(ns, rel).items() if n > 1}
    assert not repeated, f"events posted twice across the failover: {repeated}"
    assert [reason for reason, _ in events_of(ns, rel)].count("PushStarted") == 1
    assert {d: app.image(d) for d in app.deployments} == {d: f"registry.example/{d}:v2" for d in app.deployments}
    assert loop_started(standby, ns, rel), "the standby never ran the Release"


def test_a_standby_takes_over_mid_rollback_and_pushes_exactly_one_revert(
    controller: Controller, standby: Controller, given: Given, when: When, then: Then, ns: str, tmp_path: Path
) -> None:
    app = given.app(f"{ns}-harb")
    _blocking_hook(get_stack().repo_path(f"{ns}-harb"), tmp_path)
    (tmp_path / "block").touch()
    given.metric(LOAD, 1.0)
    wait_scraped()
    before = app.specs()
    sha = app.commit("v2-bad")
    phases = [{"name": "canary", "deployments": ["web-canary"], "hold": "60s"}, {"name": "rest", "remaining": True}]
    rel = when.release(app, sha, phases=phases, gates=[gate("load", LOAD, ns, max=6)])
    then.release_in(rel, "Holding", "canary")
    when.metric(LOAD, 9.0)
    wait_for(lambda: (tmp_path / "entered").exists(), timeout=30, message="revert push to reach the server")

    took = take_over(controller, standby)
    (tmp_path / "block").unlink()
    status = then.release_reaches(rel, "RolledBack", "Failed", timeout=90)
    landed = wait_for(
        lambda: (
            (s := then.status("release", rel))
            and (s.get("revert") or {}).get("state") in ("Pushed", "AlreadyReverted")
            and s
        ),
        timeout=60,
        message="the revert recorded by the standby",
    )

    assert took <= FAILOVER_BOUND, f"failover took {took:.1f} s"
    assert status["phase"] == "RolledBack"
    assert len(revert_commits(app)) == 1, app.log()
    assert landed["revert"]["commit"] == app.log()[0][0]
    assert app.specs() == before


def shard_namespaces(shards: int) -> dict[int, str]:
    """One session namespace name per shard."""
    out: dict[int, str] = {}
    i = 0
    while len(out) < shards:
        name = f"{SESSION_PREFIX}-shard-{i}"
        out.setdefault(shard_of(name, shards), name)
        i += 1
    return out


def test_two_shards_each_act_on_their_own_namespaces_and_one_takes_over_a_dead_one(
    controller: Controller, tmp_path: Path
) -> None:
    controller.stop()  # the session's single-shard controller would serve every namespace
    lease = f"{SESSION_PREFIX}-sharded"
    replicas = [Controller(controller.stack, tmp_path / n, identity=n, lease_name=lease, shards=2) for n in "ab"]
    namespaces = shard_namespaces(2)
    for ns in namespaces.values():
        create_namespace(ns, {"stopline-e2e-test": "shards"})
    try:
        for r in replicas:
            r.start(wait_watching=False)
        holders = wait_for(
            lambda: (h := replicas[0].lease_holders()) and len(set(h.values()) - {""}) == 2 and h,
            timeout=30,
            message="the two replicas to hold one shard each",
        )
        by_identity = {r.identity: r for r in replicas}
        owner = {shard: by_identity[holders[shard]] for shard in (0, 1)}
        rels = {}
        for shard, ns in namespaces.items():
            app = Given(ns).app(f"{ns}-app")
            rels[shard] = (When(ns).release(app, app.commit("v2"), phases=[{"name": "all", "remaining": True}]), ns)
        for shard, (rel, ns) in rels.items():
            status = Then(ns).release_reaches(rel, "Succeeded", "RolledBack", "Failed", timeout=120)
            assert status["phase"] == "Succeeded", status.get("message")
            assert loop_started(owner[shard], ns, rel)
            assert not loop_started(owner[1 - shard], ns, rel), f"the replica of shard {1 - shard} acted in {ns}"

        dead, survivor = owner[0], owner[1]
        killed = time.monotonic()
        dead.kill()
        wait_for(
            lambda: survivor.lease_holders().get(0) == survivor.identity,
            timeout=FAILOVER_BOUND + 10,
            message="the survivor to take the dead replica's shard",
        )
        took = time.monotonic() - killed
        ns = namespaces[0]
        app = Given(ns).app(f"{ns}-app2")
        gets = survivor.metric("stopline_kube_requests_total", verb="GET", resource="deployments")
        rel = When(ns).release(app, app.commit("v3"), phases=[{"name": "all", "remaining": True}])
        status = Then(ns).release_reaches(rel, "Succeeded", "RolledBack", "Failed", timeout=120)
        assert status["phase"] == "Succeeded", status.get("message")
        assert took <= FAILOVER_BOUND, f"shard takeover took {took:.1f} s"
        assert loop_started(survivor, ns, rel)
        # the survivor judged the taken-over namespace's rollout from its workload watch (listed again when
        # it took the shard), not by GETting the Deployments every tick
        gets = survivor.metric("stopline_kube_requests_total", verb="GET", resource="deployments") - gets
        workloads = len(app.specs())
        print(f"GET deployments for the takeover Release: {gets:.0f} ({workloads} workloads)")
        assert gets <= 3 * workloads, f"{gets:.0f} GETs of {workloads} Deployments: read per tick, not watched"
    finally:
        for r in replicas:
            r.stop()
        replicas[0].delete_leases()
        for ns in namespaces.values():
            delete_namespace(ns)
        controller.start()
