"""Domain errors. Mapped to kopf.TemporaryError / kopf.PermanentError only at the edge (handlers)."""

from __future__ import annotations


class StoplineError(Exception):
    """Base of every stopline error; the message is meant for the user."""


class InvalidSpec(StoplineError):
    """The resource's spec is invalid; retrying will not help until it is edited."""


class ManifestError(StoplineError):
    """The manifests at the revision cannot be pushed (bad YAML, wrong namespace, missing Deployment)."""


class ClusterError(StoplineError):
    """A Kubernetes API call failed; usually transient."""


class ApplyIncomplete(StoplineError):
    """Some objects of a phase were applied, others failed; ``uids`` are those of the applied ones."""

    def __init__(self, cause: StoplineError, uids: dict[str, str]) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.uids = uids


class SnapshotTooLarge(StoplineError):
    """The pre-push copies do not fit in a ConfigMap."""


class GitError(StoplineError):
    """A Git operation failed. Messages are scrubbed of credentials."""


class MetricsError(StoplineError):
    """The metrics provider could not answer."""
