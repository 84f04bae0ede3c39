"""Track wiring: which events wake a Track's loop, and the webhook routing table kept current."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import kopf
import pytest

from controller.handlers import track as handlers
from controller.models.track import TrackSpec
from controller.reconcile.membership import Membership
from controller.reconcile.shards import Scope

# kopf types a decorated handler as its full callback protocol; these tests pass only what the handlers read.
release_changed: Any = handlers.release_changed
track_event: Any = handlers.track_event

SPEC: dict[str, Any] = {
    "source": {"repo": "git://127.0.0.1:9418/app.git"},
    "template": {"phases": [{"name": "all", "remaining": True}]},
}


@dataclass
class FakeSupervisor:
    """Records what the handlers tell the Tracks' supervisor."""

    wakes: list[tuple[str, str]] = field(default_factory=list)
    events: list[tuple[str | None, Mapping[str, Any]]] = field(default_factory=list)

    def wake(self, namespace: str, name: str) -> bool:
        self.wakes.append((namespace, name))
        return True

    def on_event(self, type_: str | None, body: Mapping[str, Any]) -> None:
        self.events.append((type_, body))


def runtime(patterns: tuple[str, ...] = ()) -> SimpleNamespace:
    return SimpleNamespace(
        supervisors={"tracks": FakeSupervisor()},
        tracks={},
        scope=Scope(patterns),
        selected=None,
        membership=Membership(None, "me", 1, lambda: datetime.now(UTC)),
    )


def per_object(rt: SimpleNamespace) -> kopf.Memo:
    """kopf gives each object its own shallow copy of the operator's memo."""
    memo = kopf.Memo()
    memo.runtime = rt
    return memo


def woken(rt: SimpleNamespace, ns: str = "shop", name: str = "web") -> bool:
    sup: FakeSupervisor = rt.supervisors["tracks"]
    hit = (ns, name) in sup.wakes
    sup.wakes.clear()
    return hit


async def release_event(memo: kopf.Memo, type_: str | None, phase: str | None, revert: str | None = None) -> None:
    status: dict[str, Any] = {"phase": phase} if phase else {}
    if revert:
        status["revert"] = {"state": revert}
    labels = {"stopline.dev/track": "web"}
    await release_changed(type=type_, namespace="shop", labels=labels, status=status, memo=memo)


Ev = tuple[str | None, str | None, str | None]


@pytest.mark.parametrize(
    ("events", "wakes"),
    [
        ([("ADDED", None, None), ("MODIFIED", "Progressing", None), ("MODIFIED", "Holding", None)], [0, 0, 0]),
        ([("MODIFIED", "Holding", None), ("MODIFIED", "Succeeded", None), ("MODIFIED", "Succeeded", None)], [0, 1, 0]),
        (
            [
                ("MODIFIED", "RollingBack", "Pending"),
                ("MODIFIED", "RolledBack", "Pushed"),
                ("MODIFIED", "RolledBack", "Pushed"),
            ],
            [0, 1, 0],
        ),
        (
            [
                ("MODIFIED", "RolledBack", "Pending"),
                ("MODIFIED", "RolledBack", "Pending"),
                ("MODIFIED", "RolledBack", "Pushed"),
                ("MODIFIED", "RolledBack", "Pushed"),
            ],
            [1, 0, 1, 0],
        ),
        ([("MODIFIED", "RolledBack", "Pending"), ("MODIFIED", "RolledBack", "Waived")], [1, 1]),
        ([("MODIFIED", "Failed", None)], [1]),
        ([("MODIFIED", "Holding", None), ("DELETED", "Holding", None)], [0, 1]),
        ([(None, "Succeeded", None)], [1]),
    ],
    ids=[
        "progress",
        "succeeded-once",
        "rolled-back-once",
        "revert-landing-after-the-rollback-wakes-again",
        "revert-waived-wakes-again",
        "failed",
        "deleted",
        "listed-at-startup",
    ],
)
async def test_release_events_wake_the_track_once_per_final_state(events: list[Ev], wakes: list[int]) -> None:
    rt = runtime()
    memo = per_object(rt)
    seen = []
    for type_, phase, revert in events:
        await release_event(memo, type_, phase, revert)
        seen.append(int(woken(rt)))
    assert seen == wakes


async def test_two_releases_each_wake_once() -> None:
    rt = runtime()
    a, b = per_object(rt), per_object(rt)
    await release_event(a, "MODIFIED", "Succeeded")
    assert woken(rt)
    await release_event(b, "MODIFIED", "Succeeded")
    assert woken(rt)


def body(annotations: dict[str, str], spec: dict[str, Any] | None = None, generation: int = 1) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "uid": "t1",
            "generation": generation,
            "annotations": annotations,
        },
        "spec": copy.deepcopy(spec if spec is not None else SPEC),
    }


async def track(memo: kopf.Memo, b: dict[str, Any], type_: str = "MODIFIED") -> None:
    await track_event(type=type_, body=b, namespace="shop", name="web", spec=b["spec"], meta=b["metadata"], memo=memo)


@pytest.mark.parametrize(
    ("old", "new", "wake"),
    [
        (body({}), body({}), False),
        (body({}), body({"stopline.dev/unlock": '{"by": "alice"}'}), True),
        (body({"stopline.dev/unlock": "x"}), body({"stopline.dev/unlock": "x", "stopline.dev/lock": "freeze"}), True),
        (body({"a": "1"}), body({"a": "2"}), True),
        (body({}, generation=1), body({}, {**SPEC, "suspend": True}, generation=2), True),
        (body({}), {**body({}), "status": {"message": "our own write"}}, False),
    ],
    ids=["same", "unlock", "lock", "any-annotation", "spec-edit", "own-status-write"],
)
def test_which_changes_wake_a_track(old: dict[str, Any], new: dict[str, Any], wake: bool) -> None:
    assert handlers._wake_on(old, new) is wake


async def test_every_track_event_reaches_the_supervisor() -> None:
    rt = runtime()
    memo = per_object(rt)
    b = body({})
    await track(memo, b, type_="ADDED")
    await track(memo, b, type_="DELETED")
    assert [t for t, _ in rt.supervisors["tracks"].events] == ["ADDED", "DELETED"]
    assert rt.supervisors["tracks"].events[0][1] is b


async def test_spec_changes_reach_the_webhook_routing_table() -> None:
    rt = runtime()
    memo = per_object(rt)
    await track(memo, body({}, SPEC))
    assert ("shop", "web") in rt.tracks, "every replica routes the Tracks in scope (not only the one serving it)"
    other = runtime(patterns=("team-*",))
    await track(per_object(other), body({}, SPEC))
    assert other.tracks == {}, "out of scope: not routed"

    signed = {**SPEC, "webhook": {"secretRef": {"name": "hook"}}, "source": {**SPEC["source"], "branch": "prod"}}
    await track(memo, body({}, signed))
    spec = rt.tracks[("shop", "web")]
    assert spec.source.branch == "prod"
    assert spec.webhook is not None and spec.webhook.secret_ref is not None
    assert spec.webhook.secret_ref.name == "hook"

    await track(memo, body({}, {"source": {"repo": "git://x/y.git"}, "template": {"phases": []}}))
    assert ("shop", "web") not in rt.tracks, "an invalid spec routes nothing"

    rt.tracks[("shop", "web")] = TrackSpec.model_validate(SPEC)
    await track(memo, body({}), type_="DELETED")
    assert ("shop", "web") not in rt.tracks
