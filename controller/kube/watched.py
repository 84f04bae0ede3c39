"""Workload state from the watch: Deployments, StatefulSets and DaemonSets as the cluster-wide watch
delivers them, so a rolling-out Release reads its workloads from memory instead of GETting them every tick.

Trust rule: an entry is used only when it is at least as new as what stopline itself last wrote to that
object (its ``metadata.generation`` ≥ the generation the apply/restore response carried). Right after a
write the watch may still hold the object from before it — judging that copy would call a rollout that has
not started "Available" — so until the watch catches up (milliseconds) the adapter GETs as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.release.assign import normal_key, object_key

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
_DROP_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def _trim(body: Mapping[str, Any]) -> dict[str, Any]:
    """What rollout state and cause extraction read: no managedFields, no last-applied copy."""
    meta = dict(body.get("metadata") or {})
    meta.pop("managedFields", None)
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in _DROP_ANNOTATIONS}
    meta["annotations"] = annotations
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": meta,
        "spec": body.get("spec") or {},
        "status": body.get("status") or {},
    }


class WorkloadCache:
    """The latest copy of every workload in the served namespaces, by (namespace, ``Kind/name``)."""

    def __init__(self) -> None:
        self._objs: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._written: dict[tuple[str, str], int] = {}
        self.hits = 0
        self.misses = 0

    def on_event(self, type_: str | None, body: Mapping[str, Any]) -> tuple[str, str] | None:
        """Feed one watch event; returns (namespace, key) of the workload it was about."""
        meta = body.get("metadata") or {}
        kind, namespace, name = body.get("kind"), meta.get("namespace"), meta.get("name")
        if kind not in WORKLOAD_KINDS or not namespace or not name:
            return None
        where = (str(namespace), object_key(str(kind), str(name)))
        if type_ == "DELETED":
            self._objs[where] = None  # known to be gone
        else:
            self._objs[where] = _trim(body)
        return where

    def drop(self, body: Mapping[str, Any]) -> None:
        """Forget this workload (its namespace is served by another replica): it is read fresh if needed."""
        meta = body.get("metadata") or {}
        self._objs.pop((str(meta.get("namespace")), object_key(str(body.get("kind")), str(meta.get("name")))), None)

    def wrote(self, namespace: str, key: str, response: Mapping[str, Any]) -> None:
        """stopline wrote this object (apply, restore): older copies from the watch are not to be trusted."""
        generation = int((response.get("metadata") or {}).get("generation") or 0)
        where = (namespace, normal_key(key))
        if generation > self._written.get(where, 0):
            self._written[where] = generation

    def get(self, namespace: str, key: str) -> tuple[bool, dict[str, Any] | None]:
        """(known, object): known False — not seen yet, or older than our last write: read it fresh."""
        where = (namespace, normal_key(key))
        if where not in self._objs:
            self.misses += 1
            return False, None
        obj = self._objs[where]
        if obj is not None:
            generation = int((obj.get("metadata") or {}).get("generation") or 0)
            if generation < self._written.get(where, 0):
                self.misses += 1
                return False, None
        elif where in self._written:  # deleted after we wrote it, or the delete event is stale: read it
            self.misses += 1
            return False, None
        self.hits += 1
        return True, obj

    def forget_namespace(self, namespace: str) -> None:
        for where in [w for w in self._objs if w[0] == namespace]:
            del self._objs[where]
        for where in [w for w in self._written if w[0] == namespace]:
            del self._written[where]

    def __len__(self) -> int:
        return len(self._objs)
