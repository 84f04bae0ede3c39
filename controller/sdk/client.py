"""``Experiments``: assign users to branches and count exposures and conversions."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, final

from prometheus_client import CollectorRegistry, Counter

from controller.experiments.hashing import CompiledExperiment, ExperimentConfig, compile_experiment
from controller.sdk.metrics import (
    COVARIATE_SUM,
    COVARIATE_SUM_SQUARES,
    VALUE_COVARIATE_PRODUCTS,
    VALUE_SUM,
    VALUE_SUM_SQUARES,
    ExperimentMetrics,
    metrics_for,
)
from controller.sdk.source import Signature, load_path, signature

__all__ = ["FORCE_COOKIE", "Experiments", "ForcedBranch", "parse_forced"]

log = logging.getLogger("stopline.sdk")

#: A conventional cookie/header name for QA overrides; the app chooses the name it reads.
FORCE_COOKIE = "stopline-force"


class ForcedBranch(str):
    """A branch given by forcing (QA), not by hashing: equal to the plain branch name.

    ``Experiments.convert`` counts a conversion of a ``ForcedBranch`` in the forced series, so forced
    users stay out of the analysis end to end.
    """

    __slots__ = ()


def parse_forced(value: str | None) -> dict[str, str]:
    """``"GDCEurope2011=enhanced,Checkout=b"`` (a cookie or header value) → ``{key: branch}``.

    Malformed items are skipped; ``Experiments.expose`` ignores branch names an experiment does not have.
    """
    out: dict[str, str] = {}
    for item in (value or "").split(","):
        key, sep, branch = item.strip().partition("=")
        if sep and key.strip() and branch.strip():
            out[key.strip()] = branch.strip()
    return out


def _override(forced: str | Mapping[str, str] | None, key: str) -> str | None:
    if forced is None or isinstance(forced, str):
        return forced
    return forced.get(key)


@final
class _State:
    """Everything a lookup needs, swapped as one object when the configuration changes."""

    __slots__ = ("compiled", "conversions", "exposures", "forced_conversions", "forced_exposures")

    def __init__(self, configs: Iterable[ExperimentConfig], metrics: ExperimentMetrics) -> None:
        self.compiled: dict[str, CompiledExperiment] = {}
        self.exposures: dict[str, dict[str, Counter]] = {}
        self.conversions: dict[str, dict[str, Counter]] = {}
        self.forced_exposures: dict[str, dict[str, Counter]] = {}
        self.forced_conversions: dict[str, dict[str, Counter]] = {}
        for config in configs:
            self.compiled[config.key] = compile_experiment(config)
            names = config.branch_names
            self.exposures[config.key] = {b: metrics.exposures.labels(config.key, b) for b in names}
            self.conversions[config.key] = {b: metrics.conversions.labels(config.key, b) for b in names}
            self.forced_exposures[config.key] = {b: metrics.forced_exposures.labels(config.key, b) for b in names}
            self.forced_conversions[config.key] = {b: metrics.forced_conversions.labels(config.key, b) for b in names}


@final
class Experiments:
    """Client for published experiments.

    Build it from the mounted ConfigMap with ``Experiments.from_path(dir)`` (reloaded when the files
    change, checked at most every ``reload_interval`` seconds on lookups), from the published
    document with ``Experiments.from_dict(doc)``, or from ``ExperimentConfig`` objects.

    Lookups are lock-free and thread-safe; an unknown experiment key gives None (show the default).
    """

    def __init__(
        self,
        configs: Iterable[ExperimentConfig] = (),
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics_for(registry)
        self._state = _State(configs, self._metrics)
        self._clock = clock
        self._path: Path | None = None
        self._reload_interval = math.inf
        self._next_check = math.inf
        self._signature: Signature = None
        self._reload_lock = threading.Lock()
        self._problems: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], *, registry: CollectorRegistry | None = None) -> Experiments:
        """From the published document ``{"experiments": [config, ...]}``; ValueError if invalid."""
        entries = document.get("experiments")
        if not isinstance(entries, list):
            raise ValueError("expected {'experiments': [config, ...]}")
        configs = [ExperimentConfig.from_dict(entry) for entry in entries]
        keys = [c.key for c in configs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"experiment keys must be unique, got {keys}")
        return cls(configs, registry=registry)

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        *,
        reload_interval: float = 5.0,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> Experiments:
        """From a mounted ConfigMap directory (or one JSON file); see ``controller.sdk``.

        A missing or unreadable path starts with no experiments (everyone gets None) and is
        retried on the next check; a broken update keeps the last good configuration.
        """
        client = cls(registry=registry, clock=clock)
        client._path = Path(path)
        client._reload_interval = max(0.0, reload_interval)
        client.reload(force=True)
        return client

    # Hot path -----------------------------------------------------------------------------

    def get_branch(
        self,
        user_id: str,
        experiment_key: str,
        groups: Collection[str] = (),
        forced: str | Mapping[str, str] | None = None,
    ) -> str | None:
        """The branch to show ``user_id`` (member of ``groups``), or None: not in the experiment.

        ``forced`` is a QA override: a branch name, or ``{key: branch}`` as ``parse_forced`` reads it
        from a cookie/header; names the experiment does not have are ignored. A forced branch (also
        one from the published ``force`` users/groups) comes back as a ``ForcedBranch``.
        """
        if self._clock() >= self._next_check:
            self._poll()
        compiled = self._state.compiled.get(experiment_key)
        if compiled is None:
            return None
        if forced is not None or compiled.has_force:
            branch = compiled.forced(user_id, groups, _override(forced, experiment_key))
            if branch is not None:
                return ForcedBranch(branch)
        return compiled.hashed(user_id, groups)

    def expose(
        self,
        user_id: str,
        key: str,
        groups: Collection[str] = (),
        forced: str | Mapping[str, str] | None = None,
        segments: Mapping[str, str] | None = None,
    ) -> str | None:
        """``get_branch`` and count the exposure in ``stopline_experiment_exposures_total``.

        Call it where the user actually sees the branch. Users not in the experiment (None) are
        not counted. Forced users (``forced`` override, or the experiment's ``force`` users and
        groups) are counted in ``stopline_experiment_forced_exposures_total`` instead, never in the
        analysis series. ``segments`` (dimension → segment, e.g. ``{"platform": "ios"}``) also
        counts the exposure in ``stopline_experiment_segment_exposures_total``.
        """
        if self._clock() >= self._next_check:
            self._poll()
        state = self._state
        compiled = state.compiled.get(key)
        if compiled is None:
            return None
        if forced is not None or compiled.has_force:
            pinned = compiled.forced(user_id, groups, _override(forced, key))
            if pinned is not None:
                state.forced_exposures[key][pinned].inc()
                return ForcedBranch(pinned)
        branch = compiled.hashed(user_id, groups)
        if branch is not None:
            state.exposures[key][branch].inc()
            if segments:
                counter = self._metrics.segment_exposures
                for dimension, segment in segments.items():
                    counter.labels(key, branch, dimension, segment).inc()
        return branch

    def convert(self, key: str, branch: str | None, segments: Mapping[str, str] | None = None) -> bool:
        """Count a conversion for ``branch`` in ``stopline_experiment_conversions_total``.

        A ``ForcedBranch`` (what ``expose`` returned for a forced user) is counted in
        ``stopline_experiment_forced_conversions_total`` instead. Returns False (and counts
        nothing) for None or a branch/experiment not configured, so label values stay bounded.
        """
        if branch is None:
            return False
        table = self._state.forced_conversions if isinstance(branch, ForcedBranch) else self._state.conversions
        counter = table.get(key, {}).get(branch)
        if counter is None:
            return False
        counter.inc()
        if segments and not isinstance(branch, ForcedBranch):
            for dimension, segment in segments.items():
                self._metrics.segment_conversions.labels(key, branch, dimension, segment).inc()
        return True

    def record(self, key: str, branch: str | None, value: float, covariate: float | None = None) -> bool:
        """Add one exposed user's metric ``value`` (and pre-period ``covariate``, for CUPED) to the sums.

        Call it once per exposed user with the user's total over the analysis window (0 is a value;
        users never recorded count as 0). Exports Σy, Σy² and, with ``covariate``, Σx, Σx², Σxy
        (``controller.sdk.metrics``). Values must be finite and >= 0 (ValueError otherwise). Returns
        False, counting nothing, for None, a forced branch or a branch/experiment not configured.
        """
        if branch is None or isinstance(branch, ForcedBranch):
            return False
        if branch not in self._state.exposures.get(key, {}):
            return False
        for v in (value, covariate):
            if v is not None and not (math.isfinite(v) and v >= 0):
                raise ValueError(f"record: values must be finite and >= 0, got {v}")
        sums = self._metrics.sums
        sums[VALUE_SUM].labels(key, branch).inc(value)
        sums[VALUE_SUM_SQUARES].labels(key, branch).inc(value * value)
        if covariate is not None:
            sums[COVARIATE_SUM].labels(key, branch).inc(covariate)
            sums[COVARIATE_SUM_SQUARES].labels(key, branch).inc(covariate * covariate)
            sums[VALUE_COVARIATE_PRODUCTS].labels(key, branch).inc(value * covariate)
        return True

    # Configuration ------------------------------------------------------------------------

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self._state.compiled)

    def config(self, key: str) -> ExperimentConfig | None:
        compiled = self._state.compiled.get(key)
        return None if compiled is None else compiled.config

    @property
    def problems(self) -> tuple[str, ...]:
        """What was wrong with the last load (skipped experiments, unreadable files)."""
        return self._problems

    def replace(self, configs: Iterable[ExperimentConfig]) -> None:
        """Swap in a new set of configs atomically."""
        self._state = _State(configs, self._metrics)

    def reload(self, *, force: bool = False) -> bool:
        """Re-read the path now if its files changed (or ``force``). True when configs were installed."""
        if self._path is None:
            return False
        with self._reload_lock:
            return self._reload_locked(self._path, force=force)

    def _poll(self) -> None:
        if self._path is None or not self._reload_lock.acquire(blocking=False):
            return
        try:
            self._reload_locked(self._path)
        finally:
            self._reload_lock.release()

    def _reload_locked(self, path: Path, *, force: bool = False) -> bool:
        self._next_check = self._clock() + self._reload_interval
        current = signature(path)
        if current == self._signature and not force:
            return False
        self._signature = current
        try:
            configs, problems = load_path(path)
        except ValueError as exc:
            self._problems = (str(exc),)
            log.warning("experiments: keeping the previous configuration: %s", exc)
            return False
        self._problems = tuple(problems)
        for problem in problems:
            log.warning("experiments: %s", problem)
        self.replace(configs)
        return True
