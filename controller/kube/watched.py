"""Workload state from the watch: Deployments, StatefulSets and DaemonSets as stopline's own workload watch
(``controller.kube.workloadwatch``) delivers them, so a rolling-out Release reads its workloads from memory
instead of GETting them every tick.

Trust rules — an entry is used only when
* its kind's watch is **live** (listed and streaming) — or broke less than a grace period ago (30 s) and is
  retrying: past that, every read goes to the API server, so a broken stream degrades to polling instead
  of to state older than the grace;
* it is at least as new as what stopline itself last wrote to that object (its ``metadata.generation`` ≥
  the generation the apply/restore response carried). Right after a write the watch may still hold the
  object from before it — judging that copy would call a rollout that has not started "Available" — so
  until the watch catches up (milliseconds) the adapter GETs as before.

A DELETED event forgets the entry rather than recording "gone": the watch selects stopline's labelled
objects, and an object restored to an unlabelled snapshot leaves the selection with a DELETED event too.

Written from the watch threads, read on the event loop and the I/O threads: every access holds a lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from controller.release.assign import normal_key, object_key, split_key

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
NAMESPACE = "Namespace"
#: What the watch feeds: the workload kinds, and the served namespaces themselves (whether one is being
#: deleted — asked before every side effect — is answered from memory instead of a LIST each time).
WATCHED_KINDS = (*WORKLOAD_KINDS, NAMESPACE)
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


def namespace_deleting(ns: Mapping[str, Any]) -> bool:
    """Whether a Namespace object is being deleted (marked, or already Terminating)."""
    return (
        bool((ns.get("metadata") or {}).get("deletionTimestamp"))
        or (ns.get("status") or {}).get("phase") == "Terminating"
    )


def _version(body: Mapping[str, Any]) -> int | None:
    """The resourceVersion as a number (etcd's revision), None when it is not one."""
    try:
        return int((body.get("metadata") or {}).get("resourceVersion") or "")
    except ValueError:
        return None


def _older(incoming: Mapping[str, Any], kept: Mapping[str, Any] | None) -> bool:
    """Whether ``incoming`` is an older state than ``kept`` (a lagging watch event after our own write's
    response was stored); unknown order counts as newer."""
    if kept is None:
        return False
    a, b = _version(incoming), _version(kept)
    return a is not None and b is not None and a < b


@dataclass(frozen=True)
class _Written:
    """What stopline's last write of an object returned: a copy is trusted when it is that object at that
    generation or later, or a later state of whatever is there now (its resourceVersion is newer, e.g. the
    object was deleted and created again since)."""

    uid: str
    generation: int
    version: int | None

    def trusts(self, obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        newer = _version(obj)
        if newer is not None and self.version is not None and newer > self.version:
            return True
        same = not self.uid or str(meta.get("uid") or "") in ("", self.uid)
        return same and int(meta.get("generation") or 0) >= self.generation

    def covers(self, other: _Written) -> bool:
        """A later mark than ``other`` (kept over it)."""
        if self.version is not None and other.version is not None:
            return self.version >= other.version
        return self.uid == other.uid and self.generation >= other.generation


def _where(body: Mapping[str, Any]) -> tuple[str, str] | None:
    meta = body.get("metadata") or {}
    kind, namespace, name = body.get("kind"), meta.get("namespace"), meta.get("name")
    if kind == NAMESPACE:
        namespace = name  # a namespace is filed under itself
    if kind not in WATCHED_KINDS or not namespace or not name:
        return None
    return str(namespace), object_key(str(kind), str(name))


class WorkloadCache:
    """The latest copy of every workload in the served namespaces, by (namespace, ``Kind/name``)."""

    def __init__(self, *, live: Iterable[str] = ()) -> None:
        self._objs: dict[tuple[str, str], dict[str, Any]] = {}
        self._written: dict[tuple[str, str], _Written] = {}
        self._gone: dict[tuple[str, str], int] = {}  # DELETED seen, at this resourceVersion (0: unknown)
        self._live: set[str] = set(live)  # kinds whose watch is listed and streaming
        self._stale_until: dict[str, float] = {}  # kind → its watch broke: copies usable until then
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def on_event(self, type_: str | None, body: Mapping[str, Any]) -> tuple[str, str] | None:
        """Feed one watch event; returns (namespace, key) of the workload it was about."""
        where = _where(body)
        if where is None:
            return None
        if type_ == "DELETED" and body.get("kind") == NAMESPACE:
            self.forget_namespace(where[0])  # everything in it went with it (the marks would only pile up)
        with self._lock:
            if type_ == "DELETED":
                self._objs.pop(where, None)  # deleted, or no longer selected: read it fresh if needed
                self._gone[where] = _version(body) or 0  # a write response older than this is not kept
            elif not _older(body, self._objs.get(where)):
                self._objs[where] = _trim(body)
                self._gone.pop(where, None)
        return where

    def replace(self, kind: str, bodies: Iterable[Mapping[str, Any]]) -> None:
        """A fresh LIST of ``kind`` (only what this replica keeps): every other copy of that kind goes, and
        the kind is live from now on."""
        fresh = {w: _trim(b) for b in bodies if (w := _where(b)) is not None and split_key(w[1])[0] == kind}
        with self._lock:
            for where in [w for w in self._objs if split_key(w[1])[0] == kind]:
                del self._objs[where]
            for where in [w for w in self._gone if split_key(w[1])[0] == kind]:
                del self._gone[where]
            self._objs.update(fresh)
            self._live.add(kind)
            self._stale_until.pop(kind, None)

    def failing(self, kind: str, grace: float) -> None:
        """The watch of ``kind`` broke and is retrying: its copies (up to date until now) stay usable for
        ``grace`` seconds — a client-go informer serves its store likewise — then every read of the kind
        goes to the API server. At 2,000 Releases, dropping them at once sent every rolling-out Release
        to GET its workloads each tick while the saturated API server's watch cache caught up."""
        if grace <= 0:
            self.lost(kind)
            return
        with self._lock:
            if kind in self._live:
                self._stale_until.setdefault(kind, time.monotonic() + grace)

    def _usable(self, kind: str) -> bool:
        if kind not in self._live:
            return False
        until = self._stale_until.get(kind)
        if until is not None and time.monotonic() >= until:
            self._live.discard(kind)
            self._stale_until.pop(kind, None)
            for where in [w for w in self._objs if split_key(w[1])[0] == kind]:
                del self._objs[where]
            return False
        return True

    def lost(self, kind: str) -> None:
        """The watch of ``kind`` broke: its copies are not to be trusted (nor kept) until the next LIST."""
        with self._lock:
            self._live.discard(kind)
            self._stale_until.pop(kind, None)
            for where in [w for w in self._objs if split_key(w[1])[0] == kind]:
                del self._objs[where]

    def live(self, kind: str) -> bool:
        """Whether reads of ``kind`` are served from the copies now."""
        with self._lock:
            return self._usable(kind)

    def wrote(self, namespace: str, key: str, response: Mapping[str, Any], *, selected_by: str = "") -> None:
        """stopline wrote this object (apply, restore): older copies from the watch are not to be trusted.

        The write's response is the object as it is now, so it becomes the copy (unless the watch already
        has a newer one) — a rollout is then judged from memory right after the apply, with no GET per tick
        while a busy API server's watch lags. Only when the object stays in the watch's selection (it carries
        the ``selected_by`` label): one that leaves it (restored to an unlabelled snapshot) gets no more
        events, so its copy would never be replaced; it is read fresh instead."""
        meta = response.get("metadata") or {}
        mark = _Written(str(meta.get("uid") or ""), int(meta.get("generation") or 0), _version(response))
        where = (namespace, normal_key(key))
        with self._lock:
            last = self._written.get(where)
            if last is None or not last.covers(mark):
                self._written[where] = mark
            kind = split_key(where[1])[0]
            keep = self._usable(kind) and selected_by and selected_by in (meta.get("labels") or {})
            gone = self._gone.get(where)
            if gone is not None and (gone == 0 or (_version(response) or 0) <= gone):
                keep = False  # the watch saw it deleted (or leave the selection) after this write
            if keep and response.get("kind") == kind and not _older(response, self._objs.get(where)):
                self._objs[where] = _trim(response)
                self._gone.pop(where, None)

    def get(self, namespace: str, key: str) -> dict[str, Any] | None:
        """The watch's copy, or None — not live, not seen, or older than our last write: read it fresh."""
        where = (namespace, normal_key(key))
        with self._lock:
            obj = self._objs.get(where) if self._usable(split_key(where[1])[0]) else None
            mark = self._written.get(where)
            if obj is None or (mark is not None and not mark.trusts(obj)):
                self.misses += 1
                return None
            self.hits += 1
            return obj

    def namespace_gone(self, namespace: str) -> bool | None:
        """Whether the namespace is being deleted (or was), from the watch; None when the watch cannot tell
        (not live, or the namespace not seen yet — e.g. created a moment ago): read it fresh then."""
        where = (namespace, object_key(NAMESPACE, namespace))
        with self._lock:
            if not self._usable(NAMESPACE):
                return None
            if where in self._gone:
                return True
            obj = self._objs.get(where)
        if obj is None:
            return None
        return namespace_deleting(obj)

    def forget_namespace(self, namespace: str) -> None:
        """Drop every copy, write mark and tombstone in ``namespace`` (it was deleted)."""
        with self._lock:
            for where in [w for w in self._objs if w[0] == namespace]:
                del self._objs[where]
            for where in [w for w in self._written if w[0] == namespace]:
                del self._written[where]
            for where in [w for w in self._gone if w[0] == namespace]:
                del self._gone[where]

    def __len__(self) -> int:
        with self._lock:
            return len(self._objs)
