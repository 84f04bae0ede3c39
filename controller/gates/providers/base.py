"""The metrics provider interface: one async method. Other providers (Datadog, CloudWatch) plug in here."""

from __future__ import annotations

from typing import Protocol

from controller.gates.evaluate import Measurement


class MetricsProvider(Protocol):
    """Answers a query with one number (or no data, or an error) — never raises for query problems."""

    async def query(self, url: str, query: str) -> Measurement:
        """Run ``query`` against the provider at ``url``."""
        ...
