from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.gitops.repo import RepoCache

from .helpers import Upstream


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    return Upstream(tmp_path)


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[RepoCache]:
    with RepoCache(tmp_path / "cache", timeout=60) as repo_cache:
        yield repo_cache
