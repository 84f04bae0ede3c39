"""Workload state from the watch: what it keeps, and that it is never trusted over stopline's own last write."""

from __future__ import annotations

import time
from typing import Any

from controller.kube.watched import WORKLOAD_KINDS, WorkloadCache


def live_cache() -> WorkloadCache:
    return WorkloadCache(live=WORKLOAD_KINDS)


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
    cache = live_cache()
    assert cache.on_event(None, deployment(3, 3)) == ("shop", "Deployment/web")
    obj = cache.get("shop", "web")
    assert obj is not None
    assert "managedFields" not in obj["metadata"]
    assert obj["metadata"]["annotations"] == {"keep": "me"}
    assert cache.get("shop", "Deployment/web") == obj
    assert cache.on_event(None, {"kind": "ConfigMap", "metadata": {"name": "x", "namespace": "shop"}}) is None
    assert cache.get("shop", "Deployment/other") is None  # never seen: read it


def test_a_copy_older_than_our_last_write_is_not_trusted_until_the_watch_catches_up() -> None:
    cache = live_cache()
    cache.on_event("MODIFIED", deployment(3, 3))  # fully rolled out at generation 3
    cache.wrote("shop", "Deployment/web", {"metadata": {"generation": 4}})  # our apply: generation 4
    assert cache.get("shop", "web") is None  # the watch still has generation 3: would read "Available"
    cache.on_event("MODIFIED", deployment(4, 3))
    obj = cache.get("shop", "web")
    assert obj is not None and obj["metadata"]["generation"] == 4
    assert (cache.hits, cache.misses) == (1, 1)


def test_a_deletion_forgets_the_copy_so_it_is_read_fresh() -> None:
    # the watch selects stopline's labelled objects: a restore to an unlabelled snapshot is a DELETED too
    cache = live_cache()
    cache.on_event("ADDED", deployment(1, 1))
    cache.on_event("DELETED", deployment(1, 1))
    assert cache.get("shop", "web") is None and len(cache) == 0


def test_a_deleted_namespace_takes_its_copies_and_write_marks_with_it() -> None:
    cache = live_cache()
    cache.replace("Namespace", [_ns("shop", 1), _ns("other", 1)])
    cache.on_event("ADDED", deployment(1, 1))
    cache.wrote("shop", "Deployment/web", deployment(2, 5), selected_by="stopline.dev/app")
    cache.on_event("ADDED", {**deployment(1, 1), "metadata": {**deployment(1, 1)["metadata"], "namespace": "other"}})
    assert len(cache) == 4
    cache.on_event("DELETED", _ns("shop", 9))
    assert cache.get("shop", "web") is None and cache.namespace_gone("shop") is True
    assert len(cache._written) == 0 and cache.get("other", "web") is not None


def test_copies_are_used_only_while_their_kind_is_live() -> None:
    cache = WorkloadCache()
    cache.on_event(None, deployment(1, 1))
    assert cache.get("shop", "web") is None, "never listed: not live"
    cache.replace("Deployment", [deployment(1, 1, name="api")])
    assert cache.get("shop", "web") is None, "a LIST replaces the kind's copies"
    assert cache.get("shop", "api") is not None and cache.live("Deployment")
    cache.lost("Deployment")
    assert not cache.live("Deployment") and cache.get("shop", "api") is None and len(cache) == 0


def labelled(generation: int, observed: int, version: int, **extra: Any) -> dict[str, Any]:
    body = deployment(generation, observed, resourceVersion=str(version), labels={"stopline.dev/app": "a1"})
    body["metadata"].update(extra)
    return body


def test_our_write_response_is_the_copy_so_a_lagging_watch_costs_no_reads() -> None:
    cache = live_cache()
    cache.on_event("MODIFIED", labelled(3, 3, 100))  # rolled out at generation 3
    cache.wrote("shop", "Deployment/web", labelled(4, 3, 110), selected_by="stopline.dev/app")  # our apply
    obj = cache.get("shop", "web")
    assert obj is not None and obj["metadata"]["generation"] == 4, "judged from memory: not rolled out yet"
    cache.on_event("MODIFIED", labelled(3, 3, 105))  # the watch lags: an event from before our write
    assert (cache.get("shop", "web") or {})["metadata"]["generation"] == 4, "an older event never wins"
    cache.on_event("MODIFIED", labelled(4, 4, 120))  # the rollout, as the watch delivers it
    assert (cache.get("shop", "web") or {})["status"]["observedGeneration"] == 4
    cache.wrote("shop", "Deployment/web", labelled(4, 3, 110), selected_by="stopline.dev/app")  # a late response
    assert (cache.get("shop", "web") or {})["status"]["observedGeneration"] == 4, "nor an older response"


def test_a_write_that_leaves_the_selection_or_follows_a_deletion_is_read_fresh() -> None:
    cache = live_cache()
    cache.on_event("MODIFIED", labelled(3, 3, 100))
    restored = deployment(4, 3, resourceVersion="110")  # restored to a snapshot without the label
    cache.wrote("shop", "Deployment/web", restored, selected_by="stopline.dev/app")
    assert cache.get("shop", "web") is None, "no events will come for it: its copy would go stale"
    cache.on_event("DELETED", labelled(4, 3, 130))  # deleted by someone right after our apply...
    cache.wrote("shop", "Deployment/web", labelled(5, 3, 125), selected_by="stopline.dev/app")  # ...whose answer
    assert cache.get("shop", "web") is None, "the watch saw it deleted after this write"
    cache.wrote("shop", "Deployment/web", labelled(1, 0, 140), selected_by="stopline.dev/app")  # re-created
    assert cache.get("shop", "web") is not None


def test_a_broken_watch_serves_its_copies_for_the_grace_then_reads_go_to_the_api() -> None:
    cache = WorkloadCache()
    cache.replace("Deployment", [deployment(1, 1)])
    cache.failing("Deployment", grace=0.2)
    assert cache.get("shop", "web") is not None and cache.live("Deployment")
    time.sleep(0.25)
    assert cache.get("shop", "web") is None and not cache.live("Deployment") and len(cache) == 0
    cache.replace("Deployment", [deployment(2, 2)])  # listed again
    assert (cache.get("shop", "web") or {})["metadata"]["generation"] == 2
    cache.failing("Deployment", grace=0)
    assert cache.get("shop", "web") is None


def _ns(name: str, version: int, **meta: str) -> dict[str, Any]:
    return {"kind": "Namespace", "metadata": {"name": name, "resourceVersion": str(version), **meta},
            "status": {"phase": "Active"}}  # fmt: skip


def test_namespace_deletion_is_told_only_while_the_namespace_watch_is_live_and_has_seen_it() -> None:
    cache = WorkloadCache()
    assert cache.namespace_gone("shop") is None  # no watch: the guard asks the API server
    cache.replace("Namespace", [_ns("shop", 5)])
    assert cache.namespace_gone("shop") is False
    assert cache.namespace_gone("new") is None  # created after the LIST, its event not here yet: ask
    cache.on_event("MODIFIED", _ns("shop", 6, deletionTimestamp="2026-12-01T00:00:00Z"))
    assert cache.namespace_gone("shop") is True
    cache.on_event("DELETED", _ns("shop", 7))
    assert cache.namespace_gone("shop") is True
    cache.lost("Namespace")
    assert cache.namespace_gone("shop") is None  # the watch broke past its grace: ask again
    assert len(cache) == 0
