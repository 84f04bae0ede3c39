"""The promises under faults (issue 12), on the real stack, with loopback proxies the tests cut:

* Git down / hung during a rollback: the cluster is restored at once, the revert is retried until it
  lands (exactly once), unlock is refused meanwhile, and a controller restart while Git is down resumes it.
* Deleted means done: a deleted Release, Track or Experiment (or namespace) makes the controller act no more.
* A Prometheus outage alone never decides a push: paused, never promoted; the hold counts observed time.
* Status patches failing mid-rollback (API server unreachable for a few seconds): the rollback completes.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

from dsl import API, THREE_PHASES, App, Given, Then, When, gate
from faults import Proxy, never
from helpers import (
    OUTPUT_DIR,
    apply,
    branch_sha,
    get_stack,
    kubectl,
    kubectl_json,
    run,
    wait_for,
    wait_scraped,
)
from operator_proc import Controller
from test_track import VENV_BIN, create_track, pushed, rel_name, track_releases, track_status, wait_track

LOAD = "stopline_e2e_load"
FINAL = ("Succeeded", "RolledBack", "Failed")
#: The controller's cap between revert attempts (controller/release/plan.py REVERT_BACKOFF_MAX).
BACKOFF_MAX_S = 30.0


def git_port() -> int:
    return int(get_stack().git_url.rsplit(":", 1)[1])


def prometheus_port() -> int:
    return int(get_stack().prometheus_url.rsplit(":", 1)[1].split("/")[0])


def reverts_of(app: App, sha: str) -> list[str]:
    return [c for c, subject in app.log() if subject.startswith(f"stopline: revert {sha[:7]}")]


def cli(*args: str) -> tuple[int, str]:
    env = {"KUBECONFIG": str(get_stack().kubeconfig), "NO_COLOR": "1"}
    proc = run([str(VENV_BIN / "stopline"), *args], env=env, timeout=60, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def metric_value(controller: Controller, name: str) -> float:
    with urllib.request.urlopen(f"{controller.http_url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{}"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def revert_of(then: Then, rel: str) -> dict[str, Any]:
    return dict(then.status("release", rel).get("revert") or {})


# ------------------------------------------------------------------------------------------------ Git
def test_git_down_60s_during_rollback_revert_lands_once_and_unlock_waits_for_it(
    controller: Controller, given: Given, when: When, then: Then, ns: str
) -> None:
    app = given.app(f"{ns}-gitdown")
    proxy = Proxy("127.0.0.1", git_port())
    try:
        via = App(ns, f"git://127.0.0.1:{proxy.port}/{ns}-gitdown.git")
        given.metric(LOAD, 1.0)
        wait_scraped()
        phases = [{"name": "canary", "deployments": ["web-canary"], "hold": "30s"}, {"name": "rest", "remaining": True}]
        create_track(ns, "web", via, phases=phases, gates=[gate("load", LOAD, ns, max=6)], poll="1s")
        pushed(ns, "web", rel_name("web", branch_sha(app.repo)))

        before = app.spec("web-canary")
        bad = app.commit("v2-bad", "web v2 (bad)")
        rel = rel_name("web", bad)
        then.release_in(rel, "Holding", "canary", timeout=120)

        proxy.down()
        down_at = time.monotonic()
        when.metric(LOAD, 9.0)
        # The cluster side does not wait for Git: restored and RolledBack while the revert is pending.
        status = then.release_reaches(rel, "RolledBack", "Failed", timeout=30)
        assert status["phase"] == "RolledBack", status.get("message")
        assert app.spec("web-canary") == before, "the canary is not its exact pre-push self"
        pending = wait_for(
            lambda: (r := revert_of(then, rel)) and r.get("state") == "Pending" and r.get("attempts", 0) >= 2 and r,
            timeout=30,
            message="a second failed revert attempt while Git is down",
        )
        assert pending["reason"], pending
        assert "password" not in json.dumps(pending).lower()
        cond = then.condition(then.status("release", rel), "GitReverted")
        assert (cond["status"], cond["reason"]) == ("False", "Pending"), cond

        track = wait_track(ns, "web", lambda s: s.get("missingReverts"), "the missing revert recorded")
        assert [m["revision"] for m in track["missingReverts"]] == [bad]
        assert track["commitLock"]["locked"] is True
        code, out = cli("unlock", "web", "-n", ns, "--reason", "looked at it", "--by", "e2e")
        assert code == 3 and "refused" in out, out
        code, out = cli("check", "web", "-n", ns)
        assert code == 3 and "revert missing" in out, out

        # A controller restart while Git is still down resumes the retries (nothing is given up).
        attempts = int(revert_of(then, rel)["attempts"])
        controller.kill()
        controller.start()
        wait_for(
            lambda: int(revert_of(then, rel).get("attempts", 0)) > attempts,
            timeout=BACKOFF_MAX_S + 15,
            message="a revert attempt after the restart",
        )
        assert revert_of(then, rel)["state"] == "Pending"

        time.sleep(max(0.0, 60 - (time.monotonic() - down_at)))  # the outage lasts 60 s
        proxy.up()
        up_at = time.monotonic()
        landed = wait_for(
            lambda: (r := revert_of(then, rel)) and r.get("state") in ("Pushed", "AlreadyReverted") and r,
            timeout=BACKOFF_MAX_S + 20,
            message="the revert to land after Git returned",
        )
        took = time.monotonic() - up_at
        assert took <= BACKOFF_MAX_S + 15, f"revert landed {took:.1f}s after Git returned"
        assert reverts_of(app, bad) == [landed["commit"]], "exactly one revert commit on the branch"
        assert then.condition(then.status("release", rel), "GitReverted")["status"] == "True"

        track = wait_track(ns, "web", lambda s: not s.get("missingReverts"), "the missing revert cleared")
        assert track["commitLock"]["locked"] is True, "the commit lock holds until a human unlocks"
        code, out = cli("unlock", "web", "-n", ns, "--reason", "fixed", "--by", "e2e")
        assert code == 0 and "unlock requested" in out, out
        time.sleep(3)  # a few Track polls: the revert landing must not have produced a second revert
        assert len(reverts_of(app, bad)) == 1
    finally:
        proxy.close()


def test_git_hung_60s_during_rollback_shows_a_retrying_revert_and_lands_once(
    controller: Controller, given: Given, when: When, then: Then, ns: str
) -> None:
    app = given.app(f"{ns}-githang")
    proxy = Proxy("127.0.0.1", git_port())
    try:
        via = App(ns, f"git://127.0.0.1:{proxy.port}/{ns}-githang.git")
        given.metric(LOAD, 1.0)
        wait_scraped()
        before = app.specs()
        sha = app.commit("v2-bad")
        phases = [dict(THREE_PHASES[0]), {**THREE_PHASES[1], "hold": "60s"}, dict(THREE_PHASES[2])]
        rel = when.release(via, sha, phases=phases, gates=[gate("load", LOAD, ns, max=6)])
        then.release_in(rel, "Holding", "chat")

        proxy.hang()
        hung_at = time.monotonic()
        when.metric(LOAD, 9.0)
        status = then.release_reaches(rel, "RolledBack", "Failed", timeout=30)
        assert status["phase"] == "RolledBack", status.get("message")
        restored_in = time.monotonic() - hung_at
        assert app.specs() == before
        # Within one attempt the hung server shows as a pending revert with its reason.
        r = wait_for(
            lambda: (
                (r := revert_of(then, rel))
                and r.get("state") == "Pending"
                and r.get("reason")
                and r.get("nextAttemptAt")
                and r
            ),
            timeout=45,
            message="a timed-out revert attempt reported with its reason",
        )
        assert "timed out" in r["reason"].lower() or "timeout" in r["reason"].lower(), r
        assert restored_in < 30, f"RolledBack only {restored_in:.1f}s after the breach"

        time.sleep(max(0.0, 60 - (time.monotonic() - hung_at)))
        proxy.up()
        up_at = time.monotonic()
        landed = wait_for(
            lambda: (r := revert_of(then, rel)) and r.get("state") in ("Pushed", "AlreadyReverted") and r,
            timeout=BACKOFF_MAX_S + 40,
            message="the revert to land after Git answered again",
        )
        assert time.monotonic() - up_at <= BACKOFF_MAX_S + 30
        assert reverts_of(app, sha) == [landed["commit"]]
    finally:
        proxy.close()


# ------------------------------------------------------------------------------------------------ deletion
def test_deleted_objects_make_the_controller_act_no_more(
    controller: Controller, given: Given, when: When, then: Then, ns: str
) -> None:
    app = given.app(f"{ns}-del")
    given.metric(LOAD, 1.0)
    wait_scraped()
    active_before = metric_value(controller, "stopline_active_releases")

    # A Release holding its last phase, deleted, then its gate breaches.
    sha = app.commit("v2")
    phases = [{"name": "all", "remaining": True, "hold": "5m"}]
    rel = when.release(app, sha, phases=phases, gates=[gate("load", LOAD, ns, max=6)])
    then.release_in(rel, "Holding", "all")
    assert metric_value(controller, "stopline_active_releases") >= active_before + 1
    kubectl("delete", "release", rel, "-n", ns, "--wait=true")

    # A Track deleted, then a commit to its branch.
    other = given.app(f"{ns}-deltrack")
    create_track(ns, "gone", other, phases=[{"name": "all", "remaining": True}], poll="1s")
    pushed(ns, "gone", rel_name("gone", branch_sha(other.repo)))
    kubectl("delete", "track", "gone", "-n", ns, "--wait=true")
    late = other.commit("v9")

    # An Experiment deleted: its key leaves the published ConfigMap.
    exp = {
        "apiVersion": API,
        "kind": "Experiment",
        "metadata": {"name": "doomed"},
        "spec": {"key": "Doomed", "branches": {"control": 0.5, "b": 0.5}, "interval": "1s"},
    }
    apply(json.dumps(exp), ns)

    def published() -> dict[str, str]:
        cm = kubectl_json("get", "configmap", "stopline-experiments", "-n", ns, "-o", "json")
        return dict(cm.get("data") or {})

    wait_for(lambda: "Doomed.json" in published(), timeout=60, message="Doomed.json published")
    kubectl("delete", "experiment", "doomed", "-n", ns, "--wait=true", timeout=120)
    wait_for(lambda: "Doomed.json" not in published(), timeout=30, message="Doomed.json unpublished")

    when.metric(LOAD, 9.0)  # breaches the deleted Release's gate
    images = {d: app.image(d) for d in app.deployments}

    def acted() -> str | None:
        if reverts_of(app, sha):
            return f"a revert of {sha[:7]} was pushed for a deleted Release"
        now = {d: app.image(d) for d in app.deployments}
        if now != images:
            return f"the deleted Release's Deployments changed: {now}"
        if rel_name("gone", late) in track_releases(ns, "gone"):
            return "a deleted Track created a Release"
        if "Doomed.json" in published():
            return "a deleted Experiment was published again"
        return None

    never(acted, seconds=30)
    assert metric_value(controller, "stopline_active_releases") <= active_before
    log = controller.log_path.read_text(errors="replace")
    assert f"Release {ns}/{rel} deleted: its loop stops now" in log


def test_deleting_the_namespace_mid_push_stops_everything(
    controller: Controller, given: Given, when: When, then: Then, ns: str
) -> None:
    app = given.app(f"{ns}-nsdel")
    given.metric(LOAD, 1.0)
    wait_scraped()
    sha = app.commit("v2")
    phases = [{"name": "canary", "deployments": ["web-canary"], "hold": "5m"}, {"name": "rest", "remaining": True}]
    rel = when.release(app, sha, phases=phases, gates=[gate("load", LOAD, ns, max=6)])
    then.release_in(rel, "Holding", "canary")
    assert controller.metric("stopline_workload_watch_live", kind="Namespace") == 1
    guard_lists = lambda: controller.metric("stopline_kube_requests_total", verb="LIST", resource="namespaces")  # noqa: E731
    lists = guard_lists()
    kubectl("delete", "namespace", ns, "--wait=false")
    when.metric(LOAD, 9.0)

    def acted() -> str | None:
        return f"a revert of {sha[:7]} was pushed after the namespace was deleted" if reverts_of(app, sha) else None

    never(acted, seconds=20)
    assert guard_lists() == lists, "the deletion guard LISTed namespaces: it should know from the namespace watch"
    wait_for(
        lambda: kubectl("get", "namespace", ns, check=False).returncode != 0,
        timeout=120,
        message=f"namespace {ns} gone (no finalizer of ours holds it)",
    )


# ------------------------------------------------------------------------------------------------ Prometheus
def test_prometheus_down_60s_with_defaults_pauses_and_never_decides_the_push(
    controller: Controller, given: Given, when: When, then: Then, ns: str
) -> None:
    app = given.app(f"{ns}-promdown")
    proxy = Proxy("127.0.0.1", prometheus_port())
    try:
        given.metric(LOAD, 2.0)
        wait_scraped()
        sha = app.commit("v2")
        hold = 20
        phases = [
            {"name": "canary", "deployments": ["web-canary"], "hold": f"{hold}s"},
            {"name": "rest", "remaining": True},
        ]
        rel = when.release(
            app,
            sha,
            phases=phases,
            gates=[gate("load", LOAD, ns, max=6)],  # default inconclusiveLimit (6) and onInconclusive (pause)
            prometheus_url=f"http://127.0.0.1:{proxy.port}",
        )
        status = then.release_in(rel, "Holding", "canary")
        time.sleep(3)  # a few seconds of observed hold before the outage
        proxy.down()
        down_at = time.monotonic()
        status = then.release_reaches(rel, "Paused", timeout=20)
        assert status["pauseReason"] == "Inconclusive"

        def decided() -> str | None:
            s = then.status("release", rel)
            if s.get("phase") in FINAL or s.get("currentPhase") != "canary":
                return f"the outage decided the push: {s.get('phase')} {s.get('currentPhase')} {s.get('message')}"
            if app.image("web") != "registry.example/web:v1":
                return "the next phase was pushed during the outage"
            return None

        never(decided, seconds=60 - (time.monotonic() - down_at))
        status = then.status("release", rel)
        assert status["phase"] == "Paused", status
        assert then.condition(status, "GatesPassing")["reason"] == "InconclusiveLimitExceeded"
        canary = next(p for p in status["phases"] if p["name"] == "canary")
        observed_during_outage = canary["observedSeconds"]
        assert observed_during_outage < hold, canary
        proxy.up()
        up_at = time.monotonic()
        status = then.release_reaches(rel, "Succeeded", "RolledBack", "Failed", timeout=120)
        assert status["phase"] == "Succeeded", status.get("message")
        canary = next(p for p in status["phases"] if p["name"] == "canary")
        assert canary["observedSeconds"] >= hold
        # The hold completed its observed time after the outage, not at the first good reading.
        assert time.monotonic() - up_at >= hold - observed_during_outage - 3
        assert reverts_of(app, sha) == [], "an outage alone never reverts a commit"
        assert status.get("failure") is None and status.get("rolledBackAt") is None
    finally:
        proxy.close()


# ------------------------------------------------------------------------------------------------ API server
class ProxiedController(Controller):
    """The controller under test, reaching the API server through a proxy the test can cut."""

    def __init__(self, base: Controller, kubeconfig: Path) -> None:
        super().__init__(base.stack, base.workdir)
        self.kubeconfig = kubeconfig
        self.log_path = OUTPUT_DIR / f"controller-{base.log_path.stem}-proxied.log"

    def env(self) -> dict[str, str]:
        env = super().env()
        env["KUBECONFIG"] = str(self.kubeconfig)
        return env


def test_status_patches_failing_mid_rollback_still_complete_it_with_one_revert(
    controller: Controller, given: Given, when: When, then: Then, ns: str, tmp_path: Path
) -> None:
    stack = get_stack()
    kc = kubectl_json("config", "view", "--raw", "-o", "json")
    server = kc["clusters"][0]["cluster"]["server"]
    host, port = server.split("://", 1)[1].rsplit(":", 1)
    proxy = Proxy(host, int(port))
    kc["clusters"][0]["cluster"]["server"] = f"https://{host}:{proxy.port}"
    proxied_kubeconfig = tmp_path / "kubeconfig"
    proxied_kubeconfig.write_text(json.dumps(kc))
    os.chmod(proxied_kubeconfig, 0o600)

    app = given.app(f"{ns}-api")
    given.metric(LOAD, 1.0)
    wait_scraped()
    before = app.specs()
    sha = app.commit("v2-bad")
    controller.stop()
    other = ProxiedController(controller, proxied_kubeconfig)
    try:
        other.start()
        phases = [dict(THREE_PHASES[0]), {**THREE_PHASES[1], "hold": "60s"}, dict(THREE_PHASES[2])]
        rel = when.release(app, sha, phases=phases, gates=[gate("load", LOAD, ns, max=6)])
        then.release_in(rel, "Holding", "chat")
        with proxy.cut("down"):
            when.metric(LOAD, 9.0)
            time.sleep(6)  # the breach is read (Prometheus is reachable) while the API server is not
        status = then.release_reaches(rel, "RolledBack", "Failed", timeout=90)
        assert status["phase"] == "RolledBack", status.get("message")
        assert app.specs() == before
        landed = wait_for(
            lambda: (r := revert_of(then, rel)) and r.get("state") in ("Pushed", "AlreadyReverted") and r,
            timeout=60,
            message="the revert recorded",
        )
        assert reverts_of(app, sha) == [landed["commit"]], "exactly one revert"
        log = other.log_path.read_text(errors="replace")
        assert "cannot write status" in log or "failed (retrying)" in log, "the outage was not noticed"
        # the workload watch broke with the connection, degraded to reads, and is back (listed, streaming)
        watch_errors = sum(
            v
            for (n, labels), v in other.metrics().items()
            if n == "stopline_workload_watch_errors_total" and ("kind", "Deployment") in labels
        )
        assert watch_errors >= 1, "the workload watch did not notice the outage"
        wait_for(
            lambda: other.metric("stopline_workload_watch_live", kind="Deployment") == 1,
            timeout=40,
            message="the workload watch to be live again",
        )
        assert stack.kubeconfig.exists()
    finally:
        other.stop()
        proxy.close()
        controller.start()


def test_deleting_an_in_flight_release_tells_its_track(
    controller: Controller, given: Given, then: Then, ns: str
) -> None:
    """Deleting an in-flight Release leaves the cluster as it is and tells the Track (an event)."""
    app = given.app(f"{ns}-trkdel")
    create_track(ns, "web", app, phases=[{"name": "all", "remaining": True, "hold": "5m"}], poll="1s")
    first = rel_name("web", branch_sha(app.repo))
    then.release_in(first, "Holding", "all", timeout=120)
    kubectl("delete", "release", first, "-n", ns, "--wait=true")
    wait_for(
        lambda: any(e.get("reason") == "ReleaseDeleted" for e in then.events("web")),
        timeout=30,
        message="a ReleaseDeleted event on the Track",
    )
    s = track_status(ns, "web")
    assert s.get("current") is None
