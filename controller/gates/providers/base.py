"""The metrics provider interface: an instant read and a range read.

Other providers (Datadog, CloudWatch) plug in here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from controller.gates.compare import Samples
from controller.gates.evaluate import Measurement


class MetricsProvider(Protocol):
    """Answers a query with one number (or no data, or an error) — never raises for query problems."""

    async def query(self, url: str, query: str) -> Measurement:
        """Run ``query`` against the provider at ``url``."""
        ...

    async def query_range(self, url: str, query: str, start: datetime, end: datetime, step: float) -> Samples:
        """Every sample of ``query`` from ``start`` to ``end``, one per series per ``step`` seconds, pooled."""
        ...
