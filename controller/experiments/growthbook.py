"""Experiments as a GrowthBook SDK payload, so any GrowthBook SDK assigns users exactly as ``controller.sdk``. Pure.

One feature per experiment, keyed by the experiment key, whose value is the branch name (``null``
when the user is not in the experiment, like ``get_branch`` returning None)::

    {"features": {"GDCEurope2011": {"defaultValue": null, "rules": [
        {"id": "force-user-enhanced", "force": "enhanced", "condition": {"id": {"$in": ["qa-alice"]}}},
        {"id": "force-group-qa", "force": "enhanced", "condition": {"groups": {"$elemMatch": {"$eq": "qa"}}}},
        {"id": "experiment", "key": "GDCEurope2011", "seed": "GDCEurope2011", "hashVersion": 2,
         "hashAttribute": "id", "variations": ["control", "enhanced"], "weights": [0.5, 0.5],
         "coverage": 0.1, "condition": {"groups": {"$elemMatch": {"$in": ["qa", "admin"]}}},
         "meta": [{"key": "control", "name": "control"}, {"key": "enhanced", "name": "enhanced"}]}]}}}

The rules follow ``CompiledExperiment.branch``: forced users, then forced groups (in order), then the
experiment with ``coverage = rollout / 100`` and the audience as a condition on the ``groups``
attribute. A closed experiment is one ``force`` rule; a disabled one has no rules. Give the SDK the
attributes ``{"id": user_id, "groups": [...]}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Final

from controller.experiments.hashing import ExperimentConfig

__all__ = ["GROWTHBOOK_SUFFIX", "growthbook_feature", "growthbook_key", "growthbook_payload"]

#: ConfigMap key suffix of an experiment's GrowthBook payload (``<key>.growthbook.json``).
GROWTHBOOK_SUFFIX: Final = ".growthbook.json"


def growthbook_key(configmap_key: str) -> str:
    """``GDCEurope2011.json`` → ``GDCEurope2011.growthbook.json``."""
    stem = configmap_key.removesuffix(".json")
    return f"{stem}{GROWTHBOOK_SUFFIX}"


def _has_group(group: str) -> dict[str, Any]:
    return {"groups": {"$elemMatch": {"$eq": group}}}


def growthbook_feature(config: ExperimentConfig) -> dict[str, Any]:
    """The GrowthBook feature definition of one experiment."""
    rules: list[dict[str, Any]] = []
    if not config.enabled:
        return {"defaultValue": None, "rules": rules}
    if config.closed_on is not None:
        rules.append({"id": "closed", "force": config.closed_on})
        return {"defaultValue": None, "rules": rules}
    by_branch: dict[str, list[str]] = {}
    for user, branch in config.force_users:
        by_branch.setdefault(branch, []).append(user)
    for branch, users in by_branch.items():
        rules.append({"id": f"force-users-{branch}", "force": branch, "condition": {"id": {"$in": users}}})
    for group, branch in config.force_groups:
        rules.append({"id": f"force-group-{group}", "force": branch, "condition": _has_group(group)})
    names = list(config.branch_names)
    experiment: dict[str, Any] = {
        "id": "experiment",
        "key": config.key,
        "seed": config.seed,
        "hashVersion": config.hash_version,
        "hashAttribute": "id",
        "variations": names,
        "weights": [w for _, w in config.branches],
        "coverage": config.rollout / 100,
        "meta": [{"key": name, "name": name} for name in names],
    }
    if config.audience:
        experiment["condition"] = {"groups": {"$elemMatch": {"$in": list(config.audience)}}}
    rules.append(experiment)
    return {"defaultValue": None, "rules": rules}


def growthbook_payload(configs: Iterable[ExperimentConfig]) -> dict[str, Any]:
    """The SDK payload ``{"features": {key: feature}}`` of these experiments."""
    return {"features": {c.key: growthbook_feature(c) for c in configs}}


def growthbook_json(config: ExperimentConfig) -> str:
    """What is published under ``<key>.growthbook.json``: the payload of this one experiment."""
    return json.dumps(growthbook_payload([config]), separators=(",", ":"))
