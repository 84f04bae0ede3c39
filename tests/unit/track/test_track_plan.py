"""Track planner and reducer, state in → next action / next status out: one parametrized case per situation."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.models.track import CommitLock, HistoryEntry, PushLock, TrackSpec, TrackStatus
from controller.track.plan import (
    ANNOTATION_LOCK,
    ANNOTATION_UNLOCK,
    Adopt,
    Commit,
    CreateRelease,
    FinishRelease,
    Lock,
    Observe,
    ReleaseFacts,
    Token,
    TrackAction,
    TrackFacts,
    Unlock,
    parse_token,
    plan_track,
    reduce_track,
    release_name,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=10)
A, B, C, D = ("a" * 40, "b" * 40, "c" * 40, "d" * 40)
R = "e" * 40  # a revert commit stopline pushed (of B)
TEMPLATE = {"phases": [{"name": "canary", "deployments": ["web-canary"], "hold": "10s"}]}
SPEC = TrackSpec.model_validate({"source": {"repo": "git://127.0.0.1/app.git"}, "template": TEMPLATE})
SUSPENDED = SPEC.model_copy(update={"suspend": True})
SHORT_HISTORY = SPEC.model_copy(update={"history_limit": 3})

UNLOCK = json.dumps({"by": "alice", "reason": "fixed the query", "at": "2026-03-01T12:09:00Z"})
UNLOCK2 = json.dumps({"by": "bob", "reason": "again", "at": "2026-03-01T12:30:00Z"})
LOCK = json.dumps({"by": "carol", "reason": "freeze for the launch"})


def commit(sha: str, reverts: str | None = None) -> Commit:
    return Commit(sha, f"commit {sha[:7]}", reverts)


def status(**kw: Any) -> TrackStatus:
    return TrackStatus(**kw)


def in_flight(name: str, revision: str = B) -> TrackStatus:
    """The push lock is held by ``name`` (pushing ``revision``)."""
    return status(
        current=name,
        last_pushed=revision,
        last_good=A,
        push_lock=PushLock(held=True, release=name, since=T0),
        history=[HistoryEntry(revision=revision, release=name, result="InProgress", at=T0, started_at=T0)],
    )


LOCKED = status(
    last_pushed=B,
    last_good=A,
    commit_lock=CommitLock(locked=True, reason="web-bbbbbbb rolled back: gate load 9.00 > 6", since=T0, by="stopline"),
)
UNLOCKED_ONCE = LOCKED.model_copy(update={"commit_lock": LOCKED.commit_lock.model_copy(update={"last_unlock": UNLOCK})})
LOCKED_BY_HAND = LOCKED.model_copy(update={"commit_lock": LOCKED.commit_lock.model_copy(update={"last_lock": LOCK})})
OPEN = status(last_pushed=A, last_good=A)


def facts(
    tip: str | None = None,
    commits: Sequence[Commit] = (),
    current: ReleaseFacts | None = None,
    annotations: Mapping[str, str] | None = None,
    others: Sequence[ReleaseFacts] = (),
    tip_error: str | None = None,
) -> TrackFacts:
    return TrackFacts(
        now=NOW,
        tip=tip,
        tip_error=tip_error,
        new_commits=tuple(commits),
        current=current,
        in_flight=tuple(others),
        annotations=dict(annotations or {}),
    )


def rel(name: str, phase: str | None, revision: str = B, **kw: Any) -> ReleaseFacts:
    return ReleaseFacts(name=name, exists=True, phase=phase, revision=revision, **kw)


GONE = ReleaseFacts(name="web-bbbbbbb", exists=False)


@dataclass(frozen=True)
class PlanCase:
    id: str
    status: TrackStatus
    facts: TrackFacts
    expected: TrackAction
    spec: TrackSpec = field(default_factory=lambda: SPEC)


PLAN_CASES = [
    PlanCase(
        "first-push-of-a-new-track-pushes-the-tip",
        status(),
        facts(A, [commit(A)]),
        CreateRelease("web-aaaaaaa", A, ()),
    ),
    PlanCase(
        "new-commit-creates-release-named-track-sha7",
        OPEN,
        facts(B, [commit(B)]),
        CreateRelease("web-bbbbbbb", B, ()),
    ),
    PlanCase(
        "queued-commits-batched-newest-tip-pushed-others-listed",
        OPEN,
        facts(D, [commit(B), commit(C), commit(D)]),
        CreateRelease("web-ddddddd", D, (B, C)),
    ),
    PlanCase(
        "commits-during-a-push-queue-up",
        in_flight("web-bbbbbbb"),
        facts(D, [commit(C), commit(D)], current=rel("web-bbbbbbb", "Holding")),
        Observe((C, D), message="push lock held by web-bbbbbbb; 2 commit(s) queued"),
    ),
    PlanCase(
        "revert-commits-are-not-listed-as-queued",
        in_flight("web-bbbbbbb"),
        facts(C, [commit(R, reverts=B), commit(C)], current=rel("web-bbbbbbb", "RollingBack")),
        Observe((C,), message="push lock held by web-bbbbbbb; 1 commit(s) queued"),
    ),
    PlanCase(
        "release-succeeded-finishes-it",
        in_flight("web-bbbbbbb"),
        facts(B, [], current=rel("web-bbbbbbb", "Succeeded")),
        FinishRelease(rel("web-bbbbbbb", "Succeeded")),
    ),
    PlanCase(
        "release-rolled-back-finishes-it-before-pushing-queued-commits",
        in_flight("web-bbbbbbb"),
        facts(C, [commit(R, reverts=B), commit(C)], current=rel("web-bbbbbbb", "RolledBack")),
        FinishRelease(rel("web-bbbbbbb", "RolledBack")),
    ),
    PlanCase(
        "release-deleted-under-us-releases-the-push-lock",
        in_flight("web-bbbbbbb"),
        facts(C, [commit(C)], current=GONE),
        FinishRelease(GONE),
    ),
    PlanCase(
        "paused-release-keeps-the-push-lock",
        in_flight("web-bbbbbbb"),
        facts(B, [], current=rel("web-bbbbbbb", "Paused")),
        Observe((), message="push lock held by web-bbbbbbb; 0 commit(s) queued"),
    ),
    PlanCase(
        "commit-lock-holds-new-commits",
        LOCKED,
        facts(C, [commit(R, reverts=B), commit(C)]),
        Observe((C,), message="commit lock: web-bbbbbbb rolled back: gate load 9.00 > 6"),
    ),
    PlanCase(
        "new-unlock-token-unlocks",
        LOCKED,
        facts(C, [commit(C)], annotations={ANNOTATION_UNLOCK: UNLOCK}),
        Unlock(Token(UNLOCK, "alice", "fixed the query")),
    ),
    PlanCase(
        "unlock-token-already-acted-on-does-nothing",
        UNLOCKED_ONCE,
        facts(C, [commit(C)], annotations={ANNOTATION_UNLOCK: UNLOCK}),
        Observe((C,), message="commit lock: web-bbbbbbb rolled back: gate load 9.00 > 6"),
    ),
    PlanCase(
        "a-second-unlock-token-unlocks-again",
        UNLOCKED_ONCE,
        facts(C, [commit(C)], annotations={ANNOTATION_UNLOCK: UNLOCK2}),
        Unlock(Token(UNLOCK2, "bob", "again")),
    ),
    PlanCase(
        "unlock-token-while-open-is-no-unlock",
        OPEN,
        facts(B, [commit(B)], annotations={ANNOTATION_UNLOCK: UNLOCK}),
        CreateRelease("web-bbbbbbb", B, ()),
    ),
    PlanCase(
        "manual-lock-token-locks",
        OPEN,
        facts(B, [commit(B)], annotations={ANNOTATION_LOCK: LOCK}),
        Lock(Token(LOCK, "carol", "freeze for the launch")),
    ),
    PlanCase(
        "manual-lock-while-a-push-is-in-flight-locks",
        in_flight("web-bbbbbbb"),
        facts(B, [], current=rel("web-bbbbbbb", "Holding"), annotations={ANNOTATION_LOCK: LOCK}),
        Lock(Token(LOCK, "carol", "freeze for the launch")),
    ),
    PlanCase(
        "lock-token-already-acted-on-does-not-relock",
        LOCKED_BY_HAND.model_copy(update={"commit_lock": CommitLock(last_lock=LOCK)}),
        facts(B, [commit(B)], annotations={ANNOTATION_LOCK: LOCK}),
        CreateRelease("web-bbbbbbb", B, ()),
    ),
    PlanCase(
        "plain-text-lock-token",
        OPEN,
        facts(B, [commit(B)], annotations={ANNOTATION_LOCK: "  incident 42  "}),
        Lock(Token("incident 42", "unknown", "incident 42")),
    ),
    PlanCase(
        "only-revert-commits-start-no-release",
        OPEN.model_copy(update={"last_pushed": B}),
        facts(R, [commit(R, reverts=B)]),
        Observe((), skip_to=R, message="only stopline revert commits since the last push"),
    ),
    PlanCase(
        "revert-and-another-commit-start-a-release",
        OPEN.model_copy(update={"last_pushed": B}),
        facts(C, [commit(R, reverts=B), commit(C)]),
        CreateRelease("web-ccccccc", C, (R,)),
    ),
    PlanCase(
        "commit-on-top-of-a-revert-pushes-the-tip",
        OPEN.model_copy(update={"last_pushed": B}),
        facts(R, [commit(C), commit(R, reverts=B)]),
        CreateRelease("web-eeeeeee", R, (C,)),
    ),
    PlanCase(
        "suspended-track-observes-only",
        OPEN,
        facts(B, [commit(B)]),
        Observe((B,), message="suspended"),
        spec=SUSPENDED,
    ),
    PlanCase(
        "no-new-commit-nothing-to-do",
        OPEN,
        facts(A, []),
        Observe(()),
    ),
    PlanCase(
        "unreadable-tip-keeps-the-queue",
        in_flight("web-bbbbbbb").model_copy(update={"pending": [C]}),
        facts(None, [], current=rel("web-bbbbbbb", "Holding"), tip_error="git fetch failed"),
        Observe((C,), message="push lock held by web-bbbbbbb; 1 commit(s) queued"),
    ),
    PlanCase(
        "release-in-flight-but-not-recorded-is-adopted-not-doubled",
        OPEN,
        facts(C, [commit(B), commit(C)], others=[rel("web-bbbbbbb", "Holding")]),
        Adopt(rel("web-bbbbbbb", "Holding")),
    ),
    PlanCase(
        "adoption-comes-before-an-unlock-token",
        LOCKED,
        facts(C, [commit(C)], annotations={ANNOTATION_UNLOCK: UNLOCK}, others=[rel("web-ccccccc", None, C)]),
        Adopt(rel("web-ccccccc", None, C)),
    ),
    PlanCase(
        "release-already-finished-in-history-is-not-adopted-again",
        OPEN.model_copy(
            update={"history": [HistoryEntry(revision=B, release="web-bbbbbbb", result="Succeeded", at=T0)]}
        ),
        facts(C, [commit(C)], others=[rel("web-bbbbbbb", "Watching")]),
        CreateRelease("web-ccccccc", C, ()),
    ),
    PlanCase(
        "final-release-of-the-track-is-not-adopted",
        OPEN,
        facts(C, [commit(C)], others=[rel("web-bbbbbbb", "Succeeded")]),
        CreateRelease("web-ccccccc", C, ()),
    ),
]


@pytest.mark.parametrize("case", PLAN_CASES, ids=[c.id for c in PLAN_CASES])
def test_plan_track(case: PlanCase) -> None:
    assert plan_track("web", case.spec, case.status, case.facts) == case.expected


def test_release_name_is_deterministic_and_a_valid_name() -> None:
    assert release_name("web", B) == "web-bbbbbbb"
    long = release_name("t" * 80, B)
    assert long == "t" * 54 + "-bbbbbbb"
    assert len(long) <= 63


@pytest.mark.parametrize(
    ("raw", "by", "reason"),
    [
        ('{"by": "alice", "reason": "fixed"}', "alice", "fixed"),
        ('{"reason": "fixed"}', "unknown", "fixed"),
        ("just a reason", "unknown", "just a reason"),
        ("[1, 2]", "unknown", "[1, 2]"),
    ],
    ids=["json", "json-without-by", "plain-text", "json-not-an-object"],
)
def test_parse_token(raw: str, by: str, reason: str) -> None:
    assert parse_token(raw) == Token(raw, by, reason)


# ------------------------------------------------------------------------------------------------ reducer
ROLLED_BACK = rel(
    "web-bbbbbbb",
    "RolledBack",
    failure="gate load 9.00 > 6 in phase canary",
    failed_gate="load",
    revert_commit=R,
    started_at=T0,
    completed_at=T0 + timedelta(seconds=95),
)
SUCCEEDED = rel("web-bbbbbbb", "Succeeded", started_at=T0, completed_at=T0 + timedelta(seconds=42.5))


@dataclass(frozen=True)
class ReduceCase:
    id: str
    status: TrackStatus
    action: TrackAction
    check: Callable[[TrackStatus], None]
    facts: TrackFacts = field(default_factory=lambda: facts(B))
    spec: TrackSpec = field(default_factory=lambda: SPEC)


def _created(s: TrackStatus) -> None:
    assert s.current == "web-ddddddd" and s.last_pushed == D and s.pending == []
    assert (s.push_lock.held, s.push_lock.release, s.push_lock.since) == (True, "web-ddddddd", NOW)
    assert s.history[0] == HistoryEntry(
        revision=D, release="web-ddddddd", result="InProgress", at=NOW, started_at=NOW, skipped=[B, C]
    )
    assert s.message == "pushing ddddddd as web-ddddddd (batched 2 earlier commit(s))"
    assert s.last_seen == D and s.last_seen_at == NOW


def _succeeded(s: TrackStatus) -> None:
    assert s.current is None and s.last_good == B
    assert (s.push_lock.held, s.push_lock.release, s.push_lock.since) == (False, None, None)
    h = s.history[0]
    assert (h.result, h.duration_seconds, h.at, h.started_at) == ("Succeeded", 42.5, T0 + timedelta(seconds=42.5), T0)
    assert not s.commit_lock.locked
    assert s.message == "web-bbbbbbb succeeded"


def _rolled_back_locks(s: TrackStatus) -> None:
    lock = s.commit_lock
    assert lock.locked is True
    assert lock.reason == "web-bbbbbbb rolled back: gate load 9.00 > 6 in phase canary"
    assert (lock.since, lock.release, lock.revision, lock.by) == (NOW, "web-bbbbbbb", B, "stopline")
    h = s.history[0]
    assert (h.result, h.duration_seconds, h.failed_gate, h.revert_commit) == ("RolledBack", 95.0, "load", R)
    assert s.last_good == A, "a rollback never moves lastGood"
    assert not s.push_lock.held and s.current is None


def _rolled_back_no_lock(s: TrackStatus) -> None:
    assert s.commit_lock.locked is False and s.commit_lock.reason is None
    assert s.history[0].result == "RolledBack"
    assert s.message == (
        "web-bbbbbbb rolled back: gate load 9.00 > 6 in phase canary (onFailure.lock is false: line not locked)"
    )


def _deleted(s: TrackStatus) -> None:
    assert s.current is None and not s.push_lock.held and s.push_lock.release is None
    assert s.history[0].result == "Failed" and s.history[0].duration_seconds is None
    assert s.commit_lock.locked and s.commit_lock.reason == "web-bbbbbbb failed: deleted before it finished"


def _unlocked(s: TrackStatus) -> None:
    lock = s.commit_lock
    assert lock.locked is False
    assert (lock.last_unlock, lock.by, lock.unlock_reason, lock.unlocked_at) == (
        UNLOCK,
        "alice",
        "fixed the query",
        NOW,
    )
    assert s.message == "unlocked by alice: fixed the query"


def _locked_by_hand(s: TrackStatus) -> None:
    lock = s.commit_lock
    assert (lock.locked, lock.reason, lock.by, lock.since, lock.last_lock) == (
        True,
        "freeze for the launch",
        "carol",
        NOW,
        LOCK,
    )
    assert lock.release is None and lock.revision is None


def _skipped_revert(s: TrackStatus) -> None:
    assert s.last_pushed == R and s.ignored_reverts == [R] and s.pending == [] and s.current is None
    assert not s.history, "a revert commit alone is no push"


def _queued(s: TrackStatus) -> None:
    assert s.pending == [C, D] and s.current == "web-bbbbbbb" and s.last_pushed == B


def _trimmed(s: TrackStatus) -> None:
    assert [h.release for h in s.history] == ["web-ddddddd", "r3", "r2"]


def _stale_unlock_consumed(s: TrackStatus) -> None:
    assert s.commit_lock.locked is False and s.commit_lock.last_unlock == UNLOCK
    assert s.commit_lock.unlocked_at is None, "nothing was unlocked"


def _stale_lock_consumed(s: TrackStatus) -> None:
    assert s.commit_lock.locked is True and s.commit_lock.last_lock == LOCK
    assert s.commit_lock.reason == "web-bbbbbbb rolled back: gate load 9.00 > 6"


def _adopted(s: TrackStatus) -> None:
    assert s.current == "web-ccccccc" and s.last_pushed == C and s.push_lock.held
    assert s.push_lock.since == T0
    assert s.history[0] == HistoryEntry(revision=C, release="web-ccccccc", result="InProgress", at=T0, started_at=T0)


OLD_HISTORY = [HistoryEntry(revision=A, release=f"r{i}", result="Succeeded", at=T0) for i in (3, 2, 1)]

REDUCE_CASES = [
    ReduceCase(
        "create-release-takes-the-push-lock-and-starts-a-history-entry",
        OPEN.model_copy(update={"pending": [B, C]}),
        CreateRelease("web-ddddddd", D, (B, C)),
        _created,
        facts(D),
    ),
    ReduceCase(
        "succeeded-sets-last-good-and-history-result-duration",
        in_flight("web-bbbbbbb"),
        FinishRelease(SUCCEEDED),
        _succeeded,
    ),
    ReduceCase(
        "rolled-back-with-lock-sets-commit-lock-with-the-numbers",
        in_flight("web-bbbbbbb"),
        FinishRelease(ROLLED_BACK),
        _rolled_back_locks,
    ),
    ReduceCase(
        "rolled-back-with-onfailure-lock-false-leaves-the-line-open",
        in_flight("web-bbbbbbb"),
        FinishRelease(ReleaseFacts(**{**ROLLED_BACK.__dict__, "lock_on_failure": False})),
        _rolled_back_no_lock,
    ),
    ReduceCase(
        "release-deleted-under-us-releases-push-lock-and-stops-the-line",
        in_flight("web-bbbbbbb"),
        FinishRelease(GONE),
        _deleted,
    ),
    ReduceCase(
        "unlock-records-who-why-when",
        LOCKED,
        Unlock(Token(UNLOCK, "alice", "fixed the query")),
        _unlocked,
    ),
    ReduceCase(
        "manual-lock-records-who-why-when",
        OPEN,
        Lock(Token(LOCK, "carol", "freeze for the launch")),
        _locked_by_hand,
    ),
    ReduceCase(
        "only-reverts-move-last-pushed-past-them",
        OPEN.model_copy(update={"last_pushed": B, "pending": []}),
        Observe((), skip_to=R, message="only stopline revert commits since the last push"),
        _skipped_revert,
        facts(R),
    ),
    ReduceCase(
        "observe-records-the-queue",
        in_flight("web-bbbbbbb"),
        Observe((C, D), message="push lock held"),
        _queued,
        facts(D),
    ),
    ReduceCase(
        "history-trimmed-to-history-limit",
        OPEN.model_copy(update={"history": OLD_HISTORY}),
        CreateRelease("web-ddddddd", D, ()),
        _trimmed,
        facts(D),
        SHORT_HISTORY,
    ),
    ReduceCase(
        "unlock-token-written-while-open-is-consumed",
        OPEN,
        Observe(()),
        _stale_unlock_consumed,
        facts(A, annotations={ANNOTATION_UNLOCK: UNLOCK}),
    ),
    ReduceCase(
        "lock-token-written-while-locked-is-consumed",
        LOCKED,
        Observe(()),
        _stale_lock_consumed,
        facts(B, annotations={ANNOTATION_LOCK: LOCK}),
    ),
    ReduceCase(
        "adopt-takes-the-push-lock-for-the-found-release",
        OPEN,
        Adopt(rel("web-ccccccc", "Holding", revision=C, started_at=T0)),
        _adopted,
        facts(C),
    ),
]


@pytest.mark.parametrize("case", REDUCE_CASES, ids=[c.id for c in REDUCE_CASES])
def test_reduce_track(case: ReduceCase) -> None:
    before = case.status.model_copy(deep=True)
    case.check(reduce_track(case.spec, case.status, case.action, case.facts))
    assert case.status == before, "reduce_track must not mutate its input"


def test_unreadable_tip_keeps_last_seen() -> None:
    s = reduce_track(SPEC, OPEN.model_copy(update={"last_seen": A}), Observe(()), facts(None, tip_error="down"))
    assert s.last_seen == A and s.last_seen_at is None


# ------------------------------------------------------------------------------------------------ sequences
class Line:
    """A Track driven through plan + reduce, as the runner does (the Releases are whatever the test says)."""

    def __init__(self, spec: TrackSpec = SPEC) -> None:
        self.spec = spec
        self.status = TrackStatus()
        self.actions: list[TrackAction] = []

    def step(
        self,
        tip: str,
        commits: Sequence[Commit],
        current: ReleaseFacts | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> TrackAction:
        f = facts(tip, commits, current=current, annotations=annotations)
        action = plan_track("web", self.spec, self.status, f)
        self.status = reduce_track(self.spec, self.status, action, f)
        self.actions.append(action)
        return action


def test_good_bad_good_with_lock_and_unlock() -> None:
    line = Line()
    assert line.step(A, [commit(A)]) == CreateRelease("web-aaaaaaa", A, ())
    assert isinstance(line.step(A, [], rel("web-aaaaaaa", "Holding", A)), Observe)
    line.step(A, [], rel("web-aaaaaaa", "Succeeded", A, started_at=T0, completed_at=T0 + timedelta(seconds=30)))
    assert line.status.last_good == A

    assert line.step(B, [commit(B)]) == CreateRelease("web-bbbbbbb", B, ())
    line.step(B, [], ROLLED_BACK)
    assert line.status.commit_lock.locked
    # the revert lands and a colleague merges C: nothing moves while locked
    assert line.step(C, [commit(R, reverts=B), commit(C)]) == Observe(
        (C,), message=f"commit lock: {line.status.commit_lock.reason}"
    )
    assert line.status.pending == [C]
    assert line.step(C, [commit(R, reverts=B), commit(C)], annotations={ANNOTATION_UNLOCK: UNLOCK}) == Unlock(
        Token(UNLOCK, "alice", "fixed the query")
    )
    assert line.step(C, [commit(R, reverts=B), commit(C)], annotations={ANNOTATION_UNLOCK: UNLOCK}) == CreateRelease(
        "web-ccccccc", C, (R,)
    )
    line.step(C, [], rel("web-ccccccc", "Succeeded", C, started_at=T0, completed_at=T0 + timedelta(seconds=50)))

    assert [(h.release, h.result, h.duration_seconds) for h in line.status.history] == [
        ("web-ccccccc", "Succeeded", 50.0),
        ("web-bbbbbbb", "RolledBack", 95.0),
        ("web-aaaaaaa", "Succeeded", 30.0),
    ]
    assert line.status.last_good == C and not line.status.commit_lock.locked


def test_the_same_unlock_token_never_clears_a_later_lock() -> None:
    line = Line()
    line.status = UNLOCKED_ONCE.model_copy(
        update={"commit_lock": UNLOCKED_ONCE.commit_lock.model_copy(update={"locked": False})}
    )
    assert line.step(C, [commit(C)], annotations={ANNOTATION_UNLOCK: UNLOCK}) == CreateRelease("web-ccccccc", C, ())
    line.step(C, [], rel("web-ccccccc", "RolledBack", C, failure="gate load 8.00 > 6"), {ANNOTATION_UNLOCK: UNLOCK})
    assert line.status.commit_lock.locked
    for _ in range(3):
        assert isinstance(line.step(D, [commit(D)], annotations={ANNOTATION_UNLOCK: UNLOCK}), Observe)
    assert (
        line.status.commit_lock.locked
        and line.status.commit_lock.reason == "web-ccccccc rolled back: gate load 8.00 > 6"
    )


def test_unlock_written_before_a_rollback_does_not_clear_its_lock() -> None:
    """An unlock token lying around from when the line was open must not undo the next lock."""
    line = Line()
    line.status = in_flight("web-bbbbbbb")
    early = {ANNOTATION_UNLOCK: UNLOCK}
    assert isinstance(line.step(B, [], rel("web-bbbbbbb", "Holding"), early), Observe)
    line.step(B, [], ROLLED_BACK, early)
    assert line.status.commit_lock.locked
    assert isinstance(line.step(B, [], annotations=early), Observe)
    assert line.status.commit_lock.locked, "a stale unlock token cleared a fresh lock"
    assert line.step(B, [], annotations={ANNOTATION_UNLOCK: UNLOCK2}) == Unlock(Token(UNLOCK2, "bob", "again"))


def test_lock_written_while_locked_does_not_relock_after_unlock() -> None:
    line = Line()
    line.status = LOCKED
    assert isinstance(line.step(B, [], annotations={ANNOTATION_LOCK: LOCK}), Observe)
    both = {ANNOTATION_LOCK: LOCK, ANNOTATION_UNLOCK: UNLOCK}
    assert isinstance(line.step(B, [], annotations=both), Unlock)
    assert line.step(C, [commit(C)], annotations=both) == CreateRelease("web-ccccccc", C, ())


def test_lock_then_unlock_written_together_while_open_ends_unlocked() -> None:
    line = Line()
    line.status = OPEN
    both = {ANNOTATION_LOCK: LOCK, ANNOTATION_UNLOCK: UNLOCK}
    assert isinstance(line.step(A, [], annotations=both), Lock)
    assert isinstance(line.step(A, [], annotations=both), Unlock)
    assert not line.status.commit_lock.locked


def test_commits_during_a_push_are_batched_into_one_release() -> None:
    line = Line()
    line.status = in_flight("web-bbbbbbb")
    holding = rel("web-bbbbbbb", "Holding")
    line.step(C, [commit(C)], holding)
    line.step(D, [commit(C), commit(D)], holding)
    assert line.status.pending == [C, D]
    line.step(D, [commit(C), commit(D)], SUCCEEDED)
    assert line.step(D, [commit(C), commit(D)]) == CreateRelease("web-ddddddd", D, (C,))
    assert line.status.history[0].skipped == [C]
    assert [a for a in line.actions if isinstance(a, CreateRelease)] == [CreateRelease("web-ddddddd", D, (C,))]


def test_persisted_status_round_trips_through_json() -> None:
    line = Line()
    line.step(A, [commit(A)])
    line.step(A, [], rel("web-aaaaaaa", "RolledBack", A, failure="gate x 1 > 0"))
    dumped = line.status.model_dump(mode="json", by_alias=True)
    assert dumped["commitLock"]["locked"] is True
    assert dumped["history"][0]["result"] == "RolledBack"
    assert TrackStatus.model_validate(dumped) == line.status
