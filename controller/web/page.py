"""The push status page: server-rendered HTML with inline CSS, no JavaScript. Pure ``render_*`` functions.

Every value from the cluster goes through :func:`html.escape`; nothing here reads or shows a Secret.
The aiohttp handlers that feed these functions live in :mod:`controller.web.routes`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape
from urllib.parse import quote

from controller.models.common import Condition
from controller.models.release import GaugeRow, PhaseStatus, ReleaseStatus
from controller.notify.outbox import summary as notify_summary
from controller.web.present import (
    DASH,
    age,
    chance,
    current_stuck,
    duration,
    failure_text,
    gauge_cells,
    loss,
    num,
    p_value,
    percent,
    phase_objects,
    rollout_text,
    safe_url,
    short,
    stuck_text,
    timestamp,
)
from controller.web.svg import rollback_graph
from controller.web.views import EventView, ExperimentView, ReleaseView, TrackView

REFRESH_SECONDS = 10

CSS = """
body{font:14px/1.45 -apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;color:#1d232b;background:#f6f7f9}
header{background:#1d232b;color:#fff;padding:10px 24px;display:flex;gap:24px;align-items:baseline}
header a{color:#cfd8e3;text-decoration:none}header .brand{font-weight:700;color:#fff;font-size:16px}
main{padding:16px 24px;max-width:1280px}
h1{font-size:20px;margin:8px 0}h2{font-size:16px;margin:22px 0 8px}
.sub{color:#5b6675;margin:0 0 12px}
table{border-collapse:collapse;background:#fff;width:100%;margin:4px 0 12px}
th,td{border:1px solid #dde2e8;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600;white-space:nowrap}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code{font:12px/1.3 ui-monospace,Menlo,Consolas,monospace}
.badge{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;font-weight:600;color:#fff;
background:#7a8594}
.ok,.v-Pass,.p-Succeeded,.p-Passed{background:#2e8b57}
.bad,.v-Fail,.p-RolledBack,.p-Failed,.p-RollingBack{background:#c62828}
.v-Inconclusive,.p-Paused{background:#c98a00}.v-Error{background:#8e24aa}
.p-Progressing,.p-Holding,.p-Watching,.p-Pending{background:#1f6fbf}
tr.verdict-Fail td{background:#fdecea}tr.verdict-Inconclusive td{background:#fff7e0}
.banner{border-radius:6px;padding:12px 16px;margin:12px 0;color:#fff}
.banner.rolled-back{background:#c62828}.banner.rolling-back{background:#c98a00}
.banner strong{font-size:18px;display:block}.banner p{margin:4px 0}
.banner code{background:rgba(255,255,255,.18);padding:1px 4px;border-radius:3px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;background:#fff;padding:8px 12px;
border:1px solid #dde2e8;margin:4px 0 12px}dl.facts dt{font-weight:600;color:#5b6675}dl.facts dd{margin:0}
.lock{border-radius:6px;padding:10px 14px;margin:8px 0;border:1px solid #dde2e8;background:#fff}
.lock.locked{border-color:#c62828;background:#fdecea}.lock.open{border-color:#2e8b57;background:#eaf6ef}
.muted{color:#7a8594}.note{color:#8a5a00}
.stuck{font-weight:600}.stuck.no-heal{color:#c62828}.stuck.heals{color:#8a5a00}
svg.rollback-graph{background:#fff;border:1px solid #dde2e8}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}
"""


def e(value: object) -> str:
    """HTML-escape anything (quotes included) for text and attribute values."""
    return escape("" if value is None else str(value), quote=True)


def _seg(value: str) -> str:
    return quote(value, safe="")


def release_href(namespace: str, name: str) -> str:
    """Link to a Release's page."""
    return f"/namespaces/{_seg(namespace)}/releases/{_seg(name)}"


def track_href(namespace: str, name: str) -> str:
    """Link to a Track's page."""
    return f"/namespaces/{_seg(namespace)}/tracks/{_seg(name)}"


def _link(href: str, text: str) -> str:
    return f'<a href="{e(href)}">{e(text)}</a>'


def _badge(text: str, cls: str) -> str:
    return f'<span class="badge {e(cls)}">{e(text)}</span>'


def _phase_badge(phase: str | None) -> str:
    return _badge(phase, f"p-{phase}") if phase else DASH


def _verdict_badge(verdict: str) -> str:
    return _badge(verdict, f"v-{verdict}")


def layout(title: str, body: str, refresh: int | None = REFRESH_SECONDS) -> str:
    """The page frame: header with navigation, inline CSS, optional meta refresh."""
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{e(title)} · stopline</title>{meta}'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
        '<body><header><span class="brand">stopline</span><a href="/">Pushes</a>'
        '<a href="/experiments">Experiments</a></header>'
        f"<main>{body}</main></body></html>\n"
    )


def _table(headers: Sequence[str], rows: Iterable[str], cls: str = "", empty: str = "none") -> str:
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join(rows)
    if not body:
        body = f'<tr><td colspan="{len(headers)}" class="muted">{e(empty)}</td></tr>'
    klass = f' class="{e(cls)}"' if cls else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _notes(notes: Iterable[str]) -> str:
    return "".join(f'<p class="note">{e(n)}</p>' for n in notes)


# ---------------------------------------------------------------- index
def _commit_lock_cell(t: TrackView) -> str:
    lock = t.status.commit_lock
    if lock.locked:
        return f"{_badge('Locked', 'bad')} {e(lock.reason or '')}"
    return _badge("Open", "ok")


def _push_lock_cell(t: TrackView) -> str:
    push = t.status.push_lock
    if push.held and push.release:
        return f"{_badge('Held', 'p-Progressing')} {_link(release_href(t.namespace, push.release), push.release)}"
    return '<span class="muted">free</span>'


def track_rows(tracks: Sequence[TrackView], now: datetime) -> list[str]:
    """Rows of the tracks table on the index page."""
    rows = []
    for t in tracks:
        s = t.status
        current = _link(release_href(t.namespace, s.current), s.current) if s.current else DASH
        rows.append(
            f'<tr class="track" data-name="{e(t.name)}" data-locked="{str(s.commit_lock.locked).lower()}">'
            f"<td>{_link(track_href(t.namespace, t.name), t.name)}</td><td>{e(t.namespace)}</td>"
            f"<td>{e(t.branch or DASH)}</td><td>{_commit_lock_cell(t)}</td><td>{_push_lock_cell(t)}</td>"
            f"<td>{current}</td><td><code>{e(short(s.last_good))}</code></td>"
            f"<td><code>{e(short(s.last_seen))}</code> {e(age(s.last_seen_at, now))}</td></tr>"
        )
    return rows


def release_rows(releases: Sequence[ReleaseView], now: datetime) -> list[str]:
    """Rows of a releases table."""
    rows = []
    for r in releases:
        s = r.status
        track = _link(track_href(r.namespace, r.track), r.track) if r.track else DASH
        rows.append(
            f'<tr class="release" data-name="{e(r.name)}" data-phase="{e(s.phase)}">'
            f"<td>{_link(release_href(r.namespace, r.name), r.name)}</td><td>{e(r.namespace)}</td>"
            f"<td><code>{e(short(r.revision))}</code></td><td>{_phase_badge(s.phase)}</td>"
            f"<td>{e(s.current_phase or DASH)}</td><td>{e(s.failed_gate or DASH)}</td><td>{track}</td>"
            f"<td>{e(age(r.created, now))}</td></tr>"
        )
    return rows


RELEASE_HEADERS = ("Release", "Namespace", "Revision", "Phase", "Current phase", "Failed gate", "Track", "Age")


def render_index(
    tracks: Sequence[TrackView],
    releases: Sequence[ReleaseView],
    now: datetime,
    *,
    limit: int = 50,
    notes: Sequence[str] = (),
) -> str:
    """``/``: every Track with its commit lock and push lock, then the most recent Releases."""
    body = (
        "<h1>Push status</h1>"
        + _notes(notes)
        + "<h2>Tracks</h2>"
        + _table(
            ("Track", "Namespace", "Branch", "Commit lock", "Push lock", "Current push", "Last good", "Last seen"),
            track_rows(tracks, now),
            cls="tracks",
            empty="no Tracks",
        )
        + "<h2>Recent releases</h2>"
        + _table(RELEASE_HEADERS, release_rows(releases[:limit], now), cls="releases", empty="no Releases")
    )
    return layout("Push status", body)


# ---------------------------------------------------------------- release
def gauge_rows(gauges: Sequence[GaugeRow]) -> list[str]:
    """The gauges table rows (IMVU: gate, phase, pre-push, post-push, delta, delta %, threshold, verdict)."""
    rows = []
    for g in gauges:
        gate, phase, pre, post, delta, pct, threshold, _verdict = gauge_cells(g)
        rows.append(
            f'<tr class="gauge verdict-{e(g.verdict)}" data-gate="{e(g.gate)}" data-phase="{e(g.phase)}">'
            f"<td>{e(gate)}</td><td>{e(phase)}</td><td class='n'>{e(pre)}</td><td class='n'>{e(post)}</td>"
            f"<td class='n'>{e(delta)}</td><td class='n'>{e(pct)}</td><td><code>{e(threshold)}</code></td>"
            f"<td>{_verdict_badge(g.verdict)}{' <span class=muted>dry run</span>' if g.dry_run else ''}</td>"
            f"<td class='n'>{g.readings}</td><td>{e(timestamp(g.at))}</td><td>{e(g.message)}</td></tr>"
        )
    return rows


GAUGE_HEADERS = (
    "Gate",
    "Phase",
    "Pre-push",
    "Post-push",
    "Delta",
    "Delta %",
    "Threshold",
    "Verdict",
    "Readings",
    "At",
    "Detail",
)


def _banner(r: ReleaseView) -> str:
    s = r.status
    failure = s.failure
    revert = s.revert
    lines: list[str] = []
    if failure is not None:
        lines.append(f'<p class="failure">{e(failure_text(failure))}</p>')
    if revert is not None and revert.commit:
        lines.append(
            f'<p class="revert">Revert commit <code>{e(revert.commit)}</code> pushed to {e(r.branch or "the branch")}'
            f"{' — ' + e(revert.message) if revert.message else ''}</p>"
        )
    elif revert is not None and revert.state in ("Pending", "Error"):
        nxt = f"; next attempt {timestamp(revert.next_attempt_at)}" if revert.next_attempt_at else ""
        lines.append(
            f'<p class="revert pending">Revert NOT on {e(r.branch or "the branch")} yet: attempt {revert.attempts}, '
            f"{e(revert.reason or 'in flight')}{e(nxt)}</p>"
        )
    elif revert is not None:
        lines.append(f'<p class="revert">No revert commit: {e(revert.state)} {e(revert.reason or "")}</p>')
    if s.phase == "RolledBack":
        title = "This push was rolled back"
        cls = "rolled-back"
    elif s.phase == "RollingBack":
        title = "This push is being rolled back"
        cls = "rolling-back"
    else:
        why = s.undo.error if s.undo is not None and s.undo.error else "rollback was not done"
        title = f"This push failed its gates and was not rolled back ({why})"
        cls = "rolled-back"
    return f'<div id="banner" class="banner {cls}"><strong>{e(title)}</strong>{"".join(lines)}</div>'


def _conditions(conditions: Sequence[Condition]) -> str:
    rows = [
        f"<tr><td>{e(c.type)}</td><td>{e(c.status)}</td><td>{e(c.reason)}</td><td>{e(c.message)}</td>"
        f"<td>{e(timestamp(c.last_transition_time))}</td></tr>"
        for c in conditions
    ]
    return _table(("Type", "Status", "Reason", "Message", "Since"), rows, cls="conditions", empty="no conditions")


def _events(events: Sequence[EventView] | None, error: str | None) -> str:
    if error:
        return f'<p class="note">Events unavailable: {e(error)}</p>'
    rows = [
        f'<tr class="event event-{e(ev.type)}" data-reason="{e(ev.reason)}">'
        f"<td>{e(timestamp(ev.at))}</td><td>{e(ev.type)}</td><td>{e(ev.reason)}</td><td>{e(ev.message)}</td>"
        f"<td class='n'>{ev.count}</td></tr>"
        for ev in events or ()
    ]
    return _table(("Time", "Type", "Reason", "Message", "Count"), rows, cls="events", empty="no events")


def _subtitle(r: ReleaseView) -> str:
    where = r.phase_number
    current = r.status.current_phase or (r.status.failure.phase if r.status.failure else None)
    rev = f"revision {short(r.revision)}"
    if where is not None:
        return f"Metrics of phase {where[0]} of {where[1]} ({current}) of {rev}"
    if current:
        return f"Metrics of {current} of {rev}"
    return f"Metrics of {rev}"


def _stuck_fact(s: ReleaseStatus) -> list[tuple[str, str]]:
    """The "Stuck" fact, right below the phase: why the rollout or restore is not Available yet."""
    text, found = stuck_text(s), current_stuck(s)
    if text is None or found is None:
        return []
    cls = "stuck heals" if found[1].heals else "stuck no-heal"
    return [("Stuck", f'<span class="{cls}" data-reason="{e(found[1].reason)}">{e(text)}</span>')]


def render_release(
    release: ReleaseView,
    events: Sequence[EventView] | None,
    now: datetime,
    *,
    events_error: str | None = None,
) -> str:
    """``/namespaces/{ns}/releases/{name}``: phases, gauges, the rolled-back banner and Events."""
    r = release
    s = r.status
    banner = _banner(r) if r.rolled_back or s.phase == "RollingBack" else ""
    track = _link(track_href(r.namespace, r.track), r.track) if r.track else DASH
    facts = [
        ("Phase", _phase_badge(s.phase) + (f" ({e(s.pause_reason)})" if s.pause_reason else "")),
        *_stuck_fact(s),
        ("Current phase", e(s.current_phase or DASH)),
        ("Revision", f"<code>{e(r.revision or DASH)}</code>"),
        ("Branch", e(r.branch or DASH)),
        ("Pushed by", e(s.author or DASH)),
        ("Track", track),
        ("Started", e(timestamp(s.started_at))),
        ("Completed", e(timestamp(s.completed_at))),
        ("Message", e(s.message or DASH)),
    ]
    if s.skipped_commits:
        facts.append(("Batched commits", " ".join(f"<code>{e(short(c))}</code>" for c in s.skipped_commits)))
    if s.revert is not None and s.revert.commit:
        facts.append(("Revert commit", f"<code>{e(s.revert.commit)}</code> ({e(s.revert.state)})"))
    notes = notify_summary(s.notifications)
    if notes:
        facts.append(("Notifications", e(notes)))
    holds = {p.name: p.hold.total_seconds() for p in r.spec.phases} if r.spec else {}

    def observed(p: PhaseStatus) -> str:
        if p.available_at is None:
            return DASH
        return f"{duration(p.observed_seconds)} / {duration(holds.get(p.name, 0.0))}"

    phases = [
        f'<tr class="phase" data-name="{e(p.name)}"><td>{e(p.name)}</td><td>{_phase_badge(p.state)}</td>'
        f'<td>{e(", ".join(p.deployments) or DASH)}</td><td class="objects">{e(phase_objects(p))}</td>'
        f"<td>{e(timestamp(p.started_at))}</td>"
        f"<td>{e(timestamp(p.available_at))}</td><td>{e(observed(p))}</td><td>{e(timestamp(p.hold_until))}</td>"
        f"<td>{e(timestamp(p.completed_at))}</td></tr>"
        for p in s.phases
    ]
    body = (
        f"<h1>Push Status — {e(r.namespace)}/{e(r.name)}</h1>"
        f'<p class="sub">{e(_subtitle(r))}</p>'
        + banner
        + '<dl class="facts">'
        + "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in facts)
        + "</dl><h2>Gauges</h2>"
        + _table(GAUGE_HEADERS, gauge_rows(s.gauges), cls="gauges", empty="no gate readings yet")
        + "<h2>Phases</h2>"
        + _table(
            (
                "Phase",
                "State",
                "Deployments",
                "Objects",
                "Started",
                "Available",
                "Observed / hold",
                "Hold until",
                "Completed",
            ),
            phases,
            cls="phases",
            empty="not started",
        )
        + "<h2>Conditions</h2>"
        + _conditions(s.conditions)
        + "<h2>Events</h2>"
        + _events(events, events_error)
    )
    return layout(f"{r.name} push status", body, refresh=None if r.final else REFRESH_SECONDS)


# ---------------------------------------------------------------- track
def _lock_box(t: TrackView) -> str:
    lock = t.status.commit_lock
    if lock.locked:
        extra = []
        if lock.since:
            extra.append(f"since {timestamp(lock.since)}")
        if lock.by:
            extra.append(f"by {lock.by}")
        if lock.release:
            extra.append(f"release {lock.release}")
        return (
            f'<div id="commit-lock" class="lock locked"><strong>Commit lock: LOCKED</strong> — {e(lock.reason or "")}'
            f'<div class="muted">{e("; ".join(extra))}</div>'
            f'<div class="muted">Clear it with <code>stopline unlock {e(t.name)} -n {e(t.namespace)} '
            "--reason …</code></div></div>"
        )
    last = ""
    if lock.unlocked_at:
        last = f"last unlocked {timestamp(lock.unlocked_at)} by {lock.by or 'unknown'}: {lock.unlock_reason or ''}"
    return (
        f'<div id="commit-lock" class="lock open"><strong>Commit lock: open</strong>'
        f'<div class="muted">{e(last)}</div></div>'
    )


def history_rows(t: TrackView) -> list[str]:
    """Rows of a Track's push history (newest first)."""
    rows = []
    for h in t.status.history:
        rows.append(
            f'<tr class="history result-{e(h.result)}"><td>{e(timestamp(h.at))}</td>'
            f"<td><code>{e(short(h.revision))}</code></td>"
            f"<td>{_link(release_href(t.namespace, h.release), h.release)}</td><td>{_phase_badge(h.result)}</td>"
            f"<td class='n'>{e(duration(h.duration_seconds))}</td><td>{e(h.failed_gate or DASH)}</td>"
            f"<td><code>{e(short(h.revert_commit))}</code></td><td class='n'>{len(h.skipped)}</td></tr>"
        )
    return rows


def render_track(
    track: TrackView,
    releases: Sequence[ReleaseView],
    now: datetime,
    *,
    days: int = 30,
) -> str:
    """``/namespaces/{ns}/tracks/{name}``: lock status, the 30-day rollback graph and the push history."""
    t = track
    s = t.status
    holder = s.push_lock.release
    push = (
        f"{_badge('Held', 'p-Progressing')} by {_link(release_href(t.namespace, holder), holder)}"
        f" since {e(timestamp(s.push_lock.since))}"
        if s.push_lock.held and holder
        else '<span class="muted">free</span>'
    )
    facts = [
        ("Repository", e(safe_url(t.repo) or DASH)),
        ("Branch", e(t.branch or DASH)),
        ("Push lock", push),
        ("Current push", _link(release_href(t.namespace, s.current), s.current) if s.current else DASH),
        ("Last good", f"<code>{e(s.last_good or DASH)}</code>"),
        ("Last seen", f"<code>{e(s.last_seen or DASH)}</code> {e(age(s.last_seen_at, now))} ago"),
        ("Queued commits", " ".join(f"<code>{e(short(c))}</code>" for c in s.pending) or DASH),
        ("Message", e(s.message or DASH)),
    ]
    if t.spec is not None and t.spec.suspend:
        facts.append(("Suspended", _badge("suspended", "v-Inconclusive")))
    body = (
        f"<h1>Track {e(t.namespace)}/{e(t.name)}</h1>"
        + _lock_box(t)
        + '<dl class="facts">'
        + "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in facts)
        + f"</dl><h2>Past {days} days</h2>"
        + '<p class="legend"><span style="background:#4a7bd0"></span>pushes'
        + '<span style="background:#d0342c"></span>rolled back</p>'
        + rollback_graph(s.history, now, days, s.daily)
        + "<h2>History</h2>"
        + _table(
            ("Finished", "Revision", "Release", "Result", "Took", "Failed gate", "Revert", "Batched"),
            history_rows(t),
            cls="history",
            empty="no pushes yet",
        )
        + "<h2>Releases</h2>"
        + _table(RELEASE_HEADERS, release_rows(releases, now), cls="releases", empty="no Releases")
        + "<h2>Conditions</h2>"
        + _conditions(s.conditions)
    )
    return layout(f"Track {t.name}", body)


# ---------------------------------------------------------------- experiments
def report_rows(x: ExperimentView) -> list[str]:
    """The experiment report: samples, conversions, mean, variance, p-value, significance, lift, CI."""
    rows = []
    for r in x.status.report:
        ci = f"[{r.ci[0]:+.2f}%, {r.ci[1]:+.2f}%]" if r.ci and len(r.ci) == 2 else DASH
        conversions = DASH if r.conversions is None else f"{r.conversions:g}"
        significance = DASH if r.significance is None else f"{r.significance:.4f}%"
        rows.append(
            f'<tr class="report-row" data-branch="{e(r.branch)}"><td>{e(r.branch)}</td><td class="n">{r.samples}</td>'
            f'<td class="n">{e(conversions)}</td><td class="n">{e(num(r.mean, 5))}</td>'
            f'<td class="n">{e(num(r.variance, 5))}</td><td class="n">{e(p_value(r.p_value))}</td>'
            f'<td class="n">{e(significance)}</td><td class="n">{e(percent(r.lift_percent))}</td>'
            f'<td class="n">{e(ci)}</td><td class="n">{e(chance(r.chance_to_win))}</td>'
            f'<td class="n">{e(loss(r.expected_loss))}</td></tr>'
        )
    return rows


SEGMENT_HEADERS = ("Dimension", "Segment", "Branch", "Samples", "Conversions", "Mean", "P-value", "Lift %", "CI", "SRM")


def segment_rows(x: ExperimentView) -> list[str]:
    """One row per (segment, branch): IMVU's buckets, each with its own comparison and sample ratio."""
    rows = []
    for seg in x.status.segments:
        srm = DASH if seg.srm is None or seg.srm.p_value is None else p_value(seg.srm.p_value)
        bad = seg.srm is not None and not seg.srm.ok
        for i, r in enumerate(seg.report):
            ci = f"[{r.ci[0]:+.2f}%, {r.ci[1]:+.2f}%]" if r.ci and len(r.ci) == 2 else DASH
            conversions = DASH if r.conversions is None else f"{r.conversions:g}"
            first = i == 0
            srm_cell = (f"{srm} MISMATCH" if bad else srm) if first else ""
            rows.append(
                f'<tr class="segment-row{" bad" if bad else ""}" data-dimension="{e(seg.dimension)}"'
                f' data-segment="{e(seg.segment)}" data-branch="{e(r.branch)}">'
                f"<td>{e(seg.dimension) if first else ''}</td><td>{e(seg.segment) if first else ''}</td>"
                f'<td>{e(r.branch)}</td><td class="n">{r.samples}</td><td class="n">{e(conversions)}</td>'
                f'<td class="n">{e(num(r.mean, 5))}</td><td class="n">{e(p_value(r.p_value))}</td>'
                f'<td class="n">{e(percent(r.lift_percent))}</td><td class="n">{e(ci)}</td>'
                f'<td class="n">{e(srm_cell)}</td></tr>'
            )
    return rows


CUPED_HEADERS = ("Branch", "Samples", "Adjusted mean", "Adjusted variance", "P-value", "Lift %", "CI", "Variance")


def cuped_rows(x: ExperimentView) -> list[str]:
    """The CUPED-adjusted comparison, with the share of variance removed per treatment."""
    c = x.status.cuped
    rows = []
    for r in c.report if c is not None else []:
        ci = f"[{r.ci[0]:+.2f}%, {r.ci[1]:+.2f}%]" if r.ci and len(r.ci) == 2 else DASH
        reduced = c.variance_reduction.get(r.branch) if c is not None else None
        rows.append(
            f'<tr class="cuped-row" data-branch="{e(r.branch)}"><td>{e(r.branch)}</td><td class="n">{r.samples}</td>'
            f'<td class="n">{e(num(r.mean, 5))}</td><td class="n">{e(num(r.variance, 5))}</td>'
            f'<td class="n">{e(p_value(r.p_value))}</td><td class="n">{e(percent(r.lift_percent))}</td>'
            f'<td class="n">{e(ci)}</td>'
            f'<td class="n">{e(DASH if reduced is None else f"-{100 * reduced:.2f}%")}</td></tr>'
        )
    return rows


def _cuped_section(x: ExperimentView) -> str:
    c = x.status.cuped
    if c is None:
        return ""
    title = "CUPED" if c.theta is None else f"CUPED (θ = {c.theta:.6g})"
    return f"<h3>{e(title)}</h3>" + _table(CUPED_HEADERS, cuped_rows(x), cls="cuped", empty=c.error or "no adjustment")


def balance_text(x: ExperimentView) -> list[tuple[str, bool]]:
    """``platform: p=0.412 ok`` per segment dimension, and whether it is balanced."""
    out = []
    for b in x.status.balance:
        verdict = "ok" if b.ok else "IMBALANCED" + (f" ({', '.join(b.imbalanced)})" if b.imbalanced else "")
        out.append((f"{b.dimension}: p={p_value(b.p_value)} over {b.segments} segments {verdict}", b.ok))
    return out


def _experiment(x: ExperimentView, now: datetime) -> str:
    spec = x.spec
    closed = x.status.closed_on or (spec.close_on if spec else None)
    branches = ", ".join(f"{b} {w:g}" for b, w in spec.branches.items()) if spec else DASH
    srm = x.status.srm
    srm_text = DASH if srm is None else f"p={p_value(srm.p_value)} {'ok' if srm.ok else 'MISMATCH'}"
    decision = x.status.decision
    cls = "bad" if decision.startswith("Harm") else "ok" if decision.startswith(("Winner", "Closed")) else ""
    facts = [
        ("Key", e(spec.key if spec else DASH)),
        ("Rollout", f'<span class="rollout">{e(rollout_text(spec))}</span>'),
        ("Branches", e(branches)),
        ("Closed on", f'<span class="closed-on">{e(closed or DASH)}</span>'),
        ("Decision", _badge(decision, cls)),
        ("Sample ratio", e(srm_text)),
        ("Updated", f"{e(timestamp(x.status.updated_at))} ({e(age(x.status.updated_at, now))} ago)"),
    ]
    if x.status.balance:
        items = "".join(f'<li class="balance{"" if ok else " bad"}">{e(text)}</li>' for text, ok in balance_text(x))
        facts.append(("Segment balance", f'<ul class="balance">{items}</ul>'))
    forced = spec.force.forced_names() if spec else []
    if forced:
        items = "".join(f'<li class="forced">{e(f)}</li>' for f in forced)
        facts.append(("Forced (not counted)", f'<ul class="forced">{items}</ul>'))
    if x.status.message:
        facts.append(("Message", e(x.status.message)))
    return (
        f'<section class="experiment" data-name="{e(x.name)}"><h2>{e(x.namespace)}/{e(x.name)}</h2>'
        '<dl class="facts">'
        + "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in facts)
        + "</dl>"
        + _table(
            (
                "Branch",
                "Samples",
                "Conversions",
                "Mean",
                "Variance",
                "P-value",
                "Significance",
                "Lift %",
                "CI",
                "Chance to win",
                "Expected loss",
            ),
            report_rows(x),
            cls="report",
            empty="no report yet",
        )
        + _cuped_section(x)
        + (
            "<h3>Segments</h3>" + _table(SEGMENT_HEADERS, segment_rows(x), cls="segments", empty="no segments")
            if x.status.segments
            else ""
        )
        + "</section>"
    )


def experiment_rows(experiments: Sequence[ExperimentView]) -> list[str]:
    """Summary rows: name, rollout, closed on, decision."""
    rows = []
    for x in experiments:
        closed = x.status.closed_on or (x.spec.close_on if x.spec else None)
        rows.append(
            f'<tr class="experiment-row" data-name="{e(x.name)}"><td><a href="#x-{e(x.namespace)}-{e(x.name)}">'
            f"{e(x.name)}</a></td><td>{e(x.namespace)}</td><td>{e(rollout_text(x.spec))}</td>"
            f"<td>{e(closed or DASH)}</td><td>{e(x.status.decision)}</td>"
            f"<td class='n'>{e(p_value(x.status.p_value))}</td></tr>"
        )
    return rows


def render_experiments(experiments: Sequence[ExperimentView], now: datetime, *, notes: Sequence[str] = ()) -> str:
    """``/experiments``: every Experiment with its rollout, closed-on branch, decision and report."""
    sections = "".join(f'<div id="x-{e(x.namespace)}-{e(x.name)}">{_experiment(x, now)}</div>' for x in experiments)
    body = (
        "<h1>Experiments</h1>"
        + _notes(notes)
        + _table(
            ("Experiment", "Namespace", "Rollout", "Closed on", "Decision", "P-value"),
            experiment_rows(experiments),
            cls="experiments",
            empty="no Experiments",
        )
        + sections
    )
    return layout("Experiments", body)


def render_error(status: int, message: str) -> str:
    """A plain error page (404 for a missing object, 502 when the API cannot be read)."""
    return layout(f"{status}", f"<h1>{status}</h1><p>{e(message)}</p>", refresh=None)
