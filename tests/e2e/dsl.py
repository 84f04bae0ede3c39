"""Given / When / Then for stopline e2e tests, over the real stack and controller.

app = given.app("shop")                      # a repo with 4 Deployments at v1, live in the namespace
sha = app.commit(version="v2")               # a merge to main
rel = when.release(app, sha, gates=[...])    # a Release pushes it
then.release(rel).reaches("RolledBack")      # ... and so on
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from helpers import (
    apply,
    git,
    git_log,
    kubectl,
    kubectl_json,
    make_repo,
    push_commit,
    set_metric,
    wait_deployment_available,
    wait_for,
)

API = "stopline.dev/v1alpha1"
APP_DEPLOYMENTS: dict[str, str] = {"web-canary": "web", "web": "web", "chat": "chat", "api": "api"}
THREE_PHASES: list[dict[str, Any]] = [
    {"name": "canary", "deployments": ["web-canary"], "hold": "2s"},
    {"name": "chat", "selector": {"matchLabels": {"tier": "chat"}}, "hold": "2s"},
    {"name": "rest", "remaining": True, "hold": "2s"},
]


def deployment_yaml(name: str, tier: str, version: str, replicas: int = 2) -> str:
    """A Deployment the fake nodes can run (kwok fakes the containers)."""
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app": name, "tier": tier}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name, "tier": tier}},
                    "spec": {
                        "containers": [{"name": "app", "image": f"registry.example/{name}:{version}"}],
                        "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
                    },
                },
            },
        },
        sort_keys=False,
    )


def app_files(version: str, deployments: Mapping[str, str] = APP_DEPLOYMENTS) -> dict[str, str]:
    return {f"deploy/{n}.yaml": deployment_yaml(n, tier, version) for n, tier in deployments.items()}


@dataclass
class App:
    """A Git repo holding the app, and the namespace it runs in."""

    namespace: str
    repo: str
    deployments: dict[str, str] = field(default_factory=lambda: dict(APP_DEPLOYMENTS))

    def commit(self, version: str, message: str | None = None) -> str:
        return push_commit(self.repo, app_files(version, self.deployments), message or f"app {version}")

    def commit_files(self, files: Mapping[str, str], message: str) -> str:
        return push_commit(self.repo, files, message)

    def log(self) -> list[tuple[str, str]]:
        return git_log(self.repo)

    def image(self, deployment: str) -> str:
        d = kubectl_json("get", "deployment", deployment, "-n", self.namespace, "-o", "json")
        return str(d["spec"]["template"]["spec"]["containers"][0]["image"])

    def spec(self, deployment: str) -> dict[str, Any]:
        d = kubectl_json("get", "deployment", deployment, "-n", self.namespace, "-o", "json")
        return dict(d["spec"])

    def specs(self) -> dict[str, dict[str, Any]]:
        return {n: self.spec(n) for n in self.deployments}


class Given:
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def app(self, repo_name: str, version: str = "v1") -> App:
        """A fresh repo with the app at ``version``, and that version live and Available."""
        repo = make_repo(repo_name, app_files(version), message=f"app {version}")
        for rel, text in app_files(version).items():
            del rel
            apply(text, self.namespace)
        for name in APP_DEPLOYMENTS:
            wait_deployment_available(self.namespace, name, timeout=90)
        return App(self.namespace, repo)

    def metric(self, name: str, value: float) -> None:
        set_metric(name, value, test=self.namespace)


def gate(name: str, metric: str, namespace: str, **bounds: Any) -> dict[str, Any]:
    return {"name": name, "query": f'max({metric}{{test="{namespace}"}})', "interval": "1s", **bounds}


class When:
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def release(
        self,
        app: App,
        revision: str,
        *,
        name: str | None = None,
        phases: Sequence[Mapping[str, Any]] = THREE_PHASES,
        gates: Sequence[Mapping[str, Any]] = (),
        watch: str = "0s",
        on_failure: Mapping[str, Any] | None = None,
        prometheus_url: str | None = None,
        notify: Sequence[Mapping[str, Any]] = (),
    ) -> str:
        name = name or f"app-{revision[:7]}"
        spec: dict[str, Any] = {
            "source": {"repo": app.repo, "branch": "main", "revision": revision, "path": "deploy/"},
            "phases": list(phases),
            "gates": list(gates),
            "watch": watch,
        }
        if on_failure is not None:
            spec["onFailure"] = dict(on_failure)
        if prometheus_url is not None:
            spec["prometheus"] = {"url": prometheus_url}
        if notify:
            spec["notify"] = [dict(n) for n in notify]
        body = {"apiVersion": API, "kind": "Release", "metadata": {"name": name}, "spec": spec}
        apply(json.dumps(body), self.namespace)
        return name

    def metric(self, name: str, value: float) -> None:
        set_metric(name, value, test=self.namespace)

    def annotate(self, kind: str, name: str, key: str, value: str | None) -> None:
        arg = f"{key}-" if value is None else f"{key}={value}"
        kubectl("annotate", "--overwrite", kind, name, "-n", self.namespace, arg)


class Then:
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def get(self, kind: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = kubectl_json("get", kind, name, "-n", self.namespace, "-o", "json")
        return obj

    def status(self, kind: str, name: str) -> dict[str, Any]:
        return dict(self.get(kind, name).get("status") or {})

    def release_reaches(self, name: str, *phases: str, timeout: float = 120) -> dict[str, Any]:
        """Wait until status.phase is one of ``phases``; returns the status."""
        result: dict[str, Any] = wait_for(
            lambda: (s := self.status("release", name)) and s.get("phase") in phases and s,
            timeout=timeout,
            message=f"release {name} to reach {'/'.join(phases)}",
        )
        return result

    def release_in(self, name: str, phase: str, current: str, timeout: float = 90) -> dict[str, Any]:
        """Wait until the Release is in ``phase`` with ``currentPhase`` = ``current``."""
        result: dict[str, Any] = wait_for(
            lambda: (
                (s := self.status("release", name))
                and s.get("phase") == phase
                and s.get("currentPhase") == current
                and s
            ),
            timeout=timeout,
            message=f"release {name} to be {phase} in {current}",
        )
        return result

    def rolled_back_by(self, name: str, gate: str, phase: str, timeout: float = 90) -> dict[str, Any]:
        """Named expectation: the Release is RolledBack by ``gate`` in ``phase``, and the revert landed in Git."""
        status = self.release_reaches(name, "RolledBack", "Failed", "Succeeded", timeout=timeout)
        seen = json.dumps({k: status.get(k) for k in ("phase", "failedGate", "failure", "gauges")}, indent=1)
        assert status["phase"] == "RolledBack" and status.get("failedGate") == gate, (
            f"not rolled back by {gate}: {seen}"
        )
        assert (status.get("failure") or {}).get("phase") == phase, f"failed in another phase than {phase}: {seen}"
        assert self.condition(status, "RolledBack")["status"] == "True"
        reverted: dict[str, Any] = wait_for(
            lambda: (s := self.status("release", name)) and self.condition(s, "GitReverted")["status"] == "True" and s,
            timeout=60,
            message=f"release {name}: GitReverted=True",
        )
        return reverted

    def succeeded(self, name: str, timeout: float = 90) -> dict[str, Any]:
        """Named expectation: the Release passes every phase (fails with the state it saw otherwise)."""
        status = self.release_reaches(name, "Succeeded", "RolledBack", "Failed", timeout=timeout)
        assert status["phase"] == "Succeeded", (
            f"release {name} did not succeed: {status.get('message')}: " + json.dumps(status.get("gauges"), indent=1)
        )
        return status

    def condition(self, status: Mapping[str, Any], type_: str) -> dict[str, Any]:
        for c in status.get("conditions") or []:
            if c.get("type") == type_:
                return dict(c)
        raise AssertionError(f"no condition {type_} in {json.dumps(status.get('conditions'), indent=1)}")

    def gauge(self, status: Mapping[str, Any], gate: str, phase: str) -> dict[str, Any]:
        for row in status.get("gauges") or []:
            if row.get("gate") == gate and row.get("phase") == phase:
                return dict(row)
        raise AssertionError(f"no gauges row {gate}/{phase} in {json.dumps(status.get('gauges'), indent=1)}")

    def outbox(self, name: str, kind: str = "release") -> list[dict[str, Any]]:
        """The object's notification outbox (status.notifications.outbox)."""
        return list((self.status(kind, name).get("notifications") or {}).get("outbox") or [])

    def notifications_sent(
        self, name: str, count: int, timeout: float = 60, kind: str = "release"
    ) -> list[dict[str, Any]]:
        """Wait until ``count`` outbox entries are Sent and none is Pending; returns the outbox."""

        def done() -> list[dict[str, Any]] | None:
            box = self.outbox(name, kind)
            sent = [e for e in box if e.get("state") == "Sent"]
            return box if len(sent) == count and not any(e.get("state") == "Pending" for e in box) else None

        result: list[dict[str, Any]] = wait_for(
            done, timeout=timeout, message=f"{count} notification(s) of {name} Sent"
        )
        return result

    def events(self, name: str) -> list[dict[str, Any]]:
        out = kubectl_json(
            "get", "events", "-n", self.namespace, "--field-selector", f"involvedObject.name={name}", "-o", "json"
        )
        return list(out.get("items") or [])


def tree_of(repo: str, rev: str) -> str:
    """The tree SHA of ``rev`` in a fresh bare clone of ``repo``."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="stopline-e2e-") as tmp:
        clone = Path(tmp) / "r.git"
        git("clone", "-q", "--bare", repo, str(clone))
        return git("rev-parse", f"{rev}^{{tree}}", cwd=clone).stdout.strip()


def commit_message(repo: str, rev: str) -> str:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="stopline-e2e-") as tmp:
        clone = Path(tmp) / "r.git"
        git("clone", "-q", "--bare", repo, str(clone))
        return git("log", "-1", "--format=%B", rev, cwd=clone).stdout
