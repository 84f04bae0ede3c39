"""The controller image carries kustomize and helm, built from their Go modules by hack/install-*.sh."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def stages() -> list[str]:
    return re.split(r"^(?=FROM )", DOCKERFILE, flags=re.M)[1:]


def test_a_go_builder_stage_runs_the_install_scripts() -> None:
    builder = next(s for s in stages() if " AS renderers" in s.splitlines()[0])
    assert re.match(r"FROM golang:1\.26\S* AS renderers", builder)
    for tool in ("kustomize", "helm"):
        assert f"bash /src/hack/install-{tool}.sh" in builder
        assert f"ARG STOPLINE_{tool.upper()}_VERSION\n" in builder  # no second copy of the version


def test_the_final_image_has_both_binaries_and_points_the_settings_at_them() -> None:
    final = stages()[-1]
    assert final.startswith("FROM python:3.11-slim")
    assert re.search(r"^COPY --from=renderers \S+/kustomize \S+/helm /usr/local/bin/$", final, re.M)
    assert "STOPLINE_KUSTOMIZE=/usr/local/bin/kustomize" in final
    assert "STOPLINE_HELM=/usr/local/bin/helm" in final
