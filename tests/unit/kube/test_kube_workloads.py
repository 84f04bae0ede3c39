"""Rollout-complete rules per kind and the snapshot layout, over plain dicts."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controller.kube import snapshots as snap
from controller.kube.discovery import Mapper, parse_resource_list
from controller.kube.workloads import (
    DAEMONSET_REPLACE_ALL,
    DAEMONSET_SURGE_ALL,
    SURGE_ALL,
    fast_strategy,
    live_state,
)
from controller.release.actions import LiveDeployment


def obj(kind: str, spec: dict[str, Any], status: dict[str, Any], generation: int = 2) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": "x", "generation": generation}, "spec": spec, "status": status}


@pytest.mark.parametrize(
    ("kind", "doc", "ready"),
    [
        (
            "StatefulSet",
            obj(
                "StatefulSet",
                {"replicas": 2},
                {
                    "observedGeneration": 2,
                    "replicas": 2,
                    "readyReplicas": 2,
                    "updateRevision": "r2",
                    "currentRevision": "r2",
                },
            ),
            True,
        ),
        (
            "StatefulSet",
            obj(
                "StatefulSet",
                {"replicas": 2},
                {
                    "observedGeneration": 2,
                    "replicas": 2,
                    "readyReplicas": 2,
                    "updateRevision": "r2",
                    "currentRevision": "r1",
                },
            ),
            False,
        ),
        (
            "StatefulSet",
            obj(
                "StatefulSet",
                {"replicas": 2},
                {
                    "observedGeneration": 1,
                    "replicas": 2,
                    "readyReplicas": 2,
                    "updateRevision": "r2",
                    "currentRevision": "r2",
                },
            ),
            False,
        ),
        (
            "StatefulSet",
            obj(
                "StatefulSet",
                {"replicas": 2},
                {
                    "observedGeneration": 2,
                    "replicas": 2,
                    "readyReplicas": 1,
                    "updateRevision": "r2",
                    "currentRevision": "r2",
                },
            ),
            False,
        ),
        (
            "DaemonSet",
            obj(
                "DaemonSet",
                {},
                {
                    "observedGeneration": 2,
                    "desiredNumberScheduled": 2,
                    "updatedNumberScheduled": 2,
                    "numberAvailable": 2,
                },
            ),
            True,
        ),
        (
            "DaemonSet",
            obj(
                "DaemonSet",
                {},
                {
                    "observedGeneration": 2,
                    "desiredNumberScheduled": 2,
                    "updatedNumberScheduled": 1,
                    "numberAvailable": 2,
                },
            ),
            False,
        ),
        (
            "DaemonSet",
            obj(
                "DaemonSet",
                {},
                {
                    "observedGeneration": 1,
                    "desiredNumberScheduled": 2,
                    "updatedNumberScheduled": 2,
                    "numberAvailable": 2,
                },
            ),
            False,
        ),
        (
            "Deployment",
            obj(
                "Deployment",
                {"replicas": 1},
                {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1},
            ),
            True,
        ),
        (
            "Deployment",
            obj(
                "Deployment",
                {"replicas": 2},
                {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2},
            ),
            False,
        ),
        ("ConfigMap", {"kind": "ConfigMap", "metadata": {"name": "x"}}, True),
    ],
    ids=[
        "sts-done",
        "sts-old-revision",
        "sts-not-observed",
        "sts-not-ready",
        "ds-done",
        "ds-not-updated",
        "ds-not-observed",
        "deploy-done",
        "deploy-old-pods-left",
        "other-kinds-exist",
    ],
)
def test_rollout_rules(kind: str, doc: dict[str, Any], ready: bool) -> None:
    assert live_state(kind, f"{kind}/x", doc).available is ready


def test_absent_objects_are_not_ready() -> None:
    assert live_state("StatefulSet", "StatefulSet/x", None).exists is False


def test_encode_decode_round_trip_with_compression() -> None:
    small = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "a", "uid": "u", "resourceVersion": "3"},
        "data": {"k": "v"},
    }
    big = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}, "data": {"k": "x" * 3_000_000}}
    data = {**snap.encode("ConfigMap/a", small), **snap.encode("ConfigMap/b", big), **snap.encode("ConfigMap/c", None)}
    assert "configmap.a" in data and data["configmap.c"] == snap.ABSENT_MARKER
    assert all(len(v) <= snap.PART_LIMIT for v in data.values())
    out = snap.decode(data)
    assert out["configmap.a"] == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "a"},
        "data": {"k": "v"},
    }
    assert out["configmap.b"] == big and out["configmap.c"] is None
    assert snap.has_entry(data, "ConfigMap/b") and not snap.has_entry(data, "ConfigMap/d")


def test_place_is_append_only() -> None:
    parts = [{"a": "1" * 500}]
    out = snap.place(parts, [{"b": "2" * 400}, {"c": "3" * 400}], limit=1000)
    assert out == [{"a": "1" * 500, "b": "2" * 400}, {"c": "3" * 400}]
    assert snap.place([], [{"x": "y"}]) == [{"x": "y"}]


def test_part_names() -> None:
    assert [snap.part_name("r-snapshot", i) for i in range(3)] == ["r-snapshot", "r-snapshot-2", "r-snapshot-3"]


def test_discovery_parsing_and_lookup() -> None:
    docs = {
        "/apis": {
            "groups": [{"versions": [{"groupVersion": "apps/v1"}], "preferredVersion": {"groupVersion": "apps/v1"}}]
        },
        "/api/v1": {
            "groupVersion": "v1",
            "resources": [
                {"name": "configmaps", "kind": "ConfigMap", "namespaced": True, "verbs": ["list", "delete", "get"]},
                {"name": "namespaces", "kind": "Namespace", "namespaced": False, "verbs": ["list", "delete"]},
            ],
        },
        "/apis/apps/v1": {
            "groupVersion": "apps/v1",
            "resources": [
                {"name": "deployments", "kind": "Deployment", "namespaced": True, "verbs": ["list", "delete"]},
                {"name": "deployments/scale", "kind": "Scale", "namespaced": True, "verbs": ["get"]},
            ],
        },
    }
    fetched: list[str] = []

    def fetch(path: str) -> dict[str, Any]:
        fetched.append(path)
        return docs[path]

    assert [r.plural for r in parse_resource_list(docs["/apis/apps/v1"])] == ["deployments"]
    m = Mapper(fetch, clock=lambda: 0.0)
    dep = m.lookup("Deployment", "apps/v1")
    assert dep is not None and dep.path("shop", "web") == "/apis/apps/v1/namespaces/shop/deployments/web"
    assert (
        m.lookup("ConfigMap") is not None and m.lookup("ConfigMap").path("shop") == "/api/v1/namespaces/shop/configmaps"
    )  # type: ignore[union-attr]
    assert m.lookup("Widget") is None
    assert sorted(r.kind for r in m.listable()) == ["ConfigMap", "Deployment"]
    assert fetched.count("/apis") == 1  # cached; a miss within 2 s does not rediscover


def test_a_kind_installed_later_is_found_after_a_rediscovery() -> None:
    now = [0.0]
    served: list[dict[str, Any]] = []

    def fetch(path: str) -> dict[str, Any]:
        if path == "/apis":
            return (
                {
                    "groups": [
                        {"versions": [{"groupVersion": "x.io/v1"}], "preferredVersion": {"groupVersion": "x.io/v1"}}
                    ]
                }
                if served
                else {"groups": []}
            )
        if path == "/api/v1":
            return {"groupVersion": "v1", "resources": []}
        return {"groupVersion": "x.io/v1", "resources": served}

    m = Mapper(fetch, clock=lambda: now[0])
    assert m.lookup("Widget") is None
    served.append({"name": "widgets", "kind": "Widget", "namespaced": True, "verbs": ["get"]})
    assert m.lookup("Widget") is None  # within REFRESH_AFTER_MISS of the last discovery
    now[0] = 5.0
    assert m.lookup("Widget", "x.io/v1") is not None


DEADLINE = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "too slow"}
PROGRESSING = {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}


def deployment(
    *,
    replicas: int | None = 3,
    generation: int = 2,
    observed: int = 2,
    updated: int = 3,
    total: int = 3,
    available: int = 3,
    paused: bool = False,
    conditions: tuple[dict[str, str], ...] = (),
) -> dict[str, Any]:
    spec: dict[str, Any] = {"paused": paused} if paused else {}
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "metadata": {"name": "web", "generation": generation},
        "spec": spec,
        "status": {
            "observedGeneration": observed,
            "updatedReplicas": updated,
            "replicas": total,
            "availableReplicas": available,
            "conditions": list(conditions),
        },
    }


PAUSED = "Deployment is paused (spec.paused: true); its rollout cannot finish until it is resumed"
DEPLOYMENT_CASES: dict[str, tuple[dict[str, Any] | None, LiveDeployment]] = {
    "gone": (None, LiveDeployment("web", exists=False)),
    "rolled-out": (deployment(), LiveDeployment("web", available=True)),
    "observed-generation-behind": (deployment(observed=1), LiveDeployment("web")),
    "old-deadline-while-behind": (deployment(observed=1, conditions=(DEADLINE,)), LiveDeployment("web")),
    "deadline-exceeded": (
        deployment(updated=1, available=1, total=4, conditions=(DEADLINE,)),
        LiveDeployment("web", failure="too slow"),
    ),
    "still-progressing": (deployment(updated=2, total=3, conditions=(PROGRESSING,)), LiveDeployment("web")),
    "surge-in-flight": (deployment(updated=3, total=4, available=3), LiveDeployment("web")),
    "new-pods-not-available-yet": (deployment(available=2), LiveDeployment("web")),
    "replicas-0": (deployment(replicas=0, updated=0, total=0, available=0), LiveDeployment("web", available=True)),
    "scaling-down-to-0": (deployment(replicas=0, updated=0, total=2, available=2), LiveDeployment("web")),
    "replicas-unset-means-1": (
        deployment(replicas=None, updated=1, total=1, available=1),
        LiveDeployment("web", available=True),
    ),
    "paused-mid-rollout": (
        deployment(paused=True, updated=0, available=3, total=3),
        LiveDeployment("web", failure=PAUSED),
    ),
    "paused-but-complete": (deployment(paused=True), LiveDeployment("web", available=True)),
    "paused-behind": (deployment(paused=True, observed=1, updated=0), LiveDeployment("web")),
    "no-status-yet": ({"metadata": {"generation": 1}, "spec": {"replicas": 1}}, LiveDeployment("web")),
}


@pytest.mark.parametrize("case", DEPLOYMENT_CASES, ids=str)
def test_deployment_rollout_state(case: str) -> None:
    obj, expected = DEPLOYMENT_CASES[case]
    assert live_state("Deployment", "web", obj) == expected


# ---------------------------------------------------------------- fast undo strategies
def _workload(kind: str, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"template": {"spec": {"containers": [{"name": "c", "image": "i:v1"}]}}}
    return {"kind": kind, "metadata": {"name": "w"}, "spec": {**base, **spec}}


HOST_PORT = {"spec": {"containers": [{"name": "c", "image": "i:v1", "ports": [{"containerPort": 80, "hostPort": 80}]}]}}


@pytest.mark.parametrize(
    ("kind", "spec", "field", "expected"),
    [
        ("Deployment", {"strategy": {"type": "RollingUpdate"}}, "strategy", SURGE_ALL),
        ("Deployment", {}, "strategy", SURGE_ALL),
        ("Deployment", {"strategy": {"type": "Recreate"}}, "strategy", None),
        ("DaemonSet", {"updateStrategy": {"type": "RollingUpdate"}}, "updateStrategy", DAEMONSET_SURGE_ALL),
        ("DaemonSet", {"template": HOST_PORT}, "updateStrategy", DAEMONSET_REPLACE_ALL),
        ("DaemonSet", {"updateStrategy": {"type": "OnDelete"}}, "updateStrategy", None),
        (
            "StatefulSet",
            {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}},
            "updateStrategy",
            {"type": "RollingUpdate", "rollingUpdate": {"partition": 2, "maxUnavailable": "100%"}},
        ),
        ("StatefulSet", {"updateStrategy": {"type": "OnDelete"}}, "updateStrategy", None),
        ("ConfigMap", {}, "strategy", None),
    ],
    ids=[
        "deployment-surge-all",
        "deployment-default-strategy",
        "deployment-recreate-unchanged",
        "daemonset-surge-all",
        "daemonset-hostport-replaces-all",
        "daemonset-ondelete-unchanged",
        "statefulset-all-unavailable-keeps-partition",
        "statefulset-ondelete-unchanged",
        "other-kinds-unchanged",
    ],
)
def test_fast_strategy(kind: str, spec: dict[str, Any], field: str, expected: dict[str, Any] | None) -> None:
    obj = _workload(kind, **spec)
    before = copy.deepcopy(obj)
    out = fast_strategy(kind, obj)
    assert obj == before  # never changes its input
    if expected is None:
        assert out is None
        return
    assert out is not None and out["spec"][field] == expected
    # only the strategy differs: the pod template (and so the ReplicaSet / revision) is the snapshot's
    assert {k: v for k, v in out["spec"].items() if k != field} == {
        k: v for k, v in before["spec"].items() if k != field
    }
