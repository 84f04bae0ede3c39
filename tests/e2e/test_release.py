"""Release engine on the real stack: phased push, gates, rollback and git revert (issue: Release engine)."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
from dsl import THREE_PHASES, App, Given, Then, When, commit_message, gate, tree_of
from faults import Proxy
from helpers import Stack, branch_sha, get_stack, wait_for, wait_scraped
from operator_proc import Controller

LOAD = "stopline_e2e_load"


def revert_commits(app: App) -> list[tuple[str, str]]:
    return [(sha, subject) for sha, subject in app.log() if subject.startswith("stopline: revert")]


def test_good_revision_goes_through_three_phases(
    controller: Controller, given: Given, when: When, then: Then, ns: str
) -> None:
    app = given.app(f"{ns}-good")
    given.metric(LOAD, 4.1)
    wait_scraped()
    sha = app.commit("v2")

    def writes(action: str) -> float:
        return controller.metric("stopline_status_writes_total", kind="Release", action=action)

    before = {a: writes(a) for a in ("Snapshot", "before:ApplyPhase", "CaptureBaseline", "MarkAvailable")}
    rel = when.release(app, sha, gates=[gate("load", LOAD, ns, max=6, maxIncreasePercent=25)], watch="2s")
    status = then.release_reaches(rel, "Succeeded", "RolledBack", "Failed", timeout=120)

    assert status["phase"] == "Succeeded", status.get("message")
    grew = {a: writes(a) - n for a, n in before.items()}
    # every phase's snapshot and the write ahead of its apply; the baseline and the Available mark are
    # carried by those next writes, never a PATCH of their own
    assert grew["Snapshot"] >= 3 and grew["before:ApplyPhase"] >= 3, grew
    assert grew["CaptureBaseline"] == 0 and grew["MarkAvailable"] == 0, grew
    assert [p["name"] for p in status["phases"]] == ["canary", "chat", "rest"]
    assert [p["deployments"] for p in status["phases"]] == [["web-canary"], ["chat"], ["api", "web"]]
    assert all(p["state"] == "Passed" for p in status["phases"])
    for name in app.deployments:
        assert app.image(name) == f"registry.example/{name}:v2"
    for phase in ("canary", "chat", "rest", "watch"):
        row = then.gauge(status, "load", phase)
        assert row["verdict"] == "Pass"
        assert row["prePush"] == pytest.approx(4.1)
        assert row["postPush"] == pytest.approx(4.1)
        assert row["threshold"] == ">6 or >+25%"
    assert then.condition(status, "Ready")["status"] == "True"
    reasons = {e["reason"] for e in then.events(rel)}
    assert {"PushStarted", "PhaseAvailable", "Succeeded"} <= reasons
    assert revert_commits(app) == []


def test_breach_in_phase_two_rolls_back_and_reverts(
    controller: Controller, given: Given, when: When, then: Then, ns: str
) -> None:
    app = given.app(f"{ns}-bad")
    given.metric(LOAD, 4.1)
    wait_scraped()
    before = app.specs()
    parent = branch_sha(app.repo)
    sha = app.commit("v2-bad")

    phases = [dict(THREE_PHASES[0]), {**THREE_PHASES[1], "hold": "60s"}, dict(THREE_PHASES[2])]
    rel = when.release(app, sha, phases=phases, gates=[gate("chat-loadavg", LOAD, ns, max=6)])
    then.release_in(rel, "Holding", "chat")
    assert app.image("chat") == "registry.example/chat:v2-bad"
    when.metric(LOAD, 7.2)
    status = then.release_reaches(rel, "RolledBack", "Failed", timeout=60)

    assert status["phase"] == "RolledBack", status.get("message")
    assert status["failedGate"] == "chat-loadavg"
    after = app.specs()
    assert after["web-canary"] == before["web-canary"], "phase 1 Deployment not restored exactly"
    assert after["chat"] == before["chat"], "phase 2 Deployment not restored exactly"
    assert after["web"] == before["web"] and after["api"] == before["api"], "phase 3 was never pushed"
    row = then.gauge(status, "chat-loadavg", "chat")
    assert row["verdict"] == "Fail"
    assert row["prePush"] == pytest.approx(4.1)
    assert row["postPush"] == pytest.approx(7.2)
    assert row["delta"] == pytest.approx(3.1)
    assert row["deltaPercent"] == pytest.approx(75.61, abs=0.01)
    assert then.condition(status, "RolledBack")["status"] == "True"
    assert then.condition(status, "GitReverted")["status"] == "True"
    assert status["undo"]["restored"] == ["chat", "web-canary"]

    reverts = revert_commits(app)
    assert len(reverts) == 1
    revert_sha, subject = reverts[0]
    assert status["revert"]["commit"] == revert_sha == branch_sha(app.repo)
    assert subject == f"stopline: revert {sha[:7]} — gate chat-loadavg 7.20 > 6 in phase chat for stopline-e2e"
    assert tree_of(app.repo, revert_sha) == tree_of(app.repo, parent)
    body = commit_message(app.repo, revert_sha)
    assert f"Stopline-Revert-Of: {sha}" in body
    assert f"Stopline-Release: {ns}/{rel}" in body
    assert "Pushed by stopline-e2e <e2e@stopline.invalid>." in body
    assert status["author"] == "stopline-e2e <e2e@stopline.invalid>"  # who pushed, in the status too


def test_prometheus_hung_mid_hold_pauses_then_resumes(
    controller: Controller, given: Given, when: When, then: Then, ns: str
) -> None:
    """Prometheus answering nothing (a SIGSTOPped server, through this test's own proxy) mid-hold."""
    app = given.app(f"{ns}-prom")
    given.metric(LOAD, 3.0)
    wait_scraped()
    port = int(get_stack().prometheus_url.rsplit(":", 1)[1].split("/")[0])
    proxy = Proxy("127.0.0.1", port)
    try:
        sha = app.commit("v2")
        phases = [{"name": "canary", "deployments": ["web-canary"], "hold": "4s"}, {"name": "rest", "remaining": True}]
        rel = when.release(
            app,
            sha,
            phases=phases,
            gates=[gate("load", LOAD, ns, max=6, inconclusiveLimit=1000)],
            prometheus_url=f"http://127.0.0.1:{proxy.port}",
        )
        then.release_in(rel, "Holding", "canary")
        with proxy.cut("hang"):
            status = then.release_reaches(rel, "Paused", timeout=30)
            assert status["pauseReason"] == "Inconclusive"
            assert then.condition(status, "GatesPassing")["status"] == "Unknown"
            time.sleep(6)  # longer than the 4 s hold: an inconclusive gate must not promote
            status = then.status("release", rel)
            assert status["phase"] == "Paused" and status["currentPhase"] == "canary"
            assert app.image("web") == "registry.example/web:v1", "nothing may be promoted while inconclusive"
        status = then.release_reaches(rel, "Succeeded", "RolledBack", "Failed", timeout=90)
        assert status["phase"] == "Succeeded", status.get("message")
        assert app.image("web") == "registry.example/web:v2"
    finally:
        proxy.close()


def _blocking_hook(repo_dir: Path, gate_dir: Path) -> None:
    """A pre-receive hook that holds any push of a stopline revert while ``gate_dir/block`` exists."""
    hook = repo_dir / "hooks" / "pre-receive"
    hook.write_text(
        f"""#!/bin/sh
while read old new ref; do
  if git log -1 --format=%s "$new" | grep -q '^stopline: revert'; then
    touch "{gate_dir}/entered"
    while [ -e "{gate_dir}/block" ]; do sleep 0.1; done
  fi
done
exit 0
"""
    )
    hook.chmod(hook.stat().st_mode | stat.S_IEXEC)


def test_controller_killed_during_revert_makes_exactly_one_revert(
    controller: Controller, given: Given, when: When, then: Then, ns: str, tmp_path: Path
) -> None:
    stack: Stack = get_stack()
    app = given.app(f"{ns}-kill")
    _blocking_hook(stack.repo_path(f"{ns}-kill"), tmp_path)
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
    wait_for(lambda: app.spec("web-canary") == before["web-canary"], timeout=30, message="cluster restore")
    controller.kill()
    (tmp_path / "block").unlink()
    controller.start()
    status = then.release_reaches(rel, "RolledBack", "Failed", timeout=60)
    assert status["phase"] == "RolledBack"
    assert len(revert_commits(app)) == 1, app.log()
    assert app.spec("web-canary") == before["web-canary"]
    assert then.condition(status, "GitReverted")["status"] == "True"


def test_push_to_main_during_revert_keeps_every_commit(
    controller: Controller, given: Given, when: When, then: Then, ns: str, tmp_path: Path
) -> None:
    stack = get_stack()
    app = given.app(f"{ns}-race")
    _blocking_hook(stack.repo_path(f"{ns}-race"), tmp_path)
    (tmp_path / "block").touch()
    given.metric(LOAD, 1.0)
    wait_scraped()
    sha = app.commit("v2-bad")
    phases = [{"name": "canary", "deployments": ["web-canary"], "hold": "60s"}, {"name": "rest", "remaining": True}]
    rel = when.release(app, sha, phases=phases, gates=[gate("load", LOAD, ns, max=6)])
    then.release_in(rel, "Holding", "canary")
    when.metric(LOAD, 9.0)
    wait_for(lambda: (tmp_path / "entered").exists(), timeout=30, message="revert push to reach the server")
    other = app.commit_files({"README.md": "a colleague's change\n"}, "docs: unrelated change")
    (tmp_path / "block").unlink()
    status = then.release_reaches(rel, "RolledBack", "Failed", timeout=60)
    assert status["phase"] == "RolledBack"
    # The cluster side finishes first; the revert (redone on top of the colleague's commit) lands after.
    status = wait_for(
        lambda: (s := then.status("release", rel)) and (s.get("revert") or {}).get("state") == "Pushed" and s,
        timeout=60,
        message="the revert to land on top of the colleague's commit",
    )
    assert then.condition(status, "GitReverted")["status"] == "True"
    log = app.log()
    shas = [s for s, _ in log]
    assert other in shas, "the colleague's commit was lost"
    assert log[0][1].startswith("stopline: revert"), "the revert must land on top"
    assert shas.index(log[0][0]) < shas.index(other) < shas.index(sha)
    assert status["revert"]["commit"] == log[0][0]
    assert status["revert"]["attempts"] >= 1
