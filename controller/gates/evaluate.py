"""Gate verdicts: pure functions over a gate, its pre-push value and a measurement.

One reading gives a per-reading verdict (Pass / Fail / Inconclusive / Error); the limits are applied
in :func:`record` — the only place that decides whether a gate has *tripped* and must stop the push:
``failureLimit`` counts breaches since the last Pass (readings without data neither add to nor clear
the count), ``inconclusiveLimit`` counts consecutive readings without data. Past ``failureLimit`` the
gate has *breached*; past ``inconclusiveLimit`` it is in an *outage* (the Release's ``onInconclusive``
policy decides what that means; the verdict stays Inconclusive).

Delta percent is relative to ``|prePush|`` so a negative baseline still reads naturally. From a
pre-push value of exactly 0 any increase is an infinite increase: it breaches ``maxIncreasePercent``
(and any decrease breaches ``maxDecreasePercent``); ``deltaPercent`` is then left empty.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime

from controller.gates.schedule import ScrapeGrid
from controller.models.common import format_duration
from controller.models.release import Gate, GaugeRow, Verdict

_TEMPLATE = re.compile(r"\{\{\s*(phase|revision|namespace)\s*\}\}")
_ANY_TEMPLATE = re.compile(r"\{\{\s*([^}]*?)\s*\}\}")


@dataclass(frozen=True)
class Measurement:
    """One reading from a metrics provider. ``value`` is None when there was no data."""

    value: float | None
    at: datetime
    error: str | None = None
    invalid_query: bool = False
    scrape: ScrapeGrid | None = None  # when new samples of the query's series land, as learned so far

    @property
    def usable(self) -> bool:
        """True when the value is a finite number."""
        return self.error is None and self.value is not None and math.isfinite(self.value)


@dataclass(frozen=True)
class Judgement:
    """The verdict of one reading."""

    verdict: Verdict
    message: str
    delta: float | None = None
    delta_percent: float | None = None
    # Inconclusive because the check is still under way (a smoke-test Job running, every pod still
    # starting, a compare gate still collecting its first samples), not because data is missing: it
    # neither adds to nor resets the count ``inconclusiveLimit`` applies to.
    pending: bool = False


def render_query(query: str, *, phase: str, revision: str, namespace: str) -> str:
    """Fill ``{{ phase }}``, ``{{ revision }}`` and ``{{ namespace }}``; reject any other placeholder."""
    values = {"phase": phase, "revision": revision, "namespace": namespace}
    unknown = [m for m in _ANY_TEMPLATE.findall(query) if m not in values]
    if unknown:
        raise ValueError(f"unknown template variable(s) in query: {', '.join(sorted(set(unknown)))}")
    return _TEMPLATE.sub(lambda m: values[m.group(1)], query)


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def threshold_text(gate: Gate) -> str:
    """The bounds as the gauges table shows them, e.g. ``>6 or >+25%``, ``restarts>0 or notReady>0 or
    CrashLoopBackOff|OOMKilled|…``, ``job not Complete in 5m``, ``status not 2xx or >250``."""
    if gate.experiment is not None:
        return f"experiment {gate.experiment.name}: {gate.experiment.fail_on}"
    if gate.kubernetes is not None:
        k = gate.kubernetes
        parts = [f"restarts>{k.max_restarts}", f"notReady>{k.max_not_ready}"]
        if k.fail_on_reasons:
            shown = "|".join(k.fail_on_reasons[:3]) + ("|…" if len(k.fail_on_reasons) > 3 else "")
            parts.append(shown)
        return " or ".join(parts)
    if gate.job is not None:
        return f"job not Complete in {format_duration(gate.job.timeout)}"
    if gate.http is not None:
        codes = ",".join(str(c) for c in gate.http.expect_status) if gate.http.expect_status else "2xx"
        head = f"status not {codes}"
        bounds = _bounds_text(gate)
        return f"{head} or {gate.http.field} {bounds}" if bounds else head
    return _bounds_text(gate)


def _bounds_text(gate: Gate) -> str:
    parts: list[str] = []
    if gate.max is not None:
        parts.append(f">{_fmt(gate.max)}")
    if gate.min is not None:
        parts.append(f"<{_fmt(gate.min)}")
    if gate.max_increase_percent is not None:
        parts.append(f">+{_fmt(gate.max_increase_percent)}%")
    if gate.max_decrease_percent is not None:
        parts.append(f"<-{_fmt(gate.max_decrease_percent)}%")
    return " or ".join(parts)


def deltas(pre: float | None, post: float) -> tuple[float | None, float | None]:
    """``(delta, delta percent)`` of post against pre; percent is None when pre is 0 and post is not."""
    if pre is None or not math.isfinite(pre):
        return None, None
    delta = post - pre
    if pre == 0:
        return delta, (0.0 if delta == 0 else None)
    return delta, delta / abs(pre) * 100.0


def judge(gate: Gate, pre: float | None, measurement: Measurement) -> Judgement:
    """The verdict of a single reading of a query gate against its bounds."""
    if measurement.invalid_query:
        return Judgement("Error", f"query rejected: {measurement.error}")
    if measurement.error is not None:
        return Judgement("Inconclusive", f"no reading: {measurement.error}")
    value = measurement.value
    if value is None:
        return Judgement("Inconclusive", "no data")
    if not math.isfinite(value):
        return Judgement("Inconclusive", f"value is {value}")
    delta, pct = deltas(pre, value)
    breaches: list[str] = []
    if gate.max is not None and value > gate.max:
        breaches.append(f"{value:.2f} > {_fmt(gate.max)}")
    if gate.min is not None and value < gate.min:
        breaches.append(f"{value:.2f} < {_fmt(gate.min)}")
    relative = gate.max_increase_percent is not None or gate.max_decrease_percent is not None
    if relative and delta is None:
        if not (gate.max is not None or gate.min is not None):
            return Judgement("Inconclusive", "no pre-push value to compare with")
    elif delta is not None:
        up, down = gate.max_increase_percent, gate.max_decrease_percent
        if up is not None and delta > 0 and (pct is None or pct > up):
            shown = "+inf" if pct is None else f"+{pct:.2f}"
            breaches.append(f"{shown}% > +{_fmt(up)}% (pre-push {pre:.2f})")
        if down is not None and delta < 0 and (pct is None or -pct > down):
            shown = "-inf" if pct is None else f"{pct:.2f}"
            breaches.append(f"{shown}% < -{_fmt(down)}% (pre-push {pre:.2f})")
    if breaches:
        return Judgement("Fail", "; ".join(breaches), delta, pct)
    return Judgement("Pass", f"{value:.2f} within {_bounds_text(gate)}", delta, pct)


def judge_experiment(gate: Gate, decision: str | None, srm_ok: bool | None) -> Judgement:
    """The verdict of an experiment gate from the Experiment's decision and SRM check."""
    assert gate.experiment is not None
    if decision is None:
        return Judgement("Inconclusive", f"experiment {gate.experiment.name} has no report yet")
    fail_on = gate.experiment.fail_on
    reasons: list[str] = []
    if decision.startswith("Harm:") and fail_on in ("harm", "harmOrSrm"):
        reasons.append(decision)
    if srm_ok is False and fail_on in ("srm", "harmOrSrm"):
        reasons.append("sample ratio mismatch")
    if reasons:
        return Judgement("Fail", f"experiment {gate.experiment.name}: {'; '.join(reasons)}")
    return Judgement("Pass", f"experiment {gate.experiment.name}: {decision}")


def breached(gate: Gate, row: GaugeRow) -> bool:
    """Whether the gate's breaches are past ``failureLimit``: what the push did is bad."""
    return not gate.dry_run and row.breaches > gate.failure_limit


def outage(gate: Gate, row: GaugeRow) -> bool:
    """Whether the gate has had no conclusive reading more than ``inconclusiveLimit`` times in a row.

    That says nothing about the push, only that its effect cannot be judged: what happens then is the
    Release's ``onInconclusive`` policy (pause by default), never a plain gate failure.
    """
    return not gate.dry_run and row.inconclusive > gate.inconclusive_limit


def tripped(gate: Gate, row: GaugeRow) -> bool:
    """Whether the gate's consecutive breaches or inconclusive readings are past their limits."""
    return breached(gate, row) or outage(gate, row)


def new_row(gate: Gate, phase: str, pre: float | None) -> GaugeRow:
    """An empty gauges row for a gate in a phase, with its pre-push value."""
    return GaugeRow(
        gate=gate.name, phase=phase, kind=gate.kind, pre_push=pre, threshold=threshold_text(gate), dry_run=gate.dry_run
    )


def record(gate: Gate, row: GaugeRow, measurement_value: float | None, judgement: Judgement, at: datetime) -> GaugeRow:
    """Fold one reading into the gauges row: counters, latest values, verdict and message."""
    # A reading without data neither confirms nor clears a breach: only a Pass resets the count, so a
    # metric that flaps between breaching and missing cannot slip past failureLimit.
    breaches = {"Fail": row.breaches + 1, "Pass": 0}.get(judgement.verdict, row.breaches)
    if judgement.pending:
        inconclusive = row.inconclusive
    else:
        inconclusive = row.inconclusive + 1 if judgement.verdict in ("Inconclusive", "Error") else 0
    verdict: Verdict = judgement.verdict
    message = judgement.message
    if judgement.verdict == "Fail" and breaches <= gate.failure_limit:
        message = f"{message} (breach {breaches} of {gate.failure_limit} tolerated)"
    if inconclusive and inconclusive > gate.inconclusive_limit:
        message = f"{message}: inconclusive {inconclusive} times in a row (limit {gate.inconclusive_limit})"
    if gate.dry_run and verdict == "Fail":
        message = f"{message} [dry run: not acted on]"
    post = measurement_value if measurement_value is not None and math.isfinite(measurement_value) else row.post_push
    return row.model_copy(
        update={
            "post_push": post,
            "delta": judgement.delta if judgement.delta is not None else row.delta,
            "delta_percent": judgement.delta_percent if judgement.delta is not None else row.delta_percent,
            "verdict": verdict,
            "breaches": breaches,
            "inconclusive": inconclusive,
            "readings": row.readings + 1,
            "message": message,
            "at": at,
        }
    )
