"""The per-Track loop: read the branch tip and the current Release, plan, act, persist. No kopf here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError

from controller.errors import StoplineError
from controller.models.common import API, set_condition
from controller.models.release import GitSource
from controller.models.track import TrackSpec, TrackStatus
from controller.release.actions import ANNOTATION_SKIPPED
from controller.track.plan import (
    LABEL_TRACK,
    REVERT_TRAILER,
    Adopt,
    Commit,
    CreateRelease,
    FinishRelease,
    Lock,
    Observe,
    ReleaseFacts,
    TrackAction,
    TrackFacts,
    Unlock,
    plan_track,
    reduce_track,
)

log = logging.getLogger("stopline.track")


class TrackGit(Protocol):
    """Git reads a Track needs."""

    async def tip(self, namespace: str, source: GitSource) -> str: ...

    async def commits(self, namespace: str, source: GitSource, since: str | None, until: str) -> list[Any]: ...


class TrackObjects(Protocol):
    """Kubernetes reads/writes a Track needs."""

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def create(self, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class TrackRef:
    """Identity of the Track."""

    namespace: str
    name: str
    uid: str


def _parse_time(raw: Any) -> datetime | None:
    if not raw:
        return None
    try:
        return datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return None


def release_facts(name: str, obj: Mapping[str, Any] | None) -> ReleaseFacts:
    """The bits of a Release the Track planner looks at."""
    if obj is None:
        return ReleaseFacts(name=name, exists=False)
    spec = obj.get("spec") or {}
    st = obj.get("status") or {}
    failure = st.get("failure") or {}
    revert = st.get("revert") or {}
    return ReleaseFacts(
        name=name,
        exists=True,
        phase=st.get("phase"),
        revision=(spec.get("source") or {}).get("revision"),
        failure=failure.get("message"),
        failed_gate=st.get("failedGate"),
        revert_commit=revert.get("commit"),
        started_at=_parse_time(st.get("startedAt")),
        completed_at=_parse_time(st.get("completedAt")),
        lock_on_failure=bool((spec.get("onFailure") or {}).get("lock", True)),
    )


def owned_by(obj: Mapping[str, Any], ref: TrackRef) -> bool:
    """Whether this Track (by UID) is an owner of the object."""
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(o.get("uid") == ref.uid for o in owners)


def release_body(ref: TrackRef, spec: TrackSpec, action: CreateRelease) -> dict[str, Any]:
    """The Release a Track creates for a new tip: template + source at that revision, owned by the Track."""
    template = spec.template.model_dump(mode="json", by_alias=True, exclude_none=True)
    source = spec.source.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {
        "apiVersion": API,
        "kind": "Release",
        "metadata": {
            "name": action.name,
            "namespace": ref.namespace,
            "labels": {LABEL_TRACK: ref.name, "app.kubernetes.io/managed-by": "stopline"},
            "annotations": {ANNOTATION_SKIPPED: ",".join(action.skipped)} if action.skipped else {},
            "ownerReferences": [
                {
                    "apiVersion": API,
                    "kind": "Track",
                    "name": ref.name,
                    "uid": ref.uid,
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": {**template, "source": {**source, "revision": action.revision}},
    }


async def observe_track(
    ref: TrackRef,
    spec: TrackSpec,
    status: TrackStatus,
    annotations: Mapping[str, str],
    git: TrackGit,
    objects: TrackObjects,
    now: datetime,
    owned: Iterable[Mapping[str, Any]] = (),
) -> TrackFacts:
    """Branch tip, new commits since the last push, the current Release and the Track's other Releases in
    flight (``owned``: Release bodies labelled with this Track, as far as the caller knows them)."""
    tip: str | None = None
    tip_error: str | None = None
    commits: list[Commit] = []
    try:
        tip = await git.tip(ref.namespace, spec.source)
        if tip != status.last_pushed:
            if status.last_pushed is None:
                raw = (await git.commits(ref.namespace, spec.source, None, tip))[-1:]
            else:
                raw = await git.commits(ref.namespace, spec.source, status.last_pushed, tip)
            commits = [Commit(c.sha, c.subject, c.trailers.get(REVERT_TRAILER)) for c in raw]
    except StoplineError as exc:
        tip_error = str(exc)
    current = None
    if status.current:
        current = release_facts(status.current, await objects.get("releases", ref.namespace, status.current))
    in_flight = []
    for obj in owned:
        if not owned_by(obj, ref):
            continue  # labelled by hand, or left by a deleted Track of the same name
        name = (obj.get("metadata") or {}).get("name")
        if name and name != status.current:
            in_flight.append(release_facts(str(name), obj))
    return TrackFacts(
        now=now,
        tip=tip,
        tip_error=tip_error,
        new_commits=commits,
        current=current,
        in_flight=in_flight,
        annotations=dict(annotations),
    )


async def execute_track(ref: TrackRef, spec: TrackSpec, action: TrackAction, objects: TrackObjects) -> None:
    """Carry out the one side effect a Track has: creating a Release (idempotent by name).

    A Release of that name that this Track does not own (made by hand, or left by a deleted Track of the
    same name) is never taken for ours: StoplineError, reported and retried until someone removes it."""
    if not isinstance(action, CreateRelease):
        return
    if await objects.create("releases", ref.namespace, release_body(ref, spec, action)) is not None:
        return
    existing = await objects.get("releases", ref.namespace, action.name)
    if existing is not None and not owned_by(existing, ref):
        raise StoplineError(f"Release {action.name} already exists and does not belong to Track {ref.name}")


def status_patch(status: TrackStatus) -> dict[str, Any]:
    """JSON merge patch for the Track status subresource."""
    return {"status": status.model_dump(mode="json", by_alias=True)}


async def run_track(
    ref: TrackRef,
    read_body: Callable[[], Mapping[str, Any]],
    patch_status: Callable[[dict[str, Any]], Awaitable[None]],
    git: TrackGit,
    objects: TrackObjects,
    *,
    clock: Callable[[], datetime],
    wait: Callable[[float], Awaitable[None]],
    emit: Callable[[str, str, str], None] = lambda _t, _r, _m: None,
    stopped: Callable[[], bool] = lambda: False,
    owned: Callable[[], Awaitable[Iterable[Mapping[str, Any]]]] | None = None,
    prune: Callable[[TrackSpec, TrackStatus], Awaitable[None]] | None = None,
) -> None:
    """Follow the branch until stopped.

    Kubernetes errors (reading the current Release, writing the status) are reported and retried after a
    short wait; they never end the loop. ``owned`` lists this Track's Releases (label ``stopline.dev/track``);
    it is read once, on the first iteration: a Release created just before a restart but missing from the
    status is adopted rather than doubled. Afterwards the status in memory knows every Release it created.
    """
    status = TrackStatus.model_validate(read_body().get("status") or {})
    persisted = status.model_copy(deep=True)
    list_owned = owned
    while not stopped():
        body = read_body()
        try:
            spec = TrackSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            status.message = f"invalid spec: {exc.errors()[0]['msg']}"
            status.conditions = set_condition(
                status.conditions, "Ready", "False", "InvalidSpec", status.message, clock()
            )
            await patch_status(status_patch(status))
            emit("Warning", "InvalidSpec", status.message)
            return
        meta = body.get("metadata") or {}
        status.observed_generation = meta.get("generation")
        retry = min(spec.poll_interval.total_seconds(), 5.0)
        try:
            releases = await list_owned() if list_owned is not None else ()
            facts = await observe_track(
                ref, spec, status, meta.get("annotations") or {}, git, objects, clock(), releases
            )
            list_owned = None
        except StoplineError as exc:
            log.warning("track %s/%s: cannot read its Release: %s", ref.namespace, ref.name, exc)
            await wait(retry)
            continue
        action = plan_track(ref.name, spec, status, facts)
        try:
            await execute_track(ref, spec, action, objects)
        except StoplineError as exc:
            status.message = f"could not create Release {getattr(action, 'name', '')}: {exc}"
            emit("Warning", "CreateReleaseFailed", status.message)
            await _persist(patch_status, status, ref)
            await wait(retry)
            continue
        status = reduce_track(spec, status, action, facts)
        status.conditions = _conditions(status, facts)
        _announce(emit, action, status)
        if status != persisted:
            if not await _persist(patch_status, status, ref):
                await wait(retry)  # the status in memory stays authoritative; written next time round
                continue
            persisted = status.model_copy(deep=True)
        if isinstance(action, FinishRelease) and prune is not None:
            try:
                await prune(spec, status)
            except StoplineError as exc:
                log.warning("track %s/%s: cannot prune old Releases: %s", ref.namespace, ref.name, exc)
        if isinstance(action, Observe):
            await wait(spec.poll_interval.total_seconds())


async def _persist(
    patch_status: Callable[[dict[str, Any]], Awaitable[None]], status: TrackStatus, ref: TrackRef
) -> bool:
    try:
        await patch_status(status_patch(status))
    except StoplineError as exc:
        log.warning("track %s/%s: cannot write status: %s", ref.namespace, ref.name, exc)
        return False
    return True


def _conditions(status: TrackStatus, facts: TrackFacts) -> list[Any]:
    c = status.conditions
    now = facts.now
    gen = status.observed_generation
    if facts.tip_error:
        c = set_condition(c, "SourceReachable", "False", "GitError", facts.tip_error, now, gen)
    else:
        c = set_condition(c, "SourceReachable", "True", "TipRead", f"tip {status.last_seen}", now, gen)
    lock = status.commit_lock
    if lock.locked:
        c = set_condition(c, "Locked", "True", "CommitLock", lock.reason or "locked", now, gen)
        c = set_condition(c, "Ready", "False", "Locked", lock.reason or "locked", now, gen)
    else:
        c = set_condition(c, "Locked", "False", "Unlocked", "the line is open", now, gen)
        c = set_condition(c, "Ready", "True", "Following", status.message or "following the branch", now, gen)
    return c


def _announce(emit: Callable[[str, str, str], None], action: TrackAction, status: TrackStatus) -> None:
    if isinstance(action, CreateRelease):
        emit("Normal", "ReleaseCreated", status.message or action.name)
    elif isinstance(action, Adopt):
        emit("Normal", "ReleaseAdopted", status.message or action.release.name)
    elif isinstance(action, FinishRelease):
        kind = "Normal" if action.release.phase == "Succeeded" else "Warning"
        emit(kind, f"Release{action.release.phase or 'Gone'}", status.message or "")
        if status.commit_lock.locked:
            emit("Warning", "CommitLocked", status.commit_lock.reason or "")
    elif isinstance(action, Unlock | Lock):
        emit("Normal", "Unlocked" if isinstance(action, Unlock) else "Locked", status.message or "")


async def wait_or_wake(event: asyncio.Event, seconds: float, stop: Callable[[float], Awaitable[Any]]) -> None:
    """Sleep ``seconds`` unless the Track is woken (webhook, its Release changed) or stopped."""
    waker = asyncio.ensure_future(event.wait())
    stopper = asyncio.ensure_future(stop(seconds))
    try:
        await asyncio.wait({waker, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (waker, stopper):
            t.cancel()
        event.clear()
