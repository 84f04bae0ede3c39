"""Workload watch: Deployments, StatefulSets and DaemonSets feed the shared workload state, and a change
wakes the Release loops of its namespace (rollout progress is seen at once, without polling the API)."""

from __future__ import annotations

from typing import Any

import kopf

from controller.handlers.startup import runtime, serves


async def _on_workload(type_: str | None, body: kopf.Body, namespace: str | None, memo: Any) -> None:
    rt = runtime(memo)
    served = serves(rt, namespace) if namespace is not None else None
    if namespace is None or served is None or rt.cluster.watched is None:
        return
    if not served:  # another shard's: not kept (its copies would only cost memory here)
        rt.cluster.watched.drop(body)
        return
    rt.cluster.watched.on_event(type_, body)
    rt.supervisors["releases"].wake_namespace(namespace)


@kopf.on.event("apps", "v1", "deployments")
async def deployment_event(type: str | None, body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> None:
    await _on_workload(type, body, namespace, memo)


@kopf.on.event("apps", "v1", "statefulsets")
async def statefulset_event(type: str | None, body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> None:
    await _on_workload(type, body, namespace, memo)


@kopf.on.event("apps", "v1", "daemonsets")
async def daemonset_event(type: str | None, body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> None:
    await _on_workload(type, body, namespace, memo)
