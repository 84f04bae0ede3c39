"""Every example manifest in examples/*/ is accepted by the model of its kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from controller.models.common import API
from controller.models.experiment import ExperimentSpec
from controller.models.release import ReleaseSpec
from controller.models.track import TrackSpec

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
SPEC_MODELS: dict[str, type[BaseModel]] = {
    "Release": ReleaseSpec,
    "Track": TrackSpec,
    "Experiment": ExperimentSpec,
}


def _documents() -> list[tuple[str, dict[str, Any]]]:
    docs: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(EXAMPLES.glob("*/*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc is not None:
                docs.append((f"{path.parent.name}/{path.name}#{i}", doc))
    return docs


DOCUMENTS = _documents()


def test_examples_cover_every_kind() -> None:
    kinds = {doc.get("kind") for _, doc in DOCUMENTS}
    assert kinds >= set(SPEC_MODELS), f"examples lack kinds: {set(SPEC_MODELS) - kinds}"


@pytest.mark.parametrize(("name", "doc"), DOCUMENTS, ids=[name for name, _ in DOCUMENTS])
def test_example_spec_is_valid(name: str, doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == API, name
    model = SPEC_MODELS[doc["kind"]]
    spec = model.model_validate(doc["spec"])
    # Round trip through the wire form: what the controller writes back must parse to the same model.
    wire = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert model.model_validate(wire) == spec
