"""Errors raised by the Git adapter. Every message is scrubbed of credentials before it is built.

:class:`GitError` derives from the project-wide :class:`controller.errors.GitError` (a
``StoplineError``), so callers may catch either; the subclasses say whether retrying can help.
"""

from __future__ import annotations

from controller import errors


class GitError(errors.GitError):
    """A Git operation failed. Usually transient (network, auth, server) unless a subclass says more."""


class GitNotFoundError(GitError):
    """The branch, revision or path asked for does not exist (retrying will not help until it does)."""


class GitInputError(GitError, ValueError):
    """A branch name, revision, path or trailer given by the user is malformed."""


class ManifestError(GitError):
    """A manifest file at the revision is not valid YAML/JSON or a document is not a mapping."""
