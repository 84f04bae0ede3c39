"""Per-day counts in Track status: the 30-day graph at 50 pushes a day with historyLimit 50, counted once
per outcome across restarts, days rolling off after DAILY_DAYS."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from controller.models.track import DailyCount, TrackSpec, TrackStatus
from controller.track.daily import DAILY_DAYS, count_outcome, last_days
from controller.track.plan import (
    Commit,
    CreateRelease,
    FinishRelease,
    ReleaseFacts,
    RevertsLanded,
    TrackFacts,
    plan_track,
    reduce_track,
)
from controller.web.svg import daily_counts, rollback_graph

T0 = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
TEMPLATE = {"phases": [{"name": "canary", "deployments": ["web-canary"]}]}
SPEC = TrackSpec.model_validate({"source": {"repo": "git://127.0.0.1/app.git"}, "template": TEMPLATE})


def push(
    s: TrackStatus, n: int, at: datetime, result: str, revert: str | None = None
) -> tuple[TrackStatus, ReleaseFacts]:
    sha = f"{n:040x}"
    name = f"web-{sha[-7:]}"
    s = reduce_track(SPEC, s, CreateRelease(name, sha, ()), TrackFacts(now=at))
    done = at + timedelta(minutes=5)
    cur = ReleaseFacts(
        name=name, exists=True, phase=result, revision=sha, revert_commit=revert, started_at=at, completed_at=done,
        revert_state="Pushed" if revert else None, lock_on_failure=False,
    )  # fmt: skip
    return reduce_track(SPEC, s, FinishRelease(cur), TrackFacts(now=done, current=cur)), cur


def fifty_a_day(days: int) -> TrackStatus:
    s = TrackStatus()
    n = 0
    for d in range(days):
        for i in range(50):
            n += 1
            bad = i % 10 == 0  # 5 rollbacks a day, each reverted
            s, _ = push(s, n, T0 + timedelta(days=d, minutes=20 * i), "RolledBack" if bad else "Succeeded",
                        revert="f" * 40 if bad else None)  # fmt: skip
    return s


def test_fifty_pushes_a_day_for_thirty_days_fill_the_graph_despite_history_limit_50() -> None:
    s = fifty_a_day(30)
    assert len(s.history) == 50  # one day's worth
    now = T0 + timedelta(days=29, hours=23)
    days = last_days(s.daily, now, 30)
    assert [d.pushes for d in days] == [50] * 30
    assert [(d.succeeded, d.rollbacks, d.reverts, d.failed) for d in days] == [(45, 5, 5, 0)] * 30
    counts = daily_counts(s.history, now, 30, daily=s.daily)
    assert sum(c.pushes for c in counts) == 1500 and sum(c.rollbacks for c in counts) == 150
    svg = rollback_graph(s.history, now, 30, daily=s.daily)
    assert 'aria-label="1500 pushes, 150 rollbacks in the past 30 days"' in svg
    assert svg.count('class="day"') == 30


def test_observing_the_same_outcome_twice_counts_it_once() -> None:
    s, cur = push(TrackStatus(), 1, T0, "RolledBack", revert="f" * 40)
    # a restart: the controller reads the Release again and folds the same outcome a second time
    again = reduce_track(SPEC, s, FinishRelease(cur), TrackFacts(now=T0 + timedelta(minutes=6), current=cur))
    assert again.daily == s.daily == [DailyCount(day="2026-11-01", pushes=1, rollbacks=1, reverts=1)]
    assert again.history[0].counted


def test_days_roll_off_after_the_cap() -> None:
    daily: list[DailyCount] = []
    for d in range(DAILY_DAYS + 10):
        at = T0 + timedelta(days=d)
        daily = count_outcome(daily, at, "Succeeded", reverted=False, now=at)
    assert len(daily) == DAILY_DAYS >= 35
    assert daily[0].day == (T0 + timedelta(days=10)).date().isoformat()
    assert daily[-1].day == (T0 + timedelta(days=DAILY_DAYS + 9)).date().isoformat()


def test_results_land_in_their_columns() -> None:
    daily: list[DailyCount] = []
    for result, reverted in (("Succeeded", False), ("RolledBack", True), ("RolledBack", False), ("Failed", True)):
        daily = count_outcome(daily, T0, result, reverted=reverted, now=T0)
    assert daily == [DailyCount(day="2026-11-01", pushes=4, succeeded=1, rollbacks=2, failed=1, reverts=1)]


def test_last_days_fills_quiet_days_with_zeros() -> None:
    daily = [DailyCount(day="2026-11-01", pushes=3)]
    got = last_days(daily, T0 + timedelta(days=2), 3)
    assert [(d.day, d.pushes) for d in got] == [("2026-11-01", 3), ("2026-11-02", 0), ("2026-11-03", 0)]


def test_a_track_without_daily_counts_still_draws_from_history() -> None:
    s, _ = push(TrackStatus(), 1, T0, "RolledBack")
    legacy = [h.model_copy(update={"counted": False}) for h in s.history]
    counts = daily_counts(legacy, T0 + timedelta(hours=1), 30)
    assert counts[-1].pushes == 1 and counts[-1].rollbacks == 1


# ------------------------------------------------------------------ a revert that lands after its push finished
LATE_REVERT = "e" * 40


def rolled_back_revert_pending(at: datetime) -> tuple[TrackStatus, ReleaseFacts]:
    sha = f"{7:040x}"
    name = f"web-{sha[-7:]}"
    s = reduce_track(SPEC, TrackStatus(), CreateRelease(name, sha, ()), TrackFacts(now=at))
    done = at + timedelta(minutes=5)
    cur = ReleaseFacts(
        name=name, exists=True, phase="RolledBack", revision=sha, started_at=at, completed_at=done,
        revert_state="Pending", revert_reason="Unreachable: git daemon down", lock_on_failure=False,
    )  # fmt: skip
    return reduce_track(SPEC, s, FinishRelease(cur), TrackFacts(now=done, current=cur)), cur


def totals(s: TrackStatus) -> tuple[int, int]:
    return sum(d.rollbacks for d in s.daily), sum(d.reverts for d in s.daily)


def reload(s: TrackStatus) -> TrackStatus:
    return TrackStatus.model_validate(s.model_dump(mode="json", by_alias=True))


@pytest.mark.parametrize("via", ["trailer-commit", "release-status"])
def test_a_revert_landing_after_the_push_finished_counts_once(via: str) -> None:
    s, cur = rolled_back_revert_pending(T0)
    assert totals(s) == (1, 0) and [m.revision for m in s.missing_reverts] == [cur.revision]
    assert not s.history[0].revert_counted
    later = T0 + timedelta(days=1, hours=2)  # lands the next day: counted on the push's day
    assert cur.revision is not None
    if via == "trailer-commit":
        f = TrackFacts(now=later, tip=LATE_REVERT, new_commits=[Commit(LATE_REVERT, reverts=cur.revision)])
    else:
        landed = replace(cur, revert_state="Pushed", revert_commit=LATE_REVERT)
        f = TrackFacts(now=later, tip=LATE_REVERT, reverting={cur.name: landed})
    action = plan_track("web", SPEC, s, f)
    assert action == RevertsLanded((cur.revision,), (LATE_REVERT,))
    s = reduce_track(SPEC, s, action, f)
    assert totals(s) == (1, 1)
    assert [(d.day, d.rollbacks, d.reverts) for d in s.daily] == [(T0.date().isoformat(), 1, 1)]
    assert s.history[0].revert_counted and s.history[0].revert_commit == LATE_REVERT
    assert s.missing_reverts == [], "the same status write drops the missing revert"
    # after a restart the Track reads the same commits again: nothing is counted twice
    s = reload(s)
    again = plan_track("web", SPEC, s, f)
    assert not isinstance(again, RevertsLanded)
    s = reduce_track(SPEC, s, RevertsLanded((cur.revision,), (LATE_REVERT,)), f)  # even if it were replayed
    assert totals(s) == (1, 1)


def test_a_revert_landed_before_the_finish_is_not_counted_again() -> None:
    s, cur = push(TrackStatus(), 8, T0, "RolledBack", revert="f" * 40)
    assert totals(s) == (1, 1) and s.history[0].revert_counted
    assert cur.revision is not None
    s = reduce_track(SPEC, s, RevertsLanded((cur.revision,), ("f" * 40,)), TrackFacts(now=T0 + timedelta(hours=1)))
    assert totals(s) == (1, 1)


def test_a_revert_landing_after_its_day_rolled_off_counts_nowhere() -> None:
    s, cur = rolled_back_revert_pending(T0)
    assert cur.revision is not None
    much_later = T0 + timedelta(days=DAILY_DAYS + 1)
    s = reduce_track(SPEC, s, RevertsLanded((cur.revision,), (LATE_REVERT,)), TrackFacts(now=much_later))
    assert all(d.day > T0.date().isoformat() for d in s.daily) and totals(s) == (0, 0)
    assert s.history[0].revert_counted and s.missing_reverts == []
