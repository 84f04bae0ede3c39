"""Controller settings, loaded once at startup from the environment (never at import time)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


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
        )


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
