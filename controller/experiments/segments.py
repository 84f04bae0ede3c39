"""Segments ("buckets") and the balance check per segment dimension. Pure.

The segment queries return one sample per (branch, dimension, segment) — ``sum by (branch, dimension,
segment)`` over the SDK's ``stopline_experiment_segment_*`` counters; a series without a dimension
label is dimension ``segment``. Each segment gets its own report (the same comparisons as the whole
experiment, with its own SRM check), and each dimension a balance check: the chi-square of its
segment × branch table of samples against the weights (``stats.balance_test``). A dimension is
*imbalanced* when that p-value is below the SRM threshold (0.001), like the SRM check itself; the
segments whose own SRM fails are named. Balance is reported, it does not change the decision.

At most ``MAX_SEGMENTS`` segments per dimension are reported (the largest); the balance check uses
them all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from controller.experiments import stats
from controller.experiments.report import DEFAULT_SRM_THRESHOLD, BranchCounts, Report, build_report, exact

__all__ = ["DEFAULT_DIMENSION", "MAX_SEGMENTS", "Balance", "SegmentReport", "build_segments"]

#: Dimension of series that carry a segment label but no dimension label.
DEFAULT_DIMENSION: Final = "segment"
#: Segments reported per dimension (by samples); the balance check counts every segment.
MAX_SEGMENTS: Final = 50

Table = Mapping[tuple[str, ...], float]
"""``{(branch, dimension, segment): value}`` as ``query_table`` returns it."""


@dataclass(frozen=True, slots=True)
class SegmentReport:
    dimension: str
    segment: str
    report: Report

    def to_dict(self) -> dict[str, Any]:
        data = self.report.to_dict()
        return {"dimension": self.dimension, "segment": self.segment, "report": data["report"], "srm": data["srm"]}


@dataclass(frozen=True, slots=True)
class Balance:
    dimension: str
    segments: int
    p_value: float | None = None
    chi_square: float | None = None
    df: int | None = None
    ok: bool = True
    imbalanced: tuple[str, ...] = ()
    """Segments whose own sample ratio fails."""
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "dimension": self.dimension,
            "segments": self.segments,
            "pValue": exact(self.p_value),
            "chiSquare": exact(self.chi_square),
            "df": self.df,
            "ok": self.ok,
            "imbalanced": list(self.imbalanced),
        }


def _cells(exposures: Table, conversions: Table | None) -> dict[str, dict[str, dict[str, tuple[int, int]]]]:
    """dimension → segment → branch → (conversions, samples)."""
    out: dict[str, dict[str, dict[str, tuple[int, int]]]] = {}
    for key, value in exposures.items():
        branch, dimension, segment = (*key, "", "")[:3]
        if not segment:
            continue
        dimension = dimension or DEFAULT_DIMENSION
        n = round(value)
        c = round((conversions or {}).get(key, 0.0))
        out.setdefault(dimension, {}).setdefault(segment, {})[branch] = (min(c, n), n)
    return out


def build_segments(
    branches: Sequence[str],
    weights: Mapping[str, float],
    exposures: Table,
    conversions: Table | None,
    *,
    alpha: float,
    control: str,
    srm_threshold: float = DEFAULT_SRM_THRESHOLD,
) -> tuple[list[SegmentReport], list[Balance]]:
    """Per-segment reports (dimension, then segments by samples) and one balance check per dimension.

    ``branches`` is the report order (control first); branches missing in a segment count 0 there.
    Series of branches not in ``branches`` are ignored.
    """
    reports: list[SegmentReport] = []
    balances: list[Balance] = []
    for dimension, segments in sorted(_cells(exposures, conversions).items()):
        by_size = sorted(segments.items(), key=lambda kv: (-sum(n for _, n in kv[1].values()), kv[0]))
        table = [[cells.get(b, (0, 0))[1] for b in branches] for _, cells in by_size]
        result = stats.balance_test(table, [weights[b] for b in branches])
        seg_reports = []
        for segment, cells in by_size:
            counts = [BranchCounts.binomial(b, *cells.get(b, (0, 0))) for b in branches]
            report = build_report(counts, weights, alpha, control, srm_threshold=srm_threshold)
            seg_reports.append(SegmentReport(dimension, segment, report))
        imbalanced = tuple(s.segment for s in seg_reports if s.report.srm.p_value is not None and not s.report.srm.ok)
        ok = result.p_value is None or result.p_value >= srm_threshold
        balances.append(
            Balance(
                dimension=dimension,
                segments=len(by_size),
                p_value=result.p_value,
                chi_square=result.chi2,
                df=result.df,
                ok=ok,
                imbalanced=imbalanced,
                error=result.error,
            )
        )
        reports.extend(seg_reports[:MAX_SEGMENTS])
    return reports, balances
