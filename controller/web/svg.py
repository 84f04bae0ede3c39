"""The past-30-day rollback graph: pushes vs rollbacks per day, as a server-rendered SVG. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from html import escape

from controller.models.track import DailyCount, HistoryEntry
from controller.track.daily import last_days

ROLLBACK_RESULTS = frozenset({"RolledBack"})
WIDTH = 720
HEIGHT = 180
MARGIN_LEFT = 28
MARGIN_BOTTOM = 22
MARGIN_TOP = 10


@dataclass(frozen=True)
class DayCount:
    """Pushes started and pushes rolled back on one UTC day."""

    day: date
    pushes: int
    rollbacks: int


def _day(entry: HistoryEntry) -> date | None:
    when = entry.started_at or entry.at
    if when is None:
        return None
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.date()


def daily_counts(
    history: Iterable[HistoryEntry], now: datetime, days: int = 30, daily: Sequence[DailyCount] = ()
) -> list[DayCount]:
    """One entry per day for the ``days`` days ending today (UTC), oldest first.

    From the Track's per-day counts (``status.daily``, which cover 40 days whatever ``historyLimit``) when
    it has any; a status written before them is drawn from the history it has."""
    if daily:
        return [DayCount(date.fromisoformat(d.day), d.pushes, d.rollbacks) for d in last_days(daily, now, days)]
    today = (now.astimezone(UTC) if now.tzinfo is not None else now).date()
    first = today - timedelta(days=days - 1)
    pushes: dict[date, int] = {}
    rollbacks: dict[date, int] = {}
    for entry in history:
        day = _day(entry)
        if day is None or not first <= day <= today:
            continue
        pushes[day] = pushes.get(day, 0) + 1
        if entry.result in ROLLBACK_RESULTS:
            rollbacks[day] = rollbacks.get(day, 0) + 1
    return [
        DayCount(d, pushes.get(d, 0), rollbacks.get(d, 0)) for d in (first + timedelta(days=i) for i in range(days))
    ]


def _nice_max(n: int) -> int:
    for step in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000):
        if n <= step:
            return step
    return n


def rollback_graph(
    history: Iterable[HistoryEntry], now: datetime, days: int = 30, daily: Sequence[DailyCount] = ()
) -> str:
    """An SVG bar chart: for each day a ``<g class="day">`` with a pushes bar and a rollbacks bar."""
    counts = daily_counts(history, now, days, daily)
    top = _nice_max(max((c.pushes for c in counts), default=0))
    plot_w = WIDTH - MARGIN_LEFT - 4
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    slot = plot_w / max(days, 1)
    bar = max(1.0, slot * 0.38)
    base = MARGIN_TOP + plot_h
    total_p = sum(c.pushes for c in counts)
    total_r = sum(c.rollbacks for c in counts)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="rollback-graph" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(f"{total_p} pushes, {total_r} rollbacks in the past {days} days")}">',
        f"<title>Pushes and rollbacks per day, past {days} days</title>",
        f'<line x1="{MARGIN_LEFT}" y1="{base}" x2="{WIDTH - 4}" y2="{base}" stroke="#999" stroke-width="1"/>',
        f'<text x="{MARGIN_LEFT - 4}" y="{MARGIN_TOP + 8}" text-anchor="end" font-size="10" fill="#666">{top}</text>',
        f'<text x="{MARGIN_LEFT - 4}" y="{base}" text-anchor="end" font-size="10" fill="#666">0</text>',
    ]
    for i, c in enumerate(counts):
        x = MARGIN_LEFT + i * slot + (slot - 2 * bar) / 2
        hp = plot_h * c.pushes / top
        hr = plot_h * c.rollbacks / top
        label = f"{c.day.isoformat()}: {c.pushes} push{'es' if c.pushes != 1 else ''}, {c.rollbacks} rolled back"
        out.append(
            f'<g class="day" data-day="{c.day.isoformat()}" data-pushes="{c.pushes}" data-rollbacks="{c.rollbacks}">'
            f"<title>{escape(label)}</title>"
            f'<rect class="pushes" x="{x:.1f}" y="{base - hp:.1f}" width="{bar:.1f}" height="{hp:.1f}" fill="#4a7bd0"/>'
            f'<rect class="rollbacks" x="{x + bar:.1f}" y="{base - hr:.1f}" width="{bar:.1f}" height="{hr:.1f}" '
            f'fill="#d0342c"/>'
        )
        if i % 5 == 0 or i == len(counts) - 1:
            out.append(
                f'<text x="{x + bar:.1f}" y="{HEIGHT - 6}" text-anchor="middle" font-size="9" fill="#666">'
                f"{c.day.strftime('%m-%d')}</text>"
            )
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)
