"""When a gate reads next: just after Prometheus has a new sample, not on a free-running timer. Pure.

A free-running timer reads at a random phase of the scrape: between a sample landing and the reading
that sees it lies U(0, interval). Prometheus tells when its samples were taken (``timestamp(<selector>)``
gives the scrape time of each series' latest sample), so a :class:`ScrapeClock` learns the *grid* of
sample times — anchor (latest sample), period (scrape interval) and lag (how long after its timestamp a
sample is queryable: scrape duration plus ingestion) — and :func:`next_reading` puts each reading just
after a grid point, at most one reading per gate interval.

The clock is fed every answer for one query text (shared by every Release with that query) and copes with
drift (it re-anchors on every new sample), missing timestamps (no grid: the plain timer), a sample that
landed later than the lag allowed (the lag grows to what was seen) and a changed scrape interval (a gap that
is no multiple of the period, or a grid point without a sample, re-learns the period).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

INITIAL_LAG = 0.05
"""Seconds after its timestamp a new sample is assumed queryable until a late one shows otherwise."""
LAG_MARGIN = 0.02
"""Added to the delay a late sample showed."""
STALE_PERIODS = 3
"""No new sample for this many periods (plus a second): the grid is not trusted (the timer takes over)."""
HISTORY = 8


@dataclass(frozen=True)
class ScrapeGrid:
    """When new samples of a series land: ``anchor + k * period + lag`` (seconds since the epoch)."""

    anchor: float
    period: float
    lag: float

    def landing_after(self, t: float) -> float:
        """The first time after ``t`` at which a new sample is expected to be queryable."""
        base = self.anchor + self.lag
        k = math.floor((t - base) / self.period) + 1
        return base + k * self.period


def _tolerance(period: float) -> float:
    return max(0.01, 0.05 * period)


def _multiple(gap: float, period: float) -> int | None:
    """``k`` when ``gap`` is ``k`` periods (k ≥ 1, within tolerance), else None."""
    k = round(gap / period)
    if k >= 1 and abs(gap - k * period) <= _tolerance(period) * max(1, k):
        return k
    return None


class ScrapeClock:
    """Learns the sample grid of one query from the sample timestamps its answers carry."""

    def __init__(self, initial_lag: float = INITIAL_LAG) -> None:
        self.samples: list[float] = []
        self.period: float | None = None
        self.lag = initial_lag
        self.initial_lag = initial_lag
        self.last_read: float | None = None
        self._miss: tuple[float, float] | None = None  # (read time, sample expected by then but not seen)

    @property
    def anchor(self) -> float | None:
        """The latest sample time seen."""
        return self.samples[-1] if self.samples else None

    def observe(self, sample_at: float | None, read_at: float) -> None:
        """Fold one answer in: the newest sample timestamp it carried (None: none) and when it was read."""
        self.last_read = read_at
        if sample_at is None or not math.isfinite(sample_at):
            return
        anchor = self.anchor
        if anchor is not None and self.period and self._miss is None:
            # the newest sample the grid says is queryable by now; an older one means the reading came early
            expected = anchor + math.floor((read_at - self.lag - anchor) / self.period + 1e-6) * self.period
            if sample_at < expected - _tolerance(self.period):
                self._miss = (read_at, expected)
        if anchor is not None and sample_at <= anchor + 1e-6:
            return
        if anchor is not None:
            self._learn(sample_at - anchor, sample_at)
        self.samples = [*self.samples[-(HISTORY - 1) :], sample_at]

    def _learn(self, gap: float, sample_at: float) -> None:
        if self.period is None:
            self.period = gap
            return
        tol = _tolerance(self.period)
        if self._miss is not None and sample_at >= self._miss[1] - tol:
            (read_at, expected), self._miss = self._miss, None
            if abs(sample_at - expected) <= tol:
                # the expected sample existed but was not queryable yet when read: wait longer after a scrape
                wanted = max(self.lag * 1.5, read_at - expected + LAG_MARGIN)
                self.lag = min(wanted, self.period / 2)
                return
            self.period = gap  # a grid point passed without a sample: the scrape interval grew (or moved)
            self.lag = self.initial_lag
            return
        if _multiple(gap, self.period) is None:
            self.period = gap  # the scrape interval changed (or the scrape phase moved): learn it anew
            self.lag = self.initial_lag
            self._miss = None

    def grid(self, now: float) -> ScrapeGrid | None:
        """The grid, or None while it is unknown or stale (no new sample for a while)."""
        anchor = self.anchor
        if anchor is None or self.period is None or self.period <= 0:
            return None
        if now - anchor > STALE_PERIODS * self.period + 1.0:
            return None
        return ScrapeGrid(anchor, self.period, self.lag)


def next_reading(last: float, interval: float, grid: ScrapeGrid | None) -> float:
    """When the reading after the one at ``last`` is due (seconds since the epoch).

    Without a grid: ``last + interval`` (the plain timer). With one, at most one reading per interval:

    * samples no rarer than readings (period ≤ interval): the latest landing not after ``last + interval``
      (one period later when that is within half a period of ``last``, which aligns a reading that was off);
    * samples rarer than readings (period > interval, e.g. a fast early interval): the next landing, or the
      timer when that comes first — every new sample is read at once and the hold clock still ticks.
    """
    timer = last + interval
    if grid is None:
        return timer
    period = grid.period
    tol = min(0.05, 0.1 * period)
    if period > interval + tol:
        return min(grid.landing_after(last + tol), timer)
    base = grid.anchor + grid.lag
    k = math.floor((timer + tol - base) / period)
    due = base + k * period
    if due <= last + period / 2:
        due += period
    return due
