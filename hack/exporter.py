#!/usr/bin/env python3
"""Test-controlled Prometheus exporter for the local e2e stack (stdlib only).

Tests set the values that Prometheus scrapes, so metric gates see real PromQL results.

    GET  /metrics   Prometheus text format (every series is a gauge)
    GET  /healthz   "ok"
    POST /set       {"name": "chat_load", "labels": {"tier": "chat"}, "value": 7.2}
    POST /delete    {"name": "chat_load", "labels": {"tier": "chat"}}   (exact series)
                    {"name": "chat_load"}                               (every series of that name)
    POST /reset     drop every series

`value` is a JSON number or one of the strings "NaN", "+Inf", "-Inf". Each change bumps
`stopline_e2e_exporter_generation`, so a test can wait until Prometheus has scraped its change.

Usage: exporter.py --port 0 --port-file PATH   (port 0 picks a free port and writes it to PATH)
"""

from __future__ import annotations

import argparse
import json
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
GENERATION = "stopline_e2e_exporter_generation"
SPECIAL_VALUES = {"nan": math.nan, "+inf": math.inf, "inf": math.inf, "-inf": -math.inf}

Labels = tuple[tuple[str, str], ...]


class BadRequest(ValueError):
    """The request body does not describe a valid series."""


class Store:
    """Thread-safe map of (metric name, sorted labels) to value."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, Labels], float] = {}
        self._generation = 0

    def set(self, name: str, labels: Labels, value: float) -> None:
        with self._lock:
            self._series[(name, labels)] = value
            self._generation += 1

    def delete(self, name: str, labels: Labels | None) -> int:
        with self._lock:
            keys = [k for k in self._series if k[0] == name and (labels is None or k[1] == labels)]
            for key in keys:
                del self._series[key]
            self._generation += 1
            return len(keys)

    def reset(self) -> None:
        with self._lock:
            self._series.clear()
            self._generation += 1

    def render(self) -> str:
        with self._lock:
            series = sorted(self._series.items())
            generation = self._generation
        lines = [f"# TYPE {GENERATION} gauge", f"{GENERATION} {generation}"]
        last_name = ""
        for (name, labels), value in series:
            if name != last_name:
                lines.append(f"# TYPE {name} gauge")
                last_name = name
            lines.append(f"{name}{format_labels(labels)} {format_value(value)}")
        return "\n".join(lines) + "\n"


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels) + "}"


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def parse_name(body: dict[str, Any]) -> str:
    name = body.get("name")
    if not isinstance(name, str) or not METRIC_NAME.match(name):
        raise BadRequest(f"invalid metric name: {name!r}")
    if name == GENERATION:
        raise BadRequest(f"{GENERATION} is reserved")
    return name


def parse_labels(raw: Any) -> Labels:
    if not isinstance(raw, dict):
        raise BadRequest(f"labels must be an object, got {raw!r}")
    labels: list[tuple[str, str]] = []
    for key, value in raw.items():
        if not isinstance(key, str) or not LABEL_NAME.match(key) or key.startswith("__"):
            raise BadRequest(f"invalid label name: {key!r}")
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise BadRequest(f"label {key!r} must be a string, got {value!r}")
        labels.append((key, str(value)))
    return tuple(sorted(labels))


def parse_value(raw: Any) -> float:
    if isinstance(raw, bool):
        raise BadRequest(f"value must be a number, got {raw!r}")
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, str) and raw.lower() in SPECIAL_VALUES:
        return SPECIAL_VALUES[raw.lower()]
    raise BadRequest(f"value must be a number or NaN/+Inf/-Inf, got {raw!r}")


def make_handler(store: Store) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _reply(self, status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b"{}"
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError as exc:
                raise BadRequest(f"body is not JSON: {exc}") from exc
            if not isinstance(body, dict):
                raise BadRequest("body must be a JSON object")
            return body

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, store.render(), "text/plain; version=0.0.4; charset=utf-8")
            elif path == "/healthz":
                self._reply(200, "ok\n")
            else:
                self._reply(404, f"no such path: {path}\n")

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            try:
                body = self._body()
                if path == "/set":
                    name, labels = parse_name(body), parse_labels(body.get("labels", {}))
                    store.set(name, labels, parse_value(body.get("value")))
                    self._reply(200, '{"ok": true}\n', "application/json")
                elif path == "/delete":
                    only = parse_labels(body["labels"]) if "labels" in body else None
                    deleted = store.delete(parse_name(body), only)
                    self._reply(200, json.dumps({"ok": True, "deleted": deleted}) + "\n", "application/json")
                elif path == "/reset":
                    store.reset()
                    self._reply(200, '{"ok": true}\n', "application/json")
                else:
                    self._reply(404, f"no such path: {path}\n")
            except BadRequest as exc:
                self._reply(400, json.dumps({"ok": False, "error": str(exc)}) + "\n", "application/json")

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), make_handler(Store()))
    server.daemon_threads = True
    if args.port_file is not None:
        tmp = args.port_file.with_suffix(".tmp")
        tmp.write_text(f"{server.server_address[1]}\n")
        tmp.replace(args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
