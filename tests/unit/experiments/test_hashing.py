"""GrowthBook compatibility and assignment properties of controller.experiments.hashing."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.experiments.hashing import (
    CompiledExperiment,
    ExperimentConfig,
    choose_variation,
    dumps_published,
    fnv1a32,
    get_branch,
    get_bucket_ranges,
    get_equal_weights,
    hash,
    loads_published,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "growthbook_hash.json").read_text(encoding="utf-8")
)


@pytest.mark.parametrize(
    ("seed", "value", "version", "expected"), VECTORS["hash"], ids=[f"{c[0]}|{c[1]}|v{c[2]}" for c in VECTORS["hash"]]
)
def test_hash_matches_growthbook(seed: str, value: str, version: int, expected: float | None) -> None:
    assert hash(seed, value, version) == expected


@pytest.mark.parametrize(("seed", "value", "version", "expected"), VECTORS["buckets"])
def test_bucket_values_from_growthbook_experiment_results(seed: str, value: str, version: int, expected: float) -> None:
    assert hash(seed, value, version) == expected


@pytest.mark.parametrize(
    ("name", "args", "expected"), VECTORS["getBucketRange"], ids=[c[0] for c in VECTORS["getBucketRange"]]
)
def test_get_bucket_ranges_matches_growthbook(name: str, args: list[Any], expected: list[list[float]]) -> None:
    ranges = get_bucket_ranges(args[0], args[1], args[2])
    assert len(ranges) == len(expected)
    for (start, end), (want_start, want_end) in zip(ranges, expected, strict=True):
        assert start == pytest.approx(want_start, abs=1e-9)
        assert end == pytest.approx(want_end, abs=1e-9)


@pytest.mark.parametrize(
    ("name", "n", "ranges", "expected"), VECTORS["chooseVariation"], ids=[c[0] for c in VECTORS["chooseVariation"]]
)
def test_choose_variation_matches_growthbook(name: str, n: float, ranges: list[list[float]], expected: int) -> None:
    assert choose_variation(n, [(r[0], r[1]) for r in ranges]) == expected


@pytest.mark.parametrize(
    ("n", "expected"), VECTORS["getEqualWeights"], ids=[str(c[0]) for c in VECTORS["getEqualWeights"]]
)
def test_equal_weights_match_growthbook(n: int, expected: list[float]) -> None:
    assert get_equal_weights(n) == pytest.approx(expected, abs=1e-8)


def _config_from_growthbook(experiment: dict[str, Any]) -> ExperimentConfig:
    count = experiment["variations"]
    weights = experiment.get("weights") or get_equal_weights(count)
    return ExperimentConfig(
        key=experiment["key"],
        seed=experiment.get("seed", experiment["key"]),
        rollout=100 * experiment.get("coverage", 1),
        branches=tuple((str(i), w) for i, w in enumerate(weights)),
        hash_version=experiment.get("hashVersion", 1),
    )


@pytest.mark.parametrize(("name", "experiment", "user", "expected"), VECTORS["run"], ids=[c[0] for c in VECTORS["run"]])
def test_get_branch_matches_growthbook_run(
    name: str, experiment: dict[str, Any], user: str, expected: int | None
) -> None:
    config = _config_from_growthbook(experiment)
    assert get_branch(config, user) == (None if expected is None else str(expected))


def test_fnv_hashes_utf16_code_units_like_the_javascript_sdk() -> None:
    def reference(units: list[int]) -> int:
        h = 0x811C9DC5
        for unit in units:
            h = ((h ^ unit) * 0x01000193) % 2**32
        return h

    assert fnv1a32("é") == reference([0xE9])  # BMP: code unit == code point
    assert fnv1a32("a😀") == reference([0x61, 0xD83D, 0xDE00])  # surrogate pair, as charCodeAt sees it
    assert fnv1a32("") == 0x811C9DC5


def test_non_ascii_user_ids_take_the_same_path_in_compiled_and_reference() -> None:
    config = ExperimentConfig(key="k", seed="sød", rollout=100, branches=(("a", 0.5), ("b", 0.5)))
    for user in ("ümlaut", "ユーザー", "🙂-42", "plain"):
        n = hash(config.seed, user, 2)
        assert n is not None
        expected = ["a", "b"][choose_variation(n, get_bucket_ranges(2, 1.0, [0.5, 0.5]))]
        assert get_branch(config, user) == expected


def _reference_branch(config: ExperimentConfig, user: str) -> str | None:
    n = hash(config.seed, user, config.hash_version)
    assert n is not None
    weights = [w for _, w in config.branches]
    index = choose_variation(n, get_bucket_ranges(len(weights), config.rollout / 100, weights))
    return None if index < 0 else config.branch_names[index]


def test_hot_path_handles_short_first_pass_hashes_and_long_ids() -> None:
    config = ExperimentConfig(key="k", seed="GDCEurope2011", rollout=100, branches=(("a", 0.5), ("b", 0.5)))
    # A first-pass hash below 100000 has fewer than six digits and skips the digit-prefix table.
    short = next(u for u in (f"u{i}" for i in range(2_000_000)) if fnv1a32(config.seed + u) < 100000)
    users = [short, "x" * 65, "y" * 500, "ü" * 70, "🙂" * 40, "a" * 64]
    for user in users:
        assert CompiledExperiment(config).branch(user) == _reference_branch(config, user), user


# --- properties ------------------------------------------------------------------------

weights_strategy = st.integers(min_value=1, max_value=4).flatmap(
    lambda k: st.lists(st.integers(min_value=0, max_value=20), min_size=k, max_size=k).filter(lambda xs: sum(xs) > 0)
)
user_ids = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=24)


def _config(raw_weights: list[int], rollout: float, seed: str = "GDCEurope2011", version: int = 2) -> ExperimentConfig:
    total = sum(raw_weights)
    return ExperimentConfig(
        key="exp",
        seed=seed,
        rollout=rollout,
        branches=tuple((f"b{i}", w / total) for i, w in enumerate(raw_weights)),
        hash_version=version,
    )


@settings(max_examples=200, deadline=None)
@given(
    raw_weights=weights_strategy,
    rollouts=st.tuples(st.floats(0, 100), st.floats(0, 100)),
    seed=st.text(max_size=12),
    version=st.sampled_from([1, 2]),
    users=st.lists(user_ids, min_size=1, max_size=30),
)
def test_raising_rollout_keeps_every_included_user_in_the_same_branch(
    raw_weights: list[int], rollouts: tuple[float, float], seed: str, version: int, users: list[str]
) -> None:
    low, high = sorted(rollouts)
    before = _config(raw_weights, low, seed, version)
    after = _config(raw_weights, high, seed, version)
    for user in users:
        branch = get_branch(before, user)
        if branch is not None:
            assert get_branch(after, user) == branch


@settings(max_examples=30, deadline=None)
@given(raw_weights=weights_strategy, rollouts=st.tuples(st.floats(0, 100), st.floats(0, 100)))
def test_raising_coverage_only_adds_users(raw_weights: list[int], rollouts: tuple[float, float]) -> None:
    low, high = sorted(rollouts)
    users = [f"user-{i}" for i in range(3000)]
    included_low = {u for u in users if get_branch(_config(raw_weights, low), u) is not None}
    included_high = {u for u in users if get_branch(_config(raw_weights, high), u) is not None}
    assert included_low <= included_high


@settings(max_examples=200, deadline=None)
@given(
    raw_weights=weights_strategy,
    rollout=st.floats(0, 100),
    seed=st.text(max_size=12),
    version=st.sampled_from([1, 2]),
    user=user_ids,
)
def test_lookup_table_equals_growthbook_range_search(
    raw_weights: list[int], rollout: float, seed: str, version: int, user: str
) -> None:
    config = _config(raw_weights, rollout, seed, version)
    n = hash(seed, user, version)
    assert n is not None
    index = choose_variation(n, get_bucket_ranges(len(raw_weights), rollout / 100, [w for _, w in config.branches]))
    assert CompiledExperiment(config).branch(user) == (None if index < 0 else config.branch_names[index])


@pytest.mark.parametrize(
    ("weights", "rollout", "version"),
    [((0.5, 0.5), 100, 2), ((0.2, 0.3, 0.5), 100, 2), ((0.1, 0.9), 40, 2), ((0.25, 0.25, 0.5), 100, 1)],
    ids=["50-50", "20-30-50", "10-90-at-40pct", "v1-25-25-50"],
)
def test_weight_proportions_over_100k_users(weights: tuple[float, ...], rollout: float, version: int) -> None:
    config = ExperimentConfig(
        key="exp",
        seed="GDCEurope2011",
        rollout=rollout,
        branches=tuple((f"b{i}", w) for i, w in enumerate(weights)),
        hash_version=version,
    )
    n = 100_000
    counts: dict[str | None, int] = {}
    for i in range(n):
        branch = get_branch(config, f"user-{i}")
        counts[branch] = counts.get(branch, 0) + 1
    coverage = rollout / 100
    for name, expected_share in zip(config.branch_names, [w * coverage for w in weights], strict=True):
        sigma = math.sqrt(n * expected_share * (1 - expected_share))
        assert abs(counts.get(name, 0) - n * expected_share) < 5 * sigma + 1, (name, counts)
    expected_out = n * (1 - coverage)
    if coverage < 1:
        sigma = math.sqrt(n * coverage * (1 - coverage))
        assert abs(counts.get(None, 0) - expected_out) < 5 * sigma
    else:
        assert counts.get(None, 0) == 0


@settings(max_examples=100, deadline=None)
@given(
    user=user_ids,
    groups=st.lists(st.sampled_from(["qa", "admin", "staff", "beta"]), max_size=3),
    rollout=st.floats(0, 100),
)
def test_audience_gates_users_outside_the_groups(user: str, groups: list[str], rollout: float) -> None:
    open_config = ExperimentConfig(key="e", seed="s", rollout=rollout, branches=(("control", 0.5), ("enhanced", 0.5)))
    gated = ExperimentConfig(
        key="e", seed="s", rollout=rollout, branches=(("control", 0.5), ("enhanced", 0.5)), audience=("qa", "admin")
    )
    if {"qa", "admin"} & set(groups):
        assert get_branch(gated, user, groups) == get_branch(open_config, user)
    else:
        assert get_branch(gated, user, groups) is None


def test_qa_and_admin_only_lets_every_member_in() -> None:
    config = ExperimentConfig(
        key="e", seed="s", rollout=100, branches=(("control", 0.5), ("enhanced", 0.5)), audience=("qa", "admin")
    )
    members = [get_branch(config, f"user-{i}", ("qa",)) for i in range(200)]
    assert None not in members
    assert set(members) == {"control", "enhanced"}
    assert all(get_branch(config, f"user-{i}", ()) is None for i in range(200))
    assert all(get_branch(config, f"user-{i}", ["staff"]) is None for i in range(200))


def test_closed_on_gives_everyone_that_branch() -> None:
    config = ExperimentConfig(
        key="e",
        seed="s",
        rollout=10,
        branches=(("control", 0.5), ("enhanced", 0.5)),
        audience=("qa",),
        closed_on="enhanced",
    )
    assert {get_branch(config, f"user-{i}") for i in range(500)} == {"enhanced"}
    assert get_branch(config, "") == "enhanced"


def test_disabled_and_zero_rollout_and_empty_id_put_nobody_in() -> None:
    branches = (("control", 0.5), ("enhanced", 0.5))
    disabled = ExperimentConfig(key="e", seed="s", rollout=100, branches=branches, enabled=False)
    zero = ExperimentConfig(key="e", seed="s", rollout=0, branches=branches)
    full = ExperimentConfig(key="e", seed="s", rollout=100, branches=branches)
    assert all(get_branch(disabled, f"u{i}") is None for i in range(200))
    assert all(get_branch(zero, f"u{i}") is None for i in range(200))
    assert get_branch(full, "") is None


def test_single_branch_is_a_feature_rollout() -> None:
    config = ExperimentConfig(key="e", seed="s", rollout=25, branches=(("on", 1.0),))
    share = sum(get_branch(config, f"u{i}") == "on" for i in range(20000)) / 20000
    assert share == pytest.approx(0.25, abs=0.02)


def test_unknown_hash_version_is_none_and_rejected_in_config() -> None:
    assert hash("a", "b", 3) is None
    with pytest.raises(ValueError, match="hashVersion must be 1 or 2"):
        ExperimentConfig(key="e", seed="s", rollout=100, branches=(("a", 1.0),), hash_version=3)


# --- config and published document ------------------------------------------------------


GDC = ExperimentConfig(
    key="GDCEurope2011",
    seed="GDCEurope2011",
    rollout=10,
    branches=(("enhanced", 0.3), ("control", 0.7)),
    audience=("qa", "admin"),
)


def test_config_json_uses_camel_case_keys_and_keeps_branch_order() -> None:
    data = GDC.to_dict()
    assert data == {
        "key": "GDCEurope2011",
        "seed": "GDCEurope2011",
        "rollout": 10,
        "audience": ["qa", "admin"],
        "branches": {"enhanced": 0.3, "control": 0.7},
        "closeOn": None,
        "hashVersion": 2,
        "enabled": True,
    }
    assert list(json.loads(GDC.to_json())["branches"]) == ["enhanced", "control"]
    assert ExperimentConfig.from_json(GDC.to_json()) == GDC
    assert ExperimentConfig.from_dict({**data, "futureField": 1}) == GDC


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rollout": 101}, "rollout must be a percentage"),
        ({"rollout": "10"}, "'rollout' must be a number"),
        ({"branches": {"a": 0.5, "b": 0.2}}, "weights must sum to 1"),
        ({"branches": {}}, "'branches' must be a non-empty object"),
        ({"branches": {"a": -0.5, "b": 1.5}}, "weights must be finite and >= 0"),
        ({"closeOn": "nope"}, "closeOn 'nope' is not one of the branches"),
        ({"audience": "qa"}, "'audience' must be a list of strings"),
        ({"key": ""}, "'key' must be a non-empty string"),
        ({"enabled": "yes"}, "'enabled' must be a boolean"),
        ({"hashVersion": 7}, "hashVersion must be 1 or 2"),
    ],
    ids=[
        "rollout-range",
        "rollout-type",
        "weights-sum",
        "no-branches",
        "negative",
        "closeOn",
        "audience",
        "key",
        "enabled",
        "hashVersion",
    ],
)
def test_invalid_config_names_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ExperimentConfig.from_dict({**GDC.to_dict(), **change})


def test_config_is_hashable_and_compiled_once() -> None:
    twin = ExperimentConfig.from_dict(GDC.to_dict())
    assert {GDC, twin} == {GDC}
    assert get_branch(GDC, "user-1", ["qa"]) == get_branch(twin, "user-1", ["qa"])


def test_published_document_round_trip_and_bad_entries() -> None:
    other = ExperimentConfig(key="other", seed="x", rollout=100, branches=(("a", 1.0),))
    text = dumps_published([GDC, other])
    assert json.loads(text) == {"experiments": [GDC.to_dict(), other.to_dict()]}
    configs, errors = loads_published(text)
    assert configs == [GDC, other] and errors == []

    broken = {"experiments": [GDC.to_dict(), {"key": "bad", "branches": {"a": 2}}, GDC.to_dict()]}
    configs, errors = loads_published(json.dumps(broken))
    assert configs == [GDC]
    assert len(errors) == 2
    assert "bad" in errors[0] and "duplicate" in errors[1]
    assert loads_published(json.dumps(GDC.to_dict()))[0] == [GDC]
    with pytest.raises(ValueError):
        loads_published("[1")
