"""The Track loop restarted after every step: the status is round-tripped through its JSON wire form and a
new loop (a new controller process) starts from what was persisted. Optionally the process is also killed
on one status write. Whatever the restart points, the Releases created are those of an uninterrupted run
and none is created twice (the fake ``create`` also checks the push lock)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from test_track_runner import REF, SPEC, T0, Crash, FakeGit, FakeObjects, sha

from controller.models.track import TrackStatus
from controller.track.plan import ANNOTATION_UNLOCK
from controller.track.runner import run_track

UNLOCK = json.dumps({"by": "alice", "reason": "fixed"})
TICKS = 16


@dataclass
class Sim:
    """The Track as the API server holds it, the world around it, and a timeline of changes by tick."""

    restart_each_step: bool
    crash_on_patch: int | None = None  # kill the process on this status write (counted over the whole run)
    git: FakeGit = field(default_factory=lambda: FakeGit(sha("a")))
    objects: FakeObjects = field(default_factory=FakeObjects)
    body: dict[str, Any] = field(
        default_factory=lambda: {
            "metadata": {"name": "web", "namespace": "shop", "uid": REF.uid, "generation": 1, "annotations": {}},
            "spec": SPEC,
        }
    )
    ticks: int = 0
    writes: int = 0
    runs: int = 0
    crashes: int = 0

    def clock(self) -> datetime:
        return T0 + timedelta(seconds=self.ticks)

    def timeline(self, tick: int) -> None:
        o, g = self.objects, self.git
        steps: dict[int, Callable[[], None]] = {
            2: lambda: o.finish("web-aaaaaaa", "Succeeded"),
            3: lambda: g.push(sha("b")),
            5: lambda: o.finish(
                "web-bbbbbbb",
                "RolledBack",
                failure={"message": "gate load 9 > 6"},
                revert={"state": "Pending", "reason": "Unreachable: connection refused"},
            ),
            6: lambda: g.push(sha("c")),  # must wait: b is still on the branch without its revert
            8: lambda: self.body["metadata"]["annotations"].update({ANNOTATION_UNLOCK: UNLOCK}),  # refused
            10: lambda: (
                g.push(sha("e"), reverts=sha("b")),
                o.releases["web-bbbbbbb"]["status"].update(revert={"state": "Pushed", "commit": sha("e")}),
            ),
            11: lambda: self.body["metadata"]["annotations"].update(
                {ANNOTATION_UNLOCK: json.dumps({"by": "alice", "reason": "revert landed"})}
            ),
            14: lambda: o.finish("web-eeeeeee", "Succeeded"),
        }
        if tick in steps:
            steps[tick]()

    async def patch_status(self, patch: dict[str, Any]) -> None:
        self.writes += 1
        if self.crash_on_patch is not None and self.writes == self.crash_on_patch:
            raise Crash("killed on a status write")
        self.body["status"] = json.loads(json.dumps(patch["status"]))  # the wire form

    async def wait(self, _seconds: float) -> None:
        self.ticks += 1
        self.timeline(self.ticks)

    async def run(self) -> TrackStatus:
        while self.ticks < TICKS:
            start = self.ticks
            self.runs += 1

            def stopped(start: int = start) -> bool:
                return self.ticks >= TICKS or (self.restart_each_step and self.ticks > start)

            try:
                await run_track(
                    REF,
                    lambda: self.body,
                    self.patch_status,
                    self.git,
                    self.objects,
                    clock=self.clock,
                    wait=self.wait,
                    stopped=stopped,
                    owned=self.objects.owned,
                )
            except Crash:
                self.crashes += 1
        return TrackStatus.model_validate(self.body.get("status") or {})


async def baseline() -> tuple[Sim, TrackStatus]:
    sim = Sim(restart_each_step=False)
    return sim, await sim.run()


async def test_the_uninterrupted_run_does_what_the_timeline_says() -> None:
    sim, st = await baseline()
    assert list(sim.objects.releases) == ["web-aaaaaaa", "web-bbbbbbb", "web-eeeeeee"]
    assert [(h.release, h.result) for h in st.history] == [
        ("web-eeeeeee", "Succeeded"),
        ("web-bbbbbbb", "RolledBack"),
        ("web-aaaaaaa", "Succeeded"),
    ]
    assert st.missing_reverts == [] and not st.commit_lock.locked and st.current is None
    assert sim.objects.releases["web-eeeeeee"]["metadata"]["annotations"]["stopline.dev/skipped-commits"] == sha("c")


async def test_restart_after_every_step_changes_nothing() -> None:
    plain, plain_status = await baseline()
    sim = Sim(restart_each_step=True)
    st = await sim.run()
    assert sim.runs > 10
    assert list(sim.objects.releases) == list(plain.objects.releases)
    assert sorted(set(sim.objects.create_calls)) == sorted(plain.objects.releases)
    assert st.model_dump(mode="json") == plain_status.model_dump(mode="json")


@pytest.mark.parametrize("crash", range(1, 16), ids=lambda n: f"killed-on-write-{n}")
async def test_a_kill_on_any_status_write_creates_no_release_twice(crash: int) -> None:
    plain, plain_status = await baseline()
    sim = Sim(restart_each_step=True, crash_on_patch=crash)
    st = await sim.run()
    assert sim.crashes == 1
    assert list(sim.objects.releases) == list(plain.objects.releases)
    # a kill between creating a Release and recording it may re-send the create (a 409): never a second Release
    repeats = {n: sim.objects.create_calls.count(n) for n in sim.objects.create_calls}
    assert all(n <= 2 for n in repeats.values()), repeats
    assert [(h.release, h.result) for h in st.history] == [(h.release, h.result) for h in plain_status.history]
    assert (st.missing_reverts, st.commit_lock.locked, st.current) == ([], False, None)
