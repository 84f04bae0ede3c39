"""The ``stopline`` command line (also installed as ``kubectl-stopline``, so ``kubectl stopline status`` works).

Every command except ``run`` works against the current kubeconfig context (``--context`` picks another),
in ``-n/--namespace`` (default: the context's namespace, else ``default``), and prints a table, or the
same data with ``-o json|yaml``. Problems a user must fix (no cluster, CRDs missing, object missing)
print one ``error:`` line and exit 1; ``check`` exits 3 while the commit lock is held.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import signal
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from types import FrameType
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from controller.experiments.cli import app as experiment_app
from controller.kube import cli_client
from controller.kube.cli_client import CliError, StoplineApi, exit_on_error
from controller.models.common import Condition
from controller.models.release import GaugeRow, ReleaseStatus
from controller.notify.outbox import summary as notify_summary
from controller.release.actions import ANNOTATION_ABORT, ANNOTATION_PAUSED, ANNOTATION_PROMOTE
from controller.track.daily import DAILY_DAYS, last_days
from controller.track.plan import ANNOTATION_LOCK, ANNOTATION_UNLOCK
from controller.web.present import (
    DASH,
    age,
    current_stuck,
    duration,
    failure_text,
    gauge_cells,
    phase_objects,
    safe_url,
    short,
    stuck_text,
    timestamp,
)
from controller.web.views import EventView, ReleaseView, TrackView, newest_first, sort_events

EXIT_LOCKED = 3

app = typer.Typer(
    name="stopline",
    help="stopline: phased pushes gated by Prometheus metrics, with rollback and git revert.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(experiment_app, name="experiment")


class Output(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


NamespaceOpt = Annotated[
    str | None,
    typer.Option("--namespace", "-n", help="Namespace (default: the kubeconfig context's, else 'default')."),
]
AllNamespacesOpt = Annotated[
    bool, typer.Option("--all-namespaces", "-A", help="List in every namespace (adds a NAMESPACE column).")
]
ContextOpt = Annotated[str | None, typer.Option("--context", help="kubeconfig context (default: the current one).")]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table, json or yaml.")]

VERDICT_STYLE = {"Pass": "green", "Fail": "bold red", "Inconclusive": "yellow", "Error": "magenta"}
PHASE_STYLE = {
    "Succeeded": "green",
    "Passed": "green",
    "RolledBack": "bold red",
    "Failed": "bold red",
    "RollingBack": "bold red",
    "Paused": "yellow",
    "Superseded": "dim",
}


def now() -> datetime:
    """The CLI's clock (tests replace it)."""
    return datetime.now(UTC)


def user() -> str:
    """Who is running the command, for lock/unlock tokens."""
    for var in ("USER", "LOGNAME", "USERNAME"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


# ---------------------------------------------------------------- plumbing
def _connect(namespace: str | None, context: str | None) -> StoplineApi:
    return cli_client.connect(namespace, context)


def _console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=max(console.width, 160))
    return console


def _dump(data: Any, output: Output) -> None:
    if output is Output.json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        typer.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip())


def _t(value: object, style: str = "") -> Text:
    """User data as rich Text: never parsed as markup."""
    return Text("" if value is None else str(value), style=style)


def _phase(value: str | None) -> Text:
    return _t(value or DASH, PHASE_STYLE.get(value or "", "cyan" if value else ""))


def _get(api: StoplineApi, plural: str, name: str, kind: str) -> dict[str, Any]:
    obj = api.get(plural, name)
    if obj is None:
        raise CliError(f"{kind} {name} not found in namespace {api.namespace}")
    return obj


def _track(api: StoplineApi, name: str) -> TrackView:
    return TrackView.from_object(_get(api, "tracks", name, "Track"))


def _release(api: StoplineApi, name: str) -> ReleaseView:
    return ReleaseView.from_object(_get(api, "releases", name, "Release"))


def _facts(rows: Sequence[tuple[str, Text | str]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value if isinstance(value, Text) else _t(value))
    return table


# ---------------------------------------------------------------- data (json / yaml)
def release_data(r: ReleaseView) -> dict[str, Any]:
    """A Release for ``-o json|yaml``."""
    return {
        "kind": "Release",
        "namespace": r.namespace,
        "name": r.name,
        "revision": r.revision,
        "branch": r.branch,
        "track": r.track,
        "rolledBack": r.rolled_back,
        "status": r.status.model_dump(mode="json", by_alias=True),
    }


def track_data(t: TrackView) -> dict[str, Any]:
    """A Track for ``-o json|yaml``."""
    return {
        "kind": "Track",
        "namespace": t.namespace,
        "name": t.name,
        "repo": safe_url(t.repo),
        "branch": t.branch,
        "locked": t.status.commit_lock.locked,
        "status": t.status.model_dump(mode="json", by_alias=True),
    }


def _release_summary(r: ReleaseView) -> dict[str, Any]:
    s = r.status
    return {
        "namespace": r.namespace,
        "name": r.name,
        "revision": r.revision,
        "phase": s.phase,
        "currentPhase": s.current_phase,
        "failedGate": s.failed_gate,
        "track": r.track,
        "created": r.created.isoformat() if r.created else None,
    }


def _track_summary(t: TrackView) -> dict[str, Any]:
    s = t.status
    return {
        "namespace": t.namespace,
        "name": t.name,
        "branch": t.branch,
        "locked": s.commit_lock.locked,
        "lockReason": s.commit_lock.reason,
        "pushLock": s.push_lock.release if s.push_lock.held else None,
        "current": s.current,
        "lastGood": s.last_good,
    }


def _event_data(ev: EventView) -> dict[str, Any]:
    return {
        "at": ev.at.isoformat() if ev.at else None,
        "type": ev.type,
        "reason": ev.reason,
        "message": ev.message,
        "count": ev.count,
    }


# ---------------------------------------------------------------- tables
def gauges_table(gauges: Sequence[GaugeRow], *, readings: bool = False, title: str = "Gauges") -> Table:
    """The IMVU gauges table: gate, phase, pre, post, delta, delta %, threshold, verdict (coloured)."""
    table = Table(title=title, title_justify="left")
    for header in ("Gate", "Phase", "Pre-push", "Post-push", "Delta", "Delta %", "Threshold", "Verdict"):
        numeric = header in ("Pre-push", "Post-push", "Delta", "Delta %")
        table.add_column(header, justify="right" if numeric else "left", no_wrap=header != "Threshold")
    if readings:
        table.add_column("Readings", justify="right")
        table.add_column("At", no_wrap=True)
        table.add_column("Detail")
    for row in gauges:
        cells = [_t(c) for c in gauge_cells(row)]
        cells[-1] = _t(cells[-1].plain, VERDICT_STYLE.get(row.verdict, ""))
        if readings:
            cells += [_t(row.readings), _t(timestamp(row.at)), _t(row.message)]
        table.add_row(*cells)
    return table


def conditions_table(conditions: Sequence[Condition]) -> Table:
    """metav1 conditions."""
    table = Table(title="Conditions", title_justify="left")
    for header in ("Type", "Status", "Reason", "Message"):
        table.add_column(header)
    for c in conditions:
        style = "green" if c.status == "True" else "red" if c.status == "False" else "yellow"
        table.add_row(_t(c.type), _t(c.status, style), _t(c.reason), _t(c.message))
    return table


def rollback_banner(r: ReleaseView) -> Panel | None:
    """The red "This push was rolled back" panel with the failure and the revert commit."""
    s = r.status
    if not (r.rolled_back or s.phase == "RollingBack"):
        return None
    if s.phase == "RolledBack":
        title = "This push was rolled back"
    elif s.phase == "RollingBack":
        title = "This push is being rolled back"
    else:
        why = s.undo.error if s.undo is not None and s.undo.error else "rollback was not done"
        title = f"This push failed its gates and was not rolled back ({why})"
    lines = [_t(title, "bold")]
    if s.failure is not None:
        lines.append(_t(failure_text(s.failure)))
    if s.revert is not None and s.revert.commit:
        lines.append(_t(f"revert commit {s.revert.commit} ({s.revert.state}) on {r.branch or 'the branch'}"))
    elif s.revert is not None and s.revert.state in ("Pending", "Error"):
        nxt = f"; next attempt {timestamp(s.revert.next_attempt_at)}" if s.revert.next_attempt_at else ""
        lines.append(
            _t(
                f"revert NOT on {r.branch or 'the branch'} yet: attempt {s.revert.attempts}, "
                f"{s.revert.reason or 'in flight'}{nxt}",
                "bold",
            )
        )
    elif s.revert is not None:
        lines.append(_t(f"no revert commit: {s.revert.state} {s.revert.reason or ''}".rstrip()))
    return Panel(Group(*lines), style="red", border_style="bold red", expand=False)


def history_table(t: TrackView, limit: int | None = None) -> Table:
    """A Track's push history, newest first."""
    table = Table(title="History", title_justify="left")
    for header in ("Finished", "Revision", "Release", "Result", "Took", "Failed gate", "Revert", "Batched"):
        table.add_column(header, no_wrap=header != "Failed gate")
    for h in t.status.history[:limit]:
        table.add_row(
            _t(timestamp(h.at)),
            _t(short(h.revision)),
            _t(h.release),
            _t(h.result, PHASE_STYLE.get(h.result, "cyan")),
            _t(duration(h.duration_seconds)),
            _t(h.failed_gate or DASH),
            _t(short(h.revert_commit)),
            _t(len(h.skipped)),
        )
    return table


def days_table(t: TrackView, days: int, at: datetime) -> Table:
    """A Track's outcomes per UTC day (``status.daily``), newest day first, with totals."""
    rows = last_days(t.status.daily, at, days)
    table = Table(title=f"Past {days} days (UTC)", title_justify="left")
    for header in ("Day", "Pushes", "Succeeded", "Rolled back", "Reverted", "Failed"):
        table.add_column(header, no_wrap=True, justify="left" if header == "Day" else "right")
    for d in reversed(rows):
        table.add_row(
            _t(d.day),
            _t(d.pushes),
            _t(d.succeeded),
            _t(d.rollbacks, "red" if d.rollbacks else ""),
            _t(d.reverts),
            _t(d.failed),
        )
    totals = [sum(getattr(d, f) for d in rows) for f in ("pushes", "succeeded", "rollbacks", "reverts", "failed")]
    table.add_row(_t("total", "bold"), *(_t(n, "bold") for n in totals))
    return table


def _stuck_fact(s: ReleaseStatus) -> list[tuple[str, Text | str]]:
    """The "Stuck" line, right below the phase: why the rollout or restore is not Available yet."""
    text, found = stuck_text(s), current_stuck(s)
    if text is None or found is None:
        return []
    return [("Stuck", _t(text, "bold red" if not found[1].heals else "yellow"))]


def _release_view(console: Console, r: ReleaseView) -> None:
    s = r.status
    where = r.phase_number
    current = s.current_phase or DASH
    if where is not None and s.current_phase:
        current = f"{s.current_phase} ({where[0]} of {where[1]})"
    console.print(_t(f"Release {r.namespace}/{r.name}", "bold"))
    facts: list[tuple[str, Text | str]] = [
        ("Phase", _phase(s.phase) + (_t(f" ({s.pause_reason})") if s.pause_reason else _t(""))),
        *_stuck_fact(s),
        ("Current phase", current),
        ("Revision", f"{r.revision or DASH} ({r.branch or DASH})"),
        ("Pushed by", s.author or DASH),
        ("Track", r.track or DASH),
        ("Started", timestamp(s.started_at)),
        ("Completed", timestamp(s.completed_at)),
        ("Message", s.message or DASH),
    ]
    if s.revert is not None and s.revert.commit:
        facts.append(("Revert commit", f"{s.revert.commit} ({s.revert.state})"))
    notes = notify_summary(s.notifications)
    if notes:
        facts.append(("Notifications", notes))
    console.print(_facts(facts))
    banner = rollback_banner(r)
    if banner is not None:
        console.print(banner)
    if s.phases:
        phases = Table(title="Phases", title_justify="left")
        for header in ("Phase", "State", "Deployments", "Objects", "Available", "Observed / hold", "Hold until"):
            phases.add_column(header)
        holds = {p.name: p.hold.total_seconds() for p in r.spec.phases} if r.spec else {}
        for p in s.phases:
            observed = DASH
            if p.available_at is not None:
                observed = f"{duration(p.observed_seconds)} / {duration(holds.get(p.name, 0.0))}"
            phases.add_row(
                _t(p.name),
                _phase(p.state),
                _t(", ".join(p.deployments) or DASH),
                _t(phase_objects(p)),
                _t(timestamp(p.available_at)),
                _t(observed),
                _t(timestamp(p.hold_until)),
            )
        console.print(phases)
    console.print(gauges_table(s.gauges) if s.gauges else _t("No gate readings yet.", "dim"))
    if s.conditions:
        console.print(conditions_table(s.conditions))


def _track_view(console: Console, t: TrackView) -> None:
    s = t.status
    console.print(_t(f"Track {t.namespace}/{t.name}", "bold"))
    lock = s.commit_lock
    if lock.locked:
        detail = [f"since {timestamp(lock.since)}"] + ([f"by {lock.by}"] if lock.by else [])
        console.print(
            Panel(
                Group(_t("Commit lock: LOCKED", "bold"), _t(lock.reason or ""), _t(", ".join(detail))),
                style="red",
                border_style="bold red",
                expand=False,
            )
        )
    push = f"held by {s.push_lock.release}" if s.push_lock.held and s.push_lock.release else "free"
    facts: list[tuple[str, Text | str]] = [
        ("Commit lock", _t("locked", "bold red") if lock.locked else _t("open", "green")),
        ("Push lock", push),
        ("Repository", f"{safe_url(t.repo) or DASH} ({t.branch or DASH})"),
        ("Current", s.current or DASH),
        ("Last good", s.last_good or DASH),
        ("Last seen", s.last_seen or DASH),
        ("Queued", ", ".join(short(c) for c in s.pending) or DASH),
        ("Message", s.message or DASH),
    ]
    if not lock.locked and lock.unlocked_at:
        facts.insert(1, ("Last unlock", f"{timestamp(lock.unlocked_at)} by {lock.by}: {lock.unlock_reason or ''}"))
    notes = notify_summary(s.notifications)
    if notes:
        facts.append(("Notifications", notes))
    console.print(_facts(facts))
    if s.history:
        console.print(history_table(t, limit=5))
    if s.conditions:
        console.print(conditions_table(s.conditions))


def _overview(console: Console, namespace: str | None, tracks: list[TrackView], releases: list[ReleaseView]) -> None:
    """Tracks and Releases of ``namespace``; of every namespace (with a Namespace column) when None."""
    at = now()
    where = f"in {namespace}" if namespace is not None else "in any namespace"
    first: tuple[str, ...] = () if namespace is not None else ("Namespace",)
    tt = Table(title=f"Tracks {where}", title_justify="left")
    for header in (*first, "Track", "Branch", "Commit lock", "Push lock", "Current", "Last good"):
        tt.add_column(header)
    for t in tracks:
        s = t.status
        lock = _t(f"locked: {s.commit_lock.reason or ''}", "red") if s.commit_lock.locked else _t("open", "green")
        tt.add_row(
            *([_t(t.namespace)] if first else []),
            _t(t.name),
            _t(t.branch or DASH),
            lock,
            _t(s.push_lock.release if s.push_lock.held else "free"),
            _t(s.current or DASH),
            _t(short(s.last_good)),
        )
    rt = Table(title=f"Releases {where}", title_justify="left")
    for header in (*first, "Release", "Revision", "Phase", "Current", "Failed gate", "Age"):
        rt.add_column(header)
    for r in releases:
        s2 = r.status
        rt.add_row(
            *([_t(r.namespace)] if first else []),
            _t(r.name),
            _t(short(r.revision)),
            _phase(s2.phase),
            _t(s2.current_phase or DASH),
            _t(s2.failed_gate or DASH),
            _t(age(r.created, at)),
        )
    console.print(tt if tracks else _t(f"No Tracks {where}.", "dim"))
    console.print(rt if releases else _t(f"No Releases {where}.", "dim"))


# ---------------------------------------------------------------- commands
@app.command()
def status(
    name: Annotated[str | None, typer.Argument(help="A Track or a Release (Track first); none: list both.")] = None,
    namespace: NamespaceOpt = None,
    output: OutputOpt = Output.table,
    context: ContextOpt = None,
    all_namespaces: AllNamespacesOpt = False,
) -> None:
    """Phase, current phase, gauges, rollback and locks of a Track or Release (or list them all)."""
    if all_namespaces and name is not None:
        raise typer.BadParameter("--all-namespaces lists; it does not go with a NAME", param_hint="-A")
    with exit_on_error():
        api = _connect(namespace, context)
        if name is None:
            every = all_namespaces
            tracks = sorted(
                (TrackView.from_object(o) for o in api.list_all("tracks", every)), key=lambda t: (t.namespace, t.name)
            )
            releases = newest_first([ReleaseView.from_object(o) for o in api.list_all("releases", every)])
            if output is not Output.table:
                _dump(
                    {
                        "namespace": None if every else api.namespace,
                        "tracks": [_track_summary(t) for t in tracks],
                        "releases": [_release_summary(r) for r in releases],
                    },
                    output,
                )
                return
            _overview(_console(), None if every else api.namespace, tracks, releases)
            return
        obj = api.get("tracks", name)
        if obj is not None:
            track = TrackView.from_object(obj)
            if output is not Output.table:
                _dump(track_data(track), output)
            else:
                _track_view(_console(), track)
            return
        obj = api.get("releases", name)
        if obj is None:
            raise CliError(f"no Track or Release named {name} in namespace {api.namespace}")
        release = ReleaseView.from_object(obj)
        if output is not Output.table:
            _dump(release_data(release), output)
        else:
            _release_view(_console(), release)


@app.command()
def history(
    track: Annotated[str, typer.Argument(help="Track name.")],
    namespace: NamespaceOpt = None,
    output: OutputOpt = Output.table,
    context: ContextOpt = None,
    days: Annotated[
        int | None,
        typer.Option("--days", min=1, max=DAILY_DAYS, help="Outcomes per day for the last N days (status.daily)."),
    ] = None,
) -> None:
    """The Track's pushes, newest first: revision, Release, result, duration, failed gate, revert.

    With --days N: pushes, successes, rollbacks and reverts per UTC day instead (kept for 40 days,
    whatever historyLimit)."""
    with exit_on_error():
        api = _connect(namespace, context)
        t = _track(api, track)
        if days is not None:
            if output is not Output.table:
                _dump(
                    [d.model_dump(mode="json", by_alias=True) for d in last_days(t.status.daily, now(), days)], output
                )
                return
            _console().print(days_table(t, days, now()))
            return
        if output is not Output.table:
            _dump([h.model_dump(mode="json", by_alias=True) for h in t.status.history], output)
            return
        console = _console()
        if not t.status.history:
            console.print(_t(f"Track {t.name} has not pushed anything yet.", "dim"))
            return
        console.print(history_table(t))


def _token(by: str, reason: str, *, without_revert: bool = False) -> str:
    data: dict[str, Any] = {"by": by, "reason": reason, "at": now().isoformat()}
    if without_revert:
        data["withoutRevert"] = True
    return json.dumps(data, separators=(",", ":"))


def _missing_reverts(t: TrackView) -> str:
    """``3f9c2e1 (web-3f9c2e1: Unreachable: ...)`` for every rolled-back revision whose revert is missing."""
    return "; ".join(f"{m.revision[:7]} ({m.release}: {m.reason or 'pending'})" for m in t.status.missing_reverts)


def _annotate(api: StoplineApi, plural: str, name: str, annotations: dict[str, str | None]) -> None:
    api.patch(plural, name, {"metadata": {"annotations": annotations}})


ReasonOpt = Annotated[str, typer.Option("--reason", "-r", help="Why (recorded in the Track's status).")]
ByOpt = Annotated[str | None, typer.Option("--by", help="Who (default: the local user).")]


@app.command()
def lock(
    track: Annotated[str, typer.Argument(help="Track name.")],
    reason: ReasonOpt,
    by: ByOpt = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
) -> None:
    """Set the Track's commit lock by hand: nothing new is pushed until ``unlock``."""
    with exit_on_error():
        api = _connect(namespace, context)
        t = _track(api, track)
        held = t.status.commit_lock
        if held.locked:
            # Writing a token now would be acted on right after the next unlock: leave it.
            typer.echo(f"Track {track} is already locked: {held.reason or ''}")
            return
        _annotate(api, "tracks", track, {ANNOTATION_LOCK: _token(by or user(), reason)})
        typer.echo(f"lock requested for Track {api.namespace}/{track}: {reason}")


@app.command()
def unlock(
    track: Annotated[str, typer.Argument(help="Track name.")],
    reason: ReasonOpt,
    by: ByOpt = None,
    without_revert: Annotated[
        bool,
        typer.Option(
            "--without-revert",
            help="Unlock although a rolled-back commit's revert is not on the branch yet: the next push "
            "deploys the bad commit again. Recorded in the lock and the history; the revert stops retrying.",
        ),
    ] = False,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
) -> None:
    """Clear the Track's commit lock (after a rollback, once the cause is understood).

    Refused while the revert of a rolled-back commit has not landed (exit 3), unless --without-revert."""
    with exit_on_error():
        api = _connect(namespace, context)
        t = _track(api, track)
        missing = _missing_reverts(t)
        if not t.status.commit_lock.locked and not missing:
            # A token written now would silently clear the next lock: refuse to leave one lying around.
            typer.echo(f"Track {track} is not locked; nothing to do")
            return
        if missing and not without_revert:
            typer.echo(
                f"refused: the revert of {missing} is not on {t.spec.source.branch if t.spec else 'the branch'} "
                "yet; unlocking now would push the bad commit again. Wait until it lands, or unlock with "
                "--without-revert.",
                err=True,
            )
            raise typer.Exit(EXIT_LOCKED)
        token = _token(by or user(), reason, without_revert=bool(missing) and without_revert)
        _annotate(api, "tracks", track, {ANNOTATION_UNLOCK: token})
        typer.echo(f"unlock requested for Track {api.namespace}/{track} (was: {t.status.commit_lock.reason or ''})")
        if missing:
            typer.echo(f"without revert: {missing} stays on the branch (recorded in the lock and history)")


@app.command()
def check(
    track: Annotated[str, typer.Argument(help="Track name.")],
    namespace: NamespaceOpt = None,
    output: OutputOpt = Output.table,
    context: ContextOpt = None,
) -> None:
    """For CI: exit 0 when the line is open, 3 while the commit lock is held (the reason is printed)."""
    with exit_on_error():
        api = _connect(namespace, context)
        t = _track(api, track)
    lock_ = t.status.commit_lock
    if output is not Output.table:
        from controller.web.server import lock_summary

        _dump(lock_summary(t.namespace or api.namespace, t.name or track, t.status), output)
    elif lock_.locked:
        typer.echo(f"locked: {lock_.reason or 'no reason given'} (since {timestamp(lock_.since)})")
    elif not t.status.missing_reverts:
        pushing = t.status.push_lock.release if t.status.push_lock.held else None
        typer.echo(f"open{f' (pushing {pushing})' if pushing else ''}")
    if output is Output.table and t.status.missing_reverts:
        typer.echo(f"revert missing: {_missing_reverts(t)} — nothing is pushed until it lands")
    if lock_.locked or t.status.missing_reverts:
        raise typer.Exit(EXIT_LOCKED)


def _live_release(api: StoplineApi, name: str, verb: str) -> ReleaseView:
    r = _release(api, name)
    if r.final:
        raise CliError(f"Release {name} is already {r.status.phase}: nothing to {verb}")
    return r


@app.command()
def promote(
    release: Annotated[str, typer.Argument(help="Release name.")],
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
) -> None:
    """End the current phase's hold now (gates that already read Fail still fail the push)."""
    with exit_on_error():
        api = _connect(namespace, context)
        r = _live_release(api, release, "promote")
        _annotate(api, "releases", release, {ANNOTATION_PROMOTE: now().isoformat()})
        typer.echo(f"promote requested for Release {api.namespace}/{release} (phase {r.status.current_phase or DASH})")


@app.command()
def abort(
    release: Annotated[str, typer.Argument(help="Release name.")],
    reason: Annotated[str | None, typer.Option("--reason", "-r", help="Why (default: aborted by USER).")] = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
) -> None:
    """Fail the push now: roll back, revert and lock as its onFailure says."""
    with exit_on_error():
        api = _connect(namespace, context)
        r = _live_release(api, release, "abort")
        if r.status.phase == "RollingBack":
            typer.echo(f"Release {release} is already rolling back")
            return
        why = reason or f"aborted by {user()}"
        _annotate(api, "releases", release, {ANNOTATION_ABORT: why})
        typer.echo(f"abort requested for Release {api.namespace}/{release}: {why}")


@app.command()
def pause(
    release: Annotated[str, typer.Argument(help="Release name.")],
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
) -> None:
    """Hold the push where it is (gates keep being read and can still fail it)."""
    with exit_on_error():
        api = _connect(namespace, context)
        _live_release(api, release, "pause")
        _annotate(api, "releases", release, {ANNOTATION_PAUSED: "true"})
        typer.echo(f"pause requested for Release {api.namespace}/{release}")


@app.command()
def resume(
    release: Annotated[str, typer.Argument(help="Release name.")],
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
) -> None:
    """Continue a paused push."""
    with exit_on_error():
        api = _connect(namespace, context)
        r = _live_release(api, release, "resume")
        if ANNOTATION_PAUSED not in r.annotations and r.status.pause_reason != "User":
            typer.echo(f"Release {release} is not paused")
            return
        _annotate(api, "releases", release, {ANNOTATION_PAUSED: None})
        typer.echo(f"resume requested for Release {api.namespace}/{release}")


@app.command()
def logs(
    release: Annotated[str, typer.Argument(help="Release name.")],
    namespace: NamespaceOpt = None,
    output: OutputOpt = Output.table,
    context: ContextOpt = None,
) -> None:
    """Gate readings (the gauges, with the latest reading's time and detail) and the Release's Events."""
    with exit_on_error():
        api = _connect(namespace, context)
        r = _release(api, release)
        events = sort_events([EventView.from_object(o) for o in api.events("Release", release)])
    if output is not Output.table:
        _dump(
            {
                "release": r.name,
                "namespace": r.namespace or api.namespace,
                "phase": r.status.phase,
                "gauges": [g.model_dump(mode="json", by_alias=True) for g in r.status.gauges],
                "events": [_event_data(ev) for ev in events],
            },
            output,
        )
        return
    console = _console()
    console.print(
        gauges_table(r.status.gauges, readings=True, title="Gate readings")
        if r.status.gauges
        else _t("No gate readings yet.", "dim")
    )
    table = Table(title="Events", title_justify="left")
    for header in ("Time", "Type", "Reason", "Message"):
        table.add_column(header, no_wrap=header != "Message")
    for ev in events:
        style = "yellow" if ev.type == "Warning" else ""
        count = f" (x{ev.count})" if ev.count > 1 else ""
        table.add_row(_t(timestamp(ev.at)), _t(ev.type, style), _t(ev.reason, style), _t(ev.message + count))
    console.print(table if events else _t("No events.", "dim"))


@app.command()
def run(
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="Namespace to serve: a name or a glob such as 'team-*' (repeatable)."),
    ] = None,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A", help="Serve every namespace.")] = False,
    namespace_selector: Annotated[
        str | None,
        typer.Option(help="Only namespaces whose labels match this selector, e.g. 'stopline.dev/enabled=true'."),
    ] = None,
    leader_election: Annotated[
        bool,
        typer.Option(
            "--leader-election/--no-leader-election",
            help="Act only on shards held through coordination.k8s.io Leases (run 2+ replicas for HA).",
        ),
    ] = True,
    shards: Annotated[
        int, typer.Option(min=1, max=64, help="Split the namespaces into this many shards, one active replica each.")
    ] = 1,
    lease_namespace: Annotated[
        str | None, typer.Option(help="Namespace of the shard Leases (default: $POD_NAMESPACE, else 'default').")
    ] = None,
    lease_name: Annotated[str, typer.Option(help="Prefix of the shard Leases: <name>-shard-<i>.")] = "stopline",
    identity: Annotated[
        str | None, typer.Option(help="This replica's Lease holder identity (default: $POD_NAME, else the host name).")
    ] = None,
    liveness: Annotated[str | None, typer.Option(help="Liveness endpoint, e.g. http://0.0.0.0:8080/healthz.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Run the controller against the current cluster: one cluster-wide watch per kind, filtered to the
    namespaces served; with leader election, only on the shards this replica holds."""
    # Until kopf installs its own handler, a SIGTERM (pod deleted while starting) is a clean exit too.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    import kopf

    import controller.handlers  # noqa: F401  (registers the handlers)

    if not namespace and not all_namespaces and not namespace_selector:
        raise typer.BadParameter("give --namespace NAME|GLOB (repeatable), --namespace-selector or --all-namespaces")
    if namespace and all_namespaces:
        raise typer.BadParameter("--namespace and --all-namespaces are exclusive")
    if namespace_selector:
        from controller.reconcile.shards import parse_selector

        try:
            parse_selector(namespace_selector)
        except ValueError as exc:
            raise typer.BadParameter(f"--namespace-selector {namespace_selector!r}: {exc}") from exc
    os.environ.update(
        {
            "STOPLINE_NAMESPACES": ",".join(namespace or ()),
            "STOPLINE_NAMESPACE_SELECTOR": namespace_selector or "",
            "STOPLINE_LEADER_ELECTION": "true" if leader_election else "false",
            "STOPLINE_SHARDS": str(shards),
            "STOPLINE_LEASE_NAME": lease_name,
        }
    )
    if lease_namespace:
        os.environ["STOPLINE_LEASE_NAMESPACE"] = lease_namespace
    if identity:
        os.environ["STOPLINE_IDENTITY"] = identity
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    # kopf's own peering stays off: which replica acts where is decided by our shard Leases.
    kopf.run(standalone=True, liveness_endpoint=liveness, clusterwide=True)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
