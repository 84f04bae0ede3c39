"""What the CLI and the status page show, parsed from raw API objects. Pure: no kopf, kubernetes or HTTP.

Each view keeps the parsed status model (tolerant: a status written by a newer controller still parses)
and the spec when it validates; a spec that does not validate is shown as missing, never as a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from controller.models.experiment import ExperimentSpec, ExperimentStatus
from controller.models.release import ReleaseSpec, ReleaseStatus
from controller.models.track import TrackSpec, TrackStatus
from controller.track.plan import LABEL_TRACK

FINAL_PHASES = frozenset({"Succeeded", "RolledBack", "Failed"})
S = TypeVar("S", ReleaseStatus, TrackStatus, ExperimentStatus)


def parse_time(raw: Any) -> datetime | None:
    """An RFC 3339 timestamp as written by the API server (``...Z``), else None."""
    if isinstance(raw, datetime):
        return raw
    if not raw:
        return None
    try:
        return datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return None


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _section(obj: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    return dict(value) if isinstance(value, Mapping) else {}


def _status(model: type[S], raw: dict[str, Any]) -> S:
    try:
        return model.model_validate(raw)
    except ValidationError:
        return model()


@dataclass(frozen=True)
class ReleaseView:
    """A Release as users see it."""

    namespace: str
    name: str
    status: ReleaseStatus
    spec: ReleaseSpec | None = None
    revision: str = ""
    branch: str = ""
    track: str | None = None
    created: datetime | None = None
    uid: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> ReleaseView:
        """Parse a Release as returned by the API."""
        meta = _meta(obj)
        raw_spec = _section(obj, "spec")
        source = _section(raw_spec, "source")
        try:
            spec: ReleaseSpec | None = ReleaseSpec.model_validate(raw_spec)
        except ValidationError:
            spec = None
        labels = meta.get("labels") or {}
        return cls(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            status=_status(ReleaseStatus, _section(obj, "status")),
            spec=spec,
            revision=str(source.get("revision") or ""),
            branch=str(source.get("branch") or ""),
            track=labels.get(LABEL_TRACK),
            created=parse_time(meta.get("creationTimestamp")),
            uid=str(meta.get("uid") or ""),
            annotations=dict(meta.get("annotations") or {}),
        )

    @property
    def final(self) -> bool:
        """Whether the push has reached a final state."""
        return self.status.phase in FINAL_PHASES

    @property
    def rolled_back(self) -> bool:
        """The push was rolled back (or failed after a gate): the red banner case."""
        s = self.status
        if s.phase == "RolledBack":
            return True
        return s.phase == "Failed" and s.failure is not None and s.failure.gate is not None

    @property
    def phase_number(self) -> tuple[int, int] | None:
        """(1-based index of the current or failed phase, number of phases), for "phase 2 of 3"."""
        names = [p.name for p in self.status.phases]
        if not names:
            return None
        current = self.status.current_phase or (self.status.failure.phase if self.status.failure else None)
        if current in names:
            return names.index(current) + 1, len(names)
        return None


@dataclass(frozen=True)
class TrackView:
    """A Track as users see it."""

    namespace: str
    name: str
    status: TrackStatus
    spec: TrackSpec | None = None
    repo: str = ""
    branch: str = ""
    created: datetime | None = None

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> TrackView:
        """Parse a Track as returned by the API."""
        meta = _meta(obj)
        raw_spec = _section(obj, "spec")
        source = _section(raw_spec, "source")
        try:
            spec: TrackSpec | None = TrackSpec.model_validate(raw_spec)
        except ValidationError:
            spec = None
        return cls(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            status=_status(TrackStatus, _section(obj, "status")),
            spec=spec,
            repo=str(source.get("repo") or ""),
            branch=str(source.get("branch") or ""),
            created=parse_time(meta.get("creationTimestamp")),
        )


@dataclass(frozen=True)
class ExperimentView:
    """An Experiment as users see it."""

    namespace: str
    name: str
    status: ExperimentStatus
    spec: ExperimentSpec | None = None
    created: datetime | None = None

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> ExperimentView:
        """Parse an Experiment as returned by the API."""
        meta = _meta(obj)
        try:
            spec: ExperimentSpec | None = ExperimentSpec.model_validate(_section(obj, "spec"))
        except ValidationError:
            spec = None
        return cls(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            status=_status(ExperimentStatus, _section(obj, "status")),
            spec=spec,
            created=parse_time(meta.get("creationTimestamp")),
        )


@dataclass(frozen=True)
class EventView:
    """A Kubernetes Event about a stopline object."""

    type: str
    reason: str
    message: str
    at: datetime | None = None
    count: int = 1
    sequence: int = 0  # metadata.resourceVersion: orders events recorded within the same second

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> EventView:
        """Parse a core/v1 Event (camelCase dict, as the API or ``sanitize_for_serialization`` gives it)."""
        meta = _meta(obj)
        at = (
            parse_time(obj.get("lastTimestamp"))
            or parse_time(obj.get("eventTime"))
            or parse_time(obj.get("firstTimestamp"))
            or parse_time(meta.get("creationTimestamp"))
        )
        try:
            count = int(obj.get("count") or 1)
        except (TypeError, ValueError):
            count = 1
        version = str(meta.get("resourceVersion") or "")
        return cls(
            type=str(obj.get("type") or "Normal"),
            reason=str(obj.get("reason") or ""),
            message=str(obj.get("message") or ""),
            at=at,
            count=count,
            sequence=int(version) if version.isdigit() else 0,
        )


V = TypeVar("V", "ReleaseView", "TrackView", "ExperimentView")


def sort_events(events: list[EventView]) -> list[EventView]:
    """Oldest first (same second: in the order the API server stored them); events without a time go first."""
    return sorted(events, key=lambda e: (e.at is not None, e.at.timestamp() if e.at else 0.0, e.sequence))


def newest_first(views: list[V]) -> list[V]:
    """Newest created first, then by name."""
    return sorted(views, key=lambda v: (-(v.created.timestamp() if v.created else 0.0), v.namespace, v.name))
