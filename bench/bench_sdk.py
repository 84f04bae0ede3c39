"""Experiment SDK throughput: ``get_branch`` calls per second on one core.

Compares the SDK (precomputed seed state and bucket→branch table, inlined FNV-1a) with a naive
GrowthBook-style evaluation written the obvious way (hash the full ``seed + value`` string per
call, build the bucket ranges per call, scan them), and, when the ``growthbook`` package is installed
(a test dependency), with GrowthBook's own Python SDK the way its docs use it,
``GrowthBook(attributes={"id": user}).run(Experiment(...))`` per call. All give identical answers
(checked first).

    .venv/bin/python bench/bench_sdk.py [--calls 200000] [--repeats 7]

Target (DESIGN.md §6): order of 1M calls/s/core. Pure Python; the figure printed is the best of
``--repeats`` runs over distinct user ids (so no per-user caching can help), timed in process CPU
time so other load on the machine does not count against one core's rate.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry

from controller.experiments.hashing import ExperimentConfig
from controller.sdk import Experiments

CONFIG = ExperimentConfig(
    key="GDCEurope2011",
    seed="GDCEurope2011",
    rollout=100,
    branches=(("control", 0.5), ("enhanced", 0.5)),
)


def naive_fnv1a32(text: str) -> int:
    h = 0x811C9DC5
    for char in text:
        h = ((h ^ ord(char)) * 0x01000193) % 2**32
    return h


def naive_get_branch(config: ExperimentConfig, user_id: str, groups: Sequence[str] = ()) -> str | None:
    """What a straightforward port of GrowthBook's evaluation does on every call."""
    if not config.enabled:
        return None
    if config.closed_on is not None:
        return config.closed_on
    if config.audience and not set(config.audience) & set(groups):
        return None
    if not user_id:
        return None
    n = (naive_fnv1a32(str(naive_fnv1a32(config.seed + user_id))) % 10000) / 10000
    coverage = config.rollout / 100
    cumulative = 0.0
    ranges = []
    for _, weight in config.branches:
        ranges.append((cumulative, cumulative + coverage * weight))
        cumulative += weight
    for (name, _), (start, end) in zip(config.branches, ranges, strict=True):
        if start <= n < end:
            return name
    return None


def growthbook_runner() -> Callable[[str], str | None] | None:
    """``user → branch`` through GrowthBook's Python SDK, or None when it is not installed."""
    try:
        from growthbook import Experiment, GrowthBook
    except ImportError:
        return None
    names = list(CONFIG.branch_names)
    experiment = Experiment(
        key=CONFIG.key,
        variations=names,
        weights=[w for _, w in CONFIG.branches],
        coverage=CONFIG.rollout / 100,
        seed=CONFIG.seed,
        hashVersion=CONFIG.hash_version,
    )

    def run(user: str) -> str | None:
        result = GrowthBook(attributes={"id": user}).run(experiment)
        return result.value if result.inExperiment else None

    return run


def best_rate(call: Callable[[str], object], users: Sequence[str], repeats: int) -> float:
    best = float("inf")
    gc.disable()
    try:
        for _ in range(repeats):
            start = time.process_time()
            for user in users:
                call(user)
            best = min(best, time.process_time() - start)
    finally:
        gc.enable()
    return len(users) / best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    users = [f"user-{i:06d}" for i in range(args.calls)]
    client = Experiments([CONFIG], registry=CollectorRegistry())
    key = CONFIG.key
    mismatches = sum(client.get_branch(u, key) != naive_get_branch(CONFIG, u) for u in users[:20000])
    if mismatches:
        print(f"ERROR: SDK and naive disagree for {mismatches} users", file=sys.stderr)
        return 1

    peer = growthbook_runner()
    if peer is not None:
        differ = sum(client.get_branch(u, key) != peer(u) for u in users[:20000])
        if differ:
            print(f"ERROR: SDK and GrowthBook's Python SDK disagree for {differ} users", file=sys.stderr)
            return 1

    get_branch = client.get_branch
    expose = client.expose
    sdk = best_rate(lambda u: get_branch(u, key), users, args.repeats)
    exposing = best_rate(lambda u: expose(u, key), users, args.repeats)
    naive = best_rate(lambda u: naive_get_branch(CONFIG, u), users, args.repeats)

    blocks_before = sys.getallocatedblocks()
    for user in users:
        get_branch(user, key)
    retained = sys.getallocatedblocks() - blocks_before

    print(f"python {sys.version.split()[0]}, {len(users)} distinct user ids, best of {args.repeats}")
    print(f"sdk   Experiments.get_branch : {sdk:>12,.0f} calls/s/core")
    print(f"sdk   Experiments.expose     : {exposing:>12,.0f} calls/s/core  (get_branch + counter)")
    print(f"naive GrowthBook-style       : {naive:>12,.0f} calls/s/core")
    print(f"ratio sdk / naive            : {sdk / naive:>12.2f}x")
    if peer is None:
        print("growthbook (Python SDK) not installed: pip install growthbook to compare")
    else:
        gb = best_rate(peer, users[: max(len(users) // 10, 1)], max(args.repeats // 2, 1))
        print(f"growthbook GrowthBook().run  : {gb:>12,.0f} calls/s/core  (same answers checked)")
        print(f"ratio get_branch / growthbook: {sdk / gb:>12.1f}x")
        print(f"ratio expose / growthbook    : {exposing / gb:>12.1f}x")
    print(f"memory blocks retained after {len(users)} get_branch calls: {retained}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
