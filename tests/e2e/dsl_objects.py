"""Given/When/Then for whole-application pushes: an app of many kinds, named expectations on every object.

app = WholeApp.create(ns)                 # repo with ConfigMap, Secret, Service, Deployment, StatefulSet, ...
sha = app.commit(app.files("v2"))
then = ObjectsThen(ns)
then.live(app.keys())                     # every object exists
then.same_as(before, keys)                # exactly the pre-push copy (spec/data/labels/annotations)
then.gone("ConfigMap/extra")
then.secret_nowhere(value, release, controller_log)
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from helpers import kubectl, kubectl_json, make_repo, push_commit, wait_for

TOLERATIONS = [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}]
SECRET_VALUE = "s3cr3t-e2e-password-7f1d"
PHASES: list[dict[str, Any]] = [
    {"name": "canary", "deployments": ["web"], "hold": "1s"},
    {"name": "data", "workloads": [{"kind": "StatefulSet", "name": "db"}], "hold": "1s"},
    {"name": "rest", "remaining": True, "hold": "1s"},
]
RESOURCE = {  # kubectl resource names for the kinds used here
    "ConfigMap": "configmap",
    "Secret": "secret",
    "Service": "service",
    "Deployment": "deployment",
    "StatefulSet": "statefulset",
    "DaemonSet": "daemonset",
    "CronJob": "cronjob",
    "HorizontalPodAutoscaler": "hpa",
    "Widget": "widgets.e2e.stopline.dev",
}
WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.e2e.stopline.dev"},
    "spec": {
        "group": "e2e.stopline.dev",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }
        ],
    },
}


def install_widget_crd() -> None:
    """A namespaced custom resource kind for the app (shared by sessions: applied, never deleted)."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(WIDGET_CRD))
    kubectl("wait", "--for=condition=Established", "crd/widgets.e2e.stopline.dev", "--timeout=60s")


def widget(name: str, size: int) -> dict[str, Any]:
    return {"apiVersion": "e2e.stopline.dev/v1", "kind": "Widget", "metadata": {"name": name}, "spec": {"size": size}}


def _pod(name: str, image: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"name": "app", "image": image, **spec}], "tolerations": TOLERATIONS},
    }


def app_objects(
    version: str,
    *,
    db_image: str | None = None,
    settings: str = "v1",
    service: bool = True,
    extra: bool = False,
    password: str = SECRET_VALUE,
) -> dict[str, dict[str, Any]]:
    """The app at ``version``: file name → object."""
    objs: dict[str, dict[str, Any]] = {
        "settings": {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "db-settings"},
            "data": {"mode": settings},
        },
        "secret": {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db-creds"},
            "type": "Opaque",
            "stringData": {"password": password},
        },
        "web": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": _pod("web", f"registry.example/web:{version}"),
            },
        },
        "db": {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db", "labels": {"app": "db"}},
            "spec": {
                "replicas": 1,
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": _pod(
                    "db",
                    db_image or f"registry.example/db:{version}",
                    envFrom=[{"configMapRef": {"name": "db-settings"}}],
                    env=[{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db-creds", "key": "password"}}}],
                ),
            },
        },
        "agent": {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "agent", "labels": {"app": "agent"}},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": _pod("agent", f"registry.example/agent:{version}"),
            },
        },
        "cron": {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "nightly"},
            "spec": {
                "schedule": "0 3 * * *",
                "suspend": True,
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {
                                "restartPolicy": "Never",
                                "tolerations": TOLERATIONS,
                                "containers": [{"name": "job", "image": f"registry.example/job:{version}"}],
                            }
                        }
                    }
                },
            },
        },
        "hpa": {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1,
                "maxReplicas": 3,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
                    }
                ],
            },
        },
    }
    if service:
        objs["service"] = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        }
    if extra:
        objs["extra"] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "extra"}, "data": {"new": "1"}}
    return objs


def key_of(obj: Mapping[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def files_of(objects: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    return {f"deploy/{name}.yaml": yaml.safe_dump(dict(obj), sort_keys=False) for name, obj in objects.items()}


@dataclass
class WholeApp:
    """A Git repo holding an application of many kinds."""

    namespace: str
    repo: str
    files: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, namespace: str, name: str, objects: Mapping[str, Mapping[str, Any]]) -> WholeApp:
        files = files_of(objects)
        return cls(namespace, make_repo(name, files, message="app v1"), files)

    def commit(self, objects: Mapping[str, Mapping[str, Any]], message: str) -> str:
        files = files_of(objects)
        gone = [f for f in self.files if f not in files]
        self.files = files
        return push_commit(self.repo, files, message, delete=gone)


def defining(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What defines an object for 'restored exactly': spec/data and user metadata, no server fields."""
    meta = obj.get("metadata") or {}
    out: dict[str, Any] = {
        "labels": meta.get("labels") or {},
        "annotations": {
            k: v for k, v in (meta.get("annotations") or {}).items() if k != "deployment.kubernetes.io/revision"
        },
    }
    for part in ("spec", "data", "type"):
        if part in obj:
            out[part] = obj[part]
    if obj.get("kind") == "Service":  # a recreated Service gets a new cluster IP
        out["spec"] = {k: v for k, v in out["spec"].items() if k not in ("clusterIP", "clusterIPs")}
    return out


class ObjectsThen:
    """Named expectations on the objects of a namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def get(self, key: str) -> dict[str, Any] | None:
        kind, name = key.split("/", 1)
        out = kubectl("get", RESOURCE[kind], name, "-n", self.namespace, "-o", "json", "--ignore-not-found")
        return json.loads(out.stdout) if out.stdout.strip() else None

    def snapshot(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The defining parts of each object now (every one must exist)."""
        out = {}
        for key in keys:
            obj = self.get(key)
            assert obj is not None, f"{key} is not live in {self.namespace}"
            out[key] = defining(obj)
        return out

    def live(self, keys: Iterable[str], timeout: float = 60) -> None:
        """Every object exists."""
        for key in keys:
            wait_for(lambda k=key: self.get(k) is not None, timeout=timeout, message=f"{key} to be live")

    def gone(self, key: str, timeout: float = 30) -> None:
        """The object no longer exists."""
        wait_for(lambda: self.get(key) is None, timeout=timeout, message=f"{key} to be deleted")

    def same_as(self, before: Mapping[str, Mapping[str, Any]], timeout: float = 30) -> None:
        """Every object is exactly its earlier copy (waits: restores are concurrent, not instant)."""

        def diff() -> list[str]:
            now = self.snapshot(before)
            return [k for k in before if now[k] != before[k]]

        try:
            wait_for(lambda: not diff(), timeout=timeout, message="every object to equal its pre-push copy")
        except AssertionError:
            now = self.snapshot(before)
            bad = {k: {"before": before[k], "now": now[k]} for k in before if now[k] != before[k]}
            raise AssertionError(f"not restored exactly: {json.dumps(bad, indent=1, sort_keys=True)}") from None

    def secret_nowhere(self, value: str, release: str, controller_log: Path) -> None:
        """A Secret's value is in no ConfigMap, in no Release status, in no event and in no controller log line."""
        forms = {value, base64.b64encode(value.encode()).decode()}
        configmaps = kubectl_json("get", "configmaps", "-n", self.namespace)
        places = {
            "a ConfigMap": json.dumps(configmaps),
            "the Release status": json.dumps(kubectl_json("get", "release", release, "-n", self.namespace)["status"]),
            "an event": json.dumps(kubectl_json("get", "events", "-n", self.namespace)),
            "the controller log": controller_log.read_text(errors="replace"),
        }
        found = [f"{where}" for where, text in places.items() for form in forms if form in text]
        assert not found, f"Secret data found in {', '.join(sorted(set(found)))}"
