"""A Track's Releases render the way the Track's source says (source.kustomize / source.helm)."""

from __future__ import annotations

from typing import Any

import pytest

from controller.models.release import ReleaseSpec
from controller.models.track import TrackSpec
from controller.track.plan import CreateRelease
from controller.track.runner import TrackRef, release_body

SHA = "3f9c2e1d5b7a4c8e9f0a1b2c3d4e5f60718293a4"
RENDERERS: list[tuple[str, dict[str, Any]]] = [
    ("kustomize", {"kustomize": {}}),
    ("helm", {"helm": {"releaseName": "shop", "valuesFiles": ["values-prod.yaml"], "values": {"a": {"b": 1}}}}),
]


@pytest.mark.parametrize(("case", "renderer"), RENDERERS, ids=[c for c, _ in RENDERERS])
def test_the_release_carries_the_tracks_renderer(case: str, renderer: dict[str, Any]) -> None:
    track = TrackSpec.model_validate(
        {
            "source": {"repo": "https://git.example.test/app.git", "path": "deploy/prod", **renderer},
            "template": {"phases": [{"name": "all", "remaining": True}]},
        }
    )
    body = release_body(TrackRef("shop", "web", "uid-1"), track, CreateRelease(f"web-{SHA[:7]}", SHA, ()))
    spec = ReleaseSpec.model_validate(body["spec"])
    assert spec.source.revision == SHA
    assert spec.source.kustomize == track.source.kustomize
    assert spec.source.helm == track.source.helm
