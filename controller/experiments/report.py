"""The IMVU experiment report: per-branch counts, p-values, significance and lift against control.

``build_report`` is pure. Each treatment is compared with the control:

* binomial branches (conversions / samples on both sides): two-proportion z-test, pooled SE;
* otherwise (mean, variance, samples): Welch's t-test;
* lift: absolute ``mean_t - mean_c`` and relative ``mean_t / mean_c - 1``, with a (1 - α) interval on
  the relative lift (delta method), reported in percent;
* with more than one treatment the p-values are Holm-adjusted across the treatment-vs-control
  comparisons (family-wise error ≤ α), so "p < α" stays a valid per-branch decision rule; the
  intervals are not adjusted;
* ``sequential=True`` replaces the fixed-horizon p-value and interval with the always-valid ones
  (``stats.sequential_test``), for experiments that are watched continuously;
* Bayesian read-out beside it (``bayes``: Beta(1, 1) prior for rates, flat prior for means):
  ``chanceToWin``, ``expectedLoss`` (of shipping the treatment, metric units), ``riskControl`` (of
  keeping control) and a credible interval on the relative lift (``credibleInterval``, percent);
  never adjusted, never sequential;
* sample ratio mismatch: chi-square of samples against the configured weights, failing below
  ``srm_threshold`` (GrowthBook's 0.001). Without weights it is not checked (``pValue`` None,
  ``ok`` true).

``Report.to_dict()`` is the ``status`` shape of the Experiment resource: ``{"report": [row, ...],
"srm": {"pValue", "ok"}}`` where a row has exactly ``branch, samples, conversions, mean, variance,
pValue, significance, lift, liftPercent, ci, chanceToWin, expectedLoss, riskControl,
credibleInterval``; values carry full precision (a p-value of 3e-7 stays 3e-7; the IMVU
p-value is 9.5934e-06, not "1e-05"): this is the machine shape behind ``-o json`` and
``status.report``. Only tables round, when they print. Not-applicable values are None, never NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from controller.experiments import bayes, stats

__all__ = ["DEFAULT_SRM_THRESHOLD", "BranchCounts", "Report", "ReportRow", "SrmSummary", "build_report", "exact"]

#: SRM p-values below this flag a mismatch (GrowthBook's default).
DEFAULT_SRM_THRESHOLD: Final = 0.001


@dataclass(frozen=True, slots=True)
class BranchCounts:
    """What was observed for one branch: binomial (``conversions``) or continuous (mean, variance)."""

    name: str
    samples: int
    conversions: int | None = None
    mean: float | None = None
    """Continuous metric mean; derived from conversions / samples when binomial."""
    variance: float | None = None
    """Continuous metric sample variance; ``p (1 - p)`` when binomial."""

    @classmethod
    def binomial(cls, name: str, conversions: int, samples: int) -> BranchCounts:
        return cls(name=name, samples=samples, conversions=conversions)

    @classmethod
    def continuous(cls, name: str, mean: float, variance: float, samples: int) -> BranchCounts:
        return cls(name=name, samples=samples, mean=mean, variance=variance)

    @property
    def is_binomial(self) -> bool:
        return self.conversions is not None

    def problem(self) -> str | None:
        """Why these counts are unusable, or None."""
        if self.samples < 0:
            return f"branch {self.name!r}: negative sample count"
        if self.conversions is not None:
            if self.conversions < 0 or self.conversions > self.samples:
                return (
                    f"branch {self.name!r}: conversions ({self.conversions}) must be between 0 "
                    f"and samples ({self.samples})"
                )
            return None
        if self.mean is None or self.variance is None:
            return f"branch {self.name!r}: needs conversions, or mean and variance"
        if not (math.isfinite(self.mean) and math.isfinite(self.variance)) or self.variance < 0:
            return f"branch {self.name!r}: mean and variance must be finite, variance >= 0"
        return None

    def moments(self) -> tuple[float, float] | None:
        """(mean, variance), or None without samples or with invalid counts."""
        if self.problem() is not None or self.samples == 0:
            return None
        if self.conversions is not None:
            p = self.conversions / self.samples
            return p, p * (1 - p)
        assert self.mean is not None and self.variance is not None
        return self.mean, self.variance


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One branch of the report; comparison fields are None for the control."""

    branch: str
    samples: int
    conversions: int | None
    mean: float | None
    variance: float | None
    p_value: float | None = None
    significance: float | None = None
    """``100 * (1 - p_value)``."""
    lift: float | None = None
    """Absolute difference of means against control."""
    lift_percent: float | None = None
    ci: tuple[float, float] | None = None
    """(1 - α) interval on the relative lift, in percent."""
    chance_to_win: float | None = None
    """Bayesian: posterior probability that this branch beats control."""
    expected_loss: float | None = None
    """Bayesian: expected loss of shipping this branch, ``E[max(m_c - m_t, 0)]``."""
    risk_control: float | None = None
    """Bayesian: expected loss of keeping control instead, ``E[max(m_t - m_c, 0)]``."""
    credible_interval: tuple[float, float] | None = None
    """Bayesian: (1 - α) credible interval on the relative lift, in percent."""
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "branch": self.branch,
            "samples": self.samples,
            "conversions": self.conversions,
            "mean": exact(self.mean),
            "variance": exact(self.variance),
            "pValue": exact(self.p_value),
            "significance": exact(self.significance),
            "lift": exact(self.lift),
            "liftPercent": exact(self.lift_percent),
            "ci": None if self.ci is None else [exact(self.ci[0]), exact(self.ci[1])],
            "chanceToWin": exact(self.chance_to_win),
            "expectedLoss": exact(self.expected_loss),
            "riskControl": exact(self.risk_control),
            "credibleInterval": None
            if self.credible_interval is None
            else [exact(self.credible_interval[0]), exact(self.credible_interval[1])],
        }


@dataclass(frozen=True, slots=True)
class SrmSummary:
    p_value: float | None = None
    ok: bool = True
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"pValue": exact(self.p_value), "ok": self.ok}


@dataclass(frozen=True, slots=True)
class Report:
    rows: tuple[ReportRow, ...]
    control: str | None
    alpha: float
    srm: SrmSummary = field(default_factory=SrmSummary)
    adjustment: str | None = None
    """"holm" when p-values were adjusted for several treatments."""
    sequential: bool = False
    error: str | None = None
    """Why no comparison could be made at all (e.g. the control branch is missing)."""

    def row(self, branch: str) -> ReportRow:
        for row in self.rows:
            if row.branch == branch:
                return row
        raise KeyError(branch)

    @property
    def treatments(self) -> tuple[ReportRow, ...]:
        return tuple(row for row in self.rows if row.branch != self.control)

    def to_dict(self) -> dict[str, Any]:
        return {"report": [row.to_dict() for row in self.rows], "srm": self.srm.to_dict()}


def exact(value: float | None) -> float | None:
    """A number for machine output: unrounded, None when missing or not finite, never ``-0.0``."""
    if value is None or not math.isfinite(value):
        return None
    return 0.0 if value == 0 else float(value)


def _base_row(counts: BranchCounts) -> ReportRow:
    moments = counts.moments()
    return ReportRow(
        branch=counts.name,
        samples=counts.samples,
        conversions=counts.conversions,
        mean=None if moments is None else moments[0],
        variance=None if moments is None else moments[1],
        error=counts.problem(),
    )


def _compare(
    control: BranchCounts, treatment: BranchCounts, alpha: float, sequential: bool, tuning: float
) -> ReportRow:
    row = _base_row(treatment)
    problem = control.problem() or treatment.problem()
    if problem:
        return _with(row, error=problem)
    mc, mt = control.moments(), treatment.moments()
    if mc is None or mt is None:
        return _with(row, error="insufficient data: a branch has no samples")
    (mean_c, var_c), (mean_t, var_t) = mc, mt
    n_c, n_t = control.samples, treatment.samples
    if control.conversions is not None and treatment.conversions is not None:
        test = stats.two_proportion_ztest(control.conversions, n_c, treatment.conversions, n_t)
        posterior = bayes.binomial_bayes(control.conversions, n_c, treatment.conversions, n_t, alpha)
    else:
        test = stats.welch_ttest(mean_c, var_c, n_c, mean_t, var_t, n_t)
        posterior = bayes.gaussian_bayes(mean_c, var_c, n_c, mean_t, var_t, n_t, alpha)
    lifted = stats.lift(mean_c, var_c, n_c, mean_t, var_t, n_t, alpha=alpha)
    p_value, ci = test.p_value, lifted.relative_ci
    error = test.error or lifted.error
    if sequential and test.error is None and lifted.relative is not None:
        se_rel = math.sqrt(stats.relative_lift_variance(mean_c, var_c, n_c, mean_t, var_t, n_t))
        se_abs = math.sqrt(var_c / n_c + var_t / n_t)
        n_total = n_c + n_t
        seq_p = stats.sequential_test(mean_t - mean_c, se_abs, n_total, alpha=alpha, tuning=tuning)
        seq_ci = stats.sequential_test(lifted.relative, se_rel, n_total, alpha=alpha, tuning=tuning)
        p_value, ci = seq_p.p_value, seq_ci.ci
        error = error or seq_p.error or seq_ci.error
    return _with(
        row,
        p_value=p_value,
        lift=lifted.absolute,
        lift_percent=None if lifted.relative is None else 100 * lifted.relative,
        ci=None if ci is None else (100 * ci[0], 100 * ci[1]),
        error=error,
        chance_to_win=posterior.chance_to_win,
        expected_loss=posterior.loss_treatment,
        risk_control=posterior.loss_control,
        credible_interval=None if posterior.ci is None else (100 * posterior.ci[0], 100 * posterior.ci[1]),
    )


def _with(row: ReportRow, **changes: Any) -> ReportRow:
    values = {name: getattr(row, name) for name in ReportRow.__dataclass_fields__}
    values.update(changes)
    p_value = values["p_value"]
    values["significance"] = None if p_value is None else 100 * (1 - p_value)
    return ReportRow(**values)


def _srm(branches: Sequence[BranchCounts], weights: Mapping[str, float] | None, threshold: float) -> SrmSummary:
    if weights is None:
        return SrmSummary()
    names = [b.name for b in branches]
    missing = [name for name in names if name not in weights]
    unobserved = [name for name in weights if name not in names and weights[name] > 0]
    if missing or unobserved:
        return SrmSummary(
            ok=False,
            error=f"weights and branches differ: no weight for {missing}, no counts for {unobserved}",
        )
    result = stats.srm_test([b.samples for b in branches], [weights[name] for name in names])
    if result.p_value is None:
        return SrmSummary(error=result.error)
    return SrmSummary(p_value=result.p_value, ok=result.p_value >= threshold)


def build_report(
    branches: Sequence[BranchCounts],
    weights: Mapping[str, float] | None = None,
    alpha: float = 0.05,
    control: str | None = None,
    *,
    srm_threshold: float = DEFAULT_SRM_THRESHOLD,
    sequential: bool = False,
    sequential_tuning: float = stats.DEFAULT_SEQUENTIAL_TUNING,
) -> Report:
    """Compare every branch with ``control`` (default: the first branch).

    Never raises on data: unusable input gives a ``Report`` (or rows) with ``error`` set.
    """
    names = [b.name for b in branches]
    control_name = control if control is not None else (names[0] if names else None)
    srm = _srm(branches, weights, srm_threshold)
    base = tuple(_base_row(b) for b in branches)
    problem: str | None = None
    if len(set(names)) != len(names):
        problem = f"branch names must be unique, got {names}"
    elif len(branches) < 2:
        problem = "need at least two branches to compare"
    elif control_name not in names:
        problem = f"control branch {control_name!r} has no counts"
    elif not (0 < alpha < 1):
        problem = f"alpha must be in (0, 1), got {alpha}"
    if problem is not None:
        return Report(rows=base, control=control_name, alpha=alpha, srm=srm, error=problem)
    control_counts = next(b for b in branches if b.name == control_name)
    rows: list[ReportRow] = []
    for counts, row in zip(branches, base, strict=True):
        if counts.name == control_name:
            rows.append(row)
        else:
            rows.append(_compare(control_counts, counts, alpha, sequential, sequential_tuning))
    adjustment: str | None = None
    if len(branches) > 2:
        adjustment = "holm"
        treatment_index = [i for i, row in enumerate(rows) if row.branch != control_name]
        adjusted = stats.holm([rows[i].p_value for i in treatment_index])
        for i, p_value in zip(treatment_index, adjusted, strict=True):
            rows[i] = _with(rows[i], p_value=p_value)
    return Report(
        rows=tuple(rows),
        control=control_name,
        alpha=alpha,
        srm=srm,
        adjustment=adjustment,
        sequential=sequential,
    )
