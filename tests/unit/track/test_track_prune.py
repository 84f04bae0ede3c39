from __future__ import annotations

from typing import Any

import pytest

from controller.track.prune import releases_to_prune

TRACK_UID = "track-uid"


def rel(name: str, created: str, phase: str | None, owner: str = TRACK_UID) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "creationTimestamp": created,
            "ownerReferences": [{"uid": owner, "controller": True, "kind": "Track", "name": "t"}],
        },
        "status": {"phase": phase} if phase else {},
    }


RELEASES = [
    rel("t-1", "2026-01-01T00:00:01Z", "Succeeded"),
    rel("t-2", "2026-01-01T00:00:02Z", "RolledBack"),
    rel("t-3", "2026-01-01T00:00:03Z", "Succeeded"),
    rel("t-4", "2026-01-01T00:00:04Z", "Progressing"),
    rel("other", "2026-01-01T00:00:00Z", "Succeeded", owner="someone-else"),
]


@pytest.mark.parametrize(
    ("keep", "protected", "expected"),
    [
        (10, (), []),
        (2, (), [("t-1", "uid-t-1")]),
        (1, (), [("t-1", "uid-t-1"), ("t-2", "uid-t-2")]),
        (1, ("t-2",), [("t-1", "uid-t-1")]),
        (0, (), [("t-1", "uid-t-1"), ("t-2", "uid-t-2"), ("t-3", "uid-t-3")]),
    ],
    ids=["under-limit", "oldest-beyond-limit", "two-beyond-limit", "locked-release-kept", "keep-none"],
)
def test_releases_to_prune(keep: int, protected: tuple[str, ...], expected: list[tuple[str, str]]) -> None:
    got = releases_to_prune(RELEASES, keep=keep, track_uid=TRACK_UID, protected=protected)
    assert got == expected
    assert all(name != "t-4" for name, _ in got), "the Release in flight is never pruned"
    assert all(name != "other" for name, _ in got), "a Release the Track does not own is never pruned"
