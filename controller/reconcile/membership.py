"""Which shards this replica holds, kept by renewing coordination.k8s.io Leases. No kopf, no client here.

Every :data:`~controller.reconcile.shards.RENEW_INTERVAL` the Leases are read once and
:func:`~controller.reconcile.shards.lease_moves` decides: renew ours, take a free or expired one, let go of
those another replica holds. A shard counts as ours only until ``renewed + duration - margin``: a replica
that cannot renew (API server unreachable, process frozen) stops acting before any other replica may take
over, so no two replicas act on one namespace at the same moment.
"""

from __future__ import annotations

import logging
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

    def held(self) -> frozenset[int]:
        """The shards this replica may act on now."""
        if self.leases is None:
            return frozenset(range(self.shards))
        return self.holdings.held(self.clock())

    def owns(self, namespace: str) -> bool:
        return shard_of(namespace, self.shards) in self.held()

    async def round(self) -> None:
        """Read the Leases once, renew/take/let go, and report a change of what is held."""
        if self.leases is None:
            return
        now = self.clock()
        # Renew what is held first, before the reads: on a saturated API server each call can take a
        # second or more, and a renewal queued behind four reads and the member heartbeat let the Lease's
        # validity (renewed + 8 s) lapse thousands of times at 2,000 Releases on 4 shards.
        renewed: set[int] = set()
        for shard in sorted(self.held()):
            try:
                ok = await self.leases.write(shard, self.me, now, LEASE_DURATION, take=False)
            except StoplineError as exc:
                log.warning("shard %d: Lease renewal failed: %s", shard, exc)
                continue
            if ok:
                self.holdings.valid_until[shard] = now + LEASE_DURATION - SAFETY_MARGIN
                renewed.add(shard)
            else:  # another replica's write got there first: the reads below say who holds it
                self.holdings.valid_until.pop(shard, None)
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
            moves = lease_moves(self.me, views, self.holdings, now, members)
            self.holdings.free_since = dict(moves.free_since)
            for shard in moves.lost:
                self.holdings.valid_until.pop(shard, None)
                log.warning("shard %d: Lease now held by another replica; its namespaces are no longer served", shard)
            renew = [s for s in moves.renew if s not in renewed]  # (renewed above already)
            for shard, take in [(s, False) for s in renew] + [(s, True) for s in moves.take]:
                try:
                    ok = await self.leases.write(shard, self.me, now, LEASE_DURATION, take=take)
                except StoplineError as exc:
                    log.warning("shard %d: Lease %s failed: %s", shard, "take" if take else "renewal", exc)
                    continue
                if ok:
                    self.holdings.valid_until[shard] = now + LEASE_DURATION - SAFETY_MARGIN
                    self.holdings.free_since.pop(shard, None)
                    if take:
                        log.info("shard %d of %d taken by %s", shard, self.shards, self.me)
                else:
                    self.holdings.valid_until.pop(shard, None)
            for shard in moves.release:
                self.holdings.valid_until.pop(shard, None)  # stop acting first, then let go
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
        shards = sorted(self.holdings.valid_until)
        self.holdings.valid_until.clear()
        for shard in shards:
            try:
                await self.leases.release(shard)
                log.info("shard %d released", shard)
            except StoplineError as exc:
                log.warning("shard %d: could not release its Lease (%s); it expires on its own", shard, exc)
