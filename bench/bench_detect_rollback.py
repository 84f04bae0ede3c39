"""Detect → undo on the real local stack (DESIGN.md §6): first breaching sample → controller acted, → only the
old version serving, → revert commit on the branch.

One namespace holds the 4-Deployment example app (web-canary, chat, web, api). Each run pushes a bad
commit with a Release whose first two phases touch ``web-canary`` and ``chat`` (phase 1 hold 0 s, phase 2
hold 120 s), waits until it is Holding in phase 2 (plus a few seconds and a random fraction of the gate
interval), then sets the exporter value over the gate's ``max``. Three pollers run beside each other from
just before the value is set:

* Prometheus: the gate's own PromQL every ~25 ms; t0 = when the first request that returned a breaching
  value was sent (the value was ingested between the previous request and this one);
* the API server: the pods of both Deployments every ~20 ms; "only old version serving" = first poll in
  which no pod of the bad version is Ready and not terminating; "old at full capacity" = first poll in
  which, besides, every Deployment has its replicas of the old version Ready (times taken when that poll
  returned: conservative);
* Git: ``git ls-remote <repo> refs/heads/main`` back to back; "reverted" = first time the tip is no
  longer the bad commit (time taken when ls-remote returned: conservative).

"Acted" is the controller's own ``status.undo.startedAt`` (the restore began: snapshot read, then the
writes), against t0 on the same machine's wall clock. The controller-side split comes from the status too:
t0 → the deciding reading (``gauges[].at``), reading → undo started, last undo write (``undo.at``) → only
the old version serving. After each run every Deployment's spec must equal its pre-push copy exactly.

Before every run the Prometheus scrape phase is drawn afresh: the stack's scrape config gets a target label
``stopline_bench_round=<n>`` (the scrape offset is a hash of the target's labels) and Prometheus is
reloaded, so runs do not all sit at one phase of the scrape. The original config is put back at the end.

    .venv/bin/python bench/bench_detect_rollback.py [--runs 10] [--intervals 1,0.5] [--replicas 1]
        [--undo fast,rolling] [--config-objects 0,20] [--no-redraw]

Targets: t0 → acted p95 ≤ 0.3 s; t0 → only old version serving p95 ≤ 0.5 s; t0 → revert p95 ≤ 1.0 s.
Reference (issue 13, Argo Rollouts with a 1 s scrape): acted p50/p95 0.39/0.89 s, only old serving 0.72/1.09 s.
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
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import _stack  # first: puts tests/e2e (dsl, helpers) and the repo root on sys.path
import dsl
import helpers
from _stack import BenchController, Summary, kube_client, loadavg, poll

ACTED_TARGET = 0.3
OLD_ONLY_TARGET = 0.5
REVERT_TARGET = 1.0
ARGO = {"acted": (0.39, 0.89), "old_only": (0.72, 1.09)}  # p50, p95 measured for issue 13
METRIC = "stopline_bench_load"
LOW, HIGH, MAX = 1.0, 9.0, 6.0
TOUCHED = ("web-canary", "chat")


@dataclass
class Run:
    interval: float
    acted: float  # t0 → the controller started the undo
    old_only: float  # t0 → only the old version serving: no pod of the pushed version Ready
    old_full: float  # t0 → ... and the old version Ready at full replicas
    revert: float  # t0 → revert commit on the branch
    reading: float  # t0 → the deciding gate reading
    to_write: float  # reading → undo started
    settle: float  # last undo write → only the old version serving
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
    replicas: int = 1
    t_breach: float | None = None  # wall clock (time.time), comparable with the controller's status times
    t_no_new: float | None = None  # no pod of the pushed version Ready (and not terminating)
    t_restored: float | None = None  # ... and the old version Ready at full replicas
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
            wall = time.time()
            try:
                rows = helpers.promql(self.query, timeout=2)
            except Exception as exc:
                self.errors.append(f"prometheus: {exc}")
                rows = []
            self.prom_polls += 1
            if rows and helpers.sample_value(rows[0]) > MAX:
                self.t_breach = wall
                return
            time.sleep(max(0.0, 0.025 - (time.monotonic() - sent)))

    def old_only(self, pods: list[dict[str, Any]]) -> tuple[bool, bool]:
        """(no pod of the pushed version Ready, and also every touched Deployment's replicas of the old one Ready)."""
        old = {n: self.before[n]["template"]["spec"]["containers"][0]["image"] for n in TOUCHED}
        ready_old = dict.fromkeys(TOUCHED, 0)
        for pod in pods:
            name = (pod["metadata"].get("labels") or {}).get("app")
            if name not in old:
                continue
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (pod.get("status") or {}).get("conditions") or []
            )
            serving = ready and not pod["metadata"].get("deletionTimestamp")
            if not serving:
                continue
            if pod["spec"]["containers"][0]["image"] != old[name]:
                return False, False
            ready_old[name] += 1
        return True, all(count >= self.replicas for count in ready_old.values())

    def cluster(self) -> None:
        selector = f"app in ({','.join(TOUCHED)})"
        while not self.stop.is_set() and self.t_restored is None:
            started = time.monotonic()
            raw = self.core.list_namespaced_pod(self.namespace, label_selector=selector, _preload_content=False)
            ok, full = self.old_only(json.loads(raw.data)["items"])
            if ok and self.t_no_new is None:
                self.t_no_new = time.time()
            ok = ok and full
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
                self.t_restored = time.time()
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
                self.t_reverted = time.time()
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


def epoch(stamp: str | None) -> float | None:
    """An RFC 3339 time from the status as seconds since the epoch."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else None


def redraw_scrape_phase(state_dir: Path, round_: int | None) -> None:
    """Give the exporter target the label ``stopline_bench_round=<round_>`` (None: none, as the stack wrote it)
    and reload Prometheus: the scrape offset is a hash of the target labels, so each round scrapes at a new phase."""
    path = state_dir / "prometheus" / "prometheus.yml"
    text = ORIGINAL_CONFIG.setdefault(path, path.read_text())
    if round_ is not None:
        marker = "      - targets: ["
        line = next(x for x in text.splitlines() if x.startswith(marker))
        text = text.replace(line, f"{line}\n        labels: {{stopline_bench_round: '{round_}'}}")
    path.write_text(text)
    req = urllib.request.Request(f"{helpers.get_stack().prometheus_url}/-/reload", method="POST")
    with urllib.request.urlopen(req, timeout=5):
        pass
    if round_ is not None:
        query = f'up{{stopline_bench_round="{round_}"}} == 1'
        poll(lambda: helpers.promql(query), 30, 0.1, f"Prometheus scraping round {round_}")


ORIGINAL_CONFIG: dict[Path, str] = {}


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
    undo: str = "fast",
) -> tuple[Run, dict[str, Any]]:
    before = {n: deployment_spec(apps, ns, n) for n in TOUCHED}
    config_data = {
        n: core.read_namespaced_config_map(n, ns).data for names in config_names(configs).values() for n in names
    }
    tag = f"{undo}-{int(interval * 1000)}ms-{i}"
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
            "onFailure": {"undo": undo},
        },
    }
    crd.create_namespaced_custom_object("stopline.dev", "v1alpha1", ns, "releases", body)
    poll(
        lambda: (s := release_status(crd, ns, name)).get("phase") == "Holding" and s.get("currentPhase") == "chat",
        120,
        0.1,
        f"release {name} Holding in phase chat",
    )
    # a few readings into the hold, then a random point of the gate's schedule and of the scrape
    time.sleep(3 + random.uniform(0, max(interval, 1.0)))

    p = Pollers(
        query=query,
        namespace=ns,
        repo=repo,
        bad_sha=sha,
        before=before,
        apps=apps,
        core=core,
        configs=config_data,
        replicas=replicas,
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
    exact = {n: deployment_spec(apps, ns, n) == before[n] for n in TOUCHED}
    if not all(exact.values()):
        raise RuntimeError(f"run {tag}: specs not exactly pre-push after the undo: {exact}")
    undo_st = status.get("undo") or {}
    row = next(r for r in status.get("gauges") or [] if r.get("gate") == "load" and r.get("phase") == "chat")
    reading, started, last_write = epoch(row.get("at")), epoch(undo_st.get("startedAt")), epoch(undo_st.get("at"))
    if reading is None or started is None or last_write is None:
        raise RuntimeError(f"run {tag}: status lacks reading/undo times: {row.get('at')} {undo_st}")
    t0 = p.t_breach
    run = Run(
        interval=interval,
        acted=started - t0,
        old_only=(p.t_no_new or p.t_restored) - t0,
        old_full=p.t_restored - t0,
        revert=p.t_reverted - t0,
        reading=reading - t0,
        to_write=started - reading,
        settle=(p.t_no_new or p.t_restored) - last_write,
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


def _ratio(value: float, target: float) -> str:
    return f"{value / target:.2f} ({'meets' if value <= target else 'MISSES'})"


def report(interval: float, runs: list[Run], configs: int = 0, undo: str = "fast") -> dict[str, float]:
    acted = Summary.of([r.acted for r in runs])
    old_only = Summary.of([r.old_only for r in runs])
    revert = Summary.of([r.revert for r in runs])
    tag = f"onFailure.undo {undo}, gate interval {interval:g}s" + (f", {configs} ConfigMaps" if configs else "")
    print(f"\n-- {tag}: {len(runs)} runs, load average {loadavg()} ({_stack.cpu_count()} cores)")
    print(f"t0 → controller acted (undo started):        {acted.line()}")
    print(f"t0 → only the old version serving:           {old_only.line()}")
    print(f"   (t0 → old version Ready at full replicas: {Summary.of([r.old_full for r in runs]).line()})")
    print(f"t0 → revert commit on the branch:            {revert.line()}")
    print(
        f"ratio to target: acted p95 / {ACTED_TARGET:g} s = {_ratio(acted.p95, ACTED_TARGET)}; "
        f"only old serving p95 / {OLD_ONLY_TARGET:g} s = {_ratio(old_only.p95, OLD_ONLY_TARGET)}; "
        f"revert p95 / {REVERT_TARGET:g} s = {_ratio(revert.p95, REVERT_TARGET)}"
    )
    print(
        f"ratio to Argo Rollouts (issue 13): acted p95 {acted.p95 / ARGO['acted'][1]:.2f}, "
        f"only old serving p95 {old_only.p95 / ARGO['old_only'][1]:.2f}"
    )
    print("controller-side split:")
    print(f"  t0 → deciding reading:                     {Summary.of([r.reading for r in runs]).line()}")
    print(f"  reading → undo started (first write):      {Summary.of([r.to_write for r in runs]).line()}")
    print(f"  last undo write → only old serving:        {Summary.of([r.settle for r in runs]).line()}")
    api_ms = sum(r.api_poll_ms for r in runs) / len(runs)
    git_ms = sum(r.git_poll_ms for r in runs) / len(runs)
    print(f"poll resolution: Prometheus ~25 ms, API {api_ms:.0f} ms/poll, git ls-remote {git_ms:.0f} ms/poll")
    print(
        "per run (acted, only old, revert) s: "
        + ", ".join(f"({r.acted:.2f}, {r.old_only:.2f}, {r.revert:.2f})" for r in runs)
    )
    return {"acted_p95": acted.p95, "old_only_p95": old_only.p95, "revert_p95": revert.p95}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="runs per gate interval (default 10)")
    parser.add_argument(
        "--intervals", default="1,0.5", help="comma-separated gate intervals in seconds (default 1,0.5)"
    )
    parser.add_argument("--replicas", type=int, default=1, help="replicas per Deployment (default 1)")
    parser.add_argument("--undo", default="fast", help="comma-separated onFailure.undo modes (default fast)")
    parser.add_argument("--keep", action="store_true", help="keep the namespace and repo afterwards")
    parser.add_argument("--no-redraw", action="store_true", help="keep Prometheus' scrape phase between runs")
    parser.add_argument(
        "--config-objects", default="0", help="comma-separated ConfigMap counts the app carries (default 0)"
    )
    args = parser.parse_args(argv)
    intervals = [float(x) for x in args.intervals.split(",") if x.strip()]
    modes = [int(x) for x in args.config_objects.split(",") if x.strip()]
    undos = [x.strip() for x in args.undo.split(",") if x.strip()]
    for configs in modes:
        failures, _ = run_mode(args, intervals, configs, undos)
        if failures:
            return 1
    return 0


def run_mode(
    args: argparse.Namespace, intervals: list[float], configs: int, undos: list[str]
) -> tuple[int, dict[tuple[str, float], dict[str, float]]]:
    figures: dict[tuple[str, float], dict[str, float]] = {}

    print(f"[bench] detect→undo: load average {loadavg()} at start; bringing the stack up", flush=True)
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
    round_ = 0
    try:
        for text in app_files("v1", args.replicas, configs).values():
            helpers.apply(text, ns)
        helpers.set_metric(METRIC, LOW, bench=ns)
        settle(ns, query, apps)
        ctl.start()
        print(f"[bench] namespace {ns}, controller pid {ctl.pid} (log {ctl.log_path})", flush=True)
        results: dict[tuple[str, float], list[Run]] = {}
        for undo in undos:
            for interval in intervals:
                runs: list[Run] = []
                for i in range(args.runs):
                    if not args.no_redraw:
                        round_ += 1
                        redraw_scrape_phase(stack.state_dir, round_)
                        settle(ns, query, apps)
                    try:
                        run, status = one_run(
                            i, interval, ns, repo, args.replicas, apps, crd, query, core, configs, undo
                        )
                    except (RuntimeError, TimeoutError) as exc:
                        failures += 1
                        print(f"[bench] run {i} ({undo}, interval {interval:g}s) FAILED: {exc}", flush=True)
                        helpers.set_metric(METRIC, LOW, bench=ns)
                        settle(ns, query, apps)
                        continue
                    undo_st = status.get("undo") or {}
                    print(
                        f"[bench] {undo} interval {interval:g}s run {i}: acted {run.acted:.3f}s "
                        f"only-old {run.old_only:.3f}s (full {run.old_full:.3f}s) revert {run.revert:.3f}s | "
                        f"reading {run.reading:.3f}s "
                        f"→write {run.to_write:.3f}s settle {run.settle:.3f}s "
                        f"(restored {len(undo_st.get('objects') or [])} objects, phase {status.get('phase')}, "
                        f"load {loadavg()})",
                        flush=True,
                    )
                    runs.append(run)
                    settle(ns, query, apps)
                results[(undo, interval)] = runs
        print(f"\n== detect → undo (DESIGN.md §6), {time.strftime('%Y-%m-%d %H:%M')}, replicas {args.replicas}")
        for (undo, interval), runs in results.items():
            if runs:
                figures[(undo, interval)] = report(interval, runs, configs, undo)
        if failures:
            print(f"{failures} run(s) failed; see {ctl.log_path}")
    finally:
        ctl.stop()
        if round_:
            redraw_scrape_phase(stack.state_dir, None)
        if not args.keep:
            helpers.delete_metric(METRIC, bench=ns)
            _stack.delete_namespaces(api, [ns])
            shutil.rmtree(stack.repo_path(ns), ignore_errors=True)
    return failures, figures


if __name__ == "__main__":
    sys.exit(main())
