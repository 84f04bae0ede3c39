"""RepoCache.revert against real git: content, merges, idempotency, races, conflicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.gitops.errors import GitConflict
from controller.gitops.repo import RepoCache, _Session
from controller.gitops.results import REVERT_TRAILER, RevertOutcome

from .helpers import Upstream, git

TRAILERS = {"Stopline-Release": "shop/web-abc", "Stopline-Gate": "chat-loadavg"}


def revert(cache: RepoCache, up: Upstream, revision: str, max_attempts: int = 5) -> RevertOutcome:
    return cache.revert(
        up.url, "main", revision, message="Revert bad push", trailers=TRAILERS, max_attempts=max_attempts
    )


def assert_worktree_clean(cache: RepoCache, up: Upstream) -> None:
    clone = cache.path_for(up.url)
    assert git(clone, "status", "--porcelain", "--ignored") == ""
    assert not (clone / ".git" / "REVERT_HEAD").exists()
    assert not (clone / ".git" / "sequencer").exists()


def test_revert_of_the_tip_restores_the_parent_tree(upstream: Upstream, cache: RepoCache) -> None:
    good = upstream.commit({"deploy/web.yaml": "replicas: 1\n"}, "good")
    bad = upstream.commit({"deploy/web.yaml": "replicas: 9\n", "deploy/new.yaml": "kind: X\n"}, "bad")

    outcome = cache.revert(
        upstream.url,
        "main",
        bad,
        message="stopline: revert bad\n\nchat-loadavg 7.2 > 6",
        trailers=TRAILERS,
        author=("Stopline Bot", "bot@example.test"),
    )

    assert outcome.status == "pushed"
    assert outcome.attempts == 1
    assert outcome.commit == upstream.tip()
    assert upstream.parents(outcome.commit) == [bad]
    assert upstream.tree(outcome.commit) == upstream.tree(good)
    message = upstream.message(outcome.commit)
    assert message.startswith("stopline: revert bad\n\nchat-loadavg 7.2 > 6\n\n")
    assert f"{REVERT_TRAILER}: {bad}" in message.splitlines()
    assert "Stopline-Gate: chat-loadavg" in message.splitlines()
    assert git(upstream.bare, "log", "-1", "--format=%an <%ae>|%cn", outcome.commit) == (
        "Stopline Bot <bot@example.test>|Stopline Bot"
    )
    assert cache.find_revert(upstream.url, "main", bad) == outcome.commit
    assert_worktree_clean(cache, upstream)


def test_revert_of_a_middle_commit_keeps_later_work(upstream: Upstream, cache: RepoCache) -> None:
    upstream.commit({"a.yaml": "a: 1\n", "b.yaml": "b: 1\n"}, "base")
    bad = upstream.commit({"a.yaml": "a: 2\n"}, "bad")
    later = upstream.commit({"b.yaml": "b: 2\n"}, "later")

    outcome = revert(cache, upstream, bad)

    assert outcome.status == "pushed"
    tip = upstream.tip()
    assert upstream.parents(tip) == [later]
    assert upstream.show(tip, "a.yaml") == "a: 1"
    assert upstream.show(tip, "b.yaml") == "b: 2"


def test_revert_of_a_merge_commit_uses_the_first_parent(upstream: Upstream, cache: RepoCache) -> None:
    base = upstream.commit({"app.yaml": "v: 1\n", "other.yaml": "o: 1\n"}, "base")
    upstream.checkout("feature", base)
    upstream.commit({"app.yaml": "v: 2\n"}, "feature 1", branch="feature")
    upstream.commit({"new.yaml": "n: 1\n"}, "feature 2", branch="feature")
    main_side = upstream.commit({"other.yaml": "o: 2\n"}, "main work")
    merge = upstream.merge("feature", "Merge feature")

    outcome = revert(cache, upstream, merge)

    assert outcome.status == "pushed"
    assert upstream.tree(upstream.tip()) == upstream.tree(main_side)


def test_revert_is_idempotent(upstream: Upstream, cache: RepoCache) -> None:
    upstream.commit({"a": "1\n"}, "base")
    bad = upstream.commit({"a": "2\n"}, "bad")

    first = revert(cache, upstream, bad)
    upstream.sync()
    upstream.commit({"b": "unrelated\n"}, "work continues")
    second = revert(cache, upstream, bad)

    assert first.status == "pushed"
    assert second.status == "already"
    assert second.commit == first.commit
    assert second.attempts == 0
    assert upstream.count(f"{bad}..main", f"--grep={REVERT_TRAILER}: {bad}") == 1


def test_already_is_found_even_with_a_fresh_cache(upstream: Upstream, tmp_path: Path) -> None:
    upstream.commit({"a": "1\n"}, "base")
    bad = upstream.commit({"a": "2\n"}, "bad")
    with RepoCache(tmp_path / "one") as one:
        pushed = revert(one, upstream, bad)
    with RepoCache(tmp_path / "two") as two:
        again = revert(two, upstream, bad)
    assert again.status == "already"
    assert again.commit == pushed.commit


def test_a_trailer_for_another_revision_does_not_count(upstream: Upstream, cache: RepoCache) -> None:
    upstream.commit({"a": "1\n", "b": "1\n"}, "base")
    first_bad = upstream.commit({"a": "2\n"}, "bad a")
    second_bad = upstream.commit({"b": "2\n"}, "bad b")
    assert revert(cache, upstream, second_bad).status == "pushed"
    assert cache.find_revert(upstream.url, "main", first_bad) is None
    outcome = revert(cache, upstream, first_bad)
    assert outcome.status == "pushed"
    assert upstream.show(upstream.tip(), "a") == "1"


def test_non_fast_forward_race_lands_on_top_and_keeps_the_other_commit(
    upstream: Upstream, cache: RepoCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream.commit({"a": "1\n"}, "base")
    bad = upstream.commit({"a": "2\n"}, "bad")
    original_push = RepoCache._push
    raced: list[str] = []

    def push_after_someone_else(self: RepoCache, s: _Session, branch: str) -> str | None:
        if not raced:  # another developer pushes between our fetch and our push
            raced.append(upstream.commit({"other.txt": "theirs\n"}, "concurrent work"))
        return original_push(self, s, branch)

    monkeypatch.setattr(RepoCache, "_push", push_after_someone_else)
    outcome = revert(cache, upstream, bad)

    assert outcome.status == "pushed"
    assert outcome.attempts == 2
    tip = upstream.tip()
    assert tip == outcome.commit
    assert upstream.parents(tip) == raced
    assert upstream.show(tip, "other.txt") == "theirs"
    assert upstream.show(tip, "a") == "1"
    assert upstream.count(f"{bad}..main", f"--grep={REVERT_TRAILER}") == 1
    assert_worktree_clean(cache, upstream)


def test_racing_forever_gives_up_after_max_attempts(
    upstream: Upstream, cache: RepoCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream.commit({"a": "1\n"}, "base")
    bad = upstream.commit({"a": "2\n"}, "bad")
    original_push = RepoCache._push
    counter = iter(range(100))

    def always_beaten(self: RepoCache, s: _Session, branch: str) -> str | None:
        upstream.commit({"other.txt": f"{next(counter)}\n"}, "someone else")
        return original_push(self, s, branch)

    monkeypatch.setattr(RepoCache, "_push", always_beaten)
    outcome = revert(cache, upstream, bad, max_attempts=3)

    assert outcome.status == "error"
    assert outcome.attempts == 3
    assert "non-fast-forward 3 times" in (outcome.reason or "")
    assert upstream.count(f"{bad}..main", f"--grep={REVERT_TRAILER}") == 0


def test_a_revert_pushed_by_someone_else_during_the_race_is_accepted(
    upstream: Upstream, cache: RepoCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream.commit({"a": "1\n"}, "base")
    bad = upstream.commit({"a": "2\n"}, "bad")
    original_push = RepoCache._push
    theirs: list[RevertOutcome] = []
    started: list[bool] = []

    def other_replica_wins(self: RepoCache, s: _Session, branch: str) -> str | None:
        if not started:  # the replica's own push goes through this patch too
            started.append(True)
            with RepoCache(tmp_path / "replica") as replica:
                theirs.append(replica.revert(upstream.url, "main", bad, message="replica was first", trailers={}))
        return original_push(self, s, branch)

    monkeypatch.setattr(RepoCache, "_push", other_replica_wins)
    outcome = revert(cache, upstream, bad)

    assert outcome.status == "already"
    assert outcome.commit == theirs[0].commit
    assert outcome.attempts == 1
    assert upstream.count(f"{bad}..main", f"--grep={REVERT_TRAILER}") == 1


def test_conflict_leaves_the_branch_untouched(upstream: Upstream, cache: RepoCache) -> None:
    upstream.commit({"deploy/web.yaml": "image: v1\n", "ok.yaml": "x: 1\n"}, "base")
    bad = upstream.commit({"deploy/web.yaml": "image: v2\n"}, "bad")
    upstream.commit({"deploy/web.yaml": "image: v3\n"}, "fix forward on the same line")
    tip_before = upstream.tip()

    with pytest.raises(GitConflict) as info:
        revert(cache, upstream, bad)

    assert info.value.reason == "Conflict"
    assert info.value.paths == ("deploy/web.yaml",)
    assert info.value.attempts == 1
    assert "deploy/web.yaml" in str(info.value)
    assert upstream.tip() == tip_before
    assert_worktree_clean(cache, upstream)
    # the work tree is usable again straight away
    other = upstream.commit({"ok.yaml": "x: 2\n"}, "another")
    assert revert(cache, upstream, other).status == "pushed"


def test_revision_not_on_branch(upstream: Upstream, cache: RepoCache) -> None:
    base = upstream.commit({"a": "1\n"}, "base")
    upstream.checkout("feature", base)
    stray = upstream.commit({"a": "2\n"}, "on feature only", branch="feature")
    tip_before = upstream.tip()

    outcome = revert(cache, upstream, stray)

    assert outcome.status == "error"
    assert outcome.reason == "revision not on branch"
    assert upstream.tip() == tip_before
    assert cache.find_revert(upstream.url, "main", stray) is None


def test_revert_of_changes_already_undone_is_an_error_not_an_empty_commit(upstream: Upstream, cache: RepoCache) -> None:
    upstream.commit({"a": "1\n"}, "base")
    bad = upstream.commit({"a": "2\n"}, "bad")
    upstream.commit({"a": "1\n"}, "undone by hand")
    tip_before = upstream.tip()

    outcome = revert(cache, upstream, bad)

    assert outcome.status == "error"
    assert "already undone" in (outcome.reason or "")
    assert upstream.tip() == tip_before


def test_empty_message_gets_gits_default_and_the_trailer_cannot_be_overridden(
    upstream: Upstream, cache: RepoCache
) -> None:
    upstream.commit({"a": "1\n"}, "base")
    bad = upstream.commit({"a": "2\n"}, "bad change")
    outcome = cache.revert(
        upstream.url, "main", bad, message="  ", trailers={REVERT_TRAILER: "0" * 40, "X-Note": " hi "}
    )
    message = upstream.message(outcome.commit or "")
    assert message.startswith(f'Revert "bad change"\n\nThis reverts commit {bad}.\n\n')
    assert message.splitlines()[-2:] == [f"{REVERT_TRAILER}: {bad}", "X-Note: hi"]


def test_revert_recovers_from_a_work_tree_left_dirty_by_a_crash(upstream: Upstream, cache: RepoCache) -> None:
    upstream.commit({"a": "1\n", "b": "1\n"}, "base")
    bad_a = upstream.commit({"a": "2\n"}, "bad a")
    upstream.commit({"a": "3\n"}, "a again")
    bad_b = upstream.commit({"b": "2\n"}, "bad b")
    assert cache.tip(upstream.url, "main") == bad_b
    clone = cache.path_for(upstream.url)
    # what a controller killed in the middle of a conflicting revert leaves behind
    git(clone, "checkout", "--quiet", "-B", "stopline-work", bad_b)
    with pytest.raises(AssertionError, match="could not revert"):
        git(clone, "revert", "--no-commit", bad_a)
    (clone / "stray.txt").write_text("junk\n")

    outcome = revert(cache, upstream, bad_b)

    assert outcome.status == "pushed"
    assert upstream.show(upstream.tip(), "b") == "1"
    assert upstream.show(upstream.tip(), "a") == "3"
    assert_worktree_clean(cache, upstream)
