"""The GrowthBook payload on the real stack (issue 16): published in the ConfigMap beside the stopline config
and served read-only on the controller's HTTP port; GrowthBook's SDKs assign users as controller.sdk does."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from operator_proc import Controller
from test_experiments import configmap_data, create_experiment, sdk_from_configmap, wait_published

CROSSSDK = Path(__file__).resolve().parents[1] / "crosssdk"
KEY = "GbCheckout"
USERS = [(f"user-{i}", ["qa"] if i % 3 == 0 else []) for i in range(5000)]


def fetch(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


def test_growthbook_payload_is_published_and_served(controller: Controller, ns: str, tmp_path: Path) -> None:
    create_experiment(
        ns,
        "gb-checkout",
        key=KEY,
        rollout=40,
        audience=["qa", "players"],
        branches={"control": 0.3, "enhanced": 0.7},
        force={"users": {"user-1": "enhanced"}},
        interval="2s",
    )
    wait_published(ns, "first publication", lambda c: "force" in c, key=KEY)
    data = configmap_data(ns)
    payload = json.loads(data[f"{KEY}.growthbook.json"])
    rules = payload["features"][KEY]["rules"]
    assert rules[0] == {"id": "force-users-enhanced", "force": "enhanced", "condition": {"id": {"$in": ["user-1"]}}}
    assert (rules[1]["coverage"], rules[1]["weights"], rules[1]["seed"]) == (0.4, [0.3, 0.7], KEY)
    served = fetch(f"{controller.http_url}/api/features/{ns}")
    assert served == payload  # the HTTP endpoint and the ConfigMap say the same

    sdk = sdk_from_configmap(ns, tmp_path / "app")  # the growthbook file beside it is ignored by the SDK
    assert sdk.keys == (KEY,) and sdk.problems == ()
    expected = [sdk.get_branch(uid, KEY, groups) for uid, groups in USERS]
    assert {"control", "enhanced", None} == set(expected)

    node = shutil.which("node")
    if node is None or not (CROSSSDK / "node_modules" / "@growthbook" / "growthbook").is_dir():
        pytest.skip("GrowthBook JS SDK not installed (tests/unit/experiments/test_growthbook_payload.py installs it)")
    (tmp_path / "payload.json").write_text(json.dumps(served))
    (tmp_path / "users.json").write_text(json.dumps(USERS))
    out = subprocess.run(
        [node, str(CROSSSDK / "assign.js"), str(tmp_path / "payload.json"), str(tmp_path / "users.json")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert json.loads(out)[KEY] == expected
