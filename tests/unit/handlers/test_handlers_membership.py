"""The membership round: the workload watch starts after the first round (its first LIST keeps what is
served), and when this replica's shards (or the selected namespaces) change, the workload watch
lists again — a namespace taken over is served from memory at once, one given away is forgotten — and not
otherwise (a re-list every 2 s would cost a LIST per kind per round)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from controller.handlers import startup


class FakeMembership:
    def __init__(self, rounds: list[frozenset[int]]) -> None:
        self.rounds = rounds
        self.n = 0
        self.done = asyncio.Event()

    async def round(self) -> None:
        self.n += 1
        if self.n >= len(self.rounds):
            self.done.set()

    def held(self) -> frozenset[int]:
        return self.rounds[min(self.n, len(self.rounds)) - 1]


class Counting:
    def __init__(self) -> None:
        self.resyncs = 0
        self.starts = 0

    def resync(self) -> None:
        self.resyncs += 1

    def start(self) -> None:
        self.starts += 1


async def run_rounds(held: list[frozenset[int]]) -> tuple[Any, Counting, Counting]:
    """keep_membership over the rounds ``held`` (then the last one again): (runtime, watch, loops)."""
    watch, loops = Counting(), Counting()
    rt: Any = SimpleNamespace(
        settings=SimpleNamespace(namespace_selector=None),
        membership=FakeMembership(held),
        supervisors={"releases": loops},
        workload_watch=watch,
        selected=None,
        watch_shards=frozenset(),
    )
    task = asyncio.create_task(startup.keep_membership(rt))
    await asyncio.wait_for(rt.membership.done.wait(), 5)
    await asyncio.sleep(0.01)  # the last round's decision
    task.cancel()
    return rt, watch, loops


async def test_a_shard_given_up_is_forgotten_by_the_watch_after_the_keep_rounds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(startup, "RENEW_INTERVAL", timedelta(seconds=0.001))
    rt, watch, _loops = await run_rounds([frozenset({0})] * 3 + [frozenset({1})] * (startup.WATCH_KEEP_ROUNDS + 2))
    assert rt.watch_shards == frozenset({1})
    assert (watch.starts, watch.resyncs) == (1, 2)  # {0} → {0,1} → {1}


async def test_the_workload_watch_lists_again_only_when_the_held_shards_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(startup, "RENEW_INTERVAL", timedelta(seconds=0.001))
    held = [frozenset(), frozenset({0}), frozenset({0}), frozenset({0, 1}), frozenset({1}), frozenset({1})]
    rt, watch, loops = await run_rounds(held)
    # rounds: {} (first: the watch starts), {0} (gained), {0}, {0,1} (gained), {1}, {1}: shard 0 is kept
    # for WATCH_KEEP_ROUNDS after it was last held (a momentary lapse costs no re-list)
    assert (watch.starts, watch.resyncs) == (1, 2)
    assert rt.watch_shards == frozenset({0, 1})
    assert loops.resyncs >= len(held)


def test_the_watch_keeps_the_shards_of_the_last_round_not_the_lease_validity_of_the_moment() -> None:
    from controller.reconcile.shards import Scope, shard_of

    namespaces = [f"team-{i}" for i in range(40)]
    mine = {ns for ns in namespaces if shard_of(ns, 2) == 1}
    lapsed = SimpleNamespace(shards=2, held=frozenset, owns=lambda ns: False)  # validity lapsed just now
    rt: Any = SimpleNamespace(scope=Scope(("team-*",)), selected=None, membership=lapsed, watch_shards={1})
    assert {ns for ns in namespaces if startup.kept(rt, ns)} == mine
    assert not startup.kept(rt, "other"), "out of scope"
    rt.selected = {"team-1"}
    assert {ns for ns in namespaces if startup.kept(rt, ns)} == mine & {"team-1"}
