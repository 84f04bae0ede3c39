"""Every namespaced object of a Release: server-side apply, snapshot, exact restore, prune, rollout state.

The only module that changes users' objects. Generic over kinds: a cached discovery ``Mapper`` turns
Kind (+ apiVersion) into a REST path; requests go through the kubernetes ``ApiClient`` as raw JSON.
Blocking calls run via ``asyncio.to_thread``. A Release only ever touches objects in its own namespace.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.errors import ApplyIncomplete, ClusterError, ManifestError, StoplineError
from controller.kube import causes
from controller.kube import snapshots as snap
from controller.kube.apierrors import api_error
from controller.kube.discovery import Mapper, Resource
from controller.kube.watched import WORKLOAD_KINDS, WorkloadCache
from controller.kube.workloads import fast_strategy, live_state
from controller.release.actions import Cause, LiveDeployment
from controller.release.assign import (
    ANNOTATION_PHASE,
    ANNOTATION_RELEASE,
    LABEL_APP,
    LiveObject,
    normal_key,
    object_key,
    split_key,
)

log = logging.getLogger("stopline.kube")

FIELD_MANAGER = "stopline"
LABEL_MANAGED = "app.kubernetes.io/managed-by"
LABEL_SNAPSHOT = "stopline.dev/release"  # on snapshot objects: which Release they belong to
_APPLY = "application/apply-patch+yaml"
RESTORE_ATTEMPTS = 3
"""Tries of one restore when the API answers 409 Conflict (the object changed between read and write)."""
DIAGNOSE_EVERY = 1.0
"""Seconds a workload's cause is reused before its ReplicaSets and pods are read again, at first."""
DIAGNOSE_MAX = 30.0
"""The longest a cause is reused: while the reads find nothing that cannot heal (a rollout that is slow but
fine), the gap between them doubles from :data:`DIAGNOSE_EVERY` up to this; a cause that cannot heal is
read again every :data:`DIAGNOSE_EVERY` (it decides when the push fails). A cause that cannot heal shows in
the first reads (an image that cannot be pulled, a missing Secret: seconds after the pod is created), and
the workload's own conditions (quota, the progress deadline) are read every tick whatever the gap."""
DIAGNOSE_AFTER = 1.0
"""Seconds a workload is not Available (this generation) before its ReplicaSets and pods are read: a rollout
that finishes sooner costs no extra read. Its own conditions are read from the start."""


@dataclass(frozen=True)
class _Diagnosis:
    """One read of a workload's ReplicaSets / pods: when, what it found, how long it is reused."""

    at: float
    cause: Cause | None
    gap: float
    progress: tuple[tuple[str, int], ...] = ()


def _progress(obj: Mapping[str, Any]) -> tuple[tuple[str, int], ...]:
    """The workload's rollout counters (``updatedReplicas``, ``readyReplicas``, ``numberReady`` ...): when they
    moved since the last read, the rollout is advancing — its controller is creating and readying pods."""
    status = obj.get("status") or {}
    return tuple(
        sorted(
            (k, v)
            for k, v in status.items()
            if isinstance(v, int) and k not in ("observedGeneration", "collisionCount")
        )
    )


def same_template(rs_template: Any, deployment_spec: Mapping[str, Any]) -> bool:
    """Whether a ReplicaSet runs the Deployment's pods: the same pod spec (metadata is left out, so a
    ReplicaSet that differs only in labels or annotations counts as the same: never scaled by us)."""
    if not isinstance(rs_template, Mapping):
        return True
    return bool(rs_template.get("spec") == (deployment_spec.get("template") or {}).get("spec"))


class Rest:
    """Raw JSON requests through an ApiClient (blocking)."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._api: Any = api_client

    def call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """The response document; raises ``ApiException``."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        # The body goes in as a dict: the client serialises JSON (also for apply-patch+yaml, JSON being YAML).
        request = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        resp = self._api.call_api(*request)
        data = resp.read()
        if not 200 <= resp.status <= 299:
            raise ApiException(status=resp.status, reason=resp.reason, body=(data or b"").decode(errors="replace"))
        out: dict[str, Any] = json.loads(data) if data else {}
        return out

    def discovery(self, path: str) -> Mapping[str, Any]:
        """A discovery document; LookupError when that API is not available."""
        try:
            return self.call("GET", path)
        except ApiException as exc:
            if exc.status in (404, 503):
                raise LookupError(path) from exc
            raise api_error(f"discovery {path}", exc) from exc


def _diagnosable(state: LiveDeployment, obj: Mapping[str, Any]) -> bool:
    """A workload worth asking why: exists, not Available, and its controller has seen the current spec."""
    if (
        not state.exists
        or state.available
        or split_key(state.name)[0] not in ("Deployment", "StatefulSet", "DaemonSet")
    ):
        return False
    meta, st = obj.get("metadata") or {}, obj.get("status") or {}
    return int(st.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)


class Cluster:
    """The ClusterPort for Releases: any namespaced kind, one namespace at a time."""

    def __init__(
        self,
        api_client: client.ApiClient,
        mapper: Mapper | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rest = Rest(api_client)
        self.mapper = mapper or Mapper(self.rest.discovery)
        self.clock = clock
        self.monotonic = monotonic
        self.watched: WorkloadCache | None = None  # workload state from the watch (set when it is wired)
        self.api_reads = 0  # workload GETs made because the watch's copy was missing or older than our write
        # (namespace, key, uid, generation) → the last read of a workload's ReplicaSets / pods: reused for
        # its gap (DIAGNOSE_EVERY doubling up to DIAGNOSE_MAX while nothing is found that cannot heal).
        self._diagnosed: dict[tuple[str, str, str, str], _Diagnosis] = {}
        # (namespace, key, uid, generation) → the Deployment's new ReplicaSet, once found: listed once.
        self._new_replicasets: dict[tuple[str, str, str, str], Mapping[str, Any]] = {}
        # (namespace, key) → how many restores of it have started: an older one still retrying stops.
        self._restore_epochs: dict[tuple[str, str], int] = {}
        self._restore_lock = threading.Lock()
        # (namespace, key, uid, generation) → when it was first seen not Available.
        self._unavailable_since: dict[tuple[str, str, str, str], float] = {}

    # ---------------------------------------------------------------- mapping
    def _resource(self, kind: str, api_version: str | None = None) -> Resource:
        found = self.mapper.lookup(kind, api_version)
        if found is None:
            raise ManifestError(f"kind {kind} ({api_version or 'any version'}) is not served by the cluster")
        return found

    async def scopes(self, kinds: Iterable[tuple[str, str]]) -> dict[tuple[str, str], bool | None]:
        """(apiVersion, kind) → namespaced? (None: not served)."""

        def run() -> dict[tuple[str, str], bool | None]:
            out: dict[tuple[str, str], bool | None] = {}
            for api_version, kind in set(kinds):
                r = self.mapper.lookup(kind, api_version)
                out[(api_version, kind)] = None if r is None else r.namespaced
            return out

        return await asyncio.to_thread(run)

    # ---------------------------------------------------------------- reads
    def _get(self, namespace: str, key: str) -> dict[str, Any] | None:
        kind, name = split_key(key)
        r = self._resource(kind)
        try:
            return self.rest.call("GET", r.path(namespace, quote(name)))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise api_error(f"read {key} in {namespace}", exc) from exc

    async def get(self, namespace: str, key: str) -> dict[str, Any] | None:
        """The live object as a plain dict, or None."""
        return await asyncio.to_thread(self._get, namespace, key)

    async def workloads(self, namespace: str, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        """The workloads (by key), from the watch when its copy is at least as new as our last write, else read
        fresh. No task per workload served from memory (a gather per tick of 500 loops was ~8% of a
        replica's CPU); only the ones the watch cannot vouch for are read."""
        objs = [self.watched.get(namespace, k) if self.watched is not None else None for k in keys]
        misses = [i for i, o in enumerate(objs) if o is None]
        if misses:
            self.api_reads += len(misses)
            fresh = await asyncio.gather(*(self.get(namespace, keys[i]) for i in misses))
            for i, o in zip(misses, fresh, strict=True):
                objs[i] = o
        return objs

    def _wrote(self, namespace: str, key: str, response: Mapping[str, Any]) -> None:
        if self.watched is not None and split_key(key)[0] in WORKLOAD_KINDS:
            self.watched.wrote(namespace, key, response, selected_by=LABEL_APP)

    async def states(self, namespace: str, names: Iterable[str]) -> dict[str, LiveDeployment]:
        """Rollout state of each workload (by key; a bare name is a Deployment), read fresh.

        A workload that is not Available yet also gets its :class:`Cause` (``controller.kube.causes``):
        its own conditions, and — only when those name nothing that cannot heal, and once it has not been
        Available for :data:`DIAGNOSE_AFTER` — its ReplicaSets and pods, listed by its selector (at most
        every :data:`DIAGNOSE_EVERY` seconds per workload; ever less often while what is found can heal, and
        not while its rollout counters advance between reads).
        """
        keys = list(names)
        objs = await self.workloads(namespace, keys)
        states = {k: live_state(split_key(k)[0], k, o) for k, o in zip(keys, objs, strict=True)}
        now = self.monotonic()
        read: list[tuple[str, dict[str, Any]]] = []  # stuck long enough: read ReplicaSets / pods
        for k, o in zip(keys, objs, strict=True):
            if o is None:
                continue
            meta = o.get("metadata") or {}
            seen = (namespace, k, str(meta.get("uid") or ""), str(meta.get("generation") or ""))
            if states[k].available:
                self._unavailable_since.pop(seen, None)
            elif _diagnosable(states[k], o):
                if now - self._unavailable_since.setdefault(seen, now) >= DIAGNOSE_AFTER:
                    read.append((k, o))
                else:  # just applied: its own conditions only (a mirrored ReplicaFailure costs nothing)
                    own = causes.condition_cause(k, o)
                    states[k] = replace(states[k], cause=own) if own is not None else states[k]
        if len(self._unavailable_since) > 4096:  # workloads deleted while stuck: forget the oldest half
            for old in sorted(self._unavailable_since, key=self._unavailable_since.__getitem__)[:2048]:
                del self._unavailable_since[old]
        if not read:
            return states
        found = await asyncio.gather(*(asyncio.to_thread(self._cause, namespace, k, o) for k, o in read))
        for (k, _o), cause in zip(read, found, strict=True):
            if cause is not None:
                states[k] = replace(states[k], cause=cause)
        return states

    def _list(self, namespace: str, kind: str, api_version: str, query: Mapping[str, str]) -> list[dict[str, Any]]:
        r = self._resource(kind, api_version)
        try:
            out = self.rest.call("GET", r.path(namespace), query=query)
        except ApiException as exc:
            raise api_error(f"list {r.plural} in {namespace}", exc) from exc
        return list(out.get("items") or [])

    def _cause(self, namespace: str, key: str, obj: Mapping[str, Any]) -> Cause | None:
        """Why a workload is not Available: read its ReplicaSets / pods / Events by its selector.

        The last read is reused for its gap; its own conditions are free and always read fresh, so a
        Deployment's ReplicaFailure or deadline shows at once whatever the gap.
        """
        meta = obj.get("metadata") or {}
        memo = (namespace, key, str(meta.get("uid") or ""), str(meta.get("generation") or ""))
        hit = self._diagnosed.get(memo)
        now = self.monotonic()
        own = causes.condition_cause(key, obj)
        if not causes.needs_pods(own):
            return own
        if hit is not None and now - hit.at < hit.gap:
            return hit.cause
        progress = _progress(obj)
        if hit is not None and (hit.cause is None or hit.cause.heals) and progress != hit.progress:
            # Advancing since the last read (its counters moved): not stuck, so its pods are not read again
            # yet — the gap still doubles, and the first gap without progress reads them.
            self._diagnosed[memo] = _Diagnosis(now, hit.cause, min(hit.gap * 2, DIAGNOSE_MAX), progress)
            return hit.cause
        try:
            cause = self._read_cause(namespace, key, obj)
        except StoplineError as exc:
            # Best effort: a rollout is never held up because its pods could not be listed (e.g. RBAC
            # without pods/replicasets); the workload's own conditions still count.
            log.warning("cannot read why %s in %s is not Available: %s", key, namespace, exc)
            cause = own
        stuck = cause is not None and not cause.heals
        gap = DIAGNOSE_EVERY if hit is None or stuck else min(hit.gap * 2, DIAGNOSE_MAX)
        if len(self._diagnosed) > 4096:  # workloads deleted while not Available: forget the stale ones
            self._diagnosed = {k: v for k, v in self._diagnosed.items() if now - v.at < DIAGNOSE_MAX}
        self._diagnosed[memo] = _Diagnosis(now, cause, gap, progress)
        return cause

    def _read_cause(self, namespace: str, key: str, obj: Mapping[str, Any]) -> Cause | None:
        kind = split_key(key)[0]
        own = causes.condition_cause(key, obj)
        if not causes.needs_pods(own):
            return own  # the workload says it already (ProgressDeadlineExceeded, a mirrored ReplicaFailure)
        selector = causes.selector_string((obj.get("spec") or {}).get("selector"))
        if selector is None:
            return own
        if kind == "Deployment":
            meta = obj.get("metadata") or {}
            memo = (namespace, key, str(meta.get("uid") or ""), str(meta.get("generation") or ""))
            known = self._new_replicasets.get(memo)
            replicasets: Sequence[Mapping[str, Any]]
            if known is not None:
                # The new ReplicaSet of a generation never changes: only its pods are read again. (A later
                # ReplicaFailure of it shows in the Deployment's own conditions, which are read every time.)
                replicasets = [known]
            else:
                replicasets = self._list(namespace, "ReplicaSet", "apps/v1", {"labelSelector": selector})
            new = causes.new_replicaset(obj, replicasets)
            if known is None and new is not None and causes.is_revision_of(new, obj):
                if len(self._new_replicasets) > 4096:
                    self._new_replicasets.clear()
                self._new_replicasets[memo] = new
            rs = causes.condition_cause(key, new)
            if not causes.needs_pods(rs):
                return rs
            wanted = causes.pod_template_hash(new)
            if new is None or wanted is None:
                return own or rs  # the new ReplicaSet is not there yet: nothing to read pods by
            pods = self._list(namespace, "Pod", "v1", {"labelSelector": f"{selector},pod-template-hash={wanted}"})
            return causes.deployment_cause(key, obj, replicasets, pods)
        pods = self._list(namespace, "Pod", "v1", {"labelSelector": selector})
        found = causes.pods_cause(key, pods)
        events: list[dict[str, Any]] = []
        if found is None or found.heals:
            uid = str((obj.get("metadata") or {}).get("uid") or "")
            query = {"fieldSelector": f"involvedObject.uid={uid},reason=FailedCreate"}
            events = self._list(namespace, "Event", "v1", query) if uid else []
        if kind == "StatefulSet":
            return causes.statefulset_cause(key, obj, pods, events, self.clock())
        return causes.daemonset_cause(key, obj, pods, events, self.clock())

    # ---------------------------------------------------------------- apply / prune
    def _apply(
        self, namespace: str, manifest: Mapping[str, Any], release: str, app: str, phase: str
    ) -> tuple[str, str]:
        body = copy.deepcopy(dict(manifest))
        meta = body.setdefault("metadata", {})
        kind, name = str(body.get("kind")), str(meta.get("name"))
        key = object_key(kind, name)
        ns = meta.get("namespace") or namespace
        if ns != namespace:
            raise ManifestError(f"{key} is for namespace {ns}; a Release may only touch {namespace}")
        meta["namespace"] = namespace
        if app:
            meta.setdefault("labels", {})[LABEL_APP] = app
        annotations = meta.setdefault("annotations", {})
        annotations[ANNOTATION_RELEASE] = release
        if phase:
            annotations[ANNOTATION_PHASE] = phase
        r = self._resource(kind, str(body.get("apiVersion") or ""))
        if not r.namespaced:
            raise ManifestError(f"{key} is cluster-scoped; a Release may only touch its own namespace ({namespace})")
        try:
            out = self.rest.call(
                "PATCH",
                r.path(namespace, quote(name)),
                query={"fieldManager": FIELD_MANAGER, "force": "true"},
                body=body,
                content_type=_APPLY,
            )
        except ApiException as exc:
            error = api_error(f"apply {key} in {namespace}", exc)
            if exc.status in (400, 422):  # the manifest itself is invalid: retrying cannot help
                raise ManifestError(str(error)) from exc
            raise error from exc
        self._wrote(namespace, key, out)
        return key, str((out.get("metadata") or {}).get("uid") or "")

    async def apply(
        self, namespace: str, manifests: Iterable[Mapping[str, Any]], release: str, app: str = "", phase: str = ""
    ) -> dict[str, str]:
        """Server-side apply (field manager ``stopline``) every manifest concurrently; key → UID.

        When some fail and others were applied, :class:`ApplyIncomplete` carries the first failure and the
        UIDs of the applied ones; when all fail, the first failure is raised.
        """
        done = await asyncio.gather(
            *(asyncio.to_thread(self._apply, namespace, m, release, app, phase) for m in manifests),
            return_exceptions=True,
        )
        uids = dict(d for d in done if isinstance(d, tuple))
        failed = [d for d in done if isinstance(d, BaseException)]
        for exc in failed:
            if not isinstance(exc, StoplineError):
                raise exc
        if failed:
            first = failed[0]
            assert isinstance(first, StoplineError)
            if not uids:
                raise first  # nothing was applied: the failure itself
            raise ApplyIncomplete(first, uids)
        return uids

    def _delete(self, namespace: str, key: str, uid: str) -> bool:
        kind, name = split_key(key)
        r = self._resource(kind)
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid}}
        body["propagationPolicy"] = "Background"
        try:
            self.rest.call("DELETE", r.path(namespace, quote(name)), body=body)
        except ApiException as exc:
            if exc.status in (404, 409):  # gone, or replaced by another object of that name: not ours
                return False
            raise api_error(f"delete {key} in {namespace}", exc) from exc
        return True

    def _prune_one(self, namespace: str, key: str, app: str) -> bool:
        live = self._get(namespace, key)
        if live is None:
            return False
        meta = live.get("metadata") or {}
        if (meta.get("labels") or {}).get(LABEL_APP) != app or not (meta.get("annotations") or {}).get(
            ANNOTATION_RELEASE
        ):
            return False  # no longer ours (or never was): leave it alone
        return self._delete(namespace, key, str(meta.get("uid")))

    async def prune(self, namespace: str, keys: Iterable[str], app: str) -> list[str]:
        """Delete the objects stopline applied for ``app`` that the revision dropped; the keys deleted."""
        keys = list(keys)
        done = await asyncio.gather(*(asyncio.to_thread(self._prune_one, namespace, k, app) for k in keys))
        return [k for k, ok in zip(keys, done, strict=True) if ok]

    def _managed(self, namespace: str, app: str) -> list[LiveObject]:
        found: dict[str, LiveObject] = {}
        for r in self.mapper.listable():
            if r.kind in ("Event",):
                continue
            try:
                out = self.rest.call("GET", r.path(namespace), query={"labelSelector": f"{LABEL_APP}={app}"})
            except ApiException as exc:
                if exc.status in (403, 404, 405, 503):
                    continue
                raise api_error(f"list {r.plural} in {namespace}", exc) from exc
            for item in out.get("items") or []:
                meta = item.get("metadata") or {}
                if meta.get("ownerReferences"):
                    continue  # owned objects belong to their owner, never pruned on their own
                key = object_key(r.kind, str(meta.get("name")))
                found.setdefault(
                    key, LiveObject(key, dict(meta.get("labels") or {}), dict(meta.get("annotations") or {}))
                )
        return list(found.values())

    async def managed(self, namespace: str, app: str) -> list[LiveObject]:
        """Live objects labelled ``stopline.dev/app=<app>`` in the namespace (prune candidates)."""
        return await asyncio.to_thread(self._managed, namespace, app)

    # ---------------------------------------------------------------- snapshot store
    def _read_parts(self, namespace: str, base: str, secret: bool) -> list[dict[str, Any]]:
        """Every part of a snapshot store, in order (empty when there is none)."""
        key = object_key("Secret" if secret else "ConfigMap", base)
        first = self._get(namespace, key)
        if first is None:
            return []
        count = int(((first.get("metadata") or {}).get("annotations") or {}).get(snap.ANNOTATION_PARTS) or 1)
        parts = [first]
        for i in range(1, count):
            more = self._get(namespace, object_key(split_key(key)[0], snap.part_name(base, i)))
            if more is None:
                break
            parts.append(more)
        return parts

    @staticmethod
    def _entries(part: Mapping[str, Any], secret: bool) -> dict[str, str]:
        data = dict(part.get("data") or {})
        return snap.from_secret_data(data) if secret else data

    def _write_parts(
        self,
        namespace: str,
        base: str,
        secret: bool,
        old: Sequence[Mapping[str, Any]],
        parts: Sequence[Mapping[str, str]],
        owner: Mapping[str, str],
    ) -> None:
        """Write changed parts: new ones first, the first part (which counts them) last."""
        kind = "Secret" if secret else "ConfigMap"
        r = self._resource(kind, "v1")
        order = [*range(1, len(parts)), 0]
        for i in order:
            before = old[i] if i < len(old) else None
            if before is not None and self._entries(before, secret) == dict(parts[i]) and i != 0:
                continue
            name = snap.part_name(base, i)
            body: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": kind,
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": {LABEL_MANAGED: "stopline", LABEL_SNAPSHOT: owner["name"][:63].rstrip("-.")},
                    "annotations": {snap.ANNOTATION_PARTS: str(len(parts))} if i == 0 else {},
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
                "data": snap.to_secret_data(parts[i]) if secret else dict(parts[i]),
            }
            if secret:
                body["type"] = "Opaque"
            try:
                if before is None:
                    try:
                        self.rest.call("POST", r.path(namespace), body=body)
                        continue
                    except ApiException as exc:
                        if exc.status != 409:
                            raise
                        before = self._get(namespace, object_key(kind, name)) or {}
                body["metadata"]["resourceVersion"] = (before.get("metadata") or {}).get("resourceVersion")
                self.rest.call("PUT", r.path(namespace, name), body=body)
            except ApiException as exc:
                raise api_error(f"write snapshot {kind} {namespace}/{name}", exc) from exc

    async def snapshot(
        self, namespace: str, configmap: str, owner: Mapping[str, str], names: Iterable[str]
    ) -> tuple[list[str], list[str]]:
        """(taken, absent): copy the objects (keys) into the snapshot named ``configmap`` (owned by ``owner``).

        Keys already in the store are never overwritten; the live objects are read concurrently.
        """
        keys = list(names)
        stores = dict(
            zip(
                (False, True),
                await asyncio.gather(
                    asyncio.to_thread(self._read_parts, namespace, configmap, False),
                    asyncio.to_thread(self._read_parts, namespace, configmap, True),
                ),
                strict=True,
            )
        )
        entries = {s: [self._entries(p, s) for p in stores[s]] for s in stores}
        merged = {s: {k: v for part in entries[s] for k, v in part.items()} for s in stores}
        stored: dict[str, bool] = {}  # key → was it absent before the push
        for key in keys:
            norm = normal_key(key)
            if snap.has_entry(merged[True], norm):
                stored[key] = False
            elif snap.has_entry(merged[False], norm):
                stored[key] = merged[False].get(snap.entry_name(norm)) == snap.ABSENT_MARKER
        missing = [k for k in keys if k not in stored]
        lives = await asyncio.gather(*(self.get(namespace, normal_key(k)) for k in missing))
        new: dict[bool, list[dict[str, str]]] = {False: [], True: []}
        for key, live in zip(missing, lives, strict=True):
            secret = live is not None and snap.is_secret(key)
            new[secret].append(snap.encode(normal_key(key), live, snap.part_limit(secret)))
            stored[key] = live is None

        def write() -> None:
            for s in (True, False):  # Secrets first: the ConfigMap never refers to data that is not stored yet
                if new[s]:
                    parts = snap.place(entries[s], new[s], snap.part_limit(s))
                    self._write_parts(namespace, configmap, s, stores[s], parts, owner)

        await asyncio.to_thread(write)
        return [k for k in keys if not stored[k]], [k for k in keys if stored[k]]

    # ---------------------------------------------------------------- restore
    def _restore_one(self, namespace: str, key: str, saved: dict[str, Any], fast: bool = False) -> None:
        """Replace the live object with its snapshot (create it when gone). A 409 (it changed or
        appeared under us) reads it again and retries, :data:`RESTORE_ATTEMPTS` times in all.

        ``fast``: a workload is written with the temporary strategy of
        :func:`~controller.kube.workloads.fast_strategy` (its own is put back by a later exact restore)."""
        kind = split_key(key)[0]
        r = self._resource(kind, str(saved.get("apiVersion") or "") or None)
        name = str(saved["metadata"]["name"])
        source = (fast_strategy(kind, saved) if fast else None) or saved
        with self._restore_lock:  # each restore of an object supersedes the ones before it
            epoch = self._restore_epochs[(namespace, key)] = self._restore_epochs.get((namespace, key), 0) + 1
        for attempt in range(1, RESTORE_ATTEMPTS + 1):
            if self._restore_epochs.get((namespace, key)) != epoch:
                # A later restore of this object has started (the loop that began this one was cancelled and
                # its thread outlived it, e.g. across an API outage): retrying a fast write now would undo
                # the exact strategy the later one put back.
                log.info("restore of %s in %s superseded by a later one; not retried", key, namespace)
                return
            live = self._get(namespace, key)
            body = copy.deepcopy(source)
            body["metadata"]["namespace"] = namespace
            try:
                if live is None:
                    self._wrote(namespace, key, self.rest.call("POST", r.path(namespace), body=snap.for_create(body)))
                else:
                    body["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
                    body["metadata"]["ownerReferences"] = live["metadata"].get("ownerReferences")
                    written = self.rest.call("PUT", r.path(namespace, quote(name)), body=body)
                    self._wrote(namespace, key, written)
                    if fast and kind == "Deployment" and source is not saved:
                        self._scale_down_pushed(namespace, written, saved)
                return
            except ApiException as exc:
                if exc.status == 409 and attempt < RESTORE_ATTEMPTS:
                    continue
                raise api_error(f"restore {key} in {namespace}", exc) from exc

    def _scale_down_pushed(self, namespace: str, deployment: Mapping[str, Any], saved: Mapping[str, Any]) -> None:
        """Scale the Deployment's ReplicaSets of other pod templates (the pushed version) to zero at once.

        kube-controller-manager would do the same in its next sync under the surge-all strategy (its first
        sync only scales the re-adopted old ReplicaSet up); doing it right after the Deployment write saves
        that sync. Only ReplicaSets the Deployment controls (owner UID) whose template is not the
        snapshot's; best effort: any failure leaves it to the controller-manager."""
        spec = saved.get("spec") or {}
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        uid = (deployment.get("metadata") or {}).get("uid")
        if not selector or (spec.get("selector") or {}).get("matchExpressions") or not uid:
            return
        try:
            r = self._resource("ReplicaSet", "apps/v1")
            found = self.rest.call(
                "GET", r.path(namespace), query={"labelSelector": ",".join(f"{k}={v}" for k, v in selector.items())}
            )
            for rs in found.get("items") or []:
                meta = rs.get("metadata") or {}
                owned = any(o.get("uid") == uid and o.get("controller") for o in meta.get("ownerReferences") or [])
                rs_spec = rs.get("spec") or {}
                if not owned or not rs_spec.get("replicas") or same_template(rs_spec.get("template"), spec):
                    continue
                self.rest.call(
                    "PATCH",
                    r.path(namespace, quote(str(meta.get("name")))),
                    body={"metadata": {"resourceVersion": meta.get("resourceVersion")}, "spec": {"replicas": 0}},
                    content_type="application/merge-patch+json",
                )
        except (ApiException, StoplineError):
            return

    def _delete_created(self, namespace: str, key: str, release: str, uid: str | None) -> bool:
        """Delete an object the push created — only if our annotation says we applied it and, when the
        UID was recorded at apply, it is still that object."""
        live = self._get(namespace, key)
        if live is None:
            return False
        meta = live.get("metadata") or {}
        if (meta.get("annotations") or {}).get(ANNOTATION_RELEASE) != release:
            return False
        if uid and meta.get("uid") != uid:
            return False
        return self._delete(namespace, key, str(meta.get("uid")))

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
        """Put every snapshotted object back exactly (recreating pruned ones) and delete the objects the
        push created; all concurrently. Workloads in ``fast`` are written with a surge-all strategy (the
        pushed version stops serving in one step); restoring them again without ``fast`` makes them exact."""
        stores = await asyncio.gather(
            asyncio.to_thread(self._read_parts, namespace, configmap, False),
            asyncio.to_thread(self._read_parts, namespace, configmap, True),
        )
        data: dict[str, str] = {}
        for s, parts in zip((False, True), stores, strict=True):
            for part in parts:
                data.update(self._entries(part, s))
        saved_all = snap.decode(data)
        restore = list(restore)
        missing = [k for k in restore if saved_all.get(snap.entry_name(normal_key(k))) is None]
        if missing:
            raise ClusterError(f"snapshot {configmap} has no copy of {', '.join(missing)}")
        saved = {k: saved_all[snap.entry_name(normal_key(k))] for k in restore}
        delete = list(delete)
        uids = {normal_key(k): v for k, v in (created or {}).items()}
        quick = {normal_key(k) for k in fast}
        results = await asyncio.gather(
            *(
                asyncio.to_thread(self._restore_one, namespace, normal_key(k), saved[k] or {}, normal_key(k) in quick)
                for k in restore
            ),
            *(
                asyncio.to_thread(self._delete_created, namespace, normal_key(k), release, uids.get(normal_key(k)))
                for k in delete
            ),
        )
        deleted = [k for k, ok in zip(delete, results[len(restore) :], strict=True) if ok]
        return restore, deleted
