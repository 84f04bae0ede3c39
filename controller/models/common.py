"""Shared building blocks for the stopline resource models.

Every model here is pure pydantic: no Kubernetes, Git or HTTP imports. The CRDs in ``crds/`` are
generated from these models (``make crds``), so field descriptions become ``kubectl explain`` text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

API_GROUP = "stopline.dev"
API_VERSION = "v1alpha1"
API = f"{API_GROUP}/{API_VERSION}"

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
REVISION_PATTERN = r"^[0-9a-f]{40}([0-9a-f]{24})?$"
REPO_PATTERN = r"^(https?://|ssh://|git://|file://|[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+:).+"


def parse_duration(value: Any) -> timedelta:
    """Parse a Go-style duration (``60s``, ``2m``, ``1h30m``, ``250ms``) or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: use a string such as '60s' or '2m'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"invalid duration {value!r}: must not be negative")
        return timedelta(seconds=float(value))
    if not isinstance(value, str):
        raise ValueError(f"invalid duration {value!r}: use a string such as '60s' or '2m'")
    text = value.strip()
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(
            f"invalid duration {value!r}: use a number with a unit ms, s, m or h, e.g. '60s', '2m', '1h30m'"
        )
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Inverse of :func:`parse_duration`: the shortest exact Go-style string."""
    total_ms = round(value.total_seconds() * 1000)
    if total_ms == 0:
        return "0s"
    parts: list[str] = []
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if seconds:
        parts.append(f"{seconds}s")
    if millis:
        parts.append(f"{millis}ms")
    return "".join(parts)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN}),
]
"""A duration written like ``60s``, ``2m`` or ``1h30m``; parsed to :class:`datetime.timedelta`."""


def cel(*rules: tuple[str, str] | dict[str, str]) -> dict[str, Any]:
    """``json_schema_extra`` carrying CEL ``x-kubernetes-validations`` (rule, message) into the CRD."""
    out = [r if isinstance(r, dict) else {"rule": r[0], "message": r[1]} for r in rules]
    return {"x-kubernetes-validations": out}


class Model(BaseModel):
    """Base for every stopline model: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=False,
        validate_default=True,
    )

    def wire(self) -> dict[str, Any]:
        """The model as it appears in a Kubernetes object (camelCase, no unset/None fields)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class StatusModel(Model):
    """Status models tolerate fields written by newer controllers."""

    model_config = ConfigDict(extra="ignore")


class SecretRef(Model):
    """Reference to a Secret in the same namespace as the resource."""

    name: str = Field(description="Name of the Secret.", pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)


class LabelSelectorRequirement(Model):
    """One set-based label requirement (as in metav1.LabelSelectorRequirement)."""

    key: str = Field(description="Label key the requirement applies to.", min_length=1)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="Relationship of the key to the values."
    )
    values: list[str] = Field(default_factory=list, description="Values for In/NotIn; empty otherwise.")

    @model_validator(mode="after")
    def _values_match_operator(self) -> LabelSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs at least one value")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        return self


class LabelSelector(Model):
    """Selects Deployments by label, like a Kubernetes label selector."""

    match_labels: dict[str, str] = Field(default_factory=dict, description="Labels that must all match.")
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, description="Set-based requirements that must all hold."
    )

    @model_validator(mode="after")
    def _not_empty(self) -> LabelSelector:
        if not self.match_labels and not self.match_expressions:
            raise ValueError("selector needs matchLabels or matchExpressions (an empty selector matches everything)")
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether a label set satisfies this selector."""
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for req in self.match_expressions:
            present = req.key in labels
            value = labels.get(req.key)
            ok = {
                "In": present and value in req.values,
                "NotIn": not present or value not in req.values,
                "Exists": present,
                "DoesNotExist": not present,
            }[req.operator]
            if not ok:
                return False
        return True


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(StatusModel):
    """A standard Kubernetes condition (metav1.Condition)."""

    type: str = Field(description="Condition type, e.g. Ready, GatesPassing, RolledBack, GitReverted.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="CamelCase reason for the last transition.")
    message: str = Field(default="", description="Human-readable detail.")
    last_transition_time: datetime | None = Field(default=None, description="When the status last changed.")
    observed_generation: int | None = Field(default=None, description="Generation the condition reflects.")


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None = None,
) -> list[Condition]:
    """Return a new condition list with ``type_`` set; the transition time moves only on change."""
    out: list[Condition] = []
    found = False
    for c in conditions:
        if c.type != type_:
            out.append(c)
            continue
        found = True
        when = c.last_transition_time if c.status == status and c.last_transition_time else now
        out.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=when,
                observed_generation=generation,
            )
        )
    if not found:
        out.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=now,
                observed_generation=generation,
            )
        )
    return out


def get_condition(conditions: list[Condition], type_: str) -> Condition | None:
    """The condition of the given type, if present."""
    return next((c for c in conditions if c.type == type_), None)


#: The trailer of every revert commit stopline pushes: ``Stopline-Revert-Of: <full sha>``.
REVERT_TRAILER = "Stopline-Revert-Of"


@dataclass(frozen=True)
class Token:
    """A parsed lock/unlock/waive annotation: ``{"by", "reason", "withoutRevert"}`` or a plain reason."""

    raw: str
    by: str
    reason: str
    without_revert: bool = False


def parse_token(raw: str) -> Token:
    """``{"by": ..., "reason": ..., "withoutRevert": true}`` or a plain reason string."""
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if isinstance(data, dict):
        return Token(
            raw=raw,
            by=str(data.get("by") or "unknown"),
            reason=str(data.get("reason") or ""),
            without_revert=bool(data.get("withoutRevert")),
        )
    return Token(raw=raw, by="unknown", reason=raw)


def owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    """Whether the object with this UID is the controller owner of ``obj`` (the one rule for ownership)."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == uid and r.get("controller") for r in refs)


def valid_branch_name(name: str) -> bool:
    """``git check-ref-format --branch`` rules, as far as a branch name alone can be judged."""
    return not (
        not name
        or name == "@"
        or name.startswith(("-", "/", "."))
        or name.endswith(("/", ".", ".lock"))
        or any(s in name for s in ("..", "//", "@{", "/."))
        or any(c in name for c in " ~^:?*[\\")
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name)
    )


def person_name(person: str | None) -> str:
    """``Ada Lovelace`` of ``Ada Lovelace <ada@example.org>`` (the text itself when there is no address)."""
    if not person:
        return ""
    return person.split("<", 1)[0].strip() or person.strip("<> ")
