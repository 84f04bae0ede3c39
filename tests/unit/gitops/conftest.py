from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.gitops.repo import RepoCache

from .helpers import Upstream
from .servers import GitDaemon, GitHTTPServer


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    return Upstream(tmp_path)


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[RepoCache]:
    with RepoCache(tmp_path / "cache", timeout=60) as repo_cache:
        yield repo_cache


@pytest.fixture
def daemon(upstream: Upstream) -> Iterator[GitDaemon]:
    """``git daemon`` serving the upstream's directory on a loopback port (running)."""
    server = GitDaemon(upstream.bare.parent)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def git_daemon(daemon: GitDaemon, upstream: Upstream) -> str:
    """git:// URL of the upstream repository."""
    return daemon.url(upstream.bare.name)


@pytest.fixture
def http_remote(upstream: Upstream) -> Iterator[str]:
    """http:// URL of the upstream repository, behind Basic auth (servers.USER / servers.PASSWORD)."""
    server = GitHTTPServer(upstream.bare.parent)
    try:
        yield server.url(upstream.bare.name)
    finally:
        server.close()
