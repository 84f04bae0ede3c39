"""The CRDs are generated from the models: no drift, structural schemas, the right names and columns.

What the CEL rules *do* can only be checked by a real API server; the e2e suite covers that. Here we
check that every rule written on a model reaches the CRD, at the node of the model that declares it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

import controller.models.common as models_common
import controller.models.experiment as models_experiment
import controller.models.notify as models_notify
import controller.models.release as models_release
import controller.models.track as models_track
from controller.models.common import API_GROUP, API_VERSION
from controller.models.crd import KINDS, Kind, render
from controller.models.experiment import ExperimentSpec
from controller.models.notify import EmailSink, Sink, WebhookSink
from controller.models.release import (
    CompareGate,
    Gate,
    GitSource,
    HelmSource,
    HttpGate,
    HttpHeader,
    KubernetesGate,
    Phase,
    ReleaseSource,
    ReleaseSpec,
    ReleaseTemplate,
)
from controller.models.track import TrackSpec

ROOT = Path(__file__).resolve().parents[2]
CRD_DIRS = [ROOT / "crds", ROOT / "charts" / "stopline" / "crds"]
KIND_IDS = [k.kind for k in KINDS]
FORBIDDEN_KEYWORDS = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "const", "title", "default"}


def _crd_file(directory: Path, kind: Kind) -> Path:
    return directory / f"{kind.plural}.{API_GROUP}.yaml"


def _load(kind: Kind) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(_crd_file(ROOT / "crds", kind).read_text())
    return data


def _version(crd: dict[str, Any]) -> dict[str, Any]:
    versions: list[dict[str, Any]] = crd["spec"]["versions"]
    assert [v["name"] for v in versions] == [API_VERSION]
    return versions[0]


def _schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = _version(crd)["schema"]["openAPIV3Schema"]
    return schema


def _nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path; property names are never mistaken for keywords."""
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}{{}}")


def _at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    for path_, node in _nodes(schema):
        if path_ == path:
            return node
    raise AssertionError(f"no schema node at {path}")


# --- drift --------------------------------------------------------------------------------------


@pytest.mark.parametrize("directory", CRD_DIRS, ids=["crds", "chart-crds"])
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_committed_crd_matches_models(kind: Kind, directory: Path) -> None:
    path = _crd_file(directory, kind)
    assert path.exists(), f"{path.relative_to(ROOT)} is missing: run `make crds`"
    assert path.read_text() == render(kind), (
        f"{path.relative_to(ROOT)} is out of date with controller/models: run `make crds` and commit the result"
    )


@pytest.mark.parametrize("directory", CRD_DIRS, ids=["crds", "chart-crds"])
def test_no_stray_crd_files(directory: Path) -> None:
    expected = {_crd_file(directory, k).name for k in KINDS}
    assert {p.name for p in directory.glob("*.yaml")} == expected


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_chart_crds_are_byte_identical_to_crds(kind: Kind) -> None:
    top, chart = (_crd_file(d, kind).read_bytes() for d in CRD_DIRS)
    assert chart == top, "charts/stopline/crds differs from crds/: run `make crds`"


# --- structural schema --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_schema_is_structural(kind: Kind) -> None:
    schema = _schema(_load(kind))
    problems: list[str] = []
    for path, node in _nodes(schema):
        for keyword in FORBIDDEN_KEYWORDS & node.keys():
            problems.append(f"{path or '<root>'}: {keyword}")
        if node.get("additionalProperties") is False:
            problems.append(f"{path}: additionalProperties: false")
        if "type" not in node and not node.get("x-kubernetes-int-or-string"):
            problems.append(f"{path}: no type")
        if node.get("type") == "object" and path != ".metadata":
            specified = (
                "properties" in node
                or node.get("x-kubernetes-preserve-unknown-fields") is True
                or isinstance(node.get("additionalProperties"), dict)
            )
            if not specified:
                problems.append(f"{path}: object without properties, additionalProperties or preserve-unknown")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: both properties and additionalProperties")
        if node.get("type") == "array" and not isinstance(node.get("items"), dict):
            problems.append(f"{path}: array without items")
        for req in node.get("required", []):
            if req not in node.get("properties", {}):
                problems.append(f"{path}: required {req!r} is not a property")
    assert problems == [], "not a structural schema:\n" + "\n".join(problems)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_spec_is_closed_and_status_is_object(kind: Kind) -> None:
    schema = _schema(_load(kind))
    assert schema["required"] == ["spec"]
    spec, status = schema["properties"]["spec"], schema["properties"]["status"]
    assert spec["type"] == "object" and "properties" in spec
    assert "x-kubernetes-preserve-unknown-fields" not in spec, "unknown spec fields must be pruned"
    assert status["type"] == "object" and "nullable" not in status


def test_durations_are_strings_with_the_go_pattern() -> None:
    schema = _schema(_load(KINDS[0]))
    hold = _at(schema, ".spec.phases[].hold")
    assert hold["type"] == "string"
    assert hold["pattern"] == r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"


def test_optional_fields_are_nullable_and_required_fields_listed() -> None:
    spec = _schema(_load(KINDS[0]))["properties"]["spec"]
    assert set(spec["required"]) == {"phases", "source"}
    assert _at(spec, ".prometheus").get("nullable") is True
    assert _at(spec, ".source")["required"] == ["repo", "revision"]


def test_every_field_has_a_description() -> None:
    missing = [
        f"{k.kind}{path}"
        for k in KINDS
        for path, node in _nodes(_schema(_load(k))["properties"]["spec"], ".spec")
        if path and not path.endswith(("[]", "{}")) and not node.get("description")
    ]
    assert missing == [], "spec fields without a description (kubectl explain shows nothing)"


# --- names, columns, subresources ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "plural", "short_names"),
    [("Release", "releases", ["rel", "rels"]), ("Track", "tracks", ["trk"]), ("Experiment", "experiments", ["exp"])],
    ids=KIND_IDS,
)
def test_names(kind: str, plural: str, short_names: list[str]) -> None:
    crd = next(_load(k) for k in KINDS if k.kind == kind)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == f"{plural}.{API_GROUP}"
    assert crd["spec"]["group"] == API_GROUP
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"] == {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": kind.lower(),
        "shortNames": short_names,
        "categories": ["stopline"],
    }


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_status_subresource_and_single_served_version(kind: Kind) -> None:
    version = _version(_load(kind))
    assert version["served"] is True and version["storage"] is True
    assert version["subresources"] == {"status": {}}


def test_release_printer_columns() -> None:
    columns = _version(_load(KINDS[0]))["additionalPrinterColumns"]
    assert [(c["name"], c["type"], c["jsonPath"]) for c in columns] == [
        ("Revision", "string", ".spec.source.revision"),
        ("Phase", "string", ".status.phase"),
        ("Current", "string", ".status.currentPhase"),
        ("Failed-Gate", "string", ".status.failedGate"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_printer_columns_point_at_schema_fields(kind: Kind) -> None:
    crd = _load(kind)
    schema = _schema(crd)
    for column in _version(crd)["additionalPrinterColumns"]:
        path = column["jsonPath"]
        if path.startswith(".metadata."):
            continue
        node = _at(schema, path)
        expected = {"string": "string", "boolean": "boolean", "number": "number", "integer": "integer"}
        assert node["type"] == expected[column["type"]], f"{path}: {node['type']} shown as {column['type']}"


# --- CEL rules ----------------------------------------------------------------------------------


def _rules(model: type[BaseModel]) -> list[dict[str, str]]:
    extra = model.model_config.get("json_schema_extra")
    assert isinstance(extra, dict), f"{model.__name__} declares no CEL rules"
    rules: list[dict[str, str]] = extra["x-kubernetes-validations"]  # type: ignore[assignment]
    return rules


# (CRD kind, schema path, model whose rules must sit exactly there)
CEL_PLACES: list[tuple[str, str, type[BaseModel]]] = [
    ("Release", ".spec", ReleaseSpec),
    ("Release", ".spec.phases[]", Phase),
    ("Release", ".spec.gates[]", Gate),
    ("Release", ".spec.gates[].compare", CompareGate),
    ("Release", ".spec.gates[].kubernetes", KubernetesGate),
    ("Release", ".spec.gates[].http", HttpGate),
    ("Release", ".spec.gates[].http.headers[]", HttpHeader),
    ("Release", ".spec.source", ReleaseSource),
    ("Release", ".spec.source.helm", HelmSource),
    ("Track", ".spec", TrackSpec),
    ("Track", ".spec.source", GitSource),
    ("Track", ".spec.source.helm", HelmSource),
    ("Track", ".spec.template", ReleaseTemplate),
    ("Track", ".spec.template.phases[]", Phase),
    ("Track", ".spec.template.gates[]", Gate),
    ("Release", ".spec.notify[]", Sink),
    ("Release", ".spec.notify[].webhook", WebhookSink),
    ("Release", ".spec.notify[].email", EmailSink),
    ("Track", ".spec.template.notify[]", Sink),
    ("Track", ".spec.template.notify[].webhook", WebhookSink),
    ("Track", ".spec.template.notify[].email", EmailSink),
    ("Track", ".spec.template.gates[].compare", CompareGate),
    ("Track", ".spec.template.gates[].kubernetes", KubernetesGate),
    ("Track", ".spec.template.gates[].http", HttpGate),
    ("Track", ".spec.template.gates[].http.headers[]", HttpHeader),
    ("Experiment", ".spec", ExperimentSpec),
]


@pytest.mark.parametrize(
    ("kind", "path", "model"),
    CEL_PLACES,
    ids=[f"{k}{p}" for k, p, _ in CEL_PLACES],
)
def test_cel_rules_reach_the_crd(kind: str, path: str, model: type[BaseModel]) -> None:
    crd = next(_load(k) for k in KINDS if k.kind == kind)
    node = _at(_schema(crd), path)
    assert node.get("x-kubernetes-validations") == _rules(model)


def _declares_cel(obj: object, module: ModuleType) -> bool:
    if not (isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == module.__name__):
        return False
    extra = obj.model_config.get("json_schema_extra")
    return isinstance(extra, dict) and "x-kubernetes-validations" in extra


def test_every_cel_rule_in_the_models_is_placed() -> None:
    """No model with CEL rules is missing from CEL_PLACES, so none can be silently dropped."""
    modules = (models_common, models_release, models_track, models_experiment, models_notify)
    declaring = {obj for module in modules for obj in vars(module).values() if _declares_cel(obj, module)}
    assert declaring == {model for _, _, model in CEL_PLACES}


def test_release_spec_keeps_template_rules_and_adds_source_immutability() -> None:
    spec_rules = _rules(ReleaseSpec)
    assert spec_rules[:-1] == _rules(ReleaseTemplate)
    assert spec_rules[-1]["rule"] == "self.source == oldSelf.source"
    template_rules = _at(_schema(_load(KINDS[1])), ".spec.template")["x-kubernetes-validations"]
    assert all("oldSelf" not in r["rule"] for r in template_rules), "a Track's template has no source"


def test_no_cel_rules_elsewhere() -> None:
    """Rules sit only where CEL_PLACES says: none duplicated into other nodes."""
    placed = {(kind, path) for kind, path, _ in CEL_PLACES}
    stray = [
        f"{k.kind}{path}"
        for k in KINDS
        for path, node in _nodes(_schema(_load(k)))
        if "x-kubernetes-validations" in node and (k.kind, path) not in placed
    ]
    assert stray == []


# --- admission gaps ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "path"), [("Release", ".spec.phases[].deployments[]"), ("Track", ".spec.template.phases[].deployments[]")]
)
def test_phase_deployment_names_are_dns_subdomains_in_the_crd(kind: str, path: str) -> None:
    node = _at(_schema(next(_load(k) for k in KINDS if k.kind == kind)), path)
    assert (node["type"], node["pattern"], node["maxLength"]) == ("string", models_common.DNS_SUBDOMAIN_PATTERN, 253)


def test_crd_and_controller_reject_alpha_0_with_the_same_words() -> None:
    spec = _at(_schema(_load(next(k for k in KINDS if k.kind == "Experiment"))), ".spec")
    alpha = spec["properties"]["alpha"]
    # no schema bound on the field: the API server would report it in its own words beside the rule's
    assert not {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"} & alpha.keys()
    rules = [r for r in spec["x-kubernetes-validations"] if "self.alpha" in r["rule"]]
    assert [r["message"] for r in rules] == [models_experiment.ALPHA_MESSAGE]

    body = {"key": "k", "branches": {"control": 0.5, "b": 0.5}, "alpha": 0}
    with pytest.raises(ValidationError) as info:
        ExperimentSpec.model_validate(body)
    assert [e["msg"] for e in info.value.errors()] == [models_experiment.ALPHA_MESSAGE]
