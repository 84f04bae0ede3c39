"""Rendering kustomize and Helm sources at a revision (controller.gitops.render, RepoCache.manifests).

The happy paths run the real binaries, built once by ``hack/install-kustomize.sh`` and
``hack/install-helm.sh`` (or taken from ``STOPLINE_KUSTOMIZE`` / ``STOPLINE_HELM``); a missing tool
fails these tests, it never skips them. Error paths (missing binary, failure, timeout) use small fake
tools written by the tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.gitops.errors import GitNotFoundError, ManifestError
from controller.gitops.render import (
    HelmTemplate,
    KustomizeBuild,
    RendererMissing,
    RenderError,
    RenderTimeout,
    Tools,
    check_kustomizations,
    render_options,
    trim_message,
)
from controller.gitops.repo import RepoCache
from controller.models.release import GitSource

from .helpers import Upstream, git

ROOT = Path(__file__).resolve().parents[3]


def _installed(tool: str) -> str:
    override = os.environ.get(f"STOPLINE_{tool.upper()}")
    if override:
        return override
    script = ROOT / "hack" / f"install-{tool}.sh"
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=3600, check=False)
    if proc.returncode != 0:
        pytest.fail(f"hack/install-{tool}.sh failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    path = proc.stdout.strip().splitlines()[-1]
    assert Path(path).is_file(), f"install-{tool}.sh printed {path!r}, which is not a file"
    return path


@pytest.fixture(scope="session")
def kustomize() -> str:
    return _installed("kustomize")


@pytest.fixture(scope="session")
def helm() -> str:
    return _installed("helm")


@pytest.fixture
def tools(kustomize: str, helm: str) -> Tools:
    return Tools(kustomize=kustomize, helm=helm, timeout=60)


@pytest.fixture
def renderer(tmp_path: Path, tools: Tools) -> Iterator[RepoCache]:
    with RepoCache(tmp_path / "cache", timeout=60, tools=tools) as cache:
        yield cache


@pytest.fixture
def cache_with(tmp_path: Path) -> Iterator[Callable[[Tools], RepoCache]]:
    """RepoCache factory for the fakes' tools; every cache is closed afterwards."""
    made: list[RepoCache] = []

    def make(tools: Tools) -> RepoCache:
        made.append(RepoCache(tmp_path / f"cache-{len(made)}", timeout=60, tools=tools))
        return made[-1]

    yield make
    for cache in made:
        cache.close()


def fake_tool(tmp_path: Path, name: str, script: str) -> str:
    """An executable shell script standing in for kustomize or helm."""
    path = tmp_path / "fake-bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text("#!/bin/sh\n" + textwrap.dedent(script))
    path.chmod(0o755)
    return str(path)


def by_kind(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


# -- fixture trees ---------------------------------------------------------------------------------

KUSTOMIZE_TREE: Mapping[str, str] = {
    "deploy/base/kustomization.yaml": """\
        resources: [web.yaml, db.yaml]
        configMapGenerator:
          - name: web-config
            literals: [MODE=base]
        """,
    "deploy/base/web.yaml": """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web, labels: {app: web}}
        spec:
          replicas: 1
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec:
              containers:
                - name: web
                  image: registry.example/web:v1
                  envFrom: [{configMapRef: {name: web-config}}]
        """,
    "deploy/base/db.yaml": """\
        apiVersion: apps/v1
        kind: StatefulSet
        metadata: {name: db}
        spec:
          serviceName: db
          selector: {matchLabels: {app: db}}
          template:
            metadata: {labels: {app: db}}
            spec: {containers: [{name: db, image: registry.example/db:v1}]}
        """,
    "deploy/overlays/prod/kustomization.yaml": """\
        resources: [../../base]
        images:
          - name: registry.example/web
            newTag: v2
        replicas:
          - name: web
            count: 3
        configMapGenerator:
          - name: web-config
            behavior: merge
            literals: [MODE=prod]
        """,
}

CHART_TREE: Mapping[str, str] = {
    "chart/Chart.yaml": "apiVersion: v2\nname: shop\nversion: 0.1.0\n",
    "chart/values.yaml": "image: registry.example/shop:v1\nreplicas: 1\ngreeting: hello\n",
    "chart/values-prod.yaml": "replicas: 3\n",
    "envs/prod.yaml": "greeting: from-envs\n",
    "chart/templates/deployment.yaml": """\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: {{ .Release.Name }}-web
          namespace: {{ .Release.Namespace }}
        spec:
          replicas: {{ .Values.replicas }}
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec:
              containers:
                - name: web
                  image: {{ .Values.image }}
                  env: [{name: GREETING, value: {{ .Values.greeting | quote }}}]
        """,
    "chart/templates/tests/test-connection.yaml": """\
        apiVersion: v1
        kind: Pod
        metadata:
          name: {{ .Release.Name }}-test
          annotations: {"helm.sh/hook": test}
        spec: {containers: [{name: t, image: busybox}]}
        """,
}


def commit(upstream: Upstream, files: Mapping[str, str]) -> str:
    return upstream.commit({k: textwrap.dedent(v) for k, v in files.items()}, "app")


# -- kustomize -------------------------------------------------------------------------------------


def test_kustomize_overlay_renders_bases_images_replicas_and_generator_hashes(
    upstream: Upstream, renderer: RepoCache
) -> None:
    sha = commit(upstream, KUSTOMIZE_TREE)
    docs = renderer.manifests(upstream.url, sha, "deploy/overlays/prod", render=KustomizeBuild())
    objects = by_kind(docs)
    [config_name] = [name for kind, name in objects if kind == "ConfigMap"]
    assert config_name.startswith("web-config-") and len(config_name) > len("web-config-")
    assert objects[("ConfigMap", config_name)]["data"] == {"MODE": "prod"}
    web = objects[("Deployment", "web")]
    assert web["spec"]["replicas"] == 3
    container = web["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/web:v2"
    assert container["envFrom"] == [{"configMapRef": {"name": config_name}}]  # the hash reference
    assert ("StatefulSet", "db") in objects


def test_kustomize_generator_hash_follows_the_data(upstream: Upstream, renderer: RepoCache) -> None:
    first = commit(upstream, KUSTOMIZE_TREE)
    changed = dict(KUSTOMIZE_TREE)
    changed["deploy/overlays/prod/kustomization.yaml"] = changed["deploy/overlays/prod/kustomization.yaml"].replace(
        "MODE=prod", "MODE=prod2"
    )
    second = commit(upstream, changed)

    def config(sha: str) -> str:
        docs = renderer.manifests(upstream.url, sha, "deploy/overlays/prod", render=KustomizeBuild())
        return next(d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap")

    assert config(first) != config(second)


def test_kustomize_failure_fails_with_its_own_message(upstream: Upstream, renderer: RepoCache) -> None:
    sha = commit(upstream, {"deploy/kustomization.yaml": "resources: [missing.yaml]\n"})
    with pytest.raises(RenderError) as info:
        renderer.manifests(upstream.url, sha, "deploy", render=KustomizeBuild())
    message = str(info.value)
    assert message.startswith(f"kustomize build deploy failed at revision {sha}")
    assert "missing.yaml" in message
    assert str(renderer.root) not in message  # temporary paths are shown relative to the repository


def test_kustomize_cannot_load_files_outside_the_kustomization(upstream: Upstream, renderer: RepoCache) -> None:
    sha = commit(
        upstream,
        {
            "secret.txt": "s3cret\n",
            "deploy/kustomization.yaml": "configMapGenerator:\n  - name: leak\n    files: [../secret.txt]\n",
        },
    )
    with pytest.raises(RenderError, match=r"security|outside|not in or below"):
        renderer.manifests(upstream.url, sha, "deploy", render=KustomizeBuild())


def test_missing_path_is_not_found(upstream: Upstream, renderer: RepoCache) -> None:
    sha = commit(upstream, KUSTOMIZE_TREE)
    with pytest.raises(GitNotFoundError, match="path 'deploy/nope' does not exist at revision"):
        renderer.manifests(upstream.url, sha, "deploy/nope", render=KustomizeBuild())


# -- helm ------------------------------------------------------------------------------------------


def test_helm_renders_values_files_inline_values_name_and_namespace(upstream: Upstream, renderer: RepoCache) -> None:
    sha = commit(upstream, CHART_TREE)
    options = HelmTemplate(
        namespace="shop",
        values_files=("values-prod.yaml", "../envs/prod.yaml"),
        values_json='{"image":"registry.example/shop:v9"}',
    )
    docs = renderer.manifests(upstream.url, sha, "chart/", render=options)
    objects = by_kind(docs)
    assert list(objects) == [("Deployment", "shop-web")]  # name from Chart.yaml; the test hook is skipped
    web = objects[("Deployment", "shop-web")]
    assert web["metadata"]["namespace"] == "shop"
    assert web["spec"]["replicas"] == 3  # values-prod.yaml
    container = web["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/shop:v9"  # inline values win
    assert container["env"] == [{"name": "GREETING", "value": "from-envs"}]  # a values file elsewhere in the repo


def test_helm_release_name_can_be_set(upstream: Upstream, renderer: RepoCache) -> None:
    sha = commit(upstream, CHART_TREE)
    docs = renderer.manifests(upstream.url, sha, "chart", render=HelmTemplate(namespace="a", release_name="web"))
    assert [d["metadata"]["name"] for d in docs] == ["web-web"]


@pytest.mark.parametrize(
    ("values_file", "message"),
    [
        ("nope.yaml", r"values file 'chart/nope.yaml' does not exist at revision"),
        ("../../outside.yaml", r"values file '../../outside.yaml' resolves outside the repository"),
    ],
    ids=["missing", "outside-the-repository"],
)
def test_helm_values_files_must_exist_inside_the_repository(
    upstream: Upstream, renderer: RepoCache, values_file: str, message: str
) -> None:
    sha = commit(upstream, CHART_TREE)
    with pytest.raises(ManifestError, match=message):
        renderer.manifests(upstream.url, sha, "chart", render=HelmTemplate(namespace="a", values_files=(values_file,)))


def test_helm_needs_a_chart(upstream: Upstream, renderer: RepoCache) -> None:
    sha = commit(upstream, KUSTOMIZE_TREE)
    with pytest.raises(ManifestError, match=r"deploy/base has no Chart.yaml at revision .*: source.helm needs"):
        renderer.manifests(upstream.url, sha, "deploy/base", render=HelmTemplate(namespace="a"))


def test_helm_template_error_fails_with_its_message(upstream: Upstream, renderer: RepoCache) -> None:
    broken = dict(CHART_TREE)
    broken["chart/templates/deployment.yaml"] = "{{ .Values.nope.deeper }}\n"
    sha = commit(upstream, broken)
    with pytest.raises(RenderError) as info:
        renderer.manifests(upstream.url, sha, "chart", render=HelmTemplate(namespace="a"))
    message = str(info.value)
    assert message.startswith(f"helm template chart failed at revision {sha}")
    assert "nil pointer" in message or "nope" in message, message


def test_chart_name_that_is_no_release_name_asks_for_one(upstream: Upstream, renderer: RepoCache) -> None:
    bad = dict(CHART_TREE)
    bad["chart/Chart.yaml"] = "apiVersion: v2\nname: Shop_App\nversion: 0.1.0\n"
    sha = commit(upstream, bad)
    with pytest.raises(ManifestError, match=r"chart name 'Shop_App' is not a valid Helm release name; set"):
        renderer.manifests(upstream.url, sha, "chart", render=HelmTemplate(namespace="a"))


# -- materializing the tree ------------------------------------------------------------------------


def test_tree_is_written_exactly_without_checkout_filters_and_links_stay_inside(
    upstream: Upstream, tmp_path: Path, cache_with: Callable[[Tools], RepoCache]
) -> None:
    work = upstream.work
    (work / "deploy").mkdir(parents=True)
    (work / ".gitattributes").write_text("deploy/* export-subst\n")
    (work / "deploy" / "cm.yaml").write_text("kind: ConfigMap\nmetadata: {name: c}\ndata: {v: '$Format:%H$'}\n")
    (work / "deploy" / "tool.sh").write_text("#!/bin/sh\n")
    (work / "deploy" / "tool.sh").chmod(0o755)
    os.symlink("cm.yaml", work / "deploy" / "inside.yaml")
    os.symlink("/etc/hostname", work / "deploy" / "outside.yaml")
    os.symlink("../../../../../etc", work / "deploy" / "up")
    git(work, "add", "-A")
    git(work, "commit", "--quiet", "-m", "special files")
    git(work, "push", "--quiet", upstream.url, "HEAD:refs/heads/main")
    sha = git(work, "rev-parse", "HEAD")

    listing = fake_tool(
        tmp_path,
        "kustomize",
        """\
        cd "$2"
        for f in *; do
          if [ -L "$f" ]; then t=link; elif [ -x "$f" ]; then t=exec; else t=file; fi
          printf -- '---\\nkind: Entry\\nmetadata: {name: "%s"}\\ntype: %s\\n' "$f" "$t"
        done
        printf -- '---\\nkind: Content\\nmetadata: {name: cm}\\ntext: "%s"\\n' "$(grep -o 'Format:%H' cm.yaml)"
        """,
    )
    cache = cache_with(Tools(kustomize=listing))
    docs = cache.manifests(upstream.url, sha, "deploy", render=KustomizeBuild())
    assert list((cache.root / ".render").iterdir()) == []  # the temporary tree is gone
    entries = {d["metadata"]["name"]: d.get("type") for d in docs if d["kind"] == "Entry"}
    assert entries == {"cm.yaml": "file", "tool.sh": "exec", "inside.yaml": "link"}
    assert by_kind(docs)[("Content", "cm")]["text"] == "Format:%H"  # no export-subst


# -- fakes: missing binary, failure, timeout, environment -----------------------------------------


def test_missing_binary_names_it_and_how_to_get_it(
    upstream: Upstream, tmp_path: Path, cache_with: Callable[[Tools], RepoCache]
) -> None:
    sha = commit(upstream, KUSTOMIZE_TREE)
    cache = cache_with(Tools(kustomize=str(tmp_path / "no" / "kustomize")))
    with pytest.raises(RendererMissing) as info:
        cache.manifests(upstream.url, sha, "deploy/overlays/prod", render=KustomizeBuild())
    message = str(info.value)
    assert f"STOPLINE_KUSTOMIZE='{tmp_path}/no/kustomize'" in message
    assert "hack/install-kustomize.sh" in message


def test_missing_binary_on_path(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache_with: Callable[[Tools], RepoCache]
) -> None:
    sha = commit(upstream, CHART_TREE)
    only_git = tmp_path / "only-git"
    only_git.mkdir()
    os.symlink(shutil.which("git") or "/usr/bin/git", only_git / "git")
    monkeypatch.setenv("PATH", str(only_git))
    cache = cache_with(Tools())
    with pytest.raises(RendererMissing, match=r"helm is needed .* 'helm' on PATH \(STOPLINE_HELM is unset\)"):
        cache.manifests(upstream.url, sha, "chart", render=HelmTemplate(namespace="a"))


def test_tool_failure_message_is_trimmed_relative_and_scrubbed(
    upstream: Upstream, tmp_path: Path, cache_with: Callable[[Tools], RepoCache]
) -> None:
    sha = commit(upstream, KUSTOMIZE_TREE)
    failing = fake_tool(
        tmp_path,
        "kustomize",
        """\
        i=0; while [ $i -lt 40 ]; do echo "noise line $i" >&2; i=$((i+1)); done
        echo "Error: accumulating resources from 'https://bob:hunter2@git.example.test/x.git':" \\
          "in $2/kustomization.yaml" >&2
        exit 1
        """,
    )
    cache = cache_with(Tools(kustomize=failing))
    with pytest.raises(RenderError) as info:
        cache.manifests(upstream.url, sha, "deploy/overlays/prod", render=KustomizeBuild())
    message = str(info.value)
    assert "hunter2" not in message
    assert "noise line 0 " not in message and "noise line 39" in message  # only the last lines
    assert "in deploy/overlays/prod/kustomization.yaml" in message
    assert "(exit 1)" in message


def test_trim_message_caps_the_length(tmp_path: Path) -> None:
    text = trim_message("x" * 10_000, tmp_path, limit=100)
    assert len(text) == 100 and text.startswith("…")


def test_timeout_kills_the_tool_and_its_children(
    upstream: Upstream, tmp_path: Path, cache_with: Callable[[Tools], RepoCache]
) -> None:
    sha = commit(upstream, KUSTOMIZE_TREE)
    pidfile = tmp_path / "child.pid"
    slow = fake_tool(tmp_path, "kustomize", f"sleep 300 & echo $! > {pidfile}\nwait\n")
    started = time.monotonic()
    cache = cache_with(Tools(kustomize=slow, timeout=0.5))
    with pytest.raises(RenderTimeout, match=r"kustomize build deploy/overlays/prod .* did not finish within 0.5s"):
        cache.manifests(upstream.url, sha, "deploy/overlays/prod", render=KustomizeBuild())
    assert time.monotonic() - started < 10
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child), "the tool's child outlived the timeout"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_tools_get_no_credentials_or_kubeconfig(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache_with: Callable[[Tools], RepoCache]
) -> None:
    sha = commit(upstream, KUSTOMIZE_TREE)
    monkeypatch.setenv("GIT_PASSWORD", "hunter2")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter3")
    monkeypatch.setenv("KUBECONFIG", "/root/.kube/config")
    dump = fake_tool(
        tmp_path, "kustomize", "printf -- 'kind: Env\\nmetadata: {name: env}\\ntext: |\\n'; env | sed 's/^/  /'\n"
    )
    [doc] = cache_with(Tools(kustomize=dump)).manifests(upstream.url, sha, "deploy/base", render=KustomizeBuild())
    env = dict(line.split("=", 1) for line in doc["text"].splitlines() if "=" in line)
    assert "hunter2" not in doc["text"] and "hunter3" not in doc["text"]
    assert env["KUBECONFIG"] == os.devnull
    assert not Path(env["HOME"]).exists()  # a throwaway home, removed afterwards


# -- options from the models -----------------------------------------------------------------------


def _source(**extra: Any) -> GitSource:
    return GitSource.model_validate({"repo": "https://git.example.test/app.git", **extra})


def test_render_options_from_the_source() -> None:
    assert render_options(_source(), "shop") is None
    assert render_options(_source(kustomize={}), "shop") == KustomizeBuild()
    helm = render_options(
        _source(helm={"releaseName": "web", "valuesFiles": ["values-prod.yaml"], "values": {"b": 1, "a": {"c": 2}}}),
        "shop",
    )
    assert helm == HelmTemplate(
        namespace="shop",
        release_name="web",
        values_files=("values-prod.yaml",),
        values_json='{"a":{"c":2},"b":1}',
    )
    assert isinstance(helm, HelmTemplate) and helm.values == {"a": {"c": 2}, "b": 1}
    # Equal values in another order are the same options (and the same cache key).
    again = render_options(_source(helm={"releaseName": "web", "valuesFiles": ["values-prod.yaml"],
                                         "values": {"a": {"c": 2}, "b": 1}}), "shop")  # fmt: skip
    assert again == helm and hash(again) == hash(helm)


# -- the examples render as their READMEs say ------------------------------------------------------

EXAMPLES = ROOT / "examples"


def example_release(folder: str) -> tuple[dict[str, str], GitSource]:
    """The files of ``examples/<folder>/repo`` and the source of its release.yaml."""
    repo = EXAMPLES / folder / "repo"
    files = {str(p.relative_to(repo)): p.read_text() for p in sorted(repo.rglob("*")) if p.is_file()}
    release = yaml.safe_load((EXAMPLES / folder / "release.yaml").read_text())
    source = {k: v for k, v in release["spec"]["source"].items() if k != "revision"}
    return files, GitSource.model_validate(source)


def test_example_04_kustomize_renders(upstream: Upstream, renderer: RepoCache) -> None:
    files, source = example_release("04-kustomize")
    sha = upstream.commit(files, "example 04")
    options = render_options(source, "shop")
    objects = by_kind(renderer.manifests(upstream.url, sha, source.path, render=options))
    assert sorted(objects) == [
        ("ConfigMap", "web-config-7t96654994"),  # the hash the README names
        ("Deployment", "web"),
        ("Deployment", "worker"),
        ("Service", "db"),
        ("Service", "web"),
        ("StatefulSet", "db"),
    ]
    web = objects[("Deployment", "web")]["spec"]
    assert web["replicas"] == 3
    assert web["template"]["spec"]["containers"][0]["image"] == "registry.example/web:v2"
    assert web["template"]["spec"]["containers"][0]["envFrom"] == [{"configMapRef": {"name": "web-config-7t96654994"}}]
    assert objects[("ConfigMap", "web-config-7t96654994")]["data"] == {"LOG_LEVEL": "warn", "CHECKOUT_V2": "off"}


def test_example_05_helm_renders(upstream: Upstream, renderer: RepoCache) -> None:
    files, source = example_release("05-helm")
    sha = upstream.commit(files, "example 05")
    options = render_options(source, "shop")
    objects = by_kind(renderer.manifests(upstream.url, sha, source.path, render=options))
    assert sorted(objects) == [
        ("ConfigMap", "shop-config"),
        ("Deployment", "shop-web"),
        ("Deployment", "shop-worker"),
        ("Service", "shop-web"),
    ]  # no test hook
    web = objects[("Deployment", "shop-web")]
    assert web["metadata"]["namespace"] == "shop"
    assert web["spec"]["replicas"] == 3
    container = web["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/shop-web:v2"
    assert container["env"] == [{"name": "GREETING", "value": "hello from the Release"}]
    assert objects[("ConfigMap", "shop-config")]["data"] == {"LOG_LEVEL": "warn"}


def test_trees_left_by_a_killed_process_are_swept_once(
    upstream: Upstream, tmp_path: Path, cache_with: Callable[[Tools], RepoCache]
) -> None:
    sha = commit(upstream, KUSTOMIZE_TREE)
    dump = fake_tool(tmp_path, "kustomize", "echo 'kind: Empty'\n")
    cache = cache_with(Tools(kustomize=dump))
    renders = cache.root / ".render"
    stale, fresh = renders / "render-stale", renders / "render-fresh"
    for leftover in (stale, fresh):
        (leftover / "tree").mkdir(parents=True)
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    cache.manifests(upstream.url, sha, "deploy/base", render=KustomizeBuild())
    assert sorted(p.name for p in renders.iterdir()) == ["render-fresh"]  # maybe another process's


ESCAPES: list[tuple[str, str]] = [
    ("absolute-base", "resources: [/etc/stopline]\n"),
    ("dotdot-base", "resources: [../../../../../../etc]\n"),
    ("file-url", "resources: ['file:///var/cache/stopline/0123abcd//deploy?ref=main']\n"),
    ("git-file-url", "resources: ['git::file:///var/cache/stopline/0123abcd']\n"),
    ("component", "components: [/srv/other-tenant/overlay]\n"),
    ("legacy-bases", "bases: [/srv/other-tenant/base]\n"),
]


@pytest.mark.parametrize(("case", "kustomization"), ESCAPES, ids=[c for c, _ in ESCAPES])
def test_kustomizations_that_reach_outside_the_repository_are_refused(
    upstream: Upstream, renderer: RepoCache, case: str, kustomization: str
) -> None:
    files = {**KUSTOMIZE_TREE, "deploy/other/kustomization.yaml": kustomization}
    sha = commit(upstream, files)
    # Every kustomization in the tree is checked, not only the one built: a base may be reached later.
    with pytest.raises(ManifestError, match=r"deploy/other/kustomization.yaml at revision .* points outside"):
        renderer.manifests(upstream.url, sha, "deploy/overlays/prod", render=KustomizeBuild())


def test_remote_bases_are_left_to_kustomize(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "deploy").mkdir(parents=True)
    (tree / "deploy" / "kustomization.yaml").write_text(
        "resources:\n  - https://git.example.test/base.git//deploy?ref=v1\n  - git@git.example.test:org/base.git\n"
        "  - ssh://git@git.example.test/org/base.git\n  - ../deploy/web.yaml\n"
    )
    check_kustomizations(tree, "at revision x")  # no error
