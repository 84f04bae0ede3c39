"""The one reconcile loop every kind (Release, Track, Experiment) runs. No kopf here.

    read body → validate spec → observe → plan (pure) → execute ONE action → reduce (pure) → persist
    (one status patch) → events derived from the status before and after → wait or go on

Each kind supplies a small :class:`Kind`: what to observe, the pure planner and reducer, how to carry out
an action, which events a step yields, and when it is done. The driver owns what the three loops used to
do each in their own way:

* **observedGeneration** is set from the body every round.
* **Errors are outcomes.** An error observing or executing reaches the kind's reducer (``observe_failed``;
  ``execute`` returns failures as outcomes), so a transient API or Git error never ends the loop and never
  skips a rollback. A status patch that fails is logged at WARNING, counted, and retried with backoff while
  the loop goes on with the status it has in memory (which stays authoritative).
* **Deleted means done.** A 404 on the status patch, ``alive()`` turning false (the object's DELETED
  event, the controller stopping), or ``may_act()`` saying no before a side effect (its namespace is being
  deleted: its objects are not deleted yet, but nothing may act in it any more) ends the loop: no action
  is started afterwards.
* **Side effects are persisted first**: before an action that changes the world, the status that led
  to it is written, so a controller killed at any point resumes without repeating a completed action.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from controller.errors import ObjectGone, StoplineError
from controller.models.common import Condition, set_condition

log = logging.getLogger("stopline.reconcile")

SpecT = TypeVar("SpecT")
StatusT = TypeVar("StatusT", bound=BaseModel)
FactsT = TypeVar("FactsT")
ActionT = TypeVar("ActionT")
OutcomeT = TypeVar("OutcomeT")

Event = tuple[str, str, str]  # (type, reason, message)


class Conditioned(Protocol):
    """A status with a message and conditions (all three kinds' statuses)."""

    message: str | None
    conditions: list[Condition]

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Any: ...


ConditionedT = TypeVar("ConditionedT", bound=Conditioned)


def mark_invalid(status: ConditionedT, message: str, now: datetime, generation: int | None) -> ConditionedT:
    """A copy of ``status`` saying the spec is invalid: ``message`` and ``Ready=False/InvalidSpec``."""
    s: ConditionedT = status.model_copy(deep=True)
    s.message = message
    s.conditions = set_condition(s.conditions, "Ready", "False", "InvalidSpec", message, now, generation)
    return s


#: Status writes that failed are retried after 0.5 s, 1 s, 2 s, ... up to this many seconds.
PERSIST_BACKOFF_MAX = 10.0


class Kind(Protocol[SpecT, StatusT, FactsT, ActionT, OutcomeT]):
    """What one kind plugs into the driver."""

    kind: str

    def parse_status(self, raw: Mapping[str, Any]) -> StatusT: ...

    def parse_spec(self, raw: Mapping[str, Any]) -> SpecT: ...

    def invalid(self, status: StatusT, message: str, now: datetime, generation: int | None) -> StatusT: ...

    def with_generation(self, status: StatusT, generation: int | None) -> StatusT: ...

    async def observe(self, spec: SpecT, status: StatusT, meta: Mapping[str, Any]) -> FactsT: ...

    def observe_failed(self, spec: SpecT, status: StatusT, error: StoplineError, now: datetime) -> StatusT: ...

    def plan(self, spec: SpecT, status: StatusT, facts: FactsT) -> ActionT: ...

    def is_side_effect(self, action: ActionT) -> bool: ...

    async def execute(self, spec: SpecT, status: StatusT, action: ActionT, facts: FactsT) -> OutcomeT: ...

    def reduce(self, spec: SpecT, status: StatusT, action: ActionT, outcome: OutcomeT, facts: FactsT) -> StatusT: ...

    def events(self, before: StatusT, after: StatusT, action: ActionT, outcome: OutcomeT) -> Iterable[Event]: ...

    def persist_now(self, status: StatusT, persisted: StatusT, action: ActionT, since_persist: float) -> bool: ...

    def sleep_for(self, spec: SpecT, status: StatusT, action: ActionT, facts: FactsT) -> float | None: ...

    def done(self, spec: SpecT, status: StatusT) -> bool: ...


@dataclass
class Context:
    """The one object the driver works on, and the channels it reports through."""

    kind: str
    namespace: str
    name: str
    read_body: Callable[[], Mapping[str, Any]]
    patch_status: Callable[[dict[str, Any]], Awaitable[None]]
    wait: Callable[[float], Awaitable[None]]
    clock: Callable[[], datetime]
    alive: Callable[[], bool] = lambda: True
    may_act: Callable[[], Awaitable[bool]] | None = None  # asked before every side effect (namespace deleted?)
    emit: Callable[[str, str, str], None] = lambda _t, _r, _m: None
    on_persist_error: Callable[[str], None] = lambda _k: None
    on_persist: Callable[[str, str], None] = lambda _k, _w: None  # a status write of kind, and what led to it
    monotonic: Callable[[], float] = field(default_factory=lambda: asyncio.get_running_loop().time)


def status_patch(status: BaseModel) -> dict[str, Any]:
    """A JSON merge patch for the status subresource; explicit nulls clear cleared fields."""
    return {"status": status.model_dump(mode="json", by_alias=True)}


def validation_message(exc: ValidationError) -> str:
    """Every problem of an invalid spec, with the field path: ``phases.0.hold: ...; gates.1: ...``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"] for e in exc.errors()
    )


class Driver(Generic[SpecT, StatusT, FactsT, ActionT, OutcomeT]):
    """Runs one object's loop until the kind says it is done, the object is gone or the loop is stopped."""

    def __init__(self, kind: Kind[SpecT, StatusT, FactsT, ActionT, OutcomeT], ctx: Context) -> None:
        self.k = kind
        self.ctx = ctx
        self.status: StatusT = kind.parse_status(ctx.read_body().get("status") or {})
        self.persisted: StatusT = self.status.model_copy(deep=True)
        self.persisted_at = ctx.monotonic()
        self.persist_failures = 0
        self.persist_retry_at = 0.0
        self.gone = False
        self._spec_raw: Mapping[str, Any] = {}
        self._spec: SpecT | None = None

    def _spec_of(self, raw: Mapping[str, Any]) -> SpecT:
        """The parsed spec, validated again only when it changed: parsing a Release's spec on every tick was
        a third of a replica's CPU at 500 Releases (validators included)."""
        if self._spec is None or raw != self._spec_raw:
            spec = self.k.parse_spec(raw)
            self._spec_raw, self._spec = copy.deepcopy(dict(raw)), spec
        return self._spec

    def _where(self) -> str:
        return f"{self.ctx.kind} {self.ctx.namespace}/{self.ctx.name}"

    async def persist(self, why: str, *, force: bool = False) -> bool:
        """Write the status if it changed; False when it could not be written (the loop goes on).

        ``why`` — the action whose result is written (or ``InvalidSpec``, ``Observe``) — labels the write in
        ``on_persist`` (``stopline_status_writes_total``): what a busy API server's status PATCHes are for."""
        if self.status == self.persisted:
            return True
        now = self.ctx.monotonic()
        if not force and self.persist_failures and now < self.persist_retry_at:
            return False
        try:
            await self.ctx.patch_status(status_patch(self.status))
        except ObjectGone:
            log.info("%s is gone: its loop ends", self._where())
            self.gone = True
            return False
        except Exception as exc:  # any failure to write is retried; only ObjectGone ends the loop
            self.persist_failures += 1
            delay = min(PERSIST_BACKOFF_MAX, 0.5 * 2 ** (self.persist_failures - 1))
            self.persist_retry_at = now + delay
            self.ctx.on_persist_error(self.ctx.kind)
            log.warning(
                "%s: cannot write status (attempt %d, next in %.1fs): %s",
                self._where(),
                self.persist_failures,
                delay,
                exc,
            )
            return False
        self.ctx.on_persist(self.ctx.kind, why)
        if self.persist_failures:
            log.warning("%s: status written again after %d failed attempt(s)", self._where(), self.persist_failures)
        self.persist_failures = 0
        self.persisted = self.status.model_copy(deep=True)
        self.persisted_at = now
        return True

    def _running(self) -> bool:
        return not self.gone and self.ctx.alive()

    def _emit(self, events: Iterable[Event]) -> None:
        if not self.ctx.alive():
            return
        for type_, reason, message in events:
            self.ctx.emit(type_, reason, message)

    async def run(self) -> StatusT:
        """Drive the object; returns the last status."""
        k, ctx = self.k, self.ctx
        while self._running():
            body = ctx.read_body()
            meta = body.get("metadata") or {}
            generation = meta.get("generation")
            try:
                spec = self._spec_of(body.get("spec") or {})
            except ValidationError as exc:
                message = f"invalid spec: {validation_message(exc)}"
                before = self.status
                self.status = k.invalid(self.status, message, ctx.clock(), generation)
                await self.persist("InvalidSpec", force=True)
                if self.status != before:  # once per new problem, not once per loop start
                    self._emit([("Warning", "InvalidSpec", message)])
                log.warning("%s: %s", self._where(), message)
                return self.status
            self.status = k.with_generation(self.status, generation)
            try:
                facts = await k.observe(spec, self.status, meta)
            except Exception as exc:  # an adapter bug or an unexpected client error must not end the loop
                error = exc if isinstance(exc, StoplineError) else StoplineError(f"{type(exc).__name__}: {exc}")
                log.warning("%s: cannot observe: %s", self._where(), error)
                self.status = k.observe_failed(spec, self.status, error, ctx.clock())
                await self.persist("Observe")
                await ctx.wait(min(PERSIST_BACKOFF_MAX, 1.0 + self.persist_failures))
                continue
            if not self._running():
                break
            action = k.plan(spec, self.status, facts)
            since = ctx.monotonic() - self.persisted_at
            if k.is_side_effect(action):
                if ctx.may_act is not None and not await ctx.may_act():
                    log.info("%s: may not act here now (namespace being deleted, or served by another replica): "
                             "its loop stops, %s not done", self._where(), type(action).__name__)  # fmt: skip
                    break
                await self.persist(f"before:{type(action).__name__}", force=True)
                if not self._running():
                    break  # deleted while the status was being written: start nothing
            outcome = await k.execute(spec, self.status, action, facts)
            before = self.status
            self.status = k.reduce(spec, before, action, outcome, facts)
            self._emit(k.events(before, self.status, action, outcome))
            if k.persist_now(self.status, self.persisted, action, since):
                await self.persist(type(action).__name__)
            if k.done(spec, self.status):
                if await self.persist("Done", force=not self.persist_failures) or self.gone:
                    return self.status
                await ctx.wait(min(PERSIST_BACKOFF_MAX, self.persist_retry_at - ctx.monotonic()))
                continue
            pause = k.sleep_for(spec, self.status, action, facts)
            if self.persist_failures and self.status != self.persisted:
                pause = min(pause if pause is not None else 1.0, max(0.05, self.persist_retry_at - ctx.monotonic()))
            if pause is not None and self._running():
                await ctx.wait(pause)
        return self.status
