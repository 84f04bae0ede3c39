"""controller.sdk.Experiments: reading the mounted ConfigMap, reloading, counting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from controller.experiments.hashing import ExperimentConfig, dumps_published, get_branch
from controller.sdk import CONVERSIONS, EXPOSURES, Experiments

REPO = Path(__file__).resolve().parents[3]

GDC = ExperimentConfig(
    key="GDCEurope2011", seed="GDCEurope2011", rollout=50, branches=(("control", 0.5), ("enhanced", 0.5))
)
CLOSED = ExperimentConfig(
    key="GDCEurope2011",
    seed="GDCEurope2011",
    rollout=50,
    branches=(("control", 0.5), ("enhanced", 0.5)),
    closed_on="enhanced",
)
CHECKOUT = ExperimentConfig(key="checkout", seed="co", rollout=100, branches=(("old", 0.2), ("new", 0.8)))
USERS = [f"user-{i}" for i in range(300)]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def publish_configmap(root: Path, version: str, text: str) -> None:
    """Lay files out the way kubelet mounts a ConfigMap and update them the way it does:
    a timestamped directory, an ``..data`` symlink swapped atomically, ``key -> ..data/key``."""
    target = root / f"..{version}"
    target.mkdir()
    (target / "experiments.json").write_text(text, encoding="utf-8")
    tmp_link = root / "..data_tmp"
    tmp_link.symlink_to(target.name)
    os.replace(tmp_link, root / "..data")
    link = root / "experiments.json"
    if not link.is_symlink():
        link.symlink_to("..data/experiments.json")


def assignments(client: Experiments, key: str = "GDCEurope2011") -> list[str | None]:
    return [client.get_branch(user, key) for user in USERS]


def test_reads_the_published_configmap_directory(tmp_path: Path) -> None:
    publish_configmap(tmp_path, "v1", dumps_published([GDC, CHECKOUT]))
    client = Experiments.from_path(tmp_path, registry=CollectorRegistry())
    assert client.keys == ("GDCEurope2011", "checkout")
    assert client.problems == ()
    assert assignments(client) == [get_branch(GDC, user) for user in USERS]
    assert [client.get_branch(u, "checkout") for u in USERS] == [get_branch(CHECKOUT, u) for u in USERS]
    assert client.get_branch("user-1", "unknown") is None
    assert client.config("checkout") == CHECKOUT


def test_reads_one_file_per_experiment(tmp_path: Path) -> None:
    (tmp_path / "GDCEurope2011.json").write_text(GDC.to_json(), encoding="utf-8")
    (tmp_path / "checkout.json").write_text(json.dumps(CHECKOUT.to_dict()), encoding="utf-8")
    (tmp_path / "notes.txt").write_text("ignored", encoding="utf-8")
    client = Experiments.from_path(tmp_path, registry=CollectorRegistry())
    assert sorted(client.keys) == ["GDCEurope2011", "checkout"]


def test_reads_a_single_file(tmp_path: Path) -> None:
    file = tmp_path / "experiments.json"
    file.write_text(dumps_published([CHECKOUT]), encoding="utf-8")
    client = Experiments.from_path(file, registry=CollectorRegistry())
    assert client.keys == ("checkout",)


def test_reloads_when_kubelet_swaps_the_configmap_checking_at_most_every_interval(tmp_path: Path) -> None:
    publish_configmap(tmp_path, "v1", dumps_published([GDC]))
    clock = FakeClock()
    client = Experiments.from_path(tmp_path, reload_interval=5.0, registry=CollectorRegistry(), clock=clock)
    before = assignments(client)
    assert set(before) == {"control", "enhanced", None}

    publish_configmap(tmp_path, "v2", dumps_published([CLOSED]))
    clock.now += 4.9
    assert assignments(client) == before  # not checked yet
    clock.now += 0.2
    assert assignments(client) == ["enhanced"] * len(USERS)


def test_reload_picks_up_a_rewritten_file(tmp_path: Path) -> None:
    file = tmp_path / "experiments.json"
    file.write_text(dumps_published([GDC]), encoding="utf-8")
    clock = FakeClock()
    client = Experiments.from_path(tmp_path, reload_interval=1.0, registry=CollectorRegistry(), clock=clock)
    write_atomically(file, dumps_published([GDC, CHECKOUT]))
    clock.now += 1.0
    assert client.get_branch("user-1", "checkout") == get_branch(CHECKOUT, "user-1")
    assert client.reload() is False  # nothing changed since


def test_broken_update_keeps_the_last_good_configuration(tmp_path: Path) -> None:
    file = tmp_path / "experiments.json"
    file.write_text(dumps_published([GDC]), encoding="utf-8")
    clock = FakeClock()
    client = Experiments.from_path(tmp_path, reload_interval=1.0, registry=CollectorRegistry(), clock=clock)
    good = assignments(client)

    write_atomically(file, '{"experiments": [')
    clock.now += 1.0
    assert assignments(client) == good
    assert len(client.problems) == 1 and "experiments.json" in client.problems[0]

    write_atomically(file, dumps_published([CLOSED]))
    clock.now += 1.0
    assert assignments(client) == ["enhanced"] * len(USERS)
    assert client.problems == ()


def test_invalid_experiments_are_skipped_and_reported(tmp_path: Path) -> None:
    bad: dict[str, Any] = {"key": "bad", "branches": {"a": 0.3}}
    (tmp_path / "experiments.json").write_text(json.dumps({"experiments": [GDC.to_dict(), bad]}), encoding="utf-8")
    (tmp_path / "extra.json").write_text(GDC.to_json(), encoding="utf-8")
    client = Experiments.from_path(tmp_path, registry=CollectorRegistry())
    assert client.keys == ("GDCEurope2011",)
    assert any("'bad'" in p and "sum to 1" in p for p in client.problems)
    assert any("defined twice" in p for p in client.problems)


def test_missing_directory_starts_empty_and_loads_once_published(tmp_path: Path) -> None:
    mount = tmp_path / "mount"
    clock = FakeClock()
    client = Experiments.from_path(mount, reload_interval=2.0, registry=CollectorRegistry(), clock=clock)
    assert client.keys == ()
    assert client.get_branch("user-1", "GDCEurope2011") is None
    assert "does not exist" in client.problems[0]
    mount.mkdir()
    publish_configmap(mount, "v1", dumps_published([GDC]))
    clock.now += 2.0
    assert assignments(client) == [get_branch(GDC, user) for user in USERS]


def test_expose_and_convert_count_with_experiment_and_branch_labels() -> None:
    registry = CollectorRegistry()
    client = Experiments([GDC, CHECKOUT], registry=registry)
    shown = [client.expose(user, "GDCEurope2011") for user in USERS]
    for branch in ("control", "enhanced"):
        labels = {"experiment": "GDCEurope2011", "branch": branch}
        assert registry.get_sample_value(EXPOSURES, labels) == shown.count(branch)
        assert registry.get_sample_value(CONVERSIONS, labels) == 0
    assert shown.count(None) > 0  # 50% rollout: users outside are not counted anywhere

    assert client.convert("GDCEurope2011", "enhanced") is True
    assert client.convert("GDCEurope2011", "enhanced") is True
    assert client.convert("GDCEurope2011", None) is False
    assert client.convert("GDCEurope2011", "nonsense") is False
    assert client.convert("unknown", "control") is False
    assert registry.get_sample_value(CONVERSIONS, {"experiment": "GDCEurope2011", "branch": "enhanced"}) == 2
    assert registry.get_sample_value(CONVERSIONS, {"experiment": "GDCEurope2011", "branch": "nonsense"}) is None
    assert client.expose("user-1", "unknown") is None


def test_clients_can_share_a_registry() -> None:
    registry = CollectorRegistry()
    first = Experiments([CHECKOUT], registry=registry)
    second = Experiments.from_dict({"experiments": [CHECKOUT.to_dict()]}, registry=registry)
    first.expose("user-1", "checkout")
    second.expose("user-1", "checkout")
    branch = get_branch(CHECKOUT, "user-1")
    assert registry.get_sample_value(EXPOSURES, {"experiment": "checkout", "branch": str(branch)}) == 2


def test_from_dict_rejects_invalid_documents() -> None:
    with pytest.raises(ValueError, match="experiments"):
        Experiments.from_dict({"experiment": []}, registry=CollectorRegistry())
    with pytest.raises(ValueError, match="unique"):
        Experiments.from_dict({"experiments": [CHECKOUT.to_dict()] * 2}, registry=CollectorRegistry())
    with pytest.raises(ValueError, match="rollout"):
        Experiments.from_dict({"experiments": [{**CHECKOUT.to_dict(), "rollout": 300}]}, registry=CollectorRegistry())


def test_groups_reach_the_audience_check() -> None:
    qa_only = ExperimentConfig(key="qa", seed="qa", rollout=100, branches=(("on", 1.0),), audience=("qa", "admin"))
    client = Experiments([qa_only], registry=CollectorRegistry())
    assert client.get_branch("user-1", "qa") is None
    assert client.get_branch("user-1", "qa", groups=("admin",)) == "on"
    assert client.expose("user-1", "qa", groups={"staff", "qa"}) == "on"


def test_sdk_imports_without_kopf_or_kubernetes() -> None:
    code = (
        "import sys\n"
        "for name in ('kopf', 'kubernetes', 'git', 'scipy'):\n"
        "    sys.modules[name] = None\n"
        "from controller.sdk import Experiments\n"
        "print(Experiments)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
