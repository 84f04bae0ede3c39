"""The SDK's Prometheus counters, one pair per registry.

``stopline_experiment_exposures_total{experiment,branch}`` counts users shown a branch
(``Experiments.expose``); ``stopline_experiment_conversions_total{experiment,branch}`` counts
conversions (``Experiments.convert``). An Experiment's ``metric`` queries sum these by branch.

Forced users (QA: ``spec.force`` or an ``expose(..., forced=...)`` override) are not a random
assignment and must not enter the analysis, so they are counted apart, in
``stopline_experiment_forced_exposures_total`` and ``stopline_experiment_forced_conversions_total``.

Segments (``expose(..., segments={"platform": "ios"})``) are counted in
``stopline_experiment_segment_exposures_total{experiment,branch,dimension,segment}`` and
``..._segment_conversions_total``; ``metric.segments`` queries sum them by (branch, dimension, segment).
Keep segment values few (a label value per segment).

Continuous metrics (``Experiments.record(key, branch, value, covariate=...)``, once per exposed user)
are sufficient statistics per branch: ``stopline_experiment_value_sum_total`` (Σy),
``stopline_experiment_value_sum_squares_total`` (Σy²) and, for CUPED,
``stopline_experiment_covariate_sum_total`` (Σx), ``stopline_experiment_covariate_sum_squares_total``
(Σx²) and ``stopline_experiment_value_covariate_products_total`` (Σxy). Values must be >= 0 (counters).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter

__all__ = [
    "CONVERSIONS",
    "COVARIATE_SUM",
    "COVARIATE_SUM_SQUARES",
    "EXPOSURES",
    "FORCED_CONVERSIONS",
    "FORCED_EXPOSURES",
    "SEGMENT_CONVERSIONS",
    "SEGMENT_EXPOSURES",
    "VALUE_COVARIATE_PRODUCTS",
    "VALUE_SUM",
    "VALUE_SUM_SQUARES",
    "ExperimentMetrics",
    "metrics_for",
]

EXPOSURES: Final = "stopline_experiment_exposures_total"
CONVERSIONS: Final = "stopline_experiment_conversions_total"
FORCED_EXPOSURES: Final = "stopline_experiment_forced_exposures_total"
FORCED_CONVERSIONS: Final = "stopline_experiment_forced_conversions_total"
SEGMENT_EXPOSURES: Final = "stopline_experiment_segment_exposures_total"
SEGMENT_CONVERSIONS: Final = "stopline_experiment_segment_conversions_total"
VALUE_SUM: Final = "stopline_experiment_value_sum_total"
VALUE_SUM_SQUARES: Final = "stopline_experiment_value_sum_squares_total"
COVARIATE_SUM: Final = "stopline_experiment_covariate_sum_total"
COVARIATE_SUM_SQUARES: Final = "stopline_experiment_covariate_sum_squares_total"
VALUE_COVARIATE_PRODUCTS: Final = "stopline_experiment_value_covariate_products_total"


@dataclass(frozen=True, slots=True)
class ExperimentMetrics:
    exposures: Counter
    conversions: Counter
    forced_exposures: Counter
    forced_conversions: Counter
    segment_exposures: Counter
    segment_conversions: Counter
    sums: dict[str, Counter]
    """VALUE_SUM, VALUE_SUM_SQUARES, COVARIATE_SUM, COVARIATE_SUM_SQUARES, VALUE_COVARIATE_PRODUCTS → counter."""


_lock = threading.Lock()
_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, ExperimentMetrics] = weakref.WeakKeyDictionary()


def metrics_for(registry: CollectorRegistry | None = None) -> ExperimentMetrics:
    """The counters registered in ``registry`` (default: the global one), created once per registry,
    so several ``Experiments`` clients can share a registry."""
    target = REGISTRY if registry is None else registry
    with _lock:
        metrics = _by_registry.get(target)
        if metrics is None:
            metrics = ExperimentMetrics(
                exposures=Counter(
                    EXPOSURES,
                    "Users shown an experiment branch (Experiments.expose).",
                    ("experiment", "branch"),
                    registry=target,
                ),
                conversions=Counter(
                    CONVERSIONS,
                    "Conversions attributed to an experiment branch (Experiments.convert).",
                    ("experiment", "branch"),
                    registry=target,
                ),
                forced_exposures=Counter(
                    FORCED_EXPOSURES,
                    "Forced users (QA) shown a branch; kept out of the analysis.",
                    ("experiment", "branch"),
                    registry=target,
                ),
                forced_conversions=Counter(
                    FORCED_CONVERSIONS,
                    "Conversions of forced users (QA); kept out of the analysis.",
                    ("experiment", "branch"),
                    registry=target,
                ),
                segment_exposures=Counter(
                    SEGMENT_EXPOSURES,
                    "Users shown a branch, by segment (Experiments.expose segments=...).",
                    ("experiment", "branch", "dimension", "segment"),
                    registry=target,
                ),
                segment_conversions=Counter(
                    SEGMENT_CONVERSIONS,
                    "Conversions by segment (Experiments.convert segments=...).",
                    ("experiment", "branch", "dimension", "segment"),
                    registry=target,
                ),
                sums={
                    name: Counter(name, doc, ("experiment", "branch"), registry=target)
                    for name, doc in (
                        (VALUE_SUM, "Sum of a continuous metric over exposed users (Experiments.record)."),
                        (VALUE_SUM_SQUARES, "Sum of squares of the metric (Experiments.record)."),
                        (COVARIATE_SUM, "Sum of the pre-period covariate, for CUPED (Experiments.record)."),
                        (COVARIATE_SUM_SQUARES, "Sum of squares of the covariate, for CUPED."),
                        (VALUE_COVARIATE_PRODUCTS, "Sum of metric x covariate products, for CUPED."),
                    )
                },
            )
            _by_registry[target] = metrics
        return metrics
