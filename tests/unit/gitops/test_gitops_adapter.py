"""The controller's GitAdapter (controller/wiring.py) keeps the classified errors and their reasons."""

from __future__ import annotations

from typing import Any

import pytest

from controller import errors
from controller.gitops.repo import RepoCache
from controller.models.release import ReleaseSpec
from controller.settings import Settings
from controller.wiring import GitAdapter

from .helpers import Upstream
from .servers import GitDaemon


def _spec(url: str, revision: str) -> ReleaseSpec:
    return ReleaseSpec.model_validate(
        {
            "source": {"repo": url, "branch": "main", "revision": revision, "path": "deploy/"},
            "phases": [{"name": "all", "remaining": True}],
        }
    )


def _adapter(cache: RepoCache) -> GitAdapter:
    objects: Any = None  # no secretRef in these specs: the adapter never reads a Secret
    return GitAdapter(cache, objects)


async def test_revert_conflict_is_a_conflict_result(upstream: Upstream, cache: RepoCache) -> None:
    upstream.commit({"deploy/web.yaml": "image: v1\n"}, "base")
    bad = upstream.commit({"deploy/web.yaml": "image: v2\n"}, "bad")
    upstream.commit({"deploy/web.yaml": "image: v3\n"}, "fix forward")

    result = await _adapter(cache).revert("shop", _spec(upstream.url, bad), "stopline: revert bad\n\nbody", {})

    assert (result.state, result.commit, result.attempts, result.message) == (
        "Conflict",
        None,
        1,
        "stopline: revert bad",
    )
    assert "deploy/web.yaml" in (result.reason or "")


async def test_unreachable_server_keeps_its_reason(upstream: Upstream, cache: RepoCache, daemon: GitDaemon) -> None:
    rev = upstream.commit({"deploy/web.yaml": "image: v1\n"}, "base")
    url = daemon.url(upstream.bare.name)
    daemon.stop()
    with pytest.raises(errors.GitUnreachable) as info:
        await _adapter(cache).manifests("shop", _spec(url, rev))
    assert info.value.reason == "Unreachable"
    assert not isinstance(info.value, errors.InvalidSpec)  # transient: the push is retried, not failed


async def test_missing_revision_is_still_an_invalid_spec(upstream: Upstream, cache: RepoCache) -> None:
    upstream.commit({"deploy/web.yaml": "image: v1\n"}, "base")
    with pytest.raises(errors.InvalidSpec) as info:
        await _adapter(cache).manifests("shop", _spec(upstream.url, "3" * 40))
    assert info.value.reason == "NotFound"
    assert isinstance(info.value, errors.GitNotFoundError)


async def test_bad_manifest_is_still_a_manifest_error(upstream: Upstream, cache: RepoCache) -> None:
    rev = upstream.commit({"deploy/web.yaml": "kind: [unclosed\n"}, "broken")
    with pytest.raises(errors.ManifestError, match="invalid YAML"):
        await _adapter(cache).manifests("shop", _spec(upstream.url, rev))


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, 15.0), ("", 15.0), ("2.5", 2.5), ("60", 60.0)], ids=["unset", "empty", "2.5", "60"]
)
def test_git_timeout_setting(raw: str | None, expected: float) -> None:
    env = {} if raw is None else {"STOPLINE_GIT_TIMEOUT": raw}
    assert Settings.from_env(env).git_timeout_seconds == expected


@pytest.mark.parametrize("raw", ["0", "-1", "nan", "soon"])
def test_git_timeout_setting_must_be_a_positive_number(raw: str) -> None:
    with pytest.raises(ValueError, match="STOPLINE_GIT_TIMEOUT"):
        Settings.from_env({"STOPLINE_GIT_TIMEOUT": raw})
