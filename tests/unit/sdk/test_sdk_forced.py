"""Forced branches (QA): spec.force users and groups, and the cookie/header override, never counted."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from controller.experiments.growthbook import GROWTHBOOK_SUFFIX, growthbook_json
from controller.experiments.hashing import ExperimentConfig, compile_experiment, get_branch
from controller.sdk import (
    CONVERSIONS,
    EXPOSURES,
    FORCE_COOKIE,
    FORCED_CONVERSIONS,
    FORCED_EXPOSURES,
    Experiments,
    ForcedBranch,
    parse_forced,
)

KEY = "GDCEurope2011"
BRANCHES = (("control", 0.5), ("enhanced", 0.5))
QA = ExperimentConfig(
    key=KEY,
    seed=KEY,
    rollout=10,
    audience=("players",),
    branches=BRANCHES,
    force_users=(("alice", "enhanced"), ("bob", "control")),
    force_groups=(("qa", "enhanced"), ("admin", "control")),
)
PLAIN = ExperimentConfig(key=KEY, seed=KEY, rollout=10, audience=("players",), branches=BRANCHES)
USERS = [f"user-{i}" for i in range(2000)]


def total(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return sum(
        s.value
        for metric in registry.collect()
        for s in metric.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def client(config: ExperimentConfig = QA) -> tuple[Experiments, CollectorRegistry]:
    registry = CollectorRegistry()
    return Experiments([config], registry=registry), registry


@pytest.mark.parametrize(
    ("user", "groups", "expected"),
    [
        ("alice", (), "enhanced"),  # outside audience and rollout, still forced
        ("bob", ("qa",), "control"),  # user forcing beats group forcing
        ("carol", ("qa",), "enhanced"),
        ("dave", ("admin", "qa"), "enhanced"),  # the first listed group (qa) wins, not the user's order
        ("erin", ("admin",), "control"),
    ],
    ids=["user", "user-over-group", "group", "group-order", "second-group"],
)
def test_forced_users_and_groups(user: str, groups: tuple[str, ...], expected: str) -> None:
    assert get_branch(QA, user, groups) == expected
    experiments, _ = client()
    branch = experiments.get_branch(user, KEY, groups)
    assert branch == expected and isinstance(branch, ForcedBranch)


def test_unforced_users_get_exactly_the_hashed_branch() -> None:
    qa, plain = compile_experiment(QA), compile_experiment(PLAIN)
    for user in USERS:
        assert qa.branch(user, ("players",)) == plain.branch(user, ("players",))
        assert qa.forced(user, ("players",)) is None


def test_closed_wins_over_forcing_and_disabled_forces_nobody() -> None:
    closed = ExperimentConfig.from_dict({**QA.to_dict(), "closeOn": "control"})
    assert get_branch(closed, "alice") == "control"
    assert compile_experiment(closed).forced("alice", (), "enhanced") is None
    disabled = ExperimentConfig.from_dict({**QA.to_dict(), "enabled": False})
    assert get_branch(disabled, "alice") is None


def test_forcing_works_at_rollout_zero() -> None:
    zero = ExperimentConfig.from_dict({**QA.to_dict(), "rollout": 0})
    assert get_branch(zero, "alice") == "enhanced"
    assert get_branch(zero, "user-1", ("players",)) is None


def test_forced_users_are_never_counted_in_the_analysis_series() -> None:
    experiments, registry = client()
    hashed: dict[str, int] = {"control": 0, "enhanced": 0}
    for user in USERS:
        branch = experiments.expose(user, KEY, ("players",))
        if branch is not None:
            hashed[branch] += 1
            experiments.convert(KEY, branch)
    for user, groups in [("alice", ()), ("bob", ()), ("carol", ("qa",)), ("erin", ("admin",))]:
        branch = experiments.expose(user, KEY, groups)
        assert isinstance(branch, ForcedBranch)
        assert experiments.convert(KEY, branch)
    for branch, n in hashed.items():
        assert total(registry, EXPOSURES, experiment=KEY, branch=branch) == n
        assert total(registry, CONVERSIONS, experiment=KEY, branch=branch) == n
    assert total(registry, FORCED_EXPOSURES, experiment=KEY, branch="enhanced") == 2
    assert total(registry, FORCED_EXPOSURES, experiment=KEY, branch="control") == 2
    assert total(registry, FORCED_CONVERSIONS, experiment=KEY) == 4
    assert sum(hashed.values()) == total(registry, EXPOSURES, experiment=KEY) > 0


def test_cookie_override_forces_and_is_not_counted() -> None:
    experiments, registry = client(PLAIN)
    cookie = parse_forced(f"{KEY}=enhanced, other=x ,broken")
    assert cookie == {KEY: "enhanced", "other": "x"}
    outsider = "user-7"  # not in the audience: normally None
    assert experiments.get_branch(outsider, KEY) is None
    branch = experiments.expose(outsider, KEY, forced=cookie)
    assert branch == "enhanced" and isinstance(branch, ForcedBranch)
    assert experiments.expose(outsider, KEY, forced="control") == "control"
    experiments.convert(KEY, branch)
    assert total(registry, EXPOSURES, experiment=KEY) == 0
    assert total(registry, CONVERSIONS, experiment=KEY) == 0
    assert total(registry, FORCED_EXPOSURES, experiment=KEY) == 2
    assert total(registry, FORCED_CONVERSIONS, experiment=KEY, branch="enhanced") == 1


def test_override_naming_no_branch_is_ignored() -> None:
    experiments, registry = client(PLAIN)
    user = next(u for u in USERS if get_branch(PLAIN, u, ("players",)) is not None)
    branch = experiments.expose(user, KEY, ("players",), forced={KEY: "nope"})
    assert branch == get_branch(PLAIN, user, ("players",)) and not isinstance(branch, ForcedBranch)
    assert total(registry, EXPOSURES, experiment=KEY) == 1
    assert total(registry, FORCED_EXPOSURES, experiment=KEY) == 0
    assert parse_forced(None) == {} and FORCE_COOKIE == "stopline-force"


def test_force_round_trips_and_names_real_branches() -> None:
    data = QA.to_dict()
    assert data["force"] == {
        "users": {"alice": "enhanced", "bob": "control"},
        "groups": {"qa": "enhanced", "admin": "control"},
    }
    assert ExperimentConfig.from_dict(data) == QA
    assert "force" not in PLAIN.to_dict()  # unchanged document for experiments without forcing
    with pytest.raises(ValueError, match=r"force\.users names branches that do not exist"):
        ExperimentConfig.from_dict({**data, "force": {"users": {"alice": "gone"}}})
    with pytest.raises(ValueError, match=r"force\.groups"):
        ExperimentConfig.from_dict({**data, "force": {"groups": {"qa": 3}}})


def test_the_sdk_skips_the_growthbook_payloads_beside_the_configs(tmp_path: Path) -> None:
    (tmp_path / f"{KEY}.json").write_text(QA.to_json())
    (tmp_path / f"{KEY}{GROWTHBOOK_SUFFIX}").write_text(growthbook_json(QA))
    experiments = Experiments.from_path(tmp_path, registry=CollectorRegistry())
    assert experiments.keys == (KEY,) and experiments.problems == ()
