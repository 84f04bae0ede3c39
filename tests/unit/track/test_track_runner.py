"""The Track loop with a fake Git branch and fake Kubernetes objects: observe → plan → create → status.

Every fake ``create`` checks the push lock: no Release of the Track may be created while another one is
still in flight. Restarts are simulated by an exception out of ``patch_status`` (a SIGKILL between the
Release creation and the status write) and a second ``run_track`` over what was persisted.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.errors import ClusterError, GitUnreachable
from controller.models.release import GitSource
from controller.models.track import TrackSpec, TrackStatus
from controller.release.actions import ANNOTATION_SKIPPED
from controller.track.plan import FINAL, LABEL_TRACK, CreateRelease
from controller.track.runner import (
    TrackRef,
    observe_track,
    release_body,
    release_facts,
    run_track,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
REF = TrackRef(namespace="shop", name="web", uid="uid-web")
REPO = "git://127.0.0.1:9418/app.git"
SPEC: dict[str, Any] = {
    "source": {"repo": REPO, "branch": "main", "path": "deploy/"},
    "pollInterval": "15s",
    "template": {
        "phases": [{"name": "canary", "deployments": ["web-canary"], "hold": "10s"}],
        "gates": [{"name": "load", "query": "max(load)", "max": 6, "interval": "1s"}],
        "onFailure": {"lock": True},
    },
}


def sha(c: str) -> str:
    return c * 40


class Crash(BaseException):
    """The controller process dies here."""


@dataclass
class FakeCommit:
    sha: str
    subject: str = ""
    trailers: dict[str, str] = field(default_factory=dict)


class FakeGit:
    def __init__(self, *shas: str) -> None:
        self.branch = [FakeCommit(s, f"commit {s[:7]}") for s in shas]
        self.down = False
        self.fetches = 0

    def push(self, s: str, reverts: str | None = None) -> None:
        self.branch.append(FakeCommit(s, f"commit {s[:7]}", {"Stopline-Revert-Of": reverts} if reverts else {}))

    async def tip(self, namespace: str, source: GitSource) -> str:
        assert (namespace, source.repo, source.branch) == ("shop", REPO, "main")
        self.fetches += 1
        if self.down:
            raise GitUnreachable("git fetch git://127.0.0.1:9418/app.git: connection refused")
        return self.branch[-1].sha

    async def commits(self, namespace: str, source: GitSource, since: str | None, until: str) -> list[Any]:
        shas = [c.sha for c in self.branch]
        start = shas.index(since) + 1 if since is not None else 0
        return list(self.branch[start : shas.index(until) + 1])


class FakeObjects:
    """Releases in one namespace. ``create`` is idempotent by name (409 → None), like the real adapter."""

    def __init__(self) -> None:
        self.releases: dict[str, dict[str, Any]] = {}
        self.create_calls: list[str] = []
        self.get_errors = 0
        self.lists = 0

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        assert (plural, namespace) == ("releases", "shop")
        if self.get_errors:
            self.get_errors -= 1
            raise ClusterError("read releases/x: 503 Service Unavailable")
        obj = self.releases.get(name)
        return copy.deepcopy(obj) if obj is not None else None

    async def create(self, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        name = body["metadata"]["name"]
        self.create_calls.append(name)
        if name in self.releases:
            return None
        busy = [n for n, r in self.releases.items() if r["status"].get("phase") not in FINAL]
        assert not busy, f"push lock broken: {name} created while {busy} in flight"
        created = copy.deepcopy(body)
        created["metadata"].update(uid=f"uid-{name}", creationTimestamp=f"2026-03-01T12:00:{len(self.releases):02d}Z")
        self.releases[name] = {**created, "status": {}}
        return body

    def finish(self, name: str, phase: str, seconds: float = 30, **status: Any) -> None:
        self.releases[name]["status"] = {
            "phase": phase,
            "startedAt": T0.isoformat(),
            "completedAt": (T0 + timedelta(seconds=seconds)).isoformat(),
            **status,
        }

    def set_phase(self, name: str, phase: str) -> None:
        self.releases[name]["status"] = {"phase": phase, "startedAt": T0.isoformat()}

    async def owned(self) -> list[dict[str, Any]]:
        """``list releases -l stopline.dev/track=web``, as the daemon does when it starts."""
        self.lists += 1
        return [copy.deepcopy(r) for r in self.releases.values() if r["metadata"]["labels"].get(LABEL_TRACK) == "web"]


class Harness:
    """The Track object as the API server holds it, and one controller process running its loop."""

    def __init__(self, git: FakeGit, objects: FakeObjects, spec: dict[str, Any] | None = None) -> None:
        self.git = git
        self.objects = objects
        self.body: dict[str, Any] = {
            "metadata": {"name": "web", "namespace": "shop", "generation": 1, "annotations": {}},
            "spec": spec or SPEC,
        }
        self.crash_on_patch: Callable[[dict[str, Any]], bool] = lambda _patch: False
        self.patch_errors = 0
        self.patches = 0
        self.events: list[tuple[str, str]] = []
        self.now = T0

    @property
    def status(self) -> TrackStatus:
        return TrackStatus.model_validate(self.body.get("status") or {})

    async def patch_status(self, patch: dict[str, Any]) -> None:
        if self.crash_on_patch(patch):
            raise Crash("killed between creating the Release and writing the Track status")
        if self.patch_errors:
            self.patch_errors -= 1
            raise ClusterError("patch tracks/web status: 500 etcdserver: request timed out")
        self.patches += 1
        self.body["status"] = copy.deepcopy(patch["status"])

    async def run(
        self, script: list[Callable[[], None]], *, adopt: bool = True, prune: Callable[..., Any] | None = None
    ) -> None:
        """One controller lifetime: each poll wait runs the next step of ``script``; stop when it ends."""
        steps = list(script)
        done = False

        async def wait(_seconds: float) -> None:
            nonlocal done
            if steps:
                steps.pop(0)()
            else:
                done = True

        def clock() -> datetime:
            self.now += timedelta(seconds=1)
            return self.now

        await run_track(
            REF,
            lambda: self.body,
            self.patch_status,
            self.git,
            self.objects,
            clock=clock,
            wait=wait,
            emit=lambda _t, reason, message: self.events.append((reason, message)),
            stopped=lambda: done,
            owned=self.objects.owned if adopt else None,
            prune=prune,
        )


def created_once(objects: FakeObjects) -> dict[str, int]:
    return {n: objects.create_calls.count(n) for n in objects.create_calls}


async def test_first_push_of_a_new_track_pushes_only_the_tip() -> None:
    git, objects = FakeGit(sha("1"), sha("2"), sha("3")), FakeObjects()
    h = Harness(git, objects)
    await h.run([])
    assert list(objects.releases) == ["web-3333333"]
    rel = objects.releases["web-3333333"]
    assert rel["spec"]["source"]["revision"] == sha("3")
    assert ANNOTATION_SKIPPED not in rel["metadata"]["annotations"]
    s = h.status
    assert (s.current, s.last_pushed, s.last_seen, s.push_lock.held) == ("web-3333333", sha("3"), sha("3"), True)


@pytest.mark.parametrize(
    ("adopt", "creates"),
    [(True, 1), (False, 2)],
    ids=["adopted-from-the-index", "recreated-by-name-409"],
)
async def test_restart_between_create_and_status_patch_creates_exactly_one_release(adopt: bool, creates: int) -> None:
    git, objects = FakeGit(sha("a")), FakeObjects()
    h = Harness(git, objects)
    h.crash_on_patch = lambda patch: patch["status"].get("current") is not None
    with pytest.raises(Crash):
        await h.run([])
    assert list(objects.releases) == ["web-aaaaaaa"]
    assert h.status.current is None, "the crash happened before the status was written"

    h.crash_on_patch = lambda _patch: False  # the restarted controller
    await h.run([lambda: objects.finish("web-aaaaaaa", "Succeeded", 42)], adopt=adopt)
    assert list(objects.releases) == ["web-aaaaaaa"]
    assert created_once(objects) == {"web-aaaaaaa": creates}
    s = h.status
    assert [(e.release, e.result, e.duration_seconds) for e in s.history] == [("web-aaaaaaa", "Succeeded", 42.0)]
    assert s.last_good == sha("a") and s.current is None and not s.push_lock.held


async def test_restart_after_create_with_a_new_commit_adopts_instead_of_doubling() -> None:
    git, objects = FakeGit(sha("a"), sha("b")), FakeObjects()
    h = Harness(git, objects)
    h.body["status"] = TrackStatus(last_pushed=sha("a"), last_good=sha("a")).model_dump(mode="json", by_alias=True)
    h.crash_on_patch = lambda patch: patch["status"].get("current") is not None
    with pytest.raises(Crash):
        await h.run([])
    assert list(objects.releases) == ["web-bbbbbbb"]
    objects.set_phase("web-bbbbbbb", "Holding")
    git.push(sha("c"))  # merged while the controller was down

    h.crash_on_patch = lambda _patch: False
    await h.run(
        [
            lambda: None,  # still holding: C waits
            lambda: objects.finish("web-bbbbbbb", "Succeeded", 20),
            lambda: objects.finish("web-ccccccc", "Succeeded", 25),
        ]
    )
    assert list(objects.releases) == ["web-bbbbbbb", "web-ccccccc"]
    s = h.status
    assert [(e.release, e.result) for e in s.history] == [("web-ccccccc", "Succeeded"), ("web-bbbbbbb", "Succeeded")]
    assert s.last_good == sha("c")
    assert ("ReleaseAdopted", "adopted web-bbbbbbb, already in flight") in h.events
    assert objects.lists == 2, "listed once per controller start, not on every poll"


async def test_without_the_in_flight_index_a_restart_would_break_the_push_lock() -> None:
    """The reason the daemon gets its Releases in flight: this is what happened without them."""
    git, objects = FakeGit(sha("a"), sha("b")), FakeObjects()
    h = Harness(git, objects)
    h.body["status"] = TrackStatus(last_pushed=sha("a")).model_dump(mode="json", by_alias=True)
    h.crash_on_patch = lambda patch: patch["status"].get("current") is not None
    with pytest.raises(Crash):
        await h.run([])
    objects.set_phase("web-bbbbbbb", "Holding")
    git.push(sha("c"))
    h.crash_on_patch = lambda _patch: False
    with pytest.raises(AssertionError, match="push lock broken: web-ccccccc created while"):
        await h.run([], adopt=False)


async def test_a_release_of_that_name_not_owned_by_the_track_is_not_taken_for_ours() -> None:
    git, objects = FakeGit(sha("a")), FakeObjects()
    h = Harness(git, objects)
    foreign = release_body(
        TrackRef("shop", "web", "uid-of-a-deleted-track"),
        TrackSpec.model_validate(SPEC),
        CreateRelease("web-aaaaaaa", sha("a"), ()),
    )
    objects.releases["web-aaaaaaa"] = {**foreign, "status": {"phase": "Succeeded"}}
    await h.run([lambda: None])
    s = h.status
    assert s.current is None and not s.push_lock.held and s.history == []
    assert (
        s.message
        == "could not create Release web-aaaaaaa: Release web-aaaaaaa already exists and does not belong to Track web"
    )
    assert [r for r, _ in h.events] == ["CreateReleaseFailed", "CreateReleaseFailed"]


async def test_commits_during_a_push_are_batched_and_listed() -> None:
    git, objects = FakeGit(sha("a")), FakeObjects()
    h = Harness(git, objects)
    await h.run(
        [
            lambda: objects.set_phase("web-aaaaaaa", "Holding"),
            lambda: git.push(sha("b")),
            lambda: git.push(sha("c")),
            lambda: git.push(sha("d")),
            lambda: objects.finish("web-aaaaaaa", "Succeeded"),
        ]
    )
    assert h.status.pending == []
    assert list(objects.releases) == ["web-aaaaaaa", "web-ddddddd"]
    rel = objects.releases["web-ddddddd"]
    assert rel["metadata"]["annotations"] == {ANNOTATION_SKIPPED: f"{sha('b')},{sha('c')}"}
    assert h.status.history[0].skipped == [sha("b"), sha("c")]


async def test_queue_is_visible_while_the_push_lock_is_held() -> None:
    git, objects = FakeGit(sha("a")), FakeObjects()
    h = Harness(git, objects)
    await h.run([lambda: objects.set_phase("web-aaaaaaa", "Holding"), lambda: git.push(sha("b"))])
    s = h.status
    assert s.pending == [sha("b")] and s.current == "web-aaaaaaa"
    assert s.message == "push lock held by web-aaaaaaa; 1 commit(s) queued"


async def test_rollback_locks_revert_alone_pushes_nothing_unlock_pushes_the_next() -> None:
    git, objects = FakeGit(sha("a")), FakeObjects()
    h = Harness(git, objects)
    h.body["status"] = TrackStatus(last_pushed=sha("a"), last_good=sha("a")).model_dump(mode="json", by_alias=True)
    git.push(sha("b"))

    def roll_back() -> None:
        objects.finish(
            "web-bbbbbbb",
            "RolledBack",
            60,
            failure={"gate": "load", "reason": "GateFailed", "message": "gate load 9.00 > 6 in phase canary"},
            failedGate="load",
            revert={"commit": sha("e")},
        )
        git.push(sha("e"), reverts=sha("b"))

    def unlock() -> None:
        h.body["metadata"]["annotations"]["stopline.dev/unlock"] = '{"by": "alice", "reason": "fixed"}'

    await h.run([roll_back, lambda: None, lambda: git.push(sha("c")), lambda: None, unlock])
    assert list(objects.releases) == ["web-bbbbbbb", "web-ccccccc"]
    assert objects.releases["web-ccccccc"]["metadata"]["annotations"] == {ANNOTATION_SKIPPED: sha("e")}
    s = h.status
    assert not s.commit_lock.locked
    assert (s.commit_lock.by, s.commit_lock.unlock_reason) == ("alice", "fixed")
    assert s.commit_lock.reason == "web-bbbbbbb rolled back: gate load 9.00 > 6 in phase canary"
    assert s.history[1].revert_commit == sha("e") and s.history[1].failed_gate == "load"
    reasons = [r for r, _ in h.events]
    assert reasons.count("CommitLocked") == 1 and reasons.count("Unlocked") == 1
    assert reasons.count("ReleaseCreated") == 2


async def test_revert_alone_after_rollback_without_lock_is_skipped() -> None:
    spec = copy.deepcopy(SPEC)
    spec["template"]["onFailure"] = {"lock": False}
    git, objects = FakeGit(sha("a")), FakeObjects()
    h = Harness(git, objects, spec)
    h.body["status"] = TrackStatus(last_pushed=sha("a")).model_dump(mode="json", by_alias=True)
    git.push(sha("b"))

    def roll_back() -> None:
        objects.finish("web-bbbbbbb", "RolledBack", failure={"reason": "GateFailed", "message": "gate load 9 > 6"})
        git.push(sha("e"), reverts=sha("b"))

    await h.run([roll_back, lambda: None])
    assert list(objects.releases) == ["web-bbbbbbb"]
    s = h.status
    assert not s.commit_lock.locked
    assert s.last_pushed == sha("e") and s.ignored_reverts == [sha("e")]


async def test_kubernetes_errors_are_retried_not_fatal() -> None:
    git, objects = FakeGit(sha("a")), FakeObjects()
    h = Harness(git, objects)
    h.patch_errors = 1  # the status write after the create fails once

    def outage() -> None:
        objects.get_errors = 2

    await h.run([outage, lambda: None, lambda: objects.finish("web-aaaaaaa", "Succeeded"), lambda: None])
    assert list(objects.releases) == ["web-aaaaaaa"] and created_once(objects) == {"web-aaaaaaa": 1}
    assert h.status.history[0].result == "Succeeded"


async def test_unreachable_git_sets_source_reachable_false_and_keeps_going() -> None:
    git, objects = FakeGit(sha("a")), FakeObjects()
    git.down = True
    h = Harness(git, objects)
    await h.run([lambda: setattr(git, "down", False)])
    assert list(objects.releases) == ["web-aaaaaaa"]
    assert git.fetches == 3


async def test_unreachable_git_condition() -> None:
    git, objects = FakeGit(sha("a")), FakeObjects()
    git.down = True
    h = Harness(git, objects)
    await h.run([])
    cond = {c.type: c for c in h.status.conditions}
    assert (cond["SourceReachable"].status, cond["SourceReachable"].reason) == ("False", "Unreachable")
    assert "connection refused" in cond["SourceReachable"].message
    assert objects.releases == {}


async def test_locked_track_conditions() -> None:
    git, objects = FakeGit(sha("a")), FakeObjects()
    h = Harness(git, objects)
    h.body["metadata"]["annotations"]["stopline.dev/lock"] = '{"by": "carol", "reason": "launch freeze"}'
    await h.run([])
    cond = {c.type: c for c in h.status.conditions}
    assert (cond["Locked"].status, cond["Locked"].message) == ("True", "launch freeze")
    assert (cond["Ready"].status, cond["Ready"].reason) == ("False", "Locked")
    assert objects.releases == {}


async def test_invalid_spec_is_reported_and_ends_the_loop() -> None:
    git, objects = FakeGit(sha("a")), FakeObjects()
    h = Harness(git, objects, {"source": {"repo": REPO}, "template": {"phases": []}})
    await h.run([lambda: pytest.fail("an invalid Track must not poll")])
    ready = next(c for c in h.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "InvalidSpec")
    assert objects.releases == {} and git.fetches == 0


def test_release_body_is_template_plus_source_at_the_revision_owned_by_the_track() -> None:
    spec = TrackSpec.model_validate(SPEC)
    body = release_body(REF, spec, CreateRelease("web-ccccccc", sha("c"), (sha("b"),)))
    assert body["metadata"]["name"] == "web-ccccccc" and body["metadata"]["namespace"] == "shop"
    assert body["metadata"]["labels"][LABEL_TRACK] == "web"
    assert body["metadata"]["annotations"] == {ANNOTATION_SKIPPED: sha("b")}
    (owner,) = body["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("Track", "web", "uid-web", True)
    assert body["spec"]["source"] == {"repo": REPO, "branch": "main", "path": "deploy/", "revision": sha("c")}
    assert body["spec"]["phases"][0]["name"] == "canary"
    assert body["spec"]["gates"][0]["name"] == "load"
    assert body["spec"]["onFailure"]["lock"] is True


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (None, {"exists": False, "phase": None}),
        (
            {
                "spec": {"source": {"revision": sha("b")}, "onFailure": {"lock": False}},
                "status": {
                    "phase": "RolledBack",
                    "failure": {"message": "gate load 9 > 6"},
                    "failedGate": "load",
                    "revert": {"commit": sha("e")},
                    "startedAt": "2026-03-01T12:00:00Z",
                    "completedAt": "2026-03-01T12:01:30Z",
                },
            },
            {
                "exists": True,
                "phase": "RolledBack",
                "revision": sha("b"),
                "failure": "gate load 9 > 6",
                "failed_gate": "load",
                "revert_commit": sha("e"),
                "lock_on_failure": False,
                "started_at": T0,
                "completed_at": T0 + timedelta(seconds=90),
            },
        ),
        ({"spec": {}, "status": {"startedAt": "not a time"}}, {"exists": True, "started_at": None}),
    ],
    ids=["missing", "rolled-back", "garbled-time"],
)
def test_release_facts(obj: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    facts = release_facts("web-bbbbbbb", obj)
    assert {k: getattr(facts, k) for k in expected} == expected


async def test_observe_lists_commits_since_the_last_push_and_the_releases_in_flight() -> None:
    git, objects = FakeGit(sha("a"), sha("b"), sha("c")), FakeObjects()
    git.push(sha("e"), reverts=sha("b"))
    status = TrackStatus(last_pushed=sha("a"))
    ours = {"name": "web-fffffff", "ownerReferences": [{"uid": "uid-web", "controller": True}]}
    theirs = {"name": "web-0000000", "ownerReferences": [{"uid": "uid-of-another", "controller": True}]}
    # an owner reference without controller: true is not ownership (one rule: models.common.owned_by)
    referenced = {"name": "web-1111111", "ownerReferences": [{"uid": "uid-web"}]}
    owned = [
        {"metadata": meta, "spec": {"source": {"revision": sha("f")}}, "status": {}}
        for meta in (ours, theirs, referenced)
    ]
    facts = await observe_track(REF, TrackSpec.model_validate(SPEC), status, {}, git, objects, T0, owned)
    assert [(c.sha, c.reverts) for c in facts.new_commits] == [(sha("b"), None), (sha("c"), None), (sha("e"), sha("b"))]
    assert facts.tip == sha("e") and facts.current is None
    assert [(r.name, r.revision) for r in facts.in_flight] == [("web-fffffff", sha("f"))]


async def test_finished_pushes_beyond_history_limit_are_pruned_but_never_the_locked_one() -> None:
    from controller.track.prune import releases_to_prune

    git, objects = FakeGit(sha("a")), FakeObjects()
    h = Harness(git, objects, spec={**SPEC, "historyLimit": 1})
    deleted: list[str] = []

    async def prune(spec: TrackSpec, status: TrackStatus) -> None:
        protected = (status.current, status.commit_lock.release)
        for name, _uid in releases_to_prune(
            await objects.owned(), keep=spec.history_limit, track_uid=REF.uid, protected=protected
        ):
            deleted.append(name)
            del objects.releases[name]

    def finish(name: str, phase: str = "Succeeded") -> Callable[[], None]:
        return lambda: objects.finish(name, phase)

    await h.run(
        [
            finish("web-aaaaaaa"),
            lambda: git.push(sha("b")),
            finish("web-bbbbbbb"),
            lambda: git.push(sha("c")),
            finish("web-ccccccc", "RolledBack"),
            lambda: None,
        ],
        prune=prune,
    )
    assert deleted == ["web-aaaaaaa", "web-bbbbbbb"]
    assert list(objects.releases) == ["web-ccccccc"], "the rolled-back Release under the lock is kept"
    assert h.status.commit_lock.locked and h.status.commit_lock.release == "web-ccccccc"
