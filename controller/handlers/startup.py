"""Operator startup: settings loaded once, adapters built once, kopf persistence kept out of status."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any

import kopf

from controller.settings import Settings
from controller.wiring import Runtime, build_runtime

log = logging.getLogger("stopline")


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    """Build the runtime and keep kopf's bookkeeping in annotations (our status schema is strict)."""
    cfg = Settings.from_env()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="stopline.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="stopline.dev", key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=cfg.max_threads, thread_name_prefix="stopline-io")
    )
    memo.runtime = build_runtime(cfg)
    log.info("stopline started: prometheus=%s repo-cache=%s", cfg.prometheus_url, cfg.repo_cache)


def runtime(memo: Any) -> Runtime:
    """The runtime built at startup."""
    rt: Runtime = memo.runtime
    return rt
