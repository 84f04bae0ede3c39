"""RepoCache read side against real git: tips, manifests at a revision, history."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest

from controller.gitops.errors import GitInputError, GitNotFoundError, ManifestError
from controller.gitops.repo import RepoCache

from .helpers import Upstream, git

DEPLOY_V1 = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec: {replicas: 1}
---
# an empty document between objects is skipped
---
apiVersion: v1
kind: Service
metadata: {name: web}
"""
DEPLOY_V2 = DEPLOY_V1.replace("replicas: 1", "replicas: 3")


def test_tip_follows_the_branch_and_reuses_one_clone(upstream: Upstream, cache: RepoCache) -> None:
    first = upstream.commit({"README": "one\n"}, "one")
    assert cache.tip(upstream.url, "main") == first

    second = upstream.commit({"README": "two\n"}, "two")
    assert cache.tip(upstream.url, "main") == second

    clones = [p for p in cache.root.iterdir() if not p.name.startswith(".")]
    assert clones == [cache.path_for(upstream.url)]


def test_tip_of_missing_branch_is_not_found(upstream: Upstream, cache: RepoCache) -> None:
    upstream.commit({"README": "x\n"}, "x")
    with pytest.raises(GitNotFoundError, match="branch 'nope' does not exist"):
        cache.tip(upstream.url, "nope")


@pytest.mark.parametrize("branch", ["-x", "a..b", "a b", "a:b", "refs/heads/x.lock", "x/", ""], ids=repr)
def test_invalid_branch_names_are_rejected_before_git_runs(upstream: Upstream, cache: RepoCache, branch: str) -> None:
    with pytest.raises(GitInputError):
        cache.tip(upstream.url, branch)
    assert not cache.path_for(upstream.url).exists()


def test_manifests_at_old_and_new_revision(upstream: Upstream, cache: RepoCache) -> None:
    old = upstream.commit(
        {
            "deploy/b/web.yaml": DEPLOY_V1,
            "deploy/a.json": '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}}',
            "deploy/notes.txt": "not a manifest",
            "other/ignored.yaml": "kind: Ignored\n",
        },
        "v1",
    )
    new = upstream.commit({"deploy/b/web.yaml": DEPLOY_V2, "deploy/c.yml": "kind: Extra\n"}, "v2")
    cache.ensure_revision(upstream.url, new, "main")

    at_old = cache.manifests(upstream.url, old, "deploy/")
    at_new = cache.manifests(upstream.url, new, "./deploy")

    assert [d["kind"] for d in at_old] == ["ConfigMap", "Deployment", "Service"]
    assert at_old[1]["spec"]["replicas"] == 1
    assert [d["kind"] for d in at_new] == ["ConfigMap", "Deployment", "Service", "Extra"]
    assert at_new[1]["spec"]["replicas"] == 3


def test_manifests_read_the_object_database_not_the_work_tree(upstream: Upstream, cache: RepoCache) -> None:
    rev = upstream.commit({"deploy/web.yaml": DEPLOY_V1}, "v1")
    cache.ensure_revision(upstream.url, rev, "main")
    assert not (cache.path_for(upstream.url) / "deploy").exists()
    assert len(cache.manifests(upstream.url, rev, "deploy")) == 2


def test_manifests_keep_timestamps_as_strings(upstream: Upstream, cache: RepoCache) -> None:
    rev = upstream.commit({"d/x.yaml": "kind: ConfigMap\ndata: {day: 2024-01-02, n: 3, ok: true}\n"}, "x")
    cache.ensure_revision(upstream.url, rev, "main")
    [doc] = cache.manifests(upstream.url, rev, "d")
    assert doc["data"] == {"day": "2024-01-02", "n": 3, "ok": True}


def test_manifests_of_a_single_file_path(upstream: Upstream, cache: RepoCache) -> None:
    rev = upstream.commit({"deploy/web.yaml": DEPLOY_V1}, "v1")
    cache.ensure_revision(upstream.url, rev, "main")
    assert [d["kind"] for d in cache.manifests(upstream.url, rev, "deploy/web.yaml")] == ["Deployment", "Service"]


def test_manifests_path_missing_at_revision(upstream: Upstream, cache: RepoCache) -> None:
    old = upstream.commit({"README": "x\n"}, "no deploy dir yet")
    new = upstream.commit({"deploy/web.yaml": DEPLOY_V1}, "add deploy")
    cache.ensure_revision(upstream.url, new, "main")
    assert len(cache.manifests(upstream.url, new, "deploy")) == 2
    with pytest.raises(GitNotFoundError, match=rf"path 'deploy' does not exist at revision {old}"):
        cache.manifests(upstream.url, old, "deploy")


def test_manifests_invalid_yaml_names_the_file(upstream: Upstream, cache: RepoCache) -> None:
    rev = upstream.commit({"deploy/ok.yaml": DEPLOY_V1, "deploy/sub/broken.yaml": "kind: [unclosed\n"}, "bad")
    cache.ensure_revision(upstream.url, rev, "main")
    with pytest.raises(ManifestError, match=r"deploy/sub/broken\.yaml: invalid YAML"):
        cache.manifests(upstream.url, rev, "deploy")


@pytest.mark.parametrize(
    ("content", "match"),
    [("- a\n- b\n", r"document 1 is a list"), ("kind: A\n---\njust text\n", r"document 2 is a str")],
    ids=["list", "scalar-second-doc"],
)
def test_manifests_documents_must_be_mappings(upstream: Upstream, cache: RepoCache, content: str, match: str) -> None:
    rev = upstream.commit({"deploy/x.yaml": content}, "odd")
    cache.ensure_revision(upstream.url, rev, "main")
    with pytest.raises(ManifestError, match=rf"deploy/x\.yaml: {match}"):
        cache.manifests(upstream.url, rev, "deploy")


def test_manifests_invalid_json_names_the_file(upstream: Upstream, cache: RepoCache) -> None:
    rev = upstream.commit({"deploy/x.json": "{nope"}, "bad json")
    cache.ensure_revision(upstream.url, rev, "main")
    with pytest.raises(ManifestError, match=r"deploy/x\.json: invalid JSON"):
        cache.manifests(upstream.url, rev, "deploy")


def test_manifests_fetch_an_unknown_revision_by_sha(upstream: Upstream, cache: RepoCache) -> None:
    upstream.commit({"README": "x\n"}, "base")
    upstream.checkout("feature", "main")
    feature = upstream.commit({"deploy/web.yaml": DEPLOY_V2}, "feature only", branch="feature")
    assert cache.manifests(upstream.url, feature, "deploy")[0]["spec"]["replicas"] == 3


def test_ensure_revision_of_a_commit_the_remote_does_not_have(upstream: Upstream, cache: RepoCache) -> None:
    upstream.commit({"README": "x\n"}, "base")
    missing = "0123456789abcdef0123456789abcdef01234567"
    with pytest.raises(GitNotFoundError, match=rf"revision {missing} does not exist"):
        cache.ensure_revision(upstream.url, missing, "main")
    with pytest.raises(GitInputError, match="not a commit SHA"):
        cache.ensure_revision(upstream.url, "--upload-pack=touch /tmp/x", "main")


def test_commits_between_is_first_parent_oldest_first(upstream: Upstream, cache: RepoCache) -> None:
    base = upstream.commit({"a": "0\n"}, "base")
    one = upstream.commit({"a": "1\n"}, "one\n\nbody text\n\nStopline-Release: shop/web-1\nSigned-off-by: Dev <d@x>")
    upstream.checkout("topic", one)
    side = upstream.commit({"b": "side\n"}, "side work", branch="topic")
    merge = upstream.merge("topic", "merge topic")
    three = upstream.commit({"a": "3\n"}, "three")

    commits = cache.commits_between(upstream.url, "main", base, three)

    assert [c.sha for c in commits] == [one, merge, three]
    assert side not in [c.sha for c in commits]
    assert [c.subject for c in commits] == ["one", "merge topic", "three"]
    assert commits[0].trailers == {"Stopline-Release": "shop/web-1", "Signed-off-by": "Dev <d@x>"}
    assert commits[1].parents == (one, side)
    assert commits[0].author == "Dev <dev@example.test>"
    assert commits[0].committed_at.utcoffset() is not None
    assert commits[0].committed_at <= commits[2].committed_at + timedelta(seconds=1)


def test_commits_between_without_since_and_with_limit(upstream: Upstream, cache: RepoCache) -> None:
    shas = [upstream.commit({"a": f"{i}\n"}, f"c{i}") for i in range(5)]
    everything = cache.commits_between(upstream.url, "main", None, shas[-1])
    assert [c.sha for c in everything] == shas
    assert everything[0].parents == ()
    newest = cache.commits_between(upstream.url, "main", None, shas[-1], limit=2)
    assert [c.sha for c in newest] == shas[-2:]
    assert cache.commits_between(upstream.url, "main", shas[-1], shas[-1]) == []


def test_parallel_calls_on_one_repo_are_serialised(upstream: Upstream, cache: RepoCache) -> None:
    rev = upstream.commit({"deploy/web.yaml": DEPLOY_V1}, "v1")
    results: list[object] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(cache.tip(upstream.url, "main"))
            results.append(len(cache.manifests(upstream.url, rev, "deploy")))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(map(str, results)) == sorted([rev] * 8 + ["2"] * 8)


def test_a_second_cache_on_the_same_root_reuses_the_clone(upstream: Upstream, tmp_path: Path) -> None:
    rev = upstream.commit({"deploy/web.yaml": DEPLOY_V1}, "v1")
    with RepoCache(tmp_path / "cache") as first:
        first.tip(upstream.url, "main")
        marker = first.path_for(upstream.url) / ".git" / "stopline-test-marker"
        marker.write_text("kept")
    with RepoCache(tmp_path / "cache") as second:
        assert second.tip(upstream.url, "main") == rev
        assert marker.read_text() == "kept"
    git(upstream.work, "status")  # the upstream work clone is untouched


def test_commit_names_who_wrote_and_who_committed_the_revision(upstream: Upstream, cache: RepoCache) -> None:
    upstream.commit({"a": "0\n"}, "base")
    sha = upstream.commit({"a": "1\n"}, "app v2: faster checkout")
    info = cache.commit(upstream.url, sha)
    assert (info.sha, info.subject) == (sha, "app v2: faster checkout")
    assert info.author == "Dev <dev@example.test>"
    assert info.committer.endswith("<dev@example.test>")
