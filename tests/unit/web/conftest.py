"""Shared fixtures for the status-page tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _close_stray_event_loop() -> Iterator[None]:
    """Close the loop looptime's pytest hook creates through the policy beside pytest-asyncio's own loop.

    Left open, it is garbage-collected during some later test and its ResourceWarning (an error here)
    fails that unrelated test.
    """
    yield
    policy = asyncio.get_event_loop_policy()
    with contextlib.suppress(RuntimeError):
        loop = policy.get_event_loop()
        if not loop.is_running() and not loop.is_closed():
            loop.close()
    policy.set_event_loop(None)
