"""Kind → resource (plural, scope) from the API server's discovery documents, cached. Parsing is pure."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# An unknown kind (a CRD installed after the last discovery) triggers a new discovery at most this often.
REFRESH_AFTER_MISS = 2.0


@dataclass(frozen=True)
class Resource:
    """One served resource type."""

    group_version: str  # "v1", "apps/v1"
    kind: str
    plural: str
    namespaced: bool
    verbs: frozenset[str] = frozenset()

    def path(self, namespace: str | None, name: str | None = None) -> str:
        """REST path of the collection, or of one object."""
        base = "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"
        ns = f"/namespaces/{namespace}" if self.namespaced and namespace else ""
        return f"{base}{ns}/{self.plural}" + (f"/{name}" if name else "")


def parse_resource_list(doc: Mapping[str, Any]) -> list[Resource]:
    """Resources of an ``APIResourceList`` (subresources such as ``deployments/status`` left out)."""
    gv = str(doc.get("groupVersion") or "v1")
    return [
        Resource(gv, r["kind"], r["name"], bool(r.get("namespaced")), frozenset(r.get("verbs") or ()))
        for r in doc.get("resources") or []
        if "/" not in r.get("name", "/")
    ]


def group_versions(groups: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """(groupVersion, preferred) of every version in an ``APIGroupList``."""
    out: list[tuple[str, bool]] = []
    for g in groups.get("groups") or []:
        preferred = (g.get("preferredVersion") or {}).get("groupVersion")
        for v in g.get("versions") or []:
            out.append((v["groupVersion"], v["groupVersion"] == preferred))
    return out


class Mapper:
    """A cached REST mapper; ``fetch(path)`` returns a discovery document (blocking, called from threads)."""

    def __init__(self, fetch: Callable[[str], Mapping[str, Any]], clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._by_gvk: dict[tuple[str, str], Resource] = {}
        self._preferred: dict[str, Resource] = {}  # kind → resource of its preferred group version
        self._all_preferred: list[Resource] = []
        self._loaded_at: float | None = None

    def _load(self) -> None:
        by_gvk: dict[tuple[str, str], Resource] = {}
        preferred: dict[str, Resource] = {}
        listed: list[Resource] = []
        sources = [("v1", True), *group_versions(self._fetch("/apis"))]
        for gv, is_preferred in sources:
            try:
                doc = self._fetch("/api/v1" if gv == "v1" else f"/apis/{gv}")
            except LookupError:
                continue  # an aggregated API that is down: its kinds stay unknown
            for r in parse_resource_list(doc):
                by_gvk[(gv, r.kind)] = r
                if is_preferred:
                    listed.append(r)
                    preferred.setdefault(r.kind, r)
        self._by_gvk, self._preferred, self._all_preferred = by_gvk, preferred, listed
        self._loaded_at = self._clock()

    def _ensure(self, miss: bool) -> None:
        with self._lock:
            stale = self._loaded_at is None or (miss and self._clock() - self._loaded_at >= REFRESH_AFTER_MISS)
            if stale:
                self._load()

    def lookup(self, kind: str, api_version: str | None = None) -> Resource | None:
        """The resource for a kind (in ``api_version``, else its preferred version); None when not served."""
        for attempt in (False, True):
            self._ensure(miss=attempt)
            found = self._by_gvk.get((api_version, kind)) if api_version else self._preferred.get(kind)
            if found is not None:
                return found
        return None

    def listable(self) -> list[Resource]:
        """Namespaced resources (preferred versions) that can be listed and deleted."""
        self._ensure(miss=False)
        return [r for r in self._all_preferred if r.namespaced and {"list", "delete"} <= r.verbs]
