"""Experiment reconciliation, the pure part: spec → published config; counts → report, decision, status."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from controller.experiments.cuped import CupedReport, SufficientStats, build_cuped
from controller.experiments.decide import Decision, decide
from controller.experiments.hashing import ExperimentConfig
from controller.experiments.report import BranchCounts, Report, build_report
from controller.experiments.segments import Balance, SegmentReport, build_segments
from controller.models.common import set_condition
from controller.models.experiment import (
    BalanceStatus,
    CupedStatus,
    ExperimentSpec,
    ExperimentStatus,
    ReportRow,
    SegmentReportStatus,
    SrmStatus,
)

Segments = tuple[list[SegmentReport], list[Balance]]

#: ``Closed`` condition reason when ``spec.closeOn`` closed the experiment (removing it reopens).
CLOSED_BY_SPEC = "CloseOn"


def configmap_key(spec: ExperimentSpec) -> str:
    """The key of this experiment in the shared, published ConfigMap (``<key>.json``)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in spec.key)
    return f"{safe}.json"


def published_config(spec: ExperimentSpec, status: ExperimentStatus) -> ExperimentConfig:
    """What the SDK reads. A close decided by the controller (autoClose) counts like ``closeOn``."""
    return ExperimentConfig(
        key=spec.key,
        seed=spec.hash_seed,
        rollout=spec.rollout,
        branches=tuple(spec.branches.items()),
        audience=tuple(spec.audience),
        closed_on=spec.close_on or status.closed_on,
        hash_version=spec.hash_version,
        enabled=True,
        force_users=tuple(spec.force.users.items()),
        force_groups=tuple(spec.force.groups.items()),
    )


def counts_from(
    spec: ExperimentSpec, exposures: Mapping[str, float], conversions: Mapping[str, float] | None
) -> list[BranchCounts]:
    """Per-branch counts from the metric series (missing branches count as 0), control first."""
    order = [spec.control_branch, *[b for b in spec.branches if b != spec.control_branch]]
    out: list[BranchCounts] = []
    for b in order:
        n = round(exposures.get(b, 0.0))
        c = round((conversions or {}).get(b, 0.0))
        out.append(BranchCounts.binomial(b, min(c, n), n))
    return out


def sufficient_stats(
    spec: ExperimentSpec, exposures: Mapping[str, float], sums: Mapping[str, Mapping[str, float]]
) -> list[SufficientStats]:
    """Per-branch sums of ``metric.value`` (n from the exposures), control first; missing count 0."""
    order = [spec.control_branch, *[b for b in spec.branches if b != spec.control_branch]]
    covariate = all(k in sums for k in ("xSum", "xSumSquares", "xySum"))

    def get(key: str, branch: str) -> float:
        return float(sums.get(key, {}).get(branch, 0.0))

    return [
        SufficientStats(
            name=b,
            n=round(exposures.get(b, 0.0)),
            sum=get("sum", b),
            sum_squares=get("sumSquares", b),
            x_sum=get("xSum", b) if covariate else None,
            x_sum_squares=get("xSumSquares", b) if covariate else None,
            xy_sum=get("xySum", b) if covariate else None,
        )
        for b in order
    ]


def evaluate_cuped(
    spec: ExperimentSpec, exposures: Mapping[str, float] | None, sums: Mapping[str, Mapping[str, float]] | None
) -> CupedReport | None:
    """The CUPED comparison when ``metric.value.covariate`` is configured and its sums were read."""
    metric = spec.metric
    if exposures is None or sums is None or metric is None or metric.value is None or metric.value.covariate is None:
        return None
    stats_ = sufficient_stats(spec, exposures, sums)
    return build_cuped(stats_, dict(spec.branches), spec.alpha, spec.control_branch)


def evaluate(
    spec: ExperimentSpec,
    exposures: Mapping[str, float],
    conversions: Mapping[str, float] | None,
    value_sums: Mapping[str, Mapping[str, float]] | None = None,
) -> tuple[Report, Decision]:
    """The report and decision for the current counts.

    With ``metric.value`` the report compares means (Welch); with a covariate too, the decision reads
    the CUPED-adjusted comparison (the unadjusted one stays in ``status.report``).
    """
    control = spec.control_branch
    if value_sums is not None:
        counts = [s.counts() for s in sufficient_stats(spec, exposures, value_sums)]
    else:
        counts = counts_from(spec, exposures, conversions)
    report = build_report(counts, dict(spec.branches), spec.alpha, control)
    cuped = evaluate_cuped(spec, exposures, value_sums)
    judged = cuped.report if cuped is not None and cuped.report is not None and cuped.error is None else report
    decision = decide(
        judged,
        min_samples=spec.min_samples,
        alpha=spec.alpha,
        close_on=spec.close_on,
        on_winner=spec.auto_close.on_winner,
        on_harm=spec.auto_close.on_harm,
        control=control,
        engine=spec.engine,
        chance_to_win=spec.chance_to_win,
    )
    return report, decision


def evaluate_segments(
    spec: ExperimentSpec,
    exposures: Mapping[tuple[str, ...], float] | None,
    conversions: Mapping[tuple[str, ...], float] | None,
) -> Segments:
    """Segment reports and balance checks (empty without segment counts)."""
    if exposures is None:
        return [], []
    control = spec.control_branch
    order = [control, *[b for b in spec.branches if b != control]]
    return build_segments(order, dict(spec.branches), exposures, conversions, alpha=spec.alpha, control=control)


def with_report(
    spec: ExperimentSpec,
    status: ExperimentStatus,
    report: Report,
    decision: Decision,
    now: datetime,
    generation: int | None,
    segments: Segments = ([], []),
    cuped: CupedReport | None = None,
) -> ExperimentStatus:
    """Status carrying the report, SRM check and decision; a first auto-close sets ``closedOn``.

    ``decision`` stays what the data says after an auto-close (``Harm:enhanced`` with ``closedOn:
    control``), so experiment gates (``failOn: harm``) still see the harm; only ``spec.closeOn``
    makes it ``Closed:<branch>``.
    """
    s = status.model_copy(deep=True)
    s.report = [ReportRow.model_validate(r.to_dict()) for r in report.rows]
    s.srm = SrmStatus.model_validate(report.srm.to_dict()) if report.srm is not None else None
    s.cuped = None if cuped is None else CupedStatus.model_validate(cuped.to_dict())
    s.segments = [SegmentReportStatus.model_validate(r.to_dict()) for r in segments[0]]
    s.balance = [BalanceStatus.model_validate(b.to_dict()) for b in segments[1]]
    p_values = [r.p_value for r in report.rows if r.p_value is not None]
    s.p_value = min(p_values) if p_values else None
    _close(spec, s, decision, now, generation)
    s.decision = decision.label
    s.message = decision.reason
    if spec.close_on is None and s.closed_on is not None:
        s.message += f"; closed on {s.closed_on} (autoClose)"
    for b in s.balance:
        if not b.ok:
            where = f" ({', '.join(b.imbalanced)})" if b.imbalanced else ""
            s.message += f"; imbalanced by {b.dimension}{where}"
    s.updated_at = now
    s.observed_generation = generation
    s.conditions = set_condition(
        s.conditions, "ReportAvailable", "True", decision.state, decision.reason, now, generation
    )
    return s


def without_report(
    spec: ExperimentSpec, status: ExperimentStatus, reason: str, now: datetime, generation: int | None
) -> ExperimentStatus:
    """Status when no counts could be read (no metric configured, Prometheus down)."""
    s = status.model_copy(deep=True)
    _close(spec, s, None, now, generation)
    if spec.close_on is not None:
        s.decision = f"Closed:{spec.close_on}"
    elif s.closed_on is None and s.decision.startswith("Closed:"):
        s.decision = "Running"
    s.message = reason
    s.updated_at = now
    s.observed_generation = generation
    s.conditions = set_condition(s.conditions, "ReportAvailable", "False", "NoData", reason, now, generation)
    return s


def _close(
    spec: ExperimentSpec, s: ExperimentStatus, decision: Decision | None, now: datetime, generation: int | None
) -> None:
    """Set ``s.closed_on`` (in place) and the ``Closed`` condition saying who closed it.

    ``spec.closeOn`` wins while it is set; removing it reopens an experiment it closed. An
    auto-close (``decision.close_to``) is sticky: it happens once and stays.
    """
    closed = next((c for c in s.conditions if c.type == "Closed"), None)
    if spec.close_on is not None:
        s.closed_on = spec.close_on
        s.conditions = set_condition(
            s.conditions, "Closed", "True", CLOSED_BY_SPEC, f"spec.closeOn: {spec.close_on}", now, generation
        )
        return
    if s.closed_on is not None and closed is not None and closed.reason == CLOSED_BY_SPEC:
        s.closed_on = None
        s.conditions = set_condition(
            s.conditions, "Closed", "False", "Reopened", "spec.closeOn was removed", now, generation
        )
    if s.closed_on is None and decision is not None and decision.close_to is not None:
        s.closed_on = decision.close_to
        reason = "AutoCloseOnHarm" if decision.state == "Harm" else "AutoCloseOnWinner"
        s.conditions = set_condition(
            s.conditions, "Closed", "True", reason, f"{decision.label}: closed on {decision.close_to}", now, generation
        )
