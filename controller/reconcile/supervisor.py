"""One asyncio task per live object of a kind, started and stopped by the kind's watch events. No kopf.

Replaces kopf daemons, which need a finalizer on every object (so namespace deletion would wait for the
controller) and stop only when they see a deletionTimestamp. Here the deletion contract is ours:

* a DELETED event (or a deletionTimestamp) stops the object's loop at once: ``alive()`` turns false, its
  wait returns, and every action not yet started is never started (the driver checks ``alive`` before
  each one); ``on_stop`` lets the kind cancel work running beside the loop (a git revert attempt);
* no finalizer is ever put on the objects, so deleting them — or their namespace — never waits for us;
* a loop that crashed is started again after a short backoff (logged at ERROR with the traceback).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("stopline.reconcile")

RESTART_BACKOFF = 5.0


@dataclass
class Run:
    """One object's loop: its latest body and the signals between the watch and the loop."""

    namespace: str
    name: str
    uid: str
    body: Mapping[str, Any]
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    woken: asyncio.Event = field(default_factory=asyncio.Event)
    deleted: bool = False
    task: asyncio.Task[None] | None = None
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    written: int = 0  # the resourceVersion of the loop's latest status write

    def wrote(self, version: str) -> None:
        """The loop's status write made the object this resourceVersion."""
        self.written = max(self.written, _version(version))

    def alive(self) -> bool:
        """False once the object is deleted or the controller stops."""
        return not self.stopped.is_set()

    def read_body(self) -> Mapping[str, Any]:
        """The newest body the watch delivered."""
        return self.body

    def wake(self) -> None:
        """End the current wait early (a change the loop should look at now)."""
        self.woken.set()

    def stop(self, *, deleted: bool) -> None:
        """Stop the loop: no further action starts; work running beside it is cancelled."""
        if self.stopped.is_set():
            return
        self.deleted = deleted
        self.stopped.set()
        for cancel in self.on_stop:
            try:
                cancel()
            except Exception:  # a failing canceller must not keep the others from running
                log.exception("cancelling work of %s/%s", self.namespace, self.name)

    async def wait_stopped(self, seconds: float) -> None:
        """Sleep up to ``seconds``; returns early only when stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopped.wait(), timeout=max(0.0, seconds))

    async def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``; returns early when woken or stopped."""
        if self.woken.is_set():
            self.woken.clear()
            return
        waiters = [asyncio.ensure_future(self.woken.wait()), asyncio.ensure_future(self.stopped.wait())]
        try:
            await asyncio.wait(waiters, timeout=max(0.0, seconds), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
            self.woken.clear()


Start = Callable[[Run], Awaitable[None]]


def _meta(body: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = body.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def default_wake(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Wake on what users change (spec → generation, annotations), not on our own status writes."""
    a, b = _meta(old), _meta(new)
    return a.get("generation") != b.get("generation") or (a.get("annotations") or {}) != (b.get("annotations") or {})


def _version(raw: Any) -> int:
    """A resourceVersion as a number (etcd's revision); 0 when it is not one."""
    try:
        return int(raw)
    except (TypeError, ValueError):
        return 0


#: Ended loops remembered for stale events (uid → the last resourceVersion they saw or wrote).
ENDED_KEEP = 10_000


def _where(body: Mapping[str, Any]) -> tuple[str, str]:
    meta = _meta(body)
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


class Supervisor:
    """Keeps exactly one loop running per live object of one kind."""

    def __init__(
        self,
        kind: str,
        start: Start,
        *,
        wanted: Callable[[Mapping[str, Any]], bool] = lambda _b: True,
        wake_on: Callable[[Mapping[str, Any], Mapping[str, Any]], bool] = default_wake,
        on_gone: Callable[[Run], None] = lambda _r: None,
        restart_backoff: float = RESTART_BACKOFF,
        serves: Callable[[str], bool | None] = lambda _ns: True,
        fetch: Callable[[str, str], Awaitable[Mapping[str, Any] | None]] | None = None,
    ) -> None:
        self.kind = kind
        self._start = start
        self._wanted = wanted
        self._wake_on = wake_on
        self._on_gone = on_gone
        self._backoff = restart_backoff
        self._runs: dict[str, Run] = {}
        self._by_name: dict[tuple[str, str], str] = {}
        self._closing = False
        # serves(namespace): True — this replica acts there; False — another replica does (or the namespace
        # may come into scope: its objects are parked, to start at once when it does); None — never ours.
        self._serves = serves
        # uid → the body to start from, or only (namespace, name) for another shard's object when ``fetch``
        # can read it fresh on a takeover: keeping every other shard's full body (status and all) cost each
        # of 4 replicas ~250 MiB at 2,000 Releases.
        self._parked: dict[str, Mapping[str, Any] | tuple[str, str]] = {}
        self._fetch = fetch
        self._adopting: set[str] = set()
        # uid → the newest resourceVersion an ended loop saw or wrote: an event delivered late (a busy API
        # server's watch lags seconds) with an older status must not start the object again from it — at
        # 500 Releases on 4 shards, 151 settled Releases were started again and repeated their last step.
        self._ended: dict[str, int] = {}
        # Loops run in the context of the watch that feeds us (kopf's event posting lives in a context
        # variable): loops started later by resync() get that context too.
        self._context: contextvars.Context | None = None

    # ---------------------------------------------------------------- watch side
    def on_event(self, type_: str | None, body: Mapping[str, Any]) -> None:
        """Feed one watch event (``type_`` None for the initial listing)."""
        if self._context is None:
            self._context = contextvars.copy_context()
        meta = _meta(body)
        uid, namespace, name = str(meta.get("uid") or ""), meta.get("namespace"), meta.get("name")
        if not uid or not namespace or not name:
            return
        run = self._runs.get(uid)
        if type_ == "DELETED" or meta.get("deletionTimestamp"):
            self._parked.pop(uid, None)
            self._ended.pop(uid, None)
            if run is not None:
                log.info("%s %s/%s deleted: its loop stops now", self.kind, namespace, name)
                run.body = body
                run.stop(deleted=True)
                self._on_gone(run)
            return
        if run is not None:
            old, run.body = run.body, body
            if uid in self._parked:  # a loop stopping because another replica serves it now: keep the newest
                self._parked[uid] = body
            elif self._wake_on(old, body):
                run.wake()
            return
        serves = self._serves(str(namespace))
        if not serves:
            if serves is False:
                self._parked[uid] = (str(namespace), str(name)) if self._fetch is not None else body
            return
        self._parked.pop(uid, None)
        if self._closing or not self._wanted(body):
            return
        if uid in self._ended and _version(meta.get("resourceVersion")) <= self._ended[uid]:
            return  # older than what its loop saw or wrote before it ended: a late event, not a change
        self._spawn(Run(namespace=str(namespace), name=str(name), uid=uid, body=body))

    def resync(self) -> None:
        """Ownership changed (a shard Lease taken or lost, a namespace's labels): stop the loops this replica
        no longer serves (their objects are parked) and start those of parked objects it now serves."""
        for run in list(self._runs.values()):
            if not self._serves(run.namespace):
                log.info("%s %s/%s: served by another replica now; loop stops", self.kind, run.namespace, run.name)
                self._parked[run.uid] = run.body
                run.stop(deleted=False)  # its task ends after the action in flight, if any; then it is forgotten
        for uid, parked in list(self._parked.items()):
            namespace, name = parked if isinstance(parked, tuple) else _where(parked)
            serves = self._serves(namespace)
            if serves is None:
                del self._parked[uid]
            elif serves and uid not in self._runs and not self._closing:  # (a stopping loop first ends)
                if isinstance(parked, tuple):
                    if uid not in self._adopting:  # read it fresh first (it stays parked meanwhile)
                        self._adopting.add(uid)
                        asyncio.get_running_loop().create_task(self._adopt(uid, namespace, name), context=self._context)
                    continue
                del self._parked[uid]
                if self._wanted(parked):
                    self._spawn(Run(namespace=namespace, name=name, uid=uid, body=parked))

    async def _adopt(self, uid: str, namespace: str, name: str) -> None:
        """Start the loop of another shard's object this replica serves now, from a fresh read of it."""
        try:
            assert self._fetch is not None
            try:
                body = await self._fetch(namespace, name)
            except Exception as exc:  # retried at the next resync (every Lease round)
                log.warning("%s %s/%s: not started yet, unreadable: %s", self.kind, namespace, name, exc)
                return
            if not isinstance(self._parked.get(uid), tuple):
                return  # an event (or a deletion) got there first
            del self._parked[uid]
            if body is None or str(_meta(body).get("uid") or "") != uid:
                return  # gone (or replaced by a new object of that name, whose own event starts it)
            if self._serves(namespace) and uid not in self._runs and not self._closing and self._wanted(body):
                self._spawn(Run(namespace=namespace, name=name, uid=uid, body=body))
            elif self._serves(namespace) is False:
                self._parked[uid] = (namespace, name)
        finally:
            self._adopting.discard(uid)

    def parked(self) -> int:
        """How many objects wait for this replica to serve their namespace."""
        return len(self._parked)

    def _spawn(self, run: Run) -> None:
        log.info("%s %s/%s: loop started", self.kind, run.namespace, run.name)
        self._runs[run.uid] = run
        self._by_name[(run.namespace, run.name)] = run.uid
        run.task = asyncio.create_task(
            self._guarded(run), name=f"{self.kind}/{run.namespace}/{run.name}", context=self._context
        )

    async def _guarded(self, run: Run) -> None:
        crashed = False
        try:
            await self._start(run)
        except asyncio.CancelledError:
            self._forget(run)
            raise
        except Exception:
            crashed = True
            log.exception(
                "%s %s/%s: loop crashed; restarting in %.0fs", self.kind, run.namespace, run.name, self._backoff
            )
        if crashed and run.alive() and not self._closing:
            # The crashed run stays registered during the backoff: a DELETED event meanwhile stops it.
            await run.wait_stopped(self._backoff)
        self._forget(run)
        if not run.deleted and not self._closing and self._serves(run.namespace) is False:
            # It stopped itself because this replica no longer serves its namespace (a shard Lease lapsed or
            # moved): parked, it starts again as soon as the namespace is ours again (resync, every round).
            self._parked.setdefault(run.uid, run.body)
            return
        if crashed and run.alive() and not self._closing and self._wanted(run.body):
            self._spawn(Run(namespace=run.namespace, name=run.name, uid=run.uid, body=run.body))

    def _forget(self, run: Run) -> None:
        if self._runs.get(run.uid) is run:
            last = max(run.written, _version(_meta(run.body).get("resourceVersion")))
            if last and not run.deleted:
                self._ended.pop(run.uid, None)
                self._ended[run.uid] = last
                if len(self._ended) > ENDED_KEEP:  # the oldest ended loops first
                    for uid in list(self._ended)[: ENDED_KEEP // 2]:
                        del self._ended[uid]
            del self._runs[run.uid]
            if self._by_name.get((run.namespace, run.name)) == run.uid:
                del self._by_name[(run.namespace, run.name)]

    # ---------------------------------------------------------------- loop side
    def wake(self, namespace: str, name: str) -> bool:
        """Wake the loop of ``namespace/name`` if one runs."""
        uid = self._by_name.get((namespace, name))
        run = self._runs.get(uid) if uid else None
        if run is None:
            return False
        run.wake()
        return True

    def wake_namespace(self, namespace: str) -> int:
        """Wake every loop in ``namespace`` (something its objects depend on changed); how many."""
        woken = 0
        for run in self._runs.values():
            if run.namespace == namespace and run.alive():
                run.wake()
                woken += 1
        return woken

    def running(self, namespace: str, name: str) -> Run | None:
        """The loop of ``namespace/name``, if one runs."""
        uid = self._by_name.get((namespace, name))
        return self._runs.get(uid) if uid else None

    def active(self) -> int:
        """How many loops run."""
        return len(self._runs)

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop every loop and wait for them (cancelled after ``grace`` seconds)."""
        self._closing = True
        runs = list(self._runs.values())
        for run in runs:
            run.stop(deleted=False)
        tasks = [r.task for r in runs if r.task is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending, timeout=2.0)
