"""Regenerate mannwhitney_reference.json: Mann-Whitney U reference values from scipy, never from our code.

    .venv/bin/python tests/unit/vectors/make_mannwhitney_vectors.py

Inputs are drawn once with numpy (seeded) and stored rounded in the JSON, so the test reads the exact
samples scipy saw. Each case records scipy.stats.mannwhitneyu(canary, baseline, alternative=..., method="auto")
(exact for small samples without ties, else the normal approximation with tie and continuity
correction). The exact small case is cross-checked here by enumerating every split of the pooled ranks.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import scipy
from scipy.stats import mannwhitneyu

OUT = Path(__file__).with_name("mannwhitney_reference.json")


def draw() -> list[tuple[str, list[float], list[float], str]]:
    rng = np.random.default_rng(20261201)
    r = lambda a: [round(float(x), 3) for x in a]  # noqa: E731
    base = rng.normal(101, 15, 60)
    drift = 40 * np.sin(np.linspace(0, 3, 60))
    return [
        ("shifted", r(rng.normal(212, 25, 60)), r(base), "greater"),
        ("equal", r(rng.normal(100, 15, 60)), r(rng.normal(100, 15, 60)), "two-sided"),
        ("drift-together", r(rng.normal(101, 15, 60) + drift), r(base + drift), "greater"),
        ("small-exact", [3.1, 4.7, 5.2, 6.0, 7.4], [1.2, 2.5, 2.9, 3.3, 4.1, 5.0], "greater"),
        ("decrease", r(rng.normal(80, 10, 25)), r(rng.normal(100, 10, 30)), "less"),
        ("ties", [float(x) for x in rng.integers(0, 4, 30)], [float(x) for x in rng.integers(0, 3, 30)], "two-sided"),
        ("unequal-n", r(rng.normal(110, 20, 12)), r(rng.normal(100, 20, 40)), "greater"),
    ]


def exact_greater(x: list[float], y: list[float]) -> float:
    """P(U >= u_observed) under H0 by enumerating which pooled values belong to x (no ties)."""
    pooled = x + y
    u_obs = sum((a > b) + 0.5 * (a == b) for a in x for b in y)
    hits = total = 0
    for idx in itertools.combinations(range(len(pooled)), len(x)):
        xs = [pooled[i] for i in idx]
        ys = [pooled[i] for i in range(len(pooled)) if i not in idx]
        u = sum((a > b) + 0.5 * (a == b) for a in xs for b in ys)
        hits += u >= u_obs
        total += 1
    return hits / total


def main() -> None:
    cases = []
    for name, canary, baseline, alt in draw():
        res = mannwhitneyu(canary, baseline, alternative=alt, method="auto")
        if name == "small-exact":
            assert abs(exact_greater(canary, baseline) - float(res.pvalue)) < 1e-12
        cases.append(
            {
                "name": name,
                "alternative": alt,
                "canary": canary,
                "baseline": baseline,
                "u": float(res.statistic),
                "p_value": float(res.pvalue),
            }
        )
    out = {
        "_command": ".venv/bin/python tests/unit/vectors/make_mannwhitney_vectors.py",
        "_reference": "scipy.stats.mannwhitneyu(canary, baseline, alternative=alternative, method='auto')",
        "_versions": {"scipy": scipy.__version__, "numpy": np.__version__},
        "cases": cases,
    }
    OUT.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
