"""Track wiring: one loop per Track (under the Tracks' supervisor); its Releases and push webhooks wake it.

A starting loop lists its Track's Releases once, to adopt one it created but had not recorded yet
instead of creating a second one beside it (push lock across restarts).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import kopf
from pydantic import ValidationError

from controller.handlers.startup import fetcher, namespace_guard, runtime, serves
from controller.metrics import default_metrics
from controller.models.common import API_GROUP, API_VERSION
from controller.models.notify import NotificationsStatus
from controller.models.track import TrackSpec, TrackStatus
from controller.reconcile.supervisor import Run, Supervisor, default_wake
from controller.release.actions import ANNOTATION_WAIVE_REVERT
from controller.track.plan import FINAL, LABEL_TRACK
from controller.track.prune import releases_to_prune
from controller.track.runner import TrackNotify, TrackRef, run_track
from controller.wiring import Runtime


def wake_track(memo: Any, namespace: str, name: str) -> None:
    """Wake the loop of Track ``namespace/name`` (webhook, its Release changed, an annotation)."""
    runtime(memo).supervisors["tracks"].wake(namespace, name)


def _spec_or_none(spec: Any) -> TrackSpec | None:
    try:
        return TrackSpec.model_validate(spec or {})
    except ValidationError:
        return None


def supervisor(rt: Runtime) -> Supervisor:
    """The Tracks' supervisor (made at startup): one loop per Track, for the Track's whole life."""

    async def start(run: Run) -> None:
        namespace, name, uid = run.namespace, run.name, run.uid
        ref = TrackRef(namespace=namespace, name=name, uid=uid)

        async def patch_status(patch: dict[str, Any]) -> None:
            run.wrote(await rt.objects.patch_status("tracks", namespace, name, patch, uid=uid))

        def emit(type_: str, reason: str, message: str) -> None:
            kopf.event(cast(kopf.Body, run.body), type=type_, reason=reason, message=message[:1000])

        async def owned() -> list[dict[str, Any]]:
            return await rt.objects.list("releases", namespace, f"{LABEL_TRACK}={name}")

        async def prune(spec: TrackSpec, status: TrackStatus) -> None:
            doomed = releases_to_prune(
                await owned(),
                keep=spec.history_limit,
                track_uid=uid,
                protected=(status.current, status.commit_lock.release, *(m.release for m in status.missing_reverts)),
            )
            for release, release_uid in doomed:
                if not run.alive():
                    return
                await rt.objects.delete("releases", namespace, release, release_uid)
            if doomed:
                emit("Normal", "ReleasesPruned", f"deleted {len(doomed)} old Release(s) beyond historyLimit")

        async def waive(release: str, token: str) -> None:
            await rt.objects.patch(
                "releases", namespace, release, {"metadata": {"annotations": {ANNOTATION_WAIVE_REVERT: token}}}
            )

        metrics = default_metrics()

        def notes_step(before: NotificationsStatus | None, after: NotificationsStatus | None) -> None:
            metrics.delivered(before, after)
            metrics.outbox(("Track", namespace, name), after)

        deliveries = rt.executor.deliveries
        notify = (
            TrackNotify(deliveries, rt.settings.notify, wake=run.wake, on_step=notes_step)
            if deliveries is not None
            else None
        )
        await run_track(
            ref,
            run.read_body,
            patch_status,
            rt.git,
            rt.objects,
            clock=rt.clock,
            wait=run.wait,
            emit=emit,
            stopped=lambda: not run.alive(),
            owned=owned,
            prune=prune,
            waive=waive,
            on_persist_error=default_metrics().status_write_error,
            on_persist=default_metrics().status_written,
            may_act=namespace_guard(rt, run),
            notify=notify,
        )

    def gone(run: Run) -> None:
        rt.tracks.pop((run.namespace, run.name), None)
        default_metrics().outbox(("Track", run.namespace, run.name), None)

    return Supervisor(
        "Track", start, wake_on=_wake_on, on_gone=gone, serves=lambda ns: serves(rt, ns), fetch=fetcher(rt, "tracks")
    )


def _wake_on(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """lock/unlock annotations and spec edits (suspend, source, template) take effect at once, not at the
    next poll; status writes of our own do not wake the loop."""
    return default_wake(old, new)


@kopf.on.event(API_GROUP, API_VERSION, "tracks")
async def track_event(type: str | None, body: kopf.Body, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """Every Track event reaches the supervisor and, for the Tracks in scope, the webhook's routing table
    (every replica routes a push webhook: the one serving the Track acts on it)."""
    rt = runtime(memo)
    if namespace is not None and serves(rt, namespace) is not None:
        current = _spec_or_none(body.get("spec"))
        if current is None or type == "DELETED" or body.get("metadata", {}).get("deletionTimestamp"):
            rt.tracks.pop((namespace, name), None)
        else:
            rt.tracks[(namespace, name)] = current
    rt.supervisors["tracks"].on_event(type, body)


@kopf.on.event(API_GROUP, API_VERSION, "releases", labels={LABEL_TRACK: kopf.PRESENT})
async def release_changed(
    type: str | None, namespace: str | None, labels: kopf.Labels, status: kopf.Status, memo: Any, **_: Any
) -> None:
    """A Track's Release became final or was deleted: let the Track look now rather than at its next poll.

    Once per final phase and revert state (``memo`` is kopf's per-object memo): progress before it (every
    gauges update) and other writes change nothing for the Track, and each wake costs it a git fetch. A
    revert landing after the rollback wakes it too (it clears the Track's missing revert)."""
    if namespace is None:
        return
    phase = status.get("phase")
    seen = f"{phase}/{(status.get('revert') or {}).get('state')}"
    if type == "DELETED" or (phase in FINAL and memo.get("track_woken_at") != seen):
        memo["track_woken_at"] = seen
        wake_track(memo, namespace, labels[LABEL_TRACK])
