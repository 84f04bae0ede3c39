"""Deterministic, stateless user → branch assignment, compatible with GrowthBook.

Hashing
-------
``hash(seed, value, version)`` is GrowthBook's bucketing hash (FNV-1a, 32 bit):

* version 1: ``fnv1a32(value + seed) % 1000 / 1000``
* version 2: ``fnv1a32(str(fnv1a32(seed + value))) % 10000 / 10000``
* any other version: ``None`` (callers treat the user as not in the experiment).

FNV-1a runs over UTF-16 code units, like the reference JavaScript SDK (``charCodeAt``). For
characters inside the Basic Multilingual Plane this is the same as hashing code points, so every
GrowthBook SDK agrees; for characters outside it (emoji) GrowthBook's Python SDK, which hashes code
points, gives a different bucket than the JavaScript SDK and than this module.

Bucket ranges and rollout
-------------------------
``get_bucket_ranges(n, coverage, weights)`` and ``choose_variation(h, ranges)`` follow GrowthBook's
``getBucketRanges``/``chooseVariation`` exactly: branch *i* owns ``[start_i, start_i + coverage * w_i)``
where ``start_i`` is the sum of the weights before it. The rollout percentage is the coverage.

One hash decides both "is the user in?" and "which branch?", and that is what keeps assignments
stable: raising the rollout only widens every branch's range from its fixed start, so a user who is
in at rollout *r* is in the *same* branch at every rollout *r' > r*, and lowering the rollout only
removes users. (The ``seed`` is the only hashing input besides the user id; a separate "rollout
seed" is not needed for this property and would break compatibility with GrowthBook's evaluation of
the same experiment.) Changing the *weights* does move users; that is inherent to any weighted split.

Audience and closing
--------------------
``ExperimentConfig.audience`` is a targeting condition: when it is non-empty only users in at least
one of those groups (e.g. ``qa``, ``admin``) can be in, and the rollout applies to them. "QA and Admin
only" is ``audience=("qa", "admin"), rollout=100``. ``closed_on`` gives every user that branch, inside
or outside the audience and rollout. ``enabled=False`` puts nobody in (callers show their default).

Forced branches
---------------
``force_users`` (user id → branch) and ``force_groups`` (group → branch, first listed group the user
is in wins) give QA and admins a chosen branch regardless of audience and rollout, while the
experiment runs; ``closed_on`` still wins over them (closed means everyone). A forced user's branch
is not a random assignment, so callers must keep such users out of the analysis counts
(``CompiledExperiment.forced`` tells them apart; the SDK counts them in separate series).

This module is pure: no I/O, no Kubernetes, no third-party imports.
"""

from __future__ import annotations

import builtins
import functools
import json
import math
from array import array
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, final

__all__ = [
    "PUBLISHED_KEY",
    "WEIGHT_SUM_TOLERANCE",
    "CompiledExperiment",
    "ExperimentConfig",
    "choose_variation",
    "compile_experiment",
    "dumps_published",
    "fnv1a32",
    "get_branch",
    "get_bucket_ranges",
    "get_equal_weights",
    "hash",
    "loads_published",
]

_OFFSET: Final = 0x811C9DC5
_PRIME: Final = 0x01000193
_MASK: Final = 0xFFFFFFFF

#: Weights must sum to 1 within this tolerance (GrowthBook falls back to equal weights outside it).
WEIGHT_SUM_TOLERANCE: Final = 0.01

#: Key of the published ConfigMap (and file name in its mounted volume); see ``controller.sdk``.
PUBLISHED_KEY: Final = "experiments.json"


def _code_units(text: str) -> bytes | list[int]:
    """The UTF-16 code units of ``text`` (bytes when it is ASCII, which is the same thing)."""
    if text.isascii():
        return text.encode("ascii")
    data = text.encode("utf-16-le", errors="surrogatepass")
    return [data[i] | (data[i + 1] << 8) for i in range(0, len(data), 2)]


def _fnv_update(state: int, units: Iterable[int]) -> int:
    for unit in units:
        state = ((state ^ unit) * _PRIME) & _MASK
    return state


@functools.cache
def _digit_prefix_states() -> array[int]:
    """FNV state after hashing ``str(v)`` from the offset basis, for v < 42950.

    The second FNV pass of hash version 2 runs over the decimal digits of a 32-bit number and
    always starts from the offset basis, so the state after its leading digits (``h // 100000``,
    never zero-padded) is a lookup; only the last five digits are hashed per call. 172 KiB, built
    once per process.
    """
    return array("I", (_fnv_update(_OFFSET, b"%d" % v) for v in range(_MASK // 100000 + 1)))


def fnv1a32(text: str) -> int:
    """32-bit FNV-1a of ``text``'s UTF-16 code units."""
    return _fnv_update(_OFFSET, _code_units(text))


def hash(seed: str, value: str, version: int = 2) -> float | None:
    """GrowthBook's bucketing hash of ``value`` under ``seed``: a float in [0, 1), or None."""
    if version == 2:
        inner = fnv1a32(seed + value)
        return (fnv1a32(str(inner)) % 10000) / 10000
    if version == 1:
        return (fnv1a32(value + seed) % 1000) / 1000
    return None


def get_equal_weights(num_variations: int) -> list[float]:
    """``num_variations`` equal weights (empty below one)."""
    if num_variations < 1:
        return []
    return [1 / num_variations] * num_variations


def get_bucket_ranges(
    num_variations: int, coverage: float = 1.0, weights: Sequence[float] | None = None
) -> list[tuple[float, float]]:
    """GrowthBook's ``getBucketRanges``: one ``[start, end)`` range per variation.

    Coverage is clamped to [0, 1]; weights of the wrong length or not summing to 1 (within
    ``WEIGHT_SUM_TOLERANCE``) are replaced by equal weights, as GrowthBook does.
    """
    coverage = min(max(coverage, 0.0), 1.0)
    chosen: Sequence[float]
    if weights is None or len(weights) != num_variations:
        chosen = get_equal_weights(num_variations)
    else:
        total = sum(weights)
        if total < 1 - WEIGHT_SUM_TOLERANCE or total > 1 + WEIGHT_SUM_TOLERANCE:
            chosen = get_equal_weights(num_variations)
        else:
            chosen = weights
    ranges: list[tuple[float, float]] = []
    cumulative = 0.0
    for weight in chosen:
        start = cumulative
        cumulative += weight
        ranges.append((start, start + coverage * weight))
    return ranges


def choose_variation(n: float, ranges: Sequence[tuple[float, float]]) -> int:
    """Index of the first range with ``start <= n < end``; -1 when ``n`` falls in none."""
    for index, (start, end) in enumerate(ranges):
        if start <= n < end:
            return index
    return -1


@dataclass(frozen=True, slots=True, kw_only=True)
class ExperimentConfig:
    """The published configuration of one experiment: everything an SDK needs to assign users.

    JSON form (``to_dict``/``from_dict``; camelCase keys, branch order preserved)::

        {"key": "GDCEurope2011", "seed": "GDCEurope2011", "rollout": 10,
         "audience": ["qa", "admin"], "branches": {"control": 0.5, "enhanced": 0.5},
         "closeOn": null, "hashVersion": 2, "enabled": true}
    """

    key: str
    seed: str
    rollout: float
    """Percent of (audience) users in the experiment, 0..100; GrowthBook's coverage × 100."""
    audience: tuple[str, ...] = ()
    """If non-empty, only users in at least one of these groups can be in."""
    branches: tuple[tuple[str, float], ...]
    """(name, weight) pairs in order; weights sum to 1."""
    closed_on: str | None = None
    """When set, every user gets this branch."""
    hash_version: int = 2
    enabled: bool = True
    force_users: tuple[tuple[str, str], ...] = ()
    """(user id, branch) pairs: these users always get that branch (QA), unless closed."""
    force_groups: tuple[tuple[str, str], ...] = ()
    """(group, branch) pairs: members get that branch (first group in order), unless closed."""

    def __post_init__(self) -> None:
        problems = _config_problems(self)
        if problems:
            raise ValueError(f"experiment {self.key!r}: " + "; ".join(problems))

    def __hash__(self) -> int:
        # Explicit: the generated __hash__ would call this module's GrowthBook ``hash``.
        fields = (self.key, self.seed, self.rollout, self.branches, self.audience, self.closed_on)
        return builtins.hash((*fields, self.hash_version, self.enabled, self.force_users, self.force_groups))

    @property
    def weights(self) -> dict[str, float]:
        return dict(self.branches)

    @property
    def branch_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.branches)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping with the published camelCase keys (``force`` only when something is forced)."""
        data: dict[str, Any] = {
            "key": self.key,
            "seed": self.seed,
            "rollout": self.rollout,
            "audience": list(self.audience),
            "branches": dict(self.branches),
            "closeOn": self.closed_on,
            "hashVersion": self.hash_version,
            "enabled": self.enabled,
        }
        if self.force_users or self.force_groups:
            data["force"] = {"users": dict(self.force_users), "groups": dict(self.force_groups)}
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentConfig:
        """Parse the published mapping; unknown keys are ignored (newer publishers may add some).

        Raises ValueError naming the offending field.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"experiment config must be an object, got {type(data).__name__}")
        key = data.get("key")
        if not isinstance(key, str) or not key:
            raise ValueError("experiment config: 'key' must be a non-empty string")
        seed = data.get("seed", key)
        if not isinstance(seed, str):
            raise ValueError(f"experiment {key!r}: 'seed' must be a string")
        rollout = data.get("rollout", 100)
        if isinstance(rollout, bool) or not isinstance(rollout, int | float):
            raise ValueError(f"experiment {key!r}: 'rollout' must be a number (percent)")
        audience = data.get("audience") or []
        if not isinstance(audience, list) or not all(isinstance(g, str) for g in audience):
            raise ValueError(f"experiment {key!r}: 'audience' must be a list of strings")
        branches = data.get("branches")
        if not isinstance(branches, Mapping) or not branches:
            raise ValueError(f"experiment {key!r}: 'branches' must be a non-empty object name→weight")
        pairs: list[tuple[str, float]] = []
        for name, weight in branches.items():
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise ValueError(f"experiment {key!r}: weight of branch {name!r} must be a number")
            pairs.append((str(name), float(weight)))
        closed_on = data.get("closeOn")
        if closed_on is not None and not isinstance(closed_on, str):
            raise ValueError(f"experiment {key!r}: 'closeOn' must be a branch name or null")
        hash_version = data.get("hashVersion", 2)
        if isinstance(hash_version, bool) or not isinstance(hash_version, int):
            raise ValueError(f"experiment {key!r}: 'hashVersion' must be an integer")
        enabled = data.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ValueError(f"experiment {key!r}: 'enabled' must be a boolean")
        force = data.get("force") or {}
        if not isinstance(force, Mapping):
            raise ValueError(f"experiment {key!r}: 'force' must be an object with 'users' and 'groups'")
        forced: dict[str, tuple[tuple[str, str], ...]] = {}
        for part in ("users", "groups"):
            table = force.get(part) or {}
            if not isinstance(table, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in table.items()
            ):
                raise ValueError(f"experiment {key!r}: 'force.{part}' must map strings to branch names")
            forced[part] = tuple(table.items())
        return cls(
            key=key,
            seed=seed,
            rollout=float(rollout),
            branches=tuple(pairs),
            audience=tuple(audience),
            closed_on=closed_on,
            hash_version=hash_version,
            enabled=enabled,
            force_users=forced["users"],
            force_groups=forced["groups"],
        )

    @classmethod
    def from_json(cls, text: str) -> ExperimentConfig:
        return cls.from_dict(json.loads(text))


def _config_problems(config: ExperimentConfig) -> list[str]:
    problems: list[str] = []
    if not config.key:
        problems.append("key must be non-empty")
    if not (math.isfinite(config.rollout) and 0 <= config.rollout <= 100):
        problems.append(f"rollout must be a percentage in 0..100, got {config.rollout}")
    if not config.branches:
        problems.append("at least one branch is required")
    names = [name for name, _ in config.branches]
    if len(set(names)) != len(names):
        problems.append(f"branch names must be unique, got {names}")
    if any(not name for name in names):
        problems.append("branch names must be non-empty")
    weights = [weight for _, weight in config.branches]
    if any(not math.isfinite(w) or w < 0 for w in weights):
        problems.append(f"weights must be finite and >= 0, got {weights}")
    elif config.branches and abs(sum(weights) - 1) > WEIGHT_SUM_TOLERANCE:
        problems.append(f"weights must sum to 1 (±{WEIGHT_SUM_TOLERANCE}), got {sum(weights):g}")
    if config.closed_on is not None and config.closed_on not in names:
        problems.append(f"closeOn {config.closed_on!r} is not one of the branches {names}")
    for what, table in (("force.users", config.force_users), ("force.groups", config.force_groups)):
        unknown = sorted({branch for _, branch in table if branch not in names})
        if unknown:
            problems.append(f"{what} names branches that do not exist: {unknown}")
    if config.hash_version not in (1, 2):
        problems.append(f"hashVersion must be 1 or 2, got {config.hash_version}")
    return problems


@final
class CompiledExperiment:
    """An ``ExperimentConfig`` prepared for the hot path.

    Everything that does not depend on the user is computed once: the FNV state after the seed
    (version 2 hashes ``seed + value``), the states after leading decimal digits for the second
    pass (``_digit_prefix_states``), and a lookup table from hash bucket (0..9999, or 0..999 for
    version 1) to branch name built with ``choose_variation`` over ``get_bucket_ranges``, so an
    assignment is the hash plus one tuple index and is identical to GrowthBook's range search.
    """

    __slots__ = (
        "_audience",
        "_constant",
        "_force_groups",
        "_force_users",
        "_prefix",
        "_seed_state",
        "_seed_units",
        "_table",
        "_version",
        "branches",
        "config",
        "has_force",
    )

    config: ExperimentConfig
    _audience: frozenset[str] | None
    _constant: tuple[str | None] | None
    _version: int
    _seed_state: int
    _seed_units: bytes | list[int]
    _table: tuple[str | None, ...]
    _prefix: array[int]
    _force_users: dict[str, str]
    _force_groups: tuple[tuple[str, str], ...]
    has_force: bool
    """Some user or group is forced by the config (``forced`` can return a branch without an override)."""
    branches: frozenset[str]

    def __init__(self, config: ExperimentConfig) -> None:
        self.config = config
        self.branches = frozenset(config.branch_names)
        self._force_users = dict(config.force_users)
        self._force_groups = config.force_groups
        self.has_force = bool(config.force_users or config.force_groups) and config.enabled
        self._prefix = _digit_prefix_states()
        self._audience = frozenset(config.audience) if config.audience else None
        self._version = config.hash_version
        self._seed_units = _code_units(config.seed)
        self._seed_state = _fnv_update(_OFFSET, self._seed_units)
        names = config.branch_names
        ranges = get_bucket_ranges(len(names), config.rollout / 100, [w for _, w in config.branches])
        buckets = 10000 if self._version == 2 else 1000
        table: list[str | None] = []
        for bucket in range(buckets):
            index = choose_variation(bucket / buckets, ranges)
            table.append(names[index] if index >= 0 else None)
        self._table = tuple(table)
        if not config.enabled:
            self._constant = (None,)
        elif config.closed_on is not None:
            self._constant = (config.closed_on,)
        elif all(name is None for name in table) and not self.has_force:
            self._constant = (None,)
        else:
            self._constant = None

    def forced(self, user_id: str, groups: Collection[str] = (), override: str | None = None) -> str | None:
        """The branch forced on this user, or None when the user is assigned by hash (or closed/disabled).

        ``override`` (e.g. from a QA cookie) wins when it names a branch of this experiment; unknown
        names are ignored. Then ``force_users``, then ``force_groups`` in their order.
        """
        if not self.config.enabled or self.config.closed_on is not None:
            return None
        if override is not None and override in self.branches:
            return override
        if not self.has_force:
            return None
        branch = self._force_users.get(user_id)
        if branch is not None:
            return branch
        for group, branch in self._force_groups:
            if group in groups:
                return branch
        return None

    def branch(self, user_id: str, groups: Collection[str] = ()) -> str | None:
        """The user's branch (forced first), or None when the user is not in the experiment."""
        constant = self._constant
        if constant is not None:
            return constant[0]
        if self.has_force:
            forced = self.forced(user_id, groups)
            if forced is not None:
                return forced
        return self.hashed(user_id, groups)

    def hashed(self, user_id: str, groups: Collection[str] = ()) -> str | None:
        """The user's random branch (ignoring forcing), or None when the user is not in the experiment."""
        constant = self._constant
        if constant is not None:
            return constant[0]
        audience = self._audience
        if audience is not None and audience.isdisjoint(groups):
            return None
        if not user_id:
            return None
        try:
            units: bytes | list[int] = user_id.encode("ascii")
        except UnicodeEncodeError:
            units = _code_units(user_id)
        if self._version == 2:
            h = self._seed_state
            if len(units) <= 64:
                # The low 32 bits of ((h ^ u) * P) depend only on the low 32 bits of h, so the mask
                # can wait until the end; short ids keep the intermediate integers small.
                for unit in units:
                    h = (h ^ unit) * _PRIME
                h &= _MASK
            else:
                for unit in units:
                    h = ((h ^ unit) * _PRIME) & _MASK
            if h >= 100000:
                prefix, rest = divmod(h, 100000)
                h2 = self._prefix[prefix]
                for digit in b"%05d" % rest:
                    h2 = (h2 ^ digit) * _PRIME
            else:
                h2 = _OFFSET
                for digit in b"%d" % h:
                    h2 = (h2 ^ digit) * _PRIME
            return self._table[(h2 & _MASK) % 10000]
        h = _OFFSET
        for unit in units:
            h = ((h ^ unit) * _PRIME) & _MASK
        for unit in self._seed_units:
            h = ((h ^ unit) * _PRIME) & _MASK
        return self._table[h % 1000]


@functools.lru_cache(maxsize=256)
def compile_experiment(config: ExperimentConfig) -> CompiledExperiment:
    """The (cached) hot-path form of ``config``."""
    return CompiledExperiment(config)


def get_branch(config: ExperimentConfig, user_id: str, groups: Collection[str] = ()) -> str | None:
    """The branch ``user_id`` (member of ``groups``) gets, or None: not in the experiment, show default.

    Order: disabled → None; closed → ``closed_on``; forced user or group → its branch; audience set
    and no group in it → None; empty user id → None; otherwise GrowthBook's hash and bucket ranges
    with coverage = rollout / 100.
    """
    return compile_experiment(config).branch(user_id, groups)


def dumps_published(configs: Iterable[ExperimentConfig]) -> str:
    """The published document ``{"experiments": [config, ...]}`` (value of ``PUBLISHED_KEY``)."""
    return json.dumps({"experiments": [c.to_dict() for c in configs]}, indent=2, sort_keys=False) + "\n"


def loads_published(text: str) -> tuple[list[ExperimentConfig], list[str]]:
    """Parse a published document: (valid configs, one message per invalid or duplicate entry).

    Accepts ``{"experiments": [...]}`` (the published form), a bare list of configs, or a single
    config object (one ``<key>.json`` per experiment). Raises ValueError if ``text`` is not JSON or
    has none of those shapes.
    """
    data = json.loads(text)
    entries: list[Any]
    if isinstance(data, Mapping) and "experiments" in data:
        if not isinstance(data["experiments"], list):
            raise ValueError("'experiments' must be a list")
        entries = data["experiments"]
    elif isinstance(data, list):
        entries = data
    elif isinstance(data, Mapping):
        entries = [data]
    else:
        raise ValueError("expected an object with 'experiments', a list, or one experiment object")
    configs: list[ExperimentConfig] = []
    errors: list[str] = []
    seen: set[str] = set()
    for entry in entries:
        try:
            config = ExperimentConfig.from_dict(entry)
        except ValueError as exc:
            errors.append(str(exc))
            continue
        if config.key in seen:
            errors.append(f"experiment {config.key!r}: duplicate key, first definition kept")
            continue
        seen.add(config.key)
        configs.append(config)
    return configs, errors
