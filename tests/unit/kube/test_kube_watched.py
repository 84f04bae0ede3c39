"""Workload state from the watch: what it keeps, and that it is never trusted over stopline's own last write."""

from __future__ import annotations

from typing import Any

from controller.kube.watched import WorkloadCache


def deployment(generation: int, observed: int, *, name: str = "web", **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "generation": generation,
            "managedFields": [{"manager": "stopline"}],
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}", "keep": "me"},
            **extra,
        },
        "spec": {"replicas": 2},
        "status": {"observedGeneration": observed, "updatedReplicas": 2, "availableReplicas": 2, "replicas": 2},
    }


def test_events_keep_a_trimmed_copy_by_key_and_bare_names_are_deployments() -> None:
    cache = WorkloadCache()
    assert cache.on_event(None, deployment(3, 3)) == ("shop", "Deployment/web")
    known, obj = cache.get("shop", "web")
    assert known and obj is not None
    assert "managedFields" not in obj["metadata"]
    assert obj["metadata"]["annotations"] == {"keep": "me"}
    assert cache.get("shop", "Deployment/web") == (True, obj)
    assert cache.on_event(None, {"kind": "ConfigMap", "metadata": {"name": "x", "namespace": "shop"}}) is None
    assert cache.get("shop", "Deployment/other") == (False, None)  # never seen: read it


def test_a_copy_older_than_our_last_write_is_not_trusted_until_the_watch_catches_up() -> None:
    cache = WorkloadCache()
    cache.on_event("MODIFIED", deployment(3, 3))  # fully rolled out at generation 3
    cache.wrote("shop", "Deployment/web", {"metadata": {"generation": 4}})  # our apply: generation 4
    assert cache.get("shop", "web") == (False, None)  # the watch still has generation 3: would read "Available"
    cache.on_event("MODIFIED", deployment(4, 3))
    known, obj = cache.get("shop", "web")
    assert known and obj is not None and obj["metadata"]["generation"] == 4
    assert (cache.hits, cache.misses) == (1, 1)


def test_deletions_are_known_unless_we_wrote_the_object_since() -> None:
    cache = WorkloadCache()
    cache.on_event("ADDED", deployment(1, 1))
    cache.on_event("DELETED", deployment(1, 1))
    assert cache.get("shop", "web") == (True, None)
    cache.wrote("shop", "web", {"metadata": {"generation": 1}})  # recreated by a restore
    assert cache.get("shop", "web") == (False, None)
    cache.forget_namespace("shop")
    assert len(cache) == 0 and cache.get("shop", "web") == (False, None)


def test_workloads_of_another_shard_are_dropped() -> None:
    cache = WorkloadCache()
    cache.on_event(None, deployment(1, 1))
    cache.drop(deployment(1, 1))
    assert len(cache) == 0 and cache.get("shop", "web") == (False, None)
