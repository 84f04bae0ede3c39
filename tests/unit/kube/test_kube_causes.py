"""Cause extraction and heal/no-heal classification, from condition and pod status shapes the API serves.

The shapes below were copied from a kube-apiserver / kube-controller-manager v1.35 (the e2e stack) and
from kubelet pod statuses (container waiting states are what kubelet reports; the e2e stack's fake nodes
never pull images).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.kube.causes import (
    deployment_cause,
    events_cause,
    heals,
    make_cause,
    new_replicaset,
    pods_cause,
    selector_string,
    statefulset_cause,
)

SA_MESSAGE = (
    'pods "frontend-86847559f6-" is forbidden: error looking up service account shop/frontend: '
    'serviceaccount "frontend" not found'
)
QUOTA_MESSAGE = (
    'pods "big-b58d98d64-2whmw" is forbidden: exceeded quota: small, requested: requests.cpu=2, '
    "used: requests.cpu=0, limited: requests.cpu=1"
)
UNSCHEDULABLE = (
    "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. no new claims to "
    "deallocate, preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
)
PDE = 'ReplicaSet "web-5d8f7c9b6d" has timed out progressing.'
NOW = datetime(2026, 12, 1, 14, 25, 40, tzinfo=UTC)


def replica_failure(message: str) -> dict[str, Any]:
    return {
        "lastTransitionTime": "2026-12-01T14:25:36Z",
        "message": message,
        "reason": "FailedCreate",
        "status": "True",
        "type": "ReplicaFailure",
    }


PROGRESSING = {
    "type": "Progressing",
    "status": "True",
    "reason": "NewReplicaSetCreated",
    "message": 'Created new replica set "frontend-86847559f6"',
}
UNAVAILABLE = {
    "type": "Available",
    "status": "False",
    "reason": "MinimumReplicasUnavailable",
    "message": "Deployment does not have minimum availability.",
}


def deployment(name: str, *conditions: dict[str, Any], revision: str = "2") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "uid": f"{name}-uid",
            "generation": 2,
            "annotations": {"deployment.kubernetes.io/revision": revision},
        },
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}}},
        "status": {"observedGeneration": 2, "conditions": list(conditions)},
    }


def replicaset(name: str, owner: str, revision: str, hash_: str, *conditions: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"{name}-{hash_}",
            "labels": {"app": name, "pod-template-hash": hash_},
            "annotations": {"deployment.kubernetes.io/revision": revision},
            "ownerReferences": [{"kind": "Deployment", "name": name, "uid": owner}],
        },
        "status": {"conditions": list(conditions)} if conditions else {},
    }


def waiting(reason: str, message: str = "", image: str = "registry.example/web:v2-bad") -> dict[str, Any]:
    return {
        "name": "app",
        "image": image,
        "ready": False,
        "restartCount": 0,
        "started": False,
        "state": {"waiting": {"reason": reason, **({"message": message} if message else {})}},
    }


def pod(
    name: str, hash_: str = "new", *, containers: list[dict[str, Any]] | None = None, **status: Any
) -> dict[str, Any]:
    st: dict[str, Any] = {"phase": "Pending", **status}
    if containers is not None:
        st["containerStatuses"] = containers
        st.setdefault(
            "conditions",
            [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
            ],
        )
    return {"metadata": {"name": name, "labels": {"app": "web", "pod-template-hash": hash_}}, "status": st}


UNSCHEDULED_POD = pod(
    "db-64c4c59ffd-klnt8",
    conditions=[
        {
            "lastProbeTime": None,
            "lastTransitionTime": "2026-12-01T14:25:36Z",
            "message": UNSCHEDULABLE,
            "observedGeneration": 1,
            "reason": "Unschedulable",
            "status": "False",
            "type": "PodScheduled",
        }
    ],
    qosClass="BestEffort",
)
READY_POD = pod(
    "web-old-1",
    "old",
    phase="Running",
    conditions=[{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}],
)


@pytest.mark.parametrize(
    ("reason", "heal"),
    [
        ("FailedCreate", False),
        ("ImagePullBackOff", False),
        ("ErrImagePull", False),
        ("InvalidImageName", False),
        ("CreateContainerConfigError", False),
        ("ProgressDeadlineExceeded", False),
        ("Unschedulable", True),
        ("ContainerCreating", True),
        ("PodInitializing", True),
        ("CrashLoopBackOff", True),
    ],
    ids=lambda v: str(v),
)
def test_classification(reason: str, heal: bool) -> None:
    assert heals(reason) is heal


CASES: list[tuple[str, dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], tuple[str, str, bool, int]]] = [
    (
        "missing-serviceaccount-on-the-deployment",
        deployment("frontend", PROGRESSING, UNAVAILABLE, replica_failure(SA_MESSAGE)),
        [replicaset("frontend", "frontend-uid", "2", "86847559f6", replica_failure(SA_MESSAGE))],
        [],
        ("FailedCreate", f"frontend: FailedCreate: {SA_MESSAGE}", False, 0),
    ),
    (
        "missing-serviceaccount-on-the-new-replicaset-only",
        deployment("frontend", PROGRESSING, UNAVAILABLE),
        [
            replicaset("frontend", "frontend-uid", "1", "old"),
            replicaset("frontend", "frontend-uid", "2", "86847559f6", replica_failure(SA_MESSAGE)),
        ],
        [],
        ("FailedCreate", f"frontend: FailedCreate: {SA_MESSAGE}", False, 0),
    ),
    (
        "quota-exceeded",
        deployment("big", UNAVAILABLE),
        [replicaset("big", "big-uid", "2", "b58d98d64", replica_failure(QUOTA_MESSAGE))],
        [],
        ("FailedCreate", f"big: FailedCreate: {QUOTA_MESSAGE}", False, 0),
    ),
    (
        "progress-deadline-exceeded",
        deployment(
            "web",
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": PDE},
        ),
        [],
        [],
        ("ProgressDeadlineExceeded", f"web: ProgressDeadlineExceeded: {PDE}", False, 0),
    ),
    (
        "image-pull-backoff-on-two-new-pods",
        deployment("web", PROGRESSING, UNAVAILABLE),
        [replicaset("web", "web-uid", "1", "old"), replicaset("web", "web-uid", "2", "new")],
        [
            READY_POD,
            pod(
                "web-new-1",
                containers=[
                    waiting("ImagePullBackOff", 'Back-off pulling image "registry.example/web:v2-bad"'),
                ],
            ),
            pod("web-new-2", containers=[waiting("ErrImagePull", "rpc error: code = NotFound")]),
            pod("web-new-3", containers=[waiting("ImagePullBackOff", 'Back-off pulling image "x"')]),
        ],
        ("ImagePullBackOff", "web: 2 pods ImagePullBackOff (registry.example/web:v2-bad)", False, 2),
    ),
    (
        "create-container-config-error",
        deployment("web", PROGRESSING, UNAVAILABLE),
        [replicaset("web", "web-uid", "2", "new")],
        [pod("web-new-1", containers=[waiting("CreateContainerConfigError", 'secret "web-env" not found')])],
        ("CreateContainerConfigError", 'web: 1 pod CreateContainerConfigError: secret "web-env" not found', False, 1),
    ),
    (
        "unschedulable",
        deployment("db", PROGRESSING, UNAVAILABLE),
        [replicaset("db", "db-uid", "2", "new")],
        [UNSCHEDULED_POD],
        ("Unschedulable", f"db: Unschedulable: {UNSCHEDULABLE}", True, 1),
    ),
    (
        "cannot-heal-beats-can-heal",
        deployment("web", PROGRESSING, UNAVAILABLE),
        [replicaset("web", "web-uid", "2", "new")],
        [
            UNSCHEDULED_POD,
            pod("web-new-9", containers=[waiting("ContainerCreating")]),
            pod("web-new-1", containers=[waiting("InvalidImageName", "", image="registry.example/web:BAD TAG")]),
        ],
        ("InvalidImageName", "web: 1 pod InvalidImageName (registry.example/web:BAD TAG)", False, 1),
    ),
    (
        "container-creating-is-progress-that-heals",
        deployment("web", PROGRESSING, UNAVAILABLE),
        [replicaset("web", "web-uid", "2", "new")],
        [pod("web-new-1", containers=[waiting("ContainerCreating")])],
        ("ContainerCreating", "web: 1 pod ContainerCreating", True, 1),
    ),
    (
        "old-pods-are-not-the-cause",
        deployment("web", PROGRESSING, UNAVAILABLE),
        [replicaset("web", "web-uid", "1", "old"), replicaset("web", "web-uid", "2", "new")],
        [pod("web-old-2", "old", containers=[waiting("ImagePullBackOff")]), READY_POD],
        ("", "", True, 0),
    ),
]


@pytest.mark.parametrize(("deploy", "replicasets", "pods", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_deployment_cause(
    deploy: dict[str, Any],
    replicasets: list[dict[str, Any]],
    pods: list[dict[str, Any]],
    want: tuple[str, str, bool, int],
) -> None:
    key = f"Deployment/{deploy['metadata']['name']}"
    cause = deployment_cause(key, deploy, replicasets, pods)
    if not want[0]:
        assert cause is None
        return
    assert cause is not None
    assert (cause.reason, cause.message, cause.heals, cause.pods) == want
    assert cause.workload == key


def test_the_new_replicaset_is_the_one_with_the_deployments_revision() -> None:
    d = deployment("web", revision="3")
    mine = [
        replicaset("web", "web-uid", "3", "c"),
        replicaset("web", "web-uid", "4", "d"),  # a newer revision (rolled back to 3 since)
        replicaset("web", "other-uid", "3", "x"),  # another Deployment's, same labels
    ]
    found = new_replicaset(d, mine)
    assert found is not None and found["metadata"]["name"] == "web-c"
    assert new_replicaset(d, [replicaset("web", "other-uid", "3", "x")]) is None


def test_statefulset_pods_of_the_update_revision_only() -> None:
    sts = {"metadata": {"name": "db", "uid": "db-uid"}, "status": {"updateRevision": "db-2"}}
    old = pod("db-0", containers=[waiting("ImagePullBackOff")])
    old["metadata"]["labels"]["controller-revision-hash"] = "db-1"
    new = pod("db-1", containers=[waiting("ErrImagePull", image="registry.example/db:v2")])
    new["metadata"]["labels"]["controller-revision-hash"] = "db-2"
    cause = statefulset_cause("StatefulSet/db", sts, [old, new])
    assert cause is not None
    assert (cause.reason, cause.message) == ("ErrImagePull", "db: 1 pod ErrImagePull (registry.example/db:v2)")


def test_statefulset_create_failure_from_its_event() -> None:
    sts = {"metadata": {"name": "db", "uid": "db-uid"}, "status": {"updateRevision": "db-2"}}
    message = (
        'create Pod db-0 in StatefulSet db failed error: pods "db-0" is forbidden: error looking up service '
        'account shop/db: serviceaccount "db" not found'
    )
    events = [
        {"reason": "FailedCreate", "type": "Warning", "message": "old one", "lastTimestamp": "2026-12-01T14:00:00Z"},
        {"reason": "FailedCreate", "type": "Warning", "message": message, "lastTimestamp": "2026-12-01T14:25:39Z"},
        {"reason": "SuccessfulCreate", "type": "Normal", "message": "created", "lastTimestamp": "2026-12-01T14:25:39Z"},
    ]
    cause = statefulset_cause("StatefulSet/db", sts, [], events, NOW)
    assert cause is not None
    assert (cause.reason, cause.message, cause.heals) == ("FailedCreate", f"db: FailedCreate: {message}", False)
    stale = events_cause("StatefulSet/db", events[:1], NOW)
    assert stale is None, "a FailedCreate of an earlier rollout (25 min ago) is not this rollout's cause"
    assert events_cause("StatefulSet/db", events[1:2], NOW + timedelta(minutes=3)) is None


def test_pods_cause_counts_each_pod_once_and_skips_ready_and_terminating_pods() -> None:
    two_containers = pod("web-new-1", containers=[waiting("ImagePullBackOff"), waiting("ImagePullBackOff")])
    terminating = pod("web-new-2", containers=[waiting("ImagePullBackOff")])
    terminating["metadata"]["deletionTimestamp"] = "2026-12-01T14:25:00Z"
    cause = pods_cause("Deployment/web", [two_containers, terminating, READY_POD])
    assert cause is not None and cause.pods == 1
    assert pods_cause("Deployment/web", [READY_POD]) is None


def test_messages_are_clipped_and_one_line() -> None:
    cause = make_cause("Deployment/web", "FailedCreate", "line one\n  line two " + "x" * 1000)
    assert "\n" not in cause.message and cause.message.startswith("web: FailedCreate: line one line two x")
    assert len(cause.detail) == 400 and cause.detail.endswith("…")


@pytest.mark.parametrize(
    ("selector", "query"),
    [
        ({"matchLabels": {"app": "web", "tier": "front"}}, "app=web,tier=front"),
        (
            {
                "matchLabels": {"app": "web"},
                "matchExpressions": [
                    {"key": "track", "operator": "In", "values": ["a", "b"]},
                    {"key": "env", "operator": "NotIn", "values": ["dev"]},
                    {"key": "owner", "operator": "Exists"},
                    {"key": "legacy", "operator": "DoesNotExist"},
                ],
            },
            "app=web,track in (a,b),env notin (dev),owner,!legacy",
        ),
        ({}, None),
        (None, None),
    ],
    ids=["labels", "expressions", "empty", "none"],
)
def test_selector_string(selector: dict[str, Any] | None, query: str | None) -> None:
    assert selector_string(selector) == query
