"""The kopf wiring registers one daemon per kind, none of which puts a finalizer on users' objects."""

from __future__ import annotations

import kopf
from kopf._core.intents.handlers import DaemonHandler

import controller.handlers  # noqa: F401  (registers the handlers)


def test_every_kind_has_a_daemon_and_none_requires_a_finalizer() -> None:
    registry = kopf.get_default_registry()
    daemons = [h for h in registry._spawning.get_all_handlers() if isinstance(h, DaemonHandler)]
    assert sorted(str(h.id) for h in daemons) == ["follow", "push", "report"]
    assert [h.requires_finalizer for h in daemons] == [False, False, False]
    assert sorted(h.selector.any_name for h in daemons if h.selector) == ["experiments", "releases", "tracks"]
