"""Push webhooks: which (repo, branch) was pushed, and is the signature right? Pure.

Accepted payloads:

* generic: ``{"repo": "<url>", "branch": "main"}`` (``ref: refs/heads/main`` also accepted);
* GitHub / Gitea / Forgejo: ``{"ref": "refs/heads/main", "repository": {"clone_url", "ssh_url", ...}}``;
* GitLab: ``{"ref": "refs/heads/main", "project": {"git_http_url", "git_ssh_url", "web_url"}}``.

Signatures: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`` (GitHub, Gitea; also
``X-Gitea-Signature`` / ``X-Stopline-Signature-256`` with the bare hex), or GitLab's shared
``X-Gitlab-Token``. A Track with a webhook secret only wakes for correctly signed payloads.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Push:
    """A parsed push notification."""

    repos: frozenset[str]  # normalised URLs the payload names
    branch: str


class WebhookError(ValueError):
    """The payload cannot be understood; the message says why (HTTP 400)."""


def normalise_repo(url: str) -> str:
    """Compare repositories by host + path, ignoring scheme, credentials, port, ``.git`` and case.

    ``https://user@git.example.com/shop/app.git``, ``git@git.example.com:shop/app`` and
    ``ssh://git@git.example.com:22/shop/app.git`` all become ``git.example.com/shop/app``. Like git, a
    URL without ``://`` whose first ``:`` comes before any ``/`` is scp-like (``[user@]host:path``).
    """
    u = url.strip()
    m = re.match(r"^(?:[^@/:]+@)?([^:/]+):(.+)$", u)  # scp-like
    if m and "://" not in u:
        host, path = m.group(1), m.group(2)
    else:
        u = re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*://", "", u)
        authority = u.split("/", 1)[0]
        u = u[authority.rfind("@") + 1 :]  # drop user:password@ (a password may itself hold '@')
        host, _, path = u.partition("/")
        host = host.split(":", 1)[0]
    path = path.strip("/")
    if path.endswith(".git"):
        path = path[:-4]
    return f"{host.lower()}/{path.lower()}" if host else path.lower()


def parse_push(body: bytes) -> Push:
    """Extract the pushed repository URLs and branch."""
    try:
        data = json.loads(body or b"{}")
    except ValueError as exc:
        raise WebhookError(f"payload is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise WebhookError("payload must be a JSON object")
    branch = data.get("branch")
    if isinstance(branch, str):
        branch = branch.removeprefix("refs/heads/")
    ref = data.get("ref")
    if not branch and isinstance(ref, str):
        if not ref.startswith("refs/heads/"):
            raise WebhookError(f"ref {ref!r} is not a branch")
        branch = ref[len("refs/heads/") :]
    if not isinstance(branch, str) or not branch:
        raise WebhookError("payload names no branch (branch or ref: refs/heads/<name>)")
    urls: list[str] = []
    if isinstance(data.get("repo"), str):
        urls.append(data["repo"])
    for key, fields in (
        ("repository", ("clone_url", "ssh_url", "git_url", "html_url", "url")),
        ("project", ("git_http_url", "git_ssh_url", "web_url", "http_url")),
    ):
        section = data.get(key)
        if isinstance(section, dict):
            urls += [section[f] for f in fields if isinstance(section.get(f), str)]
    if not urls:
        raise WebhookError("payload names no repository (repo, repository.clone_url or project.git_http_url)")
    return Push(repos=frozenset(normalise_repo(u) for u in urls), branch=branch)


def signature_ok(body: bytes, headers: Mapping[str, str], secret: str) -> bool:
    """Whether the request carries a valid HMAC-SHA256 signature (or GitLab token) for ``secret``."""
    lower = {k.lower(): v for k, v in headers.items()}
    token = lower.get("x-gitlab-token")
    if token is not None:
        return hmac.compare_digest(token.encode(), secret.encode())
    # Compared as bytes: compare_digest raises on non-ASCII str, and a header is attacker-controlled.
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    for header in ("x-hub-signature-256", "x-gitea-signature", "x-stopline-signature-256"):
        given = lower.get(header)
        if given is None:
            continue
        given = given.removeprefix("sha256=")
        return hmac.compare_digest(given.lower().encode(), expected.encode())
    return False


@dataclass(frozen=True)
class TrackTarget:
    """A Track a webhook may wake."""

    namespace: str
    name: str
    repo: str
    branch: str
    secret: str | None


def matching(
    push: Push, tracks: Iterable[TrackTarget], body: bytes, headers: Mapping[str, str]
) -> tuple[list[TrackTarget], list[TrackTarget]]:
    """(woken, refused): Tracks following the pushed branch, split by signature validity."""
    woken: list[TrackTarget] = []
    refused: list[TrackTarget] = []
    for t in tracks:
        if t.branch != push.branch or normalise_repo(t.repo) not in push.repos:
            continue
        if t.secret is not None and not signature_ok(body, headers, t.secret):
            refused.append(t)
        else:
            woken.append(t)
    return woken, refused
