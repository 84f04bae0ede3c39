"""coordination.k8s.io/v1 Leases for the shard leadership: read, take and renew with resourceVersion
preconditions (two replicas writing one Lease: exactly one write wins, the other gets 409)."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.kube.apierrors import api_error
from controller.kube.cluster import Rest
from controller.kube.objects import _call
from controller.reconcile.shards import LeaseView

T = TypeVar("T")
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
LEASE_THREADS = 2
"""Threads of the Lease calls' own pool (they share the controller's API client and its connections)."""


def _micro(t: datetime) -> str:
    """A MicroTime as the API server parses it (RFC 3339 with exactly six fractional digits)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _newer(mine: str | None, read: str | None) -> bool:
    """Whether the version we hold (from our own write) is newer than the one just read."""
    try:
        return mine is not None and read is not None and int(mine) > int(read)
    except ValueError:
        return False


def lease_name(prefix: str, shard: int) -> str:
    return f"{prefix}-shard-{shard}"


class Leases:
    """The shard Leases ``<prefix>-shard-<i>`` in one namespace."""

    def __init__(self, api_client: client.ApiClient, namespace: str, prefix: str, shards: int) -> None:
        self.rest = Rest(api_client)
        self.namespace = namespace
        self.prefix = prefix
        self.shards = shards
        self._versions: dict[int, str | None] = {}  # resourceVersion as last read or written (None: absent)
        self._specs: dict[int, dict[str, Any]] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=LEASE_THREADS, thread_name_prefix="stopline-lease"
        )

    def _path(self, name: str | None = None) -> str:
        base = LEASES.format(namespace=self.namespace)
        return f"{base}/{name}" if name else base

    def _read(self) -> list[LeaseView]:
        views = []
        for shard in range(self.shards):
            try:
                obj = self.rest.call("GET", self._path(lease_name(self.prefix, shard)))
            except ApiException as exc:
                if exc.status != 404:
                    raise api_error(f"read Lease {self.namespace}/{lease_name(self.prefix, shard)}", exc) from exc
                self._versions[shard] = None
                views.append(LeaseView(shard, exists=False))
                continue
            spec = obj.get("spec") or {}
            version = (obj.get("metadata") or {}).get("resourceVersion")
            if not _newer(self._versions.get(shard), version):  # a renewal landed while this read was out
                self._versions[shard] = version
                self._specs[shard] = spec
            views.append(
                LeaseView(
                    shard,
                    holder=spec.get("holderIdentity") or None,
                    renewed=_parse(spec.get("renewTime")),
                    duration=timedelta(seconds=int(spec.get("leaseDurationSeconds") or 10)),
                )
            )
        return views

    def _write(self, shard: int, me: str, now: datetime, duration: timedelta, take: bool) -> bool:
        name = lease_name(self.prefix, shard)
        version = self._versions.get(shard)
        spec: dict[str, Any] = {
            "holderIdentity": me,
            "leaseDurationSeconds": int(duration.total_seconds()),
            "renewTime": _micro(now),
        }
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "stopline"}},
            "spec": spec,
        }
        try:
            if version is None:
                spec["acquireTime"] = _micro(now)
                spec["leaseTransitions"] = 0
                out = self.rest.call("POST", self._path(), body=body)
            else:
                old = self._specs.get(shard) or {}
                if take:
                    spec["acquireTime"] = _micro(now)
                    spec["leaseTransitions"] = int(old.get("leaseTransitions") or 0) + 1
                else:
                    spec["acquireTime"] = old.get("acquireTime") or _micro(now)
                    spec["leaseTransitions"] = int(old.get("leaseTransitions") or 0)
                body["metadata"]["resourceVersion"] = version
                out = self.rest.call("PUT", self._path(name), body=body)
        except ApiException as exc:
            if exc.status in (409, 404):  # another replica won the write (or deleted the Lease meanwhile)
                return False
            raise api_error(f"write Lease {self.namespace}/{name}", exc) from exc
        self._versions[shard] = (out.get("metadata") or {}).get("resourceVersion")
        self._specs[shard] = out.get("spec") or spec
        return True

    def _release(self, shard: int) -> None:
        name, version = lease_name(self.prefix, shard), self._versions.get(shard)
        if version is None:
            return
        spec = {k: v for k, v in (self._specs.get(shard) or {}).items() if k not in ("holderIdentity", "renewTime")}
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "resourceVersion": version},
            "spec": spec,
        }
        try:
            self.rest.call("PUT", self._path(name), body=body)
        except ApiException as exc:
            if exc.status not in (409, 404):  # someone else holds it already: nothing to give up
                raise api_error(f"release Lease {self.namespace}/{name}", exc) from exc

    async def release(self, shard: int) -> None:
        """Give shard ``shard`` up (holder cleared): another replica takes it at its next round."""
        await self._io(self._release, shard)

    def _heartbeat(self, me: str, now: datetime, duration: timedelta) -> int:
        name = f"{self.prefix}-member-{me}"[:253].rstrip("-.")
        group = {"stopline.dev/lease-group": self.prefix[:63].rstrip("-._"), "stopline.dev/lease-role": "member"}
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "stopline", **group}},
            "spec": {
                "holderIdentity": me,
                "leaseDurationSeconds": int(duration.total_seconds()),
                "renewTime": _micro(now),
            },
        }
        try:
            self.rest.call(
                "PATCH",
                self._path(name),
                body=body,
                query={"fieldManager": "stopline"},
                content_type="application/apply-patch+yaml",
            )
        except ApiException as exc:
            raise api_error(f"renew member Lease {self.namespace}/{name}", exc) from exc
        selector = ",".join(f"{k}={v}" for k, v in group.items())
        try:
            items = self.rest.call("GET", self._path(), query={"labelSelector": selector}).get("items") or []
        except ApiException as exc:
            raise api_error(f"list member Leases in {self.namespace}", exc) from exc
        live = 0
        for item in items:
            spec = item.get("spec") or {}
            renewed = _parse(spec.get("renewTime"))
            if renewed is not None and now < renewed + timedelta(seconds=int(spec.get("leaseDurationSeconds") or 10)):
                live += 1
        return max(1, live)

    async def heartbeat(self, me: str, now: datetime, duration: timedelta) -> int:
        """Renew this replica's member Lease; how many replicas have a live one (ourselves included)."""
        return await self._io(self._heartbeat, me, now, duration)

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        """Lease calls run on their own two threads: never queued behind Release work on the shared pool
        (a renewal that waits there lets the Lease lapse under load)."""
        return await _call(fn, *args, executor=self._pool)

    def renew_blocking(self, shard: int, me: str, now: datetime, duration: timedelta) -> bool:
        """Renew shard ``shard`` for ``me`` on the calling thread (the renewer thread's own)."""
        return self._write(shard, me, now, duration, False)

    async def read(self) -> Sequence[LeaseView]:
        return await self._io(self._read)

    async def write(self, shard: int, me: str, now: datetime, duration: timedelta, *, take: bool) -> bool:
        """Take or renew shard ``shard`` for ``me`` (precondition: the resourceVersion last read); False
        when another replica's write got there first."""
        return await self._io(self._write, shard, me, now, duration, take)
