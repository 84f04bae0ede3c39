"""A deterministic, pure driver for the Release engine: plan → fake-execute → reduce, on a fake clock.

The fake world holds live Deployments (with availability you can flip or schedule), one scripted
metric source per gate and a fake Git that records revert commits. A metric script is a function of
``(phase, call index)``, counted per gate and phase: call 0 of a phase is its pre-push capture; in the
watch window call 0 is the first reading, unless the gate judges no first-phase row, in which case call
0 under ``watch`` is the capture taken before the first phase. :func:`run` loops plan → execute →
reduce, moving the clock to ``Wait.until`` or to the world's next scheduled change, whichever comes
first (by :data:`TICK` when the planner waits for nothing).

With ``restart_each_step`` the status is round-tripped through its JSON wire form between steps, as a
controller restart would. In both modes the driver fails the test when the planner repeats a
side-effecting action: a second snapshot of a Deployment, a second apply of a phase, a pre-push capture
after the phase was applied, a second restore, a second revert attempt while one runs, or a revert
attempt after one was recorded as landed.

The git revert runs beside the loop, as the executor runs it: ``StartRevert`` starts a job in the fake
world that finishes ``World.revert_time`` later by asking :class:`FakeGit` (whose ``script`` says what
each attempt meets); the next observation hands its result to the planner once, as
``Facts.revert_job``, and the planner folds it in with ``RecordRevert``. :meth:`World.crash` drops the
job in flight, as a controller restart does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.gates.evaluate import Measurement
from controller.models.release import (
    GaugeRow,
    PhaseState,
    PhaseStatus,
    ReleasePhase,
    ReleaseSpec,
    ReleaseStatus,
    SnapshotStatus,
    Verdict,
)
from controller.release.actions import (
    Action,
    ApplyPhase,
    CaptureBaseline,
    Cause,
    CompletePhase,
    Done,
    EvaluateGates,
    Facts,
    FailPush,
    LiveDeployment,
    ManifestDeployment,
    Manifests,
    MarkAvailable,
    Outcome,
    Readings,
    RecordRevert,
    RestoreStrategy,
    RevertJob,
    RevertResult,
    RevertStarted,
    Snapshot,
    SnapshotTaken,
    StartRevert,
    Undo,
    Undone,
    Wait,
    WaiveRevert,
)
from controller.release.plan import plan, settled
from controller.release.status import reduce, snapshot_configmap_name

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TICK = timedelta(seconds=1)
ROLLOUT_TIME = timedelta(seconds=5)
RESTORE_TIME = timedelta(seconds=3)
REVERT_TIME = timedelta(seconds=1)
REVISION = "3f9c2e1d5b7a4c8e9f0a1b2c3d4e5f60718293a4"
RELEASE = "web-3f9c2e1"

Reading = Measurement | float | None
MetricScript = Callable[[str, int], Reading]
ExperimentScript = Callable[[str, int], tuple[str | None, bool | None]]


class SimError(AssertionError):
    """The planner did something a controller must never do (repeat a side effect, busy-wait, stall)."""


# ---------------------------------------------------------------- builders
def seconds(n: float) -> timedelta:
    """``n`` seconds."""
    return timedelta(seconds=n)


def at(offset: float) -> datetime:
    """``T0`` plus ``offset`` seconds."""
    return T0 + seconds(offset)


def make_spec(
    phases: list[dict[str, Any]] | None = None,
    gates: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> ReleaseSpec:
    """A Release spec from wire-form (camelCase) pieces; three phases over four Deployments by default."""
    body: dict[str, Any] = {
        "source": {"repo": "file:///srv/app.git", "branch": "main", "revision": REVISION, "path": "deploy/"},
        "phases": phases if phases is not None else THREE_PHASES,
        "gates": gates if gates is not None else [],
        **extra,
    }
    return ReleaseSpec.model_validate(body)


THREE_PHASES: list[dict[str, Any]] = [
    {"name": "canary", "deployments": ["web-canary"], "hold": "60s"},
    {"name": "chat", "selector": {"matchLabels": {"tier": "chat"}}, "hold": "2m"},
    {"name": "everything-else", "remaining": True, "hold": "2m"},
]
FOUR_DEPLOYMENTS: dict[str, dict[str, str]] = {
    "web-canary": {"app": "web", "track": "canary"},
    "chat-a": {"app": "chat", "tier": "chat"},
    "chat-b": {"app": "chat", "tier": "chat"},
    "web": {"app": "web"},
}


def phase_status(
    name: str,
    state: PhaseState = "Pending",
    deployments: Iterable[str] = (),
    *,
    started_at: datetime | None = None,
    available_at: datetime | None = None,
    hold_until: datetime | None = None,
) -> PhaseStatus:
    """One entry of ``status.phases``."""
    return PhaseStatus(
        name=name,
        state=state,
        deployments=list(deployments),
        started_at=started_at,
        available_at=available_at,
        hold_until=hold_until,
    )


def row(
    gate: str,
    phase: str,
    *,
    pre: float | None = None,
    post: float | None = None,
    verdict: Verdict = "Inconclusive",
    readings: int = 0,
    when: datetime | None = None,
    breaches: int = 0,
    inconclusive: int = 0,
    dry_run: bool = False,
    message: str = "",
) -> GaugeRow:
    """One gauges row."""
    return GaugeRow(
        gate=gate,
        phase=phase,
        pre_push=pre,
        post_push=post,
        verdict=verdict,
        readings=readings,
        at=when,
        breaches=breaches,
        inconclusive=inconclusive,
        dry_run=dry_run,
        message=message,
    )


def release_status(
    phase: ReleasePhase = "Progressing",
    current: str | None = None,
    phases: Iterable[PhaseStatus] = (),
    *,
    gauges: Iterable[GaugeRow] = (),
    snapshot: Iterable[str] | None = None,
    absent: Iterable[str] = (),
    **extra: Any,
) -> ReleaseStatus:
    """A status with the fields the planner looks at."""
    snap = (
        SnapshotStatus(config_map=f"{RELEASE}-snapshot", deployments=list(snapshot), absent=list(absent))
        if snapshot is not None
        else None
    )
    return ReleaseStatus(
        phase=phase,
        current_phase=current,
        phases=list(phases),
        gauges=list(gauges),
        snapshot=snap,
        started_at=T0 if phases else None,
        **extra,
    )


def constant(value: Reading) -> MetricScript:
    """A metric that always reads ``value``."""
    return lambda _phase, _call: value


def series(pre: Reading, *post: Reading, watch: Reading | None = None) -> MetricScript:
    """Call 0 of each phase reads ``pre``; hold readings follow ``post`` (the last value repeats).

    In the watch window every call reads ``watch`` (default: the last ``post``), for gates that judge
    the first phase and so have no capture of their own under ``watch``.
    """

    def script(phase: str, call: int) -> Reading:
        if phase == "watch":
            return watch if watch is not None else (post[-1] if post else pre)
        if call == 0:
            return pre
        if not post:
            return pre
        return post[min(call - 1, len(post) - 1)]

    return script


def per_phase(scripts: Mapping[str, MetricScript], default: MetricScript) -> MetricScript:
    """A different script for some phases (``watch`` included)."""
    return lambda phase, call: scripts.get(phase, default)(phase, call)


# ---------------------------------------------------------------- the fake world
@dataclass
class FakeDeployment:
    """A live Deployment as the rollout sees it."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    exists: bool = True
    available: bool = True
    ready_at: datetime | None = None
    failure: str | None = None
    cause: Cause | None = None  # why it is not Available (as the kube adapter would report it)
    in_manifests: bool = True
    applied: int = 0
    restored: int = 0
    deleted: int = 0


#: What a failed attempt meets, by script entry: ``(code, reason)`` of the Error result.
GIT_ERRORS: dict[str, tuple[str, str]] = {
    "Error": ("Error", "fake error"),
    "Unreachable": ("Unreachable", "cannot reach git.example: connection refused"),
    "Timeout": ("Timeout", "git push did not answer within 30s"),
    "AuthenticationFailed": ("AuthenticationFailed", "the git server rejected the credentials (HTTP 401)"),
}


@dataclass
class FakeGit:
    """Records revert commits; ``script`` gives the results of successive revert attempts (then Pushed).

    A script entry is ``Pushed``, ``Conflict`` or a failure from :data:`GIT_ERRORS` (retried by the planner).
    """

    script: list[str] = field(default_factory=list)
    commits: list[str] = field(default_factory=list)
    attempts: int = 0

    def revert(self, revision: str, message: str) -> RevertResult:
        """Revert ``revision`` unless a revert of it is already on the branch (the trailer check)."""
        self.attempts += 1
        if self.commits:
            return RevertResult("AlreadyReverted", commit=self.commits[0], attempts=1, message=message)
        state = self.script.pop(0) if self.script else "Pushed"
        if state == "Pushed":
            sha = f"{len(self.commits) + 1:040x}"
            self.commits.append(sha)
            return RevertResult("Pushed", commit=sha, attempts=1, message=message)
        if state == "Conflict":
            return RevertResult("Conflict", reason="fake conflict", attempts=1)
        code, reason = GIT_ERRORS[state]
        return RevertResult("Error", reason=reason, attempts=1, code=code)


@dataclass
class RevertRun:
    """The revert attempt running beside the loop in the fake world."""

    started: datetime
    finishes: datetime | None  # None: the attempt hangs until the controller restarts
    result: RevertResult | None = None


@dataclass
class World:
    """Everything outside the Release: Deployments, metrics, annotations, Git."""

    deployments: dict[str, FakeDeployment] = field(default_factory=dict)
    metrics: dict[str, MetricScript] = field(default_factory=dict)
    experiments: dict[str, ExperimentScript] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    git: FakeGit = field(default_factory=FakeGit)
    rollout_time: timedelta | None = ROLLOUT_TIME
    rollout_overrides: dict[str, timedelta | None] = field(default_factory=dict)
    # name → the cause its rollout shows once applied (it never becomes Available; a restore heals it)
    stuck: dict[str, Cause] = field(default_factory=dict)
    restore_time: timedelta | None = RESTORE_TIME
    manifests_error: str | None = None
    manifests_ready: bool = True
    revert_time: timedelta | None = REVERT_TIME
    revert_job: RevertRun | None = None
    reverts_started: list[datetime] = field(default_factory=list)
    reverts_recorded: list[tuple[datetime, str]] = field(default_factory=list)
    release: str = RELEASE
    calls: dict[tuple[str, str], int] = field(default_factory=dict)
    readings: list[tuple[str, str, int, Measurement]] = field(default_factory=list)
    # side-effect ledger, used to catch repeats
    snapshotted: set[str] = field(default_factory=set)
    applied_phases: set[str] = field(default_factory=set)
    undos: int = 0

    @classmethod
    def of(cls, deployments: Mapping[str, Mapping[str, str]] | None = None, **kwargs: Any) -> World:
        """A world whose Deployments all exist, are Available and are in the manifests."""
        deps = FOUR_DEPLOYMENTS if deployments is None else deployments
        world = cls(**kwargs)
        for name, labels in deps.items():
            world.deployments[name] = FakeDeployment(name, dict(labels))
        return world

    # ---- observation
    def manifests(self) -> Manifests | None:
        if not self.manifests_ready:
            return None
        if self.manifests_error:
            return Manifests(error=self.manifests_error)
        return Manifests(
            tuple(ManifestDeployment(d.name, dict(d.labels)) for d in self.deployments.values() if d.in_manifests)
        )

    def settle(self, now: datetime) -> None:
        """Deployments whose rollout finished by ``now`` become Available."""
        for d in self.deployments.values():
            if d.ready_at is not None and d.ready_at <= now:
                d.available = True
                d.ready_at = None

    def _revert_job(self, spec: ReleaseSpec, now: datetime) -> RevertJob | None:
        """The revert attempt as the executor reports it: running, or its result once (then forgotten)."""
        job = self.revert_job
        if job is None:
            return None
        if job.result is None and job.finishes is not None and job.finishes <= now:
            job.result = self.git.revert(spec.source.revision, f"Revert {spec.source.revision[:7]}")
        if job.result is None:
            return RevertJob(running=True)
        self.revert_job = None
        return RevertJob(running=False, result=job.result)

    def facts(self, now: datetime, spec: ReleaseSpec | None = None) -> Facts:
        self.settle(now)
        live = {
            d.name: LiveDeployment(
                d.name, exists=d.exists, available=d.exists and d.available, failure=d.failure, cause=d.cause
            )
            for d in self.deployments.values()
            if d.exists
        }
        job = self._revert_job(spec, now) if spec is not None else None
        return Facts(now=now, manifests=self.manifests(), live=live, annotations=dict(self.annotations), revert_job=job)

    def next_change(self, now: datetime) -> datetime | None:
        """The next time something in the world changes by itself."""
        pending = [d.ready_at for d in self.deployments.values() if d.ready_at is not None and d.ready_at > now]
        job = self.revert_job
        if job is not None and job.result is None and job.finishes is not None and job.finishes > now:
            pending.append(job.finishes)
        return min(pending, default=None)

    def crash(self, spec: ReleaseSpec | None = None, *, landed: bool = False) -> None:
        """The controller restarts: the revert attempt in flight is lost with its result.

        ``landed``: the attempt had reached Git (its push went through) before the controller died.
        """
        if landed and spec is not None and self.revert_job is not None and self.revert_job.result is None:
            self.git.revert(spec.source.revision, f"Revert {spec.source.revision[:7]}")
        self.revert_job = None

    def set_available(self, name: str, available: bool) -> None:
        """Flip a Deployment's availability by hand."""
        self.deployments[name].available = available
        self.deployments[name].ready_at = None

    # ---- execution
    def _read(self, gate: str, phase: str, now: datetime) -> Measurement:
        call = self.calls.get((gate, phase), 0)
        self.calls[(gate, phase)] = call + 1
        script = self.metrics.get(gate)
        got = script(phase, call) if script is not None else None
        m = got if isinstance(got, Measurement) else Measurement(value=got, at=now)
        self.readings.append((gate, phase, call, m))
        return m

    def _roll(self, name: str, delay: timedelta | None, now: datetime) -> None:
        d = self.deployments.setdefault(name, FakeDeployment(name, exists=False, in_manifests=False))
        d.exists = True
        d.available = False
        d.ready_at = None if delay is None else now + delay
        if d.ready_at is not None and delay == timedelta(0):
            d.available, d.ready_at = True, None

    def guard(self, action: Action) -> None:
        """Fail on a side effect a controller must never repeat."""
        if isinstance(action, Snapshot):
            again = sorted(set(action.deployments) & self.snapshotted)
            if again:
                raise SimError(f"second snapshot of {again}: would overwrite the true pre-push state")
        elif isinstance(action, CaptureBaseline):
            if action.phase in self.applied_phases:
                raise SimError(f"pre-push capture of {action.phase} after it was applied")
        elif isinstance(action, ApplyPhase):
            if action.phase in self.applied_phases:
                raise SimError(f"phase {action.phase} applied twice")
        elif isinstance(action, Undo):
            if (action.restore or action.delete) and self.undos:
                raise SimError(f"second restore: {action}")
        elif isinstance(action, StartRevert):
            if self.revert_job is not None:
                raise SimError("second revert attempt while one is running")
            landed = [state for _, state in self.reverts_recorded if state in ("Pushed", "AlreadyReverted")]
            if landed:
                raise SimError(f"revert attempt after the revert was recorded as {landed[0]}")
        elif isinstance(action, RecordRevert) and not self.reverts_started:
            raise SimError("a revert recorded that was never started")

    def execute(self, spec: ReleaseSpec, action: Action, now: datetime) -> Outcome:
        """Carry out one action against the fake world."""
        if isinstance(action, Snapshot):
            taken = tuple(n for n in action.deployments if n in self.deployments and self.deployments[n].exists)
            absent = tuple(n for n in action.deployments if n not in taken)
            self.snapshotted.update(action.deployments)
            return SnapshotTaken(snapshot_configmap_name(self.release), taken, absent)
        if isinstance(action, CaptureBaseline | EvaluateGates):
            values: dict[str, Measurement] = {}
            experiments: dict[str, tuple[str | None, bool | None]] = {}
            for gate in action.gates:
                if gate in self.experiments:
                    call = self.calls.get((gate, action.phase), 0)
                    self.calls[(gate, action.phase)] = call + 1
                    experiments[gate] = self.experiments[gate](action.phase, call)
                else:
                    values[gate] = self._read(gate, action.phase, now)
            return Readings(values, experiments)
        if isinstance(action, ApplyPhase):
            self.applied_phases.add(action.phase)
            for name in action.deployments:
                stuck = self.stuck.get(name)
                self._roll(name, None if stuck else self.rollout_overrides.get(name, self.rollout_time), now)
                self.deployments[name].applied += 1
                self.deployments[name].cause = stuck
            return Done()
        if isinstance(action, Undo):
            if action.restore or action.delete:
                self.undos += 1
            for name in action.restore:
                self._roll(name, self.restore_time, now)
                self.deployments[name].cause = None
                self.deployments[name].restored += 1
            for name in action.delete:
                d = self.deployments[name]
                d.exists, d.available, d.ready_at = False, False, None
                d.deleted += 1
            return Undone(tuple(action.restore), tuple(action.delete), restored_at=now)
        if isinstance(action, StartRevert):
            finishes = None if self.revert_time is None else now + self.revert_time
            self.revert_job = RevertRun(started=now, finishes=finishes)
            self.reverts_started.append(now)
            return RevertStarted(now)
        if isinstance(action, RecordRevert):
            self.reverts_recorded.append((now, action.result.state))
        return Done()


# ---------------------------------------------------------------- the loop
@dataclass
class FakeClock:
    """The injectable clock."""

    now: datetime = T0


@dataclass(frozen=True)
class Step:
    """One planner decision, what it produced, and the status afterwards."""

    at: datetime
    action: Action
    outcome: Outcome | None
    status: ReleaseStatus


SIDE_EFFECTS = (Snapshot, ApplyPhase, Undo, StartRevert)


@dataclass
class Trace:
    """What :func:`run` did."""

    status: ReleaseStatus
    steps: list[Step] = field(default_factory=list)

    @property
    def actions(self) -> list[Action]:
        return [s.action for s in self.steps]

    @property
    def side_effects(self) -> list[Action]:
        return [a for a in self.actions if isinstance(a, SIDE_EFFECTS)]

    def named(self) -> list[str]:
        """Every non-Wait action as a short string, consecutive repeats squashed (``EvaluateGates canary x7``)."""
        out: list[str] = []
        counts: list[int] = []
        for a in self.actions:
            if isinstance(a, Wait):
                continue
            text = describe(a)
            if out and out[-1] == text:
                counts[-1] += 1
            else:
                out.append(text)
                counts.append(1)
        return [t if n == 1 else f"{t} x{n}" for t, n in zip(out, counts, strict=True)]

    def first(self, kind: type[Any]) -> Any:
        return next(a for a in self.actions if isinstance(a, kind))

    def count(self, kind: type[Any]) -> int:
        return sum(isinstance(a, kind) for a in self.actions)


def describe(action: Action) -> str:
    """A compact, exact text form of an action for sequence assertions."""
    if isinstance(action, Snapshot | ApplyPhase):
        return f"{type(action).__name__} {action.phase} {','.join(action.deployments)}"
    if isinstance(action, CaptureBaseline | EvaluateGates):
        return f"{type(action).__name__} {action.phase} {','.join(action.gates)}"
    if isinstance(action, MarkAvailable):
        return f"MarkAvailable {action.phase}"
    if isinstance(action, CompletePhase):
        return f"CompletePhase {action.phase}" + (f" promoted={action.promoted}" if action.promoted else "")
    if isinstance(action, FailPush):
        return f"FailPush {action.reason} gate={action.gate} phase={action.phase}"
    if isinstance(action, Undo):
        return f"Undo restore={','.join(action.restore)} delete={','.join(action.delete)}"
    if isinstance(action, RestoreStrategy):
        return f"RestoreStrategy {','.join(action.keys)}"
    if isinstance(action, RecordRevert):
        return f"RecordRevert {action.result.state}" + (f" {action.result.code}" if action.result.code else "")
    if isinstance(action, WaiveRevert):
        return f"WaiveRevert by={action.by}"
    return type(action).__name__


def roundtrip(status: ReleaseStatus) -> ReleaseStatus:
    """The status as a restarted controller reads it back from the API server."""
    return ReleaseStatus.model_validate(status.model_dump(mode="json", by_alias=True))


def run(
    spec: ReleaseSpec,
    status: ReleaseStatus,
    world: World,
    clock: FakeClock,
    max_steps: int = 2000,
    *,
    restart_each_step: bool = False,
    stop_when: Callable[[ReleaseStatus], bool] | None = None,
    until: datetime | None = None,
) -> Trace:
    """Drive the Release until it is settled (final, no revert pending), ``stop_when`` holds or the clock
    reaches ``until``.

    Raises :class:`SimError` when the planner repeats a side effect, busy-waits, or is still not done
    after ``max_steps`` decisions.
    """
    if restart_each_step:
        status = roundtrip(status)
    trace = Trace(status=status)
    for _ in range(max_steps):
        if settled(spec, status) or (stop_when is not None and stop_when(status)):
            return trace
        if until is not None and clock.now >= until:
            return trace
        now = clock.now
        action = plan(spec, status, world.facts(now, spec))
        if isinstance(action, Wait):
            if action.until is not None and action.until <= now:
                raise SimError(f"busy wait: Wait until {action.until} at {now} ({action.reason})")
            target = action.until or now + TICK
            change = world.next_change(now)
            # The driver wakes at least every tick while rolling back: a revert retry falling due
            # during the restore is picked up then, so the sim wakes for it too.
            retry = status.revert.next_attempt_at if status.revert is not None else None
            clock.now = min(t for t in (target, change, until, retry) if t is not None and t > now)
            status = reduce(spec, status, action, Done(), now)
            trace.status = status
            trace.steps.append(Step(now, action, None, status))
            continue
        world.guard(action)
        outcome = world.execute(spec, action, now)
        status = reduce(spec, status, action, outcome, now)
        if restart_each_step:
            status = roundtrip(status)
        trace.status = status
        trace.steps.append(Step(now, action, outcome, status))
    raise SimError(f"not final after {max_steps} steps; last actions: {trace.named()[-5:]}")


RESOLVED = {"canary": ["web-canary"], "chat": ["chat-a", "chat-b"], "everything-else": ["web"]}


def phases(**states: PhaseState) -> list[PhaseStatus]:
    """The three resolved phases; named ones in the given state (Passed/Failed/Holding ones were applied)."""
    out = []
    for name, deps in RESOLVED.items():
        state = states.get(name.replace("-", "_"), "Pending")
        applied = state != "Pending"
        out.append(
            phase_status(
                name,
                state,
                deps,
                started_at=at(0) if applied else None,
                available_at=at(5) if state in ("Holding", "Passed") else None,
                hold_until=at(65) if state in ("Holding", "Passed") else None,
            )
        )
    return out
