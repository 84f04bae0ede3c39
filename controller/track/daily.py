"""Per-day push counts of a Track (``status.daily``): the 30-day graph at 50 pushes a day. Pure.

``status.history`` keeps the last ``historyLimit`` pushes (50 by default: one day at IMVU's rate), so the
graph and ``stopline history --days`` read these compact counts instead: one row per UTC day with
pushes, succeeded, rollbacks, failed and reverts, for the last :data:`DAILY_DAYS` days.

Each outcome is counted exactly once: the Track reducer counts a push when it records the Release's
final result and marks that history entry ``counted``; observing the same outcome again (a controller
restart that reads the Release once more) finds the mark and counts nothing. A push counts on the UTC
day it finished; ``reverts`` counts rolled-back pushes whose revert commit is on the branch: counted with
the outcome when the revert landed first, else once when the Track sees it land (``RevertsLanded``), on
the day the push finished — so a day never shows more reverts than rollbacks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta

from controller.models.track import DailyCount

DAILY_DAYS = 40
"""Days kept in ``status.daily`` (the graph shows 30; a few more so a late outcome still finds its day)."""


def utc_day(when: datetime) -> date:
    """The UTC calendar day of a time (naive times are taken as UTC)."""
    return (when.astimezone(UTC) if when.tzinfo is not None else when).date()


def count_outcome(
    daily: Sequence[DailyCount], when: datetime, result: str, *, reverted: bool, now: datetime
) -> list[DailyCount]:
    """``daily`` with one more finished push on ``when``'s day; days older than DAILY_DAYS before ``now`` drop."""
    day = utc_day(when).isoformat()
    rows = {d.day: d for d in daily}
    row = rows.get(day) or DailyCount(day=day)
    update = {"pushes": row.pushes + 1}
    field = {"Succeeded": "succeeded", "RolledBack": "rollbacks"}.get(result, "failed")
    update[field] = getattr(row, field) + 1
    if reverted and result == "RolledBack":
        update["reverts"] = row.reverts + 1
    rows[day] = row.model_copy(update=update)
    first = (utc_day(now) - timedelta(days=DAILY_DAYS - 1)).isoformat()
    return [rows[d] for d in sorted(rows) if d >= first]


def count_late_revert(daily: Sequence[DailyCount], when: datetime, *, now: datetime) -> list[DailyCount]:
    """``daily`` with one more revert on ``when``'s day (the day the rolled-back push finished); nothing when
    that day is no longer kept (days older than DAILY_DAYS before ``now`` drop, as in :func:`count_outcome`)."""
    day = utc_day(when).isoformat()
    first = (utc_day(now) - timedelta(days=DAILY_DAYS - 1)).isoformat()
    rows = {d.day: d for d in daily}
    if day >= first:
        row = rows.get(day) or DailyCount(day=day)
        rows[day] = row.model_copy(update={"reverts": row.reverts + 1})
    return [rows[d] for d in sorted(rows) if d >= first]


def last_days(daily: Iterable[DailyCount], now: datetime, days: int) -> list[DailyCount]:
    """One row per day for the ``days`` days ending today (UTC), oldest first; days without pushes are zeros."""
    today = utc_day(now)
    rows = {d.day: d for d in daily}
    wanted = [(today - timedelta(days=days - 1 - i)).isoformat() for i in range(max(days, 0))]
    return [rows.get(d) or DailyCount(day=d) for d in wanted]
