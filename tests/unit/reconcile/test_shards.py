"""Shard assignment, namespace scope and the Lease decisions (pure), and the membership loop against a fake
Lease store with optimistic concurrency, as the API server does it."""

from __future__ import annotations

import asyncio
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from controller.errors import ClusterError
from controller.reconcile.membership import Membership
from controller.reconcile.shards import (
    LEASE_DURATION,
    RENEW_INTERVAL,
    SAFETY_MARGIN,
    Holdings,
    LeaseView,
    Scope,
    lease_moves,
    moved,
    parse_selector,
    shard_of,
)

NAMESPACES = [f"team-{a}{b}-{n}" for a in string.ascii_lowercase for b in "xyz" for n in range(13)]  # 1014
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_a_namespace_always_lands_on_the_same_shard_and_shards_are_balanced() -> None:
    counts = [0] * 4
    for ns in NAMESPACES:
        assert shard_of(ns, 4) == shard_of(ns, 4)
        counts[shard_of(ns, 4)] += 1
    expected = len(NAMESPACES) / 4
    assert all(abs(c - expected) < 0.15 * expected for c in counts), counts
    assert {shard_of(ns, 1) for ns in NAMESPACES} == {0}


@pytest.mark.parametrize(("before", "after"), [(1, 2), (3, 4), (4, 5), (8, 7)])
def test_changing_the_shard_count_moves_about_one_share_of_the_namespaces(before: int, after: int) -> None:
    share = 1 / max(before, after)
    n = moved(NAMESPACES, before, after)
    assert abs(n / len(NAMESPACES) - share) < 0.05, (n, share)
    # a mod-N assignment would move (N-1)/N of them: rendezvous hashing moves only what must move
    mod_moved = sum(hash(ns) % before != hash(ns) % after for ns in NAMESPACES)
    assert n < mod_moved


@pytest.mark.parametrize(
    ("patterns", "namespace", "expected"),
    [
        ((), "anything", True),
        (("shop",), "shop", True),
        (("shop",), "shop-2", False),
        (("team-*",), "team-a", True),
        (("team-*", "shop"), "shop", True),
        (("team-?",), "team-ab", False),
        (("e2e1234-*",), "e2e12345-x", False),
    ],
)
def test_scope_by_names_and_globs(patterns: tuple[str, ...], namespace: str, expected: bool) -> None:
    assert Scope(patterns).matches(namespace) is expected


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("stopline.dev/enabled=true", {"stopline.dev/enabled": "true"}, True),
        ("stopline.dev/enabled=true", {"stopline.dev/enabled": "false"}, False),
        ("env in (prod, staging),!legacy", {"env": "prod"}, True),
        ("env in (prod, staging),!legacy", {"env": "prod", "legacy": ""}, False),
        ("env notin (dev)", {}, True),
        ("tier!=db,team", {"team": "a", "tier": "web"}, True),
        ("tier!=db,team", {"tier": "web"}, False),
    ],
)
def test_scope_by_namespace_labels(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert Scope(selector=parse_selector(selector)).matches("ns", labels) is expected
    assert Scope(selector=parse_selector(selector)).matches("ns", None) is False


def view(shard: int, holder: str | None, renewed: datetime | None, exists: bool = True) -> LeaseView:
    return LeaseView(shard, holder=holder, renewed=renewed, exists=exists)


def test_moves_renew_ours_and_leave_live_leases_of_others_alone() -> None:
    h = Holdings(valid_until={0: T0 + timedelta(seconds=5)})
    moves = lease_moves("a", [view(0, "a", T0), view(1, "b", T0)], h, T0 + timedelta(seconds=1))
    assert (moves.renew, moves.take, moves.lost) == ((0,), (), ())


def test_a_standby_takes_an_expired_lease_as_soon_as_it_sees_it() -> None:
    dead = view(0, "a", T0)
    before = lease_moves("b", [dead], Holdings(), T0 + LEASE_DURATION - timedelta(milliseconds=1))
    assert before.take == ()
    after = lease_moves("b", [dead], Holdings(), T0 + LEASE_DURATION)
    assert after.take == (0,)


def test_a_replica_holding_shards_waits_one_interval_per_shard_and_takes_one_per_round() -> None:
    free = [view(1, None, None, exists=False), view(2, None, None, exists=False)]
    h = Holdings(valid_until={0: T0 + timedelta(seconds=8)})
    first = lease_moves("a", [view(0, "a", T0), *free], h, T0)
    assert first.take == () and set(first.free_since) == {1, 2}
    h.free_since = dict(first.free_since)
    second = lease_moves("a", [view(0, "a", T0), *free], h, T0 + RENEW_INTERVAL)
    assert second.take == (1,)  # one per round
    # a replica holding nothing takes at once
    assert lease_moves("b", free, Holdings(), T0).take == (1,)


def test_a_lease_taken_by_another_replica_is_lost() -> None:
    h = Holdings(valid_until={0: T0 + timedelta(seconds=8)})
    moves = lease_moves("a", [view(0, "b", T0 + timedelta(seconds=1))], h, T0 + timedelta(seconds=2))
    assert moves.lost == (0,) and moves.renew == ()


@dataclass
class FakeLeases:
    """Lease objects with resourceVersions; a write with a stale version fails like a 409."""

    shards: int
    store: dict[int, tuple[str, datetime, int]] = field(default_factory=dict)  # shard → holder, renewed, version
    seen: dict[str, dict[int, int | None]] = field(default_factory=dict)
    members: dict[str, datetime] = field(default_factory=dict)
    down: bool = False

    def client(self, me: str) -> FakeLeaseClient:
        return FakeLeaseClient(self, me)


@dataclass
class FakeLeaseClient:
    world: FakeLeases
    me: str

    async def read(self) -> Sequence[LeaseView]:
        if self.world.down:
            raise ClusterError("Kubernetes API unreachable")
        seen = self.world.seen.setdefault(self.me, {})
        out = []
        for shard in range(self.world.shards):
            if shard in self.world.store:
                holder, renewed, version = self.world.store[shard]
                seen[shard] = version
                out.append(LeaseView(shard, holder or None, renewed))
            else:
                seen[shard] = None
                out.append(LeaseView(shard, exists=False))
        return out

    async def heartbeat(self, me: str, now: datetime, duration: timedelta) -> int:
        if self.world.down:
            raise ClusterError("Kubernetes API unreachable")
        self.world.members[me] = now
        return sum(now < at + duration for at in self.world.members.values())

    async def release(self, shard: int) -> None:
        holder, renewed, version = self.world.store[shard]
        if holder == self.me:
            self.world.store[shard] = ("", renewed, version + 1)

    async def write(self, shard: int, me: str, now: datetime, duration: timedelta, *, take: bool) -> bool:
        if self.world.down:
            raise ClusterError("Kubernetes API unreachable")
        current = self.world.store.get(shard)
        if (current[2] if current else None) != self.world.seen[self.me].get(shard):
            return False
        version = (current[2] if current else 0) + 1
        self.world.store[shard] = (me, now, version)
        self.world.seen[self.me][shard] = version
        return True


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float = RENEW_INTERVAL.total_seconds()) -> None:
        self.now += timedelta(seconds=seconds)


async def test_two_replicas_one_shard_one_active_and_failover_within_the_bound() -> None:
    world, clock = FakeLeases(1), Clock()
    a = Membership(world.client("a"), "a", 1, clock)
    b = Membership(world.client("b"), "b", 1, clock)
    await a.round()
    await b.round()
    assert a.held() == {0} and b.held() == frozenset()
    for _ in range(5):  # a renews, b stays standby
        clock.tick()
        await a.round()
        await b.round()
        assert a.held() == {0} and b.held() == frozenset()
    killed_at = clock.now  # a is SIGKILLed right after renewing
    while not b.held():
        clock.tick()
        await b.round()
    took = (clock.now - killed_at).total_seconds()
    assert took <= 15, took
    assert took >= LEASE_DURATION.total_seconds()  # never before a's Lease expired
    assert a.held() == frozenset()  # and a, were it only frozen, has stopped acting by then


async def test_a_replica_that_cannot_renew_stops_acting_before_another_may_take_over() -> None:
    world, clock = FakeLeases(1), Clock()
    a = Membership(world.client("a"), "a", 1, clock)
    await a.round()
    renewed = clock.now
    world.down = True
    clock.tick(LEASE_DURATION.total_seconds() - SAFETY_MARGIN.total_seconds())
    await a.round()
    assert a.held() == frozenset() and clock.now < renewed + LEASE_DURATION


async def test_two_replicas_and_four_shards_split_them_and_one_takes_all_when_the_other_dies() -> None:
    world, clock = FakeLeases(4), Clock()
    a = Membership(world.client("a"), "a", 4, clock)
    b = Membership(world.client("b"), "b", 4, clock)
    for _ in range(6):
        await a.round()
        await b.round()
        clock.tick()
    assert len(a.held()) == 2 and len(b.held()) == 2 and not a.held() & b.held()
    dead = clock.now
    for _ in range(12):
        clock.tick()
        await b.round()
    assert b.held() == {0, 1, 2, 3}
    owners = {shard: holder for shard, (holder, _, _) in world.store.items()}
    assert set(owners.values()) == {"b"}
    assert (clock.now - dead).total_seconds() <= 24 + 10  # four shards, one per round after the first


async def test_without_leader_election_every_shard_is_held() -> None:
    m = Membership(None, "x", 3, Clock())
    await m.round()
    assert m.held() == {0, 1, 2} and m.owns("anything")


async def test_a_clean_shutdown_hands_the_shard_over_at_the_next_round() -> None:
    world, clock = FakeLeases(1), Clock()
    a = Membership(world.client("a"), "a", 1, clock)
    b = Membership(world.client("b"), "b", 1, clock)
    await a.round()
    await b.round()
    await a.release_all()
    assert a.held() == frozenset()
    clock.tick()
    await b.round()
    assert b.held() == {0}  # one round, not a Lease duration


async def test_a_replica_started_later_gets_its_fair_share_from_one_that_took_everything() -> None:
    world, clock = FakeLeases(4), Clock()
    a = Membership(world.client("a"), "a", 4, clock)
    for _ in range(6):
        await a.round()
        clock.tick()
    assert a.held() == {0, 1, 2, 3}
    b = Membership(world.client("b"), "b", 4, clock)
    for _ in range(8):
        await b.round()
        await a.round()
        clock.tick()
        assert not a.held() & b.held(), "a shard held by two replicas at once"
    assert len(a.held()) == 2 and len(b.held()) == 2


def blocking_writer(client: FakeLeaseClient) -> Callable[[int, str, datetime, timedelta], bool]:
    def write(shard: int, me: str, now: datetime, duration: timedelta) -> bool:
        return asyncio.run(client.write(shard, me, now, duration, take=False))

    return write


async def test_the_renewer_thread_keeps_the_shards_while_the_event_loop_runs_no_round() -> None:
    world, clock = FakeLeases(1), Clock()
    client = world.client("a")
    m = Membership(client, "a", 1, clock)
    await m.round()
    m.renewer = True
    writes: list[int] = []
    write = blocking_writer(client)

    def counted(shard: int, me: str, now: datetime, duration: timedelta) -> bool:
        writes.append(shard)
        return write(shard, me, now, duration)

    for _ in range(10):  # 20 s without a round (the event loop starved): the renewer alone keeps shard 0
        clock.tick()
        await asyncio.to_thread(m.renew_blocking, counted)
        assert m.held() == {0}
    assert writes == [0] * 10 and world.store[0][1] == clock.now
    before = len(writes)
    clock.tick()
    await m.round()  # a round reads and decides, but does not renew again
    assert len(writes) == before and world.store[0][1] == clock.now - RENEW_INTERVAL


async def test_a_renewal_in_flight_never_revives_a_shard_given_up_meanwhile() -> None:
    world, clock = FakeLeases(1), Clock()
    client = world.client("a")
    m = Membership(client, "a", 1, clock)
    await m.round()
    write = blocking_writer(client)

    def slow(shard: int, me: str, now: datetime, duration: timedelta) -> bool:
        ok = write(shard, me, now, duration)
        m._drop(shard)  # the round gave the shard up (or saw it lost) while this write was out
        return ok

    clock.tick()
    await asyncio.to_thread(m.renew_blocking, slow)
    assert m.held() == frozenset(), "the renewal that was in flight must not make it valid again"


async def test_with_the_renewer_a_restarted_replica_still_reclaims_the_leases_held_in_its_name() -> None:
    world, clock = FakeLeases(1), Clock()
    before = Membership(world.client("a"), "a", 1, clock)
    await before.round()  # the previous process of identity "a" took shard 0, then was killed
    clock.tick()
    restarted = Membership(world.client("a"), "a", 1, clock)
    restarted.renewer = True  # as in the controller: a renewer thread renews what is valid here
    await restarted.round()
    assert restarted.held() == {0}, "the round must reclaim a Lease in its own name that it does not hold yet"
