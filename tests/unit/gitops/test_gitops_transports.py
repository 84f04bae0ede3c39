"""RepoCache over real network transports on loopback: git daemon (git://) and smart HTTP with Basic auth."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import git
import pytest

from controller.gitops.credentials import GitCredentials
from controller.gitops.errors import GitError
from controller.gitops.repo import RepoCache
from controller.gitops.results import REVERT_TRAILER

from .helpers import Upstream

USER, PASSWORD = "alice", "s3cr3t-Pa55word"

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_listening(port: int, proc: subprocess.Popen[bytes], deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"git daemon exited: {proc.stderr.read() if proc.stderr else b''!r}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {deadline_s}s")


@pytest.fixture
def git_daemon(upstream: Upstream) -> Iterator[str]:
    """Serve the upstream's directory over git:// with pushes enabled; yield the repo URL."""
    port = _free_port()
    base = upstream.bare.parent
    proc = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--listen=127.0.0.1", f"--port={port}", f"--base-path={base}",
         "--export-all", "--enable=receive-pack", "--informative-errors", str(base)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _wait_listening(port, proc)
        yield f"git://127.0.0.1:{port}/{upstream.bare.name}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()


def test_tip_manifests_and_revert_over_git_daemon(upstream: Upstream, cache: RepoCache, git_daemon: str) -> None:
    good = upstream.commit({"deploy/web.yaml": "kind: Deployment\nspec: {replicas: 1}\n"}, "good")
    bad = upstream.commit({"deploy/web.yaml": "kind: Deployment\nspec: {replicas: 5}\n"}, "bad")

    assert cache.tip(git_daemon, "main") == bad
    assert cache.manifests(git_daemon, good, "deploy")[0]["spec"]["replicas"] == 1

    outcome = cache.revert(git_daemon, "main", bad, message="revert", trailers={})
    assert outcome.status == "pushed"
    assert upstream.tip() == outcome.commit
    assert upstream.tree(upstream.tip()) == upstream.tree(good)
    assert cache.revert(git_daemon, "main", bad, message="revert", trailers={}).status == "already"


class _GitHTTPHandler(BaseHTTPRequestHandler):
    """Smart HTTP through ``git http-backend`` behind Basic auth (alice / PASSWORD)."""

    project_root = Path()

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self) -> None:
        auth = self.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        body = self._body()
        if auth != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", ""),
            "GIT_PROJECT_ROOT": str(self.project_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "REMOTE_USER": USER,
            "REMOTE_ADDR": "127.0.0.1",
        }
        result = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False)
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.split(b"\r\n"):
            name, _, value = line.decode().partition(": ")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def http_remote(upstream: Upstream) -> Iterator[str]:
    handler = type("Handler", (_GitHTTPHandler,), {"project_root": upstream.bare.parent})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/{upstream.bare.name}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _files_containing(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_http_basic_auth_through_askpass(upstream: Upstream, cache: RepoCache, http_remote: str) -> None:
    upstream.commit({"a.yaml": "a: 1\n"}, "base")
    bad = upstream.commit({"a.yaml": "a: 2\n"}, "bad")
    creds = GitCredentials(username=USER, password=PASSWORD)

    assert cache.tip(http_remote, "main", creds) == bad
    outcome = cache.revert(http_remote, "main", bad, message="revert", trailers={"X-Why": "test"}, creds=creds)

    assert outcome.status == "pushed"
    assert f"{REVERT_TRAILER}: {bad}" in upstream.message(upstream.tip())
    assert _files_containing(cache.root, PASSWORD) == []


def test_http_credentials_embedded_in_the_url_are_not_stored(
    upstream: Upstream, cache: RepoCache, http_remote: str
) -> None:
    rev = upstream.commit({"a.yaml": "a: 1\n"}, "base")
    url = http_remote.replace("http://", f"http://{USER}:{PASSWORD}@")
    assert cache.tip(url, "main") == rev
    assert cache.path_for(url) == cache.path_for(http_remote)
    assert _files_containing(cache.root, PASSWORD) == []


def test_http_wrong_password_fails_without_leaking_it(upstream: Upstream, cache: RepoCache, http_remote: str) -> None:
    upstream.commit({"a.yaml": "a: 1\n"}, "base")
    wrong = "Wr0ng-but-still-secret"
    with pytest.raises(GitError, match="Authentication failed") as info:
        cache.tip(http_remote, "main", GitCredentials(username=USER, password=wrong))
    assert wrong not in str(info.value)
    with pytest.raises(GitError):  # no credentials at all: git must not hang on a prompt
        cache.tip(http_remote, "main")


def test_only_fetch_and_push_see_the_credentials(
    upstream: Upstream, cache: RepoCache, http_remote: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream.commit({"a.yaml": "a: 1\n"}, "base")
    bad = upstream.commit({"a.yaml": "a: 2\n"}, "bad")
    seen: dict[str, bool] = {}
    original: Callable[..., Any] = git.Git.execute

    def recording(self: git.Git, command: list[str], *args: object, **kwargs: Any) -> Any:
        env = kwargs.get("env") or {}
        verb = next(a for a in command[1:] if not a.startswith("-") and "=" not in a)
        seen[verb] = seen.get(verb, False) or PASSWORD in env.values()
        return original(self, command, *args, **kwargs)

    monkeypatch.setattr(git.Git, "execute", recording)
    creds = GitCredentials(username=USER, password=PASSWORD)
    assert cache.revert(http_remote, "main", bad, message="revert", trailers={}, creds=creds).status == "pushed"

    assert {verb for verb, had_password in seen.items() if had_password} == {"fetch", "push"}
    assert {"log", "revert", "commit", "checkout"} <= seen.keys()
