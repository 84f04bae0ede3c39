"""Commit → fully pushed on the real local stack (DESIGN.md §6: "in seconds, not minutes").

A Track follows ``main`` of a repo holding the 4-Deployment example app, with 3 phases (canary:
web-canary; chat: tier=chat; rest: remaining → web, api), every hold 0 s, no watch window and one
passing gate (interval 1 s) unless ``--no-gate``. Each run commits a new version in a local work tree and
times from the start of ``git push`` to the Track's Release reporting ``Succeeded`` (polled every 50 ms).

Two ways for the Track to learn about the push, each in its own namespace and repo:

* ``poll``: ``pollInterval: 1s``;
* ``webhook``: ``pollInterval: 1h`` and a ``POST /webhook`` to the controller right after the push.

    .venv/bin/python bench/bench_push_latency.py [--runs 10] [--modes poll,webhook] [--replicas 1] [--no-gate]

There is no peer in the same run; the figure is printed against a 60 s bound ("seconds, not minutes").
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _stack  # first: puts tests/e2e (dsl, helpers) and the repo root on sys.path
import dsl
import helpers
from _stack import BenchController, Summary, kube_client, loadavg, poll

from controller.track.plan import release_name

METRIC = "stopline_bench_push"
BOUND = 60.0
TRACK = "app"
POLL_INTERVAL = 1.0
PHASES: list[dict[str, Any]] = [
    {"name": "canary", "deployments": ["web-canary"], "hold": "0s"},
    {"name": "chat", "selector": {"matchLabels": {"tier": "chat"}}, "hold": "0s"},
    {"name": "rest", "remaining": True, "hold": "0s"},
]


@dataclass
class Run:
    total: float  # git push started → Release Succeeded
    push: float  # git push itself
    created: float  # git push started → Release object seen
    pushing: float  # Release seen → Succeeded


def app_files(version: str, replicas: int) -> dict[str, str]:
    return {
        f"deploy/{n}.yaml": dsl.deployment_yaml(n, tier, version, replicas=replicas)
        for n, tier in dsl.APP_DEPLOYMENTS.items()
    }


def release(crd: Any, ns: str, name: str) -> dict[str, Any] | None:
    from kubernetes.client.exceptions import ApiException

    try:
        obj: dict[str, Any] = crd.get_namespaced_custom_object("stopline.dev", "v1alpha1", ns, "releases", name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj


def track_idle(crd: Any, ns: str, sha: str) -> bool:
    obj = crd.get_namespaced_custom_object("stopline.dev", "v1alpha1", ns, "tracks", TRACK)
    st = obj.get("status") or {}
    return st.get("lastGood") == sha and not (st.get("pushLock") or {}).get("held") and not st.get("current")


class WorkTree:
    """A local clone of the app repo that commits and pushes (kept across runs: no clone per run)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dir = Path(tempfile.mkdtemp(prefix="stopline-bench-push-"))
        helpers.git("clone", "-q", url, str(self.dir / "w"))
        self.work = self.dir / "w"

    def commit(self, files: dict[str, str], message: str) -> str:
        helpers.git("pull", "-q", "--ff-only", "origin", "main", cwd=self.work)
        for rel, text in files.items():
            (self.work / rel).write_text(text)
        helpers.git("commit", "-q", "-am", message, cwd=self.work)
        return helpers.git("rev-parse", "HEAD", cwd=self.work).stdout.strip()

    def push(self) -> None:
        helpers.git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=self.work)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def webhook(ctl: BenchController, repo: str) -> None:
    body = json.dumps({"repo": repo, "branch": "main"}).encode()
    req = urllib.request.Request(
        f"{ctl.http_url}/webhook", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        resp.read()


def run_mode(mode: str, runs: int, prefix: str, ctl: BenchController, crd: Any, replicas: int, gate: bool) -> list[Run]:
    ns = f"{prefix}-{mode}"
    helpers.create_namespace(ns, {_stack.LABEL: prefix})
    repo = helpers.make_repo(ns, app_files("v0", replicas), message="app v0")
    tree = WorkTree(repo)
    results: list[Run] = []
    try:
        for text in app_files("v0", replicas).values():
            helpers.apply(text, ns)
        for n in dsl.APP_DEPLOYMENTS:
            poll(lambda n=n: helpers.deployment_available(ns, n), 90, 0.2, f"{n} Available")
        template: dict[str, Any] = {"phases": PHASES, "watch": "0s"}
        if gate:
            helpers.set_metric(METRIC, 1.0, bench=ns)
            query = f'max({METRIC}{{bench="{ns}"}})'
            _stack.wait_metric_value(query, lambda v: v == 1.0)
            template["gates"] = [{"name": "load", "query": query, "max": 6, "interval": "1s"}]
        track = {
            "apiVersion": dsl.API,
            "kind": "Track",
            "metadata": {"name": TRACK, "namespace": ns},
            "spec": {
                "source": {"repo": repo, "branch": "main", "path": "deploy/"},
                "pollInterval": f"{POLL_INTERVAL:g}s" if mode == "poll" else "1h",
                "template": template,
            },
        }
        crd.create_namespaced_custom_object("stopline.dev", "v1alpha1", ns, "tracks", track)
        # warm-up (untimed): the Track pushes the current tip first; this also clones the repo into the cache
        tip = helpers.branch_sha(repo)
        poll(lambda: track_idle(crd, ns, tip), 180, 0.2, f"track {ns}/{TRACK} to push the initial tip")
        for i in range(1, runs + 1):
            sha = tree.commit(app_files(f"v{i}", replicas), f"app v{i}")
            name = release_name(TRACK, sha)
            # we join right after the Track's last look at the branch; a random offset within one poll
            # interval makes the push land at a random point of the Track's poll cycle, as a real merge does
            time.sleep(random.uniform(0, POLL_INTERVAL))
            t0 = time.monotonic()
            tree.push()
            t_pushed = time.monotonic()
            if mode == "webhook":
                webhook(ctl, repo)
            t_seen: float | None = None
            deadline = t0 + 300
            while True:
                obj = release(crd, ns, name)
                now = time.monotonic()
                if obj is not None and t_seen is None:
                    t_seen = now
                phase = ((obj or {}).get("status") or {}).get("phase")
                if phase == "Succeeded":
                    break
                if phase in ("RolledBack", "Failed") or now > deadline:
                    raise RuntimeError(f"release {ns}/{name}: {phase} {((obj or {}).get('status') or {})}")
                time.sleep(0.05)
            assert t_seen is not None
            run = Run(total=now - t0, push=t_pushed - t0, created=t_seen - t0, pushing=now - t_seen)
            results.append(run)
            print(
                f"[bench] {mode} run {i}: {run.total:.2f}s (git push {run.push:.2f}s, Release created after "
                f"{run.created:.2f}s, pushed in {run.pushing:.2f}s; load {loadavg()})",
                flush=True,
            )
            poll(lambda sha=sha: track_idle(crd, ns, sha), 60, 0.1, "track idle")
    finally:
        tree.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="pushes per mode (default 10)")
    parser.add_argument("--modes", default="poll,webhook", help="poll, webhook or both (default poll,webhook)")
    parser.add_argument("--replicas", type=int, default=1, help="replicas per Deployment (default 1)")
    parser.add_argument("--no-gate", action="store_true", help="no gate in the Track template")
    parser.add_argument("--keep", action="store_true", help="keep namespaces and repos afterwards")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - {"poll", "webhook"}
    if unknown:
        parser.error(f"unknown mode(s): {', '.join(sorted(unknown))}")

    print(f"[bench] push latency: load average {loadavg()} at start; bringing the stack up", flush=True)
    stack = _stack.ensure_stack()
    api = kube_client()
    from kubernetes import client

    crd = client.CustomObjectsApi(api)
    prefix = _stack.bench_prefix("bpl")
    ctl = BenchController(stack, prefix)
    results: dict[str, list[Run]] = {}
    try:
        ctl.start()
        print(f"[bench] controller pid {ctl.pid} (log {ctl.log_path})", flush=True)
        for mode in modes:
            results[mode] = run_mode(mode, args.runs, prefix, ctl, crd, args.replicas, not args.no_gate)
    finally:
        ctl.stop()
        if not args.keep:
            for mode in modes:
                ns = f"{prefix}-{mode}"
                helpers.delete_metric(METRIC, bench=ns)
                shutil.rmtree(stack.repo_path(ns), ignore_errors=True)
            _stack.delete_namespaces(api, [f"{prefix}-{m}" for m in modes])

    gates = "no gate" if args.no_gate else "1 gate (interval 1s)"
    print(
        f"\n== commit → fully pushed (DESIGN.md §6), {time.strftime('%Y-%m-%d %H:%M')}: 3 phases × 4 Deployments "
        f"(replicas {args.replicas}), holds 0s, {gates}; load average {loadavg()} ({_stack.cpu_count()} cores)"
    )
    for mode, runs in results.items():
        total = Summary.of([r.total for r in runs])
        how = "Track pollInterval 1s" if mode == "poll" else "POST /webhook (pollInterval 1h)"
        print(f"-- {how}")
        print(f"git push → Release Succeeded: {total.line()}")
        print(f"  git push → Release created: {Summary.of([r.created for r in runs]).line()}")
        print(f"  Release created → Succeeded: {Summary.of([r.pushing for r in runs]).line()}")
        print(f'  ratio p95 / {BOUND:g} s ("seconds, not minutes"): {total.p95 / BOUND:.3f}')
    return 0


if __name__ == "__main__":
    sys.exit(main())
