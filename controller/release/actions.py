"""What the planner can ask for (actions), what it sees (facts) and what execution reports (outcomes).

All frozen dataclasses; pure data, no I/O. Status-only actions (``Begin``, ``MarkAvailable``,
``CompletePhase``, ``FailPush``, ``MarkRolledBack``, ``SetPause``, ...) need no adapter: the executor
passes them straight to the status reducer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from controller.gates.evaluate import Measurement
from controller.gates.kinds import GateCheck
from controller.notify.outbox import DeliveryJob, RecordDelivery, StartDelivery
from controller.release.assign import ManifestObject, PhaseContents

# Annotations users (or `stopline promote|abort|pause|resume`) set on a Release.
ANNOTATION_PROMOTE = "stopline.dev/promote"
ANNOTATION_ABORT = "stopline.dev/abort"
ANNOTATION_PAUSED = "stopline.dev/paused"
ANNOTATION_SKIPPED = "stopline.dev/skipped-commits"  # set by a Track: commits batched into this push
# Set by `stopline unlock --without-revert`: stop retrying the git revert (a JSON token {"by", "reason"}).
ANNOTATION_WAIVE_REVERT = "stopline.dev/waive-revert"
WATCH_PHASE = "watch"


# ---------------------------------------------------------------- facts (observations)
@dataclass(frozen=True)
class ManifestDeployment:
    """A Deployment as written in the manifests at the revision."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifests:
    """What the revision's manifests contain, or why they cannot be used."""

    deployments: tuple[ManifestDeployment, ...] = ()
    error: str | None = None
    transient: bool = False  # a network/server problem: retry rather than fail the push
    ignored: tuple[str, ...] = ()  # "Kind/name" of objects that are not pushed
    objects: tuple[ManifestObject, ...] = ()  # every object of the revision (``deployments`` is the older form)
    prune: Mapping[str, str] = field(default_factory=dict)  # live keys to prune → the phase that held them
    author: str | None = None  # who wrote the revision: "Name <email>" (None: not known)
    committer: str | None = None


@dataclass(frozen=True)
class Cause:
    """Why a workload is not Available yet, in the cluster's own words (``controller.kube.causes``).

    ``detail`` is the API's message (or the image that cannot be pulled); ``pods`` how many of the new
    pods show it (0: the workload or its ReplicaSet says it); ``heals`` whether waiting can fix it.
    ``message`` is what users read, e.g. ``frontend: FailedCreate: pods "frontend-…" is forbidden: ...``.
    """

    workload: str  # Kind/name
    reason: str  # FailedCreate, ImagePullBackOff, Unschedulable, ...
    message: str
    detail: str = ""
    pods: int = 0
    heals: bool = True

    @property
    def identity(self) -> tuple[str, str, str]:
        """What makes two observations the same cause (pod counts may change while it stays)."""
        return self.workload, self.reason, self.detail


@dataclass(frozen=True)
class LiveDeployment:
    """The live state of a workload (any kind) as far as the rollout is concerned."""

    name: str
    exists: bool = True
    available: bool = False
    failure: str | None = None
    cause: Cause | None = None  # read only while it is not Available


@dataclass(frozen=True)
class RevertJob:
    """The git revert attempt running beside the loop: still running, or finished with ``result``."""

    running: bool
    result: RevertResult | None = None


@dataclass(frozen=True)
class Facts:
    """Everything the planner may look at besides spec and status."""

    now: datetime
    manifests: Manifests | None = None
    live: Mapping[str, LiveDeployment] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    generation: int | None = None
    revert_job: RevertJob | None = None
    delivery_job: DeliveryJob | None = None  # the notification delivery task beside the loop
    error: str | None = None  # observing failed (e.g. the API server did not answer): plan with what is known


# ---------------------------------------------------------------- actions
@dataclass(frozen=True)
class Begin:
    """Resolve which Deployments each phase pushes and start the push."""

    phases: tuple[tuple[str, tuple[str, ...]], ...]
    unassigned: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    contents: tuple[PhaseContents, ...] = ()  # per phase: workloads, objects, prune (Kind/name keys)
    author: str | None = None
    committer: str | None = None


@dataclass(frozen=True)
class Snapshot:
    """Copy the live objects of a phase before anything changes them.

    ``deployments`` holds object keys (``Kind/name``; a bare name is a Deployment).
    """

    phase: str
    deployments: tuple[str, ...]


@dataclass(frozen=True)
class CaptureBaseline:
    """Read every gate once before the phase changes anything (the pre-push values)."""

    phase: str
    gates: tuple[str, ...]


@dataclass(frozen=True)
class ApplyPhase:
    """Server-side apply the phase's objects from the manifests (in tier order), then prune.

    ``objects`` (Kind/name) is everything the phase pushes; empty in statuses that predate it, where
    ``deployments`` names the Deployments to apply.
    """

    phase: str
    deployments: tuple[str, ...]
    objects: tuple[str, ...] = ()
    prune: tuple[str, ...] = ()


@dataclass(frozen=True)
class MarkAvailable:
    """Every Deployment of the phase is Available: start the hold."""

    phase: str


@dataclass(frozen=True)
class EvaluateGates:
    """Read the gates that are due and fold the readings into the gauges."""

    phase: str
    gates: tuple[str, ...]


@dataclass(frozen=True)
class CompletePhase:
    """The phase's hold is over and its gates pass (or the user promoted)."""

    phase: str
    promoted: str | None = None


@dataclass(frozen=True)
class FailPush:
    """Stop the push: record why, then roll back / revert as configured (``revert``: the planner's call)."""

    reason: str
    message: str
    gate: str | None = None
    phase: str | None = None
    revert: bool = True


@dataclass(frozen=True)
class Undo:
    """Restore snapshots and delete what the push created, concurrently (the cluster side of a rollback).

    ``fast`` lists the workloads (among ``restore``) written back with a surge-all strategy, so the pushed
    version stops serving in one step; their own strategy is put back later by :class:`RestoreStrategy`.
    """

    restore: tuple[str, ...]
    delete: tuple[str, ...]
    fast: tuple[str, ...] = ()


@dataclass(frozen=True)
class RestoreStrategy:
    """Put the exact snapshot back on workloads a fast undo wrote with a temporary strategy.

    Only the strategy differs from the snapshot by then: no rollout starts and no revision is added.
    """

    keys: tuple[str, ...]


@dataclass(frozen=True)
class StartRevert:
    """Start one git revert attempt beside the loop (it reports back as ``Facts.revert_job``)."""


@dataclass(frozen=True)
class RecordRevert:
    """Fold a finished revert attempt into the status."""

    result: RevertResult


@dataclass(frozen=True)
class WaiveRevert:
    """A human said to go on without the revert (annotation ``stopline.dev/waive-revert``)."""

    by: str
    reason: str


@dataclass(frozen=True)
class MarkRolledBack:
    """Every restored Deployment is Available again (or the deadline passed)."""

    message: str = ""


@dataclass(frozen=True)
class NoteStuck:
    """Record why a phase (``phase``) or the restore (``phase`` None) is not Available yet, or that it no
    longer is stuck (``cause`` None). ``since``: when this stretch of not healing began (the planner's
    clock; kept across changes between causes that cannot heal, so a restart resumes the grace)."""

    phase: str | None
    cause: Cause | None
    since: datetime | None = None
    fails_at: datetime | None = None  # when the planner fails the phase (ends the restore wait) unless it heals


@dataclass(frozen=True)
class SetPause:
    """The user paused or resumed the push (annotation ``stopline.dev/paused``)."""

    paused: bool


@dataclass(frozen=True)
class Wait:
    """Nothing to do until ``until`` (or until something changes)."""

    until: datetime | None
    reason: str


Action = (
    Begin
    | Snapshot
    | CaptureBaseline
    | ApplyPhase
    | MarkAvailable
    | EvaluateGates
    | CompletePhase
    | FailPush
    | Undo
    | RestoreStrategy
    | StartRevert
    | RecordRevert
    | WaiveRevert
    | MarkRolledBack
    | NoteStuck
    | SetPause
    | StartDelivery
    | RecordDelivery
    | Wait
)


# ---------------------------------------------------------------- outcomes
@dataclass(frozen=True)
class Done:
    """A status-only action, or an I/O action with nothing to report."""


@dataclass(frozen=True)
class SnapshotTaken:
    """Which objects (keys) were copied, and which did not exist yet."""

    config_map: str
    taken: tuple[str, ...]
    absent: tuple[str, ...]
    secret: str | None = None  # the Secret holding copies of Secrets, when any were taken


@dataclass(frozen=True)
class Applied:
    """What :class:`ApplyPhase` did: the UID of every applied object, and what it pruned."""

    uids: Mapping[str, str] = field(default_factory=dict)
    pruned: tuple[str, ...] = ()


@dataclass(frozen=True)
class Readings:
    """Gate readings by gate name; experiment gates carry the decision instead of a value."""

    values: Mapping[str, Measurement]
    experiments: Mapping[str, tuple[str | None, bool | None]] = field(default_factory=dict)
    # kubernetes, job and http gates: what was observed, judged by the kind's pure function
    checks: Mapping[str, GateCheck] = field(default_factory=dict)


@dataclass(frozen=True)
class RevertResult:
    """What the Git revert did."""

    state: str  # Pushed | AlreadyReverted | Conflict | Error (Error is retried)
    commit: str | None = None
    reason: str | None = None  # human-readable, never with credentials
    attempts: int = 0
    message: str | None = None
    code: str | None = None  # machine reason of an Error: AuthenticationFailed, Unreachable, Timeout, ...


@dataclass(frozen=True)
class Undone:
    """Result of :class:`Undo`."""

    restored: tuple[str, ...]
    deleted: tuple[str, ...]
    restore_error: str | None = None
    restored_at: datetime | None = None  # when the restore finished
    started_at: datetime | None = None  # when the first restore write was sent


@dataclass(frozen=True)
class RevertStarted:
    """Result of :class:`StartRevert`: an attempt is running (or was already running)."""

    at: datetime


@dataclass(frozen=True)
class ActionFailed:
    """The action could not be carried out. ``permanent`` failures fail the push."""

    message: str
    permanent: bool = False
    applied: Mapping[str, str] = field(default_factory=dict)  # ApplyPhase: UIDs of what was applied anyway


Outcome = Done | SnapshotTaken | Applied | Readings | Undone | RevertStarted | ActionFailed
