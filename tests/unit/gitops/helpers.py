"""Real git repositories for the gitops tests: a bare "server" repo and a working clone that commits."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

IDENTITY = {
    "GIT_AUTHOR_NAME": "Dev",
    "GIT_AUTHOR_EMAIL": "dev@example.test",
    "GIT_COMMITTER_NAME": "Dev",
    "GIT_COMMITTER_EMAIL": "dev@example.test",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    """Run git in ``cwd``; return stdout without the trailing newline."""
    result = subprocess.run(
        ["git", "-c", "commit.gpgSign=false", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        env={**os.environ, **IDENTITY, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
    return result.stdout.rstrip("\n")


class Upstream:
    """A bare repository (``url``) plus a working clone used to make commits on it."""

    def __init__(self, base: Path, name: str = "app") -> None:
        self.bare = base / f"{name}.git"
        self.work = base / f"{name}-work"
        git(base, "init", "--quiet", "--bare", str(self.bare))
        git(self.bare, "symbolic-ref", "HEAD", "refs/heads/main")
        git(base, "init", "--quiet", str(self.work))

    @property
    def url(self) -> str:
        return self.bare.as_uri()

    def commit(self, files: Mapping[str, str | None], message: str, branch: str = "main") -> str:
        """Write (or delete, for None) files on ``branch`` of the work clone, commit, push; return SHA."""
        self.checkout(branch)
        for name, content in files.items():
            path = self.work / name
            if content is None:
                git(self.work, "rm", "--quiet", name)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            git(self.work, "add", name)
        git(self.work, "commit", "--quiet", "--allow-empty", "-m", message)
        git(self.work, "push", "--quiet", self.url, f"{branch}:refs/heads/{branch}")
        return git(self.work, "rev-parse", "HEAD")

    def checkout(self, branch: str, start: str | None = None) -> None:
        """Switch the work clone to ``branch`` (created at ``start`` when given)."""
        if start is not None:
            git(self.work, "checkout", "--quiet", "-B", branch, start)
        elif git(self.work, "symbolic-ref", "--short", "HEAD") != branch:
            git(self.work, "checkout", "--quiet", branch)

    def merge(self, other: str, message: str, branch: str = "main") -> str:
        """Merge ``other`` into ``branch`` with a merge commit, push; return its SHA."""
        self.checkout(branch)
        git(self.work, "merge", "--quiet", "--no-ff", "-m", message, other)
        git(self.work, "push", "--quiet", self.url, f"{branch}:refs/heads/{branch}")
        return git(self.work, "rev-parse", "HEAD")

    def sync(self, branch: str = "main") -> None:
        """Bring the work clone's ``branch`` to the server's tip (after stopline pushed)."""
        git(self.work, "fetch", "--quiet", self.url, f"+refs/heads/{branch}:refs/remotes/up/{branch}")
        self.checkout(branch)
        git(self.work, "reset", "--quiet", "--hard", f"refs/remotes/up/{branch}")

    def tip(self, branch: str = "main") -> str:
        return git(self.bare, "rev-parse", f"refs/heads/{branch}")

    def tree(self, rev: str) -> str:
        return git(self.bare, "rev-parse", f"{rev}^{{tree}}")

    def show(self, rev: str, path: str) -> str:
        return git(self.bare, "show", f"{rev}:{path}")

    def message(self, rev: str) -> str:
        return git(self.bare, "log", "-1", "--format=%B", rev)

    def parents(self, rev: str) -> list[str]:
        return git(self.bare, "log", "-1", "--format=%P", rev).split()

    def count(self, rev_range: str, *args: str) -> int:
        return int(git(self.bare, "rev-list", "--count", *args, rev_range))
