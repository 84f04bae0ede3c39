"""``stopline experiment …``: the IMVU experiment report from the command line.

Mounted by the main CLI as ``main_app.add_typer(app, name="experiment")``. ``report`` works offline from
counts given with ``--branch``, or, with a positional NAME, from the Experiment's status in the cluster
(the controller's report, SRM check and decision). ``list`` shows every Experiment in the namespace.
"""

from __future__ import annotations

import json
import math
from enum import StrEnum
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from controller.experiments.hashing import WEIGHT_SUM_TOLERANCE
from controller.experiments.report import BranchCounts, Report, ReportRow, build_report
from controller.kube import cli_client
from controller.kube.cli_client import CliError, exit_on_error
from controller.web.present import DASH, chance, loss, num, percent, rollout_text, timestamp
from controller.web.present import p_value as fmt_p
from controller.web.views import ExperimentView

__all__ = [
    "OutputFormat",
    "app",
    "experiment_data",
    "parse_branch",
    "parse_weights",
    "render_status_table",
    "render_table",
]

app = typer.Typer(
    help="A/B experiments: reports with p-value, significance and lift per branch.",
    no_args_is_help=True,
)


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


def emit(data: object, output: OutputFormat) -> None:
    """Machine output: every number at full precision (only tables round)."""
    if output is OutputFormat.yaml:
        typer.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip())
    else:
        typer.echo(json.dumps(data, indent=2))


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
    table.add_column("Chance to win", justify="right", no_wrap=True)
    table.add_column("Expected loss", justify="right", no_wrap=True)
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
            chance(row.chance_to_win),
            loss(row.expected_loss),
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
    notes.append("Chance to win / expected loss: Bayesian, Beta(1,1) prior for rates, flat prior for means")
    if report.adjustment == "holm":
        notes.append(f"P-values Holm-adjusted for {len(report.treatments)} treatments")
    for row in report.rows:
        if row.error:
            notes.append(f"{row.branch}: {row.error}")
    if report.error:
        notes.append(f"error: {report.error}")
    return notes


def experiment_data(x: ExperimentView) -> dict[str, object]:
    """An Experiment for ``-o json``: rollout wording, closed-on branch, decision and the status report."""
    spec = x.spec
    return {
        "kind": "Experiment",
        "namespace": x.namespace,
        "name": x.name,
        "key": spec.key if spec else None,
        "rollout": rollout_text(spec),
        "branches": dict(spec.branches) if spec else {},
        "closedOn": x.status.closed_on or (spec.close_on if spec else None),
        "decision": x.status.decision,
        "status": x.status.model_dump(mode="json", by_alias=True),
    }


def render_status_table(x: ExperimentView) -> Table:
    """The controller's report (``status.report``) as a rich table."""
    table = Table(title=f"Experiment {x.namespace}/{x.name} — {rollout_text(x.spec)}", title_justify="left")
    headers = ("Branch", "Samples", "Conversions", "Mean", "Variance", "P-value", "Significance", "Lift %", "CI")
    for header in (*headers, "Chance to win", "Expected loss"):
        table.add_column(header, justify="left" if header == "Branch" else "right", no_wrap=True)
    for row in x.status.report:
        ci = f"[{row.ci[0]:+.2f}%, {row.ci[1]:+.2f}%]" if row.ci and len(row.ci) == 2 else DASH
        table.add_row(
            Text(row.branch),
            str(row.samples),
            DASH if row.conversions is None else f"{row.conversions:g}",
            num(row.mean, 5),
            num(row.variance, 5),
            fmt_p(row.p_value),
            DASH if row.significance is None else f"{row.significance:.4f}%",
            percent(row.lift_percent),
            ci,
            chance(row.chance_to_win),
            loss(row.expected_loss),
        )
    return table


def render_cuped_table(x: ExperimentView) -> Table:
    """The CUPED-adjusted comparison: adjusted means and variances, Welch's p-value, variance removed."""
    c = x.status.cuped
    theta = "" if c is None or c.theta is None else f" (θ = {c.theta:.6g})"
    table = Table(title=f"CUPED{theta}", title_justify="left")
    headers = ("Branch", "Samples", "Adj. mean", "Adj. variance", "P-value", "Lift %", "CI", "Variance")
    for header in headers:
        table.add_column(header, justify="left" if header == "Branch" else "right", no_wrap=True)
    for row in c.report if c is not None else []:
        ci = f"[{row.ci[0]:+.2f}%, {row.ci[1]:+.2f}%]" if row.ci and len(row.ci) == 2 else DASH
        reduced = c.variance_reduction.get(row.branch) if c is not None else None
        table.add_row(
            Text(row.branch),
            str(row.samples),
            num(row.mean, 5),
            num(row.variance, 5),
            fmt_p(row.p_value),
            percent(row.lift_percent),
            ci,
            DASH if reduced is None else f"-{100 * reduced:.2f}%",
        )
    return table


def render_segment_table(x: ExperimentView) -> Table:
    """IMVU's buckets: per segment and branch, samples, conversions, mean, p-value, lift, CI and sample ratio."""
    table = Table(title="Segments", title_justify="left")
    for header in (
        "Dimension",
        "Segment",
        "Branch",
        "Samples",
        "Conversions",
        "Mean",
        "P-value",
        "Lift %",
        "CI",
        "SRM",
    ):
        table.add_column(header, justify="left" if header in ("Dimension", "Segment", "Branch") else "right")
    for seg in x.status.segments:
        srm = DASH if seg.srm is None or seg.srm.p_value is None else fmt_p(seg.srm.p_value)
        if seg.srm is not None and not seg.srm.ok:
            srm += " MISMATCH"
        for i, row in enumerate(seg.report):
            ci = f"[{row.ci[0]:+.2f}%, {row.ci[1]:+.2f}%]" if row.ci and len(row.ci) == 2 else DASH
            table.add_row(
                Text(seg.dimension if i == 0 else ""),
                Text(seg.segment if i == 0 else ""),
                Text(row.branch),
                str(row.samples),
                DASH if row.conversions is None else f"{row.conversions:g}",
                num(row.mean, 5),
                fmt_p(row.p_value),
                percent(row.lift_percent),
                ci,
                srm if i == 0 else "",
            )
    return table


def _status_notes(x: ExperimentView) -> list[str]:
    notes = [f"Decision: {x.status.decision}"]
    closed = x.status.closed_on or (x.spec.close_on if x.spec else None)
    if closed:
        notes.append(f"Closed on: {closed}")
    srm = x.status.srm
    if srm is not None:
        verdict = "ok" if srm.ok else "MISMATCH: samples do not follow the weights"
        notes.append(f"Sample ratio: p={fmt_p(srm.p_value)} {verdict}")
    for b in x.status.balance:
        verdict = "ok" if b.ok else "IMBALANCED" + (f" (segments {', '.join(b.imbalanced)})" if b.imbalanced else "")
        notes.append(f"Balance by {b.dimension}: p={fmt_p(b.p_value)} over {b.segments} segments {verdict}")
    forced = x.spec.force.forced_names() if x.spec else []
    if forced:
        notes.append("Forced (not counted): " + ", ".join(forced))
    notes.append(f"Updated: {timestamp(x.status.updated_at)}")
    if x.status.message:
        notes.append(x.status.message)
    return notes


def _cluster_report(name: str, namespace: str | None, context: str | None, output: OutputFormat) -> None:
    with exit_on_error():
        api = cli_client.connect(namespace, context)
        obj = api.get("experiments", name)
        if obj is None:
            raise CliError(f"Experiment {name} not found in namespace {api.namespace}")
    x = ExperimentView.from_object(obj)
    if output is not OutputFormat.table:
        emit(experiment_data(x), output)
        return
    console = Console(width=max(Console().width, 140))
    if x.status.report:
        console.print(render_status_table(x))
    if x.status.cuped is not None:
        if x.status.cuped.report:
            console.print(render_cuped_table(x))
        else:
            console.print(Text(f"CUPED: {x.status.cuped.error}"))
    if x.status.segments:
        console.print(render_segment_table(x))
    else:
        console.print(Text(f"Experiment {x.namespace}/{x.name}: no report yet ({rollout_text(x.spec)})"))
    for note in _status_notes(x):
        console.print(Text(note), soft_wrap=True)


@app.command("list")
def list_command(
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Namespace (default: the kubeconfig context's).")
    ] = None,
    output: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="table, json or yaml (full precision).")
    ] = OutputFormat.table,
    context: Annotated[str | None, typer.Option("--context", help="kubeconfig context.")] = None,
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="List in every namespace (adds a NAMESPACE column).")
    ] = False,
) -> None:
    """Every Experiment in the namespace: rollout, branches, closed-on branch, decision."""
    with exit_on_error():
        api = cli_client.connect(namespace, context)
        views = sorted(
            (ExperimentView.from_object(o) for o in api.list_all("experiments", all_namespaces)),
            key=lambda x: (x.namespace, x.name),
        )
    if output is not OutputFormat.table:
        emit([experiment_data(x) for x in views], output)
        return
    console = Console(width=max(Console().width, 140))
    where = "in any namespace" if all_namespaces else f"in {api.namespace}"
    if not views:
        console.print(Text(f"No Experiments {where}."))
        return
    table = Table(title=f"Experiments {where}", title_justify="left")
    first: tuple[str, ...] = ("Namespace",) if all_namespaces else ()
    for header in (*first, "Experiment", "Key", "Rollout", "Branches", "Closed on", "Decision", "P-value", "Updated"):
        table.add_column(header)
    for x in views:
        spec = x.spec
        table.add_row(
            *([Text(x.namespace)] if all_namespaces else []),
            Text(x.name),
            Text(spec.key if spec else DASH),
            Text(rollout_text(spec)),
            Text(", ".join(f"{b} {w:g}" for b, w in spec.branches.items()) if spec else DASH),
            Text(x.status.closed_on or (spec.close_on if spec and spec.close_on else DASH)),
            Text(x.status.decision, style="red" if x.status.decision.startswith("Harm") else ""),
            fmt_p(x.status.p_value),
            timestamp(x.status.updated_at),
        )
    console.print(table)


@app.command("report")
def report_command(
    name: Annotated[
        str | None,
        typer.Argument(help="An Experiment in the cluster: show the controller's report (instead of --branch)."),
    ] = None,
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
    output: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="table, json or yaml (full precision).")
    ] = OutputFormat.table,
    sequential: Annotated[
        bool, typer.Option(help="Always-valid p-values and intervals (safe to check repeatedly).")
    ] = False,
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="With NAME: namespace (default: the context's).")
    ] = None,
    context: Annotated[str | None, typer.Option("--context", help="With NAME: kubeconfig context.")] = None,
) -> None:
    """Report p-value, significance and lift of each branch against the first (control).

    ``report NAME`` shows the Experiment's report from the cluster; ``report --branch ...`` computes one offline.
    """
    if name is not None:
        if branch or weights is not None or sequential:
            raise typer.BadParameter("give NAME (from the cluster) or --branch counts (offline), not both")
        _cluster_report(name, namespace, context, output)
        return
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
    if output is not OutputFormat.table:
        emit(report.to_dict(), output)
        return
    console = Console(width=max(Console().width, 140))
    console.print(render_table(report))
    for note in _notes(report):
        console.print(note, highlight=False, soft_wrap=True)
