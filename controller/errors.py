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


class ObjectGone(ClusterError):
    """The object being reconciled no longer exists (404, or another object of the same name: UID mismatch)."""


class SnapshotTooLarge(StoplineError):
    """The pre-push copies do not fit in a ConfigMap."""


class GitError(StoplineError):
    """A Git operation failed. Messages are scrubbed of credentials."""


class MetricsError(StoplineError):
    """The metrics provider could not answer."""
