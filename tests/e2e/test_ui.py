"""What users see after a rolled-back push: `stopline status` and the push status page in headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from dsl import THREE_PHASES, Given, Then, When, gate
from helpers import OUTPUT_DIR, get_stack, wait_scraped
from operator_proc import Controller

LOAD = "stopline_e2e_load"
STOPLINE = str(Path(sys.executable).parent / "stopline")


class Dom(HTMLParser):
    """Collects elements with their attributes and text, enough to assert on the page structure."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[dict[str, object]] = []
        self.elements: list[dict[str, object]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        el: dict[str, object] = {"tag": tag, "attrs": dict(attrs), "text": ""}
        self.elements.append(el)
        if tag not in ("br", "img", "meta", "link", "input", "hr"):
            self.stack.append(el)

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop()["tag"] == tag:
                break

    def handle_data(self, data: str) -> None:
        for el in self.stack:
            el["text"] = str(el["text"]) + data

    def find(self, tag: str, **attrs: str) -> list[dict[str, object]]:
        out = []
        for el in self.elements:
            a = el["attrs"]
            assert isinstance(a, dict)
            if el["tag"] == tag and all(str(a.get(k.replace("_", "-"), "")) == v for k, v in attrs.items()):
                out.append(el)
        return out


def chromium(url: str, *args: str, profile: Path) -> str:
    browser = shutil.which("chromium")
    assert browser, "chromium is not installed (hack/install-browser.sh installs Debian's chromium)"
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
        url,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture
def rolled_back(controller: Controller, ns: str) -> tuple[str, dict[str, object]]:
    """A Release whose phase-2 gate breached: rolled back and reverted."""
    given, when, then = Given(ns), When(ns), Then(ns)
    app = given.app(f"{ns}-ui")
    given.metric(LOAD, 4.1)
    wait_scraped()
    sha = app.commit("v2-bad")
    phases = [dict(THREE_PHASES[0]), {**THREE_PHASES[1], "hold": "60s"}, dict(THREE_PHASES[2])]
    rel = when.release(app, sha, phases=phases, gates=[gate("chat-loadavg", LOAD, ns, max=6)])
    then.release_in(rel, "Holding", "chat")
    when.metric(LOAD, 7.2)
    status = then.release_reaches(rel, "RolledBack", "Failed", timeout=90)
    assert status["phase"] == "RolledBack"
    return rel, status


def test_stopline_status_shows_the_failing_gauge_row(rolled_back: tuple[str, dict[str, object]], ns: str) -> None:
    rel, status = rolled_back
    env = {**os.environ, "KUBECONFIG": str(get_stack().kubeconfig), "COLUMNS": "200"}
    out = subprocess.run(
        [STOPLINE, "status", rel, "-n", ns, "-o", "json"], capture_output=True, text=True, env=env, check=True
    )
    data = json.loads(out.stdout)
    rows = [r for r in data["status"]["gauges"] if r["gate"] == "chat-loadavg" and r["phase"] == "chat"]
    assert len(rows) == 1 and rows[0]["verdict"] == "Fail"
    assert rows[0]["postPush"] == pytest.approx(7.2) and rows[0]["prePush"] == pytest.approx(4.1)

    table = subprocess.run(
        [STOPLINE, "status", rel, "-n", ns], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert "This push was rolled back" in table
    line = next(ln for ln in table.splitlines() if "chat-loadavg" in ln and " chat " in ln and "Fail" in ln)
    assert "4.10" in line and "7.20" in line and "+3.10" in line and "+75.61%" in line and ">6" in line
    revert = status["revert"]
    assert isinstance(revert, dict) and str(revert["commit"]) in table


def test_status_page_shows_the_banner_and_gauges(
    rolled_back: tuple[str, dict[str, object]], controller: Controller, ns: str, tmp_path: Path
) -> None:
    rel, status = rolled_back
    url = f"{controller.http_url}/namespaces/{ns}/releases/{rel}"
    html = chromium(url, "--dump-dom", profile=tmp_path / "profile-dom")
    dom = Dom()
    dom.feed(html)

    banners = dom.find("div", id="banner")
    assert len(banners) == 1
    assert "This push was rolled back" in str(banners[0]["text"])
    revert = status["revert"]
    assert isinstance(revert, dict) and str(revert["commit"]) in str(banners[0]["text"])

    fail_rows = dom.find("tr", data_gate="chat-loadavg", data_phase="chat")
    assert len(fail_rows) == 1
    text = " ".join(str(fail_rows[0]["text"]).split())
    assert "Fail" in text and "4.10" in text and "7.20" in text
    attrs = fail_rows[0]["attrs"]
    assert isinstance(attrs, dict) and "verdict-Fail" in str(attrs.get("class"))
    pass_rows = dom.find("tr", data_gate="chat-loadavg", data_phase="canary")
    assert len(pass_rows) == 1 and "Pass" in str(pass_rows[0]["text"])

    out_dir = OUTPUT_DIR / "screenshots"
    out_dir.mkdir(parents=True, exist_ok=True)
    shot = out_dir / f"{rel}.png"
    chromium(url, f"--screenshot={shot}", "--window-size=1280,1400", profile=tmp_path / "profile-shot")
    assert shot.exists() and shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
