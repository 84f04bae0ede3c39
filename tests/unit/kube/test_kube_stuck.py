"""The kube adapter gathers why a workload is stuck, against the in-memory API server: what it reads, when."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest

from controller.kube.cluster import DIAGNOSE_AFTER, DIAGNOSE_EVERY, DIAGNOSE_MAX, Cluster
from controller.release.actions import LiveDeployment
from tests.unit.kube.fake_kube import FakeApiClient

NOW = datetime(2026, 12, 1, 14, 25, 40, tzinfo=UTC)
SA_MESSAGE = (
    'pods "frontend-86847559f6-" is forbidden: error looking up service account shop/frontend: '
    'serviceaccount "frontend" not found'
)
FAILED_CREATE = {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": SA_MESSAGE}


def deployment(name: str, *conditions: dict[str, Any], available: bool = False, generation: int = 2) -> dict[str, Any]:
    ready = 2 if available else 0
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "generation": 2, "annotations": {"deployment.kubernetes.io/revision": "2"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}}},
        "status": {
            "observedGeneration": generation,
            "replicas": 2,
            "updatedReplicas": 2 if available else 0,
            "availableReplicas": ready,
            "conditions": list(conditions),
        },
    }


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def api() -> FakeApiClient:
    return FakeApiClient()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def cluster(api: FakeApiClient, clock: Clock) -> Cluster:
    return Cluster(api, clock=lambda: NOW, monotonic=clock)  # type: ignore[arg-type]


async def stuck_states(c: Cluster, clock: Clock, keys: list[str]) -> dict[str, LiveDeployment]:
    """The states once the workloads have not been Available for DIAGNOSE_AFTER (the first look reads no pods)."""
    await c.states("shop", keys)
    clock.t += DIAGNOSE_AFTER
    return await c.states("shop", keys)


def seed_new_replicaset(api: FakeApiClient, name: str, *conditions: dict[str, Any]) -> None:
    owner = api.get("deployments", name)
    assert owner is not None
    api.put(
        {
            "metadata": {
                "name": f"{name}-new",
                "labels": {"app": name, "pod-template-hash": "new"},
                "annotations": {"deployment.kubernetes.io/revision": "2"},
                "ownerReferences": [{"kind": "Deployment", "name": name, "uid": owner["metadata"]["uid"]}],
            },
            "status": {"conditions": list(conditions)},
        },
        "replicasets",
    )


def waiting_pod(name: str, hash_: str, reason: str, image: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"app": "web", "pod-template-hash": hash_}},
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [{"name": "app", "image": image, "state": {"waiting": {"reason": reason}}}],
        },
    }


def reads(api: FakeApiClient) -> list[str]:
    """The paths of list calls the adapter made (discovery excluded)."""
    return [
        p
        for m, p in api.calls
        if m == "GET" and "/namespaces/" in p and p.rsplit("/", 1)[-1] in ("replicasets", "pods", "events")
    ]


async def test_a_failed_create_the_deployment_mirrors_costs_no_extra_read(api: FakeApiClient, clock: Clock) -> None:
    api.put(deployment("frontend", FAILED_CREATE), "deployments")
    states = await cluster(api, clock).states("shop", ["Deployment/frontend"])
    cause = states["Deployment/frontend"].cause
    assert cause is not None
    assert (cause.reason, cause.heals, cause.message) == (
        "FailedCreate",
        False,
        f"frontend: FailedCreate: {SA_MESSAGE}",
    )
    assert reads(api) == []


async def test_the_new_replicasets_failure_is_read_by_the_selector(api: FakeApiClient, clock: Clock) -> None:
    api.put(deployment("frontend"), "deployments")
    seed_new_replicaset(api, "frontend", FAILED_CREATE)
    states = await stuck_states(cluster(api, clock), clock, ["Deployment/frontend"])
    cause = states["Deployment/frontend"].cause
    assert cause is not None and cause.message == f"frontend: FailedCreate: {SA_MESSAGE}"
    assert reads(api) == ["/apis/apps/v1/namespaces/shop/replicasets"], "pods are not read once the ReplicaSet says it"


async def test_pods_of_the_new_replicaset_only(api: FakeApiClient, clock: Clock) -> None:
    api.put(deployment("web"), "deployments")
    seed_new_replicaset(api, "web")
    api.put(waiting_pod("web-new-1", "new", "ImagePullBackOff", "registry.example/web:v2-bad"), "pods")
    api.put(waiting_pod("web-new-2", "new", "ErrImagePull", "registry.example/web:v2-bad"), "pods")
    api.put(waiting_pod("web-new-3", "new", "ImagePullBackOff", "registry.example/web:v2-bad"), "pods")
    api.put(waiting_pod("web-old-1", "old", "CreateContainerConfigError", "registry.example/web:v1"), "pods")
    states = await stuck_states(cluster(api, clock), clock, ["Deployment/web"])
    cause = states["Deployment/web"].cause
    assert cause is not None
    assert (cause.reason, cause.pods, cause.message) == (
        "ImagePullBackOff",
        2,
        "web: 2 pods ImagePullBackOff (registry.example/web:v2-bad)",
    )
    assert reads(api) == ["/apis/apps/v1/namespaces/shop/replicasets", "/api/v1/namespaces/shop/pods"]


async def test_no_read_for_an_available_workload_or_one_whose_spec_is_not_observed_yet(
    api: FakeApiClient, clock: Clock
) -> None:
    api.put(deployment("web", available=True), "deployments")
    api.put(deployment("chat", generation=1), "deployments")  # the controller has not seen generation 2
    states = await cluster(api, clock).states("shop", ["Deployment/web", "Deployment/chat"])
    assert states["Deployment/web"].available and states["Deployment/web"].cause is None
    assert not states["Deployment/chat"].available and states["Deployment/chat"].cause is None
    assert reads(api) == []


async def test_a_cause_that_cannot_heal_is_read_again_every_second_not_on_every_change(
    api: FakeApiClient, clock: Clock
) -> None:
    api.put(deployment("web"), "deployments")
    seed_new_replicaset(api, "web")
    api.put(waiting_pod("web-new-1", "new", "ImagePullBackOff", "registry.example/web:v2-bad"), "pods")
    c = cluster(api, clock)
    await stuck_states(c, clock, ["Deployment/web"])
    assert len(reads(api)) == 2
    for _ in range(4):  # four ticks of 0.2 s
        states = await c.states("shop", ["Deployment/web"])
        assert states["Deployment/web"].cause is not None
        clock.t += 0.2
    assert len(reads(api)) == 2, "one ReplicaSet list and one pod list within DIAGNOSE_EVERY"
    live = api.get("deployments", "web")
    assert live is not None
    live["metadata"]["resourceVersion"] = "7"  # its status moved: no read of its own for that
    await c.states("shop", ["Deployment/web"])
    assert len(reads(api)) == 2
    for expected in (3, 4, 5):  # it cannot heal: every DIAGNOSE_EVERY, never backed off
        clock.t += DIAGNOSE_EVERY
        await c.states("shop", ["Deployment/web"])
        assert len(reads(api)) == expected
    # the generation's new ReplicaSet was listed once: after that only its pods are read
    assert [p.rsplit("/", 1)[-1] for p in reads(api)] == ["replicasets", "pods", "pods", "pods", "pods"]
    live["metadata"]["generation"] = 3  # a new push: its new ReplicaSet is looked up afresh
    live["status"]["observedGeneration"] = 3
    clock.t += DIAGNOSE_AFTER + DIAGNOSE_EVERY
    await c.states("shop", ["Deployment/web"])
    clock.t += DIAGNOSE_AFTER
    await c.states("shop", ["Deployment/web"])
    assert reads(api)[5].endswith("/replicasets"), reads(api)


@pytest.mark.parametrize(
    ("pod_reason", "expected_gaps"),
    [
        (None, [1.0, 2.0, 4.0, 8.0, 16.0, DIAGNOSE_MAX, DIAGNOSE_MAX]),
        ("ContainerCreating", [1.0, 2.0, 4.0, 8.0, 16.0, DIAGNOSE_MAX, DIAGNOSE_MAX]),
    ],
    ids=["nothing-found", "a-cause-that-heals"],
)
async def test_a_slow_rollout_that_can_heal_is_read_ever_less_often(
    api: FakeApiClient, clock: Clock, pod_reason: str | None, expected_gaps: list[float]
) -> None:
    api.put(deployment("web"), "deployments")
    seed_new_replicaset(api, "web")
    if pod_reason is not None:
        api.put(waiting_pod("web-new-1", "new", pod_reason, "registry.example/web:v2"), "pods")
    c = cluster(api, clock)
    await stuck_states(c, clock, ["Deployment/web"])
    read_at = [clock.t]
    while len(read_at) <= len(expected_gaps):  # a tick every 0.25 s, as the Release loop polls
        clock.t += 0.25
        before = len(reads(api))
        await c.states("shop", ["Deployment/web"])
        if len(reads(api)) > before:
            read_at.append(clock.t)
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(read_at)]
    assert gaps == expected_gaps


async def test_an_advancing_rollout_is_not_diagnosed_until_its_counters_stop_moving(
    api: FakeApiClient, clock: Clock
) -> None:
    web = api.put(deployment("web"), "deployments")
    seed_new_replicaset(api, "web")
    c = cluster(api, clock)
    await stuck_states(c, clock, ["Deployment/web"])  # the first read: ReplicaSets and pods
    first = len(reads(api))
    gap = DIAGNOSE_EVERY
    for ready in (1, 2, 3):  # a pod more ready by every gap: the rollout advances, nothing is listed
        web["status"] = {**web["status"], "readyReplicas": ready, "updatedReplicas": ready}
        clock.t += gap
        await c.states("shop", ["Deployment/web"])
        gap *= 2
    assert len(reads(api)) == first, reads(api)[first:]
    clock.t += gap  # a whole gap with no counter moving: stalled, so its pods are read
    await c.states("shop", ["Deployment/web"])
    assert len(reads(api)) == first + 1 and reads(api)[-1].endswith("/pods"), reads(api)[first:]


async def test_a_slow_rollout_that_turns_bad_is_read_every_second_again(api: FakeApiClient, clock: Clock) -> None:
    api.put(deployment("web"), "deployments")
    seed_new_replicaset(api, "web")
    c = cluster(api, clock)
    await stuck_states(c, clock, ["Deployment/web"])
    for _ in range(3):  # gaps 1, 2, 4: the next read is 8 s away
        clock.t += 4.0
        await c.states("shop", ["Deployment/web"])
    api.put(waiting_pod("web-new-1", "new", "ImagePullBackOff", "registry.example/web:v2-bad"), "pods")
    clock.t += 8.0
    states = await c.states("shop", ["Deployment/web"])
    cause = states["Deployment/web"].cause
    assert cause is not None and not cause.heals
    before = len(reads(api))
    clock.t += DIAGNOSE_EVERY
    await c.states("shop", ["Deployment/web"])
    assert len(reads(api)) == before + 1, "a cause that cannot heal is watched every second (its pods)"


async def test_a_statefulset_create_failure_comes_from_its_events(api: FakeApiClient, clock: Clock) -> None:
    sts = api.put(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db", "generation": 1},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "db"}}},
            "status": {"observedGeneration": 1, "replicas": 0, "updateRevision": "db-2"},
        },
        "statefulsets",
    )
    message = 'create Pod db-0 in StatefulSet db failed error: pods "db-0" is forbidden: exceeded quota: small'
    for i, (uid, reason) in enumerate(((sts["metadata"]["uid"], "FailedCreate"), ("someone-else", "FailedCreate"))):
        api.put(
            {
                "metadata": {"name": f"db.{i}"},
                "involvedObject": {"kind": "StatefulSet", "name": "db", "uid": uid},
                "reason": reason,
                "type": "Warning",
                "message": message if i == 0 else "not ours",
                "lastTimestamp": "2026-12-01T14:25:38Z",
            },
            "events",
        )
    states = await stuck_states(cluster(api, clock), clock, ["StatefulSet/db"])
    cause = states["StatefulSet/db"].cause
    assert cause is not None
    assert (cause.reason, cause.heals, cause.message) == ("FailedCreate", False, f"db: FailedCreate: {message}")
    assert reads(api) == ["/api/v1/namespaces/shop/pods", "/api/v1/namespaces/shop/events"]


async def test_a_pod_list_the_controller_may_not_make_never_holds_up_the_rollout(
    api: FakeApiClient, clock: Clock
) -> None:
    api.put(deployment("web"), "deployments")
    api.fail[("GET", "/apis/apps/v1/namespaces/shop/replicasets")] = 403
    states = await stuck_states(cluster(api, clock), clock, ["Deployment/web"])
    assert not states["Deployment/web"].available and states["Deployment/web"].cause is None
    api.put(deployment("chat", FAILED_CREATE), "deployments")  # its own condition needs no list
    states = await cluster(api, clock).states("shop", ["Deployment/chat"])
    cause = states["Deployment/chat"].cause
    assert cause is not None and cause.reason == "FailedCreate"


async def test_a_rollout_available_within_a_second_costs_no_extra_read(api: FakeApiClient, clock: Clock) -> None:
    api.put(deployment("web"), "deployments")
    seed_new_replicaset(api, "web")
    c = cluster(api, clock)
    for _ in range(3):
        states = await c.states("shop", ["Deployment/web"])
        assert states["Deployment/web"].cause is None
        clock.t += DIAGNOSE_AFTER / 4
    live = api.get("deployments", "web")
    assert live is not None
    live["status"] = deployment("web", available=True)["status"]
    clock.t += DIAGNOSE_AFTER
    assert (await c.states("shop", ["Deployment/web"]))["Deployment/web"].available
    assert reads(api) == []
