"""stopline's own resources and the small core reads around them (Secrets, ConfigMaps)."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.errors import ClusterError, InvalidSpec, ObjectGone
from controller.kube.apierrors import api_error
from controller.kube.watched import namespace_deleting
from controller.models.common import API_GROUP, API_VERSION

T = TypeVar("T")


async def _call(fn: Callable[..., T], *args: Any, executor: concurrent.futures.Executor | None = None) -> T:
    """Run a blocking client call on the thread pool (or ``executor``); an unreachable API server is a
    ClusterError too (urllib3 raises its own errors for refused or dropped connections, not ApiException)."""
    try:
        if executor is not None:
            return await asyncio.get_running_loop().run_in_executor(executor, functools.partial(fn, *args))
        return await asyncio.to_thread(fn, *args)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise ClusterError(f"Kubernetes API unreachable: {type(exc).__name__}: {exc}"[:500]) from exc


class Objects:
    """Custom-object and core reads/writes used by the reconcilers."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._custom: Any = client.CustomObjectsApi(api_client)
        self._core: Any = client.CoreV1Api(api_client)

    # ---------------------------------------------------------------- custom objects
    def _patch_status(
        self, plural: str, namespace: str, name: str, patch: dict[str, Any], uid: str | None = None
    ) -> str:
        if uid is not None:  # a UID in the patch is a precondition: never write onto a namesake
            patch = {**patch, "metadata": {"uid": uid}}
        try:
            out = self._custom.patch_namespaced_custom_object_status(
                API_GROUP, API_VERSION, namespace, plural, name, patch, _content_type="application/merge-patch+json"
            )
        except ApiException as exc:
            if exc.status == 404 or (exc.status == 409 and "uid" in (exc.body or "").lower()):
                raise ObjectGone(f"{plural}/{name} in {namespace} no longer exists") from exc
            raise api_error(f"patch {plural}/{name} status", exc) from exc
        meta = out.get("metadata") if isinstance(out, dict) else None
        return str((meta or {}).get("resourceVersion") or "")

    async def patch_status(
        self, plural: str, namespace: str, name: str, patch: dict[str, Any], uid: str | None = None
    ) -> str:
        """JSON-merge-patch the status subresource; the object's new resourceVersion. ObjectGone when the
        object (with that UID) is gone."""
        return await _call(self._patch_status, plural, namespace, name, patch, uid)

    def _patch(self, plural: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
        try:
            self._custom.patch_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, plural, name, patch, _content_type="application/merge-patch+json"
            )
        except ApiException as exc:
            raise api_error(f"patch {plural}/{name}", exc) from exc

    async def patch(self, plural: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """JSON-merge-patch the object (metadata/spec)."""
        await _call(self._patch, plural, namespace, name, patch)

    def _get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self._custom.get_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, plural, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise api_error(f"read {plural}/{name}", exc) from exc
        return obj

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A stopline object, or None."""
        return await _call(self._get, plural, namespace, name)

    def _create(self, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self._custom.create_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, plural, body
            )
        except ApiException as exc:
            if exc.status == 409:
                return None  # already exists: creation is idempotent by name
            if exc.status == 422:
                raise InvalidSpec(str(api_error(f"create {plural}", exc))) from exc
            raise api_error(f"create {plural}", exc) from exc
        return obj

    async def create(self, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Create a stopline object; None when one with that name already exists."""
        return await _call(self._create, plural, namespace, body)

    def _list(self, plural: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        try:
            out: dict[str, Any] = self._custom.list_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, plural, label_selector=label_selector
            )
        except ApiException as exc:
            raise api_error(f"list {plural}", exc) from exc
        return list(out.get("items") or [])

    async def list(self, plural: str, namespace: str, label_selector: str = "") -> list[dict[str, Any]]:
        """stopline objects in a namespace matching a label selector."""
        return await _call(self._list, plural, namespace, label_selector)

    def _namespace_gone(self, namespace: str) -> bool:
        try:  # list (not get): the controller's cluster role already lists and watches namespaces
            out = self._core.list_namespace(field_selector=f"metadata.name={namespace}", _preload_content=False)
        except ApiException as exc:
            raise api_error(f"read namespace {namespace}", exc) from exc
        items = json.loads(out.data).get("items") or []
        return not items or namespace_deleting(items[0])

    def _namespaces(self, label_selector: str) -> set[str]:
        try:
            out = self._core.list_namespace(label_selector=label_selector, _preload_content=False)
        except ApiException as exc:
            raise api_error(f"list namespaces {label_selector}", exc) from exc
        return {str(ns["metadata"]["name"]) for ns in json.loads(out.data).get("items") or []}

    async def namespaces(self, label_selector: str) -> set[str]:
        """Names of the namespaces whose labels match ``label_selector``."""
        return await _call(self._namespaces, label_selector)

    async def namespace_gone(self, namespace: str) -> bool:
        """Whether the namespace is gone or being deleted (then nothing more is done in it)."""
        return await _call(self._namespace_gone, namespace)

    def _delete(self, plural: str, namespace: str, name: str, uid: str) -> None:
        try:
            self._custom.delete_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, plural, name, body={"preconditions": {"uid": uid}}
            )
        except ApiException as exc:
            if exc.status in (404, 409):
                return  # gone already, or replaced by a newer object of that name: not ours to delete
            raise api_error(f"delete {plural}/{name}", exc) from exc

    async def delete(self, plural: str, namespace: str, name: str, uid: str) -> None:
        """Delete one object, only if it is still the one we saw (UID precondition)."""
        await _call(self._delete, plural, namespace, name, uid)

    # ---------------------------------------------------------------- core
    def _secret(self, namespace: str, name: str) -> dict[str, bytes]:
        try:
            secret = self._core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise InvalidSpec(f"Secret {namespace}/{name} not found") from exc
            raise api_error(f"read Secret {namespace}/{name}", exc) from exc
        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}

    async def secret_data(self, namespace: str, name: str) -> dict[str, bytes]:
        """Decoded data of a Secret (never logged)."""
        return await _call(self._secret, namespace, name)

    def _merge_configmap(self, namespace: str, name: str, data: dict[str, str | None], labels: dict[str, str]) -> None:
        body = {"metadata": {"name": name, "namespace": namespace, "labels": labels}, "data": data}
        try:
            self._core.patch_namespaced_config_map(name, namespace, body)
        except ApiException as exc:
            if exc.status != 404:
                raise api_error(f"patch ConfigMap {namespace}/{name}", exc) from exc
            created = {**body, "data": {k: v for k, v in data.items() if v is not None}}
            try:
                self._core.create_namespaced_config_map(namespace, created)
            except ApiException as exc2:
                if exc2.status == 409:
                    self._core.patch_namespaced_config_map(name, namespace, body)
                    return
                raise api_error(f"create ConfigMap {namespace}/{name}", exc2) from exc2

    async def merge_configmap(
        self, namespace: str, name: str, data: dict[str, str | None], labels: dict[str, str]
    ) -> None:
        """Set (or, with None, remove) keys of a shared ConfigMap without touching the others."""
        await _call(self._merge_configmap, namespace, name, data, labels)
