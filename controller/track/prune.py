"""Which of a Track's own Releases to delete: final ones beyond ``historyLimit``. Pure.

Never the Release in flight, never the one the commit lock points at (people are looking at it),
and never a Release the Track did not create (callers list by the Track's label and owner).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

FINAL = frozenset({"Succeeded", "RolledBack", "Failed"})


def owned_by(obj: Mapping[str, Any], track_uid: str) -> bool:
    """Whether the Track with this UID is the controller owner of ``obj``."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == track_uid and r.get("controller") for r in refs)


def releases_to_prune(
    releases: Iterable[Mapping[str, Any]], *, keep: int, track_uid: str, protected: Iterable[str | None] = ()
) -> list[tuple[str, str]]:
    """``(name, uid)`` of the final Releases to delete, oldest first, so that ``keep`` final ones remain."""
    keep_names = {p for p in protected if p}
    final = [r for r in releases if owned_by(r, track_uid) and ((r.get("status") or {}).get("phase") in FINAL)]
    final.sort(key=lambda r: (r["metadata"].get("creationTimestamp") or "", r["metadata"]["name"]), reverse=True)
    doomed = [r for r in final[keep:] if r["metadata"]["name"] not in keep_names]
    return [(r["metadata"]["name"], r["metadata"]["uid"]) for r in reversed(doomed)]
