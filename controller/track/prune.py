"""Which of a Track's own Releases to delete: final ones beyond ``historyLimit``. Pure.

Never the Release in flight, never the one the commit lock points at (people are looking at it),
never one whose git revert is still being retried (deleting it would stop the retries), and never a
Release the Track did not create (callers list by the Track's label and owner).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from controller.models.common import owned_by
from controller.models.release import FINAL_PHASES

FINAL = FINAL_PHASES
PENDING_REVERT = frozenset({"Pending", "Error"})


def _revert_pending(obj: Mapping[str, Any]) -> bool:
    revert = (obj.get("status") or {}).get("revert") or {}
    return revert.get("state") in PENDING_REVERT


def releases_to_prune(
    releases: Iterable[Mapping[str, Any]], *, keep: int, track_uid: str, protected: Iterable[str | None] = ()
) -> list[tuple[str, str]]:
    """``(name, uid)`` of the final Releases to delete, oldest first, so that ``keep`` final ones remain."""
    keep_names = {p for p in protected if p}
    final = [
        r
        for r in releases
        if owned_by(r, track_uid) and (r.get("status") or {}).get("phase") in FINAL and not _revert_pending(r)
    ]
    final.sort(key=lambda r: (r["metadata"].get("creationTimestamp") or "", r["metadata"]["name"]), reverse=True)
    doomed = [r for r in final[keep:] if r["metadata"]["name"] not in keep_names]
    return [(r["metadata"]["name"], r["metadata"]["uid"]) for r in reversed(doomed)]
