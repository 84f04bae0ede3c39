"""A push of a whole application through planner and reducer: every object snapshotted, applied in its
phase, each kind waited for by its own rule, everything restored, created objects deleted by recorded UID."""

from __future__ import annotations

import json
from typing import Any

from sim import at, make_spec

from controller.models.release import ReleaseSpec, ReleaseStatus
from controller.release.actions import (
    Applied,
    ApplyPhase,
    Begin,
    Done,
    Facts,
    LiveDeployment,
    MarkAvailable,
    RevertJob,
    RevertStarted,
    Snapshot,
    SnapshotTaken,
    StartRevert,
    Undo,
    Undone,
    Wait,
)
from controller.release.assign import describe
from controller.release.executor import objects_in
from controller.release.plan import plan
from controller.release.status import reduce


def workload(kind: str, name: str, **pod: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"template": {"metadata": {"labels": {"app": name}}, "spec": pod}},
    }


DOCS = [
    workload("Deployment", "web", containers=[{"name": "c", "envFrom": [{"configMapRef": {"name": "settings"}}]}]),
    workload("StatefulSet", "db", volumes=[{"name": "s", "secret": {"secretName": "db-creds"}}]),
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}},
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-creds"}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"}, "spec": {"selector": {"app": "db"}}},
]
SPEC: ReleaseSpec = make_spec(
    phases=[
        {"name": "web", "deployments": ["web"]},
        {"name": "db", "workloads": [{"kind": "StatefulSet", "name": "db"}]},
    ],
    gates=[],
)


def step(status: ReleaseStatus, action: Any, outcome: Any = None, t: float = 0) -> ReleaseStatus:
    """Reduce, then round-trip the status through JSON (a controller restart reads only that)."""
    after = reduce(SPEC, status, action, outcome or Done(), at(t))
    restarted = ReleaseStatus.model_validate(json.loads(json.dumps(after.model_dump(mode="json", by_alias=True))))
    assert restarted == after
    return restarted


def test_whole_application_push_and_rollback() -> None:
    manifests = objects_in(DOCS, "shop", {})
    begin = plan(SPEC, ReleaseStatus(), Facts(now=at(0), manifests=manifests))
    assert isinstance(begin, Begin) and begin.phases == (("web", ("web",)), ("db", ()))
    s = step(ReleaseStatus(), begin)
    assert [(p.name, p.objects, p.workloads) for p in s.phases] == [
        ("web", ["ConfigMap/settings", "Deployment/web"], ["Deployment/web"]),
        ("db", ["Secret/db-creds", "StatefulSet/db", "Service/db"], ["StatefulSet/db"]),
    ]

    snap = plan(SPEC, s, Facts(now=at(1)))
    assert snap == Snapshot("web", ("ConfigMap/settings", "Deployment/web"))
    s = step(s, snap, SnapshotTaken("r-snapshot", ("Deployment/web",), ("ConfigMap/settings",)), 1)
    assert not isinstance(plan(SPEC, s, Facts(now=at(1))), Snapshot)  # the first copy is never taken again
    assert s.snapshot is not None and s.snapshot.deployments == ["web"] and s.snapshot.absent == ["ConfigMap/settings"]
    apply = plan(SPEC, s, Facts(now=at(2)))
    assert apply == ApplyPhase("web", ("web",), ("ConfigMap/settings", "Deployment/web"), ())
    s = step(s, apply, Applied({"ConfigMap/settings": "uid-cm", "Deployment/web": "uid-web"}), 2)
    assert not isinstance(plan(SPEC, s, Facts(now=at(2))), ApplyPhase | Snapshot)  # never repeated
    assert s.snapshot is not None and s.snapshot.created == {"ConfigMap/settings": "uid-cm"}  # only what it created

    waiting = plan(SPEC, s, Facts(now=at(3), live={"Deployment/web": LiveDeployment("Deployment/web")}))
    assert isinstance(waiting, Wait)
    ready = {"Deployment/web": LiveDeployment("Deployment/web", available=True)}
    assert plan(SPEC, s, Facts(now=at(3), live=ready)) == MarkAvailable("web")
    s = step(s, MarkAvailable("web"), t=3)
    s = step(s, plan(SPEC, s, Facts(now=at(4))), t=4)  # hold 0 → next phase
    snap2 = plan(SPEC, s, Facts(now=at(5)))
    assert snap2 == Snapshot("db", ("Secret/db-creds", "StatefulSet/db", "Service/db"))
    s = step(s, snap2, SnapshotTaken("r-snapshot", snap2.deployments, (), secret="r-snapshot"), 5)
    assert s.snapshot is not None and s.snapshot.secret == "r-snapshot"
    s = step(s, plan(SPEC, s, Facts(now=at(6))), Applied({}), 6)

    from controller.release.actions import FailPush

    s = step(s, FailPush("RolloutFailed", "db broke", phase="db"), t=7)
    undo = plan(SPEC, s, Facts(now=at(8)))
    assert isinstance(undo, Undo)  # the restore goes out first ...
    assert set(undo.restore) == {"Deployment/web", "Secret/db-creds", "StatefulSet/db", "Service/db"}
    assert undo.delete == ("ConfigMap/settings",)
    assert set(undo.fast) == {"Deployment/web", "StatefulSet/db"}
    s = step(s, undo, Undone(undo.restore, undo.delete, None), 8)
    start = plan(SPEC, s, Facts(now=at(8)))
    assert start == StartRevert()  # ... and the git revert right beside it
    s = step(s, start, RevertStarted(at(8)), 8)
    assert s.undo is not None and s.undo.restored == ["web"] and s.undo.deleted == []
    assert s.undo.deleted_objects == ["ConfigMap/settings"] and "StatefulSet/db" in s.undo.objects
    # only workloads are waited for after the restore
    live = {"Deployment/web": LiveDeployment("Deployment/web", available=True)}
    pending = plan(SPEC, s, Facts(now=at(9), live=live, revert_job=RevertJob(running=True)))
    assert isinstance(pending, Wait) and "StatefulSet/db" in pending.reason and "Service" not in pending.reason


def test_a_cluster_scoped_object_fails_the_push_before_anything_is_applied() -> None:
    docs = [*DOCS, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}}]
    manifests = objects_in(docs, "shop", {("v1", "Namespace"): False})
    out = plan(SPEC, ReleaseStatus(), Facts(now=at(0), manifests=manifests))
    from controller.release.actions import FailPush

    assert isinstance(out, FailPush) and out.reason == "ManifestError" and "Namespace/other" in out.message
    assert describe(docs[-1], False).namespaced is False
