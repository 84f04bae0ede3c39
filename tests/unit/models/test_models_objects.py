"""Release fields for whole-application pushes: prune (Release and Track template), workload targets."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from controller.models.release import ReleaseSpec
from controller.models.track import TrackSpec

SOURCE = {"repo": "https://git.example.com/app.git", "branch": "main", "path": "deploy/"}
REVISION = "3f9c2e1d5b7a4c8e9f0a1b2c3d4e5f60718293a4"


def release(**extra: Any) -> dict[str, Any]:
    return {"source": {**SOURCE, "revision": REVISION}, "phases": [{"name": "all", "remaining": True}], **extra}


def test_prune_is_off_by_default_and_reaches_a_tracks_releases() -> None:
    assert ReleaseSpec.model_validate(release()).prune is False
    track = TrackSpec.model_validate(
        {"source": SOURCE, "template": {"phases": [{"name": "a", "remaining": True}], "prune": True}}
    )
    template = track.template.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert template["prune"] is True
    assert ReleaseSpec.model_validate({**template, "source": {**SOURCE, "revision": REVISION}}).prune is True


@pytest.mark.parametrize(
    "phase",
    [
        {"name": "db", "workloads": [{"kind": "StatefulSet", "name": "db"}]},
        {"name": "db", "workloads": [{"name": "db"}], "kind": "StatefulSet"},
        {"name": "agents", "kind": "DaemonSet", "remaining": True},
        {"name": "chat", "kind": "StatefulSet", "selector": {"matchLabels": {"tier": "chat"}}},
        {"name": "web", "deployments": ["web"], "kind": "Deployment"},
    ],
    ids=["workload-with-kind", "phase-kind", "remaining-of-a-kind", "selector-of-a-kind", "deployments"],
)
def test_workload_targets(phase: dict[str, Any]) -> None:
    ReleaseSpec.model_validate(release(phases=[phase]))


@pytest.mark.parametrize(
    ("phase", "message"),
    [
        ({"name": "x", "deployments": ["web"], "kind": "StatefulSet"}, "deployments lists Deployments"),
        ({"name": "x", "workloads": [{"kind": "CronJob", "name": "n"}]}, "Input should be"),
        ({"name": "x", "workloads": [{"name": "a"}], "remaining": True}, "set exactly one of"),
    ],
    ids=["deployments-of-another-kind", "cronjob-is-no-target", "two-targets"],
)
def test_invalid_workload_targets(phase: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ReleaseSpec.model_validate(release(phases=[phase]))
