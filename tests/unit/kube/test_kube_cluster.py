"""The kube adapter against an in-memory API server: apply, snapshot layout, exact restore, prune."""

from __future__ import annotations

import base64
import copy
import json
import random
from typing import Any

import pytest

from controller.errors import ClusterError, ManifestError
from controller.kube import snapshots as snap
from controller.kube.cluster import RESTORE_ATTEMPTS, Cluster
from controller.kube.workloads import SURGE_ALL
from controller.release.assign import ANNOTATION_RELEASE, LABEL_APP
from tests.unit.kube.fake_kube import FakeApiClient

OWNER = {"apiVersion": "stopline.dev/v1alpha1", "kind": "Release", "name": "web-1", "uid": "rel-uid"}
BASE = "web-1-snapshot"
SECRET_VALUE = "hunter2-very-secret"


def cm(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "shop"}, "data": data}


def secret(name: str, value: str) -> dict[str, Any]:
    encoded = base64.b64encode(value.encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "shop"},
        "data": {"pw": encoded},
    }


def sts(name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": image}]}}},
        "status": {"readyReplicas": 1},
    }


@pytest.fixture
def api() -> FakeApiClient:
    fake = FakeApiClient()
    fake.put(cm("settings", mode="old"), "configmaps")
    fake.put(secret("creds", SECRET_VALUE), "secrets")
    fake.put(sts("db", "db:v1"), "statefulsets")
    return fake


def cluster(api: FakeApiClient) -> Cluster:
    return Cluster(api)  # type: ignore[arg-type]


async def test_snapshot_apply_restore_round_trip(api: FakeApiClient) -> None:
    c = cluster(api)
    keys = ["ConfigMap/settings", "Secret/creds", "StatefulSet/db", "ConfigMap/new"]
    taken, absent = await c.snapshot("shop", BASE, OWNER, keys)
    assert (taken, absent) == (["ConfigMap/settings", "Secret/creds", "StatefulSet/db"], ["ConfigMap/new"])

    uids = await c.apply(
        "shop", [cm("settings", mode="new"), cm("new", x="1"), sts("db", "db:v2")], "web-1", "app1", "p"
    )
    assert set(uids) == {"ConfigMap/settings", "ConfigMap/new", "StatefulSet/db"}
    applied = api.get("configmaps", "new")
    assert applied is not None and applied["metadata"]["labels"][LABEL_APP] == "app1"
    assert applied["metadata"]["annotations"][ANNOTATION_RELEASE] == "web-1"
    await c.apply("shop", [secret("creds", "changed")], "web-1")

    restored, deleted = await c.restore("shop", BASE, taken, absent, "web-1", {"ConfigMap/new": uids["ConfigMap/new"]})
    assert (restored, deleted) == (taken, ["ConfigMap/new"])
    assert api.get("configmaps", "settings")["data"] == {"mode": "old"}  # type: ignore[index]
    assert api.get("statefulsets", "db")["spec"]["template"]["spec"]["containers"][0]["image"] == "db:v1"  # type: ignore[index]
    assert base64.b64decode(api.get("secrets", "creds")["data"]["pw"]).decode() == SECRET_VALUE  # type: ignore[index]
    assert api.get("configmaps", "new") is None


async def test_secret_copies_live_in_a_secret_never_a_configmap(api: FakeApiClient) -> None:
    await cluster(api).snapshot("shop", BASE, OWNER, ["Secret/creds", "ConfigMap/settings"])
    encoded = base64.b64encode(SECRET_VALUE.encode()).decode()
    for (plural, _, _), obj in api.objects.items():
        if plural == "configmaps":
            text = json.dumps(obj)
            assert SECRET_VALUE not in text and encoded not in text
    store = api.get("secrets", BASE)
    assert (
        store is not None and store["type"] == "Opaque" and store["metadata"]["ownerReferences"][0]["uid"] == "rel-uid"
    )
    assert set(store["data"]) == {"secret.creds"}
    assert set(api.get("configmaps", BASE)["data"]) == {"configmap.settings"}  # type: ignore[index]


async def test_a_key_in_the_snapshot_is_never_overwritten(api: FakeApiClient) -> None:
    c = cluster(api)
    await c.snapshot("shop", BASE, OWNER, ["ConfigMap/settings"])
    await c.apply("shop", [cm("settings", mode="new")], "web-1")
    taken, _ = await c.snapshot("shop", BASE, OWNER, ["ConfigMap/settings"])  # a restart repeats the snapshot
    assert taken == ["ConfigMap/settings"]
    await c.restore("shop", BASE, taken, [], "web-1")
    assert api.get("configmaps", "settings")["data"] == {"mode": "old"}  # type: ignore[index]


async def test_large_snapshots_are_split_across_parts(api: FakeApiClient) -> None:
    c = cluster(api)
    names = [f"big-{i}" for i in range(6)]
    for i, n in enumerate(names):  # 6 × ~200 kB of incompressible-ish data: more than one object holds
        api.put(cm(n, blob=base64.b64encode(random.Random(i).randbytes(150_000)).decode()), "configmaps")
    huge = base64.b64encode(random.Random(99).randbytes(1_200_000)).decode()  # one copy > a part
    api.put(cm("huge", blob=huge), "configmaps")
    keys = [f"ConfigMap/{n}" for n in [*names, "huge"]]
    taken, _ = await c.snapshot("shop", BASE, OWNER, keys)
    assert taken == keys
    first = api.get("configmaps", BASE)
    assert first is not None
    parts = int(first["metadata"]["annotations"][snap.ANNOTATION_PARTS])
    assert parts >= 3 and all(api.get("configmaps", snap.part_name(BASE, i)) for i in range(parts))
    assert all(
        snap.size(api.get("configmaps", snap.part_name(BASE, i))["data"]) <= snap.PART_LIMIT for i in range(parts)
    )  # type: ignore[index]
    for n in [*names, "huge"]:
        await c.apply("shop", [cm(n, blob="changed")], "web-1")
    await c.restore("shop", BASE, taken, [], "web-1")
    assert api.get("configmaps", "huge")["data"]["blob"] == huge  # type: ignore[index]
    assert api.get("configmaps", "big-3")["data"]["blob"] != "changed"  # type: ignore[index]


async def test_created_objects_are_deleted_only_when_ours_and_the_same_uid(api: FakeApiClient) -> None:
    c = cluster(api)
    uids = await c.apply("shop", [cm("mine"), cm("replaced")], "web-1")
    api.put(cm("by-hand"), "configmaps")
    del api.objects[("configmaps", "shop", "replaced")]
    api.put(
        {**cm("replaced"), "metadata": {"name": "replaced", "annotations": {ANNOTATION_RELEASE: "web-1"}}}, "configmaps"
    )
    _, deleted = await c.restore(
        "shop",
        BASE,
        [],
        ["ConfigMap/mine", "ConfigMap/by-hand", "ConfigMap/replaced"],
        "web-1",
        {"ConfigMap/mine": uids["ConfigMap/mine"], "ConfigMap/replaced": uids["ConfigMap/replaced"]},
    )
    assert deleted == ["ConfigMap/mine"]
    assert api.get("configmaps", "by-hand") is not None and api.get("configmaps", "replaced") is not None


async def test_prune_deletes_only_objects_stopline_applied_for_the_app(api: FakeApiClient) -> None:
    c = cluster(api)
    await c.apply("shop", [cm("old-a"), cm("other")], "web-0", app="app1", phase="canary")
    api.put({**cm("hand"), "metadata": {"name": "hand", "labels": {LABEL_APP: "app1"}}}, "configmaps")
    managed = await c.managed("shop", "app1")
    assert sorted(o.key for o in managed) == ["ConfigMap/hand", "ConfigMap/old-a", "ConfigMap/other"]
    assert next(o for o in managed if o.key == "ConfigMap/old-a").annotations["stopline.dev/phase"] == "canary"
    assert await c.prune("shop", ["ConfigMap/old-a", "ConfigMap/hand"], "app1") == ["ConfigMap/old-a"]
    assert api.get("configmaps", "old-a") is None and api.get("configmaps", "hand") is not None


async def test_a_pruned_service_is_recreated_without_its_cluster_ip(api: FakeApiClient) -> None:
    c = cluster(api)
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "clusterIP": "10.0.0.7",
            "clusterIPs": ["10.0.0.7"],
            "selector": {"app": "web"},
            "ports": [{"port": 80}],
        },
    }
    await c.apply("shop", [svc], "web-0", app="app1")
    taken, _ = await c.snapshot("shop", BASE, OWNER, ["Service/web"])
    assert await c.prune("shop", ["Service/web"], "app1") == ["Service/web"]
    await c.restore("shop", BASE, taken, [], "web-1")
    back = api.get("services", "web")
    assert back is not None and "clusterIP" not in back["spec"] and back["spec"]["selector"] == {"app": "web"}


async def test_scopes_and_unknown_kinds(api: FakeApiClient) -> None:
    c = cluster(api)
    got = await c.scopes([("v1", "ConfigMap"), ("rbac.authorization.k8s.io/v1", "ClusterRole"), ("x.io/v1", "Widget")])
    assert got == {
        ("v1", "ConfigMap"): True,
        ("rbac.authorization.k8s.io/v1", "ClusterRole"): False,
        ("x.io/v1", "Widget"): None,
    }
    with pytest.raises(ManifestError, match="cluster-scoped"):
        await c.apply(
            "shop",
            [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "x"}}],
            "r",
        )
    with pytest.raises(ManifestError, match="may only touch"):
        await c.apply("shop", [{**cm("x"), "metadata": {"name": "x", "namespace": "prod"}}], "r")


async def test_states_use_each_kinds_rule(api: FakeApiClient) -> None:
    api.put(
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "agent", "generation": 2},
            "spec": {},
            "status": {
                "observedGeneration": 2,
                "desiredNumberScheduled": 2,
                "updatedNumberScheduled": 2,
                "numberAvailable": 1,
            },
        },
        "daemonsets",
    )
    got = await cluster(api).states("shop", ["DaemonSet/agent", "StatefulSet/gone"])
    assert not got["DaemonSet/agent"].available and got["DaemonSet/agent"].exists
    assert not got["StatefulSet/gone"].exists


async def test_a_large_secret_is_split_within_the_secret_size_limit(api: FakeApiClient) -> None:
    c = cluster(api)
    big = base64.b64encode(random.Random(7).randbytes(1_500_000)).decode()
    api.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bundle"}, "data": {"blob": big}}, "secrets")
    taken, _ = await c.snapshot("shop", BASE, OWNER, ["Secret/bundle"])
    first = api.get("secrets", BASE)
    assert first is not None
    parts = int(first["metadata"]["annotations"][snap.ANNOTATION_PARTS])
    assert parts >= 2
    for i in range(parts):
        data = api.get("secrets", snap.part_name(BASE, i))["data"]  # type: ignore[index]
        assert sum(len(k) + len(v) for k, v in data.items()) < 1_048_576  # what the API server allows
    assert all("bundle" not in json.dumps(o) for (p, _, n), o in api.objects.items() if p == "configmaps")
    await c.apply("shop", [secret("bundle", "x")], "web-1")
    await c.restore("shop", BASE, taken, [], "web-1")
    assert api.get("secrets", "bundle")["data"]["blob"] == big  # type: ignore[index]


async def test_a_partly_failed_apply_reports_what_it_applied(api: FakeApiClient) -> None:
    from controller.errors import ApplyIncomplete

    api.fail[("PATCH", "/api/v1/namespaces/shop/configmaps/bad")] = 422
    with pytest.raises(ApplyIncomplete) as info:
        await cluster(api).apply("shop", [cm("good"), cm("bad")], "web-1")
    assert isinstance(info.value.cause, ManifestError) and "ConfigMap/bad" in str(info.value)
    assert set(info.value.uids) == {"ConfigMap/good"}


STS_PUT = ("PUT", "/apis/apps/v1/namespaces/shop/statefulsets/db")


async def test_restore_retries_a_write_that_raced_another_writer(api: FakeApiClient) -> None:
    c = cluster(api)
    taken, _ = await c.snapshot("shop", BASE, OWNER, ["StatefulSet/db"])
    await c.apply("shop", [sts("db", "db:v2")], "web-1")
    api.races[STS_PUT] = RESTORE_ATTEMPTS - 1

    restored, _ = await c.restore("shop", BASE, taken, [], "web-1", {})

    assert restored == ["StatefulSet/db"]
    assert api.calls.count(STS_PUT) == RESTORE_ATTEMPTS
    assert api.get("statefulsets", "db")["spec"]["template"]["spec"]["containers"][0]["image"] == "db:v1"  # type: ignore[index]


async def test_restore_gives_up_after_repeated_conflicts_with_a_cluster_error(api: FakeApiClient) -> None:
    c = cluster(api)
    taken, _ = await c.snapshot("shop", BASE, OWNER, ["StatefulSet/db"])
    await c.apply("shop", [sts("db", "db:v2")], "web-1")
    api.races[STS_PUT] = RESTORE_ATTEMPTS

    with pytest.raises(ClusterError, match="restore StatefulSet/db in shop: 409"):
        await c.restore("shop", BASE, taken, [], "web-1", {})
    assert api.calls.count(STS_PUT) == RESTORE_ATTEMPTS
    assert api.get("statefulsets", "db")["spec"]["template"]["spec"]["containers"][0]["image"] == "db:v2"  # type: ignore[index]


async def test_restore_recreates_a_deleted_object(api: FakeApiClient) -> None:
    c = cluster(api)
    taken, _ = await c.snapshot("shop", BASE, OWNER, ["ConfigMap/settings"])
    del api.objects[("configmaps", "shop", "settings")]

    restored, _ = await c.restore("shop", BASE, taken, [], "web-1", {})

    assert restored == ["ConfigMap/settings"]
    assert ("POST", "/api/v1/namespaces/shop/configmaps") in api.calls
    assert api.get("configmaps", "settings")["data"] == {"mode": "old"}  # type: ignore[index]


def rolled_out(name: str, generation: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop", "generation": generation},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": "web:v1"}]}}},
        "status": {"observedGeneration": generation, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1},
    }


async def test_rollout_state_comes_from_the_watch_except_right_after_our_own_write(api: FakeApiClient) -> None:
    from controller.kube.watched import WORKLOAD_KINDS, WorkloadCache

    c = cluster(api)
    c.watched = WorkloadCache(live=WORKLOAD_KINDS)
    api.put(rolled_out("web", 1), "deployments")
    c.watched.on_event(None, rolled_out("web", 1))
    gets = ("GET", "/apis/apps/v1/namespaces/shop/deployments/web")
    states = await c.states("shop", ["Deployment/web"])
    assert states["Deployment/web"].available and api.calls.count(gets) == 0 and c.api_reads == 0

    pushed = rolled_out("web", 1)
    pushed["spec"]["template"]["spec"]["containers"][0]["image"] = "web:v2"
    del pushed["status"]
    await c.apply("shop", [pushed], "web-2")  # the fake bumps nothing: pretend the server set generation 2
    c.watched.wrote("shop", "Deployment/web", {"metadata": {"generation": 2}})
    api.objects[("deployments", "shop", "web")]["metadata"]["generation"] = 2
    states = await c.states("shop", ["Deployment/web"])
    assert not states["Deployment/web"].available, "the watch's pre-push copy must not count as rolled out"
    assert c.api_reads == 1 and api.calls.count(gets) >= 1

    c.watched.on_event("MODIFIED", rolled_out("web", 2))  # the watch caught up: rolled out at generation 2
    before = api.calls.count(gets)
    states = await c.states("shop", ["Deployment/web"])
    assert states["Deployment/web"].available and api.calls.count(gets) == before


def deployment(name: str, image: str, strategy: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "replicas": 4,
            "strategy": strategy
            or {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {"spec": {"containers": [{"name": "c", "image": image}]}},
        },
    }


async def test_fast_restore_writes_surge_all_then_an_exact_restore_puts_the_strategy_back(api: FakeApiClient) -> None:
    api.put(deployment("web", "web:v1"), "deployments")
    c = cluster(api)
    keys = ["Deployment/web", "ConfigMap/settings", "StatefulSet/db"]
    taken, _ = await c.snapshot("shop", BASE, OWNER, keys)
    before = {k: copy.deepcopy(api.get(p, n)["spec"]) for k, p, n in PLURALS}  # type: ignore[index]
    await c.apply("shop", [deployment("web", "web:v2"), cm("settings", mode="new"), sts("db", "db:v2")], "web-1")

    restored, _ = await c.restore("shop", BASE, taken, [], "web-1", {}, fast=["Deployment/web", "StatefulSet/db"])
    assert restored == taken
    web = api.get("deployments", "web")["spec"]  # type: ignore[index]
    assert web["template"] == before["Deployment/web"]["template"]  # the old version at once ...
    assert web["strategy"] == SURGE_ALL  # ... with every old pod allowed up and every new pod down
    db = api.get("statefulsets", "db")["spec"]  # type: ignore[index]
    assert db["template"] == before["StatefulSet/db"]["template"]
    assert db["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "100%"}}
    assert api.get("configmaps", "settings")["data"] == {"mode": "old"}  # type: ignore[index]

    await c.restore("shop", BASE, ["Deployment/web", "StatefulSet/db"], [], "web-1", {})
    for key, plural, name in PLURALS:
        assert api.get(plural, name)["spec"] == before[key], key  # type: ignore[index]


async def test_a_fast_restore_outlived_by_an_exact_one_does_not_retry_over_it(api: FakeApiClient) -> None:
    """Seen in e2e after an API outage: the loop that started a fast restore was cancelled, its thread lived
    on, and its 409 retry wrote the surge-all strategy again over the exact one a later restore put back."""
    api.put(deployment("web", "web:v1"), "deployments")
    c = cluster(api)
    taken, _ = await c.snapshot("shop", BASE, OWNER, ["Deployment/web"])
    saved = copy.deepcopy(api.get("deployments", "web")["spec"])  # type: ignore[index]
    await c.apply("shop", [deployment("web", "web:v2")], "web-1")
    put = ("PUT", "/apis/apps/v1/namespaces/shop/deployments/web")
    calls = c.rest.call
    state = {"raced": False}

    def call(method: str, path: str, **kw: Any) -> Any:
        if (method, path) == put and not state["raced"]:  # the fast write is in flight: the exact restore runs
            state["raced"] = True
            c._restore_one("shop", "Deployment/web", copy.deepcopy(saved_doc), False)
            api.races[put] = 1  # and so the fast write meets a 409 (the object changed under it)
        return calls(method, path, **kw)

    saved_doc = copy.deepcopy(api.get("deployments", "web"))  # type: ignore[arg-type]
    saved_doc["spec"] = copy.deepcopy(saved)
    c.rest.call = call  # type: ignore[method-assign]
    await c.restore("shop", BASE, taken, [], "web-1", {}, fast=taken)
    assert state["raced"]
    assert api.get("deployments", "web")["spec"] == saved, "the exact strategy stays"  # type: ignore[index]


async def test_fast_restore_leaves_a_recreate_deployment_as_its_snapshot(api: FakeApiClient) -> None:
    api.put(deployment("web", "web:v1", {"type": "Recreate"}), "deployments")
    c = cluster(api)
    taken, _ = await c.snapshot("shop", BASE, OWNER, ["Deployment/web"])
    saved = copy.deepcopy(api.get("deployments", "web")["spec"])  # type: ignore[index]
    await c.apply("shop", [deployment("web", "web:v2", {"type": "Recreate"})], "web-1")
    await c.restore("shop", BASE, taken, [], "web-1", {}, fast=taken)
    assert api.get("deployments", "web")["spec"] == saved  # type: ignore[index]


PLURALS = [
    ("Deployment/web", "deployments", "web"),
    ("StatefulSet/db", "statefulsets", "db"),
]


def replica_set(name: str, image: str, replicas: int, owner_uid: str, hash_: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "labels": {"app": "web", "pod-template-hash": hash_},
            "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": owner_uid, "controller": True}],
        },
        "spec": {
            "replicas": replicas,
            "template": {
                "metadata": {"labels": {"app": "web", "pod-template-hash": hash_}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
        },
    }


async def test_fast_restore_scales_the_pushed_replica_set_to_zero_and_leaves_the_old_one(api: FakeApiClient) -> None:
    web = deployment("web", "web:v1")
    web["spec"]["selector"] = {"matchLabels": {"app": "web"}}
    web["spec"]["template"]["metadata"] = {"labels": {"app": "web"}}
    uid = api.put(web, "deployments")["metadata"]["uid"]
    c = cluster(api)
    taken, _ = await c.snapshot("shop", BASE, OWNER, ["Deployment/web"])
    pushed = copy.deepcopy(web)
    pushed["spec"]["template"]["spec"]["containers"][0]["image"] = "web:v2"
    await c.apply("shop", [pushed], "web-1")
    api.put(replica_set("web-old", "web:v1", 0, uid, "aaa"), "replicasets")
    api.put(replica_set("web-new", "web:v2", 4, uid, "bbb"), "replicasets")
    api.put(replica_set("other", "web:v2", 2, "someone-else", "ccc"), "replicasets")  # not this Deployment's

    await c.restore("shop", BASE, taken, [], "web-1", {}, fast=taken)
    assert api.get("replicasets", "web-new")["spec"]["replicas"] == 0  # type: ignore[index]
    assert api.get("replicasets", "web-old")["spec"]["replicas"] == 0  # type: ignore[index]  # left to the controller
    assert api.get("replicasets", "other")["spec"]["replicas"] == 2  # type: ignore[index]

    api.put(replica_set("web-new", "web:v2", 4, uid, "bbb"), "replicasets")
    await c.restore("shop", BASE, taken, [], "web-1", {})  # a rolling (or strategy) restore scales nothing
    assert api.get("replicasets", "web-new")["spec"]["replicas"] == 4  # type: ignore[index]
