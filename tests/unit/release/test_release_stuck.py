"""A stuck rollout explains itself and fails fast when it cannot heal (issue 17): planner, reducer, events.

State in → action out, then the reducer's record; the grace ``stuckAfter`` counts from a time kept in
the status, so a controller restart (the status round-tripped through JSON) resumes it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError
from sim import T0, FakeClock, World, at, make_spec, phases, release_status, roundtrip, run

from controller.kube.causes import make_cause
from controller.models.release import FailureStatus, ReleaseSpec, ReleaseStatus, UndoStatus
from controller.models.track import TrackSpec
from controller.release.actions import (
    Action,
    Cause,
    Done,
    Facts,
    FailPush,
    LiveDeployment,
    MarkAvailable,
    MarkRolledBack,
    NoteStuck,
    Wait,
)
from controller.release.plan import plan
from controller.release.runner import readings_only, release_events
from controller.release.status import reduce

SPEC = make_spec(stuckAfter="10s", progressDeadline="2m")
KEY = "web-canary"  # the canary phase's only workload (bare name: a Deployment)
SA = make_cause(
    KEY,
    "FailedCreate",
    'pods "web-canary-7f9-" is forbidden: error looking up service account shop/web: serviceaccount "web" not found',
)
QUOTA = make_cause(
    KEY,
    "FailedCreate",
    'pods "web-canary-7f9-x2" is forbidden: exceeded quota: small, requested: requests.cpu=2, '
    "used: requests.cpu=0, limited: requests.cpu=1",
)
PULL = make_cause(KEY, "ErrImagePull", "registry.example/web:v2-bad", pods=2, image=True)
BACKOFF = make_cause(KEY, "ImagePullBackOff", "registry.example/web:v2-bad", pods=2, image=True)
BACKOFF_1 = make_cause(KEY, "ImagePullBackOff", "registry.example/web:v2-bad", pods=1, image=True)
UNSCHEDULABLE = make_cause(
    KEY, "Unschedulable", "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.", pods=1
)
CREATING = make_cause(KEY, "ContainerCreating", pods=1)


def rolling_out() -> ReleaseStatus:
    """Canary applied at t=0 and rolling out."""
    return release_status("Progressing", "canary", phases(canary="Progressing"), snapshot=["web-canary"])


def seen(now: float, cause: Cause | None, available: bool = False) -> Facts:
    live = {KEY: LiveDeployment(KEY, available=available, cause=cause)}
    return Facts(now=at(now), live=live)


def step(spec: ReleaseSpec, status: ReleaseStatus, facts: Facts) -> tuple[Action, ReleaseStatus]:
    """One round of the loop: plan, then the reducer's record (Wait changes nothing)."""
    action = plan(spec, status, facts)
    if isinstance(action, Wait):
        return action, status
    return action, reduce(spec, status, action, Done(), facts.now)


def stuck_of(status: ReleaseStatus) -> object:
    return status.phases[0].stuck


# ------------------------------------------------------------------------------------------ rollout
def test_a_cause_that_cannot_heal_is_recorded_at_once_and_says_when_it_fails() -> None:
    action, status = step(SPEC, rolling_out(), seen(1, SA))

    assert action == NoteStuck("canary", SA, at(1), at(11))
    stuck = status.phases[0].stuck
    assert stuck is not None
    assert (stuck.workload, stuck.reason, stuck.heals, stuck.since, stuck.fails_at) == (
        KEY,
        "FailedCreate",
        False,
        at(1),
        at(11),
    )
    assert stuck.message == f"web-canary: FailedCreate: {SA.detail}"
    assert status.message == (
        f"phase canary stuck: {SA.message}; cannot heal by waiting, fails at 12:00:11Z (stuckAfter 10s)"
    )
    assert status.phase == "Progressing"


@pytest.mark.parametrize(
    ("now", "want"),
    [
        (5.0, Wait(at(11), f"phase canary stuck: {SA.message}")),
        (10.9, Wait(at(11), f"phase canary stuck: {SA.message}")),
        (
            11.0,
            FailPush(
                "FailedCreate",
                f"{SA.message} (phase canary: cannot heal by waiting; stuck 10s)",
                phase="canary",
            ),
        ),
    ],
    ids=["4s-after", "just-before-stuck-after", "at-stuck-after"],
)
def test_fails_after_stuck_after_not_before(now: float, want: Action) -> None:
    _, status = step(SPEC, rolling_out(), seen(1, SA))
    assert plan(SPEC, status, seen(now, SA)) == want


def test_the_failure_carries_the_cause_as_reason_and_message_then_rolls_back() -> None:
    _, status = step(SPEC, rolling_out(), seen(1, QUOTA))
    action, failed = step(SPEC, status, seen(11, QUOTA))
    assert isinstance(action, FailPush)
    assert failed.failure is not None
    assert (failed.failure.reason, failed.failure.phase) == ("FailedCreate", "canary")
    assert "exceeded quota: small, requested: requests.cpu=2, used: requests.cpu=0, limited: requests.cpu=1" in (
        failed.failure.message
    )
    assert failed.phase == "RollingBack"
    assert failed.phases[0].state == "Failed"


def test_restart_safe_the_grace_counts_from_the_time_in_status() -> None:
    _, status = step(SPEC, rolling_out(), seen(1, SA))
    restarted = roundtrip(status)  # a new controller reads the status back from the API
    assert plan(SPEC, restarted, seen(8, SA)) == Wait(at(11), f"phase canary stuck: {SA.message}")
    action = plan(SPEC, restarted, seen(11, SA))
    assert isinstance(action, FailPush) and action.reason == "FailedCreate"


def test_one_cause_that_cannot_heal_following_another_keeps_the_first_time() -> None:
    _, status = step(SPEC, rolling_out(), seen(1, PULL))
    action, status = step(SPEC, status, seen(6, BACKOFF))  # kubelet alternates ErrImagePull / ImagePullBackOff
    assert action == NoteStuck("canary", BACKOFF, at(1), at(11))
    action, status = step(SPEC, status, seen(8, BACKOFF_1))  # one pod fewer: same cause, new message
    assert action == NoteStuck("canary", BACKOFF_1, at(1), at(11))
    assert status.message is not None and "web-canary: 1 pod ImagePullBackOff (registry.example/web:v2-bad)" in (
        status.message
    )
    assert plan(SPEC, status, seen(8.5, BACKOFF_1)) == Wait(at(11), f"phase canary stuck: {BACKOFF_1.message}")
    assert isinstance(plan(SPEC, status, seen(11, BACKOFF_1)), FailPush)


def test_a_cause_that_heals_keeps_waiting_until_the_progress_deadline_and_says_so() -> None:
    action, status = step(SPEC, rolling_out(), seen(1, UNSCHEDULABLE))
    assert action == NoteStuck("canary", UNSCHEDULABLE, at(1), None)
    assert status.message == (
        f"phase canary waiting: {UNSCHEDULABLE.message}; can heal, waiting up to progressDeadline 2m"
    )
    assert plan(SPEC, status, seen(60, UNSCHEDULABLE)) == Wait(
        at(120), f"phase canary waiting (can heal): {UNSCHEDULABLE.message}"
    )
    assert plan(SPEC, status, seen(120, UNSCHEDULABLE)) == FailPush(
        "ProgressDeadlineExceeded",
        f"phase canary: web-canary not Available after 2m: {UNSCHEDULABLE.message}",
        phase="canary",
    )


def test_a_cause_that_heals_then_one_that_cannot_starts_the_grace_then() -> None:
    _, status = step(SPEC, rolling_out(), seen(1, UNSCHEDULABLE))
    action, status = step(SPEC, status, seen(30, SA))
    assert action == NoteStuck("canary", SA, at(30), at(40))
    assert isinstance(plan(SPEC, status, seen(39, SA)), Wait)
    assert isinstance(plan(SPEC, status, seen(40, SA)), FailPush)


def test_a_cause_that_goes_away_is_cleared_and_the_grace_starts_again_next_time() -> None:
    _, status = step(SPEC, rolling_out(), seen(1, SA))
    action, status = step(SPEC, status, seen(5, None))  # e.g. someone created the ServiceAccount
    assert action == NoteStuck("canary", None)
    assert status.phases[0].stuck is None
    assert status.message == "phase canary: no longer stuck; waiting for it to become Available"
    action, status = step(SPEC, status, seen(9, SA))
    assert action == NoteStuck("canary", SA, at(9), at(19))


def test_an_unobserved_workload_leaves_the_recorded_cause_alone() -> None:
    _, status = step(SPEC, rolling_out(), seen(1, SA))
    assert plan(SPEC, status, Facts(now=at(5), live={})) == Wait(at(11), f"phase canary stuck: {SA.message}")


def test_available_clears_the_cause() -> None:
    _, status = step(SPEC, rolling_out(), seen(1, CREATING))
    action, status = step(SPEC, status, seen(3, None, available=True))
    assert action == MarkAvailable("canary")
    assert status.phases[0].stuck is None and status.phases[0].state == "Holding"


def test_the_status_says_it_already_so_nothing_is_noted_twice() -> None:
    _, status = step(SPEC, rolling_out(), seen(1, UNSCHEDULABLE))
    assert isinstance(plan(SPEC, status, seen(2, UNSCHEDULABLE)), Wait)


@pytest.mark.parametrize("restart_each_step", [False, True], ids=["one-controller", "restart-after-every-step"])
def test_a_whole_push_stuck_on_a_missing_service_account(restart_each_step: bool) -> None:
    world = World.of(stuck={KEY: SA})
    trace = run(SPEC, ReleaseStatus(), world, FakeClock(), restart_each_step=restart_each_step)

    assert trace.named() == [
        "Begin",
        "Snapshot canary web-canary",
        "ApplyPhase canary web-canary",
        "NoteStuck",
        "FailPush FailedCreate gate=None phase=canary",
        "Undo restore=web-canary delete=",  # the fast undo first, the git revert right after
        "StartRevert",
        "RecordRevert Pushed",
        "RestoreStrategy web-canary",  # its own strategy back once it is Available again
        "MarkRolledBack",
    ]
    status = trace.status
    assert status.phase == "RolledBack"
    assert status.failure is not None and status.failure.reason == "FailedCreate"
    canary = status.phases[0]
    assert canary.started_at is not None and canary.stuck is not None
    assert canary.stuck.since == canary.started_at  # seen in the first look after the apply
    assert status.failure.at == canary.started_at + timedelta(seconds=10)  # stuckAfter, not the 2m deadline
    assert world.git.commits == [f"{1:040x}"]
    assert world.deployments[KEY].applied == 1 and world.deployments[KEY].restored == 1
    assert trace.status.completed_at is not None and trace.status.completed_at < T0 + timedelta(seconds=30)


# ------------------------------------------------------------------------------------------ restore
def restoring() -> ReleaseStatus:
    """Canary failed at t=15 and was restored at t=20; the restored web-canary is not Available yet."""
    return release_status(
        "RollingBack",
        None,
        phases(canary="Failed"),
        snapshot=["web-canary"],
        failure=FailureStatus(reason="GateFailed", message="gate load 7 > 6", phase="canary", at=at(15), revert=False),
        undo=UndoStatus(at=at(20), restored=["web-canary"], objects=["web-canary"], attempts=1),
    )


def test_a_restore_that_cannot_settle_says_why_and_stops_waiting_after_stuck_after() -> None:
    action, status = step(SPEC, restoring(), seen(21, QUOTA))
    assert action == NoteStuck(None, QUOTA, at(21), at(31))
    assert status.undo is not None and status.undo.stuck is not None
    assert status.undo.stuck.message == QUOTA.message
    assert status.message is not None and status.message.startswith(f"restore stuck: {QUOTA.message}")
    assert plan(SPEC, status, seen(25, QUOTA)) == Wait(
        at(31), f"waiting for restored web-canary to become Available: {QUOTA.message}"
    )
    done = plan(SPEC, status, seen(31, QUOTA))
    assert done == MarkRolledBack(
        f"restored, but web-canary not Available: {QUOTA.message} (cannot heal by waiting; stuck 10s)"
    )
    final = reduce(SPEC, status, done, Done(), at(31))
    assert final.phase == "RolledBack"
    rolled_back = next(c for c in final.conditions if c.type == "RolledBack")
    assert "exceeded quota: small" in rolled_back.message


def test_a_restore_waiting_on_a_cause_that_heals_names_it_at_the_deadline() -> None:
    _, status = step(SPEC, restoring(), seen(21, UNSCHEDULABLE))
    assert plan(SPEC, status, seen(140, UNSCHEDULABLE)) == MarkRolledBack(
        f"restored, but web-canary not Available after 2m: {UNSCHEDULABLE.message}"
    )


# ------------------------------------------------------------------------------------------ events, persist
def test_one_warning_event_per_distinct_cause() -> None:
    before = rolling_out()
    note, after = step(SPEC, before, seen(1, BACKOFF))
    assert release_events(before, after, note, Done()) == [("Warning", "RolloutStuck", after.message)]
    recount, again = step(SPEC, after, seen(2, BACKOFF_1))  # same cause, one pod fewer
    assert isinstance(recount, NoteStuck)
    assert release_events(after, again, recount, Done()) == []
    other, third = step(SPEC, again, seen(3, SA))
    assert [e[1] for e in release_events(again, third, other, Done())] == ["RolloutStuck"]


def test_progress_is_shown_but_never_a_warning() -> None:
    before = rolling_out()
    note, after = step(SPEC, before, seen(1, CREATING))
    assert isinstance(note, NoteStuck)
    assert after.message == f"phase canary waiting: {CREATING.message}; can heal, waiting up to progressDeadline 2m"
    assert release_events(before, after, note, Done()) == []


def test_a_restore_cause_is_a_restore_stuck_event() -> None:
    before = restoring()
    note, after = step(SPEC, before, seen(21, SA))
    assert [(e[0], e[1]) for e in release_events(before, after, note, Done())] == [("Warning", "RestoreStuck")]


def test_a_new_cause_is_persisted_at_once_not_batched_like_readings() -> None:
    before = rolling_out()
    _, after = step(SPEC, before, seen(1, SA))
    assert not readings_only(after, before)


# ------------------------------------------------------------------------------------------ spec
def test_stuck_after_must_be_shorter_than_the_progress_deadline() -> None:
    with pytest.raises(ValidationError, match=r"stuckAfter \(10m\) must be shorter than progressDeadline \(10m\)"):
        make_spec(stuckAfter="10m")
    with pytest.raises(ValidationError, match=r"stuckAfter \(1m30s\) must be shorter than progressDeadline \(1m\)"):
        make_spec(stuckAfter="90s", progressDeadline="1m")


@pytest.mark.parametrize(
    ("extra", "want"),
    [
        ({}, timedelta(seconds=60)),
        ({"progressDeadline": "40s"}, timedelta(seconds=20)),  # the default does not fit: half the deadline
        ({"stuckAfter": "5s", "progressDeadline": "40s"}, timedelta(seconds=5)),
    ],
    ids=["default", "short-deadline", "explicit"],
)
def test_stuck_after_defaults(extra: dict[str, str], want: timedelta) -> None:
    assert make_spec(**extra).stuck_after == want


def test_a_tracks_template_carries_stuck_after_and_the_same_check() -> None:
    source = {"repo": "file:///srv/app.git", "branch": "main", "path": "deploy/"}
    template = {"phases": [{"name": "all", "remaining": True}], "stuckAfter": "15s", "progressDeadline": "1m"}
    track = TrackSpec.model_validate({"source": source, "template": template})
    assert track.template.stuck_after == timedelta(seconds=15)
    assert track.template.wire()["stuckAfter"] == "15s"  # what every Release of the Track gets
    with pytest.raises(ValidationError, match=r"stuckAfter \(1m\) must be shorter than progressDeadline \(1m\)"):
        TrackSpec.model_validate({"source": source, "template": {**template, "stuckAfter": "1m"}})
