"""Track on the real stack (issue 6): every merge becomes a Release; push lock, commit lock, webhook.

good → live; bad → rolled back, reverted, line locked (the revert pushes nothing); a third merge waits
while locked (423 on the lock API) until `stopline unlock`, then goes live; history shows it all.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from dsl import API, App, Given, Then, When, gate
from helpers import apply, branch_sha, get_stack, kubectl, kubectl_json, run, wait_for, wait_scraped
from operator_proc import Controller

LOAD = "stopline_e2e_load"
POLL_S = 1.0
VENV_BIN = Path(sys.executable).parent
LABEL_TRACK = "stopline.dev/track"
FINAL = ("Succeeded", "RolledBack", "Failed")
T = TypeVar("T")


# ------------------------------------------------------------------------------------------------ helpers
def create_track(
    ns: str,
    name: str,
    app: App,
    *,
    phases: Sequence[Mapping[str, Any]],
    gates: Sequence[Mapping[str, Any]] = (),
    poll: str = "1s",
    webhook: Mapping[str, Any] | None = None,
) -> None:
    spec: dict[str, Any] = {
        "source": {"repo": app.repo, "branch": "main", "path": "deploy/"},
        "pollInterval": poll,
        "template": {"phases": list(phases), "gates": list(gates), "watch": "0s"},
    }
    if webhook is not None:
        spec["webhook"] = dict(webhook)
    apply(json.dumps({"apiVersion": API, "kind": "Track", "metadata": {"name": name}, "spec": spec}), ns)


def track_status(ns: str, name: str) -> dict[str, Any]:
    return dict(kubectl_json("get", "track", name, "-n", ns).get("status") or {})


def track_releases(ns: str, name: str) -> dict[str, dict[str, Any]]:
    """The Releases labelled with this Track, by name."""
    items = kubectl_json("get", "releases", "-n", ns, "-l", f"{LABEL_TRACK}={name}").get("items") or []
    return {i["metadata"]["name"]: i for i in items}


def rel_name(track: str, sha: str) -> str:
    return f"{track}-{sha[:7]}"


def wait_track(ns: str, name: str, predicate: Any, message: str, timeout: float = 120) -> dict[str, Any]:
    """Poll the Track's status until ``predicate(status)`` holds; returns the status."""
    result: dict[str, Any] = wait_for(
        lambda: (s := track_status(ns, name)) and predicate(s) and s,
        timeout=timeout,
        message=f"track {ns}/{name}: {message}",
    )
    return result


def pushed(ns: str, track: str, release: str, result: str = "Succeeded", timeout: float = 120) -> dict[str, Any]:
    """Wait until the Track recorded ``release`` as its newest finished push; assert its ``result``."""
    s = wait_track(
        ns,
        track,
        lambda s: (
            not s.get("current")
            and (s.get("history") or [{}])[0].get("release") == release
            and s["history"][0].get("result") in FINAL
        ),
        f"{release} finished and recorded",
        timeout,
    )
    assert s["history"][0]["result"] == result, s
    return s


def http(method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read() or b"null")


def lock_api(controller: Controller, ns: str, name: str) -> tuple[int, Any]:
    return http("GET", f"{controller.http_url}/api/v1/namespaces/{ns}/tracks/{name}/lock")


def post_webhook(controller: Controller, payload: Mapping[str, Any], headers: Mapping[str, str]) -> tuple[int, Any]:
    data = json.dumps(payload).encode()
    return http("POST", f"{controller.http_url}/webhook", data, {"Content-Type": "application/json", **headers})


class FastReleases:
    """Reads Releases through the Python client (milliseconds per GET, unlike a kubectl process)."""

    def __init__(self, ns: str) -> None:
        from kubernetes import client, config

        self.ns = ns
        api_client = config.new_client_from_config(config_file=str(get_stack().kubeconfig))  # type: ignore[no-untyped-call]
        self.api: Any = client.CustomObjectsApi(api_client)

    def exists(self, name: str) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            self.api.get_namespaced_custom_object("stopline.dev", "v1alpha1", self.ns, "releases", name)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def latency(self, name: str, fire: Callable[[], T], timeout: float = 30) -> tuple[float, T]:
        """Seconds from just before ``fire()`` (the webhook POST) until Release ``name`` exists, and what
        ``fire()`` returned."""
        assert not self.exists(name), f"{name} exists before the webhook"
        start = time.monotonic()
        reply = fire()
        wait_for(lambda: self.exists(name), timeout=timeout, interval=0.05, message=f"Release {name} after webhook")
        return time.monotonic() - start, reply

    def close(self) -> None:
        self.api.api_client.close()


def stopline_cli(*args: str) -> str:
    env = {"KUBECONFIG": str(get_stack().kubeconfig), "NO_COLOR": "1"}
    return run([str(VENV_BIN / "stopline"), *args], env=env, timeout=60).stdout


def promote(when: When, release: str, token: str) -> None:
    when.annotate("release", release, "stopline.dev/promote", token)


# ------------------------------------------------------------------------------------------------ tests
def test_good_bad_good_commit_lock_and_unlock(
    controller: Controller, given: Given, when: When, then: Then, ns: str
) -> None:
    app = given.app(f"{ns}-line")
    given.metric(LOAD, 1.0)
    wait_scraped()
    phases: list[dict[str, Any]] = [
        {"name": "canary", "deployments": ["web-canary"], "hold": "10s"},
        {"name": "rest", "remaining": True, "hold": "1s"},
    ]
    create_track(ns, "web", app, phases=phases, gates=[gate("load", LOAD, ns, max=6)], poll="1s")

    # The Track's first push is the tip it finds (the app as it is live already).
    initial = branch_sha(app.repo)
    r0 = rel_name("web", initial)
    pushed(ns, "web", r0)

    # 1. good → live
    good = app.commit("v2", "web v2")
    r1 = rel_name("web", good)
    status = then.release_reaches(r1, *FINAL, timeout=120)
    assert status["phase"] == "Succeeded", status.get("message")
    s = pushed(ns, "web", r1)
    assert s["lastGood"] == good
    for d in app.deployments:
        assert app.image(d) == f"registry.example/{d}:v2"

    # 2. bad → breach during its hold → rolled back, reverted, line locked
    bad = app.commit("v3-bad", "web v3 (bad)")
    r2 = rel_name("web", bad)
    then.release_in(r2, "Holding", "canary", timeout=120)
    when.metric(LOAD, 9.0)
    status = then.rolled_back_by(r2, "load", "canary", timeout=120)  # the revert lands after RolledBack
    revert = status["revert"]["commit"]
    s = wait_track(ns, "web", lambda s: (s.get("commitLock") or {}).get("locked"), "commit lock set")
    lock = s["commitLock"]
    assert lock["reason"].startswith(f"{r2} rolled back: gate load 9"), lock
    assert "> 6" in lock["reason"], lock
    assert (lock["release"], lock["revision"], lock["by"]) == (r2, bad, "stopline")
    assert s["lastGood"] == good
    head_sha, head_subject = app.log()[0]
    assert head_sha == revert and head_subject.startswith(f"stopline: revert {bad[:7]}")
    assert app.image("web-canary") == "registry.example/web-canary:v2", "rollback restores v2"
    given.metric(LOAD, 1.0)
    wait_scraped()

    # 3. a good merge while locked waits; the revert commit pushed nothing of its own
    third = app.commit("v4", "web v4 (the fix)")
    r3 = rel_name("web", third)
    s = wait_track(ns, "web", lambda s: s.get("lastSeen") == third, "the third commit seen")
    assert s["pending"] == [third], "the revert commit is not queued as a push"
    code, body = lock_api(controller, ns, "web")
    assert code == 423, body
    assert body["locked"] is True and body["reason"] == lock["reason"] and body["release"] == r2
    deadline = time.monotonic() + 5 * POLL_S  # nothing may happen for five poll intervals
    while time.monotonic() < deadline:
        assert set(track_releases(ns, "web")) == {r0, r1, r2}, "a Release was created while the line was locked"
        time.sleep(POLL_S / 2)
    assert track_status(ns, "web")["commitLock"]["locked"] is True
    assert app.image("web") == "registry.example/web:v2"

    # 4. stopline unlock → the third goes live, batching the revert commit
    out = stopline_cli("unlock", "web", "-n", ns, "--reason", "fixed", "--by", "e2e")
    assert "unlock requested" in out, out
    status = then.release_reaches(r3, *FINAL, timeout=120)
    assert status["phase"] == "Succeeded", status.get("message")
    assert status["skippedCommits"] == [revert]
    s = pushed(ns, "web", r3)
    for d in app.deployments:
        assert app.image(d) == f"registry.example/{d}:v4"
    assert s["lastGood"] == third
    lock = s["commitLock"]
    assert lock["locked"] is False
    assert (lock["by"], lock["unlockReason"]) == ("e2e", "fixed") and lock["unlockedAt"]
    assert set(track_releases(ns, "web")) == {r0, r1, r2, r3}

    history = s["history"]
    assert [(h["release"], h["revision"], h["result"]) for h in history] == [
        (r3, third, "Succeeded"),
        (r2, bad, "RolledBack"),
        (r1, good, "Succeeded"),
        (r0, initial, "Succeeded"),
    ]
    for h in history:
        assert h["durationSeconds"] > 0, h
    assert history[0]["durationSeconds"] >= 10, "the canary hold alone is 10 s"
    assert history[1]["failedGate"] == "load" and history[1]["revertCommit"] == revert
    assert history[0]["skipped"] == [revert]
    # per-day counts (status.daily, independent of historyLimit): every outcome counted once
    daily = s["daily"]
    totals = {k: sum(d.get(k, 0) for d in daily) for k in ("pushes", "succeeded", "rollbacks", "reverts", "failed")}
    assert totals == {"pushes": 4, "succeeded": 3, "rollbacks": 1, "reverts": 1, "failed": 0}, daily
    assert all(h["counted"] for h in history)
    out = stopline_cli("history", "web", "-n", ns, "--days", "3")
    assert daily[-1]["day"] in out
    total = next(line for line in out.splitlines() if "total" in line)
    assert [c.strip() for c in total.strip("│ ").split("│")] == ["total", "4", "3", "1", "1", "0"], out
    code, body = lock_api(controller, ns, "web")
    assert (code, body["locked"], body["lastGood"]) == (200, False, third)


GITHUB_EVENT = {"X-GitHub-Event": "push"}
FAST = [{"name": "all", "remaining": True, "hold": "0s"}]


def github_payload(repo: str, before: str, after: str) -> dict[str, Any]:
    return {
        "ref": "refs/heads/main",
        "before": before,
        "after": after,
        "repository": {"name": "app", "clone_url": repo, "html_url": repo.removesuffix(".git")},
        "pusher": {"name": "e2e"},
    }


def test_webhook_triggers_a_release_within_one_second(
    controller: Controller, given: Given, then: Then, ns: str
) -> None:
    app = given.app(f"{ns}-hook")
    create_track(ns, "hook", app, phases=FAST, poll="1h")  # only a webhook can make it look again
    pushed(ns, "hook", rel_name("hook", branch_sha(app.repo)))
    fast = FastReleases(ns)
    latencies: dict[str, float] = {}
    try:
        for kind in ("github", "generic"):
            before = branch_sha(app.repo)
            sha = app.commit(f"v2-{kind}", f"web via {kind} webhook")
            payload = (
                github_payload(app.repo, before, sha) if kind == "github" else {"repo": app.repo, "branch": "main"}
            )
            headers = GITHUB_EVENT if kind == "github" else {}
            name = rel_name("hook", sha)
            latencies[kind], reply = fast.latency(name, partial(post_webhook, controller, payload, headers))
            assert reply == (202, {"branch": "main", "woken": [f"{ns}/hook"], "refused": 0})
            status = then.release_reaches(name, *FINAL, timeout=120)
            assert status["phase"] == "Succeeded", status.get("message")
            pushed(ns, "hook", name)
    finally:
        fast.close()
    print(f"webhook → Release latency: {latencies}")
    for kind, seconds in latencies.items():
        assert seconds < 1.0, f"{kind} webhook took {seconds:.3f}s to create the Release"


def test_webhook_with_a_secret_refuses_unsigned_pushes(
    controller: Controller, given: Given, then: Then, ns: str
) -> None:
    secret = "e2e-webhook-" + ns
    kubectl("create", "secret", "generic", "hook-secret", "-n", ns, f"--from-literal=secret={secret}")
    app = given.app(f"{ns}-signed")
    create_track(ns, "signed", app, phases=FAST, poll="1h", webhook={"secretRef": {"name": "hook-secret"}})
    pushed(ns, "signed", rel_name("signed", branch_sha(app.repo)))
    before = branch_sha(app.repo)
    sha = app.commit("v2", "web v2 (signed webhook)")
    name = rel_name("signed", sha)
    payload = github_payload(app.repo, before, sha)
    data = json.dumps(payload).encode()

    for headers in (GITHUB_EVENT, {**GITHUB_EVENT, "X-Hub-Signature-256": "sha256=" + "0" * 64}):
        code, body = post_webhook(controller, payload, headers)
        assert (code, body) == (403, {"error": "signature mismatch", "woken": []})
    fast = FastReleases(ns)
    try:
        deadline = time.monotonic() + 3.0  # nothing may happen: the poll interval is an hour
        while time.monotonic() < deadline:
            assert not fast.exists(name), "an unsigned webhook created a Release"
            time.sleep(0.1)

        signature = "sha256=" + hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature, **GITHUB_EVENT}
        # the exact bytes that were signed
        seconds, reply = fast.latency(name, partial(http, "POST", f"{controller.http_url}/webhook", data, headers))
    finally:
        fast.close()
    assert reply == (202, {"branch": "main", "woken": [f"{ns}/signed"], "refused": 0})
    print(f"signed webhook → Release latency: {seconds:.3f}s")
    assert seconds < 1.0
    status = then.release_reaches(name, *FINAL, timeout=120)
    assert status["phase"] == "Succeeded", status.get("message")


def test_commits_during_a_push_are_batched_into_one_release(
    controller: Controller, given: Given, when: When, then: Then, ns: str
) -> None:
    app = given.app(f"{ns}-batch")
    phases = [{"name": "all", "remaining": True, "hold": "20s"}]
    create_track(ns, "batch", app, phases=phases, poll="1s")
    r0 = rel_name("batch", branch_sha(app.repo))
    then.release_in(r0, "Holding", "all", timeout=120)
    promote(when, r0, "e2e-skip-hold-of-the-first-push")
    pushed(ns, "batch", r0)

    first = app.commit("v2", "web v2")
    r1 = rel_name("batch", first)
    then.release_in(r1, "Holding", "all", timeout=120)
    middle = app.commit("v3", "web v3")
    newest = app.commit("v4", "web v4")
    s = wait_track(ns, "batch", lambda s: s.get("pending") == [middle, newest], "both commits queued", timeout=60)
    assert s["current"] == r1 and s["pushLock"] == {"held": True, "release": r1, "since": s["pushLock"]["since"]}
    assert then.status("release", r1)["phase"] == "Holding", "the premise: both commits landed during the hold"
    assert set(track_releases(ns, "batch")) == {r0, r1}

    status = then.release_reaches(r1, *FINAL, timeout=120)
    assert status["phase"] == "Succeeded", status.get("message")
    r3 = rel_name("batch", newest)
    status = then.release_in(r3, "Holding", "all", timeout=120)
    assert status["skippedCommits"] == [middle]
    promote(when, r3, "e2e-skip-hold-of-the-batch")
    status = then.release_reaches(r3, *FINAL, timeout=120)
    assert status["phase"] == "Succeeded", status.get("message")
    s = pushed(ns, "batch", r3)
    assert set(track_releases(ns, "batch")) == {r0, r1, r3}, "exactly one Release for the two queued commits"
    assert [(h["release"], h["result"], h["skipped"]) for h in s["history"][:2]] == [
        (r3, "Succeeded", [middle]),
        (r1, "Succeeded", []),
    ]
    assert s["pending"] == [] and s["lastGood"] == newest
    assert app.image("web") == "registry.example/web:v4"
