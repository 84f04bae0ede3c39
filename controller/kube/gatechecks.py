"""Kubernetes I/O of the kubernetes and job gates: the pushed workloads' pods, the smoke-test Jobs, and
Secret values for http gate headers. Blocking calls run via ``asyncio.to_thread``; only the Release's own
namespace is touched; only Jobs the Release created (label and owner) are deleted."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from kubernetes.client.exceptions import ApiException

from controller.errors import ClusterError, InvalidSpec
from controller.kube import causes
from controller.kube.apierrors import api_error, api_message
from controller.kube.cluster import Cluster
from controller.kube.objects import Objects, _call


class GateChecks:
    """The GateChecksPort of the executor."""

    def __init__(self, cluster: Cluster, objects: Objects) -> None:
        self.cluster = cluster
        self.objects = objects

    # ---------------------------------------------------------------- pods
    def _pods_of(self, namespace: str, workload: Mapping[str, Any]) -> list[dict[str, Any]]:
        selector = causes.selector_string((workload.get("spec") or {}).get("selector"))
        if selector is None:
            return []
        return self.cluster._list(namespace, "Pod", "v1", {"labelSelector": selector})

    async def pods(self, namespace: str, workloads: Iterable[str]) -> dict[str, list[dict[str, Any]] | None]:
        """The pods of each workload (Kind/name; bare name: Deployment) by its selector; None: no such workload."""
        keys = list(dict.fromkeys(workloads))
        objs = await self.cluster.workloads(namespace, keys)
        found = await asyncio.gather(*(_call(self._pods_of, namespace, o) for o in objs if o is not None))
        it = iter(found)
        return {k: (next(it) if o is not None else None) for k, o in zip(keys, objs, strict=True)}

    # ---------------------------------------------------------------- jobs
    def _job_path(self, namespace: str, name: str | None = None) -> str:
        base = f"/apis/batch/v1/namespaces/{quote(namespace)}/jobs"
        return base if name is None else f"{base}/{quote(name)}"

    def _ensure_job(self, namespace: str, manifest: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        name = str(manifest["metadata"]["name"])
        try:
            return self.cluster.rest.call("POST", self._job_path(namespace), body=dict(manifest)), True
        except ApiException as exc:
            if exc.status in (400, 422):
                raise InvalidSpec(f"Job {name} rejected by the API: {api_message(exc)}") from exc
            if exc.status != 409:
                raise api_error(f"create Job {name} in {namespace}", exc) from exc
        try:  # AlreadyExists: created before a restart (the name is deterministic) — read it
            return self.cluster.rest.call("GET", self._job_path(namespace, name)), False
        except ApiException as exc:
            raise api_error(f"read Job {name} in {namespace}", exc) from exc

    async def ensure_job(self, namespace: str, manifest: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create the Job, or read it when it exists already: (the Job, whether this call created it)."""
        return await _call(self._ensure_job, namespace, manifest)

    def _jobs(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        try:
            out = self.cluster.rest.call("GET", self._job_path(namespace), query={"labelSelector": label_selector})
        except ApiException as exc:
            raise api_error(f"list Jobs in {namespace}", exc) from exc
        return list(out.get("items") or [])

    async def jobs(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """Jobs in the namespace with these labels."""
        return await _call(self._jobs, namespace, label_selector)

    def _delete_job(self, namespace: str, name: str, uid: str) -> None:
        body = {"propagationPolicy": "Background", "preconditions": {"uid": uid}}
        try:
            self.cluster.rest.call("DELETE", self._job_path(namespace, name), body=body)
        except ApiException as exc:
            if exc.status in (404, 409):
                return  # gone already, or a namesake that is not ours
            raise api_error(f"delete Job {name} in {namespace}", exc) from exc

    async def delete_job(self, namespace: str, name: str, uid: str) -> None:
        """Delete one Job (and its pods), only if it is still the one we saw (UID precondition)."""
        await _call(self._delete_job, namespace, name, uid)

    # ---------------------------------------------------------------- secrets
    async def secret_value(self, namespace: str, name: str, key: str) -> str:
        """One key of a Secret as text (never logged)."""
        data = await self.objects.secret_data(namespace, name)
        if key not in data:
            raise InvalidSpec(f"Secret {namespace}/{name} has no key {key!r}")
        try:
            return data[key].decode()
        except UnicodeDecodeError as exc:
            raise ClusterError(f"Secret {namespace}/{name} key {key!r} is not text") from exc
