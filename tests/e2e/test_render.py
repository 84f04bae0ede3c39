"""Kustomize and Helm sources on the real stack: a rendering error fails the push with the tool's
message and nothing is applied. (The happy paths are examples 04 and 05 in test_examples.py.)"""

from __future__ import annotations

import json
from typing import Any

import pytest
from dsl import Then
from helpers import branch_sha, kubectl, kubectl_json, make_repo
from operator_proc import Controller

BROKEN: list[tuple[str, dict[str, str], dict[str, Any], str, list[str]]] = [
    (
        "kustomize-missing-resource",
        {
            "deploy/kustomization.yaml": "resources: [web.yaml, missing.yaml]\n",
            "deploy/web.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n",
        },
        {"path": "deploy", "kustomize": {}},
        "kustomize build deploy failed at revision",
        ["missing.yaml", "no such file or directory"],
    ),
    (
        "kustomize-base-outside-the-repository",
        {"deploy/kustomization.yaml": "resources: ['file:///var/cache/stopline/0123abcd//deploy']\n"},
        {"path": "deploy", "kustomize": {}},
        "deploy/kustomization.yaml at revision",
        ["points outside the repository"],
    ),
    (
        "helm-template-error",
        {
            "chart/Chart.yaml": "apiVersion: v2\nname: shop\nversion: 0.1.0\n",
            "chart/values.yaml": "replicas: 1\n",
            "chart/templates/web.yaml": "replicas: {{ .Values.web.replicas }}\n",
        },
        {"path": "chart", "helm": {"values": {"replicas": 2}}},
        "helm template chart failed at revision",
        ["nil pointer evaluating", ".Values.web.replicas"],
    ),
    (
        "helm-values-file-missing",
        {
            "chart/Chart.yaml": "apiVersion: v2\nname: shop\nversion: 0.1.0\n",
            "chart/templates/web.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n",
        },
        {"path": "chart", "helm": {"valuesFiles": ["values-prod.yaml"]}},
        "values file 'chart/values-prod.yaml' does not exist at revision",
        [],
    ),
]


@pytest.mark.parametrize(("case", "files", "source", "headline", "details"), BROKEN, ids=[case for case, *_ in BROKEN])
def test_rendering_error_fails_the_push_with_the_tools_message(
    controller: Controller,
    then: Then,
    ns: str,
    case: str,
    files: dict[str, str],
    source: dict[str, Any],
    headline: str,
    details: list[str],
) -> None:
    url = make_repo(f"{ns}-{case}", files)
    sha = branch_sha(url)
    release = {
        "apiVersion": "stopline.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "broken", "namespace": ns},
        "spec": {
            "source": {"repo": url, "branch": "main", "revision": sha, **source},
            "phases": [{"name": "all", "remaining": True}],
        },
    }
    kubectl("apply", "-f", "-", input=json.dumps(release))

    status = then.release_reaches("broken", "Failed", "Succeeded", "RolledBack", timeout=120)
    assert status["phase"] == "Failed", status
    failure = status["failure"]
    assert failure["reason"] == "ManifestError", failure
    assert headline in failure["message"] and sha in failure["message"], failure["message"]
    for detail in details:
        assert detail in failure["message"], failure["message"]
    assert "/.render/" not in failure["message"]  # the temporary tree's path is never shown
    assert kubectl_json("get", "deployments", "-n", ns)["items"] == []  # nothing was applied
