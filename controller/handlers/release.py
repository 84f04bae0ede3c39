"""Release wiring: one loop per live Release, started and stopped by the Release watch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import kopf

from controller.handlers.startup import fetcher, namespace_guard, runtime, serves
from controller.kube.watched import WORKLOAD_KINDS
from controller.metrics import default_metrics
from controller.models.common import API_GROUP, API_VERSION
from controller.models.release import FINAL_PHASES
from controller.reconcile.supervisor import Run, Supervisor
from controller.release.executor import ReleaseRef
from controller.release.runner import readings_interval, run_release
from controller.wiring import Runtime


def wanted(body: Mapping[str, Any]) -> bool:
    """A Release needs a loop until it is final, no git revert is still to be pushed and no notification is
    still to be sent."""
    status = body.get("status") or {}
    if status.get("phase") not in FINAL_PHASES:
        return True
    revert = status.get("revert") or {}
    outbox = (status.get("notifications") or {}).get("outbox") or []
    return revert.get("state") in ("Pending", "Error") or any(e.get("state") == "Pending" for e in outbox)


#: The longest a rolling-out Release waits between looks at its workloads while the workload watch is live
#: (a change wakes it at once; this is the safety net).
WATCHED_TICK = 1.0


def supervisor(rt: Runtime) -> Supervisor:
    """The Releases' supervisor (made at startup)."""

    async def start(run: Run) -> None:
        ref = ReleaseRef(namespace=run.namespace, name=run.name, uid=run.uid)
        metrics = default_metrics()
        run.on_stop.append(lambda: rt.executor.forget(ref))

        async def patch_status(patch: dict[str, Any]) -> None:
            run.wrote(await rt.objects.patch_status("releases", run.namespace, run.name, patch, uid=run.uid))

        def emit(type_: str, reason: str, message: str) -> None:
            kopf.event(cast(kopf.Body, run.body), type=type_, reason=reason, message=message[:1000])

        with metrics.running(ref):
            await run_release(
                ref,
                run.read_body,
                patch_status,
                rt.executor,
                hooks=metrics.hooks(emit),
                stopped=lambda: not run.alive(),
                tick=rt.settings.release_tick_seconds,
                sleep=run.wait,
                wake=run.wake,
                may_act=namespace_guard(rt, run),
                readings_every=lambda: readings_interval(sup.active()),
                rollout_tick=rollout_tick,
            )

    def rollout_tick() -> float:
        # While the workload watch is live, its events wake the loops of their namespace (and the state is
        # read from the same watch): polling every tick then only burnt CPU — at 2,000 Releases on 4
        # replicas, 500 loops each polling 4 times a second starved the API server they wait for.
        watched, tick = rt.cluster.watched, rt.settings.release_tick_seconds
        if watched is not None and all(watched.live(kind) for kind in WORKLOAD_KINDS):
            return max(tick, WATCHED_TICK)
        return tick

    sup = Supervisor("Release", start, wanted=wanted, serves=lambda ns: serves(rt, ns), fetch=fetcher(rt, "releases"))
    return sup


@kopf.on.event(API_GROUP, API_VERSION, "releases")
async def release_event(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    """Every Release event reaches the supervisor: it starts, wakes or stops the Release's loop."""
    runtime(memo).supervisors["releases"].on_event(type, body)
