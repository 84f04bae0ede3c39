"""Many concurrent Releases on the real local stack (DESIGN.md §6: 500 Releases × 3 phases on fake nodes,
controller RSS ≤ 300 MiB, no per-Release thread, shared gate queries de-duplicated).

Each Release lives in its own namespace ``<prefix>-NNNN`` with its own three small Deployments (d1, d2,
d3; 1 replica each by default) and pushes them in 3 phases (one Deployment each, ``--hold`` each). All
Releases push the same revision of one shared repo and share one gate query, so the controller's
Prometheus de-duplication is exercised. The controller is started for ``<prefix>-*`` only and talks to
Prometheus through a counting loopback proxy, so its queries are counted exactly (Prometheus's own
``prometheus_http_requests_total`` is printed too, but it counts every client on the shared stack).

Setup (namespaces, Deployments Available, fake nodes added with ``kwokctl scale node`` when the pods
would not fit) is untimed. Timed: creating every Release → every Release ``Succeeded``. Sampled every
0.25 s from /proc: the controller's RSS, threads and open file descriptors.

    .venv/bin/python bench/bench_scale.py [--releases 100] [--hold 3s] [--interval 1s] [--replicas 1]
    .venv/bin/python bench/bench_scale.py --releases 500          # the full DESIGN.md target
    .venv/bin/python bench/bench_scale.py --releases 500 --shards 4   # 4 replicas, 4 shard Leases

With ``--shards N`` it starts N controller replicas (``--shards N``, the same ``--lease-name <prefix>``,
identities ``<prefix>-r<i>``), waits until each holds its fair share of the shard Leases, samples each
one and prints every replica's peak RSS.

Targets: peak RSS / 300 MiB ≤ 1 (per replica); threads bounded (≤ 48: no thread per Release) whatever
the number of Releases; Prometheus queries far fewer than gate readings; a hold's end → the phase
completed p95 ≤ 1 s; ≤ 10 API reads per rollout (GET/LIST served by the API server during the run,
Leases and this script's own ``LIST releases`` left out, over the number of phase rollouts).

Run it on a stack of its own made with ``STOPLINE_STACK_PROFILE=bench`` (hack/stack.sh): the
controller-manager's default throttle (20 requests/s, 5 concurrent Deployment syncs) otherwise sets the
pace of every rollout, and with it the wall time and the per-rollout reads.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import re
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import _stack  # first: puts tests/e2e (dsl, helpers) and the repo root on sys.path
import dsl
import helpers
from _stack import BenchController, CountingProxy, Sampler, Summary, kube_client, loadavg, poll

RSS_TARGET_MIB = 300.0
HOLD_LAG_TARGET_S = 1.0  # a hold's end → the phase completed, p95 (issue 14)
READS_TARGET = 10.0  # API reads per rollout (issue 14)
THREAD_BOUND = 48  # main + kopf, 32 I/O, 2 Lease, 8 Prometheus query threads (none per Release)
METRIC = "stopline_bench_scale"
DEPLOYMENTS = {"d1": "one", "d2": "two", "d3": "three"}
FINAL = ("Succeeded", "RolledBack", "Failed")


def app_files(version: str, replicas: int, prefix: str, app: str = "") -> dict[str, str]:
    """The app's three Deployments; with ``app``, labelled ``stopline.dev/app`` as an earlier push by stopline
    leaves them (so the controllers' workload watches hold them from the start, as in a cluster in use)."""
    import yaml

    from controller.release.assign import LABEL_APP

    out = {}
    for name, tier in DEPLOYMENTS.items():
        doc = yaml.safe_load(dsl.deployment_yaml(name, tier, version, replicas=replicas))
        doc["metadata"]["labels"][_stack.LABEL] = prefix
        if app:
            doc["metadata"]["labels"][LABEL_APP] = app
        out[f"deploy/{name}.yaml"] = yaml.safe_dump(doc, sort_keys=False)
    return out


def release_body(name: str, ns: str, prefix: str, repo: str, sha: str, hold: str, interval: str) -> dict[str, Any]:
    return {
        "apiVersion": dsl.API,
        "kind": "Release",
        "metadata": {"name": name, "namespace": ns, "labels": {_stack.LABEL: prefix}},
        "spec": {
            "source": {"repo": repo, "branch": "main", "revision": sha, "path": "deploy/"},
            "phases": [
                {"name": "one", "deployments": ["d1"], "hold": hold},
                {"name": "two", "deployments": ["d2"], "hold": hold},
                {"name": "three", "remaining": True, "hold": hold},
            ],
            "gates": [
                {
                    "name": "load",
                    "query": f'max({METRIC}{{bench="{prefix}"}})',  # the same text in every Release
                    "max": 6,
                    "maxIncreasePercent": 50,
                    "interval": interval,
                }
            ],
            "watch": "0s",
        },
    }


def parse_time(raw: str | None) -> datetime | None:
    return datetime.fromisoformat(raw.replace("Z", "+00:00")) if raw else None


def list_releases(crd: Any, prefix: str, attempts: int = 5) -> list[dict[str, Any]]:
    """This run's Releases, from the API server's watch cache (``resourceVersion=0``: one answer, never
    an etcd read, possibly a second stale — fine for progress). A paged consistent LIST failed with 504
    "Too large resource version" at 2,000 Releases, the watch cache lagging etcd on the saturated cores;
    a failed LIST is retried, not fatal to the run."""
    import urllib3
    from kubernetes.client.exceptions import ApiException

    for attempt in range(attempts):
        try:
            page = crd.list_cluster_custom_object(
                "stopline.dev",
                "v1alpha1",
                "releases",
                label_selector=f"{_stack.LABEL}={prefix}",
                resource_version="0",
                _request_timeout=120,
            )
            return list(page["items"])
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            status = getattr(exc, "status", None)
            if (status is not None and status < 500 and status != 410) or attempt == attempts - 1:
                raise
            print(f"[bench] LIST releases failed ({type(exc).__name__}); retrying", flush=True)
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")


def setup(api: Any, prefix: str, names: list[str], files: dict[str, str], workers: int) -> float:
    """Namespaces and their Deployments, all Available; returns the seconds it took."""
    import yaml
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    docs = [yaml.safe_load(t) for t in files.values()]
    started = time.monotonic()

    def namespace(ns: str) -> None:
        try:
            core.create_namespace({"metadata": {"name": ns, "labels": {_stack.LABEL: prefix}}})
        except ApiException as exc:
            if exc.status != 409:
                raise

    def deployments(ns: str) -> None:
        for doc in docs:
            try:
                apps.create_namespaced_deployment(ns, doc)
            except ApiException as exc:
                if exc.status != 409:
                    raise

    wanted = set(names)

    def service_accounts() -> bool:
        # pods are refused until the namespace's default ServiceAccount exists (and the ReplicaSet
        # controller then backs off), so Deployments go in only once every namespace has one
        found = core.list_service_account_for_all_namespaces(field_selector="metadata.name=default").items
        return len(wanted & {sa.metadata.namespace for sa in found}) == len(wanted)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(namespace, names))
        poll(service_accounts, 300, 1.0, "a default ServiceAccount in every namespace")
        list(pool.map(deployments, names))
    want = len(names) * len(docs)

    def available() -> bool:
        # Raw JSON from the watch cache: deserialising 6,000 Deployments into client models every 5 s took
        # most of a core from the kube-controller-manager this waits for (setup ran at 2.5 Deployments/s).
        resp = apps.list_deployment_for_all_namespaces(
            label_selector=f"{_stack.LABEL}={prefix}", resource_version="0", _preload_content=False
        )
        items = json.loads(resp.data)["items"]

        def done(d: dict[str, Any]) -> bool:
            spec, st, meta = d.get("spec") or {}, d.get("status") or {}, d["metadata"]
            want = spec.get("replicas", 1)
            return bool(
                int(st.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
                and int(st.get("availableReplicas") or 0) >= want
                and int(st.get("updatedReplicas") or 0) >= want
            )

        ready = sum(1 for d in items if done(d))
        print(f"[bench] setup: {ready}/{want} Deployments Available (load {loadavg()})", flush=True)
        return ready >= want

    poll(available, max(300, want * 0.5), 5.0, f"{want} Deployments Available")
    return time.monotonic() - started


def settled(ctl: BenchController, timeout: float = 60) -> _stack.ProcSample:
    """The controller's idle sample once its open fds and threads stopped changing for 3 s (its watches
    and Lease rounds start after it reports healthy)."""
    deadline = time.monotonic() + timeout
    last = ctl.sample()
    stable_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - stable_since < 3:
        time.sleep(0.5)
        now = ctl.sample()
        if now.fds != last.fds or now.threads != last.threads:
            stable_since = time.monotonic()
        last = now
    return last


def idle_curve(stack: helpers.Stack, api: Any, counts: list[int], workers: int) -> int:
    """Idle controller footprint against the number of watched (empty) namespaces matching
    ``--namespace <prefix>-*``: the cost before any Release exists. (Until issue 14 kopf opened watch
    streams per namespace, ~1 MiB each; now one cluster-wide watch per kind is filtered by namespace.)"""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)
    prefix = _stack.bench_prefix("bsi")
    made: list[str] = []
    rows: list[tuple[int, _stack.ProcSample]] = []

    def create(ns: str) -> None:
        try:
            core.create_namespace({"metadata": {"name": ns, "labels": {_stack.LABEL: prefix}}})
        except ApiException as exc:
            if exc.status != 409:
                raise

    try:
        for count in sorted(counts):
            new = [f"{prefix}-{i:04d}" for i in range(len(made), count)]
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(create, new))
            made += new
            ctl = BenchController(stack, prefix)
            try:
                ctl.start(timeout=180)
                sample = settled(ctl)
            finally:
                ctl.stop()
            rows.append((count, sample))
            print(
                f"[bench] idle over {count} namespaces: RSS {sample.rss_kib / 1024:.1f} MiB, "
                f"{sample.threads} threads, {sample.fds} fds (load {loadavg()})",
                flush=True,
            )
    finally:
        _stack.delete_namespaces(api, made)
    print(f"\n== idle controller vs watched namespaces, {time.strftime('%Y-%m-%d %H:%M')}, load average {loadavg()}")
    base_n, base = rows[0]
    for count, sample in rows:
        extra = (sample.rss_kib - base.rss_kib) / 1024 / (count - base_n) if count > base_n else 0.0
        print(
            f"{count:5d} namespaces: RSS {sample.rss_kib / 1024:6.1f} MiB ({extra:.2f} MiB per extra namespace), "
            f"{sample.fds:4d} fds, {sample.threads} threads"
        )
    return 0


def start_replicas(
    stack: helpers.Stack, prefix: str, prometheus_url: str, tick: float | None, shards: int
) -> list[BenchController]:
    """One controller (``shards`` 1, as before), or ``shards`` replicas started together: the same
    ``--lease-name <prefix>`` and ``--shards N``, identities ``<prefix>-r<i>``."""
    if shards <= 1:
        ctls = [BenchController(stack, prefix, prometheus_url=prometheus_url, tick=tick)]
    else:
        ctls = [
            BenchController(
                stack, prefix, prometheus_url=prometheus_url, tick=tick, shards=shards, identity=f"{prefix}-r{i}"
            )
            for i in range(shards)
        ]
    try:
        with ThreadPoolExecutor(len(ctls)) as pool:
            list(pool.map(lambda c: c.start(timeout=180), ctls))
    except BaseException:
        for c in ctls:
            c.stop()
        raise
    return ctls


def shards_held(metrics: dict[str, float]) -> float:
    return _stack.metric_sum(metrics, "stopline_shards_held")


def wait_shards_spread(ctls: list[BenchController], shards: int, timeout: float = 120) -> list[float]:
    """Wait until every shard is held and no replica holds more than its fair share; return each one's count."""
    fair = math.ceil(shards / len(ctls))
    held: list[float] = []

    def spread() -> bool:
        nonlocal held
        held = [shards_held(c.metrics()) for c in ctls]
        return sum(held) == shards and max(held) <= fair

    started = time.monotonic()
    try:
        poll(spread, timeout, 1.0, f"{shards} shard(s) spread over {len(ctls)} replica(s)")
    except TimeoutError as exc:
        print(f"[bench] WARNING: {exc}", flush=True)
    print(f"[bench] shards held per replica {held} after {time.monotonic() - started:.0f}s", flush=True)
    return held


_KUBE_REQUEST = re.compile(r'^stopline_kube_requests_total\{(?=.*resource="([^"]+)")(?=.*verb="([^"]+)").*\}$')


def controller_reads(metrics: dict[str, float]) -> collections.Counter[tuple[str, str]]:
    """(verb, resource) → GET/LIST requests the controller counted itself, Leases left out."""
    out: collections.Counter[tuple[str, str]] = collections.Counter()
    for key, value in metrics.items():
        m = _KUBE_REQUEST.match(key)
        if m and m.group(2) in ("GET", "LIST") and m.group(1) != "leases":
            out[(m.group(2), m.group(1))] += int(value)
    return out


_STATUS_WRITE = re.compile(r'^stopline_status_writes_total\{(?=.*action="([^"]+)")(?=.*kind="Release").*\}$')


def status_writes(metrics: dict[str, float]) -> collections.Counter[str]:
    """Action → Release status patches the controller wrote for it (stopline_status_writes_total)."""
    out: collections.Counter[str] = collections.Counter()
    for key, value in metrics.items():
        if m := _STATUS_WRITE.match(key):
            out[m.group(1)] += int(value)
    return out


def merged_metrics(per_replica: list[dict[str, float]]) -> dict[str, float]:
    """Every replica's /metrics summed sample by sample (counters and sums add up over replicas)."""
    out: dict[str, float] = collections.defaultdict(float)
    for metrics in per_replica:
        for key, value in metrics.items():
            out[key] += value
    return dict(out)


def lease_holders(api: Any, prefix: str, shards: int) -> dict[int, str]:
    """Shard → holderIdentity of the Lease ``<prefix>-shard-<i>`` (namespace ``default``), '' when free."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    coord = client.CoordinationV1Api(api)
    out: dict[int, str] = {}
    for i in range(shards):
        try:
            lease = coord.read_namespaced_lease(f"{prefix}-shard-{i}", "default")
            out[i] = lease.spec.holder_identity or ""
        except ApiException:
            out[i] = "?"
    return out


class Samplers:
    """One `Sampler` per controller process."""

    def __init__(self, pids: list[int]) -> None:
        self.each = [Sampler(pid) for pid in pids]

    def __enter__(self) -> Samplers:
        for s in self.each:
            s.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        for s in self.each:
            s.__exit__(*exc)

    def largest_now(self) -> _stack.ProcSample | None:
        last = [s.samples[-1][1] for s in self.each if s.samples]
        return max(last, key=lambda x: x.rss_kib, default=None)


def api_reads(delta: collections.Counter[tuple[str, str]]) -> collections.Counter[tuple[str, str]]:
    """GETs and LISTs during the run that the controller made: every GET and LIST the API server served,
    except Leases (every component's leader election and node heartbeats, and the shard Leases) and
    LIST releases (this benchmark's own progress polling, once a second)."""
    return collections.Counter(
        {
            (verb, res): count
            for (verb, res), count in delta.items()
            if verb in ("GET", "LIST") and count and res != "leases" and not (verb == "LIST" and res == "releases")
        }
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--releases", type=int, default=100, help="concurrent Releases (default 100; target 500)")
    parser.add_argument("--hold", default="3s", help="hold of each of the 3 phases (default 3s)")
    parser.add_argument("--interval", default="1s", help="gate interval (default 1s)")
    parser.add_argument("--replicas", type=int, default=1, help="replicas per Deployment (default 1)")
    parser.add_argument("--workers", type=int, default=8, help="client threads for setup and creation")
    parser.add_argument("--timeout", type=float, default=0, help="seconds to wait for all final (default auto)")
    parser.add_argument("--keep", action="store_true", help="keep namespaces and repo afterwards")
    parser.add_argument(
        "--tick", type=float, default=None, help="STOPLINE_RELEASE_TICK for the controller (default: its own)"
    )
    parser.add_argument(
        "--shards",
        type=int,
        default=1,
        help="run N controller replicas with --shards N (same --lease-name, distinct --identity; default 1)",
    )
    parser.add_argument(
        "--idle-namespaces",
        default="",
        help="instead: idle controller RSS/fds over this many empty namespaces, e.g. 0,100,300,500",
    )
    args = parser.parse_args(argv)
    n = args.releases
    if args.idle_namespaces:
        stack = _stack.ensure_stack()
        counts = [int(x) for x in args.idle_namespaces.split(",") if x.strip()]
        return idle_curve(stack, kube_client(), counts, args.workers)

    print(f"[bench] scale: {n} Releases; load average {loadavg()} at start; bringing the stack up", flush=True)
    stack = _stack.ensure_stack()
    api = kube_client()
    from kubernetes import client

    crd = client.CustomObjectsApi(api)
    prefix = _stack.bench_prefix("bsc")
    names = [f"{prefix}-{i:04d}" for i in range(n)]
    repo_name = f"{prefix}-app"
    repo = helpers.make_repo(repo_name, app_files("v1", args.replicas, prefix), message="app v1")
    sha = helpers.push_commit(repo, app_files("v2", args.replicas, prefix), "app v2")
    pods_needed = n * len(DEPLOYMENTS) * args.replicas + (n if args.replicas else 0)  # + a surge pod per Release
    capacity_note = _stack.ensure_pod_capacity(api, stack, pods_needed)
    print(f"[bench] pod capacity: {capacity_note}", flush=True)

    proxy = CountingProxy(stack.prometheus_url)
    ctls: list[BenchController] = []
    failures = 0
    try:
        from controller.release.assign import app_id

        pushed_before = app_files("v1", args.replicas, prefix, app=app_id(repo, "deploy/"))
        setup_s = setup(api, prefix, names, pushed_before, args.workers)
        print(f"[bench] setup took {setup_s:.0f}s", flush=True)
        helpers.set_metric(METRIC, 1.0, bench=prefix)
        _stack.wait_metric_value(f'max({METRIC}{{bench="{prefix}"}})', lambda v: v == 1.0)
        with proxy:
            ctls = start_replicas(stack, prefix, proxy.url, args.tick, args.shards)
            held_idle = wait_shards_spread(ctls, args.shards)
            idles = [settled(c) for c in ctls]
            for c, s, h in zip(ctls, idles, held_idle, strict=True):
                print(
                    f"[bench] controller {c.identity or ''} pid {c.pid} idle over {n} namespaces, holding {h:.0f} "
                    f"shard(s): RSS {s.rss_kib / 1024:.1f} MiB, {s.threads} threads, {s.fds} fds (log {c.log_path})",
                    flush=True,
                )
            prom_before = _stack.prometheus_query_handler_total()
            proxy_before = proxy.query_count()
            m0 = merged_metrics([c.metrics() for c in ctls])
            evals_before = _stack.metric_sum(m0, "stopline_gate_evaluations_total")
            gate_s_before = _stack.metric_sum(m0, "stopline_gate_evaluation_seconds_sum")
            gate_n_before = _stack.metric_sum(m0, "stopline_gate_evaluation_seconds_count")

            api_before = _stack.apiserver_requests()
            kcm_before = _stack.kcm_stats(stack)
            with Samplers([c.pid for c in ctls]) as samplers:
                cpu0, busy0 = sum(c.sample().cpu_s for c in ctls), _stack.machine_busy_seconds()
                t0 = time.monotonic()
                with ThreadPoolExecutor(args.workers) as pool:
                    list(
                        pool.map(
                            lambda ns: crd.create_namespaced_custom_object(
                                "stopline.dev",
                                "v1alpha1",
                                ns,
                                "releases",
                                release_body("push", ns, prefix, repo, sha, args.hold, args.interval),
                            ),
                            names,
                        )
                    )
                created_s = time.monotonic() - t0
                print(f"[bench] {n} Releases created in {created_s:.1f}s", flush=True)
                timeout = args.timeout or max(600.0, n * 3.0)
                last_print = 0.0
                items: list[dict[str, Any]] = []
                poll_every = max(1.0, n / 400)  # a full LIST of 2,000 Releases is ~10 MB for the API server
                failing_since: float | None = None
                while True:
                    try:
                        items = list_releases(crd, prefix)
                        failing_since = None
                    except Exception as exc:  # the API server is saturated: keep the last answer and go on
                        failing_since = failing_since or time.monotonic()
                        print(f"[bench] WARNING: progress LIST failed ({type(exc).__name__}: {exc})"[:300], flush=True)
                        if time.monotonic() - failing_since > 600:
                            raise

                    phases = collections.Counter((i.get("status") or {}).get("phase", "New") for i in items)
                    done = sum(phases[p] for p in FINAL)
                    now = time.monotonic()
                    if now - last_print >= 10 or done >= n:
                        s = samplers.largest_now()
                        print(
                            f"[bench] t+{now - t0:5.0f}s {dict(sorted(phases.items()))} "
                            f"RSS {'(largest replica) ' if len(ctls) > 1 else ''}"
                            f"{s.rss_kib / 1024 if s else 0:.0f} MiB threads {s.threads if s else 0} "
                            f"fds {s.fds if s else 0} load {loadavg()}",
                            flush=True,
                        )
                        last_print = now
                    if done >= n:
                        break
                    if now - t0 > timeout:
                        print(f"[bench] TIMEOUT after {timeout:.0f}s", flush=True)
                        break
                    time.sleep(poll_every)
                wall = time.monotonic() - t0
                cpu = sum(c.sample().cpu_s for c in ctls) - cpu0
                busy = _stack.machine_busy_seconds() - busy0
            per_replica = [c.metrics() for c in ctls]
            m = merged_metrics(per_replica)
            holders = lease_holders(api, prefix, args.shards)
            evals = _stack.metric_sum(m, "stopline_gate_evaluations_total") - evals_before
            gate_n = _stack.metric_sum(m, "stopline_gate_evaluation_seconds_count") - gate_n_before
            gate_s = _stack.metric_sum(m, "stopline_gate_evaluation_seconds_sum") - gate_s_before
            queries = proxy.query_count() - proxy_before
            prom_delta = _stack.prometheus_query_handler_total() - prom_before
            final_samples = [c.sample() for c in ctls]
            api_delta = _stack.apiserver_requests() - api_before
            kcm_after = _stack.kcm_stats(stack)
            own_reads = controller_reads(m) - controller_reads(m0)
            errors = _stack.metric_sum(m, "stopline_reconcile_errors_total")
            counted = m.get('stopline_releases_total{result="Succeeded"}', 0.0)
            cancelled = sum(c.log_count(r"Daemon 'push' is cancelled") for c in ctls)
    finally:
        if ctls:
            with ThreadPoolExecutor(len(ctls)) as pool:
                list(pool.map(lambda c: c.stop(), ctls))
        if not args.keep:
            helpers.delete_metric(METRIC, bench=prefix)
            shutil.rmtree(stack.repo_path(repo_name), ignore_errors=True)
            print(f"[bench] deleting {n} namespaces (in the background)", flush=True)
            _stack.delete_namespaces(api, names)  # they go away in the background

    phases = collections.Counter((i.get("status") or {}).get("phase", "New") for i in items)
    failures = n - phases["Succeeded"]
    durations: list[float] = []
    rollouts: list[float] = []  # phase startedAt → availableAt: the cluster rolling one Deployment out
    after_hold: list[float] = []  # phase holdUntil → completedAt: the controller noticing the hold ended
    readings = 0
    for item in items:
        st = item.get("status") or {}
        a, b = parse_time(st.get("startedAt")), parse_time(st.get("completedAt"))
        if a and b:
            durations.append((b - a).total_seconds())
        for ph in st.get("phases") or []:
            started, available = parse_time(ph.get("startedAt")), parse_time(ph.get("availableAt"))
            until, completed = parse_time(ph.get("holdUntil")), parse_time(ph.get("completedAt"))
            if started and available:
                rollouts.append((available - started).total_seconds())
            if until and completed:
                after_hold.append((completed - until).total_seconds())
        readings += sum(int(g.get("readings") or 0) for g in st.get("gauges") or [])
    baselines = sum(1 for item in items for g in (item.get("status") or {}).get("gauges") or [] if g.get("prePush"))

    print(
        f"\n== scale (DESIGN.md §6), {time.strftime('%Y-%m-%d %H:%M')}: {n} Releases × 3 phases (hold {args.hold}, "
        f"gate interval {args.interval}, {args.replicas} replica(s) per Deployment, {n * 3} Deployments, "
        f"release tick {args.tick if args.tick is not None else 'default'}), "
        f"{_stack.cpu_count()} cores, load average {loadavg()}"
    )
    print(f"fake nodes: {capacity_note}")
    print(
        f"result: {dict(sorted(phases.items()))}; reconcile errors {errors:.0f}; the controller counted "
        f"{counted:.0f} Succeeded (stopline_releases_total); kopf logged {cancelled} 'Daemon push is cancelled'"
    )
    print(
        f"wall time, creating the Releases → all final: {wall:.1f}s (creation took {created_s:.1f}s); "
        f"lower bound 3 × hold = {3 * _stack_seconds(args.hold):.0f}s"
    )
    if durations:
        print(f"per-Release push time (status startedAt → completedAt): {Summary.of(durations).line()}")
    if rollouts:
        print(f"per-phase rollout (phase startedAt → availableAt):     {Summary.of(rollouts).line()}")
    if after_hold:
        print(f"per-phase hold end → phase completed:                  {Summary.of(after_hold).line()}")
    if after_hold:
        p95 = Summary.of(after_hold).p95
        print(
            f"hold end → phase completed p95 {p95:.3f}s → ratio p95 / {HOLD_LAG_TARGET_S:g} s = "
            f"{p95 / HOLD_LAG_TARGET_S:.2f} ({'meets' if p95 <= HOLD_LAG_TARGET_S else 'MISSES'} the target)"
        )
    worst = 0.0
    for i, (c, sm, fin, idl) in enumerate(zip(ctls, samplers.each, final_samples, idles, strict=True)):
        peak = max(sm.peak_rss_kib, fin.hwm_kib) / 1024
        worst = max(worst, peak)
        who = f"replica {c.identity} " if c.identity else ""
        held = f", holding {shards_held(per_replica[i]):.0f} shard(s) at the end" if args.shards > 1 else ""
        print(
            f"controller {who}RSS: idle {idl.rss_kib / 1024:.1f} MiB, peak sampled {sm.peak_rss_kib / 1024:.1f} MiB, "
            f"VmHWM {fin.hwm_kib / 1024:.1f} MiB → ratio peak / {RSS_TARGET_MIB:g} MiB = "
            f"{peak / RSS_TARGET_MIB:.2f} ({'meets' if peak <= RSS_TARGET_MIB else 'MISSES'} the target){held}"
        )
        print(
            f"controller {who}threads: idle {idl.threads}, peak {sm.peak_threads} for {n} Releases "
            f"(bound {THREAD_BOUND}: {'meets' if sm.peak_threads <= THREAD_BOUND else 'MISSES'}); "
            f"open fds idle {idl.fds}, peak {sm.peak_fds}"
        )
    if args.shards > 1:
        from controller.reconcile.shards import shard_of

        per_shard = collections.Counter(shard_of(ns, args.shards) for ns in names)
        print(
            f"{args.shards} shards: namespaces per shard {dict(sorted(per_shard.items()))}; Lease holders at the end "
            f"{holders}; largest replica peak {worst:.1f} MiB → ratio / {RSS_TARGET_MIB:g} MiB = "
            f"{worst / RSS_TARGET_MIB:.2f} (the target is per replica at 2000 Releases on 4 shards; this run has {n})"
        )
    print(
        f"CPU during the run: controller{'s (all replicas)' if len(ctls) > 1 else ''} {cpu:.0f} CPU-s = "
        f"{cpu / wall:.2f} cores on average; whole machine "
        f"{busy / wall:.2f} of {_stack.cpu_count()} cores busy (the API server, controller-manager, scheduler and "
        f"kwok reconcile {n * 3} rollouts on the same cores; other sessions' load included)"
    )
    reads_by = api_reads(api_delta)
    n_rollouts = len(rollouts) or n * 3
    per_rollout = sum(reads_by.values()) / n_rollouts
    print(
        f"API reads (GET/LIST, without Leases and the benchmark's LIST releases): {sum(reads_by.values())} for "
        f"{n_rollouts} rollouts = {per_rollout:.1f} per rollout → ratio / {READS_TARGET:g} = "
        f"{per_rollout / READS_TARGET:.2f} ({'meets' if per_rollout <= READS_TARGET else 'MISSES'} the target); "
        f"by kind: {', '.join(f'{v} {r} {c}' for (v, r), c in reads_by.most_common(8))}"
    )
    own = sum(own_reads.values())
    print(
        f"the controller's own API reads (stopline_kube_requests_total, GET/LIST without Leases; "
        f"watches not counted): {own} = {own / n_rollouts:.1f} per rollout → ratio / {READS_TARGET:g} = "
        f"{own / n_rollouts / READS_TARGET:.2f} ({'meets' if own / n_rollouts <= READS_TARGET else 'MISSES'}); "
        f"by kind: {', '.join(f'{v} {r} {c:.0f}' for (v, r), c in own_reads.most_common(8))}"
    )
    writes = status_writes(m) - status_writes(m0)
    print(
        f"Release status writes (stopline_status_writes_total): {sum(writes.values())} = "
        f"{sum(writes.values()) / n:.1f} per Release; by action: "
        f"{', '.join(f'{a} {c}' for a, c in writes.most_common(10))}"
    )
    reads = readings + baselines
    ratio = reads / queries if queries else math.inf
    print(
        f"Prometheus: {queries} queries from the controller (counting proxy) for {reads} gate reads "
        f"({evals:.0f} evaluations per stopline_gate_evaluations_total, {readings} readings in status, plus "
        f"{baselines} pre-push baselines) → {ratio:.1f} gate reads per query, "
        f"{queries / wall if wall else 0:.2f} queries/s; Prometheus's own /api/v1/query counter rose by "
        f"{prom_delta:.0f} (every client of the shared stack, this benchmark's polling included)"
    )
    if gate_n:
        print(
            f"gate evaluation rounds: {gate_n:.0f}, mean {gate_s / gate_n * 1000:.0f} ms each "
            f"(stopline_gate_evaluation_seconds: Prometheus round trip + waiting for a worker thread)"
        )
    calls = ", ".join(
        f"{verb} {res} {count} ({count / wall:.0f}/s)"
        for (verb, res), count in api_delta.most_common(8)
        if verb not in ("WATCH", "LIST")
    )
    print(f"API server requests during the run (every client; Deployment GETs are the controller's): {calls}")
    if kcm_before is not None and kcm_after is not None:
        k = kcm_after - kcm_before
        print(
            f"kube-controller-manager (stack profile {_stack.stack_profile(stack)}; bench: --kube-api-qps=100, "
            f"20 concurrent Deployment/ReplicaSet syncs): its {k.requests} API requests waited {k.throttled_s:.0f}s "
            f"in total in its client-side rate limiter, {k.throttled_s / max(1, k.requests):.3f}s "
            f"each; a Deployment waited {k.deployment_queue_s / max(1, k.deployment_syncs):.2f}s on average in "
            f"its deployment queue ({k.deployment_syncs} syncs)"
        )
    top = proxy.queries.most_common(3)
    print(f"distinct queries sent: {len(proxy.queries)}; top: {[(q[:60], c) for q, c in top]}")
    if failures:
        bad = [i for i in items if (i.get("status") or {}).get("phase") != "Succeeded"][:3]
        for item in bad:
            st = item.get("status") or {}
            print(f"  not Succeeded: {item['metadata']['namespace']}: {st.get('phase')} {st.get('message')}")
    return 1 if failures else 0


def _stack_seconds(duration: str) -> float:
    from controller.models.common import parse_duration

    return parse_duration(duration).total_seconds()


if __name__ == "__main__":
    sys.exit(main())
