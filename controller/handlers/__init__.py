"""kopf wiring only: decorators that delegate to domain code. Importing this package registers handlers."""

from controller.handlers import experiment, release, startup, track

__all__ = ["experiment", "release", "startup", "track"]
