"""What an experiment's report means: keep running, a winner, harm, or closed. Pure.

Rules, in order (the first that applies decides):

1. ``close_on`` set → ``Closed`` on that branch (everyone gets it; nothing left to decide).
2. The report has no comparisons at all (missing control, fewer than two branches) →
   ``InsufficientData``.
3. Some branch has fewer than ``min_samples`` samples → ``Running`` (still collecting).
4. A comparison could not be computed (zero variance, invalid counts) → ``InsufficientData``.
5. A treatment is significantly *worse* than control (p < α, negative lift) → ``Harm`` on the
   most significant such branch; ``close_to`` is the control when ``on_harm``. Harm is decided
   even when the sample ratio is off: closing to the control is always the safe direction.
6. Sample ratio mismatch → ``SampleRatioMismatch``: the assignment is broken, so no winner can be
   trusted; this blocks rule 7.
7. A treatment is significantly *better* (p < α, positive lift) → ``Winner`` on the one with the
   largest relative lift; ``close_to`` is that branch when ``on_winner``.
8. Otherwise → ``NoSignificance``.

With ``engine="bayesian"`` rules 5 and 7 read the Bayesian columns instead of p-values: harm when a
treatment's chance to beat control is below ``1 - chance_to_win``, a winner when it is above
``chance_to_win`` (default 0.95, GrowthBook's); among several, the most harmful is the one with the
lowest chance, the winner the one with the largest relative lift. Rules 1-4 and 6 are the same.

The report's p-values are used as they are (already Holm-adjusted when there are several treatments,
and always-valid when the report was built with ``sequential=True``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from controller.experiments.report import Report, ReportRow

__all__ = ["Decision", "DecisionState", "Engine", "decide"]

Engine = Literal["frequentist", "bayesian"]

DecisionState = Literal[
    "Running", "Winner", "Harm", "NoSignificance", "Closed", "InsufficientData", "SampleRatioMismatch"
]


@dataclass(frozen=True, slots=True)
class Decision:
    state: DecisionState
    branch: str | None
    """The winning, harmful or closed-on branch; None for the other states."""
    reason: str
    close_to: str | None
    """Branch the experiment should now be closed on (auto-close), or None: no action."""

    @property
    def label(self) -> str:
        """``status.decision`` text: "Running", "Winner:enhanced", "Harm:enhanced", "Closed:control"…"""
        if self.branch is not None and self.state in ("Winner", "Harm", "Closed"):
            return f"{self.state}:{self.branch}"
        return self.state


def _fmt_p(p: float) -> str:
    return f"{p:.6f}" if p >= 1e-6 else f"{p:.2e}"


def _describe(row: ReportRow, engine: Engine = "frequentist") -> str:
    if engine == "bayesian":
        ctw = "?" if row.chance_to_win is None else f"{100 * row.chance_to_win:.2f}%"
        lift = "" if row.lift_percent is None else f"{row.lift_percent:+.2f}% "
        return f"{row.branch} {lift}vs control (chance to win {ctw})"
    p = "?" if row.p_value is None else _fmt_p(row.p_value)
    if row.lift_percent is not None:
        return f"{row.branch} {row.lift_percent:+.2f}% vs control (p={p})"
    return f"{row.branch} {row.lift or 0.0:+.5g} vs control (p={p})"


def decide(
    report: Report,
    *,
    min_samples: int,
    alpha: float,
    close_on: str | None,
    on_winner: bool,
    on_harm: bool,
    control: str,
    engine: Engine = "frequentist",
    chance_to_win: float = 0.95,
) -> Decision:
    """Apply the rules in the module docstring to ``report``."""
    if close_on is not None:
        return Decision("Closed", close_on, f"closed on {close_on}: every user gets it", None)
    if report.error is not None:
        return Decision("InsufficientData", None, report.error, None)
    if report.control != control:
        return Decision(
            "InsufficientData",
            None,
            f"report compares against {report.control!r}, expected control {control!r}",
            None,
        )
    short = [row for row in report.rows if row.samples < min_samples]
    if short:
        waiting = ", ".join(f"{row.branch} {row.samples}/{min_samples}" for row in short)
        return Decision("Running", None, f"collecting samples: {waiting}", None)
    if engine == "bayesian":
        broken = [row for row in report.treatments if row.chance_to_win is None]
        if broken:
            return Decision(
                "InsufficientData", None, "; ".join(str(row.error or "no Bayesian read-out") for row in broken), None
            )
        harmful = sorted(
            (r for r in report.treatments if r.chance_to_win is not None and r.chance_to_win < 1 - chance_to_win),
            key=lambda r: r.chance_to_win if r.chance_to_win is not None else 0.0,
        )
        significant = [
            r for r in report.treatments if r.chance_to_win is not None and r.chance_to_win > chance_to_win
        ] + harmful
    else:
        broken = [row for row in report.rows if row.error is not None and row.p_value is None]
        if broken:
            return Decision("InsufficientData", None, "; ".join(str(row.error) for row in broken), None)
        significant = [
            row
            for row in report.treatments
            if row.p_value is not None and row.p_value < alpha and row.lift is not None and row.lift != 0
        ]
        harmful = sorted((row for row in significant if row.lift is not None and row.lift < 0), key=_p)
    if harmful:
        worst = harmful[0]
        reason = f"significantly worse: {_describe(worst, engine)}"
        if not report.srm.ok:
            reason += " (sample ratio mismatch too)"
        return Decision("Harm", worst.branch, reason, control if on_harm else None)
    if not report.srm.ok:
        detail = report.srm.error or (
            f"SRM p={_fmt_p(report.srm.p_value)}" if report.srm.p_value is not None else "SRM failed"
        )
        return Decision("SampleRatioMismatch", None, f"sample ratio mismatch: {detail}", None)
    winners = sorted(
        (row for row in significant if row not in harmful and row.lift is not None and row.lift > 0),
        key=lambda row: -(row.lift_percent if row.lift_percent is not None else 0.0),
    )
    if winners:
        best = winners[0]
        return Decision(
            "Winner",
            best.branch,
            f"significantly better: {_describe(best, engine)}",
            best.branch if on_winner else None,
        )
    if engine == "bayesian":
        return Decision(
            "NoSignificance", None, f"no treatment's chance to beat {control} is past {100 * chance_to_win:g}%", None
        )
    return Decision("NoSignificance", None, f"no treatment differs from {control} at alpha={alpha}", None)


def _p(row: ReportRow) -> float:
    return row.p_value if row.p_value is not None else 1.0
