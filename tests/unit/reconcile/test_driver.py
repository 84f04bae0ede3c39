"""The one reconcile loop, driven with a fake Kind: errors are outcomes, side effects happen once, a
deleted object stops the loop before anything else is started."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, Field

from controller.errors import ClusterError, ObjectGone, StoplineError
from controller.reconcile.driver import Context, Driver, Event

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Spec(BaseModel):
    target: int = Field(default=1, ge=0)


class Status(BaseModel):
    done: int = 0  # side effects recorded
    message: str | None = None
    observed_generation: int | None = None


@dataclass(frozen=True)
class Facts:
    now: datetime


@dataclass(frozen=True)
class Act:
    """The side effect: one unit of work in the world."""


@dataclass(frozen=True)
class Idle:
    """Nothing to do."""


@dataclass
class World:
    """The fake object and everything outside it; the clock moves only when the loop waits."""

    body: dict[str, Any] = field(
        default_factory=lambda: {"metadata": {"name": "x", "namespace": "ns", "generation": 1}, "spec": {}}
    )
    now: float = 0.0
    effects: int = 0
    observe_errors: int = 0
    patch_errors: list[Exception] = field(default_factory=list)  # raised by successive patches
    patches: list[dict[str, Any]] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    persist_errors: list[str] = field(default_factory=list)
    alive: bool = True
    die_on_observe: int | None = None  # the object is deleted while its n-th observation runs
    die_on_patch: int | None = None  # ... while its n-th status patch runs
    observes: int = 0
    max_waits: int = 50

    def clock(self) -> datetime:
        return T0 + timedelta(seconds=self.now)

    async def patch_status(self, patch: dict[str, Any]) -> None:
        n = len(self.patches) + 1
        if self.die_on_patch is not None and n == self.die_on_patch:
            self.alive = False
        if self.patch_errors:
            self.patches.append({"failed": True})
            raise self.patch_errors.pop(0)
        self.patches.append(json.loads(json.dumps(patch)))
        self.body["status"] = patch["status"]

    async def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += max(seconds, 0.0)
        if len(self.waits) >= self.max_waits:
            self.alive = False

    def context(self) -> Context:
        return Context(
            kind="Fake",
            namespace="ns",
            name="x",
            read_body=lambda: self.body,
            patch_status=self.patch_status,
            wait=self.wait,
            clock=self.clock,
            alive=lambda: self.alive,
            emit=lambda t, r, m: self.events.append((t, r, m)),
            on_persist_error=self.persist_errors.append,
            monotonic=lambda: self.now,
        )

    @property
    def written(self) -> list[dict[str, Any]]:
        return [p["status"] for p in self.patches if "status" in p]


class FakeKind:
    """Work ``spec.target`` units, one per round; done when all are recorded."""

    kind = "Fake"

    def __init__(self, world: World) -> None:
        self.w = world

    def parse_status(self, raw: Mapping[str, Any]) -> Status:
        return Status.model_validate(raw)

    def parse_spec(self, raw: Mapping[str, Any]) -> Spec:
        return Spec.model_validate(raw)

    def invalid(self, status: Status, message: str, now: datetime, generation: int | None) -> Status:
        return status.model_copy(update={"message": message, "observed_generation": generation})

    def with_generation(self, status: Status, generation: int | None) -> Status:
        status.observed_generation = generation
        return status

    async def observe(self, spec: Spec, status: Status, meta: Mapping[str, Any]) -> Facts:
        self.w.observes += 1
        if self.w.die_on_observe is not None and self.w.observes == self.w.die_on_observe:
            self.w.alive = False
        if self.w.observe_errors:
            self.w.observe_errors -= 1
            raise ClusterError("list: 503 Service Unavailable")
        return Facts(self.w.clock())

    def observe_failed(self, spec: Spec, status: Status, error: StoplineError, now: datetime) -> Status:
        return status.model_copy(update={"message": f"cannot observe: {error}"})

    def plan(self, spec: Spec, status: Status, facts: Facts) -> Act | Idle:
        return Act() if status.done < spec.target else Idle()

    def is_side_effect(self, action: Act | Idle) -> bool:
        return isinstance(action, Act)

    async def execute(self, spec: Spec, status: Status, action: Act | Idle, facts: Facts) -> bool:
        if isinstance(action, Act):
            self.w.effects += 1
            return True
        return False

    def reduce(self, spec: Spec, status: Status, action: Act | Idle, outcome: bool, facts: Facts) -> Status:
        if outcome:
            return status.model_copy(update={"done": status.done + 1, "message": f"did {status.done + 1}"})
        return status

    def events(self, before: Status, after: Status, action: Act | Idle, outcome: bool) -> Iterable[Event]:
        return [("Normal", "Did", after.message or "")] if outcome else []

    def persist_now(self, status: Status, persisted: Status, action: Act | Idle, since_persist: float) -> bool:
        return status != persisted

    def sleep_for(self, spec: Spec, status: Status, action: Act | Idle, facts: Facts) -> float | None:
        return 1.0 if isinstance(action, Idle) else None

    def done(self, spec: Spec, status: Status) -> bool:
        return status.done >= spec.target


async def drive(w: World) -> Status:
    return await Driver(FakeKind(w), w.context()).run()


async def test_a_plain_run_writes_the_status_and_ends_when_done() -> None:
    w = World()
    w.body["spec"] = {"target": 2}
    final = await drive(w)
    assert (final.done, w.effects, final.observed_generation) == (2, 2, 1)
    assert w.written[-1] == {"done": 2, "message": "did 2", "observed_generation": 1}
    assert [r for _, r, _ in w.events] == ["Did", "Did"]
    assert w.waits == []


async def test_an_observe_error_is_an_outcome_and_the_loop_goes_on() -> None:
    w = World(observe_errors=2)
    final = await drive(w)
    assert final.done == 1 and w.effects == 1
    # the failure reached the status (written), then the loop waited and tried again
    assert w.written[0]["message"] == "cannot observe: list: 503 Service Unavailable"
    assert w.waits[:2] == [1.0, 1.0]
    assert w.written[-1]["message"] == "did 1"


async def test_a_failing_status_write_is_retried_with_backoff_while_the_loop_goes_on() -> None:
    w = World(patch_errors=[ClusterError("503")] * 3)
    final = await drive(w)
    assert w.effects == 1, "the side effect ran once, whatever the status writes did"
    assert final.done == 1
    assert w.persist_errors == ["Fake"] * 3
    assert [("failed" in p) for p in w.patches] == [True, True, True, False]
    assert w.written == [{"done": 1, "message": "did 1", "observed_generation": 1}]
    # the loop waited out the backoff instead of spinning (the writes before a side effect and at the end
    # are forced, so they do not wait for it)
    assert w.waits and all(s > 0 for s in w.waits) and len(w.waits) <= 3


async def test_the_object_gone_on_a_status_write_ends_the_loop() -> None:
    w = World(patch_errors=[ObjectGone("releases/x: 404 Not Found")])
    w.body["spec"] = {"target": 5}
    await drive(w)
    # the status written before the first unit (forced) 404s: the loop ends; nothing more is started
    assert w.effects == 0
    assert w.persist_errors == [], "a deleted object is not a write error"
    assert len(w.patches) == 1


async def test_the_object_gone_after_some_work_ends_the_loop() -> None:
    w = World(patch_errors=[])
    w.body["spec"] = {"target": 5}
    w.die_on_patch = None

    async def gone_on_third(patch: dict[str, Any]) -> None:
        w.patches.append(patch)
        if len(w.patches) == 3:
            raise ObjectGone("uid mismatch")

    ctx = w.context()
    ctx.patch_status = gone_on_third
    await Driver(FakeKind(w), ctx).run()
    assert w.effects == 2 and len(w.patches) == 3


@pytest.mark.parametrize(
    ("deleted", "effects"),
    [("die_on_observe", 0), ("die_on_patch", 0)],
    ids=["deleted-while-observing", "deleted-while-writing-the-status-before-the-side-effect"],
)
async def test_not_alive_before_a_side_effect_means_it_is_never_started(deleted: str, effects: int) -> None:
    w = World()
    setattr(w, deleted, 1)
    await drive(w)
    assert w.effects == effects
    assert w.events == [], "no event for a deleted object"


async def test_stopped_between_rounds_starts_nothing_more() -> None:
    w = World(max_waits=1)
    w.body["spec"] = {"target": 3}
    kind = FakeKind(w)
    original = kind.sleep_for
    kind.sleep_for = lambda spec, status, action, facts: (
        1.0 if status.done == 1 else original(spec, status, action, facts)
    )  # type: ignore[method-assign]
    await Driver(kind, w.context()).run()
    assert w.effects == 1


async def test_an_invalid_spec_is_written_once_with_one_event_and_ends_the_loop() -> None:
    w = World()
    w.body["spec"] = {"target": -1}
    final = await drive(w)
    assert final.message is not None and final.message.startswith("invalid spec: target: ")
    assert len(w.written) == 1 and w.written[0]["message"] == final.message
    assert [(t, r) for t, r, _ in w.events] == [("Warning", "InvalidSpec")]
    assert w.effects == 0 and w.observes == 0 and w.waits == []


async def test_a_restarted_loop_over_the_same_invalid_spec_emits_no_second_event() -> None:
    w = World()
    w.body["spec"] = {"target": -1}
    await drive(w)
    await drive(w)  # the supervisor starts a new loop on the next watch event (e.g. our own status write)
    assert [(t, r) for t, r, _ in w.events] == [("Warning", "InvalidSpec")]
    assert len(w.written) == 1


async def test_observed_generation_follows_the_body_every_round() -> None:
    w = World()
    w.body["spec"] = {"target": 2}
    kind = FakeKind(w)
    observe = kind.observe

    async def bump(spec: Spec, status: Status, meta: Mapping[str, Any]) -> Facts:
        w.body["metadata"]["generation"] = 7
        return await observe(spec, status, meta)

    kind.observe = bump  # type: ignore[method-assign]
    final = await Driver(kind, w.context()).run()
    assert final.observed_generation == 7
    assert w.written[0]["observed_generation"] == 1


async def test_nothing_is_written_when_nothing_changed() -> None:
    w = World()
    w.body["status"] = {"done": 1, "message": "did 1", "observed_generation": 1}
    final = await drive(w)
    assert final.done == 1 and w.effects == 0 and w.patches == []


async def test_the_spec_is_validated_again_only_when_it_changed() -> None:
    w = World()
    w.body["spec"] = {"target": 2}
    parsed: list[dict[str, Any]] = []

    class Counting(FakeKind):
        def parse_spec(self, raw: Mapping[str, Any]) -> Spec:
            parsed.append(dict(raw))
            return super().parse_spec(raw)

        async def observe(self, spec: Spec, status: Status, meta: Mapping[str, Any]) -> Facts:
            if self.w.observes == 0:
                self.w.body["spec"] = {"target": 3}  # a new body from the watch
            elif self.w.observes == 1:
                self.w.body["spec"]["target"] = 4  # the same dict changed in place
            return await super().observe(spec, status, meta)

    final = await Driver(Counting(w), w.context()).run()
    # parsed: at the start, after each change; the rounds in between (observe → plan → act) reuse it
    assert parsed == [{"target": 2}, {"target": 3}, {"target": 4}]
    assert final.done == 4 and w.observes == 4
