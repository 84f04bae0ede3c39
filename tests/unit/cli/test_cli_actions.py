"""``stopline lock|unlock|promote|abort|pause|resume`` write the annotations the controller acts on."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner
from web import samples

from cli.conftest import FakeApi
from controller import cli
from controller.release.actions import ANNOTATION_ABORT, ANNOTATION_PAUSED, ANNOTATION_PROMOTE
from controller.track.plan import ANNOTATION_LOCK, ANNOTATION_UNLOCK, parse_token

runner = CliRunner()
ENV = {"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"}


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(cli.app, list(args), env=ENV)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def annotations_of(fake: FakeApi, plural: str, name: str) -> dict[str, str]:
    out: dict[str, str] = fake.objects[plural][name]["metadata"].get("annotations") or {}
    return out


def test_unlock_writes_a_token_the_track_planner_parses(fake: FakeApi) -> None:
    code, out = invoke("unlock", "web", "--reason", "fixed the chat query")
    assert code == 0, out
    assert "unlock requested for Track shop/web" in out
    raw = annotations_of(fake, "tracks", "web")[ANNOTATION_UNLOCK]
    assert json.loads(raw) == {"by": "alice", "reason": "fixed the chat query", "at": "2024-05-30T12:00:00+00:00"}
    token = parse_token(raw)
    assert (token.by, token.reason) == ("alice", "fixed the chat query")
    assert fake.patches == [("tracks", "web", {"metadata": {"annotations": {ANNOTATION_UNLOCK: raw}}})]


def test_unlock_by_someone_else(fake: FakeApi) -> None:
    invoke("unlock", "web", "-r", "ok", "--by", "bob")
    assert json.loads(annotations_of(fake, "tracks", "web")[ANNOTATION_UNLOCK])["by"] == "bob"


def test_unlock_of_an_open_track_leaves_no_token_behind(fake: FakeApi) -> None:
    code, out = invoke("unlock", "api", "--reason", "x")
    assert code == 0
    assert "not locked" in out
    assert fake.patches == []


def test_lock_an_open_track(fake: FakeApi) -> None:
    code, out = invoke("lock", "api", "--reason", "db migration", "--by", "ops")
    assert code == 0, out
    token = json.loads(annotations_of(fake, "tracks", "api")[ANNOTATION_LOCK])
    assert token == {"by": "ops", "reason": "db migration", "at": "2024-05-30T12:00:00+00:00"}


def test_lock_of_a_locked_track_writes_nothing(fake: FakeApi) -> None:
    code, out = invoke("lock", "web", "--reason", "again")
    assert code == 0
    assert "already locked" in out
    assert fake.patches == []


def test_lock_needs_a_reason(fake: FakeApi) -> None:
    code, out = invoke("lock", "api")
    assert code == 2
    assert "--reason" in out


def test_promote_writes_a_fresh_token(fake: FakeApi) -> None:
    code, out = invoke("promote", "web-bbbbbbb")
    assert code == 0, out
    assert "phase canary" in out
    assert annotations_of(fake, "releases", "web-bbbbbbb")[ANNOTATION_PROMOTE] == "2024-05-30T12:00:00+00:00"


@pytest.mark.parametrize("verb", ["promote", "abort", "pause", "resume"])
def test_final_releases_refuse_actions(fake: FakeApi, verb: str) -> None:
    code, out = invoke(verb, "web-3f9c2e1")
    assert code == 1
    assert out.strip() == f"error: Release web-3f9c2e1 is already RolledBack: nothing to {verb}"
    assert fake.patches == []


def test_abort_with_and_without_reason(fake: FakeApi) -> None:
    code, _ = invoke("abort", "web-bbbbbbb")
    assert code == 0
    assert annotations_of(fake, "releases", "web-bbbbbbb")[ANNOTATION_ABORT] == "aborted by alice"
    invoke("abort", "web-bbbbbbb", "--reason", "wrong build")
    assert annotations_of(fake, "releases", "web-bbbbbbb")[ANNOTATION_ABORT] == "wrong build"


def test_abort_while_rolling_back_is_a_no_op(fake: FakeApi) -> None:
    status = samples.rolled_back_status()
    status.phase = "RollingBack"
    fake.objects["releases"]["web-3f9c2e1"] = samples.release_object("web-3f9c2e1", samples.BAD, status)
    code, out = invoke("abort", "web-3f9c2e1")
    assert code == 0
    assert "already rolling back" in out
    assert fake.patches == []


def test_pause_then_resume_removes_the_annotation(fake: FakeApi) -> None:
    code, _ = invoke("pause", "web-bbbbbbb")
    assert code == 0
    assert annotations_of(fake, "releases", "web-bbbbbbb")[ANNOTATION_PAUSED] == "true"
    code, out = invoke("resume", "web-bbbbbbb")
    assert code == 0, out
    assert fake.patches[-1] == ("releases", "web-bbbbbbb", {"metadata": {"annotations": {ANNOTATION_PAUSED: None}}})
    assert ANNOTATION_PAUSED not in annotations_of(fake, "releases", "web-bbbbbbb")


def test_resume_of_a_running_push_says_so(fake: FakeApi) -> None:
    code, out = invoke("resume", "web-bbbbbbb")
    assert code == 0
    assert "not paused" in out
    assert fake.patches == []
