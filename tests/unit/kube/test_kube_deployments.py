"""The Deployment adapter's pure rollout judgement, and restore against a fake AppsV1Api."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.errors import ClusterError
from controller.kube.deployments import RESTORE_ATTEMPTS, SNAPSHOT_KEY_PREFIX, Deployments, live_state
from controller.release.actions import LiveDeployment

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
CASES: dict[str, tuple[dict[str, Any] | None, LiveDeployment]] = {
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


@pytest.mark.parametrize("case", CASES, ids=str)
def test_live_state(case: str) -> None:
    obj, expected = CASES[case]
    assert live_state("web", obj) == expected


# -- restore against a fake AppsV1Api ------------------------------------------------------------------


@dataclass
class Raw:
    data: bytes


@dataclass
class FakeApps:
    """Deployments by name; ``conflicts`` replaces answer 409 before the next one succeeds."""

    live: dict[str, dict[str, Any]]
    conflicts: int = 0
    calls: list[tuple[str, str, str | None]] = field(default_factory=list)

    def read_namespaced_deployment(self, name: str, namespace: str, **_: Any) -> Raw:
        if name not in self.live:
            raise ApiException(status=404, reason="Not Found")
        return Raw(json.dumps(self.live[name]).encode())

    def replace_namespaced_deployment(self, name: str, namespace: str, body: dict[str, Any]) -> None:
        rv = body["metadata"].get("resourceVersion")
        self.calls.append(("replace", name, rv))
        if self.conflicts:
            self.conflicts -= 1
            # someone else wrote in between: the stored object moves on
            current = self.live[name]["metadata"]
            current["resourceVersion"] = str(int(current["resourceVersion"]) + 1)
            raise ApiException(status=409, reason="Conflict")
        assert rv == self.live[name]["metadata"]["resourceVersion"], "replace with a stale resourceVersion"
        self.live[name] = {**body, "metadata": {**body["metadata"], "resourceVersion": str(int(rv) + 1)}}

    def create_namespaced_deployment(self, namespace: str, body: dict[str, Any]) -> None:
        self.calls.append(("create", body["metadata"]["name"], None))
        self.live[body["metadata"]["name"]] = {**body, "metadata": {**body["metadata"], "resourceVersion": "1"}}


@dataclass
class FakeCore:
    snapshot: dict[str, str]

    def read_namespaced_config_map(self, name: str, namespace: str, **_: Any) -> Raw:
        return Raw(json.dumps({"metadata": {"name": name}, "data": self.snapshot}).encode())


SAVED = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": "web:v1"}]}}},
}


def adapter(apps: FakeApps) -> Deployments:
    d = Deployments(client.ApiClient())
    d._apps = apps
    d._core = FakeCore({SNAPSHOT_KEY_PREFIX + "web": json.dumps(SAVED)})
    return d


def pushed() -> dict[str, Any]:
    bad = json.loads(json.dumps(SAVED))
    bad["spec"]["template"]["spec"]["containers"][0]["image"] = "web:v2"
    bad["metadata"].update(resourceVersion="10", ownerReferences=[{"kind": "X", "name": "o", "uid": "u"}])
    return bad


@pytest.mark.timeout(10)
def test_restore_retries_a_409_with_the_fresh_resource_version() -> None:
    apps = FakeApps({"web": pushed()}, conflicts=1)
    restored, deleted = asyncio.run(adapter(apps).restore("shop", "snap", ["web"], [], "rel"))

    assert (restored, deleted) == (["web"], [])
    assert apps.calls == [("replace", "web", "10"), ("replace", "web", "11")]
    live = apps.live["web"]
    assert live["spec"] == SAVED["spec"]
    assert live["metadata"]["ownerReferences"] == [{"kind": "X", "name": "o", "uid": "u"}]


@pytest.mark.timeout(10)
def test_restore_gives_up_after_repeated_409s_with_a_cluster_error() -> None:
    apps = FakeApps({"web": pushed()}, conflicts=RESTORE_ATTEMPTS)
    with pytest.raises(ClusterError, match="restore Deployment shop/web: 409 Conflict"):
        asyncio.run(adapter(apps).restore("shop", "snap", ["web"], [], "rel"))
    assert len(apps.calls) == RESTORE_ATTEMPTS
    assert apps.live["web"]["spec"]["template"]["spec"]["containers"][0]["image"] == "web:v2"


@pytest.mark.timeout(10)
def test_restore_recreates_a_deleted_deployment() -> None:
    apps = FakeApps({})
    asyncio.run(adapter(apps).restore("shop", "snap", ["web"], [], "rel"))
    assert apps.calls == [("create", "web", None)]
    assert apps.live["web"]["spec"] == SAVED["spec"]
