"""The scrape-aligned reading scheduler against a fake clock and a fake scraper's sample timestamps."""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import pytest

from controller.gates.schedule import INITIAL_LAG, ScrapeClock, ScrapeGrid, next_reading


@dataclass
class Scraper:
    """Prometheus scraping one target: samples at ``phase + k * period``, queryable ``ingest`` later."""

    period: float
    phase: float
    ingest: float = 0.01
    missing: bool = False  # the query qualifies for no sample time (no timestamp in the answers)

    def newest(self, t: float) -> float | None:
        """The newest sample time a query sent at ``t`` sees."""
        if self.missing:
            return None
        k = math.floor((t - self.ingest - self.phase) / self.period)
        return self.phase + k * self.period


def drive(scraper: Scraper, interval: float, until: float, start: float = 1000.0) -> tuple[list[float], ScrapeClock]:
    """Readings of one gate from ``start`` on: read, feed the clock, schedule the next one."""
    clock, t, reads = ScrapeClock(), start, []
    while t < until:
        reads.append(t)
        clock.observe(scraper.newest(t), t)
        t = next_reading(t, interval, clock.grid(t))
    return reads, clock


def waits(scraper: Scraper, reads: list[float], after: float) -> list[float]:
    """For each sample landing after ``after``: how long until a reading saw it."""
    out = []
    k = math.ceil((after - scraper.phase) / scraper.period)
    while True:
        landed = scraper.phase + k * scraper.period + scraper.ingest
        seen = next((r for r in reads if r >= landed), None)
        if seen is None:
            return out
        out.append(seen - landed)
        k += 1


@pytest.mark.parametrize("phase", [0.0, 0.13, 0.5, 0.87], ids=lambda p: f"phase-{p}")
def test_aligned_readings_see_each_sample_within_the_lag(phase: float) -> None:
    s = Scraper(period=1.0, phase=phase)
    reads, clock = drive(s, interval=1.0, until=1060)
    seen = waits(s, reads, after=1005)  # after a few readings to learn the grid
    assert seen and max(seen) <= INITIAL_LAG + 1e-6  # a timer would wait U(0, 1 s)
    gaps = [b - a for a, b in pairwise(reads[5:])]
    assert min(gaps) >= 1.0 - 1e-6  # still one query per interval
    assert clock.period == pytest.approx(1.0)


def test_without_timestamps_it_is_the_plain_timer() -> None:
    s = Scraper(period=1.0, phase=0.3, missing=True)
    reads, clock = drive(s, interval=1.0, until=1010)
    assert reads == pytest.approx([1000.0 + i for i in range(10)])
    assert clock.grid(1010) is None


def test_a_stale_series_falls_back_to_the_timer() -> None:
    clock = ScrapeClock()
    clock.observe(100.0, 100.1)
    clock.observe(101.0, 101.1)
    assert clock.grid(101.2) is not None
    assert clock.grid(101.0 + 3 * 1.0 + 1.5) is None
    assert next_reading(110.0, 1.0, clock.grid(110.0)) == 111.0


def test_drift_between_the_scrape_and_the_gate_is_followed() -> None:
    """Prometheus' scrape clock runs 0.2% slower than the interval: readings stay just after each sample."""
    s = Scraper(period=1.002, phase=0.4)
    reads, _ = drive(s, interval=1.0, until=1300)
    seen = waits(s, reads, after=1010)
    assert len(seen) > 250
    # each reading lands just after its sample; a reading that the drift pushed before one is moved
    assert sorted(seen)[int(0.95 * len(seen))] <= INITIAL_LAG + 1e-6


def test_a_sample_later_than_the_lag_grows_the_lag() -> None:
    s = Scraper(period=1.0, phase=0.2, ingest=0.12)  # ingestion slower than the initial 50 ms
    reads, clock = drive(s, interval=1.0, until=1040)
    assert clock.lag > 0.12
    seen = waits(s, reads, after=1010)
    assert max(seen) <= clock.lag  # no reading early any more: none misses its sample


def test_a_changed_scrape_interval_is_relearned() -> None:
    clock, t = ScrapeClock(), 1000.0
    s = Scraper(period=1.0, phase=0.25)
    while t < 1020:
        clock.observe(s.newest(t), t)
        t = next_reading(t, 1.0, clock.grid(t))
    assert clock.period == pytest.approx(1.0)
    s2 = Scraper(period=2.0, phase=s.newest(t) or 0.0)  # scrape_interval 1s → 2s
    reads = []
    while t < 1060:
        reads.append(t)
        clock.observe(s2.newest(t), t)
        t = next_reading(t, 1.0, clock.grid(t))
    assert clock.period == pytest.approx(2.0)
    seen = waits(s2, reads, after=1035)
    assert max(seen) <= INITIAL_LAG + 1e-6
    s3 = Scraper(period=0.5, phase=s2.newest(t) or 0.0)  # and down to 0.5 s: with one reading a second,
    reads = []  # every reading still comes just after a landing (half the samples are never read)
    while t < 1100:
        reads.append(t)
        clock.observe(s3.newest(t), t)
        t = next_reading(t, 1.0, clock.grid(t))
    late = [r - ((s3.newest(r) or 0.0) + s3.ingest) for r in reads[5:]]
    assert max(late) <= INITIAL_LAG + 1e-6


def test_a_faster_early_interval_reads_every_new_sample_at_once_and_keeps_the_timer() -> None:
    s = Scraper(period=1.0, phase=0.6)
    reads, _ = drive(s, interval=0.25, until=1030)
    gaps = [b - a for a, b in pairwise(reads[3:])]
    assert max(gaps) <= 0.25 + 1e-6  # the hold clock's interval is never exceeded
    assert min(gaps) > 0.0
    assert max(waits(s, reads, after=1005)) <= INITIAL_LAG + 1e-6


@pytest.mark.parametrize(
    ("last", "interval", "expected"),
    [
        (100.06, 1.0, 101.05),  # aligned: the next landing one period on
        (100.40, 1.0, 101.05),  # off the grid: pulled onto it (gap ≥ half a period)
        (100.80, 1.0, 102.05),  # the next landing is too close: the one after
        (100.06, 2.0, 102.05),  # interval of two periods: every other landing
        (100.06, 0.3, 100.36),  # samples rarer than readings: the timer first ...
        (100.90, 0.3, 101.05),  # ... and the landing when it comes first
    ],
    ids=["aligned", "realign", "too-close", "two-periods", "timer-first", "landing-first"],
)
def test_next_reading(last: float, interval: float, expected: float) -> None:
    grid = ScrapeGrid(anchor=100.0, period=1.0, lag=0.05)
    assert next_reading(last, interval, grid) == pytest.approx(expected)
    assert next_reading(last, interval, None) == pytest.approx(last + interval)
