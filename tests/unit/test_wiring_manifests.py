"""GitAdapter's manifest cache: one render per (repo, revision, path, render options)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controller.errors import ManifestError
from controller.gitops import render
from controller.gitops.credentials import GitCredentials
from controller.models.release import ReleaseSpec
from controller.settings import Settings
from controller.wiring import GitAdapter

SHA = "3f9c2e1d5b7a4c8e9f0a1b2c3d4e5f60718293a4"
OTHER = "0" * 40


class CountingCache:
    """Stands in for RepoCache: records every manifests() call."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple[str, str, str, render.RenderOptions | None]] = []
        self.fail = fail

    def manifests(
        self,
        url: str,
        revision: str,
        path: str,
        creds: GitCredentials | None = None,
        render: render.RenderOptions | None = None,
    ) -> list[dict[str, Any]]:
        self.calls.append((url, revision, path, render))
        if self.fail is not None:
            raise self.fail
        return [{"kind": "Deployment", "metadata": {"name": f"web-{len(self.calls)}"}}]


def spec(revision: str = SHA, path: str = "deploy/", **source: Any) -> ReleaseSpec:
    return ReleaseSpec.model_validate(
        {
            "source": {"repo": "https://git.example.test/app.git", "revision": revision, "path": path, **source},
            "phases": [{"name": "all", "remaining": True}],
        }
    )


def read(adapter: GitAdapter, namespace: str, s: ReleaseSpec) -> list[dict[str, Any]]:
    return asyncio.run(adapter.manifests(namespace, s))


# Each pair differs in one thing the rendered set depends on, so both are rendered.
DIFFERENT: list[tuple[str, ReleaseSpec, ReleaseSpec]] = [
    ("revision", spec(), spec(revision=OTHER)),
    ("path", spec(), spec(path="deploy/prod")),
    ("plain-vs-kustomize", spec(), spec(kustomize={})),
    ("kustomize-vs-helm", spec(kustomize={}), spec(helm={})),
    ("helm-values", spec(helm={"values": {"replicas": 2}}), spec(helm={"values": {"replicas": 3}})),
    ("helm-nested-values", spec(helm={"values": {"a": {"b": 1}}}), spec(helm={"values": {"a": {"b": "1"}}})),
    ("helm-values-files", spec(helm={"valuesFiles": ["a.yaml"]}), spec(helm={"valuesFiles": ["b.yaml"]})),
    (
        "helm-values-files-order",
        spec(helm={"valuesFiles": ["a.yaml", "b.yaml"]}),
        spec(helm={"valuesFiles": ["b.yaml", "a.yaml"]}),
    ),
    ("helm-release-name", spec(helm={}), spec(helm={"releaseName": "web"})),
]


@pytest.mark.parametrize(("case", "first", "second"), DIFFERENT, ids=[c for c, _, _ in DIFFERENT])
def test_a_difference_in_the_key_renders_again(case: str, first: ReleaseSpec, second: ReleaseSpec) -> None:
    cache = CountingCache()
    adapter = GitAdapter(cache, objects=None)  # type: ignore[arg-type]
    assert read(adapter, "shop", first) != read(adapter, "shop", second)
    assert len(cache.calls) == 2


SAME: list[tuple[str, ReleaseSpec, ReleaseSpec]] = [
    ("same-spec", spec(helm={"values": {"a": 1}}), spec(helm={"values": {"a": 1}})),
    ("values-key-order", spec(helm={"values": {"a": 1, "b": 2}}), spec(helm={"values": {"b": 2, "a": 1}})),
    ("path-spelling", spec(path="deploy/", kustomize={}), spec(path="./deploy", kustomize={})),
]


@pytest.mark.parametrize(("case", "first", "second"), SAME, ids=[c for c, _, _ in SAME])
def test_the_same_key_is_rendered_once(case: str, first: ReleaseSpec, second: ReleaseSpec) -> None:
    cache = CountingCache()
    adapter = GitAdapter(cache, objects=None)  # type: ignore[arg-type]
    assert read(adapter, "shop", first) == read(adapter, "shop", second)
    assert len(cache.calls) == 1


def test_helm_namespace_is_part_of_the_key_and_reaches_the_renderer() -> None:
    cache = CountingCache()
    adapter = GitAdapter(cache, objects=None)  # type: ignore[arg-type]
    read(adapter, "shop", spec(helm={}))
    read(adapter, "staging", spec(helm={}))
    read(adapter, "shop", spec(helm={}))
    namespaces = [options.namespace for *_, options in cache.calls if isinstance(options, render.HelmTemplate)]
    assert namespaces == ["shop", "staging"]


def test_plain_and_kustomize_sources_do_not_depend_on_the_namespace() -> None:
    cache = CountingCache()
    adapter = GitAdapter(cache, objects=None)  # type: ignore[arg-type]
    read(adapter, "shop", spec(kustomize={}))
    read(adapter, "staging", spec(kustomize={}))
    assert [options for *_, options in cache.calls] == [render.KustomizeBuild()]


def test_render_errors_are_manifest_errors_and_not_cached() -> None:
    cache = CountingCache(fail=render.RenderError("kustomize build deploy failed (exit 1): Error: boom"))
    adapter = GitAdapter(cache, objects=None)  # type: ignore[arg-type]
    for _ in range(2):
        with pytest.raises(ManifestError, match="Error: boom"):
            read(adapter, "shop", spec(kustomize={}))
    assert len(cache.calls) == 2


def test_settings_name_the_renderers() -> None:
    defaults = Settings.from_env({})
    assert (defaults.kustomize, defaults.helm, defaults.render_timeout_seconds) == ("kustomize", "helm", 60.0)
    custom = Settings.from_env(
        {"STOPLINE_KUSTOMIZE": "/opt/k/kustomize", "STOPLINE_HELM": "/opt/h/helm", "STOPLINE_RENDER_TIMEOUT": "5"}
    )
    assert (custom.kustomize, custom.helm, custom.render_timeout_seconds) == ("/opt/k/kustomize", "/opt/h/helm", 5.0)
