"""Loopback git servers for the gitops tests: ``git daemon`` (git://) that can be stopped or hung, and
smart HTTP through ``git http-backend`` behind Basic auth, plus a port that accepts and never answers."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

USER, PASSWORD = "alice", "s3cr3t-Pa55word"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_listening(port: int, proc: subprocess.Popen[bytes], deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"git daemon exited: {proc.stderr.read() if proc.stderr else b''!r}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {deadline_s}s")


class GitDaemon:
    """``git daemon`` serving every repository under ``base`` on a loopback port, pushes enabled."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["git", "daemon", "--reuseaddr", "--listen=127.0.0.1", f"--port={self.port}",
             f"--base-path={self.base}", "--export-all", "--enable=receive-pack", "--informative-errors",
             str(self.base)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # `git daemon` runs git-daemon as a child: signal the whole group
        )  # fmt: skip
        wait_listening(self.port, self.proc)

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections (the kernel's backlog) but nothing answers."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        """Terminate the daemon and wait until the port refuses connections."""
        if self.proc is None:
            return
        if self.paused:
            self.resume()
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the git-daemon child may outlive the wrapper briefly
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    break
            time.sleep(0.02)
        else:
            raise AssertionError(f"127.0.0.1:{self.port} still accepts connections after stopping git daemon")
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None


class GitHTTPHandler(BaseHTTPRequestHandler):
    """Smart HTTP through ``git http-backend`` behind Basic auth (USER / PASSWORD). ``forced_status``
    answers every request with that HTTP status instead (403, 500, ...)."""

    project_root = Path()
    forced_status: int | None = None

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

    def _empty(self, status: int, *headers: tuple[str, str]) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _serve(self) -> None:
        auth = self.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        body = self._body()
        if self.forced_status is not None:
            self._empty(self.forced_status)
            return
        if auth != expected:
            self._empty(401, ("WWW-Authenticate", 'Basic realm="git"'))
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


class GitHTTPServer:
    """A threaded loopback HTTP server in front of ``git http-backend`` for the repositories under ``root``."""

    def __init__(self, root: Path, forced_status: int | None = None) -> None:
        handler = type("Handler", (GitHTTPHandler,), {"project_root": root, "forced_status": forced_status})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


class SilentPort:
    """A loopback port that completes TCP handshakes (listen backlog) and never reads or answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()
