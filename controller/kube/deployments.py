"""Deployments: server-side apply, snapshot to a ConfigMap, exact restore, rollout state.

The only module that changes workloads. Blocking kubernetes-client calls run via ``asyncio.to_thread``.
A Release only ever touches objects in its own namespace.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.errors import ClusterError, ManifestError, SnapshotTooLarge
from controller.release.actions import LiveDeployment

FIELD_MANAGER = "stopline"
SNAPSHOT_KEY_PREFIX = "deployment."
ABSENT_MARKER = "absent"
CONFIGMAP_LIMIT = 1_000_000  # bytes; the API server rejects objects over ~1 MiB
LABEL_MANAGED = "app.kubernetes.io/managed-by"
LABEL_RELEASE = "stopline.dev/release"
RESTORE_ATTEMPTS = 3
"""Tries of one restore when the API answers 409 Conflict (the object changed between read and write)."""

_VOLATILE_METADATA = (
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
    "ownerReferences",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)


def _api_error(what: str, exc: ApiException) -> ClusterError:
    reason = exc.reason or ""
    detail = ""
    try:
        detail = json.loads(exc.body or "{}").get("message", "")
    except (ValueError, AttributeError):
        detail = ""
    return ClusterError(f"{what}: {exc.status} {reason} {detail}".strip())


def clean_for_snapshot(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a live object that define it: no status, no server-managed metadata."""
    out = copy.deepcopy(dict(obj))
    out.pop("status", None)
    meta = out.setdefault("metadata", {})
    for key in _VOLATILE_METADATA:
        meta.pop(key, None)
    annotations = meta.get("annotations") or {}
    annotations.pop("deployment.kubernetes.io/revision", None)
    if not annotations:
        meta.pop("annotations", None)
    out["apiVersion"] = "apps/v1"
    out["kind"] = "Deployment"
    return out


def live_state(name: str, obj: Mapping[str, Any] | None) -> LiveDeployment:
    """Rollout state as ``kubectl rollout status`` judges it.

    Available once the controller has observed the current generation and every wanted replica is
    updated and available with no old replica left. A failure once the observed rollout exceeded its
    progress deadline, or when the Deployment is paused with its rollout unfinished (a paused rollout
    never progresses and never hits its deadline, so waiting for it would wait forever)."""
    if obj is None:
        return LiveDeployment(name=name, exists=False)
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    st = obj.get("status") or {}
    want = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    generation = int(meta.get("generation") or 0)
    observed = int(st.get("observedGeneration") or 0)
    updated = int(st.get("updatedReplicas") or 0)
    total = int(st.get("replicas") or 0)
    available = int(st.get("availableReplicas") or 0)
    failure = None
    for cond in st.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            failure = cond.get("message") or "ProgressDeadlineExceeded"
    done = observed >= generation and updated >= want and total == updated and available >= want
    if observed < generation:
        failure = None  # the condition belongs to an earlier rollout
    elif spec.get("paused") and not done and failure is None:
        failure = "Deployment is paused (spec.paused: true); its rollout cannot finish until it is resumed"
    return LiveDeployment(name=name, exists=True, available=done, failure=failure)


class Deployments:
    """Deployment I/O for one namespace at a time."""

    def __init__(self, api_client: client.ApiClient) -> None:
        # Plain dicts go in and out; the generated model types are not used, so the APIs are typed Any.
        self._apps: Any = client.AppsV1Api(api_client)
        self._core: Any = client.CoreV1Api(api_client)
        self._api = api_client

    # -- reads
    def _get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            raw = self._apps.read_namespaced_deployment(name, namespace, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _api_error(f"read Deployment {namespace}/{name}", exc) from exc
        data: dict[str, Any] = json.loads(raw.data)
        return data

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The live Deployment as a plain dict, or None."""
        return await asyncio.to_thread(self._get, namespace, name)

    async def states(self, namespace: str, names: Iterable[str]) -> dict[str, LiveDeployment]:
        """Rollout state of each named Deployment, read fresh from the API server."""
        names = list(names)
        objs = await asyncio.gather(*(self.get(namespace, n) for n in names))
        return {n: live_state(n, o) for n, o in zip(names, objs, strict=True)}

    # -- apply
    def _apply(self, namespace: str, manifest: Mapping[str, Any], release: str) -> None:
        body = copy.deepcopy(dict(manifest))
        meta = body.setdefault("metadata", {})
        name = meta.get("name")
        ns = meta.get("namespace") or namespace
        if ns != namespace:
            raise ManifestError(f"Deployment {name} is for namespace {ns}; a Release may only touch {namespace}")
        meta["namespace"] = namespace
        meta.setdefault("annotations", {})[LABEL_RELEASE] = release
        try:
            self._apps.patch_namespaced_deployment(
                name,
                namespace,
                body,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",
            )
        except ApiException as exc:
            error = _api_error(f"apply Deployment {namespace}/{name}", exc)
            if exc.status in (400, 422):  # the manifest itself is invalid: retrying cannot help
                raise ManifestError(str(error)) from exc
            raise error from exc

    async def apply(self, namespace: str, manifests: Iterable[Mapping[str, Any]], release: str) -> None:
        """Server-side apply (field manager ``stopline``) every manifest, concurrently."""
        await asyncio.gather(*(asyncio.to_thread(self._apply, namespace, m, release) for m in manifests))

    # -- snapshot
    def _snapshot(
        self, namespace: str, configmap: str, owner: Mapping[str, str], names: list[str]
    ) -> tuple[list[str], list[str]]:
        """Copy live Deployments into the ConfigMap; keys already there are never overwritten."""
        existing = self._read_configmap(namespace, configmap)
        data: dict[str, str] = dict((existing or {}).get("data") or {})
        taken: list[str] = []
        absent: list[str] = []
        for name in names:
            key = SNAPSHOT_KEY_PREFIX + name
            if key not in data:
                live = self._get(namespace, name)
                data[key] = ABSENT_MARKER if live is None else json.dumps(clean_for_snapshot(live), sort_keys=True)
            (absent if data[key] == ABSENT_MARKER else taken).append(name)
        size = sum(len(k) + len(v) for k, v in data.items())
        if size > CONFIGMAP_LIMIT:
            raise SnapshotTooLarge(
                f"pre-push copies of {len(data)} Deployment(s) take {size} bytes; a ConfigMap holds {CONFIGMAP_LIMIT}"
            )
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": configmap,
                "namespace": namespace,
                "labels": {LABEL_MANAGED: "stopline", LABEL_RELEASE: owner["name"]},
                "ownerReferences": [
                    {
                        "apiVersion": owner["apiVersion"],
                        "kind": owner["kind"],
                        "name": owner["name"],
                        "uid": owner["uid"],
                        "controller": True,
                        "blockOwnerDeletion": False,
                    }
                ],
            },
            "data": data,
        }
        try:
            if existing is None:
                self._core.create_namespaced_config_map(namespace, body)
            else:
                body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
                self._core.replace_namespaced_config_map(configmap, namespace, body)
        except ApiException as exc:
            raise _api_error(f"write snapshot ConfigMap {namespace}/{configmap}", exc) from exc
        return taken, absent

    def _read_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            raw = self._core.read_namespaced_config_map(name, namespace, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _api_error(f"read ConfigMap {namespace}/{name}", exc) from exc
        data: dict[str, Any] = json.loads(raw.data)
        return data

    async def snapshot(
        self, namespace: str, configmap: str, owner: Mapping[str, str], names: Iterable[str]
    ) -> tuple[list[str], list[str]]:
        """(taken, absent): snapshot the named Deployments into ``configmap`` (owned by ``owner``)."""
        return await asyncio.to_thread(self._snapshot, namespace, configmap, owner, list(names))

    # -- restore
    def _restore_one(self, namespace: str, name: str, saved: dict[str, Any]) -> None:
        """Replace the live Deployment with its snapshot (create it when gone). A 409 (it changed or
        appeared under us) reads it again and retries, :data:`RESTORE_ATTEMPTS` times in all."""
        for attempt in range(1, RESTORE_ATTEMPTS + 1):
            live = self._get(namespace, name)
            body = copy.deepcopy(saved)
            body["metadata"]["namespace"] = namespace
            try:
                if live is None:
                    self._apps.create_namespaced_deployment(namespace, body)
                else:
                    body["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
                    body["metadata"]["ownerReferences"] = live["metadata"].get("ownerReferences")
                    self._apps.replace_namespaced_deployment(name, namespace, body)
                return
            except ApiException as exc:
                if exc.status == 409 and attempt < RESTORE_ATTEMPTS:
                    continue
                raise _api_error(f"restore Deployment {namespace}/{name}", exc) from exc

    def _delete_created(self, namespace: str, name: str, release: str) -> bool:
        """Delete a Deployment the push created — only if our annotation says we applied it."""
        live = self._get(namespace, name)
        if live is None:
            return False
        annotations = (live.get("metadata") or {}).get("annotations") or {}
        if annotations.get(LABEL_RELEASE) != release:
            return False
        try:
            self._apps.delete_namespaced_deployment(
                name,
                namespace,
                body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=live["metadata"]["uid"])),
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise _api_error(f"delete Deployment {namespace}/{name}", exc) from exc
        return True

    async def restore(
        self, namespace: str, configmap: str, restore: Iterable[str], delete: Iterable[str], release: str
    ) -> tuple[list[str], list[str]]:
        """Put every snapshotted Deployment back exactly and delete the ones the push created; concurrently."""
        cm = await asyncio.to_thread(self._read_configmap, namespace, configmap)
        data = (cm or {}).get("data") or {}
        restore = list(restore)
        missing = [n for n in restore if (SNAPSHOT_KEY_PREFIX + n) not in data]
        if missing:
            raise ClusterError(f"snapshot ConfigMap {configmap} has no copy of {', '.join(missing)}")
        saved = {n: json.loads(data[SNAPSHOT_KEY_PREFIX + n]) for n in restore}
        delete = list(delete)
        results = await asyncio.gather(
            *(asyncio.to_thread(self._restore_one, namespace, n, saved[n]) for n in restore),
            *(asyncio.to_thread(self._delete_created, namespace, n, release) for n in delete),
        )
        deleted = [n for n, ok in zip(delete, results[len(restore) :], strict=True) if ok]
        return restore, deleted
