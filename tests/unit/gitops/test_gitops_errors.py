"""Git failures are classified (auth, unreachable, timeout, not found) against real loopback servers,
with messages that name the repository and never a credential."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from controller import errors
from controller.gitops.credentials import GitCredentials
from controller.gitops.errors import (
    GitAuthError,
    GitError,
    GitNotFoundError,
    GitTimeout,
    GitUnreachable,
)
from controller.gitops.repo import RepoCache, _classify, _Result

from .helpers import Upstream
from .servers import PASSWORD, USER, GitDaemon, GitHTTPServer, SilentPort

TIMEOUT = 2.0
"""Network timeout of the ``quick`` cache: short, so a hung server costs the test two seconds."""
WRONG = "Wr0ng-but-still-secret"
Call = Callable[[RepoCache, str, str, GitCredentials | None], object]


@pytest.fixture
def quick(tmp_path: Path) -> Iterator[RepoCache]:
    with RepoCache(tmp_path / "quick-cache", timeout=TIMEOUT) as repo_cache:
        yield repo_cache


# Every public call that talks to the remote; ``rev`` is a commit on main not yet in the cache.
CALLS: dict[str, Call] = {
    "tip": lambda c, url, rev, creds: c.tip(url, "main", creds),
    "ensure_revision": lambda c, url, rev, creds: c.ensure_revision(url, rev, "main", creds),
    "manifests": lambda c, url, rev, creds: c.manifests(url, rev, "deploy", creds),
    "commits_between": lambda c, url, rev, creds: c.commits_between(url, "main", None, rev, creds),
    "find_revert": lambda c, url, rev, creds: c.find_revert(url, "main", rev, creds),
    "revert": lambda c, url, rev, creds: c.revert(url, "main", rev, message="revert", trailers={}, creds=creds),
}


def _two_commits(upstream: Upstream) -> str:
    upstream.commit({"deploy/web.yaml": "kind: Deployment\nspec: {replicas: 1}\n"}, "good")
    return upstream.commit({"deploy/web.yaml": "kind: Deployment\nspec: {replicas: 2}\n"}, "bad")


def test_reason_values_are_the_documented_ones() -> None:
    assert {cls.__name__: cls.reason for cls in (GitAuthError, GitUnreachable, GitTimeout, GitNotFoundError)} == {
        "GitAuthError": "AuthenticationFailed",
        "GitUnreachable": "Unreachable",
        "GitTimeout": "Timeout",
        "GitNotFoundError": "NotFound",
    }
    assert errors.GitConflict.reason == "Conflict"
    # callers that catch the older, broader types keep working
    assert issubclass(GitTimeout, GitUnreachable)
    assert all(issubclass(c, errors.GitError) for c in (GitAuthError, GitUnreachable, GitNotFoundError))
    assert issubclass(GitNotFoundError, errors.InvalidSpec)
    assert not issubclass(GitAuthError, errors.InvalidSpec)


# -- HTTP with Basic auth ------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("call", CALLS, ids=str)
def test_wrong_password_is_an_authentication_failure_not_a_missing_revision(
    upstream: Upstream, quick: RepoCache, http_remote: str, call: str
) -> None:
    rev = _two_commits(upstream)
    with pytest.raises(GitAuthError) as info:
        CALLS[call](quick, http_remote, rev, GitCredentials(username=USER, password=WRONG))
    assert info.value.reason == "AuthenticationFailed"
    assert str(info.value).startswith(f"authentication failed for {http_remote} ")
    assert WRONG not in str(info.value)
    assert "does not exist" not in str(info.value)


@pytest.mark.timeout(60)
def test_missing_credentials_are_an_authentication_failure(
    upstream: Upstream, quick: RepoCache, http_remote: str
) -> None:
    rev = _two_commits(upstream)
    with pytest.raises(GitAuthError, match="could not read Username"):
        quick.manifests(http_remote, rev, "deploy")


@pytest.mark.timeout(60)
def test_password_embedded_in_the_url_is_not_in_the_message(
    upstream: Upstream, quick: RepoCache, http_remote: str
) -> None:
    _two_commits(upstream)
    url = http_remote.replace("http://", f"http://{USER}:{WRONG}@")
    with pytest.raises(GitAuthError) as info:
        quick.tip(url, "main")
    assert WRONG not in str(info.value)
    assert USER not in str(info.value)
    assert str(info.value).startswith(f"authentication failed for {http_remote} ")


@pytest.mark.timeout(60)
def test_right_password_wrong_revision_is_not_found(upstream: Upstream, quick: RepoCache, http_remote: str) -> None:
    _two_commits(upstream)
    creds = GitCredentials(username=USER, password=PASSWORD)
    missing = "1" * 40
    with pytest.raises(GitNotFoundError, match=f"revision {missing} does not exist") as info:
        quick.manifests(http_remote, missing, "deploy", creds)
    assert info.value.reason == "NotFound"
    with pytest.raises(GitNotFoundError, match=f"revision {missing} does not exist"):
        quick.ensure_revision(http_remote, missing, "main", creds)
    with pytest.raises(GitNotFoundError, match="branch 'nope' does not exist"):
        quick.tip(http_remote, "nope", creds)
    with pytest.raises(GitNotFoundError, match="does not exist"):
        quick.tip(http_remote.replace("/app.git", "/missing.git"), "main", creds)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("status", "error", "reason"),
    [
        (403, GitAuthError, "AuthenticationFailed"),
        (500, GitUnreachable, "Unreachable"),
        (503, GitUnreachable, "Unreachable"),
    ],
    ids=["403", "500", "503"],
)
def test_http_status_codes(
    upstream: Upstream, quick: RepoCache, status: int, error: type[GitError], reason: str
) -> None:
    _two_commits(upstream)
    server = GitHTTPServer(upstream.bare.parent, forced_status=status)
    try:
        url = server.url(upstream.bare.name)
        with pytest.raises(error) as info:
            quick.tip(url, "main", GitCredentials(username=USER, password=PASSWORD))
    finally:
        server.close()
    assert type(info.value) is error
    assert info.value.reason == reason
    assert PASSWORD not in str(info.value)


@pytest.mark.timeout(30)
def test_http_server_that_never_answers_times_out_within_the_timeout(upstream: Upstream, quick: RepoCache) -> None:
    silent = SilentPort()
    try:
        started = time.monotonic()
        with pytest.raises(GitTimeout) as info:
            quick.tip(f"http://127.0.0.1:{silent.port}/app.git", "main", GitCredentials(USER, PASSWORD))
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert TIMEOUT <= elapsed < TIMEOUT + 5
    assert info.value.reason == "Timeout"
    assert str(info.value).startswith(f"git server did not answer within {TIMEOUT:g}s")


# -- git daemon -----------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("call", CALLS, ids=str)
def test_stopped_daemon_is_unreachable(upstream: Upstream, quick: RepoCache, daemon: GitDaemon, call: str) -> None:
    rev = _two_commits(upstream)
    url = daemon.url(upstream.bare.name)
    daemon.stop()
    with pytest.raises(GitUnreachable) as info:
        CALLS[call](quick, url, rev, None)
    assert type(info.value) is GitUnreachable
    assert info.value.reason == "Unreachable"
    assert str(info.value).startswith(f"git server of {url} is unreachable")
    assert "Connection refused" in str(info.value)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("call", ["tip", "manifests", "revert"], ids=str)
def test_hung_daemon_times_out_within_one_attempt_and_the_cache_recovers(
    upstream: Upstream, quick: RepoCache, daemon: GitDaemon, call: str
) -> None:
    rev = _two_commits(upstream)
    url = daemon.url(upstream.bare.name)
    daemon.pause()
    started = time.monotonic()
    with pytest.raises(GitTimeout) as info:
        CALLS[call](quick, url, rev, None)
    elapsed = time.monotonic() - started

    assert TIMEOUT <= elapsed < TIMEOUT + 5
    assert info.value.reason == "Timeout"
    assert isinstance(info.value, GitUnreachable)
    assert str(info.value) == (
        f"git server did not answer within {TIMEOUT:g}s: git fetch {url} was stopped "
        "(STOPLINE_GIT_TIMEOUT sets the limit)"
    )
    daemon.resume()
    assert quick.tip(url, "main") == rev
    assert quick.manifests(url, rev, "deploy")[0]["spec"]["replicas"] == 2


@pytest.mark.timeout(60)
def test_daemon_without_the_repository_is_not_found(upstream: Upstream, quick: RepoCache, daemon: GitDaemon) -> None:
    _two_commits(upstream)
    with pytest.raises(GitNotFoundError, match="no such repository"):
        quick.tip(daemon.url("missing.git"), "main")


def test_local_file_url_missing_revision_is_not_found(upstream: Upstream, quick: RepoCache) -> None:
    _two_commits(upstream)
    with pytest.raises(GitNotFoundError, match=f"revision {'2' * 40} does not exist"):
        quick.manifests(upstream.url, "2" * 40, "deploy")


# -- what git prints for transports the tests cannot serve (ssh, DNS) ---------------------------------


@pytest.mark.parametrize(
    ("stderr", "error"),
    [
        ("git@host: Permission denied (publickey).\nfatal: Could not read from remote repository.", GitAuthError),
        ("Host key verification failed.\nfatal: Could not read from remote repository.", GitAuthError),
        ("remote: Invalid username or password.\nfatal: Authentication failed for 'https://h/r.git/'", GitAuthError),
        ("fatal: unable to access 'https://h/r.git/': The requested URL returned error: 403", GitAuthError),
        ("ssh: Could not resolve hostname h: Name or service not known\nfatal: Could not read", GitUnreachable),
        ("fatal: unable to access 'https://h/r.git/': Could not resolve host: h", GitUnreachable),
        ("fatal: unable to look up h (port 9418) (Name or service not known)", GitUnreachable),
        ("ssh: connect to host h port 22: Connection timed out\nfatal: Could not read from remote", GitUnreachable),
        ("fatal: unable to access 'https://h/r.git/': Failed to connect to h port 443", GitUnreachable),
        ("fatal: the remote end hung up unexpectedly", GitUnreachable),
        ("fatal: unable to access 'https://h/r.git/': The requested URL returned error: 502", GitUnreachable),
        ("fatal: repository 'https://h/r.git/' not found", GitNotFoundError),
        ("fatal: '/srv/r.git' does not appear to be a git repository", GitNotFoundError),
        ("fatal: couldn't find remote ref refs/heads/x", GitNotFoundError),
        ("error: Server does not allow request for unadvertised object 1111", GitNotFoundError),
        ("fatal: bad object HEAD", GitError),
    ],
    ids=[
        "ssh-publickey", "ssh-host-key", "https-bad-password", "https-403", "ssh-dns", "https-dns", "git-dns",
        "ssh-timeout", "https-refused", "hung-up", "https-502", "https-404", "path-not-a-repo", "no-branch",
        "unadvertised-sha", "other",
    ],
)  # fmt: skip
def test_classify_what_git_prints(stderr: str, error: type[GitError]) -> None:
    assert _classify(_Result(128, "", stderr)) is error
