"""A rolled-back revision whose revert has not landed keeps the Track from pushing (every new tip still
contains the bad commit) until the revert lands or a human unlocks with ``withoutRevert``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from controller.models.track import CommitLock, HistoryEntry, MissingRevert, TrackSpec, TrackStatus
from controller.track.plan import (
    ANNOTATION_UNLOCK,
    Commit,
    CreateRelease,
    FinishRelease,
    Observe,
    RefuseUnlock,
    ReleaseFacts,
    RevertsLanded,
    TrackAction,
    TrackFacts,
    Unlock,
    parse_token,
    plan_track,
    reduce_track,
)
from controller.track.runner import TrackKind, TrackOutcome, TrackRef, track_events

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=10)
A, B, C, D = ("a" * 40, "b" * 40, "c" * 40, "d" * 40)
REVERT_OF_B = "e" * 40
BAD = "web-bbbbbbb"
SPEC = TrackSpec.model_validate(
    {
        "source": {"repo": "git://127.0.0.1/app.git"},
        "template": {"phases": [{"name": "canary", "deployments": ["web-canary"], "hold": "10s"}]},
    }
)

UNLOCK = json.dumps({"by": "alice", "reason": "fixed the query"})
UNLOCK_WITHOUT_REVERT = json.dumps({"by": "alice", "reason": "fixed forward in c", "withoutRevert": True})


def rel(phase: str, revert: str | None, reason: str | None = None, name: str = BAD, revision: str = B) -> ReleaseFacts:
    return ReleaseFacts(
        name=name,
        exists=True,
        phase=phase,
        revision=revision,
        failure="gate load 9.00 > 6",
        failed_gate="load",
        started_at=T0,
        completed_at=T0 + timedelta(seconds=40),
        revert_state=revert,
        revert_reason=reason,
    )


MISSING = MissingRevert(revision=B, release=BAD, since=T0, reason="Unreachable: connection refused")
HISTORY = [HistoryEntry(revision=B, release=BAD, result="RolledBack", at=T0)]


def missing(*, locked: bool = True, last_unlock: str | None = None) -> TrackStatus:
    """B was rolled back by BAD; its revert is not on the branch yet."""
    return TrackStatus(
        last_pushed=B,
        last_good=A,
        missing_reverts=[MISSING],
        history=list(HISTORY),
        commit_lock=CommitLock(
            locked=locked,
            reason=f"{BAD} rolled back: gate load 9.00 > 6; revert of bbbbbbb not on the branch yet (retrying)",
            since=T0,
            by="stopline",
            release=BAD,
            revision=B,
            last_unlock=last_unlock,
        ),
    )


def in_flight() -> TrackStatus:
    return TrackStatus(
        current=BAD,
        last_pushed=B,
        last_good=A,
        history=[HistoryEntry(revision=B, release=BAD, result="InProgress", at=T0, started_at=T0)],
    )


def facts(
    tip: str | None = None,
    commits: Sequence[Commit] = (),
    current: ReleaseFacts | None = None,
    annotations: Mapping[str, str] | None = None,
    reverting: Mapping[str, ReleaseFacts] | None = None,
) -> TrackFacts:
    return TrackFacts(
        now=NOW,
        tip=tip,
        new_commits=tuple(commits),
        current=current,
        annotations=dict(annotations or {}),
        reverting=dict(reverting or {}),
    )


def unlock(raw: str) -> dict[str, str]:
    return {ANNOTATION_UNLOCK: raw}


@dataclass(frozen=True)
class Case:
    id: str
    status: TrackStatus
    facts: TrackFacts
    expected: TrackAction


CASES = [
    Case(
        "finish-with-revert-pending",
        in_flight(),
        facts(B, current=rel("RolledBack", "Pending", "Unreachable: connection refused")),
        FinishRelease(rel("RolledBack", "Pending", "Unreachable: connection refused")),
    ),
    Case(
        "no-release-while-missing-even-unlocked",
        missing(locked=False),
        facts(C, [Commit(C, "docs: typo")]),
        Observe((C,), message="not pushing: rolled-back bbbbbbb still on main without its revert"),
    ),
    Case(
        "no-release-while-missing-and-locked",
        missing(),
        facts(C, [Commit(C, "docs: typo")]),
        Observe((C,), message=f"commit lock: {missing().commit_lock.reason}"),
    ),
    Case(
        "unlock-refused-while-missing",
        missing(),
        facts(C, [Commit(C)], annotations=unlock(UNLOCK)),
        RefuseUnlock(parse_token(UNLOCK), (MISSING,)),
    ),
    Case(
        "refused-unlock-is-not-judged-again",
        missing(last_unlock=UNLOCK),
        facts(C, [Commit(C)], annotations=unlock(UNLOCK)),
        Observe((C,), message=f"commit lock: {missing().commit_lock.reason}"),
    ),
    Case(
        "unlock-without-revert-waives",
        missing(last_unlock=UNLOCK),
        facts(C, [Commit(C)], annotations=unlock(UNLOCK_WITHOUT_REVERT)),
        Unlock(parse_token(UNLOCK_WITHOUT_REVERT), waive=(MISSING,)),
    ),
    Case(
        "unlock-without-revert-when-the-line-was-not-locked",
        missing(locked=False),
        facts(C, [Commit(C)], annotations=unlock(UNLOCK_WITHOUT_REVERT)),
        Unlock(parse_token(UNLOCK_WITHOUT_REVERT), waive=(MISSING,)),
    ),
    Case(
        "landed-via-the-trailer-commit",
        missing(),
        facts(REVERT_OF_B, [Commit(REVERT_OF_B, "stopline: revert bbbbbbb", reverts=B)]),
        RevertsLanded((B,), (REVERT_OF_B,)),
    ),
    Case(
        "landed-via-the-release-status",
        missing(),
        facts(B, reverting={BAD: rel("RolledBack", "Pushed")}),
        RevertsLanded((B,), (None,)),
    ),
    Case(
        "landed-beats-a-refused-unlock",
        missing(),
        facts(B, annotations=unlock(UNLOCK), reverting={BAD: rel("RolledBack", "AlreadyReverted")}),
        RevertsLanded((B,), (None,)),
    ),
    Case(
        "release-still-retrying-is-not-landed",
        missing(locked=False),
        facts(B, reverting={BAD: rel("RolledBack", "Pending")}),
        Observe((), message="not pushing: rolled-back bbbbbbb still on main without its revert"),
    ),
    Case(
        "another-revision-reverted-is-not-ours",
        missing(locked=False),
        facts(C, [Commit(C, "stopline: revert ddddddd", reverts=D)]),
        Observe((), message="not pushing: rolled-back bbbbbbb still on main without its revert"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_plan_with_missing_reverts(case: Case) -> None:
    assert plan_track("web", SPEC, case.status, case.facts) == case.expected


@pytest.mark.parametrize(
    ("revert", "reason", "listed"),
    [
        ("Pending", "Unreachable: connection refused", True),
        ("Error", "AuthenticationFailed: HTTP 401", True),
        ("Conflict", "deploy/web.yaml conflicts", True),
        ("Pushed", None, False),
        ("AlreadyReverted", None, False),
        ("Waived", "waived by alice: fixed forward", False),
        ("Skipped", "not wanted for GatesInconclusive", False),
        (None, None, False),
    ],
    ids=["pending", "error", "conflict", "pushed", "already-reverted", "waived", "skipped", "none"],
)
def test_finish_release_records_a_missing_revert(revert: str | None, reason: str | None, listed: bool) -> None:
    r = rel("RolledBack", revert, reason)
    after = reduce_track(SPEC, in_flight(), FinishRelease(r), facts(B, current=r))
    assert after.missing_reverts == (
        [MissingRevert(revision=B, release=BAD, since=NOW, reason=reason)] if listed else []
    )
    assert after.commit_lock.locked and after.current is None
    assert ("revert of bbbbbbb not on the branch yet" in (after.commit_lock.reason or "")) is listed
    events = [reason for _, reason, _ in track_events(FinishRelease(r), after)]
    assert ("RevertMissing" in events) is listed


def test_a_second_finish_of_the_same_revision_is_listed_once() -> None:
    r = rel("RolledBack", "Pending", "Timeout")
    once = reduce_track(SPEC, in_flight(), FinishRelease(r), facts(B, current=r))
    again = reduce_track(SPEC, once, FinishRelease(r), facts(B, current=r))
    assert [m.revision for m in again.missing_reverts] == [B]


def test_refused_unlock_keeps_the_lock_and_says_why() -> None:
    token = parse_token(UNLOCK)
    after = reduce_track(SPEC, missing(), RefuseUnlock(token, (MISSING,)), facts(C, annotations=unlock(UNLOCK)))
    assert after.commit_lock.locked and after.missing_reverts == [MISSING]
    assert after.commit_lock.last_unlock == UNLOCK
    assert after.message is not None and "--without-revert" in after.message and "bbbbbbb" in after.message
    assert [r for _, r, _ in track_events(RefuseUnlock(token, (MISSING,)), after)] == ["UnlockRefused"]


def test_unlock_without_revert_records_it_in_the_lock_and_history_then_pushes() -> None:
    token = parse_token(UNLOCK_WITHOUT_REVERT)
    action = Unlock(token, waive=(MISSING,))
    f = facts(C, [Commit(C)], annotations=unlock(UNLOCK_WITHOUT_REVERT))
    after = reduce_track(SPEC, missing(), action, f)
    assert (after.commit_lock.locked, after.missing_reverts) == (False, [])
    assert after.commit_lock.unlock_reason == "fixed forward in c (unlocked without revert: bbbbbbb still on main)"
    assert [(h.release, h.revert_waived_by) for h in after.history] == [(BAD, "alice")]
    assert [r for _, r, _ in track_events(action, after)] == ["Unlocked", "UnlockedWithoutRevert"]
    # the line is open again: the next tip is pushed
    assert plan_track("web", SPEC, after, f) == CreateRelease("web-ccccccc", C, ())


def test_reverts_landed_clears_the_list_and_the_lock_note_then_unlock_works() -> None:
    f = facts(REVERT_OF_B, [Commit(REVERT_OF_B, reverts=B)])
    after = reduce_track(SPEC, missing(), RevertsLanded((B,)), f)
    assert after.missing_reverts == []
    assert after.commit_lock.locked and after.commit_lock.reason == f"{BAD} rolled back: gate load 9.00 > 6"
    assert after.message == "revert of bbbbbbb is on main"
    assert plan_track("web", SPEC, after, facts(REVERT_OF_B, annotations=unlock(UNLOCK))) == Unlock(parse_token(UNLOCK))


class Waiver:
    """Records the Releases the Track annotates with the waive token."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, release: str, token: str) -> None:
        self.calls.append((release, token))


async def test_the_track_kind_annotates_the_waived_releases() -> None:
    waiver = Waiver()
    kind = TrackKind(
        TrackRef("shop", "web", "uid-web"), None, None, clock=lambda: NOW, owned=None, prune=None, waive=waiver
    )  # type: ignore[arg-type]
    action = Unlock(parse_token(UNLOCK_WITHOUT_REVERT), waive=(MISSING,))
    assert kind.is_side_effect(action), "the status is written before the Releases are annotated"
    f = facts(C, annotations=unlock(UNLOCK_WITHOUT_REVERT))
    outcome = await kind.execute(SPEC, missing(), action, f)
    assert outcome == TrackOutcome()
    assert waiver.calls == [(BAD, UNLOCK_WITHOUT_REVERT)]
    assert not kind.is_side_effect(Unlock(parse_token(UNLOCK)))


def test_without_the_commit_lock_a_missing_revert_still_blocks_pushes() -> None:
    r = replace(rel("RolledBack", "Pending", "Timeout: git push did not answer"), lock_on_failure=False)
    after = reduce_track(SPEC, in_flight(), FinishRelease(r), facts(B, current=r))
    assert not after.commit_lock.locked and [m.revision for m in after.missing_reverts] == [B]
    nxt = plan_track("web", SPEC, after, facts(C, [Commit(C)]))
    assert isinstance(nxt, Observe) and nxt.pending == (C,)
