"""One asyncio task per live object: started by the watch, stopped at once by a deletion, restarted after
a crash. Real tasks on the event loop with millisecond timeouts (no sleeping beyond that)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from controller.reconcile.supervisor import Run, Supervisor, default_wake

FOREVER = 3600.0


def body(uid: str = "u1", name: str = "web", **meta: Any) -> dict[str, Any]:
    return {"metadata": {"uid": uid, "name": name, "namespace": "shop", "generation": 1, **meta}, "spec": {}}


class Loops:
    """A start function whose loops wait (via ``run.wait``) and record what they saw."""

    def __init__(self, *, crash_times: int = 0) -> None:
        self.started: list[str] = []
        self.ended: list[tuple[str, bool]] = []
        self.wakes = 0
        self.crash_times = crash_times
        self.actions_after_stop = 0
        self.stopped_callbacks: list[str] = []

    async def __call__(self, run: Run) -> None:
        self.started.append(run.uid)
        run.on_stop.append(lambda: self.stopped_callbacks.append(run.uid))
        if self.crash_times:
            self.crash_times -= 1
            raise RuntimeError("bug in the loop")
        while run.alive():
            await run.wait(FOREVER)
            if run.alive():
                self.wakes += 1
        self.ended.append((run.uid, run.deleted))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_live_object_gets_exactly_one_loop() -> None:
    loops = Loops()
    sup = Supervisor("Release", loops)
    sup.on_event(None, body())
    sup.on_event("ADDED", body())
    sup.on_event("MODIFIED", body())
    await settle()
    assert loops.started == ["u1"] and sup.active() == 1
    assert sup.running("shop", "web") is not None
    await sup.shutdown(grace=1.0)


async def test_deleted_stops_the_run_within_one_wait_and_calls_on_stop() -> None:
    loops = Loops()
    sup = Supervisor("Release", loops)
    sup.on_event("ADDED", body())
    await settle()
    run = sup.running("shop", "web")
    assert run is not None and run.task is not None
    sup.on_event("DELETED", body())
    assert not run.alive() and run.deleted
    assert loops.stopped_callbacks == ["u1"], "work beside the loop is cancelled at once"
    await asyncio.wait_for(run.task, timeout=0.5)  # the FOREVER wait returned at once
    assert loops.ended == [("u1", True)]
    assert sup.active() == 0 and sup.running("shop", "web") is None


async def test_a_deletion_timestamp_stops_the_run() -> None:
    loops = Loops()
    gone: list[str] = []
    sup = Supervisor("Track", loops, on_gone=lambda r: gone.append(r.uid))
    sup.on_event("ADDED", body())
    await settle()
    run = sup.running("shop", "web")
    assert run is not None and run.task is not None
    sup.on_event("MODIFIED", body(deletionTimestamp="2026-03-01T12:00:00Z"))
    await asyncio.wait_for(run.task, timeout=0.5)
    assert loops.ended == [("u1", True)] and gone == ["u1"]
    # later events of the object being deleted never start it again
    sup.on_event("MODIFIED", body(deletionTimestamp="2026-03-01T12:00:00Z"))
    await settle()
    assert loops.started == ["u1"]


async def test_an_object_not_wanted_never_gets_a_loop() -> None:
    loops = Loops()
    sup = Supervisor("Release", loops, wanted=lambda b: (b.get("status") or {}).get("phase") != "Succeeded")
    done = {**body(), "status": {"phase": "Succeeded"}}
    sup.on_event(None, done)
    sup.on_event("MODIFIED", done)
    await settle()
    assert loops.started == [] and sup.active() == 0


async def test_events_without_identity_are_ignored() -> None:
    loops = Loops()
    sup = Supervisor("Release", loops)
    sup.on_event("ADDED", {"metadata": {"name": "web", "namespace": "shop"}})
    await settle()
    assert loops.started == []


async def test_a_crashed_loop_is_restarted_after_the_backoff() -> None:
    loops = Loops(crash_times=2)
    sup = Supervisor("Release", loops, restart_backoff=0.01)
    sup.on_event("ADDED", body())
    for _ in range(100):
        if len(loops.started) >= 3:
            break
        await asyncio.sleep(0.005)
    assert loops.started == ["u1", "u1", "u1"]
    await settle()
    assert sup.active() == 1
    await sup.shutdown(grace=1.0)
    assert loops.ended == [("u1", False)]


async def test_a_crashed_loop_of_a_deleted_object_is_not_restarted() -> None:
    loops = Loops(crash_times=1)
    sup = Supervisor("Release", loops, restart_backoff=0.02)
    sup.on_event("ADDED", body())
    await settle()
    sup.on_event("DELETED", body())
    await asyncio.sleep(0.05)
    assert loops.started == ["u1"] and sup.active() == 0


async def test_an_event_during_the_crash_backoff_starts_one_loop_not_two() -> None:
    loops = Loops(crash_times=1)
    sup = Supervisor("Release", loops, restart_backoff=0.02)
    sup.on_event("ADDED", body())
    await settle()
    sup.on_event("MODIFIED", body())  # the watch sees the object again while the crashed loop backs off
    await asyncio.sleep(0.05)
    assert loops.started == ["u1", "u1"] and sup.active() == 1
    await sup.shutdown(grace=1.0)


async def test_shutdown_stops_every_loop_and_starts_no_new_one() -> None:
    loops = Loops()
    sup = Supervisor("Release", loops)
    for i in range(3):
        sup.on_event("ADDED", body(uid=f"u{i}", name=f"web-{i}"))
    await settle()
    assert sup.active() == 3
    await asyncio.wait_for(sup.shutdown(grace=1.0), timeout=1.0)
    assert sorted(loops.ended) == [("u0", False), ("u1", False), ("u2", False)]
    assert sup.active() == 0
    sup.on_event("ADDED", body(uid="u9", name="late"))
    await settle()
    assert "u9" not in loops.started


async def test_shutdown_cancels_a_loop_that_ignores_the_stop() -> None:
    async def stubborn(run: Run) -> None:
        await asyncio.sleep(FOREVER)

    sup = Supervisor("Release", stubborn)
    sup.on_event("ADDED", body())
    await settle()
    run = sup.running("shop", "web")
    assert run is not None and run.task is not None
    await asyncio.wait_for(sup.shutdown(grace=0.01), timeout=1.0)
    assert run.task.cancelled()


async def test_wake_ends_the_wait_early_and_by_name() -> None:
    loops = Loops()
    sup = Supervisor("Track", loops)
    sup.on_event("ADDED", body())
    await settle()
    assert sup.wake("shop", "web") and not sup.wake("shop", "other")
    await settle()
    assert loops.wakes == 1
    # a change users make (annotations, spec) wakes it; our own status write does not
    sup.on_event("MODIFIED", body(annotations={"stopline.dev/unlock": "x"}))
    await settle()
    sup.on_event("MODIFIED", {**body(annotations={"stopline.dev/unlock": "x"}), "status": {"message": "ours"}})
    await settle()
    assert loops.wakes == 2
    await sup.shutdown(grace=1.0)


async def test_a_wake_before_the_wait_is_not_lost() -> None:
    run = Run(namespace="shop", name="web", uid="u1", body=body())
    run.wake()
    await asyncio.wait_for(run.wait(FOREVER), timeout=0.5)
    assert not run.woken.is_set()


async def test_a_failing_on_stop_does_not_keep_the_others_from_running() -> None:
    run = Run(namespace="shop", name="web", uid="u1", body=body())
    called: list[str] = []

    def boom() -> None:
        raise RuntimeError("cancel failed")

    run.on_stop.extend([boom, lambda: called.append("second")])
    run.stop(deleted=True)
    run.stop(deleted=True)  # idempotent
    assert called == ["second"] and run.deleted


@pytest.mark.parametrize(
    ("old", "new", "wake"),
    [
        ({"generation": 1}, {"generation": 2}, True),
        ({"generation": 1, "annotations": {"a": "1"}}, {"generation": 1, "annotations": {"a": "2"}}, True),
        ({"generation": 1}, {"generation": 1}, False),
        ({"generation": 1, "resourceVersion": "1"}, {"generation": 1, "resourceVersion": "2"}, False),
    ],
    ids=["spec-edit", "annotation", "nothing", "status-write"],
)
def test_default_wake(old: Mapping[str, Any], new: Mapping[str, Any], wake: bool) -> None:
    assert default_wake({"metadata": old}, {"metadata": new}) is wake


def in_ns(uid: str, namespace: str) -> dict[str, Any]:
    b = body(uid, name=f"obj-{uid}")
    b["metadata"]["namespace"] = namespace
    return b


async def test_objects_of_namespaces_served_elsewhere_are_parked_and_started_when_served() -> None:
    loops = Loops()
    served: dict[str, bool | None] = {"mine": True, "theirs": False}
    sup = Supervisor("Release", loops, serves=lambda ns: served.get(ns))
    sup.on_event(None, in_ns("a", "mine"))
    sup.on_event(None, in_ns("b", "theirs"))
    sup.on_event(None, in_ns("c", "out-of-scope"))
    await settle()
    assert loops.started == ["a"] and sup.parked() == 1  # out of scope: not even parked

    newer = in_ns("b", "theirs")
    newer["status"] = {"phase": "Holding"}
    sup.on_event("MODIFIED", newer)  # the other replica's writes keep the parked body fresh
    served["theirs"] = True  # our shard now (the other replica's Lease expired)
    sup.resync()
    await settle()
    assert loops.started == ["a", "b"] and sup.parked() == 0
    run = sup.running("theirs", "obj-b")
    assert run is not None and run.read_body()["status"] == {"phase": "Holding"}
    await sup.shutdown(grace=1.0)


async def test_losing_a_namespace_stops_its_loop_not_as_deleted_and_parks_it() -> None:
    loops = Loops()
    served = {"shop": True}
    sup = Supervisor("Release", loops, serves=lambda ns: served.get(ns))
    sup.on_event(None, in_ns("a", "shop"))
    await settle()
    served["shop"] = False
    sup.resync()
    await settle()
    assert loops.ended == [("a", False)] and sup.active() == 0 and sup.parked() == 1
    assert loops.stopped_callbacks == ["a"]  # work beside the loop (a revert attempt) is cancelled too

    served["shop"] = True
    sup.resync()
    await settle()
    assert loops.started == ["a", "a"] and sup.active() == 1  # started again, exactly once
    sup.on_event("DELETED", in_ns("a", "shop"))
    await settle()
    assert sup.parked() == 0 and sup.active() == 0
    await sup.shutdown(grace=1.0)


async def test_a_loop_that_stops_itself_because_its_namespace_is_not_served_is_parked_and_restarted() -> None:
    served = {"shop": True}
    started: list[str] = []

    async def start(run: Run) -> None:
        started.append(run.uid)
        await run.wait(FOREVER)  # then, like the driver when may_act() says no, it just returns

    sup = Supervisor("Release", start, serves=lambda ns: served.get(ns))
    sup.on_event(None, in_ns("a", "shop"))
    await settle()
    served["shop"] = False  # our Lease lapsed (no resync yet): the loop finds out itself and ends
    assert sup.wake("shop", "obj-a")
    await settle()
    assert sup.active() == 0 and sup.parked() == 1, "a loop that ended while not served must be parked"
    served["shop"] = True
    sup.resync()
    await settle()
    assert started == ["a", "a"] and sup.active() == 1
    await sup.shutdown(grace=1.0)


async def test_with_fetch_another_shards_objects_are_parked_by_name_and_read_fresh_on_takeover() -> None:
    loops = Loops()
    served: dict[str, bool | None] = {"theirs": False}
    live = {"obj-b": in_ns("b", "theirs"), "obj-c": in_ns("c-new", "theirs")}  # c was deleted and re-created
    live["obj-b"]["status"] = {"phase": "Holding", "note": "x" * 10_000}
    fetched: list[str] = []

    async def fetch(namespace: str, name: str) -> dict[str, Any] | None:
        fetched.append(name)
        return live.get(name)

    sup = Supervisor("Release", loops, serves=lambda ns: served.get(ns), fetch=fetch)
    for uid in ("b", "c", "d"):  # d: gone by the takeover
        sup.on_event(None, {**in_ns(uid, "theirs"), "status": {"note": "y" * 10_000}})
    assert sup.parked() == 3
    assert all(isinstance(p, tuple) for p in sup._parked.values()), "no other shard's body is kept"
    served["theirs"] = True
    sup.resync()
    sup.resync()  # a second round before the reads answered: each is read once
    await settle()
    assert sorted(fetched) == ["obj-b", "obj-c", "obj-d"]
    assert loops.started == ["b"] and sup.parked() == 0, "gone or replaced objects are not started"
    run = sup.running("theirs", "obj-b")
    assert run is not None and run.read_body()["status"]["phase"] == "Holding"
    await sup.shutdown(grace=1.0)


async def test_an_unreadable_taken_over_object_stays_parked_and_is_tried_again() -> None:
    loops = Loops()
    served: dict[str, bool | None] = {"theirs": False}
    failures = [RuntimeError("API server unreachable")]

    async def fetch(namespace: str, name: str) -> dict[str, Any] | None:
        if failures:
            raise failures.pop()
        return in_ns("b", "theirs")

    sup = Supervisor("Release", loops, serves=lambda ns: served.get(ns), fetch=fetch)
    sup.on_event(None, in_ns("b", "theirs"))
    served["theirs"] = True
    sup.resync()
    await settle()
    assert loops.started == [] and sup.parked() == 1
    sup.resync()  # the next Lease round
    await settle()
    assert loops.started == ["b"] and sup.parked() == 0
    await sup.shutdown(grace=1.0)


async def test_a_late_event_older_than_what_an_ended_loop_wrote_does_not_start_it_again() -> None:
    started: list[str] = []

    async def finish(run: Run) -> None:  # one step: writes its final status (resourceVersion 12) and ends
        started.append(str(run.body["metadata"]["resourceVersion"]))
        run.wrote("12")

    sup = Supervisor("Release", finish)
    sup.on_event("ADDED", body(resourceVersion="10"))
    await settle()
    assert started == ["10"] and sup.active() == 0
    sup.on_event("MODIFIED", body(resourceVersion="11"))  # the watch delivers an earlier write late
    sup.on_event("MODIFIED", body(resourceVersion="12"))  # ... and the loop's own last write
    await settle()
    assert started == ["10"], "a stale event started the ended loop again (it would repeat its last step)"
    sup.on_event("MODIFIED", body(resourceVersion="13"))  # a real change after the end (a new annotation)
    await settle()
    assert started == ["10", "13"]
    await sup.shutdown(grace=1.0)
