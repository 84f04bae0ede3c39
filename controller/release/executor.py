"""Observe the world for the planner and carry out exactly one action through the adapters.

The adapters are small protocols so unit tests can hand in fakes; the real ones live in
``controller/kube``, ``controller/gates/providers`` and ``controller/gitops`` (wired in ``controller/wiring.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from controller.errors import ApplyIncomplete, StoplineError
from controller.gates.compare import CompareReading, render_compare, step_seconds
from controller.gates.compare import groups as compare_groups
from controller.gates.compare import window as compare_window
from controller.gates.evaluate import Measurement, render_query
from controller.gates.httpcheck import HttpResult
from controller.gates.jobs import (
    LABEL_PHASE,
    LABEL_RELEASE,
    JobState,
    job_labels,
    job_manifest,
    job_name,
    job_state,
    ours,
)
from controller.gates.kinds import BASELINE_KINDS, GateCheck
from controller.gates.pods import PodsReading, pod_health
from controller.gates.providers.base import MetricsProvider
from controller.gitops.results import CommitInfo
from controller.models.notify import Sink
from controller.models.release import Gate, ReleaseSpec, ReleaseStatus
from controller.notify.delivery import Deliveries
from controller.notify.outbox import StartDelivery, effective_sinks
from controller.release.actions import (
    Action,
    ActionFailed,
    Applied,
    ApplyPhase,
    CaptureBaseline,
    Done,
    EvaluateGates,
    Facts,
    LiveDeployment,
    Manifests,
    Outcome,
    Readings,
    RestoreStrategy,
    RevertJob,
    RevertResult,
    RevertStarted,
    Snapshot,
    SnapshotTaken,
    Undo,
    Undone,
)
from controller.release.assign import (
    LiveObject,
    app_id,
    describe,
    flatten,
    is_workload_key,
    normal_key,
    object_key,
    order,
    problems,
    prune_set,
    restored_keys,
    split_key,
    workload_keys,
)
from controller.release.messages import revert_message
from controller.release.plan import gates_for, machine_state, needs_manifests
from controller.release.status import snapshot_configmap_name

log = logging.getLogger("stopline.release")


@dataclass(frozen=True)
class ReleaseRef:
    """Identity of the Release being worked on."""

    namespace: str
    name: str
    uid: str
    api_version: str = "stopline.dev/v1alpha1"
    kind: str = "Release"

    def owner(self) -> dict[str, str]:
        """Owner-reference fields for objects the Release creates."""
        return {"apiVersion": self.api_version, "kind": self.kind, "name": self.name, "uid": self.uid}


class ClusterPort(Protocol):
    """Kubernetes operations a Release needs. Objects are named by key ``Kind/name`` (bare name: Deployment)."""

    async def scopes(self, kinds: Iterable[tuple[str, str]]) -> dict[tuple[str, str], bool | None]: ...

    async def states(self, namespace: str, names: Iterable[str]) -> dict[str, LiveDeployment]: ...

    async def snapshot(
        self, namespace: str, configmap: str, owner: Mapping[str, str], names: Iterable[str]
    ) -> tuple[list[str], list[str]]: ...

    async def apply(
        self, namespace: str, manifests: Iterable[Mapping[str, Any]], release: str, app: str = "", phase: str = ""
    ) -> dict[str, str]: ...

    async def prune(self, namespace: str, keys: Iterable[str], app: str) -> list[str]: ...

    async def managed(self, namespace: str, app: str) -> list[LiveObject]: ...

    async def restore(
        self,
        namespace: str,
        configmap: str,
        restore: Iterable[str],
        delete: Iterable[str],
        release: str,
        created: Mapping[str, str] | None = None,
        fast: Iterable[str] = (),
    ) -> tuple[list[str], list[str]]: ...


class GitPort(Protocol):
    """Git operations a Release needs (credentials resolved by the adapter)."""

    async def manifests(self, namespace: str, spec: ReleaseSpec) -> list[dict[str, Any]]: ...

    async def commit(self, namespace: str, spec: ReleaseSpec) -> CommitInfo: ...

    async def revert(
        self,
        namespace: str,
        spec: ReleaseSpec,
        message: str,
        trailers: Mapping[str, str],
        proceed: Callable[[], bool] = lambda: True,
    ) -> RevertResult: ...


class GateChecksPort(Protocol):
    """Kubernetes reads and writes of the kubernetes and job gates, and Secret values for http headers."""

    async def pods(self, namespace: str, workloads: Iterable[str]) -> dict[str, list[dict[str, Any]] | None]: ...

    async def ensure_job(self, namespace: str, manifest: Mapping[str, Any]) -> tuple[dict[str, Any], bool]: ...

    async def jobs(self, namespace: str, label_selector: str) -> list[dict[str, Any]]: ...

    async def delete_job(self, namespace: str, name: str, uid: str) -> None: ...

    async def secret_value(self, namespace: str, name: str, key: str) -> str: ...


class HttpPort(Protocol):
    """One HTTP request; never raises for network problems (they come back as ``HttpResult.error``)."""

    async def request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None, timeout_seconds: float
    ) -> HttpResult: ...


class ExperimentsPort(Protocol):
    """Reads an Experiment's decision for experiment gates."""

    async def decision(self, namespace: str, name: str) -> tuple[str | None, bool | None]: ...


def objects_in(
    manifests: Iterable[Mapping[str, Any]],
    namespace: str,
    scopes: Mapping[tuple[str, str], bool | None],
) -> Manifests:
    """Every object a revision defines, or why the manifests cannot be pushed into ``namespace``."""
    objects = tuple(
        describe(doc, scopes.get((str(doc.get("apiVersion") or ""), str(doc.get("kind") or "")), True))
        for doc in manifests
    )
    found = problems(objects, namespace)
    if found:
        return Manifests(error="; ".join(found))
    return Manifests(objects=objects)


def _key(doc: Mapping[str, Any]) -> str:
    return object_key(str(doc.get("kind")), str((doc.get("metadata") or {}).get("name")))


def _kinds(docs: Iterable[Mapping[str, Any]]) -> set[tuple[str, str]]:
    return {(str(d.get("apiVersion") or ""), str(d.get("kind") or "")) for d in docs}


class Executor:
    """Observe and act for Releases; one instance is shared by every Release."""

    def __init__(
        self,
        *,
        cluster: ClusterPort,
        git: GitPort,
        metrics: MetricsProvider,
        experiments: ExperimentsPort | None,
        default_prometheus: str | None,
        clock: Callable[[], datetime],
        deliveries: Deliveries | None = None,
        notify_defaults: tuple[Sink, ...] = (),
        checks: GateChecksPort | None = None,
        http: HttpPort | None = None,
    ) -> None:
        self.deliveries = deliveries
        self.notify_defaults = notify_defaults
        self.checks = checks
        self.http = http
        self.cluster = cluster
        self.git = git
        self.metrics = metrics
        self.experiments = experiments
        self.default_prometheus = default_prometheus
        self.clock = clock
        self._reverts: dict[str, asyncio.Task[RevertResult]] = {}
        self._allowed: dict[str, bool] = {}

    # ------------------------------------------------------------------ the revert beside the loop
    def revert_job(self, ref: ReleaseRef) -> RevertJob | None:
        """The attempt running for this Release, or its result once (then it is forgotten)."""
        task = self._reverts.get(ref.uid)
        if task is None:
            return None
        if not task.done():
            return RevertJob(running=True)
        del self._reverts[ref.uid]
        if task.cancelled():
            return RevertJob(running=False, result=RevertResult("Error", reason="attempt cancelled", code="Cancelled"))
        exc = task.exception()
        if exc is not None:
            return RevertJob(running=False, result=RevertResult("Error", reason=str(exc), code=_code(exc)))
        return RevertJob(running=False, result=task.result())

    def start_revert(
        self, ref: ReleaseRef, spec: ReleaseSpec, status: ReleaseStatus, done: Callable[[], None]
    ) -> RevertStarted:
        """Start one revert attempt in the background; ``done`` is called when it finishes."""
        if ref.uid not in self._reverts:
            message, trailers = revert_message(spec, status, ref.namespace, ref.name)
            self._allowed[ref.uid] = True
            task = asyncio.ensure_future(
                self.git.revert(ref.namespace, spec, message, trailers, lambda: self._allowed.get(ref.uid, False))
            )
            task.add_done_callback(lambda _t: done())
            self._reverts[ref.uid] = task
        return RevertStarted(self.clock())

    # ------------------------------------------------------------------ notifications beside the loop
    def start_delivery(
        self, ref: ReleaseRef, spec: ReleaseSpec, status: ReleaseStatus, action: StartDelivery, done: Callable[[], None]
    ) -> Done:
        """Send the due outbox entries in the background (no receiver can hold up the loop)."""
        if self.deliveries is not None and status.notifications is not None:
            keys = set(action.keys)
            entries = [e for e in status.notifications.outbox if e.key in keys]
            sinks = effective_sinks(spec.notify, self.notify_defaults)
            self.deliveries.start(ref.uid, ref.namespace, sinks, entries, done)
        return Done()

    def forget(self, ref: ReleaseRef) -> None:
        """The Release is gone or its loop stops: an attempt in flight pushes nothing from now on."""
        if self.deliveries is not None:
            self.deliveries.forget(ref.uid)
        self._allowed.pop(ref.uid, None)
        task = self._reverts.pop(ref.uid, None)
        if task is not None and not task.done():
            task.cancel()

    # ------------------------------------------------------------------ observe
    async def observe(
        self,
        ref: ReleaseRef,
        spec: ReleaseSpec,
        status: ReleaseStatus,
        annotations: Mapping[str, str],
        generation: int | None = None,
    ) -> Facts:
        """The facts the planner needs now — and only those (no API call in a hold)."""
        revert_job = self.revert_job(ref)
        delivery_job = self.deliveries.job(ref.uid) if self.deliveries is not None else None
        manifests: Manifests | None = None
        if needs_manifests(status):
            try:
                manifests = await self.read_manifests(ref, spec)
            except StoplineError as exc:
                manifests = Manifests(error=str(exc), transient=not _permanent(exc))
        names: list[str] = []
        state = machine_state(status)
        if state == "RollingBack" and status.undo is not None and not status.undo.error:
            names = [k for k in restored_keys(status.undo) if is_workload_key(k)]
        elif state in ("Progressing", "Holding"):
            current = next((p for p in status.phases if p.name == status.current_phase), None)
            if current is not None and current.state == "Progressing":
                names = list(workload_keys(current))
        live = await self.cluster.states(ref.namespace, names) if names else {}
        return Facts(
            now=self.clock(),
            manifests=manifests,
            live=live,
            annotations=dict(annotations),
            generation=generation,
            revert_job=revert_job,
            delivery_job=delivery_job,
        )

    async def read_manifests(self, ref: ReleaseRef, spec: ReleaseSpec) -> Manifests:
        """The revision's objects, checked against the cluster (scopes), and what a prune would delete."""
        docs = flatten(await self.git.manifests(ref.namespace, spec))
        manifests = objects_in(docs, ref.namespace, await self.cluster.scopes(_kinds(docs)))
        if not manifests.error:
            try:  # who pushed: shown in status and the revert message; never a reason to fail the push
                commit = await self.git.commit(ref.namespace, spec)
                manifests = replace(manifests, author=commit.author, committer=commit.committer or None)
            except StoplineError as exc:
                log.warning("%s/%s: author of %s unknown: %s", ref.namespace, ref.name, spec.source.revision[:7], exc)
        if manifests.error or not spec.prune:
            return manifests
        app = app_id(spec.source.repo, spec.source.path)
        live = await self.cluster.managed(ref.namespace, app)
        return replace(manifests, prune=prune_set(live, (o.key for o in manifests.objects), app))

    # ------------------------------------------------------------------ act
    async def execute(self, ref: ReleaseRef, spec: ReleaseSpec, status: ReleaseStatus, action: Action) -> Outcome:
        """Carry out one action; failures come back as :class:`ActionFailed`, never raised."""
        try:
            return await self._execute(ref, spec, status, action)
        except StoplineError as exc:
            return ActionFailed(str(exc), permanent=_permanent(exc))
        except Exception as exc:  # an unexpected client error is a transient failure, retried, never a crash
            return ActionFailed(f"{type(exc).__name__}: {exc}"[:1000])

    async def _execute(self, ref: ReleaseRef, spec: ReleaseSpec, status: ReleaseStatus, action: Action) -> Outcome:
        if isinstance(action, Snapshot):
            cm = snapshot_configmap_name(ref.name)
            taken, absent = await self.cluster.snapshot(ref.namespace, cm, ref.owner(), action.deployments)
            secret = cm if any(split_key(k)[0] == "Secret" for k in taken) else None
            return SnapshotTaken(cm, tuple(taken), tuple(absent), secret)
        if isinstance(action, CaptureBaseline | EvaluateGates):
            baseline = isinstance(action, CaptureBaseline)
            return await self.read_gates(ref, spec, action.phase, action.gates, status, baseline=baseline)
        if isinstance(action, ApplyPhase):
            return await self.apply_phase(ref, spec, action)
        if isinstance(action, Undo):
            return await self.undo(ref, spec, status, action)
        if isinstance(action, RestoreStrategy):
            cm = status.snapshot.config_map if status.snapshot else snapshot_configmap_name(ref.name)
            await self.cluster.restore(ref.namespace, cm, action.keys, (), ref.name, {})
            return Done()
        return Done()

    async def apply_phase(self, ref: ReleaseRef, spec: ReleaseSpec, action: ApplyPhase) -> Applied | ActionFailed:
        """Apply the phase's objects tier by tier (config and RBAC, workloads, the rest), then prune."""
        docs = flatten(await self.git.manifests(ref.namespace, spec))
        wanted = {normal_key(k) for k in (action.objects or action.deployments)}
        chosen = [d for d in docs if _key(d) in wanted]
        app = app_id(spec.source.repo, spec.source.path)
        uids: dict[str, str] = {}
        for group in order(chosen):
            try:
                uids.update(await self.cluster.apply(ref.namespace, group, ref.name, app=app, phase=action.phase) or {})
            except ApplyIncomplete as exc:
                uids.update(exc.uids)
                return ActionFailed(str(exc), permanent=_permanent(exc.cause), applied=uids)
            except StoplineError as exc:  # this tier failed whole; earlier tiers were applied
                return ActionFailed(str(exc), permanent=_permanent(exc), applied=uids)
        try:
            pruned = await self.cluster.prune(ref.namespace, action.prune, app) if action.prune else []
        except StoplineError as exc:
            return ActionFailed(str(exc), permanent=_permanent(exc), applied=uids)
        return Applied(uids, tuple(pruned))

    async def read_gates(
        self,
        ref: ReleaseRef,
        spec: ReleaseSpec,
        phase: str,
        names: Iterable[str],
        status: ReleaseStatus | None = None,
        *,
        baseline: bool = False,
    ) -> Readings:
        """Read the named gates concurrently, each with its kind's reader (identical queries are shared by the
        provider). A baseline reads only the kinds that have a pre-push value (a job gate runs nothing then)."""
        wanted = set(names)
        gates = [g for g in gates_for(spec, phase) if g.name in wanted]
        if baseline:
            gates = [g for g in gates if g.kind in BASELINE_KINDS]
        read = _GateRead(self, ref, spec, phase, status or ReleaseStatus())
        readers: dict[str, Callable[[Gate], Awaitable[None]]] = {
            "query": read.query,
            "experiment": read.experiment,
            "kubernetes": read.kubernetes,
            "job": read.job,
            "http": read.http,
            "compare": read.compare,
        }
        await asyncio.gather(*(readers[g.kind](g) for g in gates))
        return Readings(read.values, read.experiments, read.checks)

    async def cleanup_jobs(self, ref: ReleaseRef, keep_phase: str | None = None) -> list[str]:
        """Delete the smoke-test Jobs this Release's gates created (ours by label *and* owner), except those of
        ``keep_phase``. Best effort: a Job left behind is garbage-collected with the Release."""
        if self.checks is None:
            return []
        try:
            found = await self.checks.jobs(
                ref.namespace, f"{LABEL_RELEASE}={job_labels(ref.name, 'x', 'x')[LABEL_RELEASE]}"
            )
        except StoplineError as exc:
            log.warning("%s/%s: cannot list smoke-test Jobs: %s", ref.namespace, ref.name, exc)
            return []
        deleted: list[str] = []
        for job in found:
            meta = job.get("metadata") or {}
            if not ours(job, ref.name, ref.uid) or (
                keep_phase and (meta.get("labels") or {}).get(LABEL_PHASE) == keep_phase
            ):
                continue
            try:
                await self.checks.delete_job(ref.namespace, str(meta.get("name")), str(meta.get("uid")))
                deleted.append(str(meta.get("name")))
            except StoplineError as exc:
                log.warning("%s/%s: cannot delete Job %s: %s", ref.namespace, ref.name, meta.get("name"), exc)
        return deleted

    async def undo(self, ref: ReleaseRef, spec: ReleaseSpec, status: ReleaseStatus, action: Undo) -> Undone:
        """Restore every snapshotted object and delete what the push created (the git revert runs apart)."""
        if not action.restore and not action.delete:
            return Undone((), ())
        cm = status.snapshot.config_map if status.snapshot else snapshot_configmap_name(ref.name)
        created = status.snapshot.created if status.snapshot else {}
        started = self.clock()
        extra: dict[str, Any] = {"fast": action.fast} if action.fast else {}
        try:
            restored, deleted = await self.cluster.restore(
                ref.namespace, cm, action.restore, deletable(status, action.delete), ref.name, created, **extra
            )
        except StoplineError as exc:
            return Undone((), (), str(exc), self.clock(), started)
        return Undone(tuple(restored), tuple(deleted), None, self.clock(), started)


def _code(exc: BaseException) -> str:
    """A machine reason for a failed revert attempt (the git adapter's own, or the error's class)."""
    return str(getattr(exc, "reason", None) or type(exc).__name__)


def deletable(status: ReleaseStatus, keys: Iterable[str]) -> list[str]:
    """Objects a rollback may delete: those the push created, proven by the UID recorded at apply.

    Bare names come from statuses written before UIDs were recorded: those Deployments keep the
    annotation check alone, as they always had.
    """
    created = {normal_key(k) for k in (status.snapshot.created if status.snapshot else {})}
    return [k for k in keys if "/" not in k or normal_key(k) in created]


def _permanent(exc: StoplineError) -> bool:
    from controller.errors import InvalidSpec, ManifestError, SnapshotTooLarge

    return isinstance(exc, InvalidSpec | ManifestError | SnapshotTooLarge)


def pushed_workloads(status: ReleaseStatus, phase: str) -> list[str]:
    """Workloads (Kind/name) the Release pushed up to and including ``phase`` (every phase for ``watch``)."""
    keys: list[str] = []
    for p in status.phases:
        keys.extend(k for k in workload_keys(p) if k not in keys)
        if p.name == phase:
            break
    return keys


class _GateRead:
    """One round of gate readings: a reader per gate kind, filling values / experiments / checks."""

    def __init__(self, ex: Executor, ref: ReleaseRef, spec: ReleaseSpec, phase: str, status: ReleaseStatus) -> None:
        self.ex, self.ref, self.spec, self.phase, self.status = ex, ref, spec, phase, status
        self.values: dict[str, Measurement] = {}
        self.experiments: dict[str, tuple[str | None, bool | None]] = {}
        self.checks: dict[str, GateCheck] = {}

    def _render(self, text: str) -> str:
        return render_query(text, phase=self.phase, revision=self.spec.source.revision, namespace=self.ref.namespace)

    async def query(self, gate: Gate) -> None:
        assert gate.query is not None
        url = self.spec.prometheus.url if self.spec.prometheus else self.ex.default_prometheus
        if url is None:
            self.values[gate.name] = Measurement(None, self.ex.clock(), error="no Prometheus URL configured")
            return
        try:
            rendered = self._render(gate.query)
        except ValueError as exc:
            self.values[gate.name] = Measurement(None, self.ex.clock(), error=str(exc), invalid_query=True)
            return
        self.values[gate.name] = await self.ex.metrics.query(url, rendered)

    async def experiment(self, gate: Gate) -> None:
        assert gate.experiment is not None
        if self.ex.experiments is None:
            self.experiments[gate.name] = (None, None)
            return
        self.experiments[gate.name] = await self.ex.experiments.decision(self.ref.namespace, gate.experiment.name)

    async def compare(self, gate: Gate) -> None:
        """Both groups of a compare gate over the same window, read at the same time."""
        assert gate.compare is not None
        url = self.spec.prometheus.url if self.spec.prometheus else self.ex.default_prometheus
        now = self.ex.clock()
        if url is None:
            self.checks[gate.name] = CompareReading(now, error="no Prometheus URL configured")
            return
        canary, baseline = compare_groups(self.status.phases, self.phase)
        if not baseline:
            self.checks[gate.name] = CompareReading(
                now, error=f"no baseline: no phase after {self.phase} has workloads"
            )
            return
        try:
            queries = [
                render_compare(
                    gate.compare.query,
                    keys,
                    phase=self.phase,
                    revision=self.spec.source.revision,
                    namespace=self.ref.namespace,
                )
                for keys in (canary, baseline)
            ]
        except ValueError as exc:
            self.checks[gate.name] = CompareReading(now, error=str(exc), invalid_query=True)
            return
        current = next((p for p in self.status.phases if p.name == self.phase), None)
        start, end = compare_window(gate.compare, current, now)
        step = step_seconds(gate.compare)
        got = await asyncio.gather(*(self.ex.metrics.query_range(url, q, start, end, step) for q in queries))
        span = (end - start).total_seconds()
        self.checks[gate.name] = CompareReading(end, canary=got[0], baseline=got[1], span=span)

    async def kubernetes(self, gate: Gate) -> None:
        workloads = pushed_workloads(self.status, self.phase)
        if self.ex.checks is None:
            self.checks[gate.name] = PodsReading(self.ex.clock(), error="no Kubernetes client for gates")
            return
        try:
            found = await self.ex.checks.pods(self.ref.namespace, workloads)
        except StoplineError as exc:
            self.checks[gate.name] = PodsReading(self.ex.clock(), error=str(exc))
            return
        pods = tuple(pod_health(k, p) for k, items in found.items() for p in items or [])
        missing = tuple(k for k, items in found.items() if items is None)
        self.checks[gate.name] = PodsReading(self.ex.clock(), pods, missing, workloads=tuple(workloads))

    async def job(self, gate: Gate) -> None:
        name = job_name(self.ref.name, gate.name, self.phase)
        if self.ex.checks is None:
            self.checks[gate.name] = JobState(name, self.ex.clock(), error="no Kubernetes client for gates")
            return
        try:
            manifest = job_manifest(
                gate,
                release=self.ref.name,
                namespace=self.ref.namespace,
                phase=self.phase,
                revision=self.spec.source.revision,
                owner=self.ref.owner(),
            )
        except ValueError as exc:
            self.checks[gate.name] = JobState(name, self.ex.clock(), error=str(exc), rejected=True)
            return
        try:
            job, created = await self.ex.checks.ensure_job(self.ref.namespace, manifest)
        except StoplineError as exc:
            self.checks[gate.name] = JobState(name, self.ex.clock(), error=str(exc), rejected=_permanent(exc))
            return
        if created:  # a new phase's smoke test started: the earlier phases' Jobs are done with
            await self.ex.cleanup_jobs(self.ref, keep_phase=self.phase)
        self.checks[gate.name] = job_state(name, job, self.ex.clock())

    async def http(self, gate: Gate) -> None:
        assert gate.http is not None
        h = gate.http
        if self.ex.http is None:
            self.checks[gate.name] = HttpResult(self.ex.clock(), error="no HTTP client for gates")
            return
        try:
            url = self._render(h.url)
            body = self._render(h.body).encode() if h.body is not None else None
            headers: dict[str, str] = {}
            for header in h.headers:
                if header.value is not None:
                    headers[header.name] = self._render(header.value)
                elif header.value_from is not None:
                    if self.ex.checks is None:
                        raise StoplineError("no Kubernetes client to read header Secrets")
                    ref = header.value_from.secret_key_ref
                    headers[header.name] = await self.ex.checks.secret_value(self.ref.namespace, ref.name, ref.key)
        except (ValueError, StoplineError) as exc:  # never the header values themselves: they may be secret
            self.checks[gate.name] = HttpResult(self.ex.clock(), error=f"request not sent: {exc}")
            return
        self.checks[gate.name] = await self.ex.http.request(h.method, url, headers, body, h.timeout.total_seconds())
