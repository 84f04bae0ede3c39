"""How an API server error reads in stopline's messages: one formatter for every adapter."""

from __future__ import annotations

import json

from kubernetes.client.exceptions import ApiException

from controller.errors import ClusterError


def api_detail(exc: ApiException) -> str:
    """The API server's own message (the Status body's ``message``), or ``""``."""
    try:
        return str(json.loads(exc.body or "{}").get("message", "") or "")
    except (ValueError, AttributeError):
        return ""


def api_message(exc: ApiException) -> str:
    """``<code> <reason> <message>``, e.g. ``403 Forbidden configmaps is forbidden: ...``."""
    return f"{exc.status} {exc.reason or ''} {api_detail(exc)}".strip()


def api_error(what: str, exc: ApiException) -> ClusterError:
    """A ClusterError naming what failed, with the API server's message."""
    return ClusterError(f"{what}: {api_message(exc)}")
