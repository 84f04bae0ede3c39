"""The http gate's one request (stdlib ``urllib``, run via ``asyncio.to_thread``). Never raises for network
problems: they come back as ``HttpResult.error``. Header values (which may come from Secrets) are never
logged, nor put in an error message."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from controller.gates.httpcheck import HttpResult

MAX_BODY = 1 << 20  # bytes of a body read and judged; the rest is ignored


class HttpProbe:
    """The HttpPort of the executor."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.clock = clock

    def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None, timeout_seconds: float
    ) -> HttpResult:
        req = urllib.request.Request(url, data=body, method=method, headers={"User-Agent": "stopline-gate", **headers})
        started = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=timeout_seconds) as resp:
                data = resp.read(MAX_BODY)
                return HttpResult(self.clock(), status=resp.status, body=data, elapsed=time.monotonic() - started)
        except urllib.error.HTTPError as exc:  # a 4xx/5xx answer is an answer
            try:
                data = exc.read(MAX_BODY)
            except OSError:
                data = b""
            return HttpResult(self.clock(), status=exc.code, body=data, elapsed=time.monotonic() - started)
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                why = f"timed out after {timeout_seconds:g}s"
            else:
                why = f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else str(reason)
            return HttpResult(self.clock(), error=why[:300], elapsed=time.monotonic() - started)
        except TimeoutError:
            return HttpResult(self.clock(), error=f"timed out after {timeout_seconds:g}s")
        except (OSError, ValueError) as exc:  # reset mid-answer, bad URL, TLS
            return HttpResult(self.clock(), error=f"{type(exc).__name__}: {exc}"[:300])

    async def request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None, timeout_seconds: float
    ) -> HttpResult:
        """One request; the answer (any status) or why there was none."""
        return await asyncio.to_thread(self._request, method, url, headers, body, timeout_seconds)
