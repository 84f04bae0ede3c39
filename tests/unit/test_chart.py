"""The Helm chart renders a least-privilege, non-root, highly available controller in both watch modes.

Helm comes from ``hack/install-helm.sh`` (built once from its Go module and cached), or from
``STOPLINE_HELM``. A missing helm fails these tests; it never skips them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.models.crd import KINDS

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "stopline"
RELEASE_NAME = "stopline"
NAMESPACE = "stopline-system"

Objects = list[dict[str, Any]]
Render = Callable[..., Objects]

# Exactly the access the controller needs; (apiGroup, resource) -> verbs.
NAMESPACED_RULES: dict[tuple[str, str], set[str]] = {
    **{
        ("stopline.dev", r): {"get", "list", "watch", "create", "patch", "update"}
        for r in ("releases", "tracks", "experiments")
    },
    **{("stopline.dev", f"{r}/status"): {"get", "patch", "update"} for r in ("releases", "tracks", "experiments")},
    # every object of the app (rbac.appResources), the snapshot ConfigMaps/Secrets
    **{
        (group, r): {"get", "list", "watch", "create", "patch", "update", "delete"}
        for group, resources in (
            ("", ("configmaps", "secrets", "services", "serviceaccounts", "persistentvolumeclaims")),
            ("apps", ("deployments", "statefulsets", "daemonsets")),
            ("batch", ("jobs", "cronjobs")),
            ("autoscaling", ("horizontalpodautoscalers",)),
            ("policy", ("poddisruptionbudgets",)),
            ("networking.k8s.io", ("ingresses", "networkpolicies")),
            ("rbac.authorization.k8s.io", ("roles", "rolebindings")),
        )
        for r in resources
    },
    ("", "pods"): {"list"},  # why a rollout is stuck: the pods of a workload not Available yet
    ("apps", "replicasets"): {"list"},  # ... and its new ReplicaSet's ReplicaFailure
    ("", "events"): {"list", "create", "patch"},  # list: the status page, a StatefulSet's FailedCreate
    ("events.k8s.io", "events"): {"create", "patch"},
}
# One cluster-wide watch per kind in every mode: the stopline.dev resources are read cluster-wide.
CLUSTER_RULES: dict[tuple[str, str], set[str]] = {
    ("", "namespaces"): {"list", "watch"},
    **{("stopline.dev", r): {"get", "list", "watch"} for r in ("releases", "tracks", "experiments")},
    **{("stopline.dev", f"{r}/status"): {"get"} for r in ("releases", "tracks", "experiments")},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    # rollout state from one watch per workload kind
    **{("apps", r): {"list", "watch"} for r in ("deployments", "statefulsets", "daemonsets")},
}
# The shard Leases, in the release namespace only.
LEASE_RULES: dict[tuple[str, str], set[str]] = {
    ("coordination.k8s.io", "leases"): {"get", "list", "watch", "create", "update", "patch"},
}
BASE_ARGS = ["run", "--liveness", "http://0.0.0.0:8080/healthz"]
DEFAULT_TAIL = ["--shards", "1", "--lease-name", "stopline"]


@pytest.fixture(scope="session")
def helm() -> str:
    """Path to a helm v3 binary; built by hack/install-helm.sh on first use (idempotent, cached)."""
    override = os.environ.get("STOPLINE_HELM")
    if override:
        return override
    script = ROOT / "hack" / "install-helm.sh"
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=3600, check=False)
    if proc.returncode != 0:
        pytest.fail(f"hack/install-helm.sh failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    path = proc.stdout.strip().splitlines()[-1]
    assert Path(path).is_file(), f"install-helm.sh printed {path!r}, which is not a file"
    return path


def _run(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)


@pytest.fixture(scope="session")
def render(helm: str, tmp_path_factory: pytest.TempPathFactory) -> Render:
    """``render(values) -> objects``: ``helm template`` with the given values, parsed."""
    directory = tmp_path_factory.mktemp("values")
    counter = iter(range(1_000_000))

    def _render(values: dict[str, Any] | None = None, *extra: str) -> Objects:
        values_file = directory / f"values-{next(counter)}.yaml"
        values_file.write_text(yaml.safe_dump(values or {}))
        proc = _run(
            helm, "template", RELEASE_NAME, str(CHART), "--namespace", NAMESPACE, "-f", str(values_file), *extra
        )
        assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
        return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]

    return _render


@pytest.fixture(scope="session")
def render_error(helm: str, tmp_path_factory: pytest.TempPathFactory) -> Callable[[dict[str, Any]], str]:
    """``render_error(values) -> stderr``: ``helm template`` that must fail."""
    directory = tmp_path_factory.mktemp("bad-values")
    counter = iter(range(1_000_000))

    def _render_error(values: dict[str, Any]) -> str:
        values_file = directory / f"values-{next(counter)}.yaml"
        values_file.write_text(yaml.safe_dump(values))
        proc = _run(helm, "template", RELEASE_NAME, str(CHART), "--namespace", NAMESPACE, "-f", str(values_file))
        assert proc.returncode != 0, f"helm template should have failed:\n{proc.stdout[:2000]}"
        return proc.stderr

    return _render_error


def _only(objects: Objects, kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _kinds(objects: Objects) -> list[tuple[str, str, str | None]]:
    return sorted((o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")) for o in objects)


def _rules(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def _container(objects: Objects) -> dict[str, Any]:
    pod = _only(objects, "Deployment")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["controller"]
    container: dict[str, Any] = pod["containers"][0]
    return container


def _env(objects: Objects) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in _container(objects)["env"]}


# --- helm lint ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"watch": {"namespaces": ["a", "b"]}},
        {
            "watch": {"namespaces": ["team-*"], "namespaceSelector": "stopline.dev/enabled=true"},
            "rbac": {"clusterWide": True},
        },
        {"replicas": 1, "leaderElection": {"enabled": False}},
        {"replicas": 3, "sharding": {"shards": 4}},
        {
            "prometheus": {"url": "http://prometheus.monitoring:9090"},
            "webhook": {"secretName": "stopline-webhook"},
            "serviceMonitor": {"enabled": True},
            "grafanaDashboard": {"enabled": True},
        },
    ],
    ids=["defaults", "namespaced", "globs-cluster-wide", "no-leader-election", "sharded", "everything-on"],
)
def test_helm_lint(helm: str, values: dict[str, Any], tmp_path: Path) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    proc = _run(helm, "lint", "--strict", str(CHART), "-f", str(values_file))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["apiVersion"], chart["name"], chart["version"], chart["appVersion"]) == (
        "v2",
        "stopline",
        "0.1.0",
        "0.1.0",
    )


# --- objects and RBAC ---------------------------------------------------------------------------


def test_default_objects(render: Render) -> None:
    assert _kinds(render()) == [
        ("ClusterRole", "stopline", None),
        ("ClusterRole", "stopline-cluster", None),
        ("ClusterRoleBinding", "stopline", None),
        ("ClusterRoleBinding", "stopline-cluster", None),
        ("Deployment", "stopline", NAMESPACE),
        ("FlowSchema", "stopline-leader-election", None),
        ("PodDisruptionBudget", "stopline", NAMESPACE),
        ("Role", "stopline-leases", NAMESPACE),
        ("RoleBinding", "stopline-leases", NAMESPACE),
        ("Service", "stopline", NAMESPACE),
        ("ServiceAccount", "stopline", NAMESPACE),
    ]


def test_all_namespaces_rbac(render: Render) -> None:
    objects = render()
    assert _rules(_only(objects, "ClusterRole", "stopline")) == NAMESPACED_RULES
    assert _rules(_only(objects, "ClusterRole", "stopline-cluster")) == CLUSTER_RULES
    for name in ("stopline", "stopline-cluster"):
        binding = _only(objects, "ClusterRoleBinding", name)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "stopline", "namespace": NAMESPACE}]


@pytest.mark.parametrize("namespaces", [[], ["a", "b"]], ids=["all-namespaces", "namespaced"])
def test_lease_role_in_the_release_namespace(render: Render, namespaces: list[str]) -> None:
    objects = render({"watch": {"namespaces": namespaces}})
    role = _only(objects, "Role", "stopline-leases")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert _rules(role) == LEASE_RULES
    binding = _only(objects, "RoleBinding", "stopline-leases")
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "stopline-leases"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "stopline", "namespace": NAMESPACE}]
    others = [o for o in objects if o["kind"] in ("Role", "ClusterRole") and o["metadata"]["name"] != "stopline-leases"]
    assert all(("coordination.k8s.io", "leases") not in _rules(r) for r in others), (
        "Leases only in the release namespace"
    )


def test_lease_requests_get_the_leader_election_priority_level(render: Render) -> None:
    fs = _only(render({}), "FlowSchema", "stopline-leader-election")
    assert fs["apiVersion"] == "flowcontrol.apiserver.k8s.io/v1"
    assert fs["spec"]["priorityLevelConfiguration"] == {"name": "leader-election"}
    assert 100 < fs["spec"]["matchingPrecedence"] < 200  # after system-leader-election, before workloads
    (rule,) = fs["spec"]["rules"]
    assert rule["subjects"] == [
        {"kind": "ServiceAccount", "serviceAccount": {"name": "stopline", "namespace": NAMESPACE}}
    ]
    assert rule["resourceRules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "list", "create", "update", "patch"],
            "namespaces": [NAMESPACE],
        }
    ]
    assert not [o for o in render({"leaderElection": {"flowSchema": False}}) if o["kind"] == "FlowSchema"]
    without = render({"replicas": 1, "leaderElection": {"enabled": False}})
    assert not [o for o in without if o["kind"] == "FlowSchema"], "no Leases, no FlowSchema"


def test_no_lease_role_without_leader_election(render: Render) -> None:
    objects = render({"replicas": 1, "leaderElection": {"enabled": False}})
    assert not [o for o in objects if o["metadata"]["name"] == "stopline-leases"]


def test_namespaced_rbac(render: Render) -> None:
    objects = render({"watch": {"namespaces": ["a", "b", "a"]}})
    assert _kinds(objects) == [
        ("ClusterRole", "stopline-cluster", None),
        ("ClusterRoleBinding", "stopline-cluster", None),
        ("Deployment", "stopline", NAMESPACE),
        ("FlowSchema", "stopline-leader-election", None),
        ("PodDisruptionBudget", "stopline", NAMESPACE),
        ("Role", "stopline", "a"),
        ("Role", "stopline", "b"),
        ("Role", "stopline-leases", NAMESPACE),
        ("RoleBinding", "stopline", "a"),
        ("RoleBinding", "stopline", "b"),
        ("RoleBinding", "stopline-leases", NAMESPACE),
        ("Service", "stopline", NAMESPACE),
        ("ServiceAccount", "stopline", NAMESPACE),
    ]
    # The cluster-wide watch per kind: the stopline.dev resources are readable in every namespace
    # even though the writes are granted only in a and b.
    assert _rules(_only(objects, "ClusterRole")) == CLUSTER_RULES
    for role in (o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == "stopline"):
        assert _rules(role) == NAMESPACED_RULES
    for binding in (o for o in objects if o["kind"] == "RoleBinding" and o["metadata"]["name"] == "stopline"):
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "stopline"}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "stopline", "namespace": NAMESPACE}]


@pytest.mark.parametrize("namespaces", [[], ["a", "b"]], ids=["all-namespaces", "namespaced"])
def test_no_wildcards_and_no_escalation(render: Render, namespaces: list[str]) -> None:
    roles = [o for o in render({"watch": {"namespaces": namespaces}}) if o["kind"] in ("Role", "ClusterRole")]
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert not any("*" in item for item in rule[field]), f"wildcard in {role['metadata']['name']}"
            assert not {"escalate", "bind", "impersonate", "deletecollection"} & set(rule["verbs"])
            assert "resourceNames" not in rule and "nonResourceURLs" not in rule
    granted = set().union(*(_rules(r) for r in roles))
    assert ("", "secrets") in granted and ("", "pods/exec") not in granted
    pod_verbs = set().union(*(set(rule["verbs"]) for r in roles for rule in r["rules"] if "pods" in rule["resources"]))
    assert pod_verbs == {"list"}, "pods are only ever listed (why a rollout is stuck), never changed"


def test_rbac_can_be_disabled(render: Render) -> None:
    kinds = {o["kind"] for o in render({"rbac": {"create": False}, "serviceAccount": {"create": False}})}
    assert kinds == {"Deployment", "Service", "PodDisruptionBudget"}


def test_invalid_namespace_is_rejected(helm: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"watch": {"namespaces": ["Bad_NS"]}}))
    proc = _run(helm, "template", RELEASE_NAME, str(CHART), "-f", str(values))
    assert proc.returncode != 0
    assert 'watch.namespaces: "Bad_NS" is not a valid namespace name' in proc.stderr


def test_invalid_glob_is_rejected(render_error: Callable[[dict[str, Any]], str]) -> None:
    stderr = render_error({"watch": {"namespaces": ["Team_*"]}, "rbac": {"clusterWide": True}})
    assert 'watch.namespaces: "Team_*" is not a valid namespace name or glob' in stderr


@pytest.mark.parametrize("namespaces", [["team-*"], ["a", "ops-?"], ["shop-[ab]"]], ids=["star", "mixed", "class"])
def test_glob_needs_cluster_wide_rbac(render_error: Callable[[dict[str, Any]], str], namespaces: list[str]) -> None:
    stderr = render_error({"watch": {"namespaces": namespaces}})
    glob = next(ns for ns in namespaces if set(ns) & set("*?["))
    assert f'watch.namespaces: the glob "{glob}" needs rbac.clusterWide=true' in stderr


def test_glob_with_cluster_wide_rbac(render: Render) -> None:
    objects = render({"watch": {"namespaces": ["team-*", "shop"]}, "rbac": {"clusterWide": True}})
    assert _rules(_only(objects, "ClusterRole", "stopline")) == NAMESPACED_RULES
    assert _rules(_only(objects, "ClusterRole", "stopline-cluster")) == CLUSTER_RULES
    assert not [o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == "stopline"]
    args = _container(objects)["args"]
    assert args == [*BASE_ARGS, "--namespace", "team-*", "--namespace", "shop", *DEFAULT_TAIL]


def test_glob_without_rbac_needs_no_cluster_wide(render: Render) -> None:
    objects = render({"watch": {"namespaces": ["team-*"]}, "rbac": {"create": False}})
    assert "--namespace" in _container(objects)["args"]


def test_cluster_wide_rbac_with_named_namespaces(render: Render) -> None:
    objects = render({"watch": {"namespaces": ["a"]}, "rbac": {"clusterWide": True}})
    assert _rules(_only(objects, "ClusterRole", "stopline")) == NAMESPACED_RULES
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "Role"] == ["stopline-leases"]


# --- the controller Deployment ------------------------------------------------------------------


def test_deployment_shape(render: Render) -> None:
    objects = render()
    deployment = _only(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    # With the shard Leases two replicas never act at once, so old and new pods may overlap.
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1},
    }
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["serviceAccountName"] == "stopline"
    container = _container(objects)
    assert container["image"] == "stopline:0.1.0"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert "command" not in container, "the image's ENTRYPOINT (stopline) must run"


@pytest.mark.parametrize(
    ("namespaces", "tail"),
    [([], ["--all-namespaces"]), (["a", "b"], ["--namespace", "a", "--namespace", "b"])],
    ids=["all-namespaces", "namespaced"],
)
def test_args(render: Render, namespaces: list[str], tail: list[str]) -> None:
    args = _container(render({"watch": {"namespaces": namespaces}}))["args"]
    assert args == [*BASE_ARGS, *tail, *DEFAULT_TAIL]
    assert "--standalone" not in args


@pytest.mark.parametrize(
    ("values", "tail"),
    [
        (
            {"watch": {"namespaceSelector": "stopline.dev/enabled=true"}},
            ["--all-namespaces", "--namespace-selector", "stopline.dev/enabled=true", *DEFAULT_TAIL],
        ),
        (
            {"watch": {"namespaces": ["a"], "namespaceSelector": "tier in (web,api)"}},
            ["--namespace", "a", "--namespace-selector", "tier in (web,api)", *DEFAULT_TAIL],
        ),
        ({"sharding": {"shards": 8}}, ["--all-namespaces", "--shards", "8", "--lease-name", "stopline"]),
        (
            {"leaderElection": {"leaseName": "ops-stopline"}},
            ["--all-namespaces", "--shards", "1", "--lease-name", "ops-stopline"],
        ),
        (
            {"replicas": 1, "leaderElection": {"enabled": False}},
            ["--all-namespaces", *DEFAULT_TAIL, "--no-leader-election"],
        ),
    ],
    ids=["selector", "namespaced-selector", "shards", "lease-name", "no-leader-election"],
)
def test_args_from_values(render: Render, values: dict[str, Any], tail: list[str]) -> None:
    assert _container(render(values))["args"] == [*BASE_ARGS, *tail]


def test_lease_name_defaults_to_the_full_name(helm: str) -> None:
    proc = _run(
        helm, "template", "prod", str(CHART), "--namespace", NAMESPACE, "--show-only", "templates/deployment.yaml"
    )
    assert proc.returncode == 0, proc.stderr
    args = yaml.safe_load(proc.stdout)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--lease-name") + 1] == "prod-stopline"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"sharding": {"shards": 0}}, 'sharding.shards: "0" is not a whole number from 1 to 64'),
        ({"sharding": {"shards": 65}}, 'sharding.shards: "65" is not a whole number from 1 to 64'),
        ({"sharding": {"shards": "two"}}, 'sharding.shards: "two" is not a whole number from 1 to 64'),
        (
            {"leaderElection": {"leaseName": "Bad_Name"}},
            'leaderElection.leaseName: "Bad_Name" is not a valid Lease name',
        ),
        ({"replicas": "two"}, 'replicas: "two" is not a whole number'),
    ],
    ids=["shards-0", "shards-65", "shards-word", "lease-name", "replicas-word"],
)
def test_invalid_ha_values_are_rejected(
    render_error: Callable[[dict[str, Any]], str], values: dict[str, Any], message: str
) -> None:
    assert message in render_error(values)


def test_no_leader_election_needs_one_replica(render_error: Callable[[dict[str, Any]], str]) -> None:
    for values in ({"leaderElection": {"enabled": False}}, {"leaderElection": {"enabled": False}, "replicas": 3}):
        stderr = render_error(values)
        replicas = values.get("replicas", 2)
        assert f"replicas: {replicas} with leaderElection.enabled=false" in stderr
        assert "set replicas=1 or enable leader election" in stderr


def test_no_leader_election_runs_one_replica_recreated(render: Render) -> None:
    objects = render({"replicas": 1, "leaderElection": {"enabled": False}})
    deployment = _only(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}, "never two controllers acting without Leases"
    assert "--no-leader-election" in _container(objects)["args"]
    assert not [o for o in objects if o["kind"] == "PodDisruptionBudget"]


# --- availability: PodDisruptionBudget, anti-affinity -------------------------------------------


def test_pdb_by_default(render: Render) -> None:
    objects = render()
    pdb = _only(objects, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["metadata"]["namespace"] == NAMESPACE
    assert pdb["spec"]["minAvailable"] == 1
    pod_labels = _only(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


@pytest.mark.parametrize(
    "values", [{"replicas": 1}, {"pdb": {"enabled": False}}, {"replicas": 0}], ids=["one-replica", "disabled", "zero"]
)
def test_no_pdb(render: Render, values: dict[str, Any]) -> None:
    assert not [o for o in render(values) if o["kind"] == "PodDisruptionBudget"]


def test_pdb_min_available_from_values(render: Render) -> None:
    pdb = _only(render({"replicas": 3, "pdb": {"minAvailable": 2}}), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 2


def test_replicas_spread_across_nodes(render: Render) -> None:
    objects = render({"replicas": 3})
    deployment = _only(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    terms = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert [t["podAffinityTerm"]["topologyKey"] for t in terms] == ["kubernetes.io/hostname"]
    selector = terms[0]["podAffinityTerm"]["labelSelector"]["matchLabels"]
    assert selector == deployment["spec"]["selector"]["matchLabels"]
    assert "affinity" not in _only(render({"replicas": 1}), "Deployment")["spec"]["template"]["spec"]


def test_env_defaults(render: Render) -> None:
    env = _env(render())
    assert env == {
        "POD_NAME": {"fieldRef": {"fieldPath": "metadata.name"}},
        "POD_NAMESPACE": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        "STOPLINE_HTTP_HOST": "0.0.0.0",
        "STOPLINE_HTTP_PORT": "8480",
        "STOPLINE_REPO_CACHE": "/var/cache/stopline",
        "HOME": "/tmp",
    }


def test_env_from_values(render: Render) -> None:
    env = _env(
        render(
            {
                "prometheus": {"url": "http://prometheus.monitoring:9090"},
                "webhook": {"secretName": "stopline-webhook"},
                "http": {"port": 9000},
                "extraEnv": [{"name": "STOPLINE_MAX_THREADS", "value": "8"}],
            }
        )
    )
    assert env["STOPLINE_PROMETHEUS_URL"] == "http://prometheus.monitoring:9090"
    assert env["STOPLINE_WEBHOOK_SECRET"] == {"secretKeyRef": {"name": "stopline-webhook", "key": "secret"}}
    assert env["STOPLINE_HTTP_PORT"] == "9000"
    assert env["STOPLINE_MAX_THREADS"] == "8"


@pytest.mark.parametrize(("level", "extra"), [("info", []), ("debug", ["--verbose"])], ids=["info", "debug"])
def test_log_level(render: Render, level: str, extra: list[str]) -> None:
    args = _container(render({"logLevel": level}))["args"]
    assert args == [*BASE_ARGS, "--all-namespaces", *DEFAULT_TAIL, *extra]


def test_unknown_log_level_is_rejected(helm: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"logLevel": "trace"}))
    proc = _run(helm, "template", RELEASE_NAME, str(CHART), "-f", str(values))
    assert proc.returncode != 0
    assert 'logLevel: "trace" is not one of info, debug' in proc.stderr


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"watch": {"namespaces": ["a", "b"]}, "logLevel": "debug"},
        {
            "watch": {"namespaces": ["team-*"], "namespaceSelector": "stopline.dev/enabled=true"},
            "rbac": {"clusterWide": True},
        },
        {"sharding": {"shards": 4}, "leaderElection": {"leaseName": "ops"}},
        {"replicas": 1, "leaderElection": {"enabled": False}},
    ],
    ids=["all-namespaces", "namespaced-debug", "glob-selector", "sharded", "no-leader-election"],
)
def test_args_parse_with_the_real_cli(render: Render, values: dict[str, Any]) -> None:
    """The container's args are accepted by `stopline run` itself (parsed, not run)."""
    import typer.core
    import typer.main

    from controller.cli import app

    args = _container(render(values))["args"]
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    run = group.commands[args[0]]
    with run.make_context("run", list(args[1:])) as ctx:
        params = ctx.params
    assert "standalone" not in params and "peering" not in params
    assert params["liveness"] == "http://0.0.0.0:8080/healthz"
    namespaces = values.get("watch", {}).get("namespaces", [])
    assert params["all_namespaces"] is (not namespaces)
    assert list(params["namespace"] or []) == namespaces
    assert params["namespace_selector"] == (values.get("watch", {}).get("namespaceSelector") or None)
    assert params["leader_election"] is values.get("leaderElection", {}).get("enabled", True)
    assert params["shards"] == values.get("sharding", {}).get("shards", 1)
    assert params["lease_name"] == values.get("leaderElection", {}).get("leaseName", "stopline")
    # identity and lease namespace come from POD_NAME / POD_NAMESPACE (downward API), not from args
    assert params["identity"] is None and params["lease_namespace"] is None
    assert params["verbose"] is (values.get("logLevel") == "debug")


def test_env_names_are_read_by_settings() -> None:
    """Every STOPLINE_* variable the chart sets is one controller/settings.py reads."""
    settings = (ROOT / "controller" / "settings.py").read_text()
    chart = "".join(p.read_text() for p in (CHART / "templates").glob("*.yaml"))
    for name in sorted(set(re.findall(r"STOPLINE_[A-Z_]+", chart))):
        assert f'"{name}"' in settings, f"{name} is set by the chart but not read by Settings.from_env"


def test_ports_and_liveness_probe(render: Render) -> None:
    container = _container(render())
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8480, "healthz": 8080}
    probe = container["livenessProbe"]
    assert probe["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert probe["failureThreshold"] * probe["periodSeconds"] >= 30, "one slow reconcile must not kill the pod"


def test_security_context(render: Render) -> None:
    objects = render()
    pod = _only(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = _container(objects)
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def test_writable_paths_are_empty_dirs(render: Render) -> None:
    objects = render()
    pod = _only(objects, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in _container(objects)["volumeMounts"]}
    env = _env(objects)
    for path in (env["STOPLINE_REPO_CACHE"], env["HOME"]):
        assert path in mounts, f"{path} is not writable with a read-only root filesystem"
        assert "emptyDir" in volumes[mounts[path]]
    assert volumes["repo-cache"]["emptyDir"] == {"sizeLimit": "2Gi"}


def test_scheduling_and_resources_pass_through(render: Render) -> None:
    values = {
        "nodeSelector": {"pool": "system"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["system"]}]}]}}},
        "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
        "image": {"repository": "registry.invalid/stopline", "tag": "dev", "pullPolicy": "Always"},
    }  # fmt: skip
    objects = render(values)
    pod = _only(objects, "Deployment")["spec"]["template"]["spec"]
    for key in ("nodeSelector", "tolerations", "affinity"):
        assert pod[key] == values[key]
    container = _container(objects)
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    assert (container["image"], container["imagePullPolicy"]) == ("registry.invalid/stopline:dev", "Always")


def test_default_resources_set_requests_and_memory_limit(render: Render) -> None:
    resources = _container(render())["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert "memory" in resources["limits"] and "cpu" not in resources["limits"]


# --- Service, ServiceMonitor, dashboard ---------------------------------------------------------


def test_service_exposes_http(render: Render) -> None:
    objects = render()
    service = _only(objects, "Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 8480, "targetPort": "http", "protocol": "TCP"}]
    pod_labels = _only(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_service_monitor_off_by_default_and_on_when_enabled(render: Render) -> None:
    assert not [o for o in render() if o["kind"] == "ServiceMonitor"]
    objects = render({"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}}})
    monitor = _only(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert monitor["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    service_labels = _only(objects, "Service")["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


def test_dashboard_renders_only_with_the_file(render: Render) -> None:
    objects = render({"grafanaDashboard": {"enabled": True}})
    dashboards = [o for o in objects if o["kind"] == "ConfigMap"]
    if (CHART / "dashboards" / "stopline.json").exists():
        assert len(dashboards) == 1 and "stopline.json" in dashboards[0]["data"]
    else:
        assert dashboards == []


# --- CRDs and NOTES -----------------------------------------------------------------------------


def test_crds_ship_with_the_chart(render: Render) -> None:
    crds = [o for o in render({}, "--include-crds") if o["kind"] == "CustomResourceDefinition"]
    expected = {
        f"{k.plural}.stopline.dev": yaml.safe_load((ROOT / "crds" / f"{k.plural}.stopline.dev.yaml").read_text())
        for k in KINDS
    }
    assert {c["metadata"]["name"]: c for c in crds} == expected


@pytest.mark.parametrize(
    ("values", "expected", "absent"),
    [
        ({"watch": {"namespaces": ["a", "b"]}}, ["watching: a, b.", "prometheus.url is not set"], []),
        (
            {"prometheus": {"url": "http://p:9090"}},
            ["watching all namespaces.", "2 replica(s), 1 shard(s)", "stopline-shard-<i>"],
            ["prometheus.url is not set"],
        ),
        (
            {"watch": {"namespaceSelector": "env=prod"}, "replicas": 1, "leaderElection": {"enabled": False}},
            ["watching all namespaces labelled env=prod.", "One replica, without leader election."],
            ["shard"],
        ),
    ],
    ids=["namespaced-no-prometheus", "all-namespaces-with-prometheus", "selector-no-leader-election"],
)
def test_notes(helm: str, tmp_path: Path, values: dict[str, Any], expected: list[str], absent: list[str]) -> None:
    # helm renders NOTES.txt only on install, which needs a cluster; a copy of the chart renders it
    # with `tpl` into a ConfigMap, which `helm template` can show.
    chart = tmp_path / "stopline"
    shutil.copytree(CHART, chart)
    shutil.copy(CHART / "templates" / "NOTES.txt", chart / "notes-source.txt")
    (chart / "templates" / "notes-rendered.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n"
        '  notes: {{ tpl (.Files.Get "notes-source.txt") . | toJson }}\n'
    )
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    proc = _run(
        helm, "template", RELEASE_NAME, str(chart), "--namespace", NAMESPACE, "-f", str(values_file),
        "--show-only", "templates/notes-rendered.yaml",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    notes: str = yaml.safe_load(proc.stdout)["data"]["notes"]
    assert "kubectl get releases,tracks,experiments -A" in notes
    assert f"kubectl -n {NAMESPACE} rollout status deployment/stopline" in notes
    for text in expected:
        assert text in notes
    for text in absent:
        assert text not in notes


# --- the image the chart runs -------------------------------------------------------------------


def test_dockerfile_matches_chart() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.M)
    assert re.search(r'^ENTRYPOINT \["stopline"\]$', dockerfile, re.M)
    assert re.search(r'^CMD \["run", "--all-namespaces"\]$', dockerfile, re.M)
    assert "--standalone" not in dockerfile
    assert 'stopline = "controller.cli:main"' in (ROOT / "pyproject.toml").read_text()
    user = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    assert user and user[-1].split(":")[0].isdigit() and user[-1].split(":")[0] != "0"
    assert re.search(r"apt-get install .*\bgit\b", dockerfile), "GitPython needs the git binary"
    assert "pip install ." in dockerfile


def test_notify_defaults_reach_the_controller_and_its_secrets_are_readable(render: Render) -> None:
    from controller.settings import Settings

    sinks = [{"name": "chat", "slack": {"urlSecretRef": {"name": "stopline-notify", "key": "slack-url"}}}]
    objects = render({"notify": sinks, "watch": {"namespaces": ["shop"]}})
    env = {e["name"]: e.get("value") for e in _container(objects)["env"]}
    settings = Settings.from_env({"STOPLINE_NOTIFY": env["STOPLINE_NOTIFY"], "POD_NAMESPACE": "stopline-system"})
    assert [s.name for s in settings.notify] == ["chat"] and settings.notify_namespace == "stopline-system"
    roles = [o for o in objects if o["kind"] == "Role" and o["metadata"]["name"].endswith("-notify")]
    assert [r["rules"] for r in roles] == [[{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]]
    assert "STOPLINE_NOTIFY" not in {e["name"] for e in _container(render())["env"]}
