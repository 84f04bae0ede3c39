"""Fault injection on loopback only: a TCP proxy in front of one of the stack's servers that a test cuts.

    proxy = Proxy("127.0.0.1", stack.git_port)   # git://127.0.0.1:<proxy.port>/<repo> reaches the real daemon
    proxy.down()      # the port refuses connections (a stopped server)
    proxy.hang()      # connections are accepted and never answered; open ones freeze (a SIGSTOPped server)
    proxy.up()        # forward again
    proxy.close()

Each test gets its own proxy, so cutting it never disturbs other tests sharing the stack.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Literal

Mode = Literal["up", "down", "hang"]


class Proxy:
    """A loopback TCP proxy with three modes: up (forward), down (refuse), hang (accept, never answer)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.mode: Mode = "up"
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._closed = False
        self._listener: socket.socket | None = None
        self.port = self._listen(0)
        self.accepted = 0

    # ---------------------------------------------------------------- control
    def up(self) -> None:
        with self._lock:
            self.mode = "up"
        self._ensure_listening()

    def down(self) -> None:
        """Close the listening socket and every open connection: new connections are refused."""
        with self._lock:
            self.mode = "down"
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            # close() alone does not wake a thread blocked in accept() on Linux: the socket would keep
            # listening. shutdown() does (accept fails with EINVAL) and the port then refuses connections.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for c in conns:
            with contextlib.suppress(OSError):
                c.close()

    def hang(self) -> None:
        """Accept connections but never forward; connections already open stop moving bytes."""
        with self._lock:
            self.mode = "hang"
        self._ensure_listening()

    def close(self) -> None:
        self._closed = True
        self.down()

    @contextlib.contextmanager
    def cut(self, mode: Literal["down", "hang"]) -> Iterator[None]:
        (self.down if mode == "down" else self.hang)()
        try:
            yield
        finally:
            self.up()

    # ---------------------------------------------------------------- internals
    def _listen(self, port: int) -> int:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 10
        while True:
            try:
                s.bind(("127.0.0.1", port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        s.listen(64)
        self._listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()
        return int(s.getsockname()[1])

    def _ensure_listening(self) -> None:
        if self._listener is None and not self._closed:
            self._listen(self.port)

    def _accept(self, listener: socket.socket) -> None:
        while not self._closed:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by down()
            self.accepted += 1
            with self._lock:
                mode = self.mode
                self._conns.append(client)
            if mode == "hang":
                continue  # held open, never answered
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.append(upstream)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while not self._closed:
                if self.mode == "hang":
                    time.sleep(0.05)
                    continue
                ready, _, _ = select.select([a, b], [], [], 0.2)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except (OSError, ValueError):  # closed by down() under our feet
            return
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()


def never(check: Callable[[], str | None], seconds: float, every: float = 0.5) -> None:
    """Fail as soon as ``check`` returns a complaint during ``seconds`` (asserting that nothing happens)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        complaint = check()
        if complaint:
            raise AssertionError(complaint)
        time.sleep(every)
