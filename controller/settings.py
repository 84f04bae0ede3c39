"""Controller settings, loaded once at startup from the environment (never at import time)."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from controller.models.notify import Sink


def _default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / "stopline" / "repos"


@dataclass(frozen=True)
class Settings:
    """Everything the controller reads from its environment."""

    prometheus_url: str | None = None
    repo_cache: Path = field(default_factory=_default_cache)
    http_host: str = "127.0.0.1"
    http_port: int = 8480
    webhook_secret: str | None = None
    experiments_configmap: str = "stopline-experiments"
    max_threads: int = 32
    release_tick_seconds: float = 0.25
    git_timeout_seconds: float = 15.0
    """Seconds one network git command (fetch, push) may take before it is killed and reported as a
    ``Timeout`` (``STOPLINE_GIT_TIMEOUT``)."""
    kustomize: str = "kustomize"
    """kustomize binary for ``source.kustomize``: a path, or a name looked up on PATH."""
    helm: str = "helm"
    """helm binary for ``source.helm``: a path, or a name looked up on PATH."""
    render_timeout_seconds: float = 60.0
    """How long one kustomize/helm render may run before it is killed and the push fails."""
    namespaces: tuple[str, ...] = ()
    """Namespaces served: names or glob patterns (``STOPLINE_NAMESPACES``, comma-separated); empty: all."""
    namespace_selector: str | None = None
    """Only namespaces whose labels match this selector (``STOPLINE_NAMESPACE_SELECTOR``, kubectl syntax)."""
    leader_election: bool = True
    """Act only on shards held through coordination.k8s.io Leases (``STOPLINE_LEADER_ELECTION``)."""
    shards: int = 1
    """How many shards the namespaces are split into (``STOPLINE_SHARDS``); one active replica per shard."""
    lease_namespace: str = "default"
    """Where the shard Leases live (``STOPLINE_LEASE_NAMESPACE``, else the pod's ``POD_NAMESPACE``)."""
    lease_name: str = "stopline"
    """Prefix of the shard Leases ``<name>-shard-<i>`` (``STOPLINE_LEASE_NAME``)."""
    notify: tuple[Sink, ...] = ()
    """Controller-wide default notification sinks (``STOPLINE_NOTIFY``: a JSON list of sinks, or
    ``STOPLINE_NOTIFY_FILE``: a file holding one — the chart's ``notify`` values). Their Secrets are read in
    ``notify_namespace``; a Release's own ``notify`` adds to them (same name: replaces; ``disabled``: off)."""
    notify_namespace: str = "default"
    """Where the default sinks' Secrets live (``STOPLINE_NOTIFY_NAMESPACE``, else ``POD_NAMESPACE``)."""
    identity: str = ""
    """This replica's holder identity (``STOPLINE_IDENTITY``, else ``POD_NAME``, else the host name);
    a restarted replica with the same identity takes its own shards back at once."""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Build settings from ``STOPLINE_*`` environment variables."""
        env = dict(os.environ if environ is None else environ)
        defaults = cls()
        return cls(
            prometheus_url=env.get("STOPLINE_PROMETHEUS_URL") or None,
            repo_cache=Path(env["STOPLINE_REPO_CACHE"]) if env.get("STOPLINE_REPO_CACHE") else defaults.repo_cache,
            http_host=env.get("STOPLINE_HTTP_HOST", defaults.http_host),
            http_port=int(env.get("STOPLINE_HTTP_PORT", defaults.http_port)),
            webhook_secret=env.get("STOPLINE_WEBHOOK_SECRET") or None,
            experiments_configmap=env.get("STOPLINE_EXPERIMENTS_CONFIGMAP", defaults.experiments_configmap),
            max_threads=int(env.get("STOPLINE_MAX_THREADS", defaults.max_threads)),
            release_tick_seconds=float(env.get("STOPLINE_RELEASE_TICK", defaults.release_tick_seconds)),
            git_timeout_seconds=_positive(
                "STOPLINE_GIT_TIMEOUT", env.get("STOPLINE_GIT_TIMEOUT"), defaults.git_timeout_seconds
            ),
            kustomize=env.get("STOPLINE_KUSTOMIZE") or defaults.kustomize,
            helm=env.get("STOPLINE_HELM") or defaults.helm,
            render_timeout_seconds=float(env.get("STOPLINE_RENDER_TIMEOUT", defaults.render_timeout_seconds)),
            namespaces=tuple(p.strip() for p in env.get("STOPLINE_NAMESPACES", "").split(",") if p.strip()),
            namespace_selector=env.get("STOPLINE_NAMESPACE_SELECTOR") or None,
            leader_election=env.get("STOPLINE_LEADER_ELECTION", "true").lower() not in ("0", "false", "no", "off"),
            shards=_shards(env.get("STOPLINE_SHARDS")),
            lease_namespace=env.get("STOPLINE_LEASE_NAMESPACE") or env.get("POD_NAMESPACE") or defaults.lease_namespace,
            lease_name=env.get("STOPLINE_LEASE_NAME") or defaults.lease_name,
            notify=_notify(env),
            notify_namespace=env.get("STOPLINE_NOTIFY_NAMESPACE") or env.get("POD_NAMESPACE") or "default",
            identity=env.get("STOPLINE_IDENTITY") or env.get("POD_NAME") or socket.gethostname(),
        )


_SINKS = TypeAdapter(list[Sink])


def _notify(env: dict[str, str]) -> tuple[Sink, ...]:
    """The default sinks from ``STOPLINE_NOTIFY`` (JSON) or ``STOPLINE_NOTIFY_FILE``; a bad value stops startup."""
    raw, where = env.get("STOPLINE_NOTIFY", ""), "STOPLINE_NOTIFY"
    if not raw.strip() and env.get("STOPLINE_NOTIFY_FILE"):
        where = env["STOPLINE_NOTIFY_FILE"]
        try:
            raw = Path(where).read_text()
        except OSError as exc:
            raise ValueError(f"cannot read the default notification sinks from {where}: {exc}") from None
    if not raw.strip():
        return ()
    try:
        sinks = _SINKS.validate_python(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        raise ValueError(f"{where}: not a valid list of notification sinks: {exc}") from None
    names = [s.name for s in sinks]
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: notification sink names must be unique")
    return tuple(sinks)


def _shards(raw: str | None) -> int:
    if not raw:
        return 1
    if not raw.isdigit() or not 1 <= int(raw) <= 64:
        raise ValueError(f"STOPLINE_SHARDS must be a whole number from 1 to 64, not {raw!r}")
    return int(raw)


def _positive(name: str, raw: str | None, default: float) -> float:
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {raw!r}")
    return value
