"""The controller's webhook and lock routes over real HTTP (aiohttp test server), with fake Tracks."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from controller.models.track import CommitLock, PushLock, TrackStatus
from controller.track.webhook import TrackTarget
from controller.web import server

Client = TestClient[web.Request, web.Application]
SECRET = "hush"
PUSH = json.dumps({"repo": "git://127.0.0.1:9418/app.git", "branch": "main"}).encode()
SINCE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class World:
    def __init__(self) -> None:
        self.targets = [
            TrackTarget("shop", "web", "git://127.0.0.1:9418/app.git", "main", None),
            TrackTarget("shop", "web-staging", "git://127.0.0.1:9418/app.git", "staging", None),
        ]
        self.woken: list[tuple[str, str]] = []
        self.tracks: dict[tuple[str, str], dict[str, Any]] = {}

    async def list_targets(self) -> list[TrackTarget]:
        return list(self.targets)

    def wake(self, ns: str, name: str) -> None:
        self.woken.append((ns, name))

    async def track(self, ns: str, name: str) -> dict[str, Any] | None:
        return self.tracks.get((ns, name))


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
async def http(world: World) -> AsyncIterator[Client]:
    app = server.base_app()
    server.register_webhook(app, world.list_targets, world.wake)
    server.register_lock_api(app, world.track)
    async with TestClient(TestServer(app)) as c:
        yield c


async def post(http: Client, data: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    resp = await http.post("/webhook", data=data, headers=headers or {})
    return resp.status, await resp.json()


async def test_push_wakes_the_tracks_on_that_branch(http: Client, world: World) -> None:
    status, out = await post(http, PUSH)
    assert (status, out) == (202, {"branch": "main", "woken": ["shop/web"], "refused": 0})
    assert world.woken == [("shop", "web")]


async def test_push_to_an_unfollowed_branch_wakes_nothing(http: Client, world: World) -> None:
    status, out = await post(http, json.dumps({"repo": "git://127.0.0.1:9418/app.git", "branch": "dev"}).encode())
    assert (status, out["woken"]) == (200, [])
    assert world.woken == []


async def test_bad_payload_is_400(http: Client, world: World) -> None:
    status, out = await post(http, b'{"repo": "git://127.0.0.1:9418/app.git", "ref": "refs/tags/v1"}')
    assert status == 400 and out == {"error": "ref 'refs/tags/v1' is not a branch"}
    assert world.woken == []


@pytest.mark.parametrize(
    "headers",
    [{"X-GitHub-Event": "ping"}, {"X-Gitlab-Event": "Tag Push Hook"}, {"X-Gitea-Event": "issues"}],
    ids=["github-ping", "gitlab-tag-push", "gitea-issues"],
)
async def test_non_push_events_are_acknowledged_and_ignored(
    http: Client, world: World, headers: dict[str, str]
) -> None:
    status, out = await post(http, b'{"zen": "Keep it logically awesome."}', headers)
    assert status == 200 and out["woken"] == []
    assert world.woken == []


async def test_github_push_event_header_is_a_push(http: Client, world: World) -> None:
    status, _ = await post(http, PUSH, {"X-GitHub-Event": "push"})
    assert status == 202 and world.woken == [("shop", "web")]


@pytest.mark.parametrize(
    ("headers", "expected", "woken"),
    [
        ({}, 403, []),
        ({"X-Hub-Signature-256": "sha256=" + hmac.new(b"wrong", PUSH, hashlib.sha256).hexdigest()}, 403, []),
        (
            {"X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), PUSH, hashlib.sha256).hexdigest()},
            202,
            [("shop", "web")],
        ),
    ],
    ids=["unsigned", "wrong-signature", "signed"],
)
async def test_secret(http: Client, world: World, headers: dict[str, str], expected: int, woken: list[Any]) -> None:
    world.targets[0] = TrackTarget("shop", "web", "git://127.0.0.1:9418/app.git", "main", SECRET)
    status, out = await post(http, PUSH, headers)
    assert status == expected
    assert world.woken == woken
    if expected == 403:
        assert out == {"error": "signature mismatch", "woken": []}


def track_body(status: TrackStatus) -> dict[str, Any]:
    return {"metadata": {"name": "web"}, "status": status.model_dump(mode="json", by_alias=True)}


async def test_lock_api_open_is_200(http: Client, world: World) -> None:
    world.tracks[("shop", "web")] = track_body(TrackStatus(last_good="a" * 40, last_seen="b" * 40))
    resp = await http.get("/api/v1/namespaces/shop/tracks/web/lock")
    assert resp.status == 200
    out = await resp.json()
    assert out["locked"] is False and out["reason"] is None
    assert out["track"] == "shop/web" and out["lastGood"] == "a" * 40 and out["lastSeen"] == "b" * 40


async def test_lock_api_locked_is_423_with_the_reason(http: Client, world: World) -> None:
    lock = CommitLock(
        locked=True,
        reason="web-bbbbbbb rolled back: gate load 9.00 > 6",
        since=SINCE,
        release="web-bbbbbbb",
        revision="b" * 40,
    )
    push = PushLock(held=True, release="web-ccccccc")
    world.tracks[("shop", "web")] = track_body(TrackStatus(commit_lock=lock, push_lock=push))
    resp = await http.get("/api/v1/namespaces/shop/tracks/web/lock")
    assert resp.status == 423
    out = await resp.json()
    assert out["locked"] is True
    assert out["reason"] == "web-bbbbbbb rolled back: gate load 9.00 > 6"
    assert out["since"] == "2026-03-01T12:00:00+00:00"
    assert (out["release"], out["revision"]) == ("web-bbbbbbb", "b" * 40)
    assert out["pushLock"] == {"held": True, "release": "web-ccccccc"}


async def test_lock_api_unknown_track_is_404(http: Client) -> None:
    resp = await http.get("/api/v1/namespaces/shop/tracks/nope/lock")
    assert resp.status == 404
    assert await resp.json() == {"error": "track shop/nope not found"}


async def test_lock_api_track_without_status_is_open(http: Client, world: World) -> None:
    world.tracks[("shop", "web")] = {"metadata": {"name": "web"}}
    resp = await http.get("/api/v1/namespaces/shop/tracks/web/lock")
    assert resp.status == 200 and (await resp.json())["locked"] is False
