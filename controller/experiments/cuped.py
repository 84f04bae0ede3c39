"""Continuous metrics from per-branch sufficient statistics, with CUPED variance reduction. Pure.

A branch's metric is given by sums the SDK exports (``Experiments.record``), one value per exposed
user: ``n`` (exposed users), ``Σy`` and ``Σy²`` of the metric, and for CUPED ``Σx``, ``Σx²`` and
``Σxy`` of a pre-period covariate ``x`` (the same metric before the experiment, say). Users exposed
but never recorded count as ``y = x = 0``.

Without a covariate the report compares means ``Σy / n`` with sample variances
``(Σy² - (Σy)² / n) / (n - 1)`` by Welch's t-test (``report.build_report`` on continuous counts).

CUPED (Deng et al. 2013) replaces each user's ``y`` by ``y - θ (x - x̄)`` where ``x̄`` is the mean of
``x`` over all branches and ``θ = Σ_b (n_b - 1) cov_b(x, y) / Σ_b (n_b - 1) var_b(x)`` is pooled
within branches (so a treatment effect on ``y`` does not leak into ``θ``). From the sums::

    mean_adj_b = ȳ_b - θ (x̄_b - x̄)
    var_adj_b  = var_b(y) - 2 θ cov_b(x, y) + θ² var_b(x)

which is exactly the sample mean and variance of the adjusted per-user values; Welch's test then
runs on those. The variance reduction of a comparison is ``1 - Var_adj(Δ) / Var(Δ)`` with
``Var(Δ) = var_c / n_c + var_t / n_t``: the share of the difference's variance CUPED removed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.experiments.report import BranchCounts, Report, build_report, exact

__all__ = ["CupedReport", "SufficientStats", "build_cuped", "cuped_theta"]


@dataclass(frozen=True, slots=True)
class SufficientStats:
    """One branch's sums; the covariate sums are None without CUPED."""

    name: str
    n: int
    sum: float
    sum_squares: float
    x_sum: float | None = None
    x_sum_squares: float | None = None
    xy_sum: float | None = None

    @property
    def has_covariate(self) -> bool:
        return self.x_sum is not None and self.x_sum_squares is not None and self.xy_sum is not None

    def _var(self, s: float, ss: float) -> float:
        return max((ss - s * s / self.n) / (self.n - 1), 0.0)

    @property
    def mean(self) -> float:
        return self.sum / self.n

    @property
    def variance(self) -> float:
        return self._var(self.sum, self.sum_squares)

    @property
    def x_variance(self) -> float:
        assert self.x_sum is not None and self.x_sum_squares is not None
        return self._var(self.x_sum, self.x_sum_squares)

    @property
    def covariance(self) -> float:
        assert self.x_sum is not None and self.xy_sum is not None
        return (self.xy_sum - self.x_sum * self.sum / self.n) / (self.n - 1)

    def problem(self) -> str | None:
        values = [
            self.sum,
            self.sum_squares,
            *(v for v in (self.x_sum, self.x_sum_squares, self.xy_sum) if v is not None),
        ]
        if not all(math.isfinite(v) for v in values):
            return f"branch {self.name!r}: sums must be finite"
        if self.n < 2:
            return f"branch {self.name!r}: needs at least 2 users, got {self.n}"
        return None

    def counts(self) -> BranchCounts:
        """The unadjusted continuous counts (mean, sample variance, n)."""
        if self.n < 2:
            return BranchCounts.continuous(self.name, 0.0, 0.0, max(self.n, 0))
        return BranchCounts.continuous(self.name, self.mean, self.variance, self.n)


@dataclass(frozen=True, slots=True)
class CupedReport:
    theta: float | None
    report: Report | None
    variance_reduction: Mapping[str, float]
    """Per treatment: ``1 - Var_adj(Δ) / Var(Δ)``."""
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "theta": exact(self.theta),
            "report": [] if self.report is None else self.report.to_dict()["report"],
            "varianceReduction": {b: exact(v) for b, v in self.variance_reduction.items()},
            "error": self.error,
        }


def cuped_theta(branches: Sequence[SufficientStats]) -> float | None:
    """``θ`` pooled within branches; None when the covariate does not vary."""
    num = sum((b.n - 1) * b.covariance for b in branches)
    den = sum((b.n - 1) * b.x_variance for b in branches)
    return None if den <= 0 else num / den


def build_cuped(
    branches: Sequence[SufficientStats], weights: Mapping[str, float] | None, alpha: float, control: str
) -> CupedReport:
    """The CUPED-adjusted report (Welch on adjusted means and variances) and variance reductions."""
    problems = [p for p in (b.problem() for b in branches) if p]
    if problems:
        return CupedReport(None, None, {}, "; ".join(problems))
    if not all(b.has_covariate for b in branches):
        return CupedReport(None, None, {}, "no covariate sums: CUPED needs Σx, Σx² and Σxy per branch")
    theta = cuped_theta(branches)
    if theta is None:
        return CupedReport(None, None, {}, "the covariate does not vary: CUPED cannot adjust")
    total_n = sum(b.n for b in branches)
    x_mean = sum(b.x_sum or 0.0 for b in branches) / total_n
    adjusted: list[BranchCounts] = []
    for b in branches:
        assert b.x_sum is not None
        mean = b.mean - theta * (b.x_sum / b.n - x_mean)
        var = max(b.variance - 2 * theta * b.covariance + theta * theta * b.x_variance, 0.0)
        adjusted.append(BranchCounts.continuous(b.name, mean, var, b.n))
    report = build_report(adjusted, weights, alpha, control)
    by_name = {b.name: b for b in branches}
    if control not in by_name:
        return CupedReport(theta, report, {}, f"control branch {control!r} has no sums")
    adj_by_name = {a.name: a for a in adjusted}
    reductions: dict[str, float] = {}
    c, ca = by_name[control], adj_by_name[control]
    for name, b in by_name.items():
        if name == control:
            continue
        a = adj_by_name[name]
        before = c.variance / c.n + b.variance / b.n
        after = (ca.variance or 0.0) / ca.samples + (a.variance or 0.0) / a.samples
        if before > 0:
            reductions[name] = 1 - after / before
    return CupedReport(theta, report, reductions)
