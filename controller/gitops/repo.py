"""One cached clone per repository URL: branch tips, manifests at a revision, history, idempotent revert.

Everything here blocks (GitPython runs the git CLI); async callers use ``asyncio.to_thread``. Calls on
the same repository are serialised by one lock per cached clone; different repositories run in
parallel. The clone is fetched, never re-cloned. Its work tree is used only by :meth:`RepoCache.revert`
and is hard-reset and cleaned after every attempt. Kustomize/Helm sources are rendered from a private
copy of the revision's tree written from the object database (:mod:`controller.gitops.render`); the
clone's lock is held while the copy is written, not while the tool runs.

Every command runs with a timeout and its process tree is killed when it passes: network commands
(fetch, push) get ``timeout`` seconds (``STOPLINE_GIT_TIMEOUT``, default :data:`DEFAULT_TIMEOUT`), local
ones :data:`LOCAL_TIMEOUT`. A hung server therefore surfaces as :class:`GitTimeout` within one attempt.

Errors (all :class:`GitError`, each with a machine ``reason``; see :mod:`controller.gitops.errors`):

* :class:`GitAuthError` (``AuthenticationFailed``): credentials refused or missing — from any call
  that fetches or pushes (``tip``, ``ensure_revision``, ``manifests``, ``commits_between``,
  ``find_revert``, ``revert``).
* :class:`GitUnreachable` (``Unreachable``) / :class:`GitTimeout` (``Timeout``): the server could not be
  reached or did not answer — from the same calls.
* :class:`GitNotFoundError` (``NotFound``): the repository, branch, revision or path does not exist.
  Raised only when the server answered that it is missing: a failed fetch is never reported as a
  missing revision.
* :class:`GitConflict` (``Conflict``): ``revert`` does not apply on the branch tip (nothing pushed).
* :class:`GitInputError` (``InvalidInput``): malformed input, before git runs.

Messages name the repository without credentials and say what to fix. ``revert`` reports the other
logical outcomes (already reverted, revision not on branch, push rejected too often) in its
:class:`RevertOutcome` rather than raising.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import git

from controller.gitops.credentials import GitCredentials, git_environment, scrub, split_url_credentials
from controller.gitops.errors import (
    GitAuthError,
    GitConflict,
    GitError,
    GitInputError,
    GitNotFoundError,
    GitTimeout,
    GitUnreachable,
)
from controller.gitops.manifests import read_manifests
from controller.gitops.render import RenderOptions, Tools, materialize
from controller.gitops.render import render as render_tree
from controller.gitops.results import REVERT_TRAILER, CommitInfo, RevertOutcome
from controller.models.common import valid_branch_name

WORK_BRANCH = "stopline-work"
DEFAULT_TIMEOUT = 15.0
"""Seconds one network git command (fetch, push) may run before it is killed (``STOPLINE_GIT_TIMEOUT``)."""
LOCAL_TIMEOUT = 300.0
"""Seconds one local git command (log, revert, commit, checkout, ...) may run before it is killed."""
DEFAULT_AUTHOR = ("stopline", "stopline@localhost")

_REMOTE_REF = "refs/remotes/origin/"
_FETCHED_REF = "refs/stopline/fetched/"
# Every command: no credential helpers (they could store secrets), no askpass from config, no hooks,
# no signing prompts, and no CRLF rewriting in the revert work tree.
_COMMON_CONFIG = (
    "-c", "credential.helper=",
    "-c", "core.askPass=",
    "-c", "core.hooksPath=/dev/null",
    "-c", "commit.gpgSign=false",
    "-c", "core.autocrlf=false",
)  # fmt: skip
_REVISION = re.compile(r"^[0-9a-f]{7,64}$")
_FULL_SHA_LENGTHS = (40, 64)
_TRAILER_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
_URL_SCHEMES = ("http", "https", "ssh", "git", "file", "git+ssh", "ssh+git")
_NON_FAST_FORWARD = ("non-fast-forward", "fetch first", "stale info")
_RS, _US = "\x1e", "\x1f"

# What git prints (lower-cased) for each class of failure; checked in this order.
_AUTH_FAILED = (
    "authentication failed",
    "could not read username",
    "could not read password",
    "returned error: 401",
    "returned error: 403",
    "permission denied (publickey",
    "permission denied, please try again",
    "host key verification failed",
    "invalid username or password",
)
_REPO_NOT_FOUND = re.compile(
    r"does not appear to be a git repository|repository not exported|no such repository|returned error: 404"
    r"|repository '[^']*' not found"
)
_REF_NOT_FOUND = ("couldn't find remote ref", "not our ref", "unadvertised object", "no such remote ref")
_UNREACHABLE = (
    "connection refused",
    "could not resolve host",
    "unable to look up",
    "name or service not known",
    "temporary failure in name resolution",
    "no route to host",
    "network is unreachable",
    "timed out",
    "unable to connect",
    "failed to connect",
    "couldn't connect",
    "connection reset",
    "connection closed",
    "hung up unexpectedly",
    "early eof",
    "broken pipe",
    "returned error: 5",
)
# Lines git adds to every transport failure; they say nothing about the cause.
_BOILERPLATE = (
    "could not read from remote repository.",
    "please make sure you have the correct access rights",
    "and the repository exists.",
)
_STALE_RENDER_SECONDS = 3600.0

_LOCKS_GUARD = threading.Lock()
_LOCKS: dict[str, threading.Lock] = {}


def _lock_for(path: Path) -> threading.Lock:
    """Process-wide lock for one clone directory (shared by every RepoCache on the same root)."""
    key = str(path.resolve())
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


def _validate_branch(branch: str) -> str:
    if not valid_branch_name(branch):
        raise GitInputError(f"invalid branch name {branch!r}")
    return branch


def _validate_revision(revision: str) -> str:
    rev = revision.strip().lower()
    if not _REVISION.match(rev):
        raise GitInputError(f"revision {revision!r} is not a commit SHA (7 to 64 hex digits)")
    return rev


def _validate_url(url: str) -> None:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    scp_like = not scheme and re.match(r"^(?:[^/\s:@]+@)?[^/\s:@]{2,}:", url) is not None
    if url.startswith("-") or any(c.isspace() for c in url) or not (scheme in _URL_SCHEMES or scp_like):
        raise GitInputError(
            f"unsupported git URL {scrub(url)!r}: use http(s)://, ssh://, git://, file:// or user@host:path"
        )


@dataclass(frozen=True)
class _Result:
    status: int
    out: str
    err: str


def _detail(result: _Result) -> str:
    """The informative lines of git's output, at most three, joined."""
    lines = [line.strip() for line in (result.err.strip() or result.out.strip()).splitlines()]
    useful = [line for line in lines if line and not line.lower().startswith(_BOILERPLATE)]
    return " / ".join(useful[:3]) or "no output"


def _classify(result: _Result) -> type[GitError]:
    """Which kind of failure git's output describes (the generic :class:`GitError` when unknown)."""
    text = f"{result.err}\n{result.out}".lower()
    if any(marker in text for marker in _AUTH_FAILED):
        return GitAuthError
    if _REPO_NOT_FOUND.search(text) or any(marker in text for marker in _REF_NOT_FOUND):
        return GitNotFoundError
    if any(marker in text for marker in _UNREACHABLE):
        return GitUnreachable
    return GitError


class _Session:
    """One locked use of a cached clone with the environment of one set of credentials."""

    def __init__(
        self,
        repo: git.Repo,
        url: str,
        creds: GitCredentials | None,
        env: Mapping[str, str],
        timeout: float,
        local_timeout: float = LOCAL_TIMEOUT,
    ) -> None:
        self.repo = repo
        self.url = url
        self.creds = creds
        self.timeout = timeout
        self.local_timeout = local_timeout
        git_dir = str(repo.git_dir)
        paths = {"GIT_DIR": git_dir, "GIT_WORK_TREE": str(repo.working_tree_dir or git_dir)}
        # Credentials reach only the commands that talk to the remote (fetch, push).
        self.remote_env = {**env, **paths}
        self.env = {**paths, "GIT_TERMINAL_PROMPT": "0"}

    def scrub(self, text: str) -> str:
        return scrub(text, self.creds)

    def run(
        self, *args: str, check: bool = True, env: Mapping[str, str] | None = None, remote: bool = False
    ) -> _Result:
        """Run one git command; ``remote`` commands get the credentials and the network timeout. A
        command that outlives its timeout is killed (with its children) and raises :class:`GitTimeout`,
        whatever ``check`` says."""
        executable = git.Git.GIT_PYTHON_GIT_EXECUTABLE or "git"
        timeout = self.timeout if remote else self.local_timeout
        started = time.monotonic()
        try:
            status, out, err = self.repo.git.execute(
                [executable, *_COMMON_CONFIG, *args],
                with_extended_output=True,
                with_exceptions=False,
                env={**(self.remote_env if remote else self.env), **(env or {})},
                kill_after_timeout=timeout,
                strip_newline_in_stdout=False,
            )
        except git.GitCommandNotFound as exc:
            raise GitError(f"git executable not found: {exc}") from None
        if status != 0 and time.monotonic() - started >= timeout:
            if remote:
                raise GitTimeout(
                    self.scrub(
                        f"git server did not answer within {timeout:g}s: git {args[0]} {self.url} was stopped "
                        "(STOPLINE_GIT_TIMEOUT sets the limit)"
                    )
                )
            raise GitTimeout(f"git {args[0]} did not finish within {timeout:g}s in the cache of {self.scrub(self.url)}")
        result = _Result(status, out, err)
        if check and status != 0:
            raise self.failure(args[0], result)
        return result

    def failure(self, what: str, result: _Result) -> GitError:
        """The classified error for a failed command, naming the repository without credentials."""
        detail = _detail(result)
        error = _classify(result)
        if error is GitAuthError:
            text = (
                f"authentication failed for {self.url} (git {what}: {detail}); check the username and "
                "password/token or SSH key and known_hosts in the git credentials Secret"
            )
        elif error is GitUnreachable:
            text = f"git server of {self.url} is unreachable (git {what}: {detail})"
        elif error is GitNotFoundError:
            text = f"repository {self.url} or the ref asked for does not exist (git {what}: {detail})"
        else:
            text = f"git {what} {self.url} failed (exit {result.status}): {detail}"
        return error(self.scrub(text))

    def resolve(self, rev: str) -> str | None:
        r = self.run("rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}", check=False)
        return r.out.strip() if r.status == 0 else None

    def fetch_branch(self, branch: str) -> str:
        ref = _REMOTE_REF + branch
        r = self.run(
            "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--",
            self.url, f"+refs/heads/{branch}:{ref}",
            check=False, remote=True,
        )  # fmt: skip
        if r.status != 0:
            if "couldn't find remote ref" in r.err:
                raise GitNotFoundError(self.scrub(f"branch {branch!r} does not exist in {self.url}"))
            raise self.failure("fetch", r)
        sha = self.resolve(ref)
        if sha is None:  # pragma: no cover - fetch succeeded, so the ref exists
            raise GitError(f"fetched {ref} but cannot resolve it in the cache of {self.scrub(self.url)}")
        return sha

    def fetch_sha(self, sha: str) -> bool:
        """Fetch one commit by SHA. False only when the server answered that it does not have it (or
        does not serve unadvertised objects); a transport or authentication failure raises."""
        r = self.run("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--",
                     self.url, f"{sha}:{_FETCHED_REF}{sha}", check=False, remote=True)  # fmt: skip
        if r.status == 0:
            return True
        text = f"{r.err}\n{r.out}".lower()
        if _classify(r) is GitNotFoundError and any(marker in text for marker in _REF_NOT_FOUND):
            return False
        raise self.failure("fetch", r)

    def ensure(self, revision: str, branch: str | None) -> str:
        rev = _validate_revision(revision)
        full = self.resolve(rev)
        if full is None and branch is not None:
            self.fetch_branch(branch)
            full = self.resolve(rev)
        if full is None and len(rev) in _FULL_SHA_LENGTHS and self.fetch_sha(rev):
            full = self.resolve(rev)
        if full is None:
            where = f" (not on branch {branch!r} and not fetchable by SHA)" if branch else ""
            raise GitNotFoundError(self.scrub(f"revision {rev} does not exist in {self.url}{where}"))
        return full

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        r = self.run("merge-base", "--is-ancestor", ancestor, descendant, check=False)
        if r.status not in (0, 1):
            raise self.failure("merge-base", r)
        return r.status == 0

    def find_revert(self, revision: str, tip: str) -> str | None:
        """Oldest commit in ``revision..tip`` with ``Stopline-Revert-Of: <revision>``."""
        if revision == tip:
            return None
        fmt = f"%H{_US}%(trailers:key={REVERT_TRAILER},valueonly,separator=%x1f){_RS}"
        r = self.run("log", f"--format={fmt}", "--fixed-strings", "--regexp-ignore-case",
                     f"--grep={REVERT_TRAILER}: {revision}", f"{revision}..{tip}", "--")  # fmt: skip
        found: str | None = None
        for record in r.out.split(_RS):
            sha, *values = record.strip().split(_US)
            if sha and any(v.strip().lower() == revision for v in values):
                found = sha  # log is newest first: keep going to the oldest match
        return found

    def commits(self, since: str | None, until: str, limit: int) -> list[CommitInfo]:
        fmt = _US.join(("%H", "%P", "%an <%ae>", "%cn <%ce>", "%cI", "%s", "%(trailers:only,unfold)")) + _RS
        span = f"{since}..{until}" if since else until
        r = self.run("log", "--first-parent", f"--max-count={limit}", f"--format={fmt}", span, "--")
        commits = []
        for record in r.out.split(_RS):
            record = record.lstrip("\n")
            if not record:
                continue
            sha, parents, author, committer, date, subject, trailer_text = record.split(_US)
            trailers: dict[str, str] = {}
            for line in trailer_text.splitlines():
                key, sep, value = line.partition(":")
                if sep:
                    trailers[key.strip()] = value.strip()
            commits.append(
                CommitInfo(
                    sha=sha,
                    subject=subject,
                    author=author,
                    committed_at=datetime.fromisoformat(date),
                    parents=tuple(parents.split()),
                    trailers=trailers,
                    committer=committer,
                )
            )
        commits.reverse()
        return commits

    def commit_info(self, rev: str) -> CommitInfo:
        """Author, committer and subject of one commit present in the cache."""
        return self.commits(None, rev, 1)[0]

    def commit_meta(self, rev: str) -> tuple[str, tuple[str, ...], str] | None:
        """``(full sha, parents, subject)`` of a commit present in the cache, else None."""
        r = self.run("log", "-1", f"--format=%H{_US}%P{_US}%s", f"{rev}^{{commit}}", "--", check=False)
        if r.status != 0:
            return None
        sha, parents, subject = r.out.rstrip("\n").split(_US)
        return sha, tuple(parents.split()), subject

    def reset_worktree(self, target: str | None = None) -> None:
        """Drop any half-done revert and untracked files; with ``target``, put the work branch there."""
        git_dir = Path(self.repo.git_dir)
        if (git_dir / "sequencer").exists():
            self.run("revert", "--quit", check=False)
        if target is not None:
            self.run("checkout", "--quiet", "--force", "--no-track", "-B", WORK_BRANCH, target)
        if target is None or any((git_dir / name).exists() for name in ("REVERT_HEAD", "MERGE_MSG")):
            # also removes REVERT_HEAD / MERGE_MSG; fails harmlessly while HEAD is still unborn
            self.run("reset", "--quiet", "--hard", check=False)
        self.run("clean", "-ffdxq")


class RepoCache:
    """Cached clones under ``root``, one per repository URL (directory name: hash of the URL without
    credentials). Thread-safe; see the module docstring."""

    def __init__(
        self,
        root: Path,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        local_timeout: float = LOCAL_TIMEOUT,
        tools: Tools | None = None,
    ) -> None:
        if timeout <= 0 or local_timeout <= 0:
            raise GitInputError("git timeouts must be positive")
        self.root = Path(root)
        self.timeout = timeout
        """Seconds a network command (fetch, push) may run before it is killed."""
        self.local_timeout = local_timeout
        self.tools = tools or Tools()
        self._scratch = self.root / ".scratch"
        self._renders = self.root / ".render"
        self._swept = False
        self._guard = threading.Lock()
        self._repos: dict[Path, git.Repo] = {}

    # -- lifecycle ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the helper processes GitPython keeps per repository. The cache stays usable."""
        with self._guard:
            repos = list(self._repos.items())
            self._repos.clear()
        for path, repo in repos:
            with _lock_for(path):
                repo.close()

    def __enter__(self) -> RepoCache:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def path_for(self, url: str) -> Path:
        """Directory of the cached clone for ``url``."""
        clean, _, _ = split_url_credentials(url)
        return self.root / hashlib.sha256(clean.encode()).hexdigest()[:32]

    # -- public operations -------------------------------------------------------------------------

    def tip(self, url: str, branch: str, creds: GitCredentials | None = None) -> str:
        """Fetch ``branch`` and return its tip SHA."""
        branch = _validate_branch(branch)
        with self._session(url, creds) as s:
            return s.fetch_branch(branch)

    def ensure_revision(self, url: str, revision: str, branch: str, creds: GitCredentials | None = None) -> None:
        """Make ``revision`` available in the cache: a no-op when present, else fetch ``branch``, else fetch
        the SHA itself. Raises :class:`GitNotFoundError` when the remote does not have it."""
        branch, revision = _validate_branch(branch), _validate_revision(revision)
        with self._session(url, creds) as s:
            s.ensure(revision, branch)

    def manifests(
        self,
        url: str,
        revision: str,
        path: str,
        creds: GitCredentials | None = None,
        render: RenderOptions | None = None,
    ) -> list[dict[str, Any]]:
        """The documents of ``path`` at ``revision``.

        Without ``render``: every YAML/JSON document under ``path`` (recursive, by file path, empty
        documents skipped), read from the object database. With ``render``: the revision's tree is
        written into a private temporary directory (the clone's lock is held only for that) and
        ``kustomize build`` / ``helm template`` runs there (see :mod:`controller.gitops.render`)."""
        revision = _validate_revision(revision)
        if render is None:
            with self._session(url, creds) as s:
                full = s.ensure(revision, None)
                return read_manifests(s.repo.commit(full).tree, path, f"at revision {full} of {s.scrub(s.url)}")
        self._sweep_renders()
        work = Path(tempfile.mkdtemp(prefix="render-", dir=self._renders))
        try:
            tree = work / "tree"
            tree.mkdir()
            with self._session(url, creds) as s:
                full = s.ensure(revision, None)
                where = f"at revision {full} of {s.scrub(s.url)}"
                materialize(s.repo.commit(full).tree, tree)
            return render_tree(self.tools, render, tree, path, where)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def commit(self, url: str, revision: str, creds: GitCredentials | None = None) -> CommitInfo:
        """Author, committer and subject of ``revision`` (fetched when missing)."""
        revision = _validate_revision(revision)
        with self._session(url, creds) as s:
            return s.commit_info(s.ensure(revision, None))

    def commits_between(
        self,
        url: str,
        branch: str,
        since: str | None,
        until: str,
        creds: GitCredentials | None = None,
        limit: int = 200,
    ) -> list[CommitInfo]:
        """First-parent commits in ``since..until`` (all of ``until``'s when ``since`` is None), oldest
        first; at most ``limit``, the newest ones when there are more."""
        if limit < 1:
            raise GitInputError("limit must be at least 1")
        branch, until = _validate_branch(branch), _validate_revision(until)
        since = _validate_revision(since) if since is not None else None
        with self._session(url, creds) as s:
            end = s.ensure(until, branch)
            start = s.ensure(since, branch) if since is not None else None
            return s.commits(start, end, limit)

    def find_revert(self, url: str, branch: str, revision: str, creds: GitCredentials | None = None) -> str | None:
        """SHA of a commit after ``revision`` on ``branch`` carrying ``Stopline-Revert-Of: <revision>``.

        Searches ``revision..tip`` only. None when there is none or ``revision`` is not on the branch."""
        branch, revision = _validate_branch(branch), _validate_revision(revision)
        with self._session(url, creds) as s:
            tip = s.fetch_branch(branch)
            full = s.resolve(revision)
            if full is None or not s.is_ancestor(full, tip):
                return None
            return s.find_revert(full, tip)

    def revert(
        self,
        url: str,
        branch: str,
        revision: str,
        *,
        message: str,
        trailers: Mapping[str, str],
        creds: GitCredentials | None = None,
        max_attempts: int = 5,
        author: tuple[str, str] = DEFAULT_AUTHOR,
        proceed: Callable[[], bool] = lambda: True,
    ) -> RevertOutcome:
        """Revert ``revision`` on ``branch`` and push (never forced). Idempotent through the
        ``Stopline-Revert-Of`` trailer: a second call returns ``already`` with the first revert.

        Raises :class:`GitConflict` when the revert does not apply on the tip (the branch is left
        untouched), and the fetch/push errors of the module docstring."""
        if max_attempts < 1:
            raise GitInputError("max_attempts must be at least 1")
        branch, revision = _validate_branch(branch), _validate_revision(revision)
        extra = _validate_trailers(trailers)
        with self._session(url, creds) as s:
            tip = s.fetch_branch(branch)
            meta = s.commit_meta(revision) or s.commit_meta(s.ensure(revision, None))
            if meta is None:  # pragma: no cover - ensure() raised already
                raise GitNotFoundError(f"revision {revision} does not exist")
            full, parents, subject = meta
            body = _revert_message(full, subject, message, extra)
            ident = _identity_env(author)
            for attempt in range(1, max_attempts + 1):
                if attempt > 1:
                    tip = s.fetch_branch(branch)
                if not s.is_ancestor(full, tip):
                    return RevertOutcome("error", reason="revision not on branch", attempts=attempt - 1)
                existing = s.find_revert(full, tip)
                if existing is not None:
                    return RevertOutcome("already", commit=existing, attempts=attempt - 1)
                try:
                    outcome = self._attempt(s, branch, full, len(parents) > 1, tip, body, ident, attempt, proceed)
                finally:
                    s.reset_worktree()
                if outcome is not None:
                    return outcome
            return RevertOutcome(
                "error",
                reason=f"push rejected as non-fast-forward {max_attempts} times: {branch!r} moves faster "
                "than the revert can be pushed",
                attempts=max_attempts,
            )

    # -- internals ---------------------------------------------------------------------------------

    def _sweep_renders(self) -> None:
        """Create the render directory; once per cache, remove trees a killed process left behind
        (older than an hour, so a render still running in another process is never touched)."""
        self._renders.mkdir(parents=True, exist_ok=True)
        with self._guard:
            if self._swept:
                return
            self._swept = True
        cutoff = time.time() - _STALE_RENDER_SECONDS
        for entry in self._renders.iterdir():
            with contextlib.suppress(OSError):
                if entry.name.startswith("render-") and entry.lstat().st_mtime < cutoff:
                    shutil.rmtree(entry, ignore_errors=True)

    def _attempt(
        self,
        s: _Session,
        branch: str,
        full: str,
        is_merge: bool,
        tip: str,
        body: str,
        ident: Mapping[str, str],
        attempt: int,
        proceed: Callable[[], bool] = lambda: True,
    ) -> RevertOutcome | None:
        """One revert + push on top of ``tip``. None means: rejected as non-fast-forward, try again."""
        s.reset_worktree(tip)
        mainline = ["-m", "1"] if is_merge else []
        r = s.run("revert", "--no-commit", *mainline, full, check=False)
        if r.status != 0:
            conflicted = s.run("diff", "--name-only", "--diff-filter=U", "-z").out.split("\0")
            paths = sorted(p for p in conflicted if p)
            s.run("revert", "--abort", check=False)
            if paths:
                raise GitConflict(
                    s.scrub(f"reverting {full} onto {tip} of {branch!r} conflicts in: {', '.join(paths)}"),
                    paths=tuple(paths),
                    attempts=attempt,
                )
            return RevertOutcome("error", reason=str(s.failure("revert", r)), attempts=attempt)
        r = s.run("commit", "--quiet", "--no-verify", "--cleanup=whitespace", "-m", body, env=ident, check=False)
        if r.status != 0:
            if s.run("diff", "--cached", "--quiet", check=False).status == 0:
                return RevertOutcome(
                    "error",
                    reason=f"reverting {full} changes nothing: its changes are already undone on {branch!r}",
                    attempts=attempt,
                )
            raise s.failure("commit", r)
        commit = s.run("rev-parse", "HEAD").out.strip()
        if not proceed():  # the Release was deleted (or the controller stops) while this attempt ran
            return RevertOutcome("error", reason="not pushed: the Release is gone", attempts=attempt)
        rejected = self._push(s, branch)
        if rejected is None:
            return RevertOutcome("pushed", commit=commit, attempts=attempt)
        if any(marker in rejected for marker in _NON_FAST_FORWARD):
            return None
        return RevertOutcome("error", reason=f"push of the revert was refused: {rejected}", attempts=attempt)

    def _push(self, s: _Session, branch: str) -> str | None:
        """Push HEAD to ``branch`` without force. None on success, else the rejection reason."""
        r = s.run(
            "push", "--porcelain", "--no-verify", "--", s.url, f"HEAD:refs/heads/{branch}", check=False, remote=True
        )
        if r.status == 0:
            return None
        for line in r.out.splitlines():
            fields = line.split("\t")
            if len(fields) >= 3 and fields[0] == "!" and fields[1].endswith(f"refs/heads/{branch}"):
                return s.scrub(fields[2].strip())
        raise s.failure("push", r)

    @contextlib.contextmanager
    def _session(self, url: str, creds: GitCredentials | None) -> Iterator[_Session]:
        clean, url_user, url_password = split_url_credentials(url)
        if url_user is not None or url_password is not None:
            creds = (creds or GitCredentials()).merged_with_url(url_user, url_password)
        _validate_url(clean)
        path = self.path_for(url)
        with _lock_for(path), git_environment(creds, clean, self._scratch) as env:
            repo = self._open(path, clean)
            yield _Session(repo, clean, creds, env, self.timeout, self.local_timeout)

    def _open(self, path: Path, url: str) -> git.Repo:
        with self._guard:
            repo = self._repos.get(path)
        if repo is not None:
            return repo
        if not (path / ".git" / "HEAD").is_file():
            self._create(path, url)
        repo = git.Repo(path)
        with self._guard:
            self._repos[path] = repo
        return repo

    def _create(self, path: Path, url: str) -> None:
        """``git init`` into a temporary sibling and rename it into place, so a crash never leaves a
        half-made clone behind."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{path.name}-"))
        try:
            # An empty template: no sample hooks or other files from the system's template directory.
            executable = git.Git.GIT_PYTHON_GIT_EXECUTABLE or "git"
            git.Git(str(self.root)).execute([executable, "init", "--quiet", "--template=", str(tmp)])
            repo = git.Repo(tmp)
            with repo.config_writer() as config:
                config.set_value('remote "origin"', "url", url)
                config.set_value('remote "origin"', "fetch", f"+refs/heads/*:{_REMOTE_REF}*")
            repo.close()
            if path.exists():
                shutil.rmtree(path)  # an earlier crash left something that is not a clone
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _validate_trailers(trailers: Mapping[str, str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for key, value in trailers.items():
        if not _TRAILER_KEY.match(key) or "\n" in value or "\r" in value:
            raise GitInputError(f"invalid commit trailer {key!r}: {value!r}")
        if key.lower() != REVERT_TRAILER.lower():
            result[key] = value.strip()
    return result


def _revert_message(full: str, subject: str, message: str, trailers: Mapping[str, str]) -> str:
    text = message.strip() or f'Revert "{subject}"\n\nThis reverts commit {full}.'
    lines = [f"{REVERT_TRAILER}: {full}", *(f"{k}: {v}" for k, v in trailers.items())]
    return text + "\n\n" + "\n".join(lines) + "\n"


def _identity_env(author: tuple[str, str]) -> dict[str, str]:
    name, email = author
    return {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }
