"""Domain errors. Mapped to kopf.TemporaryError / kopf.PermanentError only at the edge (handlers).

Every error carries a short machine-readable ``reason`` (a class attribute, CamelCase, fit for a
status condition's ``reason`` or an event reason) beside its message, which is meant for the user
and never contains credentials:

================================  ========================  ==========================================
class                             ``reason``                meaning
================================  ========================  ==========================================
:class:`StoplineError`            ``Error``                 base; anything not classified further
:class:`InvalidSpec`              ``InvalidSpec``           the spec must be edited before a retry helps
:class:`ManifestError`            ``ManifestError``         the manifests at the revision cannot be pushed
:class:`ClusterError`             ``ClusterError``          a Kubernetes API call failed (usually transient)
:class:`SnapshotTooLarge`         ``SnapshotTooLarge``      pre-push copies do not fit in a ConfigMap
:class:`MetricsError`             ``MetricsError``          the metrics provider could not answer
:class:`GitError`                 ``GitError``              a Git operation failed (unclassified)
:class:`GitAuthError`             ``AuthenticationFailed``  the server refused the credentials (401/403,
                                                            bad password or token, SSH key or host key)
:class:`GitUnreachable`           ``Unreachable``           connection refused, host not resolvable,
                                                            network or server error (5xx), hung up
:class:`GitTimeout`               ``Timeout``               the git server did not answer within the
                                                            timeout (``STOPLINE_GIT_TIMEOUT``); the git
                                                            process was killed. A :class:`GitUnreachable`
:class:`GitNotFoundError`         ``NotFound``              repository, branch, revision or path does not
                                                            exist. Also an :class:`InvalidSpec`
:class:`GitConflict`              ``Conflict``              a revert does not apply to the branch tip
================================  ========================  ==========================================

Retrying helps for ``Unreachable``/``Timeout`` (and usually ``GitError``); ``AuthenticationFailed``
needs the credentials Secret fixed; ``NotFound`` and ``Conflict`` need a human.
"""

from __future__ import annotations

from typing import ClassVar


class StoplineError(Exception):
    """Base of every stopline error; the message is meant for the user."""

    reason: ClassVar[str] = "Error"
    """Short CamelCase cause for status conditions and events (see the module docstring)."""


class InvalidSpec(StoplineError):
    """The resource's spec is invalid; retrying will not help until it is edited."""

    reason: ClassVar[str] = "InvalidSpec"


class ManifestError(StoplineError):
    """The manifests at the revision cannot be pushed (bad YAML, wrong namespace, missing Deployment)."""

    reason: ClassVar[str] = "ManifestError"


class ClusterError(StoplineError):
    """A Kubernetes API call failed; usually transient."""

    reason: ClassVar[str] = "ClusterError"


class ObjectGone(ClusterError):
    """The object being reconciled no longer exists (404, or another object of the same name: UID mismatch)."""


class ApplyIncomplete(StoplineError):
    """Some objects of a phase were applied, others failed; ``uids`` are those of the applied ones."""

    def __init__(self, cause: StoplineError, uids: dict[str, str]) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.uids = uids


class SnapshotTooLarge(StoplineError):
    """The pre-push copies do not fit in a ConfigMap."""

    reason: ClassVar[str] = "SnapshotTooLarge"


class GitError(StoplineError):
    """A Git operation failed. Messages are scrubbed of credentials."""

    reason: ClassVar[str] = "GitError"


class GitAuthError(GitError):
    """The git server refused the credentials (or there were none, or the SSH host key did not match)."""

    reason: ClassVar[str] = "AuthenticationFailed"


class GitUnreachable(GitError):
    """The git server could not be reached or failed while answering; retrying may help."""

    reason: ClassVar[str] = "Unreachable"


class GitTimeout(GitUnreachable):
    """The git server did not answer within the timeout; the git process was killed."""

    reason: ClassVar[str] = "Timeout"


class GitNotFoundError(GitError, InvalidSpec):
    """The repository, branch, revision or path asked for does not exist (retrying will not help until
    it does). Never raised for a failed fetch: those are :class:`GitAuthError` / :class:`GitUnreachable`."""

    reason: ClassVar[str] = "NotFound"


class GitConflict(GitError):
    """Reverting a revision does not apply cleanly on the branch tip; nothing was pushed."""

    reason: ClassVar[str] = "Conflict"

    def __init__(self, message: str, *, paths: tuple[str, ...] = (), attempts: int = 0) -> None:
        super().__init__(message)
        self.paths = paths
        """The conflicting paths."""
        self.attempts = attempts
        """Push attempts made, including the conflicting one."""


class MetricsError(StoplineError):
    """The metrics provider could not answer."""

    reason: ClassVar[str] = "MetricsError"
