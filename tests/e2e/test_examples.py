"""Every examples/NN-*/ folder works as its README says, on the real stack."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from dsl import App, Given, Then, app_files
from helpers import (
    REPO_ROOT,
    branch_sha,
    get_stack,
    kubectl,
    kubectl_json,
    make_repo,
    run,
    set_metric,
    until,
    wait_for,
    wait_scraped,
)
from operator_proc import Controller

EXAMPLES = REPO_ROOT / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*/*.yaml"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def example(path: str) -> dict[str, Any]:
    docs = documents(EXAMPLES / path)
    assert len(docs) == 1, f"{path} holds {len(docs)} documents"
    return docs[0]


def in_namespace(doc: dict[str, Any], ns: str) -> dict[str, Any]:
    return {**doc, "metadata": {**doc["metadata"], "namespace": ns}}


def apply_doc(doc: dict[str, Any], *extra: str) -> str:
    return kubectl("apply", *extra, "-f", "-", input=json.dumps(doc)).stdout


def stopline(*args: str) -> str:
    """The README's `stopline ...` command against the stack."""
    env = {"KUBECONFIG": str(get_stack().kubeconfig)}
    return run([sys.executable, "-m", "controller.cli", *args], env=env, cwd=REPO_ROOT, timeout=60).stdout


def printer_table(plural: str, ns: str) -> list[list[str]]:
    """`kubectl get <plural> -n ns`, split into words per line (header first)."""
    return [line.split() for line in kubectl("get", plural, "-n", ns).stdout.splitlines()]


def test_every_example_folder_has_a_readme_and_yaml() -> None:
    folders = sorted(p for p in EXAMPLES.iterdir() if p.is_dir())
    assert [f.name for f in folders] == [
        "01-basic-release",
        "02-track",
        "03-experiment",
        "04-kustomize",
        "05-helm",
        "06-experiment-growth",
        "07-gate-kinds",
    ]
    for folder in folders:
        assert (folder / "README.md").is_file(), folder
        assert list(folder.glob("*.yaml")), folder


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=[str(p.relative_to(EXAMPLES)) for p in EXAMPLE_FILES])
def test_example_is_accepted_by_the_api_server(path: Path, ns: str) -> None:
    docs = documents(path)
    assert docs, f"{path} is empty"
    for doc in docs:
        out = apply_doc(in_namespace(doc, ns), "--dry-run=server")
        assert f"{doc['kind'].lower()}.stopline.dev/{doc['metadata']['name']}" in out, out
        assert "(server dry run)" in out, out


def demo_metrics(ns: str, chat_load: float = 4.1, registrations: float = 120) -> None:
    set_metric("stopline_demo_chat_load", chat_load, namespace=ns)
    set_metric("stopline_demo_registrations", registrations, namespace=ns)
    wait_scraped(timeout=60)


def test_01_basic_release_succeeds(controller: Controller, given: Given, then: Then, ns: str) -> None:
    app: App = given.app(f"{ns}-ex01")
    extra = {
        f"deploy/{p.name}": p.read_text() for p in sorted((EXAMPLES / "01-basic-release" / "deploy").glob("*.yaml"))
    }
    sha = app.commit_files({**app_files("v2"), **extra}, "app v2 with chat's config, Service and store")
    demo_metrics(ns)
    release = in_namespace(example("01-basic-release/release.yaml"), ns)
    release["spec"]["source"] = {**release["spec"]["source"], "repo": app.repo, "revision": sha}
    release["spec"]["prometheus"] = {"url": get_stack().prometheus_url}
    apply_doc(release)

    name = release["metadata"]["name"]
    status = then.release_reaches(name, "Succeeded", "RolledBack", "Failed", timeout=240)
    assert status["phase"] == "Succeeded", status.get("message")
    assert [(p["name"], p["deployments"], p["state"]) for p in status["phases"]] == [
        ("canary", ["web-canary"], "Passed"),
        ("chat", ["chat"], "Passed"),
        ("everything-else", ["api", "web"], "Passed"),
    ]
    chat = status["phases"][1]
    assert chat["workloads"] == ["Deployment/chat", "StatefulSet/chat-store"]
    assert chat["objects"] == [
        "ConfigMap/chat-config",
        "Deployment/chat",
        "StatefulSet/chat-store",
        "Service/chat",
    ]
    for deployment in app.deployments:
        assert app.image(deployment) == f"registry.example/{deployment}:v2"
    for phase in ("canary", "chat", "everything-else", "watch"):
        load = then.gauge(status, "chat-loadavg", phase)
        assert (load["verdict"], load["prePush"], load["postPush"]) == ("Pass", 4.1, 4.1)
        assert load["threshold"] == ">6 or >+25%"
        registrations = then.gauge(status, "registrations", phase)
        assert (registrations["verdict"], registrations["prePush"]) == ("Pass", 120)
        assert registrations["threshold"] == "<-20%"

    # The README's commands.
    table = printer_table("releases", ns)
    assert table[0] == ["NAME", "REVISION", "PHASE", "CURRENT", "FAILED-GATE", "AGE"]
    assert table[1][:3] == [name, sha, "Succeeded"]
    shown = json.loads(stopline("status", name, "-n", ns, "-o", "json"))
    assert (shown["name"], shown["revision"], shown["status"]["phase"]) == (name, sha, "Succeeded")
    assert stopline("status", name, "-n", ns)  # the table form runs too


def test_02_track_pushes_the_branch_tip(controller: Controller, given: Given, then: Then, ns: str) -> None:
    app = given.app(f"{ns}-ex02")
    tip = app.commit("v2")
    demo_metrics(ns)
    track = in_namespace(example("02-track/track.yaml"), ns)
    track["spec"]["source"] = {**track["spec"]["source"], "repo": app.repo}
    track["spec"]["template"]["prometheus"] = {"url": get_stack().prometheus_url}
    apply_doc(track)

    name = track["metadata"]["name"]
    status = until(
        lambda: then.status("track", name), lambda s: s.get("lastGood") == tip, 240, f"track {name} to push {tip[:7]}"
    )
    release = f"{name}-{tip[:7]}"
    assert status["lastSeen"] == tip
    assert [(h["revision"], h["release"], h["result"]) for h in status["history"]] == [(tip, release, "Succeeded")]
    assert not (status.get("commitLock") or {}).get("locked")
    rel = then.status("release", release)
    assert rel["phase"] == "Succeeded"
    assert [p["name"] for p in rel["phases"]] == ["canary", "rest"]
    for deployment in app.deployments:
        assert app.image(deployment) == f"registry.example/{deployment}:v2"

    # The README's commands.
    table = printer_table("tracks", ns)
    assert table[0] == ["NAME", "BRANCH", "LOCKED", "CURRENT", "LAST-GOOD", "AGE"]
    assert table[1][:2] == [name, "main"]
    shown = json.loads(stopline("status", name, "-n", ns, "-o", "json"))
    assert (shown["kind"], shown["branch"], shown["locked"], shown["status"]["lastGood"]) == (
        "Track",
        "main",
        False,
        tip,
    )


def test_03_experiment_is_published(controller: Controller, ns: str) -> None:
    experiment = in_namespace(example("03-experiment/experiment.yaml"), ns)
    apply_doc(experiment)

    def published() -> dict[str, Any] | None:
        proc = kubectl("get", "configmap", "stopline-experiments", "-n", ns, "-o", "json", check=False)
        if proc.returncode != 0:
            return None
        text = (json.loads(proc.stdout).get("data") or {}).get("GDCEurope2011.json")
        return None if text is None else dict(json.loads(text))

    config = wait_for(published, timeout=90, message="GDCEurope2011.json in ConfigMap stopline-experiments")
    assert config == {
        "key": "GDCEurope2011",
        "seed": "GDCEurope2011",
        "rollout": 10.0,
        "audience": [],
        "branches": {"control": 0.5, "enhanced": 0.5},
        "closeOn": None,
        "hashVersion": 2,
        "enabled": True,
    }
    status = until(
        lambda: dict(kubectl_json("get", "experiment", "gdc-europe-2011", "-n", ns).get("status") or {}),
        lambda s: bool(s.get("report")),
        90,
        "the example's report",
    )
    assert [row["branch"] for row in status["report"]] == ["control", "enhanced"]
    assert status["configMap"] == "stopline-experiments"

    # The README's commands.
    table = printer_table("experiments", ns)
    assert table[0] == ["NAME", "ROLLOUT", "DECISION", "P-VALUE", "AGE"]
    assert table[1][:3] == ["gdc-europe-2011", "10", status["decision"]]
    shown = json.loads(stopline("experiment", "report", "gdc-europe-2011", "-n", ns, "-o", "json"))
    assert (shown["key"], shown["branches"], shown["decision"]) == (
        "GDCEurope2011",
        {"control": 0.5, "enhanced": 0.5},
        status["decision"],
    )
    assert stopline("experiment", "report", "gdc-europe-2011", "-n", ns)  # the table form runs too


def test_06_growth_experiment_publishes_both_payloads_and_reports(controller: Controller, ns: str) -> None:
    apply_doc(in_namespace(example("06-experiment-growth/experiment.yaml"), ns))

    def data() -> dict[str, str] | None:
        proc = kubectl("get", "configmap", "stopline-experiments", "-n", ns, "-o", "json", check=False)
        found = dict(json.loads(proc.stdout).get("data") or {}) if proc.returncode == 0 else {}
        return found if "CheckoutRedesign.growthbook.json" in found else None

    published = wait_for(data, timeout=90, message="CheckoutRedesign payloads in ConfigMap stopline-experiments")
    config = json.loads(published["CheckoutRedesign.json"])
    assert config["force"] == {"users": {"qa-alice": "redesign", "qa-bob": "control"}, "groups": {"qa": "redesign"}}
    rules = json.loads(published["CheckoutRedesign.growthbook.json"])["features"]["CheckoutRedesign"]["rules"]
    assert [r["id"] for r in rules] == ["force-users-redesign", "force-users-control", "force-group-qa", "experiment"]
    status = until(
        lambda: dict(kubectl_json("get", "experiment", "checkout-redesign", "-n", ns).get("status") or {}),
        lambda s: bool(s.get("report")),
        90,
        "the example's report",
    )
    assert status["decision"] == "Running"  # no counts yet: collecting samples
    assert status["cuped"]["error"] is not None  # nothing to adjust yet, said rather than NaN
    out = stopline("experiment", "report", "checkout-redesign", "-n", ns)
    assert "Forced (not counted): user qa-alice → redesign, user qa-bob → control, group qa → redesign" in out


def push_example_repo(folder: str, name: str) -> tuple[str, str]:
    """``examples/<folder>/repo`` as a fresh repository on the stack's Git server: (url, revision)."""
    root = EXAMPLES / folder / "repo"
    files = {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}
    url = make_repo(name, files, message=f"example {folder}")
    return url, branch_sha(url)


def rendered_release(folder: str, ns: str) -> tuple[dict[str, Any], str]:
    """The example's release.yaml in ``ns`` with its repo pushed to the stack; (release, revision)."""
    url, sha = push_example_repo(folder, f"{ns}-{folder}")
    release = in_namespace(example(f"{folder}/release.yaml"), ns)
    release["spec"]["source"] = {**release["spec"]["source"], "repo": url, "revision": sha}
    release["spec"]["prometheus"] = {"url": get_stack().prometheus_url}
    set_metric("stopline_demo_error_rate", 0.01, namespace=ns)
    wait_scraped(timeout=60)
    return release, sha


def live_deployment(ns: str, name: str) -> dict[str, Any]:
    deployment: dict[str, Any] = kubectl_json("get", "deployment", name, "-n", ns)
    return deployment


def kustomize_build(path: Path) -> list[dict[str, Any]]:
    """What the stack's kustomize renders for ``path`` (the expected objects, hashes included)."""
    out = run([get_stack().kustomize or "kustomize", "build", str(path)], timeout=60).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_04_kustomize_overlay_is_rendered_and_pushed(controller: Controller, then: Then, ns: str) -> None:
    release, sha = rendered_release("04-kustomize", ns)
    apply_doc(release)

    name = release["metadata"]["name"]
    status = then.release_reaches(name, "Succeeded", "RolledBack", "Failed", timeout=240)
    assert status["phase"] == "Succeeded", status.get("message")
    assert [(p["name"], p["deployments"], p["state"]) for p in status["phases"]] == [
        ("web", ["web"], "Passed"),
        ("rest", ["worker"], "Passed"),
    ]
    expected = {
        (d["kind"], d["metadata"]["name"]): d
        for d in kustomize_build(EXAMPLES / "04-kustomize" / "repo" / "deploy" / "overlays" / "prod")
    }
    [config] = [n for kind, n in expected if kind == "ConfigMap"]
    assert config == "web-config-7t96654994"  # the README's hash
    for deployment in ("web", "worker"):
        live = live_deployment(ns, deployment)
        want = expected[("Deployment", deployment)]
        container = live["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == f"registry.example/{deployment}:v2"  # the overlay's image tag
        assert container["envFrom"] == [{"configMapRef": {"name": config}}]  # the generator's hash reference
        assert live["spec"]["replicas"] == want["spec"]["replicas"]
        assert live["metadata"]["labels"]["app.kubernetes.io/part-of"] == "shop"  # the base's labels
    assert live_deployment(ns, "web")["spec"]["replicas"] == 3  # the overlay's replicas
    assert printer_table("releases", ns)[1][:3] == [name, sha, "Succeeded"]


def test_05_helm_chart_is_rendered_and_pushed(controller: Controller, then: Then, ns: str) -> None:
    release, sha = rendered_release("05-helm", ns)
    apply_doc(release)

    name = release["metadata"]["name"]
    status = then.release_reaches(name, "Succeeded", "RolledBack", "Failed", timeout=240)
    assert status["phase"] == "Succeeded", status.get("message")
    assert [(p["name"], p["deployments"], p["state"]) for p in status["phases"]] == [
        ("web", ["shop-web"], "Passed"),
        ("rest", ["shop-worker"], "Passed"),
    ]
    web = live_deployment(ns, "shop-web")
    assert web["spec"]["replicas"] == 3  # values-prod.yaml
    assert web["metadata"]["labels"]["app.kubernetes.io/instance"] == "shop"  # release name = chart name
    container = web["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/shop-web:v2"
    assert container["env"] == [{"name": "GREETING", "value": "hello from the Release"}]  # inline values
    assert len(web["spec"]["template"]["metadata"]["annotations"]["checksum/config"]) == 64
    worker = live_deployment(ns, "shop-worker")
    assert worker["spec"]["replicas"] == 1
    assert worker["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/shop-worker:v2"
    proc = kubectl("get", "pod", "shop-test-connection", "-n", ns, check=False)
    assert proc.returncode != 0  # the helm test hook is never pushed
    assert printer_table("releases", ns)[1][:3] == [name, sha, "Succeeded"]
