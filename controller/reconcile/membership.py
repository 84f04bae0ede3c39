"""Which shards this replica holds, kept by renewing coordination.k8s.io Leases. No kopf, no client here.

Every :data:`~controller.reconcile.shards.RENEW_INTERVAL` the Leases are read once and
:func:`~controller.reconcile.shards.lease_moves` decides: renew ours, take a free or expired one, let go of
those another replica holds. A shard counts as ours only until ``renewed + duration - margin``: a replica
that cannot renew (API server unreachable, process frozen) stops acting before any other replica may take
over, so no two replicas act on one namespace at the same moment.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from controller.errors import StoplineError
from controller.reconcile.shards import (
    LEASE_DURATION,
    SAFETY_MARGIN,
    Holdings,
    LeaseView,
    lease_moves,
    shard_of,
)

log = logging.getLogger("stopline.shards")


class LeasePort(Protocol):
    async def read(self) -> Sequence[LeaseView]: ...

    async def write(self, shard: int, me: str, now: datetime, duration: timedelta, *, take: bool) -> bool: ...

    async def release(self, shard: int) -> None: ...

    async def heartbeat(self, me: str, now: datetime, duration: timedelta) -> int: ...


class Membership:
    """The shards this replica holds. ``leases`` None: leader election off, every shard is ours."""

    def __init__(
        self,
        leases: LeasePort | None,
        me: str,
        shards: int,
        clock: Callable[[], datetime],
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.leases = leases
        self.me = me
        self.shards = max(1, shards)
        self.clock = clock
        self.on_change = on_change
        self.holdings = Holdings()
        self._held: frozenset[int] = frozenset()
        self.rounds = 0
        # The renewer thread (``renew_blocking``) and the rounds on the event loop share the holdings: every
        # change is made under this lock, and a shard dropped or given up bumps its epoch, so a renewal
        # that was in flight meanwhile never makes it valid again.
        self._lock = threading.Lock()
        self._epochs: dict[int, int] = {}
        self.renewer = False  # True while a renewer thread renews the held shards (the rounds then do not)

    def held(self) -> frozenset[int]:
        """The shards this replica may act on now."""
        if self.leases is None:
            return frozenset(range(self.shards))
        with self._lock:
            return self.holdings.held(self.clock())

    def _valid(self, shard: int, now: datetime) -> None:
        with self._lock:
            self.holdings.valid_until[shard] = now + LEASE_DURATION - SAFETY_MARGIN

    def _drop(self, shard: int) -> None:
        with self._lock:
            self.holdings.valid_until.pop(shard, None)
            self._epochs[shard] = self._epochs.get(shard, 0) + 1

    def renew_blocking(self, write: Callable[[int, str, datetime, timedelta], bool]) -> None:
        """Renew every held shard once, blocking — the renewer thread's step, every RENEW_INTERVAL. Off the
        event loop: at 2,000 Releases on 4 saturated cores the loop ran seconds late, the renewal with it,
        and each lapse stopped and restarted ~500 loops."""
        now = self.clock()
        with self._lock:
            targets = [(shard, self._epochs.get(shard, 0)) for shard in sorted(self.holdings.held(now))]
        for shard, epoch in targets:
            try:
                ok = write(shard, self.me, now, LEASE_DURATION)
            except StoplineError as exc:
                log.warning("shard %d: Lease renewal failed: %s", shard, exc)
                continue
            with self._lock:
                if self._epochs.get(shard, 0) != epoch:
                    continue  # dropped or given up meanwhile: stays so
                if ok:
                    self.holdings.valid_until[shard] = now + LEASE_DURATION - SAFETY_MARGIN
                else:  # another replica's write got there first: the next round's reads say who holds it
                    self.holdings.valid_until.pop(shard, None)
                    self._epochs[shard] = epoch + 1

    def owns(self, namespace: str) -> bool:
        return shard_of(namespace, self.shards) in self.held()

    async def round(self) -> None:
        """Read the Leases once, renew/take/let go, and report a change of what is held."""
        if self.leases is None:
            return
        now = self.clock()
        try:
            views = await self.leases.read()
        except StoplineError as exc:
            log.warning("shard leases unreadable (%s); holding %s until they expire", exc, sorted(self.held()))
            views = None
        members: int | None = None
        if views is not None:
            try:  # how many replicas are alive (each renews a member Lease): for the fair share of shards
                members = await self.leases.heartbeat(self.me, now, LEASE_DURATION)
            except StoplineError as exc:
                log.warning("member Lease not renewed (%s); shards are not rebalanced this round", exc)
        if views is not None:
            with self._lock:
                moves = lease_moves(self.me, views, self.holdings, now, members)
                self.holdings.free_since = dict(moves.free_since)
            for shard in moves.lost:
                self._drop(shard)
                log.warning("shard %d: Lease now held by another replica; its namespaces are no longer served", shard)
            # The renewer thread renews what is valid here (so a renewal never queues behind these reads on a
            # saturated API server); a Lease still held in our name by a previous process of this identity (a
            # restart) is reclaimed by the round. Without a renewer thread the round renews.
            valid = self.held()
            renew = [s for s in moves.renew if not (self.renewer and s in valid)]
            for shard, take in [(s, False) for s in renew] + [(s, True) for s in moves.take]:
                try:
                    ok = await self.leases.write(shard, self.me, now, LEASE_DURATION, take=take)
                except StoplineError as exc:
                    log.warning("shard %d: Lease %s failed: %s", shard, "take" if take else "renewal", exc)
                    continue
                if ok:
                    self._valid(shard, now)
                    with self._lock:
                        self.holdings.free_since.pop(shard, None)
                    if take:
                        log.info("shard %d of %d taken by %s", shard, self.shards, self.me)
                else:
                    self._drop(shard)
            for shard in moves.release:
                self._drop(shard)  # stop acting first, then let go
                self.on_change()
                try:
                    await self.leases.release(shard)
                    log.info("shard %d given up to balance %d shards over %s replicas", shard, self.shards, members)
                except StoplineError as exc:
                    log.warning("shard %d: could not give its Lease up (%s); it expires on its own", shard, exc)
        self.rounds += 1
        held = self.held()
        if held != self._held:
            log.info("serving shards %s of %d (was %s)", sorted(held), self.shards, sorted(self._held))
        self._held = held
        self.on_change()  # also every round: loops that stopped meanwhile may now be started

    async def release_all(self) -> None:
        """On a clean shutdown: stop acting, then give every held shard up so a standby need not wait for
        the Leases to expire."""
        if self.leases is None:
            return
        self.renewer = False  # (the renewer thread stops with the process; nothing it renews is valid now)
        shards = sorted(self.holdings.valid_until)
        for shard in shards:
            self._drop(shard)
        for shard in shards:
            try:
                await self.leases.release(shard)
                log.info("shard %d released", shard)
            except StoplineError as exc:
                log.warning("shard %d: could not release its Lease (%s); it expires on its own", shard, exc)
