"""Shared helpers for the benchmarks that run against the real local stack (hack/stack.sh).

They reuse the e2e harness in ``tests/e2e/`` (stack env, kubectl, metrics, git helpers) and add what a
benchmark needs beyond it: a controller process of its own (watching only ``<prefix>-*`` namespaces so
concurrent e2e sessions are never touched), a fast Kubernetes client for polling, a counting proxy in
front of Prometheus, /proc sampling of the controller, percentiles and the machine load.

    stack = ensure_stack()                         # hack/stack.sh up (reused when healthy) + CRDs
    prefix = bench_prefix("bd")                    # e.g. "bd3f2a"; namespaces are "<prefix>-..."
    with BenchController(stack, prefix) as ctl:    # `stopline run --namespace <prefix>-*`
        ...
        print(ctl.sample())                        # RSS, peak RSS, threads of the controller process
"""

from __future__ import annotations

import contextlib
import http.server
import math
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
E2E_DIR = ROOT / "tests" / "e2e"
if str(E2E_DIR) not in sys.path:
    sys.path.insert(0, str(E2E_DIR))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import helpers  # noqa: E402  (tests/e2e/helpers.py, put on sys.path above)
from helpers import Stack  # noqa: E402
from operator_proc import wait_healthy  # noqa: E402

OUTPUT_DIR = Path(tempfile.gettempdir()) / "stopline-bench"  # logs; outside the checkout
LABEL = "stopline.dev/bench"
T = TypeVar("T")


# ---------------------------------------------------------------------------------------- stack
def ensure_stack() -> Stack:
    """Bring the stack up (reusing a healthy one) and install the CRDs; return where it is.

    A healthy stack (``hack/stack.sh status``) is used as it is, without ``up``: ``up`` waits on the lock
    beside the state dir, and the daemons a previous ``up`` started keep that lock's file descriptor
    open, so a second ``up`` on a running stack would wait for ever.
    """
    status = subprocess.run(
        ["bash", str(helpers.STACK_SH), "status"], capture_output=True, text=True, timeout=60, check=False
    )
    if status.returncode != 0:
        helpers.stack_up(OUTPUT_DIR / "stack-up.log")
    stack = helpers.get_stack()
    helpers.install_crds(helpers.crd_files())
    return stack


def bench_prefix(kind: str) -> str:
    """A namespace prefix unique to this benchmark run (DNS-label safe)."""
    return f"{kind}{secrets.token_hex(2)}"


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def cpu_count() -> int:
    return os.cpu_count() or 1


def kube_client() -> Any:
    """A kubernetes ApiClient for the stack (much faster to poll with than spawning kubectl)."""
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(helpers.get_stack().kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = 32
    return client.ApiClient(configuration)


def poll(predicate: Callable[[], T], timeout: float, interval: float, message: str) -> T:
    """Poll until ``predicate`` returns a truthy value; raise TimeoutError naming ``message``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except (OSError, urllib.error.URLError, helpers.CommandError) as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {message}; last: {last!r}")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------- statistics
def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default) of ``values``; q in [0, 100]."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class Summary:
    n: int
    p50: float
    p95: float
    max: float
    min: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        return cls(
            len(values),
            percentile(values, 50),
            percentile(values, 95),
            max(values, default=math.nan),
            min(values, default=math.nan),
        )

    def line(self, unit: str = "s") -> str:
        return (
            f"n={self.n} p50={self.p50:.3f}{unit} p95={self.p95:.3f}{unit} "
            f"max={self.max:.3f}{unit} min={self.min:.3f}{unit}"
        )


# ---------------------------------------------------------------------------------------- controller
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class ProcSample:
    rss_kib: int
    hwm_kib: int  # peak RSS of the process so far (VmHWM)
    threads: int
    fds: int  # open file descriptors (sockets to the API server, Prometheus, ...)
    cpu_s: float  # user + system CPU seconds of the process so far


def proc_sample(pid: int) -> ProcSample:
    fields: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return ProcSample(
        rss_kib=int(fields["VmRSS"].split()[0]),
        hwm_kib=int(fields["VmHWM"].split()[0]),
        threads=int(fields["Threads"]),
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        cpu_s=_cpu_seconds(f"/proc/{pid}/stat"),
    )


def _cpu_seconds(stat_path: str) -> float:
    """utime + stime of /proc/<pid>/stat (fields 14 and 15, after the parenthesised command name)."""
    fields = Path(stat_path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle (all cores), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def parse_exposition(text: str) -> dict[str, float]:
    """Prometheus text format → {'name{labels}': value} (samples only)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            continue
    return out


def metric_sum(samples: dict[str, float], name: str) -> float:
    """Sum of every sample of ``name`` (over all label sets)."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


class BenchController:
    """`stopline run --namespace <prefix>-* --lease-name <prefix>` as a process of its own (with ``shards``
    > 1 also ``--shards N``, and ``--identity`` when given: N of them with distinct identities are N
    replicas sharing the shard Leases); its log goes to $TMPDIR/stopline-bench/controller-<identity>.log.
    """

    def __init__(
        self,
        stack: Stack,
        prefix: str,
        *,
        prometheus_url: str | None = None,
        env: dict[str, str] | None = None,
        tick: float | None = None,
        shards: int = 1,
        identity: str | None = None,
    ) -> None:
        self.stack = stack
        self.prefix = prefix
        self.shards = shards
        self.identity = identity
        self.prometheus_url = prometheus_url or stack.prometheus_url
        self.extra_env = dict(env or {})
        self.tick = tick
        self.http_port = free_port()
        self.health_port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"stopline-bench-{prefix}-"))
        self.log_path = OUTPUT_DIR / f"controller-{identity or prefix}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "controller not started"
        return self.proc.pid

    def start(self, timeout: float = 90) -> None:
        env = dict(os.environ)
        env.update(self.stack.env())
        # As the image runs it (Dockerfile): two malloc arenas, not 8 per core — with 40 threads the default
        # left a 500-Release start burst at 296 MiB RSS, 226 MiB with two (docs/benchmarks.md, run O).
        env.setdefault("MALLOC_ARENA_MAX", "2")
        env.update(
            {
                "STOPLINE_PROMETHEUS_URL": self.prometheus_url,
                "STOPLINE_REPO_CACHE": str(self.workdir / "repos"),
                "STOPLINE_HTTP_HOST": "127.0.0.1",
                "STOPLINE_HTTP_PORT": str(self.http_port),
                **({"STOPLINE_RELEASE_TICK": str(self.tick)} if self.tick is not None else {}),
                **self.extra_env,
            }
        )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "controller.cli",
                    "run",
                    "--namespace",
                    f"{self.prefix}-*",
                    "--lease-name",
                    self.prefix,
                    *(["--shards", str(self.shards)] if self.shards > 1 else []),
                    *(["--identity", self.identity] if self.identity else []),
                    "--liveness",
                    f"http://127.0.0.1:{self.health_port}/healthz",
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_healthy(self.proc, self.health_port, self.http_url, timeout, self.log_tail)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> BenchController:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def sample(self) -> ProcSample:
        return proc_sample(self.pid)

    def metrics(self) -> dict[str, float]:
        """The controller's own /metrics, parsed."""
        with urllib.request.urlopen(f"{self.http_url}/metrics", timeout=10) as resp:
            return parse_exposition(resp.read().decode())

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return "(no controller log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_count(self, pattern: str) -> int:
        if not self.log_path.exists():
            return 0
        rx = re.compile(pattern)
        return sum(1 for line in self.log_path.read_text(errors="replace").splitlines() if rx.search(line))


class Sampler:
    """Samples the controller's RSS and thread count on a background thread until stopped."""

    def __init__(self, pid: int, every: float = 0.25) -> None:
        self.pid = pid
        self.every = every
        self.samples: list[tuple[float, ProcSample]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic(), proc_sample(self.pid)))
            except (OSError, KeyError, ValueError):
                return
            self._stop.wait(self.every)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def peak_rss_kib(self) -> int:
        return max((s.rss_kib for _, s in self.samples), default=0)

    @property
    def peak_hwm_kib(self) -> int:
        return max((s.hwm_kib for _, s in self.samples), default=0)

    @property
    def peak_threads(self) -> int:
        return max((s.threads for _, s in self.samples), default=0)

    @property
    def peak_fds(self) -> int:
        return max((s.fds for _, s in self.samples), default=0)


# ---------------------------------------------------------------------------------------- prometheus
class CountingProxy:
    """A loopback HTTP proxy in front of Prometheus that counts the controller's queries exactly.

    Prometheus's own ``prometheus_http_requests_total`` also counts every other client (e2e sessions and
    this benchmark's own polling); the proxy sees only the controller pointed at it.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.paths: Counter[str] = Counter()
        self.queries: Counter[str] = Counter()
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                return

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                url = urllib.parse.urlsplit(self.path)
                params = urllib.parse.parse_qs(url.query)
                if body and self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
                    params.update(urllib.parse.parse_qs(body.decode()))
                with proxy._lock:
                    proxy.paths[url.path] += 1
                    for q in params.get("query", []):
                        proxy.queries[q] += 1
                req = urllib.request.Request(
                    proxy.upstream + self.path,
                    data=body,
                    method=self.command,
                    headers={k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept")},
                )
                try:
                    with urllib.request.urlopen(req, timeout=10) as resp:
                        status, payload, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
                except urllib.error.HTTPError as exc:
                    status, payload, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
                    exc.close()
                self.send_response(status)
                self.send_header("Content-Type", ctype or "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _forward
            do_POST = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="prom-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def query_count(self) -> int:
        with self._lock:
            return self.paths["/api/v1/query"]


def prometheus_query_handler_total() -> float:
    """Prometheus's own count of /api/v1/query requests, from its /metrics (it does not scrape itself here).

    Counts every client on the shared stack: e2e sessions, other benchmarks and this one's own polling.
    """
    with urllib.request.urlopen(f"{helpers.get_stack().prometheus_url}/metrics", timeout=10) as resp:
        samples = parse_exposition(resp.read().decode())
    return sum(
        v
        for k, v in samples.items()
        if k.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query"' in k
    )


def wait_metric_value(query: str, predicate: Callable[[float], bool], timeout: float = 20) -> float:
    """Wait until the instant query returns one sample whose value satisfies ``predicate``."""

    def check() -> float | None:
        rows = helpers.promql(query)
        if rows and predicate(helpers.sample_value(rows[0])):
            return helpers.sample_value(rows[0])
        return None

    return poll(check, timeout, 0.1, f"{query} to satisfy the predicate")


# ---------------------------------------------------------------------------------------- cluster
def apiserver_requests() -> Counter[tuple[str, str]]:
    """The API server's own request counters, {(verb, resource[/subresource]): count}, over every client."""
    text = helpers.kubectl("get", "--raw", "/metrics", timeout=60).stdout
    out: Counter[tuple[str, str]] = Counter()
    for key, value in parse_exposition(text).items():
        if not key.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', key))
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        out[(labels.get("verb", ""), resource)] += int(value)
    return out


@dataclass(frozen=True)
class KcmStats:
    """kube-controller-manager's own view: client-side rate limiting and the Deployment work queue."""

    throttled_s: float  # total time its requests waited in the client-side rate limiter (--kube-api-qps)
    requests: int
    deployment_queue_s: float  # total time Deployments waited in the deployment controller's queue
    deployment_syncs: int

    def __sub__(self, other: KcmStats) -> KcmStats:
        return KcmStats(
            self.throttled_s - other.throttled_s,
            self.requests - other.requests,
            self.deployment_queue_s - other.deployment_queue_s,
            self.deployment_syncs - other.deployment_syncs,
        )


def stack_profile(stack: Stack) -> str:
    """The profile the stack's cluster was made with (hack/stack.sh ``STOPLINE_STACK_PROFILE``)."""
    try:
        return (stack.state_dir / "profile").read_text().strip() or "e2e"
    except OSError:
        return "e2e"


def kcm_stats(stack: Stack) -> KcmStats | None:
    """Read kube-controller-manager's /metrics (kwok backend: its address is in kwok.yaml); None if unknown."""
    import ssl

    import yaml

    path = stack.state_dir / "kwok" / "clusters" / "stopline-e2e" / "kwok.yaml"
    try:
        docs = list(yaml.safe_load_all(path.read_text()))
    except (OSError, yaml.YAMLError):
        return None
    metric = next(
        (
            c.get("metric")
            for d in docs
            if isinstance(d, dict)
            for c in d.get("components") or []
            if c.get("name") == "kube-controller-manager"
        ),
        None,
    )
    if not metric:
        return None
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # loopback, self-signed; /metrics is allowed without authentication
    url = f"{metric.get('scheme', 'https')}://{metric['host']}{metric.get('path', '/metrics')}"
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as resp:
            samples = parse_exposition(resp.read().decode())
    except OSError:
        return None
    return KcmStats(
        throttled_s=metric_sum(samples, "rest_client_rate_limiter_duration_seconds_sum"),
        requests=int(metric_sum(samples, "rest_client_rate_limiter_duration_seconds_count")),
        deployment_queue_s=samples.get('workqueue_queue_duration_seconds_sum{name="deployment"}', 0.0),
        deployment_syncs=int(samples.get('workqueue_queue_duration_seconds_count{name="deployment"}', 0.0)),
    )


def node_pod_capacity(api: Any) -> tuple[int, int, int]:
    """(ready nodes, allocatable pods over them, pods currently bound and not finished)."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    nodes = core.list_node().items
    ready = [
        n
        for n in nodes
        if any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))
        and not (n.spec.unschedulable or False)
    ]
    capacity = sum(int((n.status.allocatable or {}).get("pods", "0")) for n in ready)
    pods = core.list_pod_for_all_namespaces(field_selector="status.phase!=Succeeded,status.phase!=Failed").items
    bound = sum(1 for p in pods if p.spec.node_name)
    return len(ready), capacity, bound


def ensure_pod_capacity(api: Any, stack: Stack, needed: int, log: Callable[[str], None] = print) -> str:
    """Add fake nodes (`kwokctl scale node`) until ``needed`` more pods fit; return what was done."""
    nodes, capacity, bound = node_pod_capacity(api)
    free = capacity - bound
    note = f"{nodes} nodes, {capacity} allocatable pods, {bound} bound, {free} free, {needed} needed"
    if free >= needed:
        return note
    per_node = capacity // max(nodes, 1) or 110
    want = nodes + math.ceil((needed - free) / per_node) + 1
    kwokctl = Path(stack.kubectl_bin).parent / "kwokctl"
    log(f"[bench] {note}: scaling fake nodes to {want} (kwokctl scale node)")
    helpers.run(
        [str(kwokctl), "--name", "stopline-e2e", "scale", "node", "--replicas", str(want)],
        env={"KWOK_WORKDIR": str(stack.state_dir / "kwok"), "KUBECONFIG": str(stack.kubeconfig)},
        timeout=300,
    )
    poll(lambda: node_pod_capacity(api)[0] >= want, 120, 1.0, f"{want} fake nodes Ready")
    nodes, capacity, bound = node_pod_capacity(api)
    return f"{note}; scaled to {nodes} nodes ({capacity} allocatable pods)"


def delete_namespaces(api: Any, names: Sequence[str], wait: float = 0) -> None:
    """Delete the namespaces (in the background); optionally wait up to ``wait`` s for them to go."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)
    for name in names:
        try:
            core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
    if wait > 0:
        wanted = set(names)

        def gone() -> bool:
            return not any(ns.metadata.name in wanted for ns in core.list_namespace().items)

        with contextlib.suppress(TimeoutError):
            poll(gone, wait, 1.0, "namespaces deleted")


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
