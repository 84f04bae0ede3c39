"""The per-Track loop: read the branch tip and the current Release, plan, act, persist. No kopf here."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from controller.errors import StoplineError
from controller.models.common import API, REVERT_TRAILER, owned_by, set_condition
from controller.models.notify import NotificationsStatus, Sink
from controller.models.release import GitSource
from controller.models.track import TrackSpec, TrackStatus
from controller.notify.delivery import Deliveries
from controller.notify.outbox import RecordDelivery, StartDelivery, delivery_events, effective_sinks, next_attempt
from controller.notify.track import record_events
from controller.reconcile.driver import Context, Driver, mark_invalid
from controller.release.actions import ANNOTATION_SKIPPED
from controller.track.plan import (
    LABEL_TRACK,
    Adopt,
    Commit,
    CreateRelease,
    FinishRelease,
    Lock,
    Observe,
    RefuseUnlock,
    ReleaseFacts,
    RevertsLanded,
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
        revert_state=revert.get("state"),
        revert_reason=revert.get("reason"),
        author=st.get("author"),
    )


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
    tip_error_reason = "GitError"
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
        tip_error, tip_error_reason = str(exc), exc.reason
    current = None
    if status.current:
        current = release_facts(status.current, await objects.get("releases", ref.namespace, status.current))
    in_flight = []
    for obj in owned:
        if not owned_by(obj, ref.uid):
            continue  # labelled by hand, or left by a deleted Track of the same name
        name = (obj.get("metadata") or {}).get("name")
        if name and name != status.current:
            in_flight.append(release_facts(str(name), obj))
    reverting = {}
    for m in status.missing_reverts:
        if m.release != status.current:
            reverting[m.release] = release_facts(m.release, await objects.get("releases", ref.namespace, m.release))
    return TrackFacts(
        now=now,
        tip=tip,
        tip_error=tip_error,
        tip_error_reason=tip_error_reason,
        new_commits=commits,
        current=current,
        in_flight=in_flight,
        annotations=dict(annotations),
        reverting=reverting,
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
    if existing is not None and not owned_by(existing, ref.uid):
        raise StoplineError(f"Release {action.name} already exists and does not belong to Track {ref.name}")


@dataclass(frozen=True)
class TrackOutcome:
    """What executing a Track action did: nothing to report, or why it could not be done."""

    error: str | None = None


@dataclass(frozen=True)
class TrackNotify:
    """The Track's notifications: the shared delivery tasks, the controller's default sinks, and a hook that
    sees the outbox before and after each step (metrics)."""

    deliveries: Deliveries
    defaults: tuple[Sink, ...] = ()
    wake: Callable[[], None] = lambda: None
    on_step: Callable[[NotificationsStatus | None, NotificationsStatus | None], None] = lambda _b, _a: None


class TrackKind:
    """What the reconcile driver needs to know about Tracks. A Track's loop never ends on its own."""

    kind = "Track"

    def __init__(
        self,
        ref: TrackRef,
        git: TrackGit,
        objects: TrackObjects,
        *,
        clock: Callable[[], datetime],
        owned: Callable[[], Awaitable[Iterable[Mapping[str, Any]]]] | None,
        prune: Callable[[TrackSpec, TrackStatus], Awaitable[None]] | None,
        waive: Callable[[str, str], Awaitable[None]] | None,
        notify: TrackNotify | None = None,
    ) -> None:
        self.notify = notify
        self.ref = ref
        self.git = git
        self.objects = objects
        self.clock = clock
        self.list_owned = owned
        self.prune = prune
        self.waive = waive
        self.failed = False  # the last action could not be carried out: retry soon

    def parse_status(self, raw: Mapping[str, Any]) -> TrackStatus:
        return TrackStatus.model_validate(raw)

    def parse_spec(self, raw: Mapping[str, Any]) -> TrackSpec:
        return TrackSpec.model_validate(raw)

    def invalid(self, status: TrackStatus, message: str, now: datetime, generation: int | None) -> TrackStatus:
        return mark_invalid(status, message, now, generation)

    def with_generation(self, status: TrackStatus, generation: int | None) -> TrackStatus:
        status.observed_generation = generation
        return status

    async def observe(self, spec: TrackSpec, status: TrackStatus, meta: Mapping[str, Any]) -> TrackFacts:
        # The Track's own Releases are listed once, on the first round: a Release created just before a
        # restart but missing from the status is adopted rather than doubled.
        releases = await self.list_owned() if self.list_owned is not None else ()
        facts = await observe_track(
            self.ref, spec, status, meta.get("annotations") or {}, self.git, self.objects, self.clock(), releases
        )
        self.list_owned = None
        if self.notify is not None:
            facts = replace(facts, delivery_job=self.notify.deliveries.job(self.ref.uid))
        return facts

    def observe_failed(self, spec: TrackSpec, status: TrackStatus, error: StoplineError, now: datetime) -> TrackStatus:
        s = status.model_copy(deep=True)
        s.message = f"cannot read its Releases, retrying: {error}"
        return s

    def plan(self, spec: TrackSpec, status: TrackStatus, facts: TrackFacts) -> TrackAction:
        return plan_track(self.ref.name, spec, status, facts)

    def is_side_effect(self, action: TrackAction) -> bool:
        # StartDelivery: the outbox entries it sends are written first, so a restart never records them again
        return isinstance(action, CreateRelease | FinishRelease | StartDelivery) or (
            isinstance(action, Unlock) and bool(action.waive)
        )

    async def execute(
        self, spec: TrackSpec, status: TrackStatus, action: TrackAction, facts: TrackFacts
    ) -> TrackOutcome:
        if isinstance(action, StartDelivery):
            self._start_delivery(spec, status, action)
            return TrackOutcome()
        try:
            await execute_track(self.ref, spec, action, self.objects)
            if isinstance(action, Unlock) and action.waive and self.waive is not None:
                for m in action.waive:
                    await self.waive(m.release, action.token.raw)
        except StoplineError as exc:
            return TrackOutcome(error=str(exc))
        if isinstance(action, FinishRelease) and self.prune is not None:
            try:
                await self.prune(spec, status)
            except StoplineError as exc:
                log.warning("track %s/%s: cannot prune old Releases: %s", self.ref.namespace, self.ref.name, exc)
        return TrackOutcome()

    def _start_delivery(self, spec: TrackSpec, status: TrackStatus, action: StartDelivery) -> None:
        """Send the due outbox entries in the background (no receiver can hold up the line)."""
        if self.notify is None or status.notifications is None:
            return
        keys = set(action.keys)
        entries = [e for e in status.notifications.outbox if e.key in keys]
        sinks = effective_sinks(spec.template.notify, self.notify.defaults)
        self.notify.deliveries.start(self.ref.uid, self.ref.namespace, sinks, entries, self.notify.wake)

    def forget(self) -> None:
        """The loop stops: a delivery in flight is cancelled (its entries stay Pending, sent next time)."""
        if self.notify is not None:
            self.notify.deliveries.forget(self.ref.uid)

    def reduce(
        self, spec: TrackSpec, status: TrackStatus, action: TrackAction, outcome: TrackOutcome, facts: TrackFacts
    ) -> TrackStatus:
        self.failed = outcome.error is not None
        if outcome.error is not None:
            s = status.model_copy(deep=True)
            what = f"create Release {action.name}" if isinstance(action, CreateRelease) else type(action).__name__
            s.message = f"could not {what}: {outcome.error}"
            log.warning("track %s/%s: %s", self.ref.namespace, self.ref.name, s.message)
            return s
        s = reduce_track(spec, status, action, facts)
        s.conditions = _conditions(s, facts)
        if self.notify is not None:
            # a lock set or cleared in this step goes into the outbox in the same status write
            cause = action.release if isinstance(action, FinishRelease) else None
            r = self.ref
            s = record_events(spec, status, s, self.notify.defaults, r.namespace, r.name, r.uid, facts.now, cause)
            self.notify.on_step(status.notifications, s.notifications)
        return s

    def events(
        self, before: TrackStatus, after: TrackStatus, action: TrackAction, outcome: TrackOutcome
    ) -> list[tuple[str, str, str]]:
        if outcome.error is not None:
            reason = "CreateReleaseFailed" if isinstance(action, CreateRelease) else "ActionFailed"
            return [("Warning", reason, after.message or outcome.error)]
        return step_events(before, after, action)

    def persist_now(self, status: TrackStatus, persisted: TrackStatus, action: TrackAction, since: float) -> bool:
        return status != persisted

    def sleep_for(self, spec: TrackSpec, status: TrackStatus, action: TrackAction, facts: TrackFacts) -> float | None:
        if self.failed:
            return min(spec.poll_interval.total_seconds(), 5.0)
        poll = spec.poll_interval.total_seconds()
        if isinstance(action, StartDelivery):
            return poll  # the delivery task wakes the loop when it is done
        if isinstance(action, Observe):
            retry = next_attempt(status.notifications)
            if retry is not None and (facts.delivery_job is None or not facts.delivery_job.running):
                return max(0.0, min(poll, (retry - facts.now).total_seconds()))
            return poll
        return None

    def done(self, spec: TrackSpec, status: TrackStatus) -> bool:
        return False


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
    waive: Callable[[str, str], Awaitable[None]] | None = None,
    on_persist_error: Callable[[str], None] = lambda _k: None,
    on_persist: Callable[[str, str], None] = lambda _k, _a: None,
    may_act: Callable[[], Awaitable[bool]] | None = None,
    notify: TrackNotify | None = None,
) -> TrackStatus:
    """Follow the branch until stopped (through the reconcile driver).

    Kubernetes errors (reading the current Release, writing the status) are reported and retried after a
    short wait; they never end the loop. ``owned`` lists this Track's Releases (label ``stopline.dev/track``);
    it is read once, on the first iteration. ``waive`` annotates a Release so it stops retrying its revert.
    """
    kind = TrackKind(ref, git, objects, clock=clock, owned=owned, prune=prune, waive=waive, notify=notify)
    ctx = Context(
        kind="Track",
        namespace=ref.namespace,
        name=ref.name,
        read_body=read_body,
        patch_status=patch_status,
        wait=wait,
        clock=clock,
        alive=lambda: not stopped(),
        emit=emit,
        on_persist_error=on_persist_error,
        on_persist=on_persist,
        may_act=may_act,
    )
    try:
        return await Driver(kind, ctx).run()
    finally:
        kind.forget()


def _conditions(status: TrackStatus, facts: TrackFacts) -> list[Any]:
    c = status.conditions
    now = facts.now
    gen = status.observed_generation
    if facts.tip_error:
        c = set_condition(c, "SourceReachable", "False", facts.tip_error_reason, facts.tip_error, now, gen)
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


def track_events(action: TrackAction, status: TrackStatus) -> list[tuple[str, str, str]]:
    """The Events a Track step yields."""
    out: list[tuple[str, str, str]] = []
    if isinstance(action, CreateRelease):
        out.append(("Normal", "ReleaseCreated", status.message or action.name))
    elif isinstance(action, Adopt):
        out.append(("Normal", "ReleaseAdopted", status.message or action.release.name))
    elif isinstance(action, FinishRelease):
        r = action.release
        if not r.exists:
            out.append((
                "Warning",
                "ReleaseDeleted",
                f"{r.name} was deleted before it finished: nothing more is done for it and the cluster is "
                "left as it was at deletion (no rollback, no revert)",
            ))  # fmt: skip
        else:
            kind = "Normal" if r.phase == "Succeeded" else "Warning"
            out.append((kind, f"Release{r.phase}", status.message or ""))
        if status.commit_lock.locked:
            out.append(("Warning", "CommitLocked", status.commit_lock.reason or ""))
        if r.exists and r.revert_missing:
            out.append(
                ("Warning", "RevertMissing", f"revert of {(r.revision or '')[:7]}: {r.revert_reason or 'pending'}")
            )
    elif isinstance(action, Unlock | Lock):
        out.append(("Normal", "Unlocked" if isinstance(action, Unlock) else "Locked", status.message or ""))
        if isinstance(action, Unlock) and action.waive:
            out.append(("Warning", "UnlockedWithoutRevert", status.commit_lock.unlock_reason or ""))
    elif isinstance(action, RefuseUnlock):
        out.append(("Warning", "UnlockRefused", status.message or ""))
    elif isinstance(action, RevertsLanded):
        out.append(("Normal", "RevertLanded", status.message or ""))
    return out


def step_events(before: TrackStatus, after: TrackStatus, action: TrackAction) -> list[tuple[str, str, str]]:
    """The Events of a step, notifications' included (NotificationSent, NotificationFailed, ...)."""
    if isinstance(action, RecordDelivery):
        return delivery_events(before.notifications, after.notifications)
    return track_events(action, after)
