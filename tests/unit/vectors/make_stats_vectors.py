"""Regenerate stats_reference.json: reference values from statsmodels/scipy, never from our code.

    python -m venv /tmp/vecenv && /tmp/vecenv/bin/pip install statsmodels scipy numpy
    /tmp/vecenv/bin/python tests/unit/vectors/make_stats_vectors.py

statsmodels is only needed here (not a project dependency). The relative-lift intervals use a
numeric-gradient delta method and the sequential values a numerically integrated normal mixture,
both independent of the closed forms in controller/experiments/stats.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import scipy
import statsmodels
from scipy import integrate, optimize
from scipy import stats as sst
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, _zconfint_generic

OUT = Path(__file__).with_name("stats_reference.json")

PROPORTIONS = [  # (conversions_a, samples_a, conversions_b, samples_b, alpha)
    ("imvu", 64630, 148266, 66903, 150702, 0.05),
    ("small", 30, 100, 45, 100, 0.05),
    ("negative", 520, 1000, 470, 1000, 0.05),
    ("rare-events", 5, 2000, 12, 2100, 0.1),
    ("tiny-effect", 10000, 50000, 10080, 50000, 0.01),
]
MEANS = [  # (mean_a, var_a, n_a, mean_b, var_b, n_b, alpha)
    ("imvu-rounded", 0.43591, 0.24589, 148266, 0.44394, 0.24686, 150702, 0.05),
    ("revenue", 12.5, 40.0, 500, 13.4, 55.0, 480, 0.05),
    ("unequal-n", 3.0, 1.0, 10, 2.2, 4.0, 30, 0.05),
    ("two-each", 1.0, 0.5, 2, 2.0, 0.5, 2, 0.05),
    ("negative", 100.0, 900.0, 2000, 97.0, 1000.0, 2100, 0.1),
]
SRM = [  # (observed, weights)
    ("imvu-50-50", [148266, 150702], [0.5, 0.5]),
    ("balanced", [1000, 1012], [0.5, 0.5]),
    ("three-way", [2030, 1985, 4100], [0.25, 0.25, 0.5]),
    ("skewed", [900, 1100], [0.5, 0.5]),
]
PVALUES = [
    ("three", [0.01, 0.04, 0.03]),
    ("five", [0.001, 0.2, 0.012, 0.049, 0.5]),
    ("ties", [0.02, 0.02, 0.9]),
]
SEQUENTIAL = [  # (estimate, standard_error, n, alpha, tuning)
    ("imvu-diff", 66903 / 150702 - 64630 / 148266, None, 298968, 0.05, 5000.0),
    ("early-look", 0.02, 0.015, 800, 0.05, 5000.0),
    ("null", 0.0, 0.01, 10000, 0.05, 5000.0),
    ("strong", -0.05, 0.01, 20000, 0.01, 1000.0),
]


def _relative_delta(ma: float, va: float, na: int, mb: float, vb: float, nb: int) -> tuple[float, float]:
    """Relative lift b/a - 1 and its delta-method variance with a numeric gradient."""

    def g(x: np.ndarray) -> float:
        return float(x[1] / x[0] - 1)

    point = np.array([ma, mb], dtype=float)
    grad = np.zeros(2)
    for i in range(2):
        h = 1e-6 * max(1.0, abs(point[i]))
        up, down = point.copy(), point.copy()
        up[i] += h
        down[i] -= h
        grad[i] = (g(up) - g(down)) / (2 * h)
    cov = np.diag([va / na, vb / nb])
    return g(point), float(grad @ cov @ grad)


def _sample(mean: float, variance: float, n: int) -> np.ndarray:
    """Data with exactly this mean and sample variance (ddof=1), for statsmodels' CompareMeans."""
    e = np.random.default_rng(7).standard_normal(n)
    z = (e - e.mean()) / e.std(ddof=1)
    return mean + math.sqrt(variance) * z


def _log_mixture_lr(estimate: float, se: float, tau2: float) -> float:
    """log ∫ N(est; θ, se²) / N(est; 0, se²) · N(θ; 0, τ²) dθ, numerically (log-sum around the peak)."""
    v = se * se

    def log_integrand(theta: float) -> float:
        return (theta * estimate - theta * theta / 2) / v + float(sst.norm.logpdf(theta, scale=math.sqrt(tau2)))

    precision = 1 / v + 1 / tau2
    peak = (estimate / v) / precision
    spread = 40 / math.sqrt(precision)
    top = log_integrand(peak)
    value, _ = integrate.quad(
        lambda t: math.exp(log_integrand(t) - top), peak - spread, peak + spread, limit=400, epsabs=0, epsrel=1e-12
    )
    return top + math.log(value)


def main() -> None:
    out: dict[str, object] = {
        "_command": "/tmp/vecenv/bin/python tests/unit/vectors/make_stats_vectors.py",
        "_versions": {"statsmodels": statsmodels.__version__, "scipy": scipy.__version__, "numpy": np.__version__},
    }
    rows = []
    for name, ca, na, cb, nb, alpha in PROPORTIONS:
        z, p = proportions_ztest([cb, ca], [nb, na])  # pooled SE (prop_var=False), b - a
        lo, hi = confint_proportions_2indep(cb, nb, ca, na, method="wald", compare="diff", alpha=alpha)
        pa, pb = ca / na, cb / nb
        rel, rel_var = _relative_delta(pa, pa * (1 - pa), na, pb, pb * (1 - pb), nb)
        zc = sst.norm.isf(alpha / 2)
        rows.append(
            {
                "name": name,
                "input": [ca, na, cb, nb, alpha],
                "z": float(z),
                "p_value": float(p),
                "absolute_ci": [float(lo), float(hi)],
                "relative": rel,
                "relative_ci": [rel - zc * math.sqrt(rel_var), rel + zc * math.sqrt(rel_var)],
            }
        )
    out["two_proportion"] = {
        "_command": "statsmodels proportions_ztest([cb, ca], [nb, na]); confint_proportions_2indep(method='wald',"
        " compare='diff'); relative: numeric-gradient delta method",
        "cases": rows,
    }

    rows = []
    for name, ma, va, na, mb, vb, nb, alpha in MEANS:
        res = sst.ttest_ind_from_stats(mb, math.sqrt(vb), nb, ma, math.sqrt(va), na, equal_var=False)
        compare = CompareMeans(DescrStatsW(_sample(mb, vb, nb)), DescrStatsW(_sample(ma, va, na)))
        t_sm, p_sm, dof = compare.ttest_ind(usevar="unequal")
        assert math.isclose(t_sm, res.statistic, rel_tol=1e-9) and math.isclose(p_sm, res.pvalue, rel_tol=1e-6)
        lo, hi = _zconfint_generic(mb - ma, math.sqrt(va / na + vb / nb), alpha, "two-sided")
        rel, rel_var = _relative_delta(ma, va, na, mb, vb, nb)
        zc = sst.norm.isf(alpha / 2)
        rows.append(
            {
                "name": name,
                "input": [ma, va, na, mb, vb, nb, alpha],
                "t": float(res.statistic),
                "p_value": float(res.pvalue),
                "df": float(dof),
                "absolute_ci": [float(lo), float(hi)],
                "relative": rel,
                "relative_ci": [rel - zc * math.sqrt(rel_var), rel + zc * math.sqrt(rel_var)],
            }
        )
    out["welch"] = {
        "_command": "scipy.stats.ttest_ind_from_stats(mb, sqrt(vb), nb, ma, sqrt(va), na, equal_var=False);"
        " cross-checked and df from statsmodels CompareMeans.ttest_ind(usevar='unequal') on data with those"
        " moments; _zconfint_generic for the absolute CI",
        "cases": rows,
    }

    rows = []
    for name, observed, weights in SRM:
        total = sum(observed)
        expected = [total * w / sum(weights) for w in weights]
        res = sst.chisquare(observed, expected)
        rows.append(
            {
                "name": name,
                "observed": observed,
                "weights": weights,
                "chi2": float(res.statistic),
                "p_value": float(res.pvalue),
            }
        )
    out["srm"] = {"_command": "scipy.stats.chisquare(observed, f_exp=total * weights)", "cases": rows}

    rows = []
    for name, pvalues in PVALUES:
        rows.append(
            {
                "name": name,
                "p_values": pvalues,
                "holm": [float(x) for x in multipletests(pvalues, method="holm")[1]],
                "bh": [float(x) for x in multipletests(pvalues, method="fdr_bh")[1]],
            }
        )
    out["adjust"] = {"_command": "statsmodels multipletests(p, method='holm' | 'fdr_bh')[1]", "cases": rows}

    rows = []
    for name, estimate, se, n, alpha, tuning in SEQUENTIAL:
        if se is None:  # the IMVU difference with its unpooled standard error
            pa, pb = 64630 / 148266, 66903 / 150702
            se = math.sqrt(pa * (1 - pa) / 148266 + pb * (1 - pb) / 150702)
        log_a = math.log(alpha)
        rho2 = (-2 * log_a + math.log(1 - 2 * log_a)) / tuning  # GrowthBook's choice of mixture scale
        tau2 = rho2 * se * se * n
        log_lr = _log_mixture_lr(estimate, se, tau2)
        half = optimize.brentq(
            lambda c, se=se, tau2=tau2, alpha=alpha: _log_mixture_lr(c, se, tau2) + math.log(alpha),
            0.0,
            50 * se,
            xtol=1e-15,
            rtol=1e-13,
        )
        rows.append(
            {
                "name": name,
                "input": [estimate, se, n, alpha, tuning],
                "p_value": min(1.0, math.exp(-log_lr)),
                "ci": [estimate - half, estimate + half],
            }
        )
    out["sequential"] = {
        "_command": "normal-mixture likelihood ratio integrated with scipy.integrate.quad; p = min(1, 1/LR);"
        " CI half-width = root of LR(c) = 1/alpha (scipy.optimize.brentq); tau^2 = rho^2 se^2 n,"
        " rho^2 = (-2 ln a + ln(1 - 2 ln a)) / tuning",
        "cases": rows,
    }
    OUT.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
