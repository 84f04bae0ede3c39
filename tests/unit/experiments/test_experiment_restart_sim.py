"""The Experiment loop restarted after every step: the status round-trips through JSON and a new loop
starts from what was persisted. The published config converges to the spec's, and a restart publishes at
most once (a new process cannot know what the ConfigMap holds) — never again while nothing changes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from test_experiment_runner import CONFIGMAP, HARM, IMVU, PROM, T0, FakeCounts, FakePublisher, experiment_body

from controller.experiments.growthbook import GROWTHBOOK_SUFFIX
from controller.experiments.runner import run_experiment

TICKS = 12


@dataclass
class Sim:
    restart_each_step: bool
    publish_failures: int = 0
    body: dict[str, Any] = field(default_factory=experiment_body)
    counts: FakeCounts = field(default_factory=lambda: FakeCounts(IMVU))
    publisher: FakePublisher = field(default_factory=FakePublisher)
    ticks: int = 0
    runs: int = 0
    publishes_per_run: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.publisher.failures = self.publish_failures

    def clock(self) -> datetime:
        return T0 + timedelta(seconds=30 * self.ticks)

    async def patch_status(self, patch: dict[str, Any]) -> None:
        self.body["status"] = json.loads(json.dumps(patch["status"]))

    async def wait(self, _seconds: float) -> None:
        self.ticks += 1
        if self.ticks == 4:  # someone closes the experiment on the winner
            self.body["spec"]["closeOn"] = "enhanced"
            self.body["metadata"]["generation"] = 2
        if self.ticks == 8:  # then the numbers turn
            self.counts.answers = HARM

    async def run(self) -> dict[str, Any]:
        while self.ticks < TICKS:
            start, before = self.ticks, len(self.publisher.calls)
            self.runs += 1

            def stopped(start: int = start) -> bool:
                return self.ticks >= TICKS or (self.restart_each_step and self.ticks > start)

            await run_experiment(
                "shop",
                lambda: self.body,
                self.patch_status,
                self.counts,
                self.publisher,
                configmap=CONFIGMAP,
                prometheus_url=PROM,
                clock=self.clock,
                wait=self.wait,
                stopped=stopped,
            )
            self.publishes_per_run.append(len(self.publisher.calls) - before)
        status: dict[str, Any] = self.body["status"]
        return status


def published(sim: Sim) -> list[str | None]:
    return [
        json.loads(v)["closeOn"] if v else None
        for _, _, data, _ in sim.publisher.calls
        for k, v in data.items()
        if not k.endswith(GROWTHBOOK_SUFFIX)
    ]


def stable(status: dict[str, Any]) -> dict[str, Any]:
    """The status without the times a restart may move (lastTransitionTime of re-set conditions)."""
    out = dict(status)
    out["conditions"] = sorted((c["type"], c["status"], c["reason"]) for c in status.get("conditions", []))
    return out


async def test_the_uninterrupted_run_publishes_once_per_change() -> None:
    sim = Sim(restart_each_step=False)
    st = await sim.run()
    assert published(sim) == [None, "enhanced"]
    assert (st["decision"], st["closedOn"], st["observedGeneration"]) == ("Closed:enhanced", "enhanced", 2)


@pytest.mark.parametrize("failures", [0, 1, 3], ids=["publish-ok", "one-failed-publish", "three-failed-publishes"])
async def test_restart_after_every_step_converges_with_one_publish_per_restart_at_most(failures: int) -> None:
    plain = Sim(restart_each_step=False)
    plain_status = await plain.run()
    sim = Sim(restart_each_step=True, publish_failures=failures)
    st = await sim.run()
    assert sim.runs >= TICKS
    # every process publishes the live config once (it cannot know the ConfigMap), never twice while
    # nothing changes; a failed publication is retried at the next round
    assert all(n <= 1 + (failures > 0) for n in sim.publishes_per_run), sim.publishes_per_run
    assert sum(sim.publishes_per_run) <= sim.runs + failures + 1
    # the published config converges to the spec's: the last one written closes on the winner
    assert published(sim)[-1] == published(plain)[-1] == "enhanced"
    assert sim.publisher.failures == 0
    assert stable(st) == stable(plain_status)


async def test_a_process_that_keeps_running_does_not_publish_an_unchanged_config_again() -> None:
    sim = Sim(restart_each_step=False)
    await sim.run()
    rest = Sim(restart_each_step=False, body=sim.body)  # a restart over the persisted status
    rest.ticks = 8  # after the spec edit: nothing changes in the config from now on
    await rest.run()
    assert published(rest) == ["enhanced"], "one publication after the restart, then none"
