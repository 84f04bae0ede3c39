"""Statistics for A/B experiments: pure functions over counts, no I/O.

Every test returns a frozen dataclass whose ``error`` is a sentence when the input cannot support
the computation (no samples, one sample, zero variance, invalid counts); the numeric fields are
then None. Nothing here returns NaN or raises on degenerate data (the gbstats convention).

Conventions
-----------
* "a" is the control, "b" the treatment; differences and lifts are ``b - a``.
* Binomial variance is ``p (1 - p)`` (the population variance of a 0/1 metric, as the IMVU report
  prints it). Continuous variances are sample variances supplied by the caller.
* Fixed-horizon tests: the two-proportion z-test uses the pooled proportion for its standard error
  (the statistic under H0); Welch's t-test uses the unpooled standard error and Welch–Satterthwaite
  degrees of freedom. Confidence intervals are Wald intervals with the unpooled standard error; the
  relative lift ``b / a - 1`` uses the delta method:
  ``Var(b̄/ā) ≈ v_b/(n_b ā²) + b̄² v_a/(n_a ā⁴)``.
* Sequential (always-valid) inference, for looking at results as they arrive: the normal-mixture
  sequential probability ratio test (mSPRT; Johari et al., "Always Valid Inference", 2017 — what
  Optimizely uses), with the mixture variance chosen as GrowthBook does (Howard et al. 2021 /
  Waudby-Smith et al., "Time-uniform central limit theory", eqs. 9 and 161). For an estimate with
  standard error ``se``, ``z = estimate / se``, total sample size ``N`` and tuning parameter ``N*``
  (the sample size at which the boundary is tightest; GrowthBook's default 5000)::

      ρ²   = (-2 ln α + ln(1 - 2 ln α)) / N*
      p_N  = min(1, sqrt(1 + N ρ²) · exp(-z² · N ρ² / (2 (1 + N ρ²))))
      half = se · sqrt(2 (1 + N ρ²) / (N ρ²) · ln(sqrt(1 + N ρ²) / α))

  ``p_N = 1 / Λ_N`` where ``Λ_N`` is the likelihood ratio of a N(0, τ²) mixture over the effect
  against no effect, with ``τ² = ρ² · se² · N``. Stopping the first time ``p_N < α`` keeps the
  false-positive rate at most α however often one looks (Ville's inequality); the running minimum
  of ``p_N`` over looks is the monotone always-valid p-value.
* Multiple comparisons: Holm (family-wise error) and Benjamini–Hochberg (false discovery rate).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final


def _scipy() -> Any:
    """scipy.stats, imported on first use: the CLI and SDK start fast when no test is computed."""
    from scipy import stats

    return stats


__all__ = [
    "DEFAULT_SEQUENTIAL_TUNING",
    "MIN_SAMPLES",
    "LiftResult",
    "SequentialResult",
    "SrmResult",
    "TestResult",
    "balance_test",
    "benjamini_hochberg",
    "binomial_variance",
    "holm",
    "lift",
    "relative_lift_variance",
    "sequential_rho",
    "sequential_test",
    "srm_test",
    "two_proportion_ztest",
    "welch_ttest",
]

#: Fewest samples per branch for any test; below it the result is "insufficient data".
MIN_SAMPLES: Final = 2

#: GrowthBook's default sequential tuning parameter (N*).
DEFAULT_SEQUENTIAL_TUNING: Final = 5000.0


@dataclass(frozen=True, slots=True)
class TestResult:
    """A two-sided hypothesis test of "no difference"."""

    statistic: float | None = None
    p_value: float | None = None
    df: float | None = None
    """Degrees of freedom (Welch); None for z-tests."""
    error: str | None = None

    __test__ = False  # not a pytest class


@dataclass(frozen=True, slots=True)
class LiftResult:
    """Absolute (``b - a``) and relative (``b / a - 1``) lift with (1 - α) confidence intervals."""

    absolute: float | None = None
    absolute_ci: tuple[float, float] | None = None
    relative: float | None = None
    relative_ci: tuple[float, float] | None = None
    error: str | None = None
    """Set when any part could not be computed; the parts that could are still filled in."""


@dataclass(frozen=True, slots=True)
class SrmResult:
    """Sample-ratio-mismatch chi-square test of observed counts against configured weights."""

    chi2: float | None = None
    p_value: float | None = None
    df: int | None = None
    expected: tuple[float, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SequentialResult:
    """Always-valid p-value and confidence-sequence interval for one estimate at one look."""

    p_value: float | None = None
    ci: tuple[float, float] | None = None
    rho: float | None = None
    error: str | None = None


def _finite(*values: float) -> bool:
    return all(isinstance(v, int | float) and math.isfinite(v) for v in values)


def _two_sided(statistic: float, df: float | None = None) -> float:
    if df is None:
        return float(min(1.0, 2.0 * _scipy().norm.sf(abs(statistic))))
    return float(min(1.0, 2.0 * _scipy().t.sf(abs(statistic), df)))


def _z_critical(alpha: float) -> float:
    return float(_scipy().norm.isf(alpha / 2))


def _check_alpha(alpha: float) -> str | None:
    if not (_finite(alpha) and 0 < alpha < 1):
        return f"invalid input: alpha must be in (0, 1), got {alpha}"
    return None


def _check_counts(conversions: int, samples: int, label: str) -> str | None:
    if samples < 0 or conversions < 0:
        return f"invalid input: negative count in {label}"
    if conversions > samples:
        return f"invalid input: {label} has more conversions ({conversions}) than samples ({samples})"
    if samples < MIN_SAMPLES:
        return f"insufficient data: {label} has {samples} samples, need at least {MIN_SAMPLES}"
    return None


def _check_moments(mean: float, variance: float, n: int, label: str) -> str | None:
    if not _finite(mean, variance):
        return f"invalid input: {label} mean and variance must be finite numbers"
    if variance < 0 or n < 0:
        return f"invalid input: {label} has a negative variance or sample count"
    if n < MIN_SAMPLES:
        return f"insufficient data: {label} has {n} samples, need at least {MIN_SAMPLES}"
    return None


def binomial_variance(conversions: int, samples: int) -> float | None:
    """``p (1 - p)`` of a conversion rate; None without samples."""
    if samples <= 0:
        return None
    p = conversions / samples
    return p * (1 - p)


def two_proportion_ztest(conversions_a: int, samples_a: int, conversions_b: int, samples_b: int) -> TestResult:
    """Two-sided z-test of equal conversion rates, standard error from the pooled proportion."""
    problem = _check_counts(conversions_a, samples_a, "control") or _check_counts(conversions_b, samples_b, "treatment")
    if problem:
        return TestResult(error=problem)
    pooled = (conversions_a + conversions_b) / (samples_a + samples_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / samples_a + 1 / samples_b))
    if se == 0:
        return TestResult(error="insufficient data: zero variance (every sample converted, or none did)")
    z = (conversions_b / samples_b - conversions_a / samples_a) / se
    return TestResult(statistic=z, p_value=_two_sided(z))


def welch_ttest(mean_a: float, variance_a: float, n_a: int, mean_b: float, variance_b: float, n_b: int) -> TestResult:
    """Two-sided Welch t-test from summary statistics (sample variances)."""
    problem = _check_moments(mean_a, variance_a, n_a, "control") or _check_moments(mean_b, variance_b, n_b, "treatment")
    if problem:
        return TestResult(error=problem)
    va, vb = variance_a / n_a, variance_b / n_b
    se2 = va + vb
    if se2 <= 0:
        return TestResult(error="insufficient data: zero variance in both branches")
    t = (mean_b - mean_a) / math.sqrt(se2)
    if not math.isfinite(t):
        return TestResult(error="insufficient data: variance too small to compare the means")
    # Welch–Satterthwaite, scaled by the larger term so tiny variances cannot underflow to 0/0.
    scale = max(va, vb)
    a, b = va / scale, vb / scale
    df = (a + b) ** 2 / (a * a / (n_a - 1) + b * b / (n_b - 1))
    return TestResult(statistic=t, p_value=_two_sided(t, df), df=df)


def relative_lift_variance(
    mean_a: float, variance_a: float, n_a: int, mean_b: float, variance_b: float, n_b: int
) -> float:
    """Delta-method variance of ``mean_b / mean_a`` (``mean_a`` must be non-zero; may be inf)."""
    ratio = mean_b / mean_a
    return (variance_b / n_b + ratio * ratio * variance_a / n_a) / (mean_a * mean_a)


def lift(
    mean_a: float,
    variance_a: float,
    n_a: int,
    mean_b: float,
    variance_b: float,
    n_b: int,
    *,
    alpha: float = 0.05,
) -> LiftResult:
    """Absolute and relative lift of b over a with Wald / delta-method (1 - α) intervals."""
    problem = (
        _check_alpha(alpha)
        or _check_moments(mean_a, variance_a, n_a, "control")
        or _check_moments(mean_b, variance_b, n_b, "treatment")
    )
    if problem:
        return LiftResult(error=problem)
    z = _z_critical(alpha)
    absolute = mean_b - mean_a
    se = math.sqrt(variance_a / n_a + variance_b / n_b)
    absolute_ci = (absolute - z * se, absolute + z * se)
    if not _finite(absolute, *absolute_ci):
        return LiftResult(error="invalid input: means or variances too large to subtract")
    if mean_a == 0:
        return LiftResult(
            absolute=absolute,
            absolute_ci=absolute_ci,
            error="relative lift undefined: control mean is zero",
        )
    with contextlib.suppress(ZeroDivisionError, OverflowError):
        relative = mean_b / mean_a - 1
        se_rel = math.sqrt(relative_lift_variance(mean_a, variance_a, n_a, mean_b, variance_b, n_b))
        if _finite(relative, se_rel, relative - z * se_rel, relative + z * se_rel):
            return LiftResult(
                absolute=absolute,
                absolute_ci=absolute_ci,
                relative=relative,
                relative_ci=(relative - z * se_rel, relative + z * se_rel),
            )
    return LiftResult(
        absolute=absolute,
        absolute_ci=absolute_ci,
        error="relative lift undefined: control mean too close to zero",
    )


def sequential_rho(alpha: float, tuning: float = DEFAULT_SEQUENTIAL_TUNING) -> float:
    """Mixture scale ρ that makes the boundary tightest at ``tuning`` samples (see module doc)."""
    log_alpha = math.log(alpha)
    return math.sqrt((-2 * log_alpha + math.log(1 - 2 * log_alpha)) / tuning)


def sequential_test(
    estimate: float,
    standard_error: float,
    n: int,
    *,
    alpha: float = 0.05,
    tuning: float = DEFAULT_SEQUENTIAL_TUNING,
) -> SequentialResult:
    """Always-valid two-sided p-value and confidence-sequence interval for ``estimate``.

    ``standard_error`` is the estimate's standard error now, ``n`` the total samples it is based
    on (both branches), ``tuning`` the sample size N* where the interval is tightest.
    """
    problem = _check_alpha(alpha)
    if problem:
        return SequentialResult(error=problem)
    if not (_finite(estimate, standard_error, tuning) and tuning > 0):
        return SequentialResult(error="invalid input: estimate, standard error and tuning must be finite")
    if n < 2 * MIN_SAMPLES:
        return SequentialResult(error=f"insufficient data: {n} samples, need at least {2 * MIN_SAMPLES}")
    if standard_error <= 0:
        return SequentialResult(error="insufficient data: zero variance")
    rho = sequential_rho(alpha, tuning)
    n_rho2 = n * rho * rho
    z = estimate / standard_error
    shrink = n_rho2 / (2 * (1 + n_rho2))
    log_p = 0.5 * math.log1p(n_rho2) - z * z * shrink  # z * z overflows to inf, not an exception
    p_value = min(1.0, math.exp(min(log_p, 0.0)))
    half = standard_error * math.sqrt((0.5 * math.log1p(n_rho2) - math.log(alpha)) / shrink)
    ci = (estimate - half, estimate + half)
    if not _finite(p_value, *ci):
        return SequentialResult(error="invalid input: values out of floating-point range")
    return SequentialResult(p_value=p_value, ci=ci, rho=rho)


def srm_test(observed: Sequence[int], weights: Sequence[float]) -> SrmResult:
    """Chi-square goodness of fit of ``observed`` samples per branch to the configured ``weights``.

    Weights are normalised; a branch with zero weight must have zero samples (else p = 0) and is
    then left out of the test.
    """
    if len(observed) != len(weights) or len(observed) < 2:
        return SrmResult(error="invalid input: need one weight per branch and at least two branches")
    if any(o < 0 for o in observed) or not _finite(*weights) or any(w < 0 for w in weights):
        return SrmResult(error="invalid input: negative sample count or weight")
    total_weight = sum(weights)
    total = sum(observed)
    if total_weight <= 0:
        return SrmResult(error="invalid input: weights sum to zero")
    if total == 0:
        return SrmResult(error="insufficient data: no samples")
    expected = tuple(total * w / total_weight for w in weights)
    pairs = [(o, e) for o, e in zip(observed, expected, strict=True) if e > 0]
    if any(o > 0 and e == 0 for o, e in zip(observed, expected, strict=True)):
        return SrmResult(chi2=math.inf, p_value=0.0, df=len(pairs) - 1, expected=expected)
    if len(pairs) < 2:
        return SrmResult(error="insufficient data: fewer than two branches with non-zero weight")
    chi2 = sum((o - e) ** 2 / e for o, e in pairs)
    df = len(pairs) - 1
    return SrmResult(chi2=chi2, p_value=float(_scipy().chi2.sf(chi2, df)), df=df, expected=expected)


def balance_test(table: Sequence[Sequence[int]], weights: Sequence[float]) -> SrmResult:
    """Balance of a segment dimension: chi-square of the segment × branch ``table`` against ``weights``.

    Row *s* holds the samples of segment *s* per branch (in ``weights`` order). Under correct
    assignment every segment splits by the weights, so the expected count of a cell is
    ``N_s * w_b / Σw``; the statistic is ``Σ (O - E)² / E`` over cells with ``E > 0`` and the degrees
    of freedom ``Σ_s (branches with weight > 0 - 1)`` over segments with samples — the per-segment SRM
    statistics pooled. A sample in a zero-weight branch gives p = 0. ``expected`` is flattened row
    by row.
    """
    if not table or any(len(row) != len(weights) for row in table) or len(weights) < 2:
        return SrmResult(error="invalid input: need one count per branch in every segment, two branches or more")
    if any(o < 0 for row in table for o in row) or not _finite(*weights) or any(w < 0 for w in weights):
        return SrmResult(error="invalid input: negative sample count or weight")
    total_weight = sum(weights)
    if total_weight <= 0:
        return SrmResult(error="invalid input: weights sum to zero")
    live = sum(1 for w in weights if w > 0)
    chi2, df, impossible = 0.0, 0, False
    expected: list[float] = []
    for row in table:
        n = sum(row)
        cells = [(o, n * w / total_weight) for o, w in zip(row, weights, strict=True)]
        expected.extend(e for _, e in cells)
        if n == 0:
            continue
        impossible = impossible or any(o > 0 and e == 0 for o, e in cells)
        chi2 += sum((o - e) ** 2 / e for o, e in cells if e > 0)
        df += live - 1
    if impossible:
        return SrmResult(chi2=math.inf, p_value=0.0, df=df, expected=tuple(expected))
    if df == 0:
        return SrmResult(error="insufficient data: no segment with samples in two weighted branches")
    return SrmResult(chi2=chi2, p_value=float(_scipy().chi2.sf(chi2, df)), df=df, expected=tuple(expected))


def _validated(p_values: Sequence[float | None]) -> list[tuple[int, float]]:
    present: list[tuple[int, float]] = []
    for index, p in enumerate(p_values):
        if p is None:
            continue
        if not (_finite(p) and 0 <= p <= 1):
            raise ValueError(f"p-value #{index} must be in [0, 1], got {p}")
        present.append((index, p))
    return present


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm step-down adjusted p-values (controls the family-wise error rate).

    None entries (comparisons that could not be computed) stay None and do not count as tests.
    """
    present = sorted(_validated(p_values), key=lambda item: item[1])
    m = len(present)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (index, p) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted


def benjamini_hochberg(p_values: Sequence[float | None]) -> list[float | None]:
    """Benjamini–Hochberg step-up adjusted p-values (controls the false discovery rate).

    None entries stay None and do not count as tests.
    """
    present = sorted(_validated(p_values), key=lambda item: item[1])
    m = len(present)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 1.0
    for rank in range(m - 1, -1, -1):
        index, p = present[rank]
        running = min(running, m * p / (rank + 1))
        adjusted[index] = running
    return adjusted
