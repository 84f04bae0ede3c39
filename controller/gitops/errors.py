"""Errors raised by the Git adapter. Every message is scrubbed of credentials before it is built.

The classes are the project-wide ones from :mod:`controller.errors` (all ``StoplineError``), so
callers may catch either module's names; two adapter-only classes are added here. ``reason`` is a
class attribute meant for status conditions:

* :class:`GitAuthError` — ``AuthenticationFailed``: HTTP 401/403, "Authentication failed", "could not
  read Username" (credentials missing), "Permission denied (publickey)", "Host key verification failed".
* :class:`GitUnreachable` — ``Unreachable``: connection refused, host not resolvable, connection
  timed out or reset, remote hung up, HTTP 5xx.
* :class:`GitTimeout` — ``Timeout`` (a ``GitUnreachable``): no answer within the timeout; git killed.
* :class:`GitNotFoundError` — ``NotFound`` (also an ``InvalidSpec``): repository, branch, revision or
  path does not exist.
* :class:`GitConflict` — ``Conflict``: a revert does not apply to the branch tip.
* :class:`GitInputError` — ``InvalidInput`` (also an ``InvalidSpec``): malformed branch, revision,
  path, URL, trailer or Secret.
* :class:`ManifestError` — ``ManifestError`` (also a project ``ManifestError``): a file at the
  revision is not valid YAML/JSON or a document is not a mapping.
* :class:`GitError` — ``GitError``: anything else.
"""

from __future__ import annotations

from typing import ClassVar

from controller import errors
from controller.errors import GitAuthError, GitConflict, GitError, GitNotFoundError, GitTimeout, GitUnreachable

__all__ = [
    "GitAuthError",
    "GitConflict",
    "GitError",
    "GitInputError",
    "GitNotFoundError",
    "GitTimeout",
    "GitUnreachable",
    "ManifestError",
]


class GitInputError(GitError, errors.InvalidSpec, ValueError):
    """A branch name, revision, path or trailer given by the user is malformed."""

    reason: ClassVar[str] = "InvalidInput"


class ManifestError(GitError, errors.ManifestError):
    """A manifest file at the revision is not valid YAML/JSON or a document is not a mapping."""

    reason: ClassVar[str] = "ManifestError"
