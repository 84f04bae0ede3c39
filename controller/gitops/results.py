"""Plain results returned by the Git adapter (no git objects leak out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from controller.models.common import REVERT_TRAILER

__all__ = ["REVERT_TRAILER", "CommitInfo", "RevertOutcome", "RevertStatus"]

RevertStatus = Literal["pushed", "already", "error"]


@dataclass(frozen=True)
class CommitInfo:
    """One commit of a branch's first-parent history."""

    sha: str
    subject: str
    author: str
    """``Name <email>``."""
    committed_at: datetime
    """Committer date with the committer's UTC offset."""
    parents: tuple[str, ...]
    trailers: dict[str, str] = field(default_factory=dict)
    """Git trailers of the message; a key given several times keeps its last value."""
    committer: str = ""
    """``Name <email>`` of the committer (who merged it, for a merge commit) when read."""


@dataclass(frozen=True)
class RevertOutcome:
    """What :meth:`RepoCache.revert` did (a conflict raises :class:`~controller.errors.GitConflict`).

    * ``pushed``: ``commit`` is the new revert commit, now the branch tip (as of the push).
    * ``already``: ``commit`` is an earlier revert carrying ``Stopline-Revert-Of: <revision>``.
    * ``error``: nothing pushed; ``reason`` says why (revision not on branch, push rejected, ...).
    """

    status: RevertStatus
    commit: str | None = None
    reason: str | None = None
    attempts: int = 0
    """Push attempts made (0 when an existing revert was found before trying)."""
