"""Generate the CustomResourceDefinitions in ``crds/`` from the pydantic models.

``python -m controller.models.crd crds/ charts/stopline/crds/`` (``make crds``) writes one YAML per kind.
The pydantic JSON schema is turned into a Kubernetes structural OpenAPI v3 schema: ``$ref`` inlined,
optional fields made ``nullable``, titles/defaults dropped (the controller applies defaults), JSON
Schema 2020 ``exclusiveMinimum`` turned into the OpenAPI 3.0 form, CEL rules kept.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from controller.models.common import API_GROUP, API_VERSION
from controller.models.experiment import ExperimentSpec, ExperimentStatus
from controller.models.release import ReleaseSpec, ReleaseStatus
from controller.models.track import TrackSpec, TrackStatus

_DROP = {"title", "default", "additionalProperties"}


@dataclass(frozen=True)
class Kind:
    """One CRD: its names, models and printer columns."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[BaseModel]
    columns: tuple[dict[str, str], ...]
    description: str
    extra_root_rules: tuple[dict[str, str], ...] = field(default=())


KINDS: tuple[Kind, ...] = (
    Kind(
        kind="Release",
        plural="releases",
        short_names=("rel", "rels"),
        spec=ReleaseSpec,
        status=ReleaseStatus,
        description="One Git revision pushed through phases across Deployments, judged by metric gates.",
        columns=(
            {"name": "Revision", "type": "string", "jsonPath": ".spec.source.revision"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Current", "type": "string", "jsonPath": ".status.currentPhase"},
            {"name": "Failed-Gate", "type": "string", "jsonPath": ".status.failedGate"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ),
    ),
    Kind(
        kind="Track",
        plural="tracks",
        short_names=("trk",),
        spec=TrackSpec,
        status=TrackStatus,
        description="A branch that pushes itself: every new commit becomes a Release, with push and commit locks.",
        columns=(
            {"name": "Branch", "type": "string", "jsonPath": ".spec.source.branch"},
            {"name": "Locked", "type": "boolean", "jsonPath": ".status.commitLock.locked"},
            {"name": "Current", "type": "string", "jsonPath": ".status.current"},
            {"name": "Last-Good", "type": "string", "jsonPath": ".status.lastGood"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ),
    ),
    Kind(
        kind="Experiment",
        plural="experiments",
        short_names=("exp",),
        spec=ExperimentSpec,
        status=ExperimentStatus,
        description="A user-level A/B experiment with deterministic assignment and a significance report.",
        columns=(
            {"name": "Rollout", "type": "number", "jsonPath": ".spec.rollout"},
            {"name": "Decision", "type": "string", "jsonPath": ".status.decision"},
            {"name": "P-Value", "type": "number", "jsonPath": ".status.pValue"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ),
    ),
)


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_inline(x, defs) for x in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].split("/")[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _inline(merged, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$defs":
            continue
        if key == "properties":
            out[key] = {name: _inline(sub, defs) for name, sub in value.items()}
        else:
            out[key] = _inline(value, defs)
    return out


def _structural(node: Any) -> Any:
    """Rewrite an inlined JSON schema node into Kubernetes structural OpenAPI v3."""
    if isinstance(node, list):
        return [_structural(x) for x in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    any_of = node.pop("anyOf", None)
    if any_of is not None:
        non_null = [s for s in any_of if s.get("type") != "null"]
        if len(non_null) != 1:
            raise ValueError(f"unsupported union in CRD schema: {any_of}")
        merged = {**non_null[0], **node}
        merged["nullable"] = True
        node = merged
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if isinstance(node.get("exclusiveMinimum"), int | float) and not isinstance(node["exclusiveMinimum"], bool):
        node["minimum"] = node["exclusiveMinimum"]
        node["exclusiveMinimum"] = True
    if isinstance(node.get("exclusiveMaximum"), int | float) and not isinstance(node["exclusiveMaximum"], bool):
        node["maximum"] = node["exclusiveMaximum"]
        node["exclusiveMaximum"] = True
    if "enum" in node and "type" not in node:
        values = node["enum"]
        node["type"] = "integer" if all(isinstance(v, int) for v in values) else "string"
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP and not (key == "additionalProperties" and isinstance(value, dict)):
            continue
        if key == "properties":
            out[key] = {name: _structural(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = _structural(value)
        else:
            out[key] = value
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a model, as it appears in a CRD."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    inlined = _inline(raw, raw.get("$defs", {}))
    result: dict[str, Any] = _structural(inlined)
    return result


def build_crd(kind: Kind) -> dict[str, Any]:
    """The full CustomResourceDefinition object for one kind."""
    spec_schema = model_schema(kind.spec)
    status_schema = model_schema(kind.status)
    status_schema.pop("nullable", None)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{kind.plural}.{API_GROUP}",
            "labels": {"app.kubernetes.io/name": "stopline", "app.kubernetes.io/part-of": "stopline"},
        },
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": list(kind.short_names),
                "categories": ["stopline"],
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": list(kind.columns),
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": kind.description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def render(kind: Kind) -> str:
    """The YAML text written to ``crds/<plural>.yaml``."""
    header = "# Generated by `make crds` from controller/models; do not edit by hand.\n"
    return header + yaml.safe_dump(build_crd(kind), sort_keys=False, width=120)


def write_all(directories: list[Path]) -> list[Path]:
    """Write every CRD into each directory; returns the files written."""
    written: list[Path] = []
    for directory in directories:
        directory.mkdir(parents=True, exist_ok=True)
        for kind in KINDS:
            path = directory / f"{kind.plural}.{API_GROUP}.yaml"
            path.write_text(render(kind))
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``python -m controller.models.crd DIR...``."""
    args = argv if argv is not None else sys.argv[1:]
    for path in write_all([Path(a) for a in (args or ["crds"])]):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
