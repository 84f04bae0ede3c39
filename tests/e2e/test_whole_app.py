"""Whole-application pushes on the real stack (issue 11): every namespaced object, phases by workload kind,
exact rollback of all of it (prune included), scope checks, and no Secret data outside Secrets."""

from __future__ import annotations

import json
from typing import Any

from dsl import Then, When, gate
from dsl_objects import (
    PHASES,
    SECRET_VALUE,
    ObjectsThen,
    WholeApp,
    app_objects,
    install_widget_crd,
    key_of,
    widget,
)
from helpers import apply, branch_sha, git_log, set_metric, wait_for, wait_scraped
from operator_proc import Controller

LOAD = "stopline_e2e_whole_app_load"
RELEASE_API = "stopline.dev/v1alpha1"


def release(
    ns: str,
    app: WholeApp,
    revision: str,
    name: str,
    *,
    gates: list[dict[str, Any]] | None = None,
    phases: list[dict[str, Any]] | None = None,
    prune: bool = True,
) -> str:
    body = {
        "apiVersion": RELEASE_API,
        "kind": "Release",
        "metadata": {"name": name},
        "spec": {
            "source": {"repo": app.repo, "branch": "main", "revision": revision, "path": "deploy/"},
            "phases": phases or PHASES,
            "gates": gates or [],
            "prune": prune,
        },
    }
    apply(json.dumps(body), ns)
    return name


def reverts(app: WholeApp) -> list[str]:
    return [subject for _, subject in git_log(app.repo) if subject.startswith("stopline: revert")]


def test_a_plain_yaml_app_of_every_kind_goes_out_in_three_phases(
    controller: Controller, when: When, then: Then, ns: str
) -> None:
    install_widget_crd()
    objects = {**app_objects("v1"), "widget": widget("gears", 3)}
    app = WholeApp.create(ns, f"{ns}-app", objects)
    sha = app.commit(objects, "app v1 (again)")

    rel = release(ns, app, sha, "whole-v1")
    status = then.release_reaches(rel, "Succeeded", "RolledBack", "Failed", timeout=120)

    assert status["phase"] == "Succeeded", status.get("message")
    by_phase = {p["name"]: p for p in status["phases"]}
    assert by_phase["canary"]["workloads"] == ["Deployment/web"]
    assert by_phase["data"]["workloads"] == ["StatefulSet/db"]
    assert by_phase["rest"]["workloads"] == ["DaemonSet/agent"]
    assert by_phase["canary"]["objects"] == [
        "Deployment/web",
        "CronJob/nightly",
        "HorizontalPodAutoscaler/web",
        "Service/web",
        "Widget/gears",  # a namespaced custom resource nothing uses: first phase, last tier
    ]
    assert by_phase["data"]["objects"] == ["ConfigMap/db-settings", "Secret/db-creds", "StatefulSet/db"]
    objects_then = ObjectsThen(ns)
    objects_then.live(key_of(o) for o in objects.values())
    assert objects_then.get("StatefulSet/db")["spec"]["template"]["spec"]["containers"][0]["image"] == (  # type: ignore[index]
        "registry.example/db:v1"
    )


def test_a_bad_revision_of_a_whole_app_is_rolled_back_exactly(
    controller: Controller, when: When, then: Then, ns: str
) -> None:
    set_metric(LOAD, 4.0, test=ns)
    wait_scraped()
    v1 = app_objects("v1")
    app = WholeApp.create(ns, f"{ns}-app", v1)
    first = release(ns, app, app.commit(v1, "app v1 (pushed by stopline)"), "whole-v1")
    assert then.release_reaches(first, "Succeeded", "RolledBack", "Failed", timeout=120)["phase"] == "Succeeded"
    objects_then = ObjectsThen(ns)
    keys = [key_of(o) for o in v1.values()]
    before = objects_then.snapshot(keys)

    bad = app_objects(
        "v1",
        db_image="registry.example/db:v2-bad",
        settings="v2-bad",
        service=False,
        extra=True,
        password="changed-" + SECRET_VALUE,
    )
    sha = app.commit(bad, "app v2: new db, no web Service, extra config")
    phases = [dict(PHASES[0]), {**PHASES[1], "hold": "60s"}, dict(PHASES[2])]
    rel = release(ns, app, sha, "whole-v2", phases=phases, gates=[gate("load", LOAD, ns, max=6)])
    status = then.release_in(rel, "Holding", "data")
    assert objects_then.get("Service/web") is None, "the dropped Service was not pruned in phase canary"
    assert objects_then.get("ConfigMap/extra") is not None
    assert objects_then.get("ConfigMap/db-settings")["data"] == {"mode": "v2-bad"}  # type: ignore[index]
    set_metric(LOAD, 7.5, test=ns)
    status = then.release_reaches(rel, "RolledBack", "Failed", timeout=60)

    assert status["phase"] == "RolledBack", status.get("message")
    by_phase = {p["name"]: p for p in status["phases"]}
    assert by_phase["canary"]["pruned"] == ["Service/web"]
    objects_then.same_as(before)
    objects_then.gone("ConfigMap/extra")
    undo = status["undo"]
    assert undo["deletedObjects"] == ["ConfigMap/extra"] and undo["deleted"] == []
    assert {"Service/web", "ConfigMap/db-settings", "StatefulSet/db", "Secret/db-creds"} <= set(undo["objects"])
    assert undo["restored"] == ["web"]  # Deployments by name, as before
    assert status["snapshot"]["secret"] == status["snapshot"]["configMap"]
    assert len(reverts(app)) == 1
    objects_then.secret_nowhere(SECRET_VALUE, rel, controller.log_path)
    objects_then.secret_nowhere("changed-" + SECRET_VALUE, rel, controller.log_path)


def test_cluster_scoped_and_foreign_namespace_objects_fail_the_push(
    controller: Controller, when: When, then: Then, ns: str
) -> None:
    base = app_objects("v1")
    cluster_scoped = {
        **base,
        "role": {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": f"{ns}-reader"},
            "rules": [],
        },
    }
    app = WholeApp.create(ns, f"{ns}-app", cluster_scoped)
    rel = release(ns, app, app.commit(cluster_scoped, "add a ClusterRole"), "scoped")
    status = then.release_reaches(rel, "Failed", "RolledBack", "Succeeded", timeout=60)
    assert status["phase"] == "Failed" and f"ClusterRole/{ns}-reader" in status["message"], status.get("message")

    foreign = {
        **base,
        "other": {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "elsewhere", "namespace": "kube-system"},
            "data": {},
        },
    }
    rel2 = release(ns, app, app.commit(foreign, "a ConfigMap for kube-system"), "foreign")
    status2 = then.release_reaches(rel2, "Failed", "RolledBack", "Succeeded", timeout=60)
    assert status2["phase"] == "Failed" and "ConfigMap/elsewhere (namespace kube-system)" in status2["message"]

    objects_then = ObjectsThen(ns)
    for key in (key_of(o) for o in base.values()):
        assert objects_then.get(key) is None, f"{key} was applied although the push failed"


def test_a_track_with_prune_deletes_what_left_git(controller: Controller, then: Then, ns: str) -> None:
    v1 = app_objects("v1")
    app = WholeApp.create(ns, f"{ns}-app", v1)
    spec = {
        "source": {"repo": app.repo, "branch": "main", "path": "deploy/"},
        "pollInterval": "1s",
        "template": {"phases": PHASES, "prune": True},
    }
    apply(json.dumps({"apiVersion": RELEASE_API, "kind": "Track", "metadata": {"name": "shop"}, "spec": spec}), ns)

    def last_good(sha: str) -> dict[str, Any]:
        found: dict[str, Any] = wait_for(
            lambda: (s := then.status("track", "shop")).get("lastGood") == sha and s,
            timeout=120,
            message=f"track shop to push {sha[:7]}",
        )
        return found

    last_good(branch_sha(app.repo))
    objects_then = ObjectsThen(ns)
    objects_then.live(key_of(o) for o in v1.values())

    sha = app.commit(app_objects("v2", service=False), "app v2: the web Service is gone")
    last_good(sha)
    objects_then.gone("Service/web")
    release = then.status("release", f"shop-{sha[:7]}")
    assert release["phase"] == "Succeeded"
    assert next(p for p in release["phases"] if p["name"] == "canary")["pruned"] == ["Service/web"]
    assert objects_then.get("StatefulSet/db")["spec"]["template"]["spec"]["containers"][0]["image"] == (  # type: ignore[index]
        "registry.example/db:v2"
    )


def test_a_controller_killed_mid_push_restores_the_first_copies(
    controller: Controller, when: When, then: Then, ns: str
) -> None:
    set_metric(LOAD, 4.0, test=ns)
    wait_scraped()
    v1 = app_objects("v1")
    app = WholeApp.create(ns, f"{ns}-app", v1)
    first = release(ns, app, app.commit(v1, "app v1"), "whole-v1")
    assert then.release_reaches(first, "Succeeded", "RolledBack", "Failed", timeout=120)["phase"] == "Succeeded"
    objects_then = ObjectsThen(ns)
    before = objects_then.snapshot(key_of(o) for o in v1.values())

    bad = app_objects("v1", db_image="registry.example/db:v2-bad", settings="v2-bad", service=False, extra=True)
    sha = app.commit(bad, "app v2-bad")
    phases = [dict(PHASES[0]), {**PHASES[1], "hold": "120s"}, dict(PHASES[2])]
    rel = release(ns, app, sha, "whole-v2", phases=phases, gates=[gate("load", LOAD, ns, max=6)])
    held = then.release_in(rel, "Holding", "data")
    store = {kind: then.get(kind, "whole-v2-snapshot").get("data") for kind in ("configmap", "secret")}

    controller.kill()
    controller.start()
    set_metric(LOAD, 7.5, test=ns)
    status = then.release_reaches(rel, "RolledBack", "Failed", timeout=90)

    assert status["phase"] == "RolledBack", status.get("message")
    assert status["snapshot"]["created"] == held["snapshot"]["created"] != {}
    assert {kind: then.get(kind, "whole-v2-snapshot").get("data") for kind in store} == store, "a copy was retaken"
    objects_then.same_as(before)
    objects_then.gone("ConfigMap/extra")
    assert len(reverts(app)) == 1
