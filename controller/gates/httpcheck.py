"""The ``http`` gate: pure verdicts over one HTTP answer (the request itself is made by
``controller.gates.providers.http``).

Verdicts:

- no answer (timeout, connection refused, DNS failure, TLS error) → Inconclusive, counting toward
  ``inconclusiveLimit``: the endpoint could not be asked, which says nothing about the push yet;
- a status not in ``expectStatus`` (default: any 2xx) → Fail. That includes every 5xx: a health endpoint
  answering 500/503 is a real failure signal (tolerate blips with ``failureLimit``);
- with ``field``: the body is not JSON, or the field is missing or not a number → Error (the gate cannot
  be judged as configured; counts toward ``inconclusiveLimit``); else the number is judged with the gate's
  ``min``/``max``/``maxIncreasePercent``/``maxDecreasePercent`` exactly as a query gate's value (the
  pre-push value is the field read at the baseline);
- otherwise Pass.

``field`` is a JSONPath-lite: dotted keys with optional list indexes, ``checks.db.latencyMs``,
``items[0].value``, ``$.status.ok``; true/false read as 1/0, numeric strings as numbers.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller.gates.evaluate import Judgement, Measurement, judge
from controller.models.release import Gate

_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
MAX_SHOWN = 120


@dataclass(frozen=True)
class HttpResult:
    """One HTTP answer (or why there was none). ``body`` is capped by the adapter."""

    at: datetime
    status: int | None = None
    body: bytes = b""
    error: str | None = None  # no answer: timeout, refused, DNS
    elapsed: float = 0.0


class FieldError(ValueError):
    """The JSON field cannot be read as a number."""


def field_path(path: str) -> list[str | int]:
    """``a.b[0].c`` → ``["a", "b", 0, "c"]`` (a leading ``$`` / ``$.`` is dropped)."""
    text = path[1:] if path.startswith("$") else path
    text = text[1:] if text.startswith(".") else text
    steps: list[str | int] = []
    for part in text.split("."):
        found = _STEP.findall(part)
        if not found or "".join(k or f"[{i}]" for k, i in found) != part:
            raise FieldError(f"bad field path {path!r}")
        steps.extend(int(i) if i else k for k, i in found)
    return steps


def json_field(document: Any, path: str) -> float:
    """The number at ``path`` in a parsed JSON document; FieldError when missing or not a number."""
    node = document
    for step in field_path(path):
        if isinstance(step, int):
            if not isinstance(node, list) or step >= len(node):
                raise FieldError(f"field {path!r} not found (no item {step})")
            node = node[step]
        else:
            if not isinstance(node, dict) or step not in node:
                raise FieldError(f"field {path!r} not found (no key {step!r})")
            node = node[step]
    if isinstance(node, bool):
        return 1.0 if node else 0.0
    if isinstance(node, int | float):
        return float(node)
    if isinstance(node, str):
        try:
            value = float(node)
        except ValueError:
            pass
        else:
            if math.isfinite(value):
                return value
    shown = json.dumps(node)[:MAX_SHOWN]
    raise FieldError(f"field {path!r} is not a number: {shown}")


def status_ok(gate: Gate, status: int) -> bool:
    """Whether the status code passes: listed in expectStatus, or any 2xx when none are listed."""
    assert gate.http is not None
    return status in gate.http.expect_status if gate.http.expect_status else 200 <= status <= 299


def read_value(gate: Gate, result: HttpResult) -> float | None:
    """The field's number from an answer, or None (no field set, no answer, bad status or body)."""
    if gate.http is None or gate.http.field is None or result.status is None or not status_ok(gate, result.status):
        return None
    try:
        return json_field(json.loads(result.body), gate.http.field)
    except (ValueError, UnicodeDecodeError):
        return None


def judge_http(gate: Gate, pre: float | None, result: HttpResult) -> tuple[Judgement, float | None]:
    """The verdict of one answer of an http gate, and the value shown as postPush (the field, else the status)."""
    assert gate.http is not None
    h = gate.http
    if result.error is not None or result.status is None:
        return Judgement("Inconclusive", f"no answer from {h.method} {h.url}: {result.error or 'no status'}"), None
    status = result.status
    if not status_ok(gate, status):
        snippet = result.body[:MAX_SHOWN].decode(errors="replace").strip()
        expected = ",".join(map(str, h.expect_status)) if h.expect_status else "2xx"
        tail = f": {snippet}" if snippet else ""
        return Judgement("Fail", f"{h.method} {h.url} answered {status}, expected {expected}{tail}"), float(status)
    if h.field is None:
        return Judgement("Pass", f"{h.method} {h.url} answered {status}"), float(status)
    try:
        document = json.loads(result.body)
    except (ValueError, UnicodeDecodeError):
        snippet = result.body[:MAX_SHOWN].decode(errors="replace").strip()
        return Judgement("Error", f"{h.url} answered {status} but the body is not JSON: {snippet!r}"), None
    try:
        value = json_field(document, h.field)
    except FieldError as exc:
        return Judgement("Error", f"{h.url} answered {status}: {exc}"), None
    if all(b is None for b in (gate.min, gate.max, gate.max_increase_percent, gate.max_decrease_percent)):
        return Judgement("Pass", f"{h.url} answered {status}; {h.field} = {value:.6g} (recorded: no bounds)"), value
    verdict = judge(gate, pre, Measurement(value, result.at))
    return Judgement(verdict.verdict, f"{h.field}: {verdict.message}", verdict.delta, verdict.delta_percent), value
