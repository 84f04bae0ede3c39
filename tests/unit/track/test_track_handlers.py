"""Track wiring: which events wake a Track's daemon, and the webhook routing table kept current."""

from __future__ import annotations

import asyncio
import copy
from types import SimpleNamespace
from typing import Any

import kopf
import pytest

from controller.handlers import track as handlers
from controller.models.track import TrackSpec

# kopf types a decorated handler as its full callback protocol; these tests pass only what the handlers read.
release_changed: Any = handlers.release_changed
track_event: Any = handlers.track_event

SPEC: dict[str, Any] = {
    "source": {"repo": "git://127.0.0.1:9418/app.git"},
    "template": {"phases": [{"name": "all", "remaining": True}]},
}


def runtime() -> SimpleNamespace:
    return SimpleNamespace(wakers={}, tracks={}, track_annotations={})


def per_object(rt: SimpleNamespace) -> kopf.Memo:
    """kopf gives each object its own shallow copy of the operator's memo."""
    memo = kopf.Memo()
    memo.runtime = rt
    return memo


def woken(rt: SimpleNamespace, ns: str = "shop", name: str = "web") -> bool:
    event: asyncio.Event | None = rt.wakers.get((ns, name))
    if event is None or not event.is_set():
        return False
    event.clear()
    return True


def release_event(memo: kopf.Memo, type_: str | None, phase: str | None) -> None:
    status = {"phase": phase} if phase else {}
    labels = {"stopline.dev/track": "web"}
    release_changed(type=type_, namespace="shop", labels=labels, status=status, memo=memo)


@pytest.mark.parametrize(
    ("events", "wakes"),
    [
        ([("ADDED", None), ("MODIFIED", "Progressing"), ("MODIFIED", "Holding")], [False, False, False]),
        ([("MODIFIED", "Holding"), ("MODIFIED", "Succeeded"), ("MODIFIED", "Succeeded")], [False, True, False]),
        ([("MODIFIED", "RollingBack"), ("MODIFIED", "RolledBack"), ("MODIFIED", "RolledBack")], [False, True, False]),
        ([("MODIFIED", "Failed")], [True]),
        ([("MODIFIED", "Holding"), ("DELETED", "Holding")], [False, True]),
        ([(None, "Succeeded")], [True]),
    ],
    ids=["progress", "succeeded-once", "rolled-back-once", "failed", "deleted", "listed-at-startup"],
)
def test_release_events_wake_the_track_once_when_final(
    events: list[tuple[str | None, str | None]], wakes: list[bool]
) -> None:
    rt = runtime()
    memo = per_object(rt)
    seen = []
    for type_, phase in events:
        release_event(memo, type_, phase)
        seen.append(woken(rt))
    assert seen == wakes


def test_two_releases_each_wake_once() -> None:
    rt = runtime()
    a, b = per_object(rt), per_object(rt)
    release_event(a, "MODIFIED", "Succeeded")
    assert woken(rt)
    release_event(b, "MODIFIED", "Succeeded")
    assert woken(rt)


def track(
    memo: kopf.Memo,
    annotations: dict[str, str],
    spec: dict[str, Any] | None = None,
    type_: str = "MODIFIED",
    generation: int = 1,
) -> None:
    track_event(
        type=type_,
        namespace="shop",
        name="web",
        spec=copy.deepcopy(spec if spec is not None else SPEC),
        meta={"name": "web", "generation": generation},
        annotations=annotations,
        memo=memo,
    )


def test_lock_and_unlock_annotations_wake_the_track() -> None:
    rt = runtime()
    memo = per_object(rt)
    track(memo, {})
    assert woken(rt), "the first sight of a Track records its annotations"
    track(memo, {})
    assert not woken(rt), "status writes of its own must not wake it"
    track(memo, {"stopline.dev/unlock": '{"by": "alice"}'})
    assert woken(rt)
    track(memo, {"stopline.dev/unlock": '{"by": "alice"}', "other": "x"})
    assert not woken(rt)
    track(memo, {"stopline.dev/unlock": '{"by": "alice"}', "stopline.dev/lock": "freeze"})
    assert woken(rt)


def test_spec_edits_wake_the_track() -> None:
    rt = runtime()
    memo = per_object(rt)
    track(memo, {}, generation=1)
    assert woken(rt)
    track(memo, {}, generation=1)
    assert not woken(rt), "a status write keeps the generation"
    track(memo, {}, {**SPEC, "suspend": True}, generation=2)
    assert woken(rt), "e.g. suspend: false must not wait for a long pollInterval"


def test_spec_changes_reach_the_webhook_routing_table() -> None:
    rt = runtime()
    memo = per_object(rt)
    track(memo, {})
    assert rt.tracks == {}, "only a running daemon registers its Track"

    rt.tracks[("shop", "web")] = TrackSpec.model_validate(SPEC)
    signed = {**SPEC, "webhook": {"secretRef": {"name": "hook"}}, "source": {**SPEC["source"], "branch": "prod"}}
    track(memo, {}, signed)
    spec = rt.tracks[("shop", "web")]
    assert spec.source.branch == "prod"
    assert spec.webhook is not None and spec.webhook.secret_ref is not None
    assert spec.webhook.secret_ref.name == "hook"

    track(memo, {}, {"source": {"repo": "git://x/y.git"}, "template": {"phases": []}})
    assert ("shop", "web") not in rt.tracks, "an invalid spec routes nothing"

    rt.tracks[("shop", "web")] = TrackSpec.model_validate(SPEC)
    track(memo, {}, SPEC, type_="DELETED")
    assert ("shop", "web") not in rt.tracks
