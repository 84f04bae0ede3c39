"""The past-30-day rollback graph: counts per UTC day and one bar group per day."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from controller.models.track import HistoryEntry
from controller.web.svg import daily_counts, rollback_graph
from web import samples

SVG = "{http://www.w3.org/2000/svg}"


def groups(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == "day"]


def test_one_group_per_day_with_counts() -> None:
    svg = rollback_graph(samples.history(), samples.NOW)
    days = groups(svg)
    assert len(days) == 30
    assert days[0].get("data-day") == "2024-05-01" and days[-1].get("data-day") == "2024-05-30"
    by_day = {g.get("data-day"): (int(g.get("data-pushes") or 0), int(g.get("data-rollbacks") or 0)) for g in days}
    assert by_day["2024-05-30"] == (2, 1)
    assert by_day["2024-05-27"] == (2, 0)
    assert sum(p for p, _ in by_day.values()) == 4  # the 40-day-old push is off the graph
    assert sum(r for _, r in by_day.values()) == 1


def test_each_group_has_a_pushes_and_a_rollbacks_bar_scaled_to_the_max() -> None:
    days = groups(rollback_graph(samples.history(), samples.NOW))
    for g in days:
        rects = {r.get("class"): r for r in g.iter(f"{SVG}rect")}
        assert set(rects) == {"pushes", "rollbacks"}
    today = {r.get("class"): float(r.get("height") or 0) for r in days[-1].iter(f"{SVG}rect")}
    assert today["pushes"] == pytest.approx(2 * today["rollbacks"])  # 2 pushes, 1 rollback
    empty = {r.get("class"): float(r.get("height") or 0) for r in days[1].iter(f"{SVG}rect")}
    assert empty == {"pushes": 0.0, "rollbacks": 0.0}
    assert days[-1].findtext(f"{SVG}title") == "2024-05-30: 2 pushes, 1 rolled back"


def test_days_are_utc_and_in_progress_pushes_count() -> None:
    late = datetime(2024, 5, 30, 1, 30, tzinfo=timezone(timedelta(hours=2)))  # 23:30 on the 29th in UTC
    history = [
        HistoryEntry(revision="a" * 40, release="r1", result="Succeeded", at=late),
        HistoryEntry(revision="b" * 40, release="r2", result="InProgress", started_at=samples.NOW),
        HistoryEntry(revision="c" * 40, release="r3", result="Failed", at=None),
    ]
    counts = {c.day: (c.pushes, c.rollbacks) for c in daily_counts(history, samples.NOW)}
    assert counts[date(2024, 5, 29)] == (1, 0)
    assert counts[date(2024, 5, 30)] == (1, 0)
    assert sum(p for p, _ in counts.values()) == 2


def test_window_length_is_configurable() -> None:
    assert len(daily_counts([], samples.NOW, days=7)) == 7
    assert len(groups(rollback_graph([], samples.NOW, days=7))) == 7


def test_empty_history_renders_zero_bars() -> None:
    svg = rollback_graph([], datetime(2024, 1, 31, tzinfo=UTC))
    days = groups(svg)
    assert len(days) == 30
    assert all(g.get("data-pushes") == "0" for g in days)
    assert 'aria-label="0 pushes, 0 rollbacks in the past 30 days"' in svg
    assert not re.search(r"nan|inf", svg)
