"""The controller under test: `stopline run` as a real process against the stack."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
from helpers import OUTPUT_DIR, Stack, apply, kubectl, kubectl_json, wait_for
from prometheus_client.parser import text_string_to_metric_families

REPO_ROOT = Path(__file__).resolve().parents[2]
# Test namespaces of this pytest session start with this prefix, and the controller under test watches only
# those: two e2e sessions on one stack (or a demo beside a test run) never act on each other's objects.
SESSION_PREFIX = "e2e" + secrets.token_hex(2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(
    proc: subprocess.Popen[bytes], health_port: int, http_url: str, timeout: float, log_tail: Callable[[], str]
) -> None:
    """Until kopf's liveness endpoint and the controller's own HTTP endpoint both answer (or it exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"controller exited with {proc.returncode}:\n{log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz", timeout=1):
                pass
            with urllib.request.urlopen(f"{http_url}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"controller not healthy after {timeout}s:\n{log_tail()}")


class Controller:
    """Start, kill and restart the controller; its log is kept for failure reports."""

    def __init__(
        self, stack: Stack, workdir: Path, *, identity: str = "main", lease_name: str = "", shards: int = 1
    ) -> None:
        self.stack = stack
        self.workdir = workdir
        self.identity = f"{SESSION_PREFIX}-{identity}"
        self.lease_name = lease_name or SESSION_PREFIX
        self.shards = shards
        self.http_port = free_port()
        self.health_port = free_port()
        self.log_path = OUTPUT_DIR / f"controller-{self.identity}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.stack.env())
        env.update(
            {
                "STOPLINE_PROMETHEUS_URL": self.stack.prometheus_url,
                "STOPLINE_REPO_CACHE": str(self.workdir / "repos"),
                "STOPLINE_HTTP_HOST": "127.0.0.1",
                "STOPLINE_HTTP_PORT": str(self.http_port),
                "STOPLINE_RELEASE_TICK": "0.2",
                # A hung Git server shows as a failed revert attempt within seconds (fault tests).
                "STOPLINE_GIT_TIMEOUT": "5",
                # The renderers `hack/stack.sh up` built; a missing one fails the tests that need it.
                "STOPLINE_KUSTOMIZE": self.stack.kustomize or "kustomize",
                "STOPLINE_HELM": self.stack.helm or "helm",
            }
        )
        return env

    def start(self, timeout: float = 60, *, wait_watching: bool = True) -> None:
        """Start and wait until healthy and (``wait_watching``) acting on the session's namespaces — a
        standby replica or a shard that does not serve the probe namespace never does."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n===== controller start #{self.starts + 1} =====\n".encode())
            log.flush()
            self.proc = self._spawn(log)
        self.starts += 1
        self._wait_healthy(timeout)
        if wait_watching:
            self._wait_watching(timeout)

    def _spawn(self, log: BinaryIO) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "controller.cli",
                "run",
                "--namespace",
                f"{SESSION_PREFIX}-*",
                # Leader election on, as in production: this session's own Lease, and an identity kept
                # across restarts (a restarted controller takes its shard back at once).
                "--lease-name",
                self.lease_name,
                "--identity",
                self.identity,
                "--shards",
                str(self.shards),
                "--liveness",
                f"http://127.0.0.1:{self.health_port}/healthz",
            ],
            cwd=REPO_ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _wait_healthy(self, timeout: float) -> None:
        assert self.proc is not None
        wait_healthy(self.proc, self.health_port, self.http_url, timeout, self.log_tail)

    @property
    def probe_namespace(self) -> str:
        return f"{SESSION_PREFIX}-probe"

    def _wait_watching(self, timeout: float) -> None:
        """Healthy is not enough: wait until the controller acts on an object in a session namespace.

        A probe Experiment (no metric, assignment only) gets a new spec generation on every start; the
        controller has found the session's namespaces once its status reports that generation.
        """
        ns = self.probe_namespace
        if kubectl("get", "namespace", ns, check=False).returncode != 0:
            kubectl("create", "namespace", ns)
        probe = {
            "apiVersion": "stopline.dev/v1alpha1",
            "kind": "Experiment",
            "metadata": {"name": "probe", "namespace": ns},
            "spec": {
                "key": f"probe-{SESSION_PREFIX}",
                "branches": {"control": 0.5, "treatment": 0.5},
                "rollout": float(self.starts % 100),
                "interval": "1h",
            },
        }
        apply(json.dumps(probe), ns)

        def seen() -> bool:
            obj = kubectl_json("get", "experiment", "probe", "-n", ns, "-o", "json")
            return bool(obj.get("status", {}).get("observedGeneration") == obj["metadata"]["generation"])

        try:
            wait_for(seen, timeout=timeout, message="the controller to act on its session's namespaces")
        except AssertionError as exc:
            raise RuntimeError(f"{exc}\n{self.log_tail()}") from exc

    def remove_probe(self) -> None:
        kubectl(
            "delete",
            "experiment",
            "probe",
            "-n",
            self.probe_namespace,
            "--ignore-not-found",
            "--wait=true",
            "--timeout=60s",
            check=False,
        )
        kubectl("delete", "namespace", self.probe_namespace, "--ignore-not-found", "--wait=false", check=False)

    def kill(self) -> None:
        """SIGKILL: no cleanup, exactly like a crashed or evicted pod."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def delete_leases(self) -> None:
        """The session's shard Leases (in the default namespace): left behind they would only pile up."""
        names = [f"{self.lease_name}-shard-{i}" for i in range(self.shards)]
        kubectl("delete", "lease", *names, "-n", "default", "--ignore-not-found", check=False)
        group = f"stopline.dev/lease-group={self.lease_name}"
        kubectl("delete", "lease", "-l", group, "-n", "default", "--ignore-not-found", check=False)

    def lease_holders(self) -> dict[int, str]:
        """Shard → holder identity, as the Leases say now."""
        out = {}
        for i in range(self.shards):
            proc = kubectl("get", "lease", f"{self.lease_name}-shard-{i}", "-n", "default", "-o", "json", check=False)
            if proc.returncode == 0:
                out[i] = json.loads(proc.stdout).get("spec", {}).get("holderIdentity") or ""
        return out

    def ensure_running(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.start()

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The controller's own /metrics now: (sample name, sorted labels) → value."""
        with urllib.request.urlopen(f"{self.http_url}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def metric(self, name: str, **labels: str) -> float:
        """One sample of :meth:`metrics` (0 when absent)."""
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)

    def log_tail(self, lines: int = 80) -> str:
        if not self.log_path.exists():
            return "(no controller log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="session")
def controller(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controller]:
    """One controller for the session (tests may kill and restart it; it is running again afterwards)."""
    ctl = Controller(stack, tmp_path_factory.mktemp("controller"))
    try:
        ctl.start()
    except RuntimeError as exc:
        pytest.fail(f"the controller did not start: {exc}", pytrace=False)
    yield ctl
    ctl.remove_probe()
    ctl.stop()
    ctl.delete_leases()


@pytest.fixture(autouse=False)
def running_controller(controller: Controller) -> Iterator[Controller]:
    controller.ensure_running()
    yield controller
    controller.ensure_running()
