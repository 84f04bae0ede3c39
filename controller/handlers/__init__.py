"""kopf wiring only: decorators that delegate to domain code. Importing this package registers handlers."""

from __future__ import annotations

import dataclasses
import logging

import kopf
from kopf._core.intents.handlers import DaemonHandler

from controller.handlers import experiment, release, startup, track

__all__ = ["experiment", "release", "startup", "track"]


def _daemons_without_finalizers(registry: kopf.OperatorRegistry) -> int:
    """kopf puts a finalizer on every object a daemon runs for; ours need none.

    A daemon's state lives in the object's status, so nothing must happen before the object goes away:
    kopf cancels the daemon when it sees the deletion. Without this, every Track (whose daemon runs for
    its whole life) and every Release in flight would block namespace deletion while the controller is
    down or uninstalled. Returns how many daemons were changed.
    """
    spawning = getattr(registry, "_spawning", None)
    handlers = getattr(spawning, "_handlers", None)
    if not isinstance(handlers, list):
        logging.getLogger("stopline").warning("kopf registry layout changed: daemons keep their finalizers")
        return 0
    changed = 0
    for i, handler in enumerate(handlers):
        if isinstance(handler, DaemonHandler) and handler.requires_finalizer:
            handlers[i] = dataclasses.replace(handler, requires_finalizer=False)
            changed += 1
    return changed


_daemons_without_finalizers(kopf.get_default_registry())
