"""kopf wiring only: decorators that delegate to domain code. Importing this package registers handlers.

Loops run under :class:`controller.reconcile.supervisor.Supervisor`, fed by ``kopf.on.event`` handlers:
no finalizer is ever put on a Release or Track, so deleting them (or their namespace) never waits for the
controller, and a deletion stops the object's loop at once (docs/architecture.md, "Deletion contract").
"""

from __future__ import annotations

from controller.handlers import experiment, release, startup, track

__all__ = ["experiment", "release", "startup", "track"]
