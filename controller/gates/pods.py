"""The ``kubernetes`` gate: pure verdicts over the pushed workloads' pods (plain API dicts in, no client).

A reading is the pods of every workload the Release pushed so far (this phase and earlier ones), listed by
each workload's selector (``controller.kube.gatechecks``). The verdict, in order:

1. a pushed workload that does not exist → Error (counts toward ``inconclusiveLimit``);
2. no pods at all → Inconclusive (counts);
3. a container waiting with, or last terminated with, a reason in ``failOnReasons`` → Fail;
4. restarts since the baseline above ``maxRestarts`` → Fail (a pod that existed at the baseline counts the
   restarts it made since; a pod created later counts all of its own);
5. pods not ready for longer than ``notReadyGrace`` above ``maxNotReady`` → Fail;
6. every pod still starting (not ready, within the grace) → Inconclusive, *pending*: it never counts
   toward ``inconclusiveLimit`` (pods that are still starting are not a failure, nor a missing reading);
7. otherwise Pass.

The gauges row shows the restarts since the baseline as postPush (prePush: restarts at the baseline) and
names the pods and reasons in its message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from controller.gates.evaluate import Judgement
from controller.models.release import Gate

MAX_NAMED = 3  # pods named in a message; the rest are counted


@dataclass(frozen=True)
class PodHealth:
    """What the gate needs to know about one pod."""

    uid: str
    name: str
    workload: str  # Kind/name of the pushed workload that selects it
    restarts: int = 0  # sum of its containers' restartCount (init containers included)
    ready: bool = False
    not_ready_since: datetime | None = None  # Ready condition's last transition (else the pod's creation)
    reasons: tuple[str, ...] = ()  # waiting reasons and last-termination reasons of its containers
    deleting: bool = False
    phase: str = ""


@dataclass(frozen=True)
class PodsReading:
    """The pods of the pushed workloads, at ``at``; ``missing`` lists workloads that do not exist."""

    at: datetime
    pods: tuple[PodHealth, ...] = ()
    missing: tuple[str, ...] = ()
    error: str | None = None  # the pods could not be listed (API unreachable, RBAC)
    workloads: tuple[str, ...] = field(default=())


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def pod_health(workload: str, pod: Mapping[str, Any]) -> PodHealth:
    """A pod (as the API returns it) reduced to what the gate judges."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    statuses = list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or [])
    restarts = 0
    reasons: list[str] = []
    for cs in statuses:
        with contextlib.suppress(TypeError, ValueError):
            restarts += int(cs.get("restartCount") or 0)
        for where in ((cs.get("state") or {}).get("waiting"), (cs.get("state") or {}).get("terminated")):
            if where and where.get("reason"):
                reasons.append(str(where["reason"]))
        last = (cs.get("lastState") or {}).get("terminated")
        if last and last.get("reason"):
            reasons.append(str(last["reason"]))
    ready_cond = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    ready = bool(ready_cond and ready_cond.get("status") == "True")
    since = _time((ready_cond or {}).get("lastTransitionTime")) or _time(meta.get("creationTimestamp"))
    return PodHealth(
        uid=str(meta.get("uid") or meta.get("name") or ""),
        name=str(meta.get("name") or ""),
        workload=workload,
        restarts=restarts,
        ready=ready,
        not_ready_since=None if ready else since,
        reasons=tuple(dict.fromkeys(reasons)),
        deleting=bool(meta.get("deletionTimestamp")),
        phase=str(status.get("phase") or ""),
    )


def restart_baseline(reading: PodsReading) -> dict[str, int]:
    """Restarts per pod UID at the baseline (pods with none are left out: the default is 0)."""
    return {p.uid: p.restarts for p in reading.pods if p.restarts > 0}


def restarts_since(pods: Iterable[PodHealth], baseline: Mapping[str, int]) -> dict[str, int]:
    """Restarts per pod name since the baseline (only pods that restarted)."""
    out: dict[str, int] = {}
    for p in pods:
        n = max(0, p.restarts - baseline.get(p.uid, 0))
        if n:
            out[p.name] = n
    return out


def _names(names: Iterable[str]) -> str:
    items = sorted(names)
    shown = ", ".join(items[:MAX_NAMED])
    return shown + (f" and {len(items) - MAX_NAMED} more" if len(items) > MAX_NAMED else "")


def judge_pods(
    gate: Gate, baseline: Mapping[str, int], reading: PodsReading, now: datetime
) -> tuple[Judgement, float | None]:
    """The verdict of one reading of a kubernetes gate, and its value (restarts since the baseline)."""
    assert gate.kubernetes is not None
    k = gate.kubernetes
    if reading.error is not None:
        return Judgement("Inconclusive", f"no reading: {reading.error}"), None
    if reading.missing:
        return Judgement("Error", f"workload(s) missing: {', '.join(sorted(reading.missing))}"), None
    pods = [p for p in reading.pods if not p.deleting]
    if not pods:
        return Judgement("Inconclusive", "no pods"), None
    since = restarts_since(pods, baseline)
    restarts = sum(since.values())
    fail_on = set(k.fail_on_reasons)
    by_reason: dict[str, list[str]] = {}
    for p in pods:
        for r in p.reasons:
            if r in fail_on:
                by_reason.setdefault(r, []).append(p.name)
    grace = k.not_ready_grace
    not_ready = [p for p in pods if not p.ready and not _starting(p, now, grace)]
    starting = [p for p in pods if not p.ready and _starting(p, now, grace)]
    breaches = [f"{len(v)} pod{'s' if len(v) != 1 else ''} {r} ({_names(v)})" for r, v in sorted(by_reason.items())]
    if restarts > k.max_restarts:
        detail = _names(f"{n} ×{c}" for n, c in since.items())
        breaches.append(f"{restarts} restart{'s' if restarts != 1 else ''} > {k.max_restarts} ({detail})")
    if len(not_ready) > k.max_not_ready:
        breaches.append(
            f"{len(not_ready)} pod{'s' if len(not_ready) != 1 else ''} not ready > {k.max_not_ready} "
            f"({_names(p.name for p in not_ready)})"
        )
    if breaches:
        return Judgement("Fail", "; ".join(breaches)), float(restarts)
    ready = len(pods) - len(not_ready) - len(starting)
    if ready == 0 and starting:
        return (
            Judgement(
                "Inconclusive",
                f"{len(starting)} pod(s) still starting ({_names(p.name for p in starting)})",
                pending=True,
            ),
            float(restarts),
        )
    tail = f", {len(starting)} starting" if starting else ""
    tail += f", {len(not_ready)} not ready" if not_ready else ""
    return Judgement("Pass", f"{ready} pod(s) ready{tail}, {restarts} restart(s) since the phase began"), float(
        restarts
    )


def _starting(p: PodHealth, now: datetime, grace: timedelta) -> bool:
    return p.not_ready_since is None or now - p.not_ready_since < grace
