"""The ``compare`` gate: the pushed pods against the not-yet-pushed baseline pods, judged together. Pure.

Kayenta-style canary analysis without a second deployment: during a phase's hold the same PromQL is
evaluated for two groups of the Release's own workloads at the same time —

* the **canary**: the workloads this phase and the earlier ones pushed (running the new revision),
* the **baseline**: the workloads later phases will push (still running the old revision),

by filling ``{{ workloads }}`` (an anchored alternation of workload names, ``(web-canary|api)``) and
``{{ pods }}`` (one matching their pods' names, from Kubernetes' pod naming — no API read) differently
for each group. Both are read as range queries over the same window: from when the phase became
Available, capped to the last ``window``, one sample per series per ``step``. The samples of each group
are pooled and compared with a Mann-Whitney U test (scipy; one-sided for ``direction: increase`` or
``decrease``, two-sided for ``either``).

The effect is the **relative difference of the medians**, ``(canary − baseline) / |baseline| × 100``
(the median, as the U test, is rank based and robust to the outliers latency series have);
Cliff's delta ``δ = 2U / (n₁n₂) − 1`` (the rank-biserial correlation, in [−1, 1]) is reported too and
can be bounded (``minEffectSize``).

Verdicts:

* **Error** — Prometheus rejected a group's query (or it has an unknown template variable).
* **Inconclusive** — a group could not be read, or has fewer than ``minSamples`` samples (no data yet).
* **Fail** — p < alpha *and* the median moved the bad way by more than the bound (``maxIncreasePercent``
  / ``maxDecreasePercent``, default 0) *and* |δ| ≥ ``minEffectSize`` when set.
* **Pass** — otherwise: no significant difference, or one too small to matter. A shift both groups share
  (diurnal drift) is no difference between them, so it passes where a pre/post delta would fail.

No baseline: nothing is left to compare with in the last phase and the watch window, so a compare gate
does not judge those (``gates_for`` skips it; the model and CEL reject a compare gate that could judge
no other phase). When the later phases turn out to have no workloads at run time, the reading is
Inconclusive with that reason (the Release's inconclusiveLimit / onInconclusive apply).
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from controller.gates.evaluate import Judgement, render_query
from controller.models.release import CompareGate, Gate, PhaseStatus
from controller.release.assign import split_key, workload_keys

Alternative = Literal["greater", "less", "two-sided"]

_GROUP_TEMPLATE = re.compile(r"\{\{\s*(workloads|pods)\s*\}\}")
# Pod names Kubernetes generates: a Deployment's ReplicaSet adds the pod-template-hash and the pod a
# 5-character suffix, both from the "safe" alphabet (no vowels, so no words); a DaemonSet adds the
# suffix; a StatefulSet an ordinal.
_SAFE = "[bcdfghjklmnpqrstvwxz2456789]"
_POD_SUFFIX = {
    "Deployment": f"-{_SAFE}{{1,10}}-{_SAFE}{{5}}",
    "DaemonSet": f"-{_SAFE}{{5}}",
    "StatefulSet": "-[0-9]+",
}


@dataclass(frozen=True)
class Samples:
    """One group's range-query answer: every finite sample of every series, pooled."""

    values: tuple[float, ...] = ()
    series: int = 0
    error: str | None = None
    invalid_query: bool = False


@dataclass(frozen=True)
class CompareReading:
    """Both groups' samples over one window (or why they could not be read)."""

    at: datetime
    canary: Samples | None = None
    baseline: Samples | None = None
    error: str | None = None
    invalid_query: bool = False
    span: float | None = None  # seconds the window covered (since the phase became Available, capped)


@dataclass(frozen=True)
class MannWhitney:
    """A Mann-Whitney U test of canary against baseline; ``error`` instead of NaN for degenerate input."""

    u: float = math.nan
    p_value: float = math.nan
    cliffs_delta: float = math.nan
    n_canary: int = 0
    n_baseline: int = 0
    error: str | None = None


@dataclass(frozen=True)
class CompareJudgement:
    """The verdict of one compare reading, with both groups' summaries for the gauges row."""

    verdict: Literal["Pass", "Fail", "Inconclusive", "Error"]
    message: str
    canary_median: float | None = None
    baseline_median: float | None = None
    delta: float | None = None
    delta_percent: float | None = None
    test: MannWhitney | None = None
    warming: bool = False  # too few samples only because the window is still shorter than minSamples steps


def alternative(direction: str) -> Alternative:
    """The U test's alternative hypothesis for a bad direction (canary *greater* for increase)."""
    return "greater" if direction == "increase" else "less" if direction == "decrease" else "two-sided"


def mann_whitney(canary: Sequence[float], baseline: Sequence[float], alt: Alternative = "two-sided") -> MannWhitney:
    """U of canary (ties count ½), its p-value (scipy's ``method="auto"``: exact for small samples without
    ties, else the normal approximation with tie and continuity correction) and Cliff's delta."""
    n1, n2 = len(canary), len(baseline)
    if n1 == 0 or n2 == 0:
        return MannWhitney(n_canary=n1, n_baseline=n2, error="a group has no samples")
    if any(not math.isfinite(v) for v in (*canary, *baseline)):
        return MannWhitney(n_canary=n1, n_baseline=n2, error="samples must be finite")
    if len(set(canary) | set(baseline)) == 1:  # all equal: no difference at all (scipy's sigma would be 0)
        return MannWhitney(n1 * n2 / 2.0, 1.0, 0.0, n1, n2)
    from scipy.stats import mannwhitneyu  # imported on first use: scipy costs the controller ~60 MiB

    result = mannwhitneyu(list(canary), list(baseline), alternative=alt, method="auto")
    u = float(result.statistic)
    p = float(result.pvalue)
    if not math.isfinite(p):
        return MannWhitney(u, n_canary=n1, n_baseline=n2, error="the test gave no p-value")
    return MannWhitney(u, min(1.0, max(0.0, p)), 2.0 * u / (n1 * n2) - 1.0, n1, n2)


def relative_percent(canary: float, baseline: float) -> float | None:
    """(canary − baseline) relative to |baseline|, in percent; None when baseline is 0 and canary is not."""
    if baseline == 0:
        return 0.0 if canary == 0 else None
    return (canary - baseline) / abs(baseline) * 100.0


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _pct(p: float | None, delta: float) -> str:
    if p is None:
        return "+inf%" if delta > 0 else "-inf%"
    return f"{p:+.1f}%"


def _p(p: float) -> str:
    return f"{p:.2g}" if p < 0.001 else f"{p:.4f}"


def threshold_text(c: CompareGate) -> str:
    """The bound as the gauges table shows it, e.g. ``canary > baseline +10% (p<0.05)``."""
    parts = []
    if c.direction in ("increase", "either"):
        parts.append(f">+{_fmt(c.max_increase_percent or 0.0)}%")
    if c.direction in ("decrease", "either"):
        parts.append(f"<-{_fmt(c.max_decrease_percent or 0.0)}%")
    effect = f", |δ|≥{_fmt(c.min_effect_size)}" if c.min_effect_size is not None else ""
    return f"canary vs baseline median {' or '.join(parts)} (p<{_fmt(c.alpha)}{effect})"


def _worse(c: CompareGate, delta: float, pct: float | None) -> str | None:
    """Why the canary's median moved the bad way beyond the bound, or None."""
    if delta > 0 and c.direction in ("increase", "either"):
        bound = c.max_increase_percent or 0.0
        if pct is None or pct > bound:
            return f"above baseline by more than {_fmt(bound)}%"
    if delta < 0 and c.direction in ("decrease", "either"):
        bound = c.max_decrease_percent or 0.0
        if pct is None or -pct > bound:
            return f"below baseline by more than {_fmt(bound)}%"
    return None


def _read_problem(reading: CompareReading) -> CompareJudgement | None:
    if reading.invalid_query:
        return CompareJudgement("Error", f"query rejected: {reading.error}")
    if reading.error is not None:
        return CompareJudgement("Inconclusive", f"no reading: {reading.error}")
    for name, group in (("canary", reading.canary), ("baseline", reading.baseline)):
        if group is None:
            return CompareJudgement("Inconclusive", f"no reading of the {name}")
        if group.invalid_query:
            return CompareJudgement("Error", f"{name} query rejected: {group.error}")
        if group.error is not None:
            return CompareJudgement("Inconclusive", f"no reading of the {name}: {group.error}")
    return None


def judge_compare(c: CompareGate, reading: CompareReading) -> CompareJudgement:
    """The verdict of one compare reading (see the module docstring)."""
    problem = _read_problem(reading)
    if problem is not None:
        return problem
    assert reading.canary is not None and reading.baseline is not None
    canary, baseline = reading.canary.values, reading.baseline.values
    if len(canary) < c.min_samples or len(baseline) < c.min_samples:
        counts = f"canary n={len(canary)}, baseline n={len(baseline)} (minSamples {c.min_samples})"
        needed = c.min_samples * step_seconds(c)
        if reading.span is not None and reading.span < needed:
            # The phase has not been Available long enough for minSamples steps of one series: expected,
            # so it does not count toward inconclusiveLimit (the hold waits for the first conclusive reading).
            return CompareJudgement(
                "Inconclusive",
                f"collecting samples: {counts}; window {reading.span:.0f}s of the {needed:.0f}s minSamples × step",
                warming=True,
            )
        return CompareJudgement("Inconclusive", f"too few samples: {counts}")
    cm, bm = statistics.median(canary), statistics.median(baseline)
    delta = cm - bm
    pct = relative_percent(cm, bm)
    test = mann_whitney(canary, baseline, alternative(c.direction))
    summary = f"canary median {_fmt(cm)} vs baseline {_fmt(bm)} ({_pct(pct, delta)})"
    if test.error is not None:
        return CompareJudgement("Inconclusive", f"{summary}: {test.error}", cm, bm, delta, pct, test)
    stats = f"U={test.u:.6g}, p={_p(test.p_value)}, δ={test.cliffs_delta:+.2f}, n={test.n_canary}/{test.n_baseline}"
    message = f"{summary}, {stats}"
    worse = _worse(c, delta, pct)
    significant = test.p_value < c.alpha
    large = c.min_effect_size is None or abs(test.cliffs_delta) >= c.min_effect_size
    if significant and worse is not None and large:
        return CompareJudgement("Fail", f"{message}: {worse}, p<{_fmt(c.alpha)}", cm, bm, delta, pct, test)
    if not significant:
        why = f"no significant difference (p≥{_fmt(c.alpha)})"
    elif worse is None:
        why = "difference within the bound"
    else:
        why = f"effect |δ| below {_fmt(c.min_effect_size or 0.0)}"
    return CompareJudgement("Pass", f"{message}: {why}", cm, bm, delta, pct, test)


# ---------------------------------------------------------------- which pods are compared


def groups(phases: Sequence[PhaseStatus], phase: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(canary, baseline) workload keys: pushed by ``phase`` and earlier ones / left for later phases."""
    names = [p.name for p in phases]
    if phase not in names:
        return (), ()
    i = names.index(phase)
    canary = tuple(k for p in phases[: i + 1] for k in workload_keys(p))
    baseline = tuple(k for p in phases[i + 1 :] for k in workload_keys(p))
    return canary, baseline


def _names(keys: Iterable[str]) -> list[str]:
    return sorted({split_key(k)[1] for k in keys})


def _literal(name: str) -> str:
    # names are DNS subdomains: only '.' is special; [.] needs no backslash inside a PromQL string
    return name.replace(".", "[.]")


def workloads_regex(keys: Iterable[str]) -> str:
    """An alternation matching exactly the workloads' names (PromQL regexes are anchored)."""
    return "(" + "|".join(_literal(n) for n in _names(keys)) + ")"


def pods_regex(keys: Iterable[str]) -> str:
    """An alternation matching the names of the workloads' pods (Kubernetes' generated pod names)."""
    parts = sorted(
        {_literal(name) + _POD_SUFFIX.get(kind, _POD_SUFFIX["Deployment"]) for kind, name in map(split_key, keys)}
    )
    return "(" + "|".join(parts) + ")"


def render_compare(query: str, keys: Sequence[str], *, phase: str, revision: str, namespace: str) -> str:
    """The query for one group: ``{{ workloads }}`` and ``{{ pods }}`` from its keys, then the rest.

    Raises ValueError on an unknown template variable (the reading is then an Error)."""
    values = {"workloads": workloads_regex(keys), "pods": pods_regex(keys)}
    filled = _GROUP_TEMPLATE.sub(lambda m: values[m.group(1)], query)
    return render_query(filled, phase=phase, revision=revision, namespace=namespace)


def window(c: CompareGate, phase: PhaseStatus | None, now: datetime) -> tuple[datetime, datetime]:
    """(start, end) of the samples compared: since the phase became Available, at most ``window`` back."""
    since = None if phase is None else phase.available_at or phase.started_at
    start = now - c.window if since is None else max(since, now - c.window)
    return min(start, now), now


def step_seconds(c: CompareGate) -> float:
    """The range-query step in seconds."""
    return max(c.step / timedelta(seconds=1), 0.1)


# ---------------------------------------------------------------- the gauges row


def judged(gate: Gate, reading: CompareReading) -> tuple[Judgement, float | None, dict[str, Any]]:
    """One compare reading as the gauges row takes it: the judgement, postPush (the canary's median) and
    the row's other fields — prePush is the baseline's median at the same time (there is no pre-push
    reading), and the threshold. Readings while the window is still filling are pending."""
    assert gate.compare is not None
    j = judge_compare(gate.compare, reading)
    update: dict[str, Any] = {"threshold": threshold_text(gate.compare)}
    if j.baseline_median is not None:
        update["pre_push"] = j.baseline_median
    return Judgement(j.verdict, j.message, j.delta, j.delta_percent, pending=j.warming), j.canary_median, update
