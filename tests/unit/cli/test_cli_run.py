"""``stopline run`` stops on SIGTERM with exit code 0 and no traceback (a pod being deleted or rolled)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from web.fake_apiserver import write_kubeconfig

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_for(predicate: object, what: str, proc: subprocess.Popen[bytes], err: Path, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while not predicate():  # type: ignore[operator]
        assert proc.poll() is None, f"controller exited early ({proc.returncode}):\n{err.read_text()}"
        assert time.monotonic() < deadline, f"no {what} after {deadline_s}s:\n{err.read_text()}"
        time.sleep(0.05)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.timeout(90)
@pytest.mark.parametrize("moment", ["http-up", "retrying-the-api"])
def test_sigterm_exits_0_without_traceback(tmp_path: Path, moment: str) -> None:
    """The API server is unreachable (a closed loopback port), as when the cluster is going away."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{_free_port()}")
    http_port = _free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "STOPLINE_HTTP_HOST": "127.0.0.1",
        "STOPLINE_HTTP_PORT": str(http_port),
        "STOPLINE_REPO_CACHE": str(tmp_path / "repos"),
        "PYTHONPATH": str(ROOT),
    }
    err = tmp_path / "stderr"
    with err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "run", "--all-namespaces", "--no-leader-election"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        _wait_for(lambda: _listening(http_port), "HTTP endpoint", proc, err, 60)
        if moment == "retrying-the-api":
            _wait_for(lambda: "failed; will retry" in err.read_text(), "API retry", proc, err, 30)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    text = err.read_text()
    assert code == 0, text
    assert "Traceback" not in text
    assert "Signal SIGTERM is received" in text
    assert took < 20, f"took {took:.1f}s to stop"
