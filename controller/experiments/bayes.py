"""Bayesian read-out of a treatment against control: chance to win and expected loss, as gbstats does. Pure.

Priors (documented, fixed):

* **binomial** (conversions / samples): a uniform ``Beta(1, 1)`` prior per branch, so the posterior of
  the rate is ``Beta(1 + conversions, 1 + samples - conversions)``;
* **continuous** (mean, variance, samples): a flat (improper) normal prior, so the posterior of the
  mean is ``N(mean, variance / samples)``.

Read-out (gbstats' ``BinomialBayesianABTest`` / ``GaussianBayesianABTest``):

* the relative effect ``log(m_t) - log(m_c)`` is approximated as normal with the posteriors' log
  moments (Beta: ``ψ(α) - ψ(α+β)``, ``ψ₁(α) - ψ₁(α+β)``; normal: ``log μ``, ``(σ/μ)²``);
* ``chance_to_win = P(effect > 0)``; ``expected`` relative lift ``exp(mean) - 1``; a ``1 - α`` credible
  interval ``exp(quantiles) - 1`` on the relative lift;
* expected loss: ``loss_control = E[max(m_t - m_c, 0)]`` and ``loss_treatment = E[max(m_c - m_t, 0)]``
  in the metric's units, from the exact posteriors (Beta: numerical integration of ``E[max(A, B)]``;
  normal: closed form); ``relative_loss = loss_treatment / mean_t``.

When the log approximation is not usable (a posterior mean ≤ 0, or a normal posterior with more than
``EPSILON`` mass below 0) the result has ``error`` set and no numbers, never NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

__all__ = ["BETA_PRIOR", "EPSILON", "BayesResult", "binomial_bayes", "gaussian_bayes"]

#: Beta prior (α, β) of a conversion rate.
BETA_PRIOR: Final = (1.0, 1.0)
#: Largest posterior mass below zero for which the log approximation is used (gbstats' EPSILON).
EPSILON: Final = 1e-4


@cache
def _scipy() -> Any:
    from scipy import integrate, special, stats

    return integrate, special, stats


@dataclass(frozen=True, slots=True)
class BayesResult:
    chance_to_win: float | None = None
    expected: float | None = None
    """Expected relative lift (``exp(mean) - 1``)."""
    ci: tuple[float, float] | None = None
    """``1 - α`` credible interval on the relative lift."""
    loss_control: float | None = None
    """Expected loss of keeping control: ``E[max(m_t - m_c, 0)]``."""
    loss_treatment: float | None = None
    """Expected loss of shipping the treatment: ``E[max(m_c - m_t, 0)]``."""
    relative_loss: float | None = None
    """``loss_treatment / mean_t``."""
    error: str | None = None


def _readout(
    log_mean_c: float, log_var_c: float, log_mean_t: float, log_var_t: float, alpha: float
) -> tuple[float, float, tuple[float, float]]:
    _, _, st = _scipy()
    mean = log_mean_t - log_mean_c
    sd = math.sqrt(log_var_c + log_var_t)
    if sd == 0:
        return (0.5 if mean == 0 else float(mean > 0)), math.expm1(mean), (math.expm1(mean), math.expm1(mean))
    ctw = float(st.norm.sf(0.0, mean, sd))
    lo, hi = st.norm.ppf([alpha / 2, 1 - alpha / 2], mean, sd)
    return ctw, math.expm1(mean), (math.expm1(float(lo)), math.expm1(float(hi)))


@cache
def _legendre(n: int) -> tuple[Any, Any]:
    import numpy as np

    return tuple(np.polynomial.legendre.leggauss(n))  # type: ignore[return-value]


def _expected_max_beta(a1: float, b1: float, a2: float, b2: float) -> float:
    """``E[max(A, B)]`` for independent ``A ~ Beta(a1, b1)``, ``B ~ Beta(a2, b2)``.

    ``∫ x f_A(x) F_B(x) dx + ∫ x f_B(x) F_A(x) dx``, each by 256-point Gauss–Legendre quadrature over
    the density's mass (mean ± 14 standard deviations, within [0, 1]): ~1e-12 for smooth posteriors,
    a few hundred microseconds.
    """
    _, special, st = _scipy()
    nodes, weights = _legendre(256)

    def part(a: float, b: float, a_other: float, b_other: float) -> float:
        m = a / (a + b)
        s = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
        lo, hi = max(0.0, m - 14 * s), min(1.0, m + 14 * s)
        x = (hi - lo) / 2 * nodes + (hi + lo) / 2
        f = x * st.beta.pdf(x, a, b) * special.betainc(a_other, b_other, x)
        return float((hi - lo) / 2 * (weights * f).sum())

    return part(a1, b1, a2, b2) + part(a2, b2, a1, b1)


def binomial_bayes(conv_c: int, n_c: int, conv_t: int, n_t: int, alpha: float = 0.05) -> BayesResult:
    """Beta-binomial read-out of treatment (conv_t / n_t) against control (conv_c / n_c)."""
    if n_c <= 0 or n_t <= 0:
        return BayesResult(error="insufficient data: a branch has no samples")
    if not (0 <= conv_c <= n_c and 0 <= conv_t <= n_t):
        return BayesResult(error="invalid input: conversions must be between 0 and samples")
    _, special, _ = _scipy()
    a_c, b_c = BETA_PRIOR[0] + conv_c, BETA_PRIOR[1] + n_c - conv_c
    a_t, b_t = BETA_PRIOR[0] + conv_t, BETA_PRIOR[1] + n_t - conv_t
    lm_c = float(special.digamma(a_c) - special.digamma(a_c + b_c))
    lv_c = float(special.polygamma(1, a_c) - special.polygamma(1, a_c + b_c))
    lm_t = float(special.digamma(a_t) - special.digamma(a_t + b_t))
    lv_t = float(special.polygamma(1, a_t) - special.polygamma(1, a_t + b_t))
    ctw, expected, ci = _readout(lm_c, lv_c, lm_t, lv_t, alpha)
    emax = _expected_max_beta(a_c, b_c, a_t, b_t)
    mean_c, mean_t = a_c / (a_c + b_c), a_t / (a_t + b_t)
    loss_control, loss_treatment = max(emax - mean_c, 0.0), max(emax - mean_t, 0.0)
    return BayesResult(
        chance_to_win=ctw,
        expected=expected,
        ci=ci,
        loss_control=loss_control,
        loss_treatment=loss_treatment,
        relative_loss=loss_treatment / (conv_t / n_t) if conv_t > 0 else None,
    )


def gaussian_bayes(
    mean_c: float, var_c: float, n_c: int, mean_t: float, var_t: float, n_t: int, alpha: float = 0.05
) -> BayesResult:
    """Normal read-out of treatment mean against control mean (flat prior)."""
    if n_c <= 0 or n_t <= 0:
        return BayesResult(error="insufficient data: a branch has no samples")
    values = (mean_c, var_c, mean_t, var_t)
    if not all(math.isfinite(v) for v in values) or var_c < 0 or var_t < 0:
        return BayesResult(error="invalid input: means and variances must be finite, variances >= 0")
    if var_c == 0 and var_t == 0:
        return BayesResult(error="insufficient data: zero variance in both branches")
    _, _, st = _scipy()
    sd_c, sd_t = math.sqrt(var_c / n_c), math.sqrt(var_t / n_t)
    if mean_c <= 0 or mean_t <= 0 or max(st.norm.cdf(0, mean_c, sd_c), st.norm.cdf(0, mean_t, sd_t)) > EPSILON:
        return BayesResult(error="log approximation inexact: a branch mean may be zero or negative")
    ctw, expected, ci = _readout(math.log(mean_c), (sd_c / mean_c) ** 2, math.log(mean_t), (sd_t / mean_t) ** 2, alpha)
    d, s = mean_t - mean_c, math.hypot(sd_c, sd_t)
    pdf, cdf = float(st.norm.pdf(d / s)), float(st.norm.cdf(d / s))
    loss_control = s * pdf + d * cdf  # E[max(T - C, 0)]
    loss_treatment = s * pdf - d * (1 - cdf)  # E[max(C - T, 0)]
    return BayesResult(
        chance_to_win=ctw,
        expected=expected,
        ci=ci,
        loss_control=loss_control,
        loss_treatment=loss_treatment,
        relative_loss=loss_treatment / mean_t,
    )
