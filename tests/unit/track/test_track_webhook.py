"""Push webhooks: payload shapes, repository URL equivalence, signatures, which Tracks wake."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from controller.track.webhook import (
    Push,
    TrackTarget,
    WebhookError,
    matching,
    normalise_repo,
    parse_push,
    signature_ok,
)

SECRET = "s3cret"


def body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def sign(data: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


GITHUB = {
    "ref": "refs/heads/main",
    "before": "a" * 40,
    "after": "b" * 40,
    "repository": {
        "full_name": "shop/app",
        "clone_url": "https://github.example/shop/app.git",
        "ssh_url": "git@github.example:shop/app.git",
        "git_url": "git://github.example/shop/app.git",
        "html_url": "https://github.example/shop/app",
    },
    "pusher": {"name": "alice"},
}
GITEA = {
    "ref": "refs/heads/release/2.0",
    "repository": {
        "clone_url": "https://gitea.example:3000/shop/app.git",
        "ssh_url": "ssh://git@gitea.example:2222/shop/app.git",
        "html_url": "https://gitea.example:3000/shop/app",
    },
}
GITLAB = {
    "object_kind": "push",
    "ref": "refs/heads/main",
    "project": {
        "git_http_url": "https://gitlab.example/shop/app.git",
        "git_ssh_url": "git@gitlab.example:shop/app.git",
        "web_url": "https://gitlab.example/shop/app",
    },
}


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            {"repo": "git://127.0.0.1:9418/app.git", "branch": "main"},
            Push(frozenset({"127.0.0.1/app"}), "main"),
        ),
        (
            {"repo": "https://git.example/shop/app", "ref": "refs/heads/feature/x"},
            Push(frozenset({"git.example/shop/app"}), "feature/x"),
        ),
        (
            {"repo": "https://git.example/shop/app", "branch": "refs/heads/main"},
            Push(frozenset({"git.example/shop/app"}), "main"),
        ),
        (GITHUB, Push(frozenset({"github.example/shop/app"}), "main")),
        (GITEA, Push(frozenset({"gitea.example/shop/app"}), "release/2.0")),
        (GITLAB, Push(frozenset({"gitlab.example/shop/app"}), "main")),
        (
            {"ref": "refs/heads/main", "repository": {"clone_url": "https://a.example/x.git"}, "project": {}},
            Push(frozenset({"a.example/x"}), "main"),
        ),
    ],
    ids=["generic", "generic-with-ref", "generic-branch-as-ref", "github", "gitea", "gitlab", "partial-sections"],
)
def test_parse_push(payload: dict[str, Any], expected: Push) -> None:
    assert parse_push(body(payload)) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json", "payload is not JSON"),
        (b"[1, 2]", "payload must be a JSON object"),
        (body({"ref": "refs/tags/v1.0", "repository": GITHUB["repository"]}), "ref 'refs/tags/v1.0' is not a branch"),
        (body({"repo": "https://git.example/app"}), "payload names no branch"),
        (body({"repo": "https://git.example/app", "branch": 7}), "payload names no branch"),
        (body({"branch": "main"}), "payload names no repository"),
        (body({"branch": "main", "repository": {"clone_url": 5}}), "payload names no repository"),
    ],
    ids=["not-json", "not-an-object", "tag-ref", "no-branch", "branch-not-a-string", "no-repo", "repo-not-a-string"],
)
def test_parse_push_rejects(raw: bytes, message: str) -> None:
    with pytest.raises(WebhookError, match="^" + message.replace("(", r"\(")):
        parse_push(raw)


@pytest.mark.parametrize(
    "url",
    [
        "https://git.example.com/shop/app.git",
        "https://git.example.com/shop/app",
        "https://git.example.com/shop/app/",
        "http://git.example.com/shop/app.git",
        "HTTPS://Git.Example.COM/Shop/App.git",
        "https://alice:tok3n@git.example.com/shop/app.git",
        "https://alice:p@ss@git.example.com/shop/app.git",
        "https://git.example.com:8443/shop/app.git",
        "ssh://git@git.example.com:22/shop/app.git",
        "ssh://git.example.com/shop/app",
        "git+ssh://git@git.example.com/shop/app.git",
        "git://git.example.com/shop/app.git",
        "git@git.example.com:shop/app.git",
        "git@git.example.com:/shop/app",
        "git.example.com:shop/app.git",
        "  https://git.example.com/shop/app.git\n",
    ],
    ids=[
        "https",
        "no-dot-git",
        "trailing-slash",
        "http",
        "case",
        "credentials",
        "password-with-at",
        "port",
        "ssh-with-user-and-port",
        "ssh-no-user",
        "git+ssh",
        "git-protocol",
        "scp-like",
        "scp-like-absolute",
        "scp-like-no-user",
        "whitespace",
    ],
)
def test_normalise_repo_equivalent_forms(url: str) -> None:
    assert normalise_repo(url) == "git.example.com/shop/app"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://git.example.com/shop/app.git", "https://git.example.com/shop/api.git"),
        ("https://git.example.com/shop/app.git", "https://other.example.com/shop/app.git"),
        ("https://git.example.com/shop/app.git", "https://git.example.com/team/shop/app.git"),
        ("file:///srv/git/app.git", "file:///srv/other/app.git"),
    ],
    ids=["other-repo", "other-host", "other-path-depth", "file-paths"],
)
def test_normalise_repo_distinguishes(a: str, b: str) -> None:
    assert normalise_repo(a) != normalise_repo(b)


def test_normalise_repo_local_paths() -> None:
    assert normalise_repo("file:///srv/git/app.git") == normalise_repo("/srv/git/app") == "srv/git/app"


# ------------------------------------------------------------------------------------------------ signatures
DATA = body(GITHUB)


@pytest.mark.parametrize(
    ("headers", "ok"),
    [
        ({"X-Hub-Signature-256": "sha256=" + sign(DATA)}, True),
        ({"x-hub-signature-256": "sha256=" + sign(DATA).upper()}, True),
        ({"X-Gitea-Signature": sign(DATA)}, True),
        ({"X-Stopline-Signature-256": sign(DATA)}, True),
        ({"X-Gitlab-Token": SECRET}, True),
        ({"X-Hub-Signature-256": "sha256=" + sign(DATA, "wrong")}, False),
        ({"X-Hub-Signature-256": "sha256=" + sign(DATA + b" ")}, False),
        ({"X-Hub-Signature-256": "sha256="}, False),
        ({"X-Hub-Signature-256": "sha256=\u00e9\u00e9"}, False),
        ({"X-Gitlab-Token": "wrong"}, False),
        ({"X-Gitlab-Token": ""}, False),
        ({}, False),
        ({"X-Hub-Signature": "sha1=" + hmac.new(SECRET.encode(), DATA, hashlib.sha1).hexdigest()}, False),
    ],
    ids=[
        "github-valid",
        "header-case-and-hex-case",
        "gitea-valid",
        "stopline-header-valid",
        "gitlab-token-valid",
        "wrong-secret",
        "body-changed",
        "empty-signature",
        "non-ascii-signature",
        "gitlab-token-wrong",
        "gitlab-token-empty",
        "missing",
        "sha1-not-accepted",
    ],
)
def test_signature_ok(headers: dict[str, str], ok: bool) -> None:
    assert signature_ok(DATA, headers, SECRET) is ok


# ------------------------------------------------------------------------------------------------ matching
def target(name: str, repo: str, branch: str = "main", secret: str | None = None, ns: str = "shop") -> TrackTarget:
    return TrackTarget(ns, name, repo, branch, secret)


TRACKS = [
    target("web", "git@github.example:shop/app.git"),
    target("web-staging", "https://github.example/shop/app", branch="staging"),
    target("api", "https://github.example/shop/api.git"),
    target("signed", "https://github.example/shop/app.git", secret=SECRET),
    target("other-ns", "ssh://git@github.example/shop/app.git", ns="blog"),
]


@pytest.mark.parametrize(
    ("headers", "woken", "refused"),
    [
        ({}, ["shop/web", "blog/other-ns"], ["shop/signed"]),
        ({"X-Hub-Signature-256": "sha256=" + sign(DATA)}, ["shop/web", "shop/signed", "blog/other-ns"], []),
        ({"X-Hub-Signature-256": "sha256=" + sign(DATA, "nope")}, ["shop/web", "blog/other-ns"], ["shop/signed"]),
    ],
    ids=["unsigned", "signed", "badly-signed"],
)
def test_matching(headers: dict[str, str], woken: list[str], refused: list[str]) -> None:
    w, r = matching(parse_push(DATA), TRACKS, DATA, headers)
    assert [f"{t.namespace}/{t.name}" for t in w] == woken
    assert [f"{t.namespace}/{t.name}" for t in r] == refused


def test_matching_other_branch_wakes_nothing() -> None:
    data = body({**GITHUB, "ref": "refs/heads/feature"})
    assert matching(parse_push(data), TRACKS, data, {}) == ([], [])
