"""Gate readings scheduled by the reducer (scrape-aligned ``nextAt``, ``earlyInterval``) and honoured by the planner."""

from __future__ import annotations

from typing import Any

import pytest
from sim import at, make_spec, phases, release_status, row

from controller.gates.evaluate import Measurement
from controller.gates.schedule import ScrapeGrid
from controller.release.actions import EvaluateGates, Facts, Readings, Wait
from controller.release.plan import plan, reading_interval
from controller.release.status import reduce

LOAD: dict[str, Any] = {"name": "load", "query": "max(load)", "max": 6, "interval": "1s"}


def holding(*rows: Any) -> Any:
    """Canary Available at 5 s, holding."""
    return release_status("Holding", "canary", phases(canary="Holding"), gauges=list(rows))


def read(spec: Any, status: Any, now: float, grid: ScrapeGrid | None) -> Any:
    m = Measurement(4.0, at(now), scrape=grid)
    return reduce(spec, status, EvaluateGates("canary", ("load",)), Readings({"load": m}), at(now))


def test_a_reading_is_scheduled_just_after_the_next_sample_lands() -> None:
    spec = make_spec(gates=[LOAD])
    grid = ScrapeGrid(anchor=at(10).timestamp(), period=1.0, lag=0.05)
    after = read(spec, holding(row("load", "canary", pre=4.0)), 10.3, grid)
    r = after.gauges[0]
    assert (r.at, r.next_at, r.scrape_period) == (at(10.3), at(11.05), 1.0)
    # the planner waits for exactly that instant, then reads
    assert plan(spec, after, Facts(now=at(10.5))) == Wait(at(11.05), "holding canary: observed 0s of 60s")
    assert plan(spec, after, Facts(now=at(11.05))) == EvaluateGates("canary", ("load",))


def test_without_a_grid_the_next_reading_is_one_interval_on() -> None:
    spec = make_spec(gates=[LOAD])
    after = read(spec, holding(row("load", "canary", pre=4.0)), 10.3, None)
    assert (after.gauges[0].next_at, after.gauges[0].scrape_period) == (at(11.3), None)


def test_rows_written_before_next_at_keep_the_interval_rule() -> None:
    spec = make_spec(gates=[LOAD])
    status = holding(row("load", "canary", pre=4.0, verdict="Pass", readings=1, when=at(10)))
    assert isinstance(plan(spec, status, Facts(now=at(10.9))), Wait)
    assert plan(spec, status, Facts(now=at(11))) == EvaluateGates("canary", ("load",))


@pytest.mark.parametrize(
    ("now", "expected"), [(5.0, 0.25), (34.9, 0.25), (35.0, 1.0), (80.0, 1.0)], ids=["start", "end", "after", "late"]
)
def test_early_interval_applies_for_early_for_after_available(now: float, expected: float) -> None:
    spec = make_spec(gates=[{**LOAD, "earlyInterval": "250ms", "earlyFor": "30s"}])
    gate = spec.gates[0]
    status = holding()
    assert reading_interval(gate, status, "canary", at(now)).total_seconds() == expected
    assert reading_interval(gate, status, "watch", at(now)).total_seconds() == 1.0
    after = read(spec, holding(row("load", "canary", pre=4.0)), now, None)
    assert after.gauges[0].next_at == at(now + expected)


def test_early_interval_is_validated() -> None:
    with pytest.raises(ValueError, match="earlyInterval must be at least 100ms"):
        make_spec(gates=[{**LOAD, "earlyInterval": "50ms", "earlyFor": "10s"}])
