"""The status page's reads from the Kubernetes API: stopline objects and their Events. Never Secrets.

Lists cluster-wide when allowed; when the controller only has Roles in the namespaces it watches (a 403 on
the cluster-wide list), it lists each namespace ``namespaces()`` names instead and says so on the page.
Blocking client calls run in worker threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.errors import ClusterError
from controller.kube.apierrors import api_message
from controller.models.common import API_GROUP, API_VERSION

REQUEST_TIMEOUT = (5, 30)


class KubePageSource:
    """:class:`controller.web.routes.PageSource` over the Kubernetes API."""

    def __init__(self, api_client: client.ApiClient, namespaces: Callable[[], Iterable[str]] = tuple) -> None:
        self._api: Any = api_client
        self._custom: Any = client.CustomObjectsApi(api_client)
        self._core: Any = client.CoreV1Api(api_client)
        self._namespaces = namespaces
        self._scoped = False

    def _list(self, plural: str) -> list[dict[str, Any]]:
        if not self._scoped:
            try:
                out = self._custom.list_cluster_custom_object(
                    API_GROUP, API_VERSION, plural, _request_timeout=REQUEST_TIMEOUT
                )
                return list(out.get("items") or [])
            except ApiException as exc:
                if exc.status != 403:
                    raise ClusterError(f"list {plural}: {api_message(exc)}") from exc
                self._scoped = True
        items: list[dict[str, Any]] = []
        for ns in sorted(set(self._namespaces())):
            try:
                out = self._custom.list_namespaced_custom_object(
                    API_GROUP, API_VERSION, ns, plural, _request_timeout=REQUEST_TIMEOUT
                )
            except ApiException as exc:
                raise ClusterError(f"list {plural} in {ns}: {api_message(exc)}") from exc
            items.extend(out.get("items") or [])
        return items

    async def list_all(self, plural: str) -> list[dict[str, Any]]:
        """Every ``plural`` object the controller can see."""
        return await asyncio.to_thread(self._list, plural)

    def _get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self._custom.get_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, plural, name, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise ClusterError(f"read {plural}/{name}: {api_message(exc)}") from exc
        return obj

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One object, or None when it does not exist."""
        return await asyncio.to_thread(self._get, plural, namespace, name)

    def _events(self, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
        try:
            out = self._core.list_namespaced_event(
                namespace,
                field_selector=f"involvedObject.kind={kind},involvedObject.name={name}",
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            raise ClusterError(f"list events: {api_message(exc)}") from exc
        items: list[dict[str, Any]] = self._api.sanitize_for_serialization(out).get("items") or []
        return items

    async def events(self, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
        """Events about ``kind``/``name``."""
        return await asyncio.to_thread(self._events, namespace, kind, name)

    def notes(self) -> list[str]:
        """Say when listing is limited to the watched namespaces."""
        if self._scoped:
            watched = ", ".join(sorted(set(self._namespaces()))) or "none known yet"
            return [f"Cluster-wide listing is not allowed; showing the watched namespaces: {watched}"]
        return []
