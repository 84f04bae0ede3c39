"""The delivery task beside an object's loop: sends its due outbox entries, one task per object at a time.

The loop starts it (``StartDelivery``, after writing the outbox) and later folds its results in
(``RecordDelivery``); it never waits for it, so a slow or dead receiver never delays a rollback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence

from controller.models.notify import OutboxEntry
from controller.notify.outbox import ActiveSink, DeliveryJob, DeliveryResult
from controller.notify.send import Sender

log = logging.getLogger("stopline.notify")


class Deliveries:
    """Delivery tasks by owner (a Release's or Track's UID)."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender
        self._tasks: dict[str, asyncio.Task[tuple[DeliveryResult, ...]]] = {}

    def job(self, owner: str) -> DeliveryJob | None:
        """The task running for this owner, or its results once (then it is forgotten)."""
        task = self._tasks.get(owner)
        if task is None:
            return None
        if not task.done():
            return DeliveryJob(running=True)
        del self._tasks[owner]
        if task.cancelled() or task.exception() is not None:
            return DeliveryJob(running=False)  # nothing recorded: the entries stay due and are tried again
        return DeliveryJob(running=False, results=task.result())

    def start(
        self,
        owner: str,
        namespace: str,
        sinks: Sequence[ActiveSink],
        entries: Iterable[OutboxEntry],
        done: Callable[[], None],
    ) -> None:
        """Send ``entries`` concurrently in the background; ``done`` is called when all have answered."""
        if owner in self._tasks:
            return
        by_name = {a.sink.name: a for a in sinks}
        batch = list(entries)

        async def one(e: OutboxEntry) -> DeliveryResult:
            active = by_name.get(e.sink)
            if active is None:
                return DeliveryResult(e.key, ok=False, at=self.sender.clock(), error=f"sink {e.sink!r} is gone")
            result = await self.sender.send(namespace, active.sink, active.default, e)
            if not result.ok:
                log.warning(
                    "notification %s to %s sink %s failed (attempt %d): %s",
                    e.key,
                    e.sink_type,
                    e.sink,
                    e.attempts + 1,
                    result.error,
                )
            return result

        async def run() -> tuple[DeliveryResult, ...]:
            return tuple(await asyncio.gather(*(one(e) for e in batch)))

        task = asyncio.ensure_future(run())
        task.add_done_callback(lambda _t: done())
        self._tasks[owner] = task

    def forget(self, owner: str) -> None:
        """The owner's loop stops: a task in flight is cancelled (its entries stay Pending, sent next time)."""
        task = self._tasks.pop(owner, None)
        if task is not None and not task.done():
            task.cancel()
