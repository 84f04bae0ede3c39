"""Rollout-complete rules per workload kind and the fast-undo strategies, over plain API dicts. Pure: no I/O."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from controller.release.actions import LiveDeployment


def _ints(obj: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, Any], int, int]:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    st = obj.get("status") or {}
    return spec, st, int(meta.get("generation") or 0), int(st.get("observedGeneration") or 0)


def _replicas(spec: Mapping[str, Any]) -> int:
    return int(spec["replicas"]) if spec.get("replicas") is not None else 1


def deployment_state(key: str, obj: Mapping[str, Any]) -> LiveDeployment:
    """As ``kubectl rollout status`` judges a Deployment.

    Available once the controller has observed the current generation and every wanted replica is
    updated and available with no old replica left. A failure once the observed rollout exceeded its
    progress deadline, or when the Deployment is paused with its rollout unfinished (a paused rollout
    never progresses and never hits its deadline, so waiting for it would wait forever)."""
    spec, st, generation, observed = _ints(obj)
    want = _replicas(spec)
    updated = int(st.get("updatedReplicas") or 0)
    total = int(st.get("replicas") or 0)
    available = int(st.get("availableReplicas") or 0)
    failure = None
    for cond in st.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            failure = cond.get("message") or "ProgressDeadlineExceeded"
    done = observed >= generation and updated >= want and total == updated and available >= want
    if observed < generation:
        failure = None  # the condition belongs to an earlier rollout
    elif spec.get("paused") and not done and failure is None:
        failure = "Deployment is paused (spec.paused: true); its rollout cannot finish until it is resumed"
    return LiveDeployment(name=key, exists=True, available=done, failure=failure)


def statefulset_state(key: str, obj: Mapping[str, Any]) -> LiveDeployment:
    """Observed the generation, every pod on the update revision and ready."""
    spec, st, generation, observed = _ints(obj)
    want = _replicas(spec)
    ready = int(st.get("readyReplicas") or 0)
    update, current = st.get("updateRevision"), st.get("currentRevision")
    rolling = ((spec.get("updateStrategy") or {}).get("type") or "RollingUpdate") == "RollingUpdate"
    revision_done = not rolling or (update is not None and update == current)
    done = observed >= generation and revision_done and ready >= want and int(st.get("replicas") or 0) == want
    return LiveDeployment(name=key, exists=True, available=done)


def daemonset_state(key: str, obj: Mapping[str, Any]) -> LiveDeployment:
    """Observed the generation, every scheduled pod updated and available."""
    _spec, st, generation, observed = _ints(obj)
    desired = int(st.get("desiredNumberScheduled") or 0)
    updated = int(st.get("updatedNumberScheduled") or 0)
    available = int(st.get("numberAvailable") or 0)
    done = observed >= generation and updated == desired and available == desired
    return LiveDeployment(name=key, exists=True, available=done)


RULES: dict[str, Callable[[str, Mapping[str, Any]], LiveDeployment]] = {
    "Deployment": deployment_state,
    "StatefulSet": statefulset_state,
    "DaemonSet": daemonset_state,
}


def live_state(kind: str, key: str, obj: Mapping[str, Any] | None) -> LiveDeployment:
    """The rollout state of a workload; objects of other kinds count as ready once they exist."""
    if obj is None:
        return LiveDeployment(name=key, exists=False)
    rule = RULES.get(kind)
    return rule(key, obj) if rule else LiveDeployment(name=key, exists=True, available=True)


# ---------------------------------------------------------------- fast undo
#: A Deployment restored with this strategy scales the old ReplicaSet to full and the pushed one to zero at
#: once (maxSurge: room for every old pod beside the new ones; maxUnavailable: the new ones may all go).
SURGE_ALL = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "100%", "maxUnavailable": "100%"}}
#: A DaemonSet starts the old pod on every node at once beside the new one and removes the new one when
#: the old is available (maxUnavailable must be 0 when maxSurge is set).
DAEMONSET_SURGE_ALL = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "100%", "maxUnavailable": 0}}
#: Pods with a hostPort cannot run twice on a node: replace every pod at once instead.
DAEMONSET_REPLACE_ALL = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "100%"}}


def _uses_host_port(spec: Mapping[str, Any]) -> bool:
    pod = ((spec.get("template") or {}).get("spec")) or {}
    containers = [*(pod.get("containers") or []), *(pod.get("initContainers") or [])]
    return any(p.get("hostPort") for c in containers for p in (c.get("ports") or []))


def fast_strategy(kind: str, obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The object with the temporary strategy a fast undo writes, or None to restore it as it is.

    Deployment: :data:`SURGE_ALL` (not for ``Recreate``: that already replaces every pod in one step).
    DaemonSet: :data:`DAEMONSET_SURGE_ALL`, or :data:`DAEMONSET_REPLACE_ALL` when a container uses a
    hostPort (not for ``OnDelete``: the user replaces pods by hand). StatefulSet: ``maxUnavailable: 100%``
    with the user's ``partition`` (pods keep their identity, so there is no surge; clusters without the
    MaxUnavailableStatefulSet feature drop the field and roll one pod at a time). Pure.
    """
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return None
    out = copy.deepcopy(dict(obj))
    new_spec = out["spec"]
    if kind == "Deployment":
        if (spec.get("strategy") or {}).get("type") == "Recreate":
            return None
        new_spec["strategy"] = copy.deepcopy(SURGE_ALL)
        return out
    if kind == "DaemonSet":
        if ((spec.get("updateStrategy") or {}).get("type") or "RollingUpdate") != "RollingUpdate":
            return None
        chosen = DAEMONSET_REPLACE_ALL if _uses_host_port(spec) else DAEMONSET_SURGE_ALL
        new_spec["updateStrategy"] = copy.deepcopy(chosen)
        return out
    if kind == "StatefulSet":
        strategy = spec.get("updateStrategy") or {}
        if (strategy.get("type") or "RollingUpdate") != "RollingUpdate":
            return None
        rolling = dict(strategy.get("rollingUpdate") or {})
        rolling["maxUnavailable"] = "100%"
        new_spec["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": rolling}
        return out
    return None
