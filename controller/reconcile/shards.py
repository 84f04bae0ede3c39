"""Which replica acts on which namespace: the namespace scope, shard assignment and the Lease decisions. Pure.

* **Scope** — the namespaces the controller serves: names or glob patterns (``shop``, ``team-*``) and/or a
  namespace label selector; one cluster-wide watch per kind is filtered by it (no per-namespace streams).
* **Shards** — a namespace belongs to shard ``shard_of(namespace, shards)`` by rendezvous hashing: stable
  for a namespace, and changing the shard count from N to N+1 moves only about 1/(N+1) of the namespaces.
* **Leases** — shard ``i`` is held through the coordination.k8s.io Lease ``<name>-shard-<i>``. A replica
  acts on a namespace only while it holds a valid (renewed, unexpired) Lease of the namespace's shard.
  :func:`lease_moves` decides, from the Leases as read, what to renew, take and drop.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from controller.models.common import LabelSelector

#: A Lease not renewed for this long is expired: another replica may take its shard.
LEASE_DURATION = timedelta(seconds=10)
#: How often a holder renews (and a standby looks for expired Leases).
RENEW_INTERVAL = timedelta(seconds=2)
#: A holder stops acting this long before its Lease would expire if it could not renew it.
SAFETY_MARGIN = timedelta(seconds=2)


def shard_of(namespace: str, shards: int) -> int:
    """The shard of ``namespace`` among ``shards`` (rendezvous / highest-random-weight hashing)."""
    if shards <= 1:
        return 0

    def weight(i: int) -> int:
        return int.from_bytes(hashlib.sha256(f"{namespace}\0{i}".encode()).digest()[:8], "big")

    return max(range(shards), key=weight)


@dataclass(frozen=True)
class Scope:
    """The namespaces served: ``patterns`` (names or globs; empty = every namespace) and, when set, only
    those whose labels match ``selector``."""

    patterns: tuple[str, ...] = ()
    selector: LabelSelector | None = None

    def matches(self, namespace: str, labels: Mapping[str, str] | None = None) -> bool:
        if self.patterns and not any(fnmatch.fnmatchcase(namespace, p) for p in self.patterns):
            return False
        if self.selector is not None:
            return labels is not None and self.selector.matches(dict(labels))
        return True


def parse_selector(text: str) -> LabelSelector:
    """``a=b,c!=d,e,!f,g in (x,y),h notin (z)`` — kubectl's label selector syntax — as a LabelSelector."""
    match_labels: dict[str, str] = {}
    exprs: list[dict[str, object]] = []
    parts: list[str] = []
    depth, cur = 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    for raw in (p.strip() for p in parts):
        if not raw:
            continue
        words = raw.split(None, 1)
        if len(words) == 2 and words[1].split("(", 1)[0].strip() in ("in", "notin"):
            op, _, rest = words[1].partition("(")
            values = [v.strip() for v in rest.rstrip(")").split(",") if v.strip()]
            exprs.append({"key": words[0], "operator": "In" if op.strip() == "in" else "NotIn", "values": values})
        elif "!=" in raw:
            k, v = raw.split("!=", 1)
            exprs.append({"key": k.strip(), "operator": "NotIn", "values": [v.strip()]})
        elif "==" in raw or "=" in raw:
            k, v = raw.split("==", 1) if "==" in raw else raw.split("=", 1)
            match_labels[k.strip()] = v.strip()
        elif raw.startswith("!"):
            exprs.append({"key": raw[1:].strip(), "operator": "DoesNotExist"})
        else:
            exprs.append({"key": raw, "operator": "Exists"})
    return LabelSelector.model_validate({"matchLabels": match_labels, "matchExpressions": exprs})


@dataclass(frozen=True)
class LeaseView:
    """One shard Lease as read: who holds it and when it was last renewed (None: never created)."""

    shard: int
    holder: str | None = None
    renewed: datetime | None = None
    duration: timedelta = LEASE_DURATION
    exists: bool = True

    def expires(self) -> datetime | None:
        return None if self.renewed is None else self.renewed + self.duration


@dataclass(frozen=True)
class Moves:
    """What to do with the shard Leases this round."""

    renew: tuple[int, ...] = ()
    take: tuple[int, ...] = ()
    lost: tuple[int, ...] = ()  # held by someone else now
    release: tuple[int, ...] = ()  # held beyond our fair share while another replica holds less
    free_since: Mapping[int, datetime] = field(default_factory=dict)  # when each free Lease was first seen free


@dataclass
class Holdings:
    """The shards this replica holds and until when each is valid (renewed + duration - margin), and when
    each free Lease was first seen free."""

    valid_until: dict[int, datetime] = field(default_factory=dict)
    free_since: dict[int, datetime] = field(default_factory=dict)

    def held(self, now: datetime) -> frozenset[int]:
        return frozenset(s for s, until in self.valid_until.items() if now < until)


def fair_share(shards: int, members: int) -> int:
    """How many shards one of ``members`` live replicas should hold."""
    return -(-shards // max(1, members))


def lease_moves(
    me: str, leases: Sequence[LeaseView], holdings: Holdings, now: datetime, members: int | None = None
) -> Moves:
    """Renew what we hold; take a free (never created, released or expired) shard Lease once it has been
    seen free for one renew interval per shard we already hold — so replicas starting together spread over
    the shards, and a standby holding nothing wins a dead replica's shard first — at most one per round
    while we hold any; report shards another replica now holds. With ``members`` (live replicas) known, a
    replica takes free shards only up to its fair share — unless one stays free for two rounds more (its
    replica died) — and gives one shard per round up while it holds more than that."""
    count = len(holdings.held(now))
    fair = fair_share(len(leases), members) if members else len(leases)
    renew: list[int] = []
    take: list[int] = []
    lost: list[int] = []
    free_since: dict[int, datetime] = {}
    for lease in sorted(leases, key=lambda lease: lease.shard):
        expires = lease.expires()
        if lease.holder == me and lease.exists:
            renew.append(lease.shard)
            continue
        if lease.shard in holdings.valid_until:
            lost.append(lease.shard)
        if lease.exists and lease.holder and expires is not None and now < expires:
            continue  # held by a live replica
        since = holdings.free_since.get(lease.shard, now)
        free_since[lease.shard] = since
        orphaned = now >= since + RENEW_INTERVAL * (2 + count)
        if now >= since + RENEW_INTERVAL * count and (count == 0 or not take) and (count < fair or orphaned):
            take.append(lease.shard)
            count += 1
    release: tuple[int, ...] = ()
    if members and len(renew) > fair and not take:
        release = (max(renew),)
        renew.remove(release[0])
    return Moves(tuple(renew), tuple(take), tuple(lost), release=release, free_since=free_since)


def moved(namespaces: Iterable[str], before: int, after: int) -> int:
    """How many of ``namespaces`` change shard when the shard count goes from ``before`` to ``after``."""
    return sum(shard_of(ns, before) != shard_of(ns, after) for ns in namespaces)
