"""Concrete adapters behind the executor's ports, and the runtime built once at startup."""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from controller.errors import GitConflict
from controller.gates.providers.http import HttpProbe
from controller.gates.providers.prometheus import PrometheusProvider
from controller.gitops.credentials import GitCredentials
from controller.gitops.manifests import normalize_path
from controller.gitops.render import RenderOptions, Tools, render_options
from controller.gitops.repo import RepoCache
from controller.gitops.results import CommitInfo
from controller.kube.client import api_client
from controller.kube.cluster import Cluster
from controller.kube.gatechecks import GateChecks
from controller.kube.leases import LEASE_THREADS, Leases
from controller.kube.objects import Objects
from controller.kube.watched import WorkloadCache
from controller.kube.workloadwatch import WorkloadWatch
from controller.metrics import default_metrics
from controller.models.common import SecretRef
from controller.models.release import GitSource, ReleaseSource, ReleaseSpec
from controller.models.track import TrackSpec
from controller.notify.delivery import Deliveries
from controller.notify.send import Sender
from controller.reconcile.membership import Membership
from controller.reconcile.shards import Scope
from controller.reconcile.supervisor import Supervisor
from controller.release.actions import RevertResult
from controller.release.executor import Executor
from controller.settings import Settings

_REVERT_STATES = {"pushed": "Pushed", "already": "AlreadyReverted", "error": "Error"}


def utcnow() -> datetime:
    """The controller's clock (injectable everywhere else)."""
    return datetime.now(UTC)


ManifestKey = tuple[str, str, str, RenderOptions | None]
"""(repo, revision, path, render options): everything a manifest set depends on."""


def manifest_key(source: ReleaseSource, options: RenderOptions | None) -> ManifestKey:
    """Cache key of a source's manifest set; the render options include Helm's namespace and values."""
    return (source.repo, source.revision, normalize_path(source.path), options)


class GitAdapter:
    """RepoCache off the event loop, with credentials from the resource's Secret and a manifest cache."""

    def __init__(self, cache: RepoCache, objects: Objects, max_manifest_sets: int = 256) -> None:
        self.cache = cache
        self.objects = objects
        self._manifests: OrderedDict[ManifestKey, list[dict[str, Any]]] = OrderedDict()
        self._max = max_manifest_sets
        self._commits: dict[tuple[str, str], CommitInfo] = {}

    async def credentials(self, namespace: str, ref: SecretRef | None) -> GitCredentials | None:
        """Credentials from ``secretRef`` (None when unset)."""
        if ref is None:
            return None
        return GitCredentials.from_secret_data(await self.objects.secret_data(namespace, ref.name))

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a RepoCache call off the loop. Its errors pass through unchanged: they are already domain
        errors with a ``reason`` (a missing revision or malformed input is also an ``InvalidSpec``, a bad
        manifest a ``ManifestError``; see :mod:`controller.gitops.errors`)."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def manifests(self, namespace: str, spec: ReleaseSpec) -> list[dict[str, Any]]:
        """Every document under ``source.path`` at the revision, rendered with kustomize or helm when
        the source says so (cached by repo, revision, path and render options: a revision never changes)."""
        src = spec.source
        options = render_options(src, namespace)
        key = manifest_key(src, options)
        if key in self._manifests:
            self._manifests.move_to_end(key)
            return self._manifests[key]
        creds = await self.credentials(namespace, src.secret_ref)
        docs: list[dict[str, Any]] = await self._call(
            self.cache.manifests, src.repo, src.revision, src.path, creds, options
        )
        self._manifests[key] = docs
        while len(self._manifests) > self._max:
            self._manifests.popitem(last=False)
        return docs

    async def commit(self, namespace: str, spec: ReleaseSpec) -> CommitInfo:
        """Who wrote (and committed) the revision, and its subject; cached (a revision never changes)."""
        key = (spec.source.repo, spec.source.revision)
        if key not in self._commits:
            creds = await self.credentials(namespace, spec.source.secret_ref)
            self._commits[key] = await self._call(self.cache.commit, spec.source.repo, spec.source.revision, creds)
            while len(self._commits) > self._max:
                self._commits.pop(next(iter(self._commits)))
        return self._commits[key]

    async def revert(
        self,
        namespace: str,
        spec: ReleaseSpec,
        message: str,
        trailers: Mapping[str, str],
        proceed: Callable[[], bool] = lambda: True,
    ) -> RevertResult:
        """Push ``git revert`` of the revision to its branch (idempotent, never forced); ``proceed`` is asked
        right before the push (False: push nothing)."""
        src = spec.source
        creds = await self.credentials(namespace, src.secret_ref)
        try:
            out = await self._call(
                self.cache.revert,
                src.repo,
                src.branch,
                src.revision,
                message=message,
                trailers=trailers,
                creds=creds,
                proceed=proceed,
            )
        except GitConflict as exc:
            return RevertResult(
                state="Conflict", reason=str(exc), attempts=exc.attempts, message=message.splitlines()[0]
            )
        return RevertResult(
            state=_REVERT_STATES.get(out.status, "Error"),
            commit=out.commit,
            reason=out.reason,
            attempts=out.attempts,
            message=message.splitlines()[0],
        )

    async def tip(self, namespace: str, source: GitSource) -> str:
        """Current tip of the source branch."""
        creds = await self.credentials(namespace, source.secret_ref)
        sha: str = await self._call(self.cache.tip, source.repo, source.branch, creds)
        return sha

    async def commits(self, namespace: str, source: GitSource, since: str | None, until: str) -> list[Any]:
        """First-parent commits ``since..until`` on the branch, oldest first."""
        creds = await self.credentials(namespace, source.secret_ref)
        commits: list[Any] = await self._call(
            self.cache.commits_between, source.repo, source.branch, since, until, creds
        )
        return commits


class ExperimentDecisions:
    """Reads an Experiment's decision and SRM flag for experiment gates."""

    def __init__(self, objects: Objects) -> None:
        self.objects = objects

    async def decision(self, namespace: str, name: str) -> tuple[str | None, bool | None]:
        """``(status.decision, status.srm.ok)``; (None, None) when the Experiment has no report."""
        obj = await self.objects.get("experiments", namespace, name)
        status = (obj or {}).get("status") or {}
        if not status.get("report"):
            return None, None
        srm = status.get("srm") or {}
        return status.get("decision"), srm.get("ok")


@dataclass
class Runtime:
    """Everything the handlers share, built once at operator startup."""

    settings: Settings
    objects: Objects
    cluster: Cluster
    git: GitAdapter
    prometheus: PrometheusProvider
    executor: Executor
    clock: Callable[[], datetime]
    tracks: dict[tuple[str, str], TrackSpec] = field(default_factory=dict)
    supervisors: dict[str, Supervisor] = field(default_factory=dict)  # by plural: releases, tracks, experiments
    http: Any = None
    scope: Scope = field(default_factory=Scope)
    membership: Membership = field(default_factory=lambda: Membership(None, "", 1, utcnow))
    selected: set[str] | None = None  # namespaces matching settings.namespace_selector, as last listed
    background: list[Any] = field(default_factory=list)
    workload_watch: WorkloadWatch | None = None  # feeds cluster.watched (started with the operator)
    watch_shards: frozenset[int] = frozenset()  # the shards held at the last Lease round: what the watch keeps
    leases: Leases | None = None  # the shard Leases (None: leader election off)
    renewer_stop: threading.Event = field(default_factory=threading.Event)


def build_runtime(settings: Settings, clock: Callable[[], datetime] = utcnow) -> Runtime:
    """Connect to the cluster and assemble the adapters."""
    # One connection per thread that may call at once — the I/O pool, the Lease calls' own threads and the
    # shard renewer thread: a smaller pool makes urllib3 discard connections under load ("Connection pool
    # is full") and open new TLS connections to the API server, which is what held hold ends up at 500
    # Releases.
    client = api_client(pool_size=settings.max_threads + LEASE_THREADS + 1, on_request=default_metrics().kube_request)
    objects = Objects(client)
    cluster = Cluster(client)
    tools = Tools(kustomize=settings.kustomize, helm=settings.helm, timeout=settings.render_timeout_seconds)
    git = GitAdapter(RepoCache(settings.repo_cache, timeout=settings.git_timeout_seconds, tools=tools), objects)
    prometheus = PrometheusProvider(clock=clock)
    deliveries = Deliveries(Sender(objects, settings.notify_namespace, clock))
    executor = Executor(
        cluster=cluster,
        git=git,
        metrics=prometheus,
        experiments=ExperimentDecisions(objects),
        default_prometheus=settings.prometheus_url,
        clock=clock,
        deliveries=deliveries,
        notify_defaults=settings.notify,
        checks=GateChecks(cluster, objects),
        http=HttpProbe(clock=clock),
    )
    rt = Runtime(settings, objects, cluster, git, prometheus, executor, clock)
    rt.scope = Scope(settings.namespaces)
    cluster.watched = WorkloadCache()  # fed by controller.kube.workloadwatch (started in handlers.startup)
    leases = (
        Leases(client, settings.lease_namespace, settings.lease_name, settings.shards)
        if settings.leader_election
        else None
    )
    rt.membership = Membership(leases, settings.identity, settings.shards, clock)
    rt.leases = leases
    return rt
