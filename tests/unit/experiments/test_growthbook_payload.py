"""The GrowthBook SDK payload: its shape, and GrowthBook's own SDKs assigning users exactly as controller.sdk.

Cross-SDK: the ``growthbook`` package (Python, a test dependency) and GrowthBook's JavaScript SDK
(``tests/crosssdk/package.json``, installed with npm install on first use, run with node) read the published
payload and must give every one of 100,000 user ids the branch ``controller.sdk`` gives: rollout 10 %
with weights 0.3/0.7, an audience-restricted experiment with forced users and groups, three
branches on hash version 1, and a closed experiment.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from controller.experiments.growthbook import growthbook_feature, growthbook_json, growthbook_key, growthbook_payload
from controller.experiments.hashing import ExperimentConfig
from controller.sdk import Experiments

CROSSSDK = Path(__file__).resolve().parents[2] / "crosssdk"
IN_CI = os.environ.get("CI") == "true"

ROLLOUT = ExperimentConfig(
    key="Rollout10", seed="Rollout10", rollout=10, branches=(("control", 0.3), ("enhanced", 0.7))
)
AUDIENCE = ExperimentConfig(
    key="QaAndAdmin",
    seed="qa-admin-seed",
    rollout=60,
    audience=("qa", "admin"),
    branches=(("control", 0.5), ("enhanced", 0.5)),
    force_users=(("user-7", "enhanced"), ("user-8", "control"), ("user-99999", "control")),
    force_groups=(("vip", "control"), ("beta", "enhanced")),
)
THREE = ExperimentConfig(
    key="Three", seed="three", rollout=80, branches=(("a", 0.2), ("b", 0.3), ("c", 0.5)), hash_version=1
)
CLOSED = ExperimentConfig(
    key="Closed", seed="Closed", rollout=10, branches=(("control", 0.5), ("enhanced", 0.5)), closed_on="enhanced"
)
CONFIGS = [ROLLOUT, AUDIENCE, THREE, CLOSED]
GROUPS: list[list[str]] = [[], ["qa"], [], ["admin", "x"], ["vip"], [], ["beta", "qa"], ["other"], ["vip", "beta"]]
USERS = [(f"user-{i}", GROUPS[i % len(GROUPS)]) for i in range(100_000)]


def stopline_branches() -> dict[str, list[str | None]]:
    sdk = Experiments(CONFIGS, registry=CollectorRegistry())
    return {c.key: [sdk.get_branch(uid, c.key, groups) for uid, groups in USERS] for c in CONFIGS}


@pytest.fixture(scope="module")
def expected() -> dict[str, list[str | None]]:
    out = stopline_branches()
    # the cases are really exercised: every branch and "not in" occur, forced users get their branch
    rollout = out["Rollout10"]
    share_in = sum(b is not None for b in rollout) / len(rollout)
    assert 0.09 < share_in < 0.11
    assert 0.65 < rollout.count("enhanced") / (len(rollout) * share_in) < 0.75
    assert out["QaAndAdmin"][7] == "enhanced" and out["QaAndAdmin"][8] == "control"
    assert {"a", "b", "c", None} == set(out["Three"])
    assert set(out["Closed"]) == {"enhanced"}
    return out


def test_payload_shape() -> None:
    feature = growthbook_feature(AUDIENCE)
    assert feature["defaultValue"] is None
    rules = feature["rules"]
    assert rules[0] == {"id": "force-users-enhanced", "force": "enhanced", "condition": {"id": {"$in": ["user-7"]}}}
    assert rules[1]["condition"] == {"id": {"$in": ["user-8", "user-99999"]}}
    assert [r["id"] for r in rules[2:4]] == ["force-group-vip", "force-group-beta"]
    experiment = rules[-1]
    assert experiment["seed"] == "qa-admin-seed" and experiment["coverage"] == 0.6
    assert experiment["variations"] == ["control", "enhanced"] and experiment["weights"] == [0.5, 0.5]
    assert experiment["condition"] == {"groups": {"$elemMatch": {"$in": ["qa", "admin"]}}}
    assert growthbook_feature(CLOSED)["rules"] == [{"id": "closed", "force": "enhanced"}]
    disabled = ExperimentConfig.from_dict({**ROLLOUT.to_dict(), "enabled": False})
    assert growthbook_feature(disabled)["rules"] == []
    assert json.loads(growthbook_json(ROLLOUT)) == growthbook_payload([ROLLOUT])
    assert growthbook_key("GDCEurope2011.json") == "GDCEurope2011.growthbook.json"


def test_growthbook_python_sdk_assigns_like_stopline(expected: dict[str, list[str | None]]) -> None:
    if IN_CI:
        import growthbook
    else:
        growthbook = pytest.importorskip("growthbook")
    gb = growthbook.GrowthBook(attributes={}, features=growthbook_payload(CONFIGS)["features"])
    got: dict[str, list[Any]] = {c.key: [] for c in CONFIGS}
    for uid, groups in USERS:
        gb.set_attributes({"id": uid, "groups": groups})
        for c in CONFIGS:
            got[c.key].append(gb.eval_feature(c.key).value)
    for c in CONFIGS:
        mismatches = [i for i, (a, b) in enumerate(zip(got[c.key], expected[c.key], strict=True)) if a != b]
        assert not mismatches, f"{c.key}: {len(mismatches)} users differ, first {USERS[mismatches[0]]}"


def node_sdk() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if IN_CI:
            raise AssertionError("node and npm are needed for the JavaScript SDK check")
        pytest.skip("node/npm not installed")
    with open(CROSSSDK / ".install.lock", "w") as lock:  # xdist workers: one npm install at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (CROSSSDK / "node_modules" / "@growthbook" / "growthbook").is_dir():
            npm_install(npm)
    return Path(node)


def npm_install(npm: str) -> None:
    """GrowthBook's JavaScript SDK into tests/crosssdk/node_modules (the version package.json pins)."""
    proc = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--no-package-lock", "--loglevel=error"],
        cwd=CROSSSDK,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        if IN_CI:
            raise AssertionError(f"npm install failed: {proc.stderr[-2000:]}")
        pytest.skip(f"npm install failed: {proc.stderr[-300:]}")


def test_growthbook_javascript_sdk_assigns_like_stopline(expected: dict[str, list[str | None]], tmp_path: Path) -> None:
    node = node_sdk()
    payload, users = tmp_path / "payload.json", tmp_path / "users.json"
    payload.write_text(json.dumps(growthbook_payload(CONFIGS)))
    users.write_text(json.dumps(USERS))
    proc = subprocess.run(
        [str(node), str(CROSSSDK / "assign.js"), str(payload), str(users)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    got = json.loads(proc.stdout)
    for c in CONFIGS:
        mismatches = [i for i, (a, b) in enumerate(zip(got[c.key], expected[c.key], strict=True)) if a != b]
        assert not mismatches, f"{c.key}: {len(mismatches)} users differ, first {USERS[mismatches[0]]}"


def test_javascript_sdk_loads_the_payload_from_api_features(tmp_path: Path) -> None:
    """The path convention: ``apiHost`` + ``/api/features/<clientKey>``, what the controller serves."""
    import http.server
    import threading

    node = node_sdk()
    body = json.dumps(growthbook_payload(CONFIGS)).encode()
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            ok = self.path.split("?")[0] == "/api/features/shop"
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body if ok else b"{}")

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host = f"http://127.0.0.1:{server.server_address[1]}"
        sdk = Experiments(CONFIGS, registry=CollectorRegistry())
        for uid, groups in [("user-7", []), ("user-1", ["qa"]), ("user-12", ["admin"]), ("user-4", ["vip"])]:
            out = subprocess.run(
                [str(node), str(CROSSSDK / "fetch.js"), host, "shop", "QaAndAdmin", uid, *groups],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
            assert json.loads(out) == sdk.get_branch(uid, "QaAndAdmin", groups)
    finally:
        server.shutdown()
        server.server_close()
    assert any(p.startswith("/api/features/shop") for p in seen)
