"""Detect → rollback on the real local stack (DESIGN.md §6): breach seen by Prometheus → cluster restored
and revert commit on the branch.

One namespace holds the 4-Deployment example app (web-canary, chat, web, api). Each run pushes a bad
commit with a Release whose first two phases touch ``web-canary`` and ``chat`` (phase 1 hold 0 s, phase 2
hold 120 s), waits until it is Holding in phase 2, then sets the exporter value over the gate's ``max``.
Three pollers run beside each other from just before the value is set:

* Prometheus: the gate's own PromQL every ~25 ms; t0 = when the first request that returned a breaching
  value was sent (the value was ingested between the previous request and this one);
* the API server: both Deployments every ~20 ms; "restored" = first poll in which both specs equal
  their pre-push specs exactly (time taken when that poll returned: conservative);
* Git: ``git ls-remote <repo> refs/heads/main`` back to back; "reverted" = first time the tip is no
  longer the bad commit (time taken when ls-remote returned: conservative).

    .venv/bin/python bench/bench_detect_rollback.py [--runs 10] [--intervals 1,0.5] [--replicas 1]
        [--config-objects 0,20]

``--config-objects 0,20`` repeats the runs for an app that also carries 20 ConfigMaps (half read by
``web-canary``, half by ``chat`` through ``envFrom``; every bad commit changes all of them): "restored" then
also needs every ConfigMap's data back, and the ratio of its p95 to the plain app's is printed.

Targets: restore ≤ 2 s p95, revert ≤ 3 s p95. Peer: Flagger detects after interval × threshold, 60 s by
default and 10 s at the least; our p95 is also printed as a fraction of those 10 s.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import _stack  # first: puts tests/e2e (dsl, helpers) and the repo root on sys.path
import dsl
import helpers
from _stack import BenchController, Summary, kube_client, loadavg, poll

RESTORE_TARGET = 2.0
REVERT_TARGET = 3.0
FLAGGER_MIN = 10.0
FLAGGER_DEFAULT = 60.0
METRIC = "stopline_bench_load"
LOW, HIGH, MAX = 1.0, 9.0, 6.0
TOUCHED = ("web-canary", "chat")


@dataclass
class Run:
    interval: float
    restore: float
    revert: float
    prom_polls: int
    api_poll_ms: float
    git_poll_ms: float


@dataclass
class Pollers:
    """The three observers of one run, each on its own thread."""

    query: str
    namespace: str
    repo: str
    bad_sha: str
    before: dict[str, dict[str, Any]]
    apps: Any
    core: Any = None
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    t_breach: float | None = None
    t_restored: float | None = None
    t_reverted: float | None = None
    prom_polls: int = 0
    api_polls: int = 0
    git_polls: int = 0
    api_time: float = 0.0
    git_time: float = 0.0
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def prometheus(self) -> None:
        while not self.stop.is_set() and self.t_breach is None:
            sent = time.monotonic()
            try:
                rows = helpers.promql(self.query, timeout=2)
            except Exception as exc:
                self.errors.append(f"prometheus: {exc}")
                rows = []
            self.prom_polls += 1
            if rows and helpers.sample_value(rows[0]) > MAX:
                self.t_breach = sent
                return
            time.sleep(max(0.0, 0.025 - (time.monotonic() - sent)))

    def cluster(self) -> None:
        while not self.stop.is_set() and self.t_restored is None:
            started = time.monotonic()
            ok = True
            for name in TOUCHED:
                raw = self.apps.read_namespaced_deployment(name, self.namespace, _preload_content=False)
                if json.loads(raw.data)["spec"] != self.before[name]:
                    ok = False
                    break
            if ok and self.configs:
                raw = self.core.list_namespaced_config_map(
                    self.namespace, label_selector="bench-config=true", _preload_content=False
                )
                live = {i["metadata"]["name"]: i.get("data") for i in json.loads(raw.data)["items"]}
                ok = all(live.get(n) == d for n, d in self.configs.items())
            now = time.monotonic()
            self.api_polls += 1
            self.api_time += now - started
            if ok:
                self.t_restored = now
                return
            time.sleep(max(0.0, 0.02 - (now - started)))

    def git(self) -> None:
        while not self.stop.is_set() and self.t_reverted is None:
            started = time.monotonic()
            proc = subprocess.run(
                ["git", "ls-remote", self.repo, "refs/heads/main"], capture_output=True, text=True, check=False
            )
            now = time.monotonic()
            self.git_polls += 1
            self.git_time += now - started
            tip = proc.stdout.split()[0] if proc.returncode == 0 and proc.stdout.split() else None
            if tip is not None and tip != self.bad_sha:
                self.t_reverted = now
                return


def deployment_spec(apps: Any, namespace: str, name: str) -> dict[str, Any]:
    raw = apps.read_namespaced_deployment(name, namespace, _preload_content=False)
    spec: dict[str, Any] = json.loads(raw.data)["spec"]
    return spec


def release_status(crd: Any, namespace: str, name: str) -> dict[str, Any]:
    obj = crd.get_namespaced_custom_object("stopline.dev", "v1alpha1", namespace, "releases", name)
    return dict(obj.get("status") or {})


def config_names(configs: int) -> dict[str, list[str]]:
    """Which ConfigMaps each touched Deployment reads: the first half web-canary, the rest chat."""
    names = [f"cfg-{i:02d}" for i in range(configs)]
    half = (configs + 1) // 2
    return {"web-canary": names[:half], "chat": names[half:]}


def app_files(version: str, replicas: int, configs: int = 0) -> dict[str, str]:
    import yaml

    files = {
        f"deploy/{n}.yaml": dsl.deployment_yaml(n, tier, version, replicas=replicas)
        for n, tier in dsl.APP_DEPLOYMENTS.items()
    }
    for deployment, names in config_names(configs).items():
        doc = yaml.safe_load(files[f"deploy/{deployment}.yaml"])
        container = doc["spec"]["template"]["spec"]["containers"][0]
        container["envFrom"] = [{"configMapRef": {"name": n}} for n in names]
        files[f"deploy/{deployment}.yaml"] = yaml.safe_dump(doc, sort_keys=False)
        for n in names:
            cm = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": n, "labels": {"bench-config": "true"}},
                "data": {"version": version, "payload": "x" * 2000},
            }
            files[f"deploy/{n}.yaml"] = yaml.safe_dump(cm, sort_keys=False)
    return files


def one_run(
    i: int,
    interval: float,
    ns: str,
    repo: str,
    replicas: int,
    apps: Any,
    crd: Any,
    query: str,
    core: Any = None,
    configs: int = 0,
) -> tuple[Run, dict[str, Any]]:
    before = {n: deployment_spec(apps, ns, n) for n in TOUCHED}
    config_data = {
        n: core.read_namespaced_config_map(n, ns).data for names in config_names(configs).values() for n in names
    }
    tag = f"{int(interval * 1000)}ms-{i}"
    sha = helpers.push_commit(repo, app_files(f"bad-{tag}", replicas, configs), f"bad change {tag}")
    name = f"bad-{tag}"
    phases = [
        {"name": "canary", "deployments": ["web-canary"], "hold": "0s"},
        {"name": "chat", "deployments": ["chat"], "hold": "120s"},
        {"name": "rest", "remaining": True, "hold": "0s"},
    ]
    gate = {"name": "load", "query": query, "max": MAX, "interval": f"{int(interval * 1000)}ms"}
    body = {
        "apiVersion": dsl.API,
        "kind": "Release",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "source": {"repo": repo, "branch": "main", "revision": sha, "path": "deploy/"},
            "phases": phases,
            "gates": [gate],
            "watch": "0s",
        },
    }
    crd.create_namespaced_custom_object("stopline.dev", "v1alpha1", ns, "releases", body)
    poll(
        lambda: (s := release_status(crd, ns, name)).get("phase") == "Holding" and s.get("currentPhase") == "chat",
        120,
        0.1,
        f"release {name} Holding in phase chat",
    )
    # decorrelate the breach from the controller's gate ticks (we joined right after a status write)
    time.sleep(random.uniform(0, interval))

    p = Pollers(
        query=query, namespace=ns, repo=repo, bad_sha=sha, before=before, apps=apps, core=core, configs=config_data
    )
    threads = [threading.Thread(target=fn, daemon=True) for fn in (p.prometheus, p.cluster, p.git)]
    for t in threads:
        t.start()
    helpers.set_metric(METRIC, HIGH, bench=ns)
    deadline = time.monotonic() + 60
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    p.stop.set()
    status = poll(
        lambda: (s := release_status(crd, ns, name)).get("phase") in ("RolledBack", "Failed") and s,
        90,
        0.2,
        f"release {name} RolledBack",
    )
    helpers.set_metric(METRIC, LOW, bench=ns)
    if p.t_breach is None or p.t_restored is None or p.t_reverted is None:
        raise RuntimeError(
            f"run {tag}: breach={p.t_breach} restored={p.t_restored} reverted={p.t_reverted} "
            f"errors={p.errors[:3]} release={status.get('phase')}: {status.get('message')}"
        )
    run = Run(
        interval=interval,
        restore=p.t_restored - p.t_breach,
        revert=p.t_reverted - p.t_breach,
        prom_polls=p.prom_polls,
        api_poll_ms=1000 * p.api_time / max(1, p.api_polls),
        git_poll_ms=1000 * p.git_time / max(1, p.git_polls),
    )
    return run, status


def settle(ns: str, query: str, apps: Any) -> None:
    """Gate value back under the bound and every Deployment Available before the next run."""
    _stack.wait_metric_value(query, lambda v: v <= MAX)
    for n in dsl.APP_DEPLOYMENTS:
        poll(lambda n=n: helpers.deployment_available(ns, n), 90, 0.2, f"{n} Available")


def report(interval: float, runs: list[Run], configs: int = 0) -> dict[str, float]:
    restore = Summary.of([r.restore for r in runs])
    revert = Summary.of([r.revert for r in runs])
    tag = f"gate interval {interval:g}s" + (f", {configs} ConfigMaps" if configs else "")
    print(f"\n-- {tag}: {len(runs)} runs, load average {loadavg()} ({_stack.cpu_count()} cores)")
    what = f"Deployment and {configs} ConfigMaps" if configs else "Deployment"
    print(f"detect → every touched {what} restored: {restore.line()}")
    print(f"detect → revert commit on the branch:       {revert.line()}")
    print(
        f"ratio to target: restore p95 / {RESTORE_TARGET:g} s = {restore.p95 / RESTORE_TARGET:.2f} "
        f"({'meets' if restore.p95 <= RESTORE_TARGET else 'MISSES'} the target); "
        f"revert p95 / {REVERT_TARGET:g} s = {revert.p95 / REVERT_TARGET:.2f} "
        f"({'meets' if revert.p95 <= REVERT_TARGET else 'MISSES'} the target)"
    )
    print(
        f"peer reference (Flagger detection = interval × threshold, ≥ {FLAGGER_MIN:g} s, "
        f"{FLAGGER_DEFAULT:g} s default): "
        f"restore p95 = {restore.p95 / FLAGGER_MIN:.3f} × {FLAGGER_MIN:g} s "
        f"({restore.p95 / FLAGGER_DEFAULT:.4f} × {FLAGGER_DEFAULT:g} s); "
        f"revert p95 = {revert.p95 / FLAGGER_MIN:.3f} × {FLAGGER_MIN:g} s"
    )
    api_ms = sum(r.api_poll_ms for r in runs) / len(runs)
    git_ms = sum(r.git_poll_ms for r in runs) / len(runs)
    print(f"poll resolution: Prometheus ~25 ms, API {api_ms:.0f} ms/poll, git ls-remote {git_ms:.0f} ms/poll")
    print("per run (restore, revert) s: " + ", ".join(f"({r.restore:.2f}, {r.revert:.2f})" for r in runs))
    return {"restore_p95": restore.p95, "revert_p95": revert.p95}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="runs per gate interval (default 10)")
    parser.add_argument(
        "--intervals", default="1,0.5", help="comma-separated gate intervals in seconds (default 1,0.5)"
    )
    parser.add_argument("--replicas", type=int, default=1, help="replicas per Deployment (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the namespace and repo afterwards")
    parser.add_argument(
        "--config-objects", default="0", help="comma-separated ConfigMap counts the app carries (default 0)"
    )
    args = parser.parse_args(argv)
    intervals = [float(x) for x in args.intervals.split(",") if x.strip()]
    modes = [int(x) for x in args.config_objects.split(",") if x.strip()]
    figures: dict[int, dict[float, dict[str, float]]] = {}
    for configs in modes:
        failures, figures[configs] = run_mode(args, intervals, configs)
        if failures:
            return 1
    plain = figures.get(0, {})
    for configs, by_interval in figures.items():
        for interval, fig in by_interval.items():
            if configs and interval in plain:
                print(
                    f"ratio with {configs} ConfigMaps to the 2-Deployment figure at {interval:g}s: restore p95 "
                    f"{fig['restore_p95'] / plain[interval]['restore_p95']:.2f}, revert p95 "
                    f"{fig['revert_p95'] / plain[interval]['revert_p95']:.2f}"
                )
    return 0


def run_mode(
    args: argparse.Namespace, intervals: list[float], configs: int
) -> tuple[int, dict[float, dict[str, float]]]:
    figures: dict[float, dict[str, float]] = {}

    print(f"[bench] detect→rollback: load average {loadavg()} at start; bringing the stack up", flush=True)
    stack = _stack.ensure_stack()
    api = kube_client()
    from kubernetes import client

    apps = client.AppsV1Api(api)
    core = client.CoreV1Api(api)
    crd = client.CustomObjectsApi(api)
    prefix = _stack.bench_prefix("bdr")
    ns = f"{prefix}-detect" + (f"-c{configs}" if configs else "")
    query = f'max({METRIC}{{bench="{ns}"}})'
    helpers.create_namespace(ns, {_stack.LABEL: prefix})
    repo = helpers.make_repo(ns, app_files("v1", args.replicas, configs), message="app v1")
    ctl = BenchController(stack, prefix)
    failures = 0
    try:
        for text in app_files("v1", args.replicas, configs).values():
            helpers.apply(text, ns)
        helpers.set_metric(METRIC, LOW, bench=ns)
        settle(ns, query, apps)
        ctl.start()
        print(f"[bench] namespace {ns}, controller pid {ctl.pid} (log {ctl.log_path})", flush=True)
        results: dict[float, list[Run]] = {}
        for interval in intervals:
            runs: list[Run] = []
            for i in range(args.runs):
                try:
                    run, status = one_run(i, interval, ns, repo, args.replicas, apps, crd, query, core, configs)
                except (RuntimeError, TimeoutError) as exc:
                    failures += 1
                    print(f"[bench] run {i} (interval {interval:g}s) FAILED: {exc}", flush=True)
                    helpers.set_metric(METRIC, LOW, bench=ns)
                    settle(ns, query, apps)
                    continue
                undo = status.get("undo") or {}
                print(
                    f"[bench] interval {interval:g}s run {i}: restore {run.restore:.3f}s revert {run.revert:.3f}s "
                    f"(restored {len(undo.get('objects') or undo.get('restored') or [])} objects, "
                    f"phase {status.get('phase')}, load {loadavg()})",
                    flush=True,
                )
                runs.append(run)
                settle(ns, query, apps)
            results[interval] = runs
        print(f"\n== detect → rollback (DESIGN.md §6), {time.strftime('%Y-%m-%d %H:%M')}, replicas {args.replicas}")
        for interval, runs in results.items():
            if runs:
                figures[interval] = report(interval, runs, configs)
        m = ctl.metrics()
        count = _stack.metric_sum(m, "stopline_detect_to_rollback_seconds_count")
        total = _stack.metric_sum(m, "stopline_detect_to_rollback_seconds_sum")
        if count:
            print(
                f"\ncontroller's own stopline_detect_to_rollback_seconds (first breaching reading → restore done): "
                f"mean {total / count:.3f}s over {count:.0f} rollbacks"
            )
        if failures:
            print(f"{failures} run(s) failed; see {ctl.log_path}")
    finally:
        ctl.stop()
        if not args.keep:
            helpers.delete_metric(METRIC, bench=ns)
            _stack.delete_namespaces(api, [ns])
            shutil.rmtree(stack.repo_path(ns), ignore_errors=True)
    return failures, figures


if __name__ == "__main__":
    sys.exit(main())
