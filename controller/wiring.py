"""Concrete adapters behind the executor's ports, and the runtime built once at startup."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from controller.errors import GitError, InvalidSpec, ManifestError
from controller.gates.providers.prometheus import PrometheusProvider
from controller.gitops import errors as git_errors
from controller.gitops.credentials import GitCredentials
from controller.gitops.repo import RepoCache
from controller.kube.client import api_client
from controller.kube.cluster import Cluster
from controller.kube.objects import Objects
from controller.models.common import SecretRef
from controller.models.release import GitSource, ReleaseSpec
from controller.models.track import TrackSpec
from controller.release.actions import RevertResult
from controller.release.executor import Executor
from controller.settings import Settings

_REVERT_STATES = {"pushed": "Pushed", "already": "AlreadyReverted", "conflict": "Conflict", "error": "Error"}


def utcnow() -> datetime:
    """The controller's clock (injectable everywhere else)."""
    return datetime.now(UTC)


class GitAdapter:
    """RepoCache off the event loop, with credentials from the resource's Secret and a manifest cache."""

    def __init__(self, cache: RepoCache, objects: Objects, max_manifest_sets: int = 256) -> None:
        self.cache = cache
        self.objects = objects
        self._manifests: OrderedDict[tuple[str, str, str], list[dict[str, Any]]] = OrderedDict()
        self._max = max_manifest_sets

    async def credentials(self, namespace: str, ref: SecretRef | None) -> GitCredentials | None:
        """Credentials from ``secretRef`` (None when unset)."""
        if ref is None:
            return None
        return GitCredentials.from_secret_data(await self.objects.secret_data(namespace, ref.name))

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except git_errors.ManifestError as exc:
            raise ManifestError(str(exc)) from exc
        except (git_errors.GitNotFoundError, git_errors.GitInputError) as exc:
            raise InvalidSpec(str(exc)) from exc
        except git_errors.GitError as exc:
            raise GitError(str(exc)) from exc

    async def manifests(self, namespace: str, spec: ReleaseSpec) -> list[dict[str, Any]]:
        """Every document under ``source.path`` at the revision (cached: a revision never changes)."""
        src = spec.source
        key = (src.repo, src.revision, src.path)
        if key in self._manifests:
            self._manifests.move_to_end(key)
            return self._manifests[key]
        creds = await self.credentials(namespace, src.secret_ref)
        docs: list[dict[str, Any]] = await self._call(self.cache.manifests, src.repo, src.revision, src.path, creds)
        self._manifests[key] = docs
        while len(self._manifests) > self._max:
            self._manifests.popitem(last=False)
        return docs

    async def revert(
        self, namespace: str, spec: ReleaseSpec, message: str, trailers: Mapping[str, str]
    ) -> RevertResult:
        """Push ``git revert`` of the revision to its branch (idempotent, never forced)."""
        src = spec.source
        creds = await self.credentials(namespace, src.secret_ref)
        out = await self._call(
            self.cache.revert, src.repo, src.branch, src.revision, message=message, trailers=trailers, creds=creds
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
    wakers: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)
    track_annotations: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    tracks: dict[tuple[str, str], TrackSpec] = field(default_factory=dict)
    http: Any = None


def build_runtime(settings: Settings, clock: Callable[[], datetime] = utcnow) -> Runtime:
    """Connect to the cluster and assemble the adapters."""
    client = api_client(pool_size=settings.max_threads)
    objects = Objects(client)
    cluster = Cluster(client)
    git = GitAdapter(RepoCache(settings.repo_cache), objects)
    prometheus = PrometheusProvider(clock=clock)
    executor = Executor(
        cluster=cluster,
        git=git,
        metrics=prometheus,
        experiments=ExperimentDecisions(objects),
        default_prometheus=settings.prometheus_url,
        clock=clock,
    )
    return Runtime(settings, objects, cluster, git, prometheus, executor, clock)
