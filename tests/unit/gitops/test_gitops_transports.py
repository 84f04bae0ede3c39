"""RepoCache over real network transports on loopback: git daemon (git://) and smart HTTP with Basic auth."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import git
import pytest

from controller.gitops.credentials import GitCredentials
from controller.gitops.errors import GitError
from controller.gitops.repo import RepoCache
from controller.gitops.results import REVERT_TRAILER

from .helpers import Upstream
from .servers import PASSWORD, USER

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def test_tip_manifests_and_revert_over_git_daemon(upstream: Upstream, cache: RepoCache, git_daemon: str) -> None:
    good = upstream.commit({"deploy/web.yaml": "kind: Deployment\nspec: {replicas: 1}\n"}, "good")
    bad = upstream.commit({"deploy/web.yaml": "kind: Deployment\nspec: {replicas: 5}\n"}, "bad")

    assert cache.tip(git_daemon, "main") == bad
    assert cache.manifests(git_daemon, good, "deploy")[0]["spec"]["replicas"] == 1

    outcome = cache.revert(git_daemon, "main", bad, message="revert", trailers={})
    assert outcome.status == "pushed"
    assert upstream.tip() == outcome.commit
    assert upstream.tree(upstream.tip()) == upstream.tree(good)
    assert cache.revert(git_daemon, "main", bad, message="revert", trailers={}).status == "already"


def _files_containing(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_http_basic_auth_through_askpass(upstream: Upstream, cache: RepoCache, http_remote: str) -> None:
    upstream.commit({"a.yaml": "a: 1\n"}, "base")
    bad = upstream.commit({"a.yaml": "a: 2\n"}, "bad")
    creds = GitCredentials(username=USER, password=PASSWORD)

    assert cache.tip(http_remote, "main", creds) == bad
    outcome = cache.revert(http_remote, "main", bad, message="revert", trailers={"X-Why": "test"}, creds=creds)

    assert outcome.status == "pushed"
    assert f"{REVERT_TRAILER}: {bad}" in upstream.message(upstream.tip())
    assert _files_containing(cache.root, PASSWORD) == []


def test_http_credentials_embedded_in_the_url_are_not_stored(
    upstream: Upstream, cache: RepoCache, http_remote: str
) -> None:
    rev = upstream.commit({"a.yaml": "a: 1\n"}, "base")
    url = http_remote.replace("http://", f"http://{USER}:{PASSWORD}@")
    assert cache.tip(url, "main") == rev
    assert cache.path_for(url) == cache.path_for(http_remote)
    assert _files_containing(cache.root, PASSWORD) == []


def test_http_wrong_password_fails_without_leaking_it(upstream: Upstream, cache: RepoCache, http_remote: str) -> None:
    upstream.commit({"a.yaml": "a: 1\n"}, "base")
    wrong = "Wr0ng-but-still-secret"
    with pytest.raises(GitError, match="Authentication failed") as info:
        cache.tip(http_remote, "main", GitCredentials(username=USER, password=wrong))
    assert wrong not in str(info.value)
    with pytest.raises(GitError):  # no credentials at all: git must not hang on a prompt
        cache.tip(http_remote, "main")


def test_only_fetch_and_push_see_the_credentials(
    upstream: Upstream, cache: RepoCache, http_remote: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream.commit({"a.yaml": "a: 1\n"}, "base")
    bad = upstream.commit({"a.yaml": "a: 2\n"}, "bad")
    seen: dict[str, bool] = {}
    original: Callable[..., Any] = git.Git.execute

    def recording(self: git.Git, command: list[str], *args: object, **kwargs: Any) -> Any:
        env = kwargs.get("env") or {}
        verb = next(a for a in command[1:] if not a.startswith("-") and "=" not in a)
        seen[verb] = seen.get(verb, False) or PASSWORD in env.values()
        return original(self, command, *args, **kwargs)

    monkeypatch.setattr(git.Git, "execute", recording)
    creds = GitCredentials(username=USER, password=PASSWORD)
    assert cache.revert(http_remote, "main", bad, message="revert", trailers={}, creds=creds).status == "pushed"

    assert {verb for verb, had_password in seen.items() if had_password} == {"fetch", "push"}
    assert {"log", "revert", "commit", "checkout"} <= seen.keys()
