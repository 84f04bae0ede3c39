"""Which status changes the release loop writes at once, and which it batches."""

from __future__ import annotations

from sim import at, release_status, row

from controller.release.runner import readings_only


def test_a_new_reading_that_changes_no_verdict_is_batched() -> None:
    before = release_status("Holding", "canary", gauges=[row("load", "canary", pre=4.0)])
    after = before.model_copy(deep=True)
    after.gauges = [row("load", "canary", pre=4.0).model_copy(update={"post_push": 4.2, "readings": 3, "at": at(3)})]
    assert readings_only(after, before)


def test_a_verdict_or_counter_change_is_written_at_once() -> None:
    before = release_status("Holding", "canary", gauges=[row("load", "canary", pre=4.0)])
    failed = before.model_copy(deep=True)
    failed.gauges = [row("load", "canary", pre=4.0).model_copy(update={"verdict": "Fail", "breaches": 1})]
    assert not readings_only(failed, before)
    extra_row = before.model_copy(deep=True)
    extra_row.gauges = [*before.gauges, row("load", "watch", pre=4.0)]
    assert not readings_only(extra_row, before)


def test_any_change_outside_the_gauges_is_written_at_once() -> None:
    before = release_status("Holding", "canary", gauges=[row("load", "canary", pre=4.0)])
    after = before.model_copy(update={"message": "paused: gate(s) inconclusive"})
    assert not readings_only(after, before)


def test_an_answer_from_the_provider_cache_does_not_make_the_gate_due_again() -> None:
    """A fast-failing Prometheus answered from the provider's cache must be counted once per interval."""
    from sim import make_spec, phase_status

    from controller.gates.evaluate import Measurement
    from controller.release.actions import EvaluateGates, Facts, Readings, Wait
    from controller.release.plan import plan
    from controller.release.status import reduce

    spec = make_spec(
        phases=[{"name": "canary", "deployments": ["web-canary"], "hold": "60s"}],
        gates=[{"name": "load", "query": "max(load)", "max": 6, "interval": "1s", "inconclusiveLimit": 1000}],
    )
    status = release_status(
        "Holding",
        "canary",
        [phase_status("canary", "Holding", ["web-canary"], started_at=at(0), available_at=at(1), hold_until=at(61))],
        gauges=[row("load", "canary", pre=4.0)],
        snapshot=["web-canary"],
    )
    stale = Measurement(None, at(1), error="prometheus unreachable: ConnectionError")
    status = reduce(spec, status, EvaluateGates("canary", ("load",)), Readings({"load": stale}), at(10))
    action = plan(spec, status, Facts(now=at(10)))
    assert isinstance(action, Wait) and action.until == at(11)
    assert status.gauges[0].inconclusive == 1


def test_no_status_write_between_a_tripping_reading_and_the_undo() -> None:
    from sim import make_spec, phases

    from controller.models.release import FailureStatus, UndoStatus
    from controller.release.actions import EvaluateGates, FailPush
    from controller.release.runner import about_to_undo

    spec = make_spec(gates=[{"name": "load", "query": "max(x)", "max": 6, "failureLimit": 1}])
    holding = release_status("Holding", "canary", phases(canary="Holding"))
    reading = EvaluateGates("canary", ("load",))
    tolerated = holding.model_copy(update={"gauges": [row("load", "canary", verdict="Fail", breaches=1, readings=1)]})
    tripped = holding.model_copy(update={"gauges": [row("load", "canary", verdict="Fail", breaches=2, readings=2)]})
    assert not about_to_undo(spec, tolerated, reading)  # within failureLimit: written as usual
    assert about_to_undo(spec, tripped, reading)  # FailPush and the Undo (which writes first) come next
    failed = tripped.model_copy(update={"failure": FailureStatus(reason="GateFailed", message="x", at=at(1))})
    fail = FailPush("GateFailed", "x", gate="load", phase="canary")
    assert about_to_undo(spec, failed, fail)
    undone = failed.model_copy(update={"undo": UndoStatus(at=at(2))})
    assert not about_to_undo(spec, undone, fail)


def test_readings_only_writes_are_spread_over_more_time_the_more_releases_run() -> None:
    from controller.release.runner import readings_interval

    # at most 10 such PATCHes per second per replica; never more often than 5 s, never rarer than 60 s
    assert [readings_interval(n) for n in (0, 1, 50, 100, 500, 2000)] == [5.0, 5.0, 5.0, 10.0, 50.0, 60.0]


def test_a_readings_only_change_is_written_once_the_interval_for_the_load_has_passed() -> None:
    from typing import cast

    from controller.release.actions import EvaluateGates
    from controller.release.executor import Executor, ReleaseRef
    from controller.release.runner import Hooks, ReleaseKind

    before = release_status("Holding", "canary", gauges=[row("load", "canary", pre=4.0)])
    after = before.model_copy(deep=True)
    after.gauges = [row("load", "canary", pre=4.0).model_copy(update={"post_push": 4.2, "readings": 3, "at": at(3)})]
    kind = ReleaseKind(
        ReleaseRef("shop", "web-1", "u1"),
        cast(Executor, None),  # persist_now uses none of it
        Hooks(),
        tick=0.25,
        wake=lambda: None,
        monotonic=lambda: 0.0,
        readings_every=lambda: 50.0,  # 500 Releases running here
    )
    reading = EvaluateGates("canary", ("load",))
    assert not kind.persist_now(after, before, reading, since_persist=49.0)
    assert kind.persist_now(after, before, reading, since_persist=50.0)


def test_a_rollout_waits_longer_between_looks_while_the_watch_wakes_it_and_a_rollback_does_not() -> None:
    from typing import cast

    from sim import make_spec

    from controller.release.actions import Facts, Wait
    from controller.release.executor import Executor, ReleaseRef
    from controller.release.runner import Hooks, ReleaseKind

    kind = ReleaseKind(
        ReleaseRef("shop", "web-1", "u1"),
        cast(Executor, None),
        Hooks(),
        tick=0.25,
        wake=lambda: None,
        monotonic=lambda: 0.0,
        rollout_tick=lambda: 1.0,  # the workload watch is live
    )
    spec, facts, wait = make_spec(), Facts(now=at(0)), Wait(None, "rolling out")
    waits = {
        phase: kind.sleep_for(spec, release_status(phase, "canary"), wait, facts)
        for phase in ("Progressing", "RollingBack", "Holding")
    }
    assert waits == {"Progressing": 1.0, "RollingBack": 0.25, "Holding": 1.0}
    soon = Wait(at(0.4), "hold")
    assert kind.sleep_for(spec, release_status("Progressing", "canary"), soon, facts) == 0.4  # a due time wins
