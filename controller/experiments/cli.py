"""``stopline experiment …``: the IMVU experiment report from the command line.

Mounted by the main CLI as ``main_app.add_typer(app, name="experiment")``. Today ``report`` works
offline from counts given with ``--branch``; the cluster-backed form (``report NAME`` reading an
Experiment's status) can be added as an optional positional argument beside ``--branch``, which
already is optional at the parser level and validated in the command body.
"""

from __future__ import annotations

import json
import math
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from controller.experiments.hashing import WEIGHT_SUM_TOLERANCE
from controller.experiments.report import BranchCounts, Report, ReportRow, build_report

__all__ = ["OutputFormat", "app", "parse_branch", "parse_weights", "render_table"]

app = typer.Typer(
    help="A/B experiments: reports with p-value, significance and lift per branch.",
    no_args_is_help=True,
)


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


@app.callback()
def _experiment() -> None:
    """A/B experiments: reports with p-value, significance and lift per branch."""


def parse_branch(text: str) -> BranchCounts:
    """``NAME=CONVERSIONS/SAMPLES`` (binomial) or ``NAME=MEAN:VARIANCE:N`` (continuous)."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise typer.BadParameter(
            f"{text!r}: expected NAME=CONVERSIONS/SAMPLES or NAME=MEAN:VARIANCE:N", param_hint="--branch"
        )
    if "/" in value:
        conv_text, _, samples_text = value.partition("/")
        try:
            conversions, samples = int(conv_text), int(samples_text)
        except ValueError:
            raise typer.BadParameter(
                f"{text!r}: CONVERSIONS/SAMPLES must be whole numbers", param_hint="--branch"
            ) from None
        if samples < 0 or conversions < 0:
            raise typer.BadParameter(f"{text!r}: counts must not be negative", param_hint="--branch")
        if conversions > samples:
            raise typer.BadParameter(
                f"{text!r}: {conversions} conversions is more than {samples} samples", param_hint="--branch"
            )
        return BranchCounts.binomial(name, conversions, samples)
    parts = value.split(":")
    if len(parts) == 3:
        try:
            mean, variance, n = float(parts[0]), float(parts[1]), int(parts[2])
        except ValueError:
            raise typer.BadParameter(
                f"{text!r}: MEAN:VARIANCE:N must be number:number:whole number", param_hint="--branch"
            ) from None
        if not (math.isfinite(mean) and math.isfinite(variance)) or variance < 0 or n < 0:
            raise typer.BadParameter(
                f"{text!r}: mean and variance must be finite, variance and N not negative",
                param_hint="--branch",
            )
        return BranchCounts.continuous(name, mean, variance, n)
    raise typer.BadParameter(
        f"{text!r}: expected NAME=CONVERSIONS/SAMPLES or NAME=MEAN:VARIANCE:N", param_hint="--branch"
    )


def parse_weights(text: str, branches: list[str]) -> dict[str, float]:
    """``control=0.5,enhanced=0.5``: one weight per branch, summing to 1."""
    weights: dict[str, float] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        try:
            weight = float(value)
        except ValueError:
            weight = math.nan
        if not sep or not name or not math.isfinite(weight) or weight < 0:
            raise typer.BadParameter(f"{item!r}: expected NAME=WEIGHT with WEIGHT >= 0", param_hint="--weights")
        weights[name] = weight
    if sorted(weights) != sorted(branches):
        raise typer.BadParameter(
            f"weights name {sorted(weights)} but the branches are {sorted(branches)}", param_hint="--weights"
        )
    total = sum(weights.values())
    if abs(total - 1) > WEIGHT_SUM_TOLERANCE:
        raise typer.BadParameter(f"weights sum to {total:g}, they must sum to 1", param_hint="--weights")
    return weights


def _p(p: float | None) -> str:
    if p is None:
        return "—"
    return f"{p:.6f}" if p >= 5e-7 else f"{p:.2e}"


def _num(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _ci(row: ReportRow) -> str:
    return "—" if row.ci is None else f"[{row.ci[0]:+.2f}%, {row.ci[1]:+.2f}%]"


def render_table(report: Report) -> Table:
    """The IMVU report as a rich table."""
    confidence = f"{100 * (1 - report.alpha):g}%"
    table = Table(title="Experiment report" + (" (sequential)" if report.sequential else ""))
    for header in ("Branch", "Samples", "Conversions", "Mean", "Variance", "P-value", "Significance"):
        table.add_column(header, justify="left" if header == "Branch" else "right", no_wrap=True)
    table.add_column("Lift %", justify="right", no_wrap=True)
    table.add_column(f"CI {confidence}", justify="right", no_wrap=True)
    for row in report.rows:
        name = row.branch
        if row.branch == report.control and row.branch != "control":
            name += " (control)"
        table.add_row(
            name,
            str(row.samples),
            "—" if row.conversions is None else str(row.conversions),
            _num(row.mean, ".5f"),
            _num(row.variance, ".5f"),
            _p(row.p_value),
            "—" if row.significance is None else f"{row.significance:.4f}%",
            "—" if row.lift_percent is None else f"{row.lift_percent:+.2f}%",
            _ci(row),
        )
    return table


def _notes(report: Report) -> list[str]:
    notes: list[str] = []
    srm = report.srm
    if srm.p_value is not None:
        verdict = "ok" if srm.ok else "MISMATCH: samples do not follow the weights"
        notes.append(f"Sample ratio: p={_p(srm.p_value)} {verdict}")
    elif srm.error:
        notes.append(f"Sample ratio: {srm.error}")
    else:
        notes.append("Sample ratio: not checked (no --weights)")
    if report.adjustment == "holm":
        notes.append(f"P-values Holm-adjusted for {len(report.treatments)} treatments")
    for row in report.rows:
        if row.error:
            notes.append(f"{row.branch}: {row.error}")
    if report.error:
        notes.append(f"error: {report.error}")
    return notes


@app.command("report")
def report_command(
    branch: Annotated[
        list[str] | None,
        typer.Option(
            "--branch",
            "-b",
            help="NAME=CONVERSIONS/SAMPLES or NAME=MEAN:VARIANCE:N; repeat per branch, the first is control.",
            show_default=False,
        ),
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(help="Configured weights for the sample-ratio check, e.g. control=0.5,enhanced=0.5."),
    ] = None,
    alpha: Annotated[float, typer.Option(help="Significance level; the CI is (1 - alpha).")] = 0.05,
    output: Annotated[OutputFormat, typer.Option("--output", "-o", help="table or json.")] = OutputFormat.table,
    sequential: Annotated[
        bool, typer.Option(help="Always-valid p-values and intervals (safe to check repeatedly).")
    ] = False,
) -> None:
    """Report p-value, significance and lift of each branch against the first (control)."""
    if not branch or len(branch) < 2:
        raise typer.BadParameter(
            "give at least two --branch NAME=CONVERSIONS/SAMPLES (the first is control)", param_hint="--branch"
        )
    counts = [parse_branch(text) for text in branch]
    names = [c.name for c in counts]
    if len(set(names)) != len(names):
        raise typer.BadParameter(f"branch names must be unique, got {names}", param_hint="--branch")
    if not (math.isfinite(alpha) and 0 < alpha < 1):
        raise typer.BadParameter(f"{alpha}: alpha must be between 0 and 1", param_hint="--alpha")
    parsed_weights = parse_weights(weights, names) if weights is not None else None
    report = build_report(counts, parsed_weights, alpha=alpha, sequential=sequential)
    if output is OutputFormat.json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    console = Console(width=max(Console().width, 140))
    console.print(render_table(report))
    for note in _notes(report):
        console.print(note, highlight=False, soft_wrap=True)
