"""The executor's whole-application parts against recording fakes: manifests checked against the cluster,
the prune set, tier-by-tier apply, prune in the phase, created UIDs passed to the restore."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sim import make_spec

from controller.gitops.results import CommitInfo
from controller.models.release import ReleaseSpec, ReleaseStatus, SnapshotStatus
from controller.release.actions import Applied, ApplyPhase, Facts, FailPush, Snapshot, SnapshotTaken, Undo, Undone
from controller.release.assign import ANNOTATION_PHASE, ANNOTATION_RELEASE, LABEL_APP, LiveObject, app_id
from controller.release.executor import Executor, ReleaseRef
from controller.release.plan import plan

REF = ReleaseRef("shop", "web-2", "uid-r")
DOCS = [
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {}},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}},
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}},
]


class Cluster:
    def __init__(self, live: list[LiveObject] | None = None, scopes: dict[tuple[str, str], bool | None] | None = None):
        self.live = live or []
        self.scope_map = scopes or {}
        self.applied: list[list[str]] = []
        self.pruned: list[str] = []
        self.restored: dict[str, Any] = {}

    async def scopes(self, kinds: Iterable[tuple[str, str]]) -> dict[tuple[str, str], bool | None]:
        return {k: self.scope_map.get(k, True) for k in kinds}

    async def states(self, namespace: str, names: Iterable[str]) -> dict[str, Any]:
        return {}

    async def snapshot(
        self, namespace: str, configmap: str, owner: Mapping[str, str], names: Iterable[str]
    ) -> tuple[list[str], list[str]]:
        return list(names), []

    async def apply(
        self, namespace: str, manifests: Iterable[Mapping[str, Any]], release: str, app: str = "", phase: str = ""
    ) -> dict[str, str]:
        keys = [f"{m['kind']}/{m['metadata']['name']}" for m in manifests]
        self.applied.append(keys)
        assert app == app_id("file:///srv/app.git", "deploy/") and phase == "canary"
        return {k: f"uid-{k}" for k in keys}

    async def prune(self, namespace: str, keys: Iterable[str], app: str) -> list[str]:
        self.pruned.extend(keys)
        return list(keys)

    async def managed(self, namespace: str, app: str) -> list[LiveObject]:
        return self.live

    async def restore(
        self,
        namespace: str,
        configmap: str,
        restore: Iterable[str],
        delete: Iterable[str],
        release: str,
        created: Mapping[str, str] | None = None,
        fast: Iterable[str] = (),
    ) -> tuple[list[str], list[str]]:
        self.restored = {"restore": list(restore), "delete": list(delete), "created": dict(created or {})}
        return list(restore), list(delete)


class Git:
    async def commit(self, namespace: str, spec: ReleaseSpec) -> CommitInfo:
        return CommitInfo(
            sha=spec.source.revision,
            subject="app v2",
            author="Ada Lovelace <ada@example.org>",
            committed_at=datetime(2026, 1, 1, tzinfo=UTC),
            parents=(),
            committer="Grace Hopper <grace@example.org>",
        )

    async def manifests(self, namespace: str, spec: ReleaseSpec) -> list[dict[str, Any]]:
        return DOCS

    async def revert(self, *args: Any) -> Any:
        raise AssertionError("no revert here")


class Metrics:
    async def query(self, url: str, promql: str) -> Any:
        raise AssertionError("no gates here")


def executor(cluster: Cluster) -> Executor:
    return Executor(
        cluster=cluster,
        git=Git(),
        metrics=Metrics(),  # type: ignore[arg-type]
        experiments=None,
        default_prometheus=None,
        clock=lambda: datetime(2026, 1, 1, tzinfo=UTC),
    )


SPEC = make_spec(phases=[{"name": "canary", "deployments": ["web"]}], prune=True)
APP = app_id("file:///srv/app.git", "deploy/")


async def test_manifests_carry_every_object_and_the_prune_set() -> None:
    old = LiveObject("ConfigMap/old", {LABEL_APP: APP}, {ANNOTATION_RELEASE: "web-1", ANNOTATION_PHASE: "canary"})
    kept = LiveObject("Service/web", {LABEL_APP: APP}, {ANNOTATION_RELEASE: "web-1"})
    manifests = await executor(Cluster([old, kept])).read_manifests(REF, SPEC)
    assert [o.key for o in manifests.objects] == ["Service/web", "Deployment/web", "ConfigMap/settings", "Secret/creds"]
    assert dict(manifests.prune) == {"ConfigMap/old": "canary"}


async def test_no_prune_set_unless_asked() -> None:
    old = LiveObject("ConfigMap/old", {LABEL_APP: APP}, {ANNOTATION_RELEASE: "web-1"})
    manifests = await executor(Cluster([old])).read_manifests(REF, make_spec(phases=[{"name": "a", "remaining": True}]))
    assert dict(manifests.prune) == {}


async def test_cluster_scoped_kinds_make_a_manifest_error() -> None:
    cluster = Cluster(scopes={("v1", "Secret"): False})
    manifests = await executor(cluster).read_manifests(REF, SPEC)
    assert manifests.error is not None and "Secret/creds" in manifests.error


async def test_apply_goes_tier_by_tier_then_prunes() -> None:
    cluster = Cluster()
    action = ApplyPhase(
        "canary", ("web",), ("ConfigMap/settings", "Secret/creds", "Deployment/web", "Service/web"), ("ConfigMap/old",)
    )
    out = await executor(cluster).execute(REF, SPEC, ReleaseStatus(), action)
    assert cluster.applied == [["ConfigMap/settings", "Secret/creds"], ["Deployment/web"], ["Service/web"]]
    assert cluster.pruned == ["ConfigMap/old"]
    assert (
        isinstance(out, Applied) and out.pruned == ("ConfigMap/old",) and out.uids["Service/web"] == "uid-Service/web"
    )


async def test_snapshot_of_a_secret_names_the_secret_store() -> None:
    out = await executor(Cluster()).execute(REF, SPEC, ReleaseStatus(), Snapshot("canary", ("Secret/creds",)))
    assert out == SnapshotTaken("web-2-snapshot", ("Secret/creds",), (), secret="web-2-snapshot")
    plain = await executor(Cluster()).execute(REF, SPEC, ReleaseStatus(), Snapshot("canary", ("ConfigMap/settings",)))
    assert isinstance(plain, SnapshotTaken) and plain.secret is None


async def test_undo_hands_the_recorded_uids_to_the_restore() -> None:
    cluster = Cluster()
    status = ReleaseStatus(
        snapshot=SnapshotStatus(
            config_map="web-2-snapshot",
            objects=["Service/web"],
            absent=["ConfigMap/new"],
            created={"ConfigMap/new": "u9"},
        )
    )
    out = await executor(cluster).execute(REF, SPEC, status, Undo(("Service/web",), ("ConfigMap/new",)))
    assert isinstance(out, Undone) and out.deleted == ("ConfigMap/new",)
    assert cluster.restored == {
        "restore": ["Service/web"],
        "delete": ["ConfigMap/new"],
        "created": {"ConfigMap/new": "u9"},
    }


async def test_a_partly_failed_apply_still_records_the_uids_of_what_it_created() -> None:
    from controller.errors import ApplyIncomplete, ManifestError
    from controller.release.actions import ActionFailed
    from controller.release.status import reduce

    class Failing(Cluster):
        async def apply(
            self, namespace: str, manifests: Iterable[Mapping[str, Any]], release: str, app: str = "", phase: str = ""
        ) -> dict[str, str]:
            keys = [f"{m['kind']}/{m['metadata']['name']}" for m in manifests]
            if "Deployment/web" in keys:
                raise ApplyIncomplete(ManifestError("apply Deployment/web: 422 Invalid"), {})
            return {k: f"uid-{k}" for k in keys}

    action = ApplyPhase("canary", ("web",), ("ConfigMap/settings", "Deployment/web"), ())
    out = await executor(Failing()).execute(REF, SPEC, ReleaseStatus(), action)
    assert out == ActionFailed(
        "apply Deployment/web: 422 Invalid", permanent=True, applied={"ConfigMap/settings": "uid-ConfigMap/settings"}
    )
    status = ReleaseStatus(
        phase="Progressing",
        current_phase="canary",
        phases=[{"name": "canary", "deployments": ["web"], "objects": ["ConfigMap/settings", "Deployment/web"]}],  # type: ignore[list-item]
        snapshot=SnapshotStatus(config_map="web-2-snapshot", objects=["Deployment/web"], absent=["ConfigMap/settings"]),
    )
    after = reduce(SPEC, status, action, out, datetime(2026, 1, 1, tzinfo=UTC))
    assert after.snapshot is not None and after.snapshot.created == {"ConfigMap/settings": "uid-ConfigMap/settings"}
    assert after.action_error is not None and after.action_error.permanent
    fail = plan(SPEC, after, Facts(now=datetime(2026, 1, 1, tzinfo=UTC)))
    assert isinstance(fail, FailPush) and fail.reason == "ActionFailed" and fail.phase == "canary"


async def test_a_failed_later_tier_keeps_the_uids_of_earlier_tiers() -> None:
    from controller.errors import ManifestError
    from controller.release.actions import ActionFailed

    class Failing(Cluster):
        async def apply(
            self, namespace: str, manifests: Iterable[Mapping[str, Any]], release: str, app: str = "", phase: str = ""
        ) -> dict[str, str]:
            keys = [f"{m['kind']}/{m['metadata']['name']}" for m in manifests]
            if "Service/web" in keys:
                raise ManifestError("apply Service/web: 422 Invalid")
            return {k: f"uid-{k}" for k in keys}

    action = ApplyPhase("canary", ("web",), ("ConfigMap/settings", "Deployment/web", "Service/web"), ())
    out = await executor(Failing()).execute(REF, SPEC, ReleaseStatus(), action)
    assert isinstance(out, ActionFailed) and out.permanent
    assert set(out.applied) == {"ConfigMap/settings", "Deployment/web"}


async def test_only_objects_with_a_recorded_uid_are_deleted() -> None:
    cluster = Cluster()
    status = ReleaseStatus(
        snapshot=SnapshotStatus(
            config_map="web-2-snapshot",
            objects=["Service/web"],
            absent=["ConfigMap/new", "ConfigMap/never-applied"],
            created={"ConfigMap/new": "u9"},
        )
    )
    undo = Undo(("Service/web",), ("ConfigMap/new", "ConfigMap/never-applied"))
    await executor(cluster).execute(REF, SPEC, status, undo)
    assert cluster.restored["delete"] == ["ConfigMap/new"]


async def test_older_statuses_delete_by_annotation_as_before() -> None:
    cluster = Cluster()
    status = ReleaseStatus(snapshot=SnapshotStatus(config_map="web-2-snapshot", deployments=["web"], absent=["api"]))
    await executor(cluster).execute(REF, SPEC, status, Undo(("web",), ("api",)))
    assert cluster.restored["delete"] == ["api"]
