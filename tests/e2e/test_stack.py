"""Smoke tests: every part of the local e2e stack is real and does what the other e2e tests rely on."""

from __future__ import annotations

import copy
import json
import math
import random
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import (
    CRD_DIR,
    REPO_ROOT,
    STACK_SH,
    CommandError,
    Stack,
    apply,
    branch_sha,
    crd_established,
    crd_files,
    crd_names,
    delete_metric,
    git,
    git_log,
    git_show,
    k8s_name,
    kubectl,
    kubectl_json,
    make_repo,
    promql,
    push_commit,
    sample_value,
    set_metric,
    wait_deployment_available,
    wait_for,
    wait_scraped,
)

STOPLINE_CRDS = {"releases.stopline.dev", "tracks.stopline.dev", "experiments.stopline.dev"}
# Every example's Kubernetes objects; an example's repo/ is application source (a kustomization, a Helm
# chart) that stopline renders, not objects to apply as they are (test_examples.py pushes and renders it).
EXAMPLE_FILES = sorted(
    p
    for ext in ("yaml", "yml")
    for p in (REPO_ROOT / "examples").rglob(f"*.{ext}")
    if "repo" not in p.relative_to(REPO_ROOT / "examples").parts[1:]
)
APP_DEPLOYMENTS = {"web-canary", "web", "chat", "api"}


def test_status_reports_every_part_ok(stack: Stack) -> None:
    proc = subprocess.run(["bash", str(STACK_SH), "status"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    parts = {line.split(":")[0].split(" ")[0] for line in proc.stdout.splitlines() if ": ok" in line}
    assert parts == {"cluster", "prometheus", "exporter", "git"}, proc.stdout


# ------------------------------------------------------------------------------------------- CRDs
def test_stopline_crds_are_established(stack: Stack) -> None:
    files = crd_files()
    assert files, f"{CRD_DIR} holds no CRD YAML (run `make crds`)"
    names = set(crd_names(files))
    assert names >= STOPLINE_CRDS
    assert {n for n in names if crd_established(n)} == names
    served = set(kubectl("api-resources", "--api-group=stopline.dev", "-o", "name").stdout.split())
    assert served >= STOPLINE_CRDS


def release_crd_schema() -> dict[str, Any]:
    doc = yaml.safe_load((CRD_DIR / "releases.stopline.dev.yaml").read_text())
    version = next(v for v in doc["spec"]["versions"] if v.get("storage"))
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def gate_bound_message() -> str:
    """The CRD's own message for a query gate without min/max/maxIncreasePercent/maxDecreasePercent."""
    gate = release_crd_schema()["properties"]["spec"]["properties"]["gates"]["items"]
    for rule in gate.get("x-kubernetes-validations", []):
        if "has(self.max)" in rule["rule"] and "has(self.maxIncreasePercent)" in rule["rule"]:
            return str(rule["message"])
    raise AssertionError("releases CRD has no validation rule requiring a gate bound")


def valid_release(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "stopline.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": name},
        "spec": {
            "source": {
                "repo": "git://127.0.0.1:9418/app.git",
                "branch": "main",
                "revision": "3f9c2e1d5b7a4c8e9f0a1b2c3d4e5f60718293a4",
                "path": "deploy/",
            },
            "phases": [{"name": "canary", "deployments": ["web-canary"], "hold": "1s"}],
            "gates": [{"name": "errors", "query": "sum(errors)", "max": 1}],
        },
    }


def test_valid_release_is_accepted(ns: str) -> None:
    kubectl("-n", ns, "create", "-f", "-", input=json.dumps(valid_release("ok")))
    assert kubectl_json("-n", ns, "get", "release", "ok")["spec"]["phases"][0]["name"] == "canary"


def no_phases(release: dict[str, Any]) -> None:
    release["spec"]["phases"] = []


def unbounded_gate(release: dict[str, Any]) -> None:
    del release["spec"]["gates"][0]["max"]


@pytest.mark.parametrize(
    ("break_release", "expected"),
    [
        (no_phases, lambda: "should have at least 1 items"),
        (unbounded_gate, gate_bound_message),
    ],
    ids=["phases-empty", "gate-without-bound"],
)
def test_invalid_release_is_rejected_by_the_api_server(ns: str, break_release: Any, expected: Any) -> None:
    release = copy.deepcopy(valid_release("bad"))
    break_release(release)
    proc = kubectl("-n", ns, "create", "-f", "-", input=json.dumps(release), check=False)
    assert proc.returncode != 0, f"API server accepted an invalid Release: {proc.stdout}"
    assert "is invalid" in proc.stderr
    assert expected() in proc.stderr
    assert kubectl("-n", ns, "get", "release", "bad", check=False).returncode != 0


# ------------------------------------------------------------------------------------------- cluster
def fake_nodes() -> set[str]:
    nodes = kubectl_json("get", "nodes")["items"]
    return {
        n["metadata"]["name"] for n in nodes if n["metadata"].get("annotations", {}).get("kwok.x-k8s.io/node") == "fake"
    }


def deployment(name: str, image: str, replicas: int, tier: str) -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app": name, "tier": tier}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name, "tier": tier}},
                    "spec": {"containers": [{"name": "app", "image": image}]},
                },
            },
        }
    )


def test_deployment_becomes_available_on_fake_nodes_and_rolls_out(stack: Stack, ns: str) -> None:
    apply(deployment("web", "registry.example/app:v1", 3, "web"), ns)
    wait_deployment_available(ns, "web", timeout=60)
    pods = kubectl_json("-n", ns, "get", "pods", "-l", "app=web")["items"]
    assert len(pods) == 3
    assert {p["status"]["phase"] for p in pods} == {"Running"}
    if stack.backend == "kwok":
        fakes = fake_nodes()
        assert len(fakes) >= 2
        assert {p["spec"]["nodeName"] for p in pods} <= fakes

    apply(deployment("web", "registry.example/app:v2", 3, "web"), ns)

    def rolled_out() -> bool:
        obj = kubectl_json("-n", ns, "get", "deployment", "web")
        status = obj["status"]
        return bool(
            status.get("observedGeneration", 0) >= obj["metadata"]["generation"]
            and status.get("updatedReplicas") == 3
            and status.get("availableReplicas") == 3
            and status.get("replicas") == 3
        )

    wait_for(rolled_out, timeout=60, message="web rolled out to v2")
    images = {
        p["spec"]["containers"][0]["image"] for p in kubectl_json("-n", ns, "get", "pods", "-l", "app=web")["items"]
    }
    assert images == {"registry.example/app:v2"}


# ------------------------------------------------------------------------------------------- metrics
def series(query: str) -> list[float]:
    return [sample_value(s) for s in promql(query)]


def test_exporter_metric_is_returned_by_promql_within_seconds(ns: str) -> None:
    value = round(random.uniform(1, 100), 3)
    query = f'stopline_e2e_smoke{{namespace="{ns}",tier="chat"}}'
    started = time.monotonic()
    set_metric("stopline_e2e_smoke", value, namespace=ns, tier="chat")
    assert wait_for(lambda: series(query) == [value], timeout=5, message=f"{query} == {value}")
    first_seen = time.monotonic() - started

    set_metric("stopline_e2e_smoke", value * 2, namespace=ns, tier="chat")
    wait_for(lambda: series(query) == [value * 2], timeout=5, message=f"{query} == {value * 2}")

    set_metric("stopline_e2e_smoke", math.nan, namespace=ns, tier="chat")
    wait_for(lambda: [v for v in series(query) if math.isnan(v)], timeout=5, message=f"{query} is NaN")

    assert delete_metric("stopline_e2e_smoke", namespace=ns, tier="chat") == 1
    wait_for(lambda: series(query) == [], timeout=5, message=f"{query} gone (stale) after delete")
    assert first_seen < 5


def test_wait_scraped_covers_every_change(ns: str) -> None:
    for i in range(5):
        set_metric("stopline_e2e_batch", float(i), namespace=ns, index=str(i))
    wait_scraped(timeout=5)
    got = {s["metric"]["index"]: sample_value(s) for s in promql(f'stopline_e2e_batch{{namespace="{ns}"}}')}
    assert got == {str(i): float(i) for i in range(5)}
    for i in range(5):
        delete_metric("stopline_e2e_batch", namespace=ns, index=str(i))


def test_exporter_rejects_an_invalid_metric_name(stack: Stack) -> None:
    with pytest.raises(RuntimeError, match="HTTP 400"):
        set_metric("1-not-a-metric", 1.0)


# ------------------------------------------------------------------------------------------- git
def test_pushed_commit_clones_back_with_the_same_sha(stack: Stack, request: pytest.FixtureRequest) -> None:
    name = k8s_name(request.node.name)
    url = make_repo(name, {"deploy/a.yaml": "a: 1\n", "README.md": "hi\n"})
    assert url == f"{stack.git_url}/{name}.git"
    first = branch_sha(url)
    sha = push_commit(url, {"deploy/a.yaml": "a: 2\n"}, "a v2", delete=["README.md"])
    assert len(sha) == 40 and sha != first

    with tempfile.TemporaryDirectory() as tmp:
        git("clone", "-q", url, str(Path(tmp) / "c"))
        assert git("rev-parse", "HEAD", cwd=Path(tmp) / "c").stdout.strip() == sha
        assert (Path(tmp) / "c" / "deploy" / "a.yaml").read_text() == "a: 2\n"
        assert not (Path(tmp) / "c" / "README.md").exists()

    assert branch_sha(url) == sha
    assert git_log(url) == [(sha, "a v2"), (first, "initial commit")]
    assert git_show(url, first, "deploy/a.yaml") == "a: 1\n"
    with pytest.raises(CommandError):
        git_show(url, sha, "README.md")


def test_seeded_app_repo_deploys_four_deployments(stack: Stack, ns: str) -> None:
    log = git_log(stack.app_repo_url)
    assert log, "app.git has no commits"
    manifests = {}
    for name in APP_DEPLOYMENTS:
        doc = yaml.safe_load(git_show(stack.app_repo_url, "main", f"deploy/{name}.yaml"))
        assert doc["kind"] == "Deployment" and doc["metadata"]["name"] == name
        manifests[name] = doc
    assert manifests["chat"]["metadata"]["labels"]["tier"] == "chat"
    apply("\n---\n".join(yaml.safe_dump(d) for d in manifests.values()), ns)
    for name in APP_DEPLOYMENTS:
        wait_deployment_available(ns, name, timeout=60)


# ------------------------------------------------------------------------------------------- examples
def test_examples_exist() -> None:
    assert EXAMPLE_FILES, "examples/ holds no YAML"


def in_namespace(text: str, namespace: str) -> str:
    """Every namespaced document of an example moved into the test's namespace."""
    docs = [d for d in yaml.safe_load_all(text) if d]
    for doc in docs:
        if doc.get("kind") != "Namespace":
            doc.setdefault("metadata", {})["namespace"] = namespace
    return "\n---\n".join(yaml.safe_dump(d) for d in docs)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=[str(p.relative_to(REPO_ROOT)) for p in EXAMPLE_FILES])
def test_example_is_accepted_by_server_side_dry_run(ns: str, path: Path) -> None:
    try:
        kubectl("apply", "--dry-run=server", "-f", "-", input=in_namespace(path.read_text(), ns))
    except CommandError as exc:
        pytest.fail(f"{path.relative_to(REPO_ROOT)} rejected: {exc}", pytrace=False)


def test_the_chart_is_accepted_by_the_api_server(stack: Stack, ns: str) -> None:
    """The chart as `helm install` would send it (default values, HA with the Lease FlowSchema; and
    namespaced RBAC), checked by the real API server with a server-side dry run."""
    if not stack.helm:
        pytest.fail("the stack has no helm (STOPLINE_HELM): hack/install-helm.sh builds it", pytrace=False)
    chart = REPO_ROOT / "charts" / "stopline"
    for values in ([], ["--set", f"watch.namespaces={{{ns}}}"]):
        rendered = subprocess.run(
            [stack.helm, "template", "stopline", str(chart), "--namespace", ns, "--skip-crds", *values],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        kinds = {d["kind"] for d in yaml.safe_load_all(rendered) if d}
        assert {"Deployment", "FlowSchema", "PodDisruptionBudget", "Role"} <= kinds, kinds
        try:
            kubectl("apply", "--dry-run=server", "-f", "-", input=rendered)
        except CommandError as exc:
            pytest.fail(f"chart rendered with {values or 'defaults'} rejected: {exc}", pytrace=False)
