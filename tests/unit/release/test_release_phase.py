"""``status.phase`` is a function of the rest of the status (derive_phase), never stored on its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sim import at, phases, release_status, row

from controller.models.release import FailureStatus, ReleaseStatus
from controller.release.plan import derive_phase, machine_state, pause_reason

FAILURE = FailureStatus(reason="GateFailed", message="gate load 7.20 > 6", gate="load", phase="canary", at=at(15))
NO_DATA = {"verdict": "Inconclusive", "readings": 2, "inconclusive": 2, "when": at(20)}


def holding(**extra: Any) -> ReleaseStatus:
    return release_status("Progressing", "canary", phases(canary="Holding"), **extra)


@dataclass(frozen=True)
class Case:
    id: str
    status: ReleaseStatus
    phase: str
    reason: str | None = None
    machine: str | None = None  # looking through a pause (defaults to ``phase``)


CASES = [
    Case("nothing-yet", ReleaseStatus(), "Pending"),
    Case("resolved-first-phase-pending", release_status("Holding", "canary", phases()), "Progressing"),
    Case("rolling-out", release_status("Pending", "canary", phases(canary="Progressing")), "Progressing"),
    Case("holding", holding(), "Holding"),
    Case("between-phases", release_status("Holding", "chat", phases(canary="Passed")), "Progressing"),
    Case(
        "watching",
        release_status("Holding", "watch", phases(canary="Passed", chat="Passed", everything_else="Passed")),
        "Watching",
    ),
    Case("succeeded", release_status("Holding", None, phases(canary="Passed"), completed_at=at(300)), "Succeeded"),
    Case("rolling-back", holding(failure=FAILURE), "RollingBack"),
    Case(
        "rolled-back",
        release_status(
            "Holding", None, phases(canary="Failed"), failure=FAILURE, completed_at=at(18), rolled_back_at=at(18)
        ),
        "RolledBack",
    ),
    Case(
        "failed",
        release_status("Holding", None, phases(canary="Failed"), failure=FAILURE, completed_at=at(18)),
        "Failed",
    ),
    Case("failed-before-anything", ReleaseStatus(failure=FAILURE, completed_at=at(0)), "Failed"),
    Case("user-paused-holding", holding(user_paused=True), "Paused", "User", "Holding"),
    Case(
        "user-paused-before-a-phase",
        release_status("Holding", "chat", phases(canary="Passed"), user_paused=True),
        "Paused",
        "User",
        "Progressing",
    ),
    Case(
        "gate-without-data-pauses-a-hold",
        holding(gauges=[row("load", "canary", pre=4.0, **NO_DATA)]),
        "Paused",
        "Inconclusive",
        "Holding",
    ),
    Case(
        "error-reading-pauses-a-hold",
        holding(gauges=[row("load", "canary", pre=4.0, verdict="Error", readings=1, inconclusive=1)]),
        "Paused",
        "Inconclusive",
        "Holding",
    ),
    Case(
        "gate-without-data-pauses-the-watch",
        release_status(
            "Watching",
            "watch",
            phases(canary="Passed", chat="Passed", everything_else="Passed"),
            gauges=[row("load", "watch", pre=4.0, **NO_DATA)],
        ),
        "Paused",
        "Inconclusive",
        "Watching",
    ),
    Case("baseline-only-row-is-no-pause", holding(gauges=[row("load", "canary", pre=4.0)]), "Holding"),
    Case(
        "compare-gate-collecting-its-first-samples-is-no-pause",
        holding(gauges=[row("latency", "canary", verdict="Inconclusive", readings=3, inconclusive=0)]),
        "Holding",
    ),
    Case(
        "dry-run-gate-without-data-is-no-pause",
        holding(gauges=[row("load", "canary", pre=4.0, dry_run=True, **NO_DATA)]),
        "Holding",
    ),
    Case(
        "no-data-in-another-phase-is-no-pause",
        release_status(
            "Holding", "chat", phases(canary="Passed", chat="Holding"), gauges=[row("load", "canary", **NO_DATA)]
        ),
        "Holding",
    ),
    Case(
        "no-data-while-rolling-out-is-no-pause",
        release_status("Holding", "canary", phases(canary="Progressing"), gauges=[row("load", "canary", **NO_DATA)]),
        "Progressing",
    ),
    Case(
        "user-pause-wins-over-no-data",
        holding(user_paused=True, gauges=[row("load", "canary", pre=4.0, **NO_DATA)]),
        "Paused",
        "User",
        "Holding",
    ),
    Case("a-failure-ends-any-pause", holding(user_paused=True, failure=FAILURE), "RollingBack"),
    Case(
        "no-data-after-the-failure-is-no-pause",
        holding(failure=FAILURE, gauges=[row("load", "canary", pre=4.0, **NO_DATA)]),
        "RollingBack",
    ),
    Case("a-stored-pause-is-not-trusted", holding(pause_reason="User"), "Holding"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_derive_phase(case: Case) -> None:
    assert derive_phase(case.status) == case.phase
    assert pause_reason(case.status) == case.reason
    assert machine_state(case.status) == (case.machine or case.phase)
    assert derive_phase(case.status, paused=False) == (case.machine or case.phase)
