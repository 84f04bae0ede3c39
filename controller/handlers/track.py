"""Track wiring: one daemon per Track; its Releases and push webhooks wake it early.

A starting daemon lists its Track's Releases once, to adopt one it created but had not recorded yet
instead of creating a second one beside it (push lock across restarts).
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
from pydantic import ValidationError

from controller.handlers.startup import runtime
from controller.models.common import API_GROUP, API_VERSION
from controller.models.track import TrackSpec, TrackStatus
from controller.track.plan import ANNOTATION_LOCK, ANNOTATION_UNLOCK, FINAL, LABEL_TRACK
from controller.track.prune import releases_to_prune
from controller.track.runner import TrackRef, run_track, wait_or_wake


def wake_event(memo: Any, namespace: str, name: str) -> asyncio.Event:
    """The event that wakes the daemon of Track ``namespace/name``."""
    events: dict[tuple[str, str], asyncio.Event] = memo.runtime.wakers
    return events.setdefault((namespace, name), asyncio.Event())


def _spec_or_none(spec: Any) -> TrackSpec | None:
    try:
        return TrackSpec.model_validate(spec or {})
    except ValidationError:
        return None


@kopf.daemon(API_GROUP, API_VERSION, "tracks", cancellation_backoff=2, cancellation_timeout=10, id="follow")
async def follow(
    body: kopf.Body,
    namespace: str | None,
    name: str,
    uid: str,
    stopped: kopf.DaemonStopped,
    memo: Any,
    **_: Any,
) -> None:
    """Follow the Track's branch: create Releases, hold the push and commit locks."""
    assert namespace is not None, "Track is a namespaced resource"
    rt = runtime(memo)
    ref = TrackRef(namespace=namespace, name=name, uid=uid)
    event = wake_event(memo, namespace, name)

    async def patch_status(patch: dict[str, Any]) -> None:
        await rt.objects.patch_status("tracks", namespace, name, patch)

    def emit(type_: str, reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message[:1000])

    async def wait(seconds: float) -> None:
        spec = _spec_or_none(body.get("spec"))
        if spec is None:
            rt.tracks.pop((namespace, name), None)
        else:
            rt.tracks[(namespace, name)] = spec  # the webhook's routing table
        await wait_or_wake(event, seconds, stopped.wait)

    async def owned() -> list[dict[str, Any]]:
        return await rt.objects.list("releases", namespace, f"{LABEL_TRACK}={name}")

    async def prune(spec: TrackSpec, status: TrackStatus) -> None:
        doomed = releases_to_prune(
            await owned(),
            keep=spec.history_limit,
            track_uid=uid,
            protected=(status.current, status.commit_lock.release),
        )
        for release, release_uid in doomed:
            await rt.objects.delete("releases", namespace, release, release_uid)
        if doomed:
            emit("Normal", "ReleasesPruned", f"deleted {len(doomed)} old Release(s) beyond historyLimit")

    try:
        await run_track(
            ref,
            lambda: body,
            patch_status,
            rt.git,
            rt.objects,
            clock=rt.clock,
            wait=wait,
            emit=emit,
            stopped=stopped.is_set,
            owned=owned,
            prune=prune,
        )
    finally:
        rt.tracks.pop((namespace, name), None)


@kopf.on.event(API_GROUP, API_VERSION, "releases", labels={LABEL_TRACK: kopf.PRESENT})
def release_changed(
    type: str | None, namespace: str | None, labels: kopf.Labels, status: kopf.Status, memo: Any, **_: Any
) -> None:
    """A Track's Release became final or was deleted: let the Track look now rather than at its next poll.

    Once per final phase (``memo`` is kopf's per-object memo): progress before it (every gauges update)
    and writes after it change nothing for the Track, and each wake costs it a git fetch."""
    if namespace is None:
        return
    phase = status.get("phase")
    if type == "DELETED" or (phase in FINAL and memo.get("track_woken_at") != phase):
        memo["track_woken_at"] = phase
        wake_event(memo, namespace, labels[LABEL_TRACK]).set()


@kopf.on.event(API_GROUP, API_VERSION, "tracks")
def track_event(
    type: str | None,
    namespace: str | None,
    name: str,
    spec: kopf.Spec,
    meta: kopf.Meta,
    annotations: kopf.Annotations,
    memo: Any,
    **_: Any,
) -> None:
    """lock/unlock annotations and spec edits (suspend, source, template) take effect at once, not at the
    next poll; status writes of our own do not wake the loop. A changed spec also reaches the webhook's
    routing table at once (repo, branch, secret)."""
    if namespace is None:
        return
    tracks: dict[tuple[str, str], TrackSpec] = memo.runtime.tracks
    if (namespace, name) in tracks:  # only while its daemon runs (it adds and removes the entry)
        current = _spec_or_none(spec)
        if current is None or type == "DELETED":
            tracks.pop((namespace, name), None)
        else:
            tracks[(namespace, name)] = current
    seen: dict[tuple[str, str], tuple[str, str]] = memo.runtime.track_annotations
    now = (annotations.get(ANNOTATION_LOCK, ""), annotations.get(ANNOTATION_UNLOCK, ""))
    wake = seen.get((namespace, name)) != now
    seen[(namespace, name)] = now
    generation = meta.get("generation")  # moves with spec edits only (status is a subresource)
    if memo.get("track_generation") != generation:
        memo["track_generation"] = generation
        wake = True
    if wake:
        wake_event(memo, namespace, name).set()
