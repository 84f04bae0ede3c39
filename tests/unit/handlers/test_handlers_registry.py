"""The kopf wiring: every kind is fed by a watch-event handler (loops run under our supervisor, not kopf
daemons), and no handler but the Experiments' unpublish puts a finalizer on users' objects."""

from __future__ import annotations

import kopf
from kopf._core.intents.handlers import ChangingHandler, DaemonHandler, WatchingHandler

import controller.handlers  # noqa: F401  (registers the handlers)


def _handlers() -> list[object]:
    registry = kopf.get_default_registry()
    return [
        *registry._watching.get_all_handlers(),
        *registry._changing.get_all_handlers(),
        *registry._spawning.get_all_handlers(),
    ]


def test_every_kind_is_fed_by_a_watch_event_handler_and_none_runs_as_a_kopf_daemon() -> None:
    handlers = _handlers()
    assert not [h for h in handlers if isinstance(h, DaemonHandler)], "loops run under the supervisor"
    watching = sorted(
        (h.selector.any_name, str(h.id)) for h in handlers if isinstance(h, WatchingHandler) and h.selector
    )
    # workloads are not watched through kopf: controller.kube.workloadwatch pages and filters them itself
    assert watching == [
        ("experiments", "experiment_event"),
        ("releases", "release_changed"),
        ("releases", "release_event"),
        ("tracks", "track_event"),
    ]


def test_only_the_experiment_unpublish_requires_a_finalizer() -> None:
    needing = [
        (h.selector.any_name if h.selector else None, str(h.id))
        for h in _handlers()
        if isinstance(h, ChangingHandler | DaemonHandler) and h.requires_finalizer
    ]
    # Releases and Tracks never carry one: deleting them (or their namespace) never waits for the controller
    assert needing == [("experiments", "unpublish")]
