"""An in-memory API server behind the kubernetes ApiClient's ``call_api``: discovery, CRUD, apply, preconditions.

Enough of the real semantics for the kube adapter's tests: resourceVersion conflicts on PUT, UID
preconditions on DELETE, 409 on create of an existing name, label selectors on list.
"""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException

CORE = [
    ("configmaps", "ConfigMap"),
    ("secrets", "Secret"),
    ("services", "Service"),
    ("serviceaccounts", "ServiceAccount"),
    ("persistentvolumeclaims", "PersistentVolumeClaim"),
    ("pods", "Pod"),
    ("events", "Event"),
]
GROUPS = {
    "apps/v1": [
        ("deployments", "Deployment"),
        ("statefulsets", "StatefulSet"),
        ("daemonsets", "DaemonSet"),
        ("replicasets", "ReplicaSet"),
    ],
    "batch/v1": [("cronjobs", "CronJob"), ("jobs", "Job")],
    "rbac.authorization.k8s.io/v1": [
        ("roles", "Role"),
        ("rolebindings", "RoleBinding"),
        ("clusterroles", "ClusterRole"),
    ],
}
CLUSTER_SCOPED = {"ClusterRole", "Namespace"}
VERBS = ["create", "delete", "get", "list", "patch", "update"]


@dataclass
class Response:
    """Stands in for ``kubernetes.client.rest.RESTResponse``."""

    data: bytes
    status: int = 200
    reason: str = "OK"

    def read(self) -> bytes:
        return self.data


def _error(status: int, message: str = "") -> ApiException:
    exc = ApiException(status=status, reason={404: "Not Found", 409: "Conflict", 422: "Invalid"}.get(status, "Error"))
    exc.body = json.dumps({"kind": "Status", "message": message, "code": status})
    return exc


def _matches(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, selector.split(",")):
        k, _, v = term.partition("=")
        if labels.get(k) != v:
            return False
    return True


def _field(obj: dict[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def _fields_match(selector: str, obj: dict[str, Any]) -> bool:
    """A fieldSelector of ``path=value`` terms (what the API serves for Events: involvedObject.uid, reason)."""
    return all(_field(obj, k) == v for k, _, v in (t.partition("=") for t in filter(None, selector.split(","))))


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict) and isinstance(target.get(k), dict):
            _merge(target[k], v)
        else:
            target[k] = v
    return target


@dataclass
class FakeApiClient:
    """Stands in for ``kubernetes.client.ApiClient``; ``objects`` is keyed by (plural, namespace, name)."""

    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    fail: dict[tuple[str, str], int] = field(default_factory=dict)  # (method, path) → status to raise
    races: dict[tuple[str, str], int] = field(default_factory=dict)  # (method, path) → writes by "someone else"
    _ids: Any = field(default_factory=itertools.count)

    # ---- discovery
    def _resources(self, gv: str, pairs: list[tuple[str, str]]) -> dict[str, Any]:
        return {
            "kind": "APIResourceList",
            "groupVersion": gv,
            "resources": [
                {"name": p, "kind": k, "namespaced": k not in CLUSTER_SCOPED, "verbs": VERBS} for p, k in pairs
            ]
            + [{"name": f"{p}/status", "kind": k, "namespaced": True, "verbs": ["get"]} for p, k in pairs[:1]],
        }

    def _discovery(self, path: str) -> dict[str, Any] | None:
        if path == "/api/v1":
            return self._resources("v1", [*CORE, ("namespaces", "Namespace")])
        if path == "/apis":
            return {
                "groups": [
                    {
                        "name": gv.split("/")[0],
                        "versions": [{"groupVersion": gv}],
                        "preferredVersion": {"groupVersion": gv},
                    }
                    for gv in GROUPS
                ]
            }
        for gv, pairs in GROUPS.items():
            if path == f"/apis/{gv}":
                return self._resources(gv, pairs)
        return None

    # ---- helpers
    def put(self, obj: dict[str, Any], plural: str) -> dict[str, Any]:
        """Seed an object as if created by someone else."""
        body = copy.deepcopy(obj)
        meta = body.setdefault("metadata", {})
        meta.setdefault("namespace", "shop")
        meta["uid"] = f"uid-{next(self._ids)}"
        meta["resourceVersion"] = "1"
        self.objects[(plural, meta["namespace"], meta["name"])] = body
        return body

    def get(self, plural: str, name: str, namespace: str = "shop") -> dict[str, Any] | None:
        return self.objects.get((plural, namespace, name))

    @staticmethod
    def _parse(path: str) -> tuple[str, str, str | None]:
        parts = path.strip("/").split("/")
        i = parts.index("namespaces")
        namespace, plural = parts[i + 1], parts[i + 2]
        name = parts[i + 3] if len(parts) > i + 3 else None
        return plural, namespace, name

    # ---- the two entry points the adapter uses (as the generated APIs do)
    def param_serialize(
        self,
        method: str,
        resource_path: str,
        query_params: list[tuple[str, str]] | None = None,
        header_params: dict[str, str] | None = None,
        body: Any = None,
        auth_settings: list[str] | None = None,
    ) -> tuple[str, str, dict[str, str], Any, list[Any]]:
        assert auth_settings == ["BearerToken"]
        assert body is None or isinstance(body, dict), "bodies go to the client as dicts (it serialises them)"
        return method, resource_path, header_params or {}, {"body": body, "query": dict(query_params or [])}, []

    def call_api(
        self, method: str, url: str, header_params: Any = None, body: Any = None, post_params: Any = None
    ) -> Response:
        merge = "merge-patch" in str((header_params or {}).get("Content-Type", ""))
        try:
            return self._handle(url, method, body=body["body"], query=body["query"], merge=merge)
        except ApiException as exc:
            return Response((exc.body or "").encode(), exc.status or 500, exc.reason or "")

    def _handle(self, path: str, method: str, *, body: Any, query: dict[str, str], merge: bool = False) -> Response:
        self.calls.append((method, path))
        if (method, path) in self.fail:
            raise _error(self.fail[(method, path)], "injected")
        if method == "GET":
            doc = self._discovery(path)
            if doc is not None:
                return Response(json.dumps(doc).encode())
        body = json.loads(json.dumps(body)) if body is not None else None
        plural, namespace, name = self._parse(path)
        key = (plural, namespace, name or "")
        live = self.objects.get(key)
        if method == "GET" and name is None:
            items = [
                o
                for (p, ns, _), o in self.objects.items()
                if p == plural
                and ns == namespace
                and _matches(query.get("labelSelector", ""), o["metadata"].get("labels") or {})
                and _fields_match(query.get("fieldSelector", ""), o)
            ]
            return Response(json.dumps({"items": items}).encode())
        if method == "GET":
            if live is None:
                raise _error(404, f"{plural} {name} not found")
            return Response(json.dumps(live).encode())
        if method == "POST":
            assert body is not None
            key = (plural, namespace, body["metadata"]["name"])
            if key in self.objects:
                raise _error(409, "already exists")
            return Response(json.dumps(self.put(body, plural)).encode())
        if method == "PUT":
            assert body is not None
            if live is None:
                raise _error(404)
            if self.races.get((method, path), 0) > 0:  # another writer got in between our read and write
                self.races[(method, path)] -= 1
                live["metadata"]["resourceVersion"] = str(int(live["metadata"]["resourceVersion"]) + 1)
            if body["metadata"].get("resourceVersion") != live["metadata"]["resourceVersion"]:
                raise _error(409, "the object has been modified")
            new = copy.deepcopy(body)
            new["metadata"]["uid"] = live["metadata"]["uid"]
            new["metadata"]["resourceVersion"] = str(int(live["metadata"]["resourceVersion"]) + 1)
            self.objects[key] = new
            return Response(json.dumps(new).encode())
        if method == "PATCH" and merge:  # JSON merge patch, with a resourceVersion precondition when given
            assert body is not None and live is not None
            wanted = (body.get("metadata") or {}).get("resourceVersion")
            if wanted and wanted != live["metadata"]["resourceVersion"]:
                raise _error(409, "the object has been modified")
            new = _merge(copy.deepcopy(live), body)
            new["metadata"]["resourceVersion"] = str(int(live["metadata"]["resourceVersion"]) + 1)
            self.objects[key] = new
            return Response(json.dumps(new).encode())
        if method == "PATCH":  # server-side apply: here, the applied fields replace the object's
            assert body is not None
            if live is None:
                return Response(json.dumps(self.put(body, plural)).encode())
            new = copy.deepcopy(body)
            new["metadata"]["uid"] = live["metadata"]["uid"]
            new["metadata"]["resourceVersion"] = str(int(live["metadata"]["resourceVersion"]) + 1)
            self.objects[key] = new
            return Response(json.dumps(new).encode())
        if method == "DELETE":
            if live is None:
                raise _error(404)
            uid = ((body or {}).get("preconditions") or {}).get("uid")
            if uid and uid != live["metadata"]["uid"]:
                raise _error(409, "precondition failed")
            del self.objects[key]
            return Response(b"{}")
        raise AssertionError(f"unexpected {method} {path}")
