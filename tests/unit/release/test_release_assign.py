"""Phase assignment and ordering of every object in a revision (controller.release.assign), table-driven."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from controller.release.assign import (
    ANNOTATION_PHASE,
    ANNOTATION_RELEASE,
    LABEL_APP,
    Assignment,
    LiveObject,
    PhaseTarget,
    app_id,
    assign,
    describe,
    order,
    problems,
    prune_set,
    split_key,
    tier,
)


def deployment(
    name: str,
    *,
    kind: str = "Deployment",
    labels: Mapping[str, str] | None = None,
    pod: Any = None,
    pod_labels: Mapping[str, str] | None = None,
    namespace: str | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": dict(labels or {"app": name})}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": meta,
        "spec": {"template": {"metadata": {"labels": dict(pod_labels or {"app": name})}, "spec": pod or {}}},
    }


def obj(kind: str, name: str, api_version: str = "v1", **extra: Any) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}, **extra}


def env_from(*configmaps: str) -> dict[str, Any]:
    return {"containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": n}} for n in configmaps]}]}


WEB = deployment("web", pod=env_from("shared"))
CHAT = deployment("chat", labels={"app": "chat", "tier": "chat"}, pod=env_from("shared", "chat-config"))
DB = deployment("db", kind="StatefulSet", pod={"volumes": [{"name": "s", "secret": {"secretName": "db-creds"}}]})
AGENT = deployment("agent", kind="DaemonSet", pod={"serviceAccountName": "agent"})
CANARY = [PhaseTarget("canary", deployments=("web",)), PhaseTarget("rest", remaining=True)]


@dataclass(frozen=True)
class Case:
    id: str
    docs: list[dict[str, Any]]
    targets: list[PhaseTarget]
    expected: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # phase → objects in apply order
    workloads: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    error: str | None = None
    unassigned: tuple[str, ...] = ()


CASES = [
    Case(
        "config-used-by-two-phases-goes-with-the-first",
        [CHAT, WEB, obj("ConfigMap", "shared"), obj("ConfigMap", "chat-config")],
        CANARY,
        {"canary": ("ConfigMap/shared", "Deployment/web"), "rest": ("ConfigMap/chat-config", "Deployment/chat")},
    ),
    Case(
        "unreferenced-objects-go-with-the-first-phase",
        [WEB, CHAT, obj("ConfigMap", "orphan"), obj("Widget", "w1", "example.com/v1")],
        [PhaseTarget("one", deployments=("chat",)), PhaseTarget("two", remaining=True)],
        {"one": ("ConfigMap/orphan", "Deployment/chat", "Widget/w1"), "two": ("Deployment/web",)},
    ),
    Case(
        "service-pdb-hpa-follow-their-workload-after-it",
        [
            WEB,
            CHAT,
            obj("Service", "chat", spec={"selector": {"app": "chat"}}),
            obj("PodDisruptionBudget", "chat", "policy/v1", spec={"selector": {"matchLabels": {"app": "chat"}}}),
            obj(
                "HorizontalPodAutoscaler",
                "chat",
                "autoscaling/v2",
                spec={"scaleTargetRef": {"kind": "Deployment", "name": "chat"}},
            ),
        ],
        CANARY,
        {
            "canary": ("Deployment/web",),
            "rest": (
                "Deployment/chat",
                "HorizontalPodAutoscaler/chat",
                "PodDisruptionBudget/chat",
                "Service/chat",
            ),
        },
    ),
    Case(
        "rbac-chain-follows-the-service-account",
        [
            WEB,
            AGENT,
            obj("ServiceAccount", "agent"),
            obj(
                "RoleBinding",
                "agent",
                "rbac.authorization.k8s.io/v1",
                subjects=[{"kind": "ServiceAccount", "name": "agent"}],
                roleRef={"kind": "Role", "name": "reader"},
            ),
            obj("Role", "reader", "rbac.authorization.k8s.io/v1"),
        ],
        CANARY,
        {
            "canary": ("Deployment/web",),
            "rest": ("Role/reader", "RoleBinding/agent", "ServiceAccount/agent", "DaemonSet/agent"),
        },
    ),
    Case(
        "kinds-by-name-selector-and-remaining",
        [WEB, DB, AGENT, obj("Secret", "db-creds")],
        [
            PhaseTarget("db", workloads=(("StatefulSet", "db"),)),
            PhaseTarget("daemons", kind="DaemonSet", remaining=True),
        ],
        {"db": ("Secret/db-creds", "StatefulSet/db"), "daemons": ("DaemonSet/agent",)},
        {"db": ("StatefulSet/db",), "daemons": ("DaemonSet/agent",)},
        unassigned=("Deployment/web",),
    ),
    Case(
        "cronjob-and-its-config-go-first-not-waited-on",
        [
            WEB,
            CHAT,
            obj("ConfigMap", "cron"),
            obj(
                "CronJob",
                "nightly",
                "batch/v1",
                spec={"jobTemplate": {"spec": {"template": {"spec": env_from("cron")}}}},
            ),
        ],
        [PhaseTarget("one", deployments=("chat",)), PhaseTarget("two", remaining=True)],
        {"one": ("ConfigMap/cron", "Deployment/chat", "CronJob/nightly"), "two": ("Deployment/web",)},
        {"one": ("Deployment/chat",), "two": ("Deployment/web",)},
    ),
    Case(
        "name-in-two-kinds-without-kind-is-an-error",
        [deployment("db"), DB],
        [PhaseTarget("one", workloads=((None, "db"),))],
        error=(
            "phase one: workload name(s) db (Deployment, StatefulSet) exist in more than one kind; say which with kind:"
        ),
    ),
    Case(
        "name-in-two-kinds-with-kind-is-fine",
        [deployment("db"), DB],
        [PhaseTarget("one", workloads=(("StatefulSet", "db"),)), PhaseTarget("two", remaining=True)],
        {"one": ("StatefulSet/db",), "two": ("Deployment/db",)},
    ),
    Case(
        "missing-workload-is-an-error",
        [WEB],
        [PhaseTarget("one", workloads=(("StatefulSet", "nope"),))],
        error="phase one: workload(s) StatefulSet/nope not in the manifests at abc1234",
    ),
    Case(
        "ingress-follows-its-service",
        [
            WEB,
            CHAT,
            obj("Service", "chat", spec={"selector": {"app": "chat"}}),
            obj(
                "Ingress",
                "chat",
                "networking.k8s.io/v1",
                spec={"rules": [{"http": {"paths": [{"backend": {"service": {"name": "chat"}}}]}}]},
            ),
        ],
        CANARY,
        {"canary": ("Deployment/web",), "rest": ("Deployment/chat", "Ingress/chat", "Service/chat")},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_assign(case: Case) -> None:
    out = assign(case.targets, [describe(d) for d in case.docs], "abc1234")
    if case.error:
        assert out == Assignment(error=case.error, error_phase=case.targets[0].name)
        return
    assert out.error is None
    assert {p.name: p.objects for p in out.phases} == dict(case.expected)
    for name, workloads in case.workloads.items():
        assert next(p for p in out.phases if p.name == name).workloads == workloads
    assert out.unassigned == case.unassigned


@pytest.mark.parametrize(
    ("docs", "scopes", "expected"),
    [
        ([WEB], {}, []),
        (
            [WEB, obj("Namespace", "other"), obj("ClusterRole", "admin", "rbac.authorization.k8s.io/v1")],
            {("v1", "Namespace"): False, ("rbac.authorization.k8s.io/v1", "ClusterRole"): False},
            [
                "cluster-scoped object(s) Namespace/other, ClusterRole/admin: a Release may only touch its own "
                "namespace (shop)"
            ],
        ),
        (
            [deployment("web", namespace="prod"), deployment("chat", namespace="shop")],
            {},
            [
                "object(s) for another namespace: Deployment/web (namespace prod); "
                "a Release may only touch its own (shop)"
            ],
        ),
        ([WEB, WEB], {}, ["object(s) defined twice in the manifests: Deployment/web"]),
        (
            [obj("Widget", "w", "example.com/v1")],
            {("example.com/v1", "Widget"): None},
            ["kind(s) the cluster does not serve: Widget/w (example.com/v1)"],
        ),
    ],
    ids=["fine", "cluster-scoped", "foreign-namespace", "duplicate", "unserved-kind"],
)
def test_problems_name_every_offender(
    docs: list[dict[str, Any]], scopes: Mapping[tuple[str, str], bool | None], expected: list[str]
) -> None:
    objects = [describe(d, scopes.get((d["apiVersion"], d["kind"]), True)) for d in docs]
    assert problems(objects, "shop") == expected


def test_describe_finds_every_kind_of_reference() -> None:
    pod = {
        "serviceAccountName": "sa",
        "imagePullSecrets": [{"name": "pull"}],
        "volumes": [
            {"name": "a", "configMap": {"name": "vol-cm"}},
            {"name": "b", "secret": {"secretName": "vol-secret"}},
            {"name": "c", "persistentVolumeClaim": {"claimName": "data"}},
            {
                "name": "d",
                "projected": {"sources": [{"configMap": {"name": "proj-cm"}}, {"secret": {"name": "proj-s"}}]},
            },
        ],
        "initContainers": [{"name": "i", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "env-cm"}}}]}],
        "containers": [
            {
                "name": "c",
                "env": [{"name": "Y", "valueFrom": {"secretKeyRef": {"name": "env-s"}}}],
                "envFrom": [{"secretRef": {"name": "from-s"}}],
            }
        ],
    }
    got = describe(deployment("web", pod=pod))
    assert set(got.uses) == {
        "ServiceAccount/sa",
        "Secret/pull",
        "ConfigMap/vol-cm",
        "Secret/vol-secret",
        "PersistentVolumeClaim/data",
        "ConfigMap/proj-cm",
        "Secret/proj-s",
        "ConfigMap/env-cm",
        "Secret/env-s",
        "Secret/from-s",
    }


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("ConfigMap", 0),
        ("Secret", 0),
        ("RoleBinding", 0),
        ("StatefulSet", 1),
        ("CronJob", 1),
        ("Service", 2),
        ("HorizontalPodAutoscaler", 2),
        ("Widget", 2),
    ],
    ids=lambda v: str(v),
)
def test_tiers(kind: str, expected: int) -> None:
    assert tier(kind) == expected


def test_order_groups_documents_by_tier() -> None:
    docs = [obj("Service", "s"), WEB, obj("ConfigMap", "c"), DB]
    assert [[d["kind"] for d in g] for g in order(docs)] == [["ConfigMap"], ["Deployment", "StatefulSet"], ["Service"]]


APP = app_id("git://x/app.git", "deploy/")


def live(key: str, *, app: str = APP, release: str | None = "web-1", phase: str | None = None) -> LiveObject:
    annotations = {ANNOTATION_RELEASE: release} if release else {}
    if phase:
        annotations[ANNOTATION_PHASE] = phase
    return LiveObject(key, {LABEL_APP: app}, annotations)


@pytest.mark.parametrize(
    ("objects", "expected"),
    [
        ([live("Service/web")], {}),
        ([live("Service/old", phase="rest")], {"Service/old": "rest"}),
        ([live("ConfigMap/old")], {"ConfigMap/old": ""}),
        ([live("ConfigMap/other-app", app="someone-else")], {}),
        ([live("ConfigMap/by-hand", release=None)], {}),
        ([live("web")], {}),  # a bare name is a Deployment, still in the revision
    ],
    ids=["still-in-revision", "gone-with-its-phase", "gone-no-phase", "other-app", "not-applied-by-us", "bare-name"],
)
def test_prune_set(objects: list[LiveObject], expected: dict[str, str]) -> None:
    assert prune_set(objects, ["Service/web", "Deployment/web"], APP) == expected


def test_pruned_objects_go_to_the_phase_that_held_them_or_the_first() -> None:
    out = assign(CANARY, [describe(WEB), describe(CHAT)], prune={"Service/old": "rest", "ConfigMap/gone": "nope"})
    assert {p.name: p.prune for p in out.phases} == {"canary": ("ConfigMap/gone",), "rest": ("Service/old",)}


def test_app_id_is_a_stable_label_value() -> None:
    assert app_id("git://x/app.git", "deploy/") == app_id("git://x/app.git", "/deploy")
    assert app_id("git://x/app.git", "deploy/") != app_id("git://x/app.git", "other")
    assert len(APP) == 16 and APP.isalnum()


def test_split_key_reads_bare_names_as_deployments() -> None:
    assert split_key("web") == ("Deployment", "web")
    assert split_key("StatefulSet/db") == ("StatefulSet", "db")


def test_lists_are_expanded() -> None:
    from controller.release.assign import flatten

    docs = [
        {
            "apiVersion": "v1",
            "kind": "List",
            "items": [WEB, {"kind": "ConfigMapList", "items": [obj("ConfigMap", "a")]}],
        }
    ]
    assert [d["kind"] for d in flatten(docs)] == ["Deployment", "ConfigMap"]
