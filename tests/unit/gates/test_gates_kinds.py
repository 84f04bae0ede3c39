"""Verdict tables of the kubernetes, job and http gates (pure), and the per-kind dispatch."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.gates.evaluate import record, threshold_text
from controller.gates.httpcheck import FieldError, HttpResult, json_field, judge_http
from controller.gates.jobs import JobState, job_manifest, job_name, job_state, judge_job, ours
from controller.gates.kinds import baseline, judge_reading
from controller.gates.pods import PodHealth, PodsReading, judge_pods, pod_health
from controller.models.release import Gate, GaugeRow
from controller.release.actions import Readings

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
JOB_SPEC = {"template": {"spec": {"containers": [{"name": "t", "image": "smoke:v1", "args": ["{{ phase }}"]}]}}}


def kube_gate(**k: Any) -> Gate:
    return Gate.model_validate({"name": "pods", "kubernetes": k})


def pod(
    name: str, *, restarts: int = 0, ready: bool = True, age: float = 300, reasons: tuple[str, ...] = ()
) -> PodHealth:
    return PodHealth(
        uid=f"uid-{name}",
        name=name,
        workload="Deployment/web",
        restarts=restarts,
        ready=ready,
        not_ready_since=None if ready else NOW - timedelta(seconds=age),
        reasons=reasons,
    )


POD_CASES = [
    ("no-pods", {}, PodsReading(NOW), {}, "Inconclusive", False),
    ("workload-missing", {}, PodsReading(NOW, missing=("Deployment/web",)), {}, "Error", False),
    ("list-failed", {}, PodsReading(NOW, error="forbidden"), {}, "Inconclusive", False),
    ("all-ready", {}, PodsReading(NOW, (pod("a"), pod("b"))), {}, "Pass", False),
    ("still-starting", {}, PodsReading(NOW, (pod("a", ready=False, age=5),)), {}, "Inconclusive", True),
    ("one-starting-one-ready", {}, PodsReading(NOW, (pod("a"), pod("b", ready=False, age=5))), {}, "Pass", False),
    ("not-ready-past-grace", {}, PodsReading(NOW, (pod("a"), pod("b", ready=False, age=120))), {}, "Fail", False),
    (
        "not-ready-within-bound",
        {"maxNotReady": 1},
        PodsReading(NOW, (pod("a"), pod("b", ready=False, age=120))),
        {},
        "Pass",
        False,
    ),
    ("restarts-over-bound", {}, PodsReading(NOW, (pod("a", restarts=1),)), {}, "Fail", False),
    ("restarts-under-bound", {"maxRestarts": 2}, PodsReading(NOW, (pod("a", restarts=2),)), {}, "Pass", False),
    ("restarts-before-baseline", {}, PodsReading(NOW, (pod("a", restarts=4),)), {"uid-a": 4}, "Pass", False),
    ("replacement-pod-counts-its-own", {}, PodsReading(NOW, (pod("new", restarts=1),)), {"uid-old": 7}, "Fail", False),
    (
        "crashloop",
        {"maxRestarts": 99},
        PodsReading(NOW, (pod("a", ready=False, age=1, reasons=("CrashLoopBackOff",)),)),
        {},
        "Fail",
        False,
    ),
    (
        "oomkilled",
        {"maxRestarts": 99},
        PodsReading(NOW, (pod("a", restarts=1, reasons=("OOMKilled",)),)),
        {},
        "Fail",
        False,
    ),
    (
        "reason-check-off",
        {"failOnReasons": [], "maxRestarts": 9},
        PodsReading(NOW, (pod("a", restarts=1, reasons=("OOMKilled",)),)),
        {},
        "Pass",
        False,
    ),
    (
        "deleting-pods-ignored",
        {},
        PodsReading(NOW, (PodHealth("u", "old", "Deployment/web", restarts=9, deleting=True),)),
        {},
        "Inconclusive",
        False,
    ),
]


@pytest.mark.parametrize(
    ("bounds", "reading", "base", "verdict", "pending"), [c[1:] for c in POD_CASES], ids=[c[0] for c in POD_CASES]
)
def test_kubernetes_verdicts(
    bounds: dict[str, Any], reading: PodsReading, base: dict[str, int], verdict: str, pending: bool
) -> None:
    judgement, _ = judge_pods(kube_gate(**bounds), base, reading, NOW)
    assert (judgement.verdict, judgement.pending) == (verdict, pending), judgement.message


def test_kubernetes_message_names_pods_reasons_and_restarts() -> None:
    reading = PodsReading(NOW, (pod("web-1", restarts=3, ready=False, age=1, reasons=("CrashLoopBackOff", "Error")),))
    judgement, value = judge_pods(kube_gate(), {}, reading, NOW)
    assert value == 3
    assert judgement.message == "1 pod CrashLoopBackOff (web-1); 3 restarts > 0 (web-1 ×3)"


def test_pod_health_reads_waiting_and_last_termination_reasons() -> None:
    raw = {
        "metadata": {"name": "web-1", "uid": "u1", "creationTimestamp": "2026-12-01T11:59:00Z"},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-12-01T11:59:30Z"}],
            "containerStatuses": [
                {
                    "restartCount": 2,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"reason": "OOMKilled"}},
                }
            ],
        },
    }
    p = pod_health("Deployment/web", raw)
    assert (p.uid, p.restarts, p.ready, p.reasons) == ("u1", 2, False, ("CrashLoopBackOff", "OOMKilled"))
    assert p.not_ready_since == datetime(2026, 12, 1, 11, 59, 30, tzinfo=UTC)


def test_pending_readings_never_count_toward_inconclusive_limit() -> None:
    gate = kube_gate()
    row = GaugeRow(gate="pods", phase="p", inconclusive=2)
    judgement, _ = judge_pods(gate, {}, PodsReading(NOW, (pod("a", ready=False, age=1),)), NOW)
    assert record(gate, row, None, judgement, NOW).inconclusive == 2
    judgement, _ = judge_pods(gate, {}, PodsReading(NOW), NOW)
    assert record(gate, row, None, judgement, NOW).inconclusive == 3


# ---------------------------------------------------------------- job


def job_gate(timeout: str = "2m") -> Gate:
    return Gate.model_validate({"name": "smoke", "job": {"spec": JOB_SPEC, "timeout": timeout}})


def job(conditions: list[dict[str, str]] | None = None, start: datetime = NOW, **status: int) -> dict[str, Any]:
    return {
        "metadata": {"name": "j", "creationTimestamp": start.isoformat()},
        "status": {"startTime": start.isoformat().replace("+00:00", "Z"), "conditions": conditions or [], **status},
    }


JOB_CASES = [
    ("not-created", JobState("j", NOW), "Inconclusive", True),
    ("running", job_state("j", job(active=1), NOW), "Inconclusive", True),
    ("complete", job_state("j", job([{"type": "Complete", "status": "True"}], succeeded=1), NOW), "Pass", False),
    (
        "failed",
        job_state("j", job([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}], failed=1), NOW),
        "Fail",
        False,
    ),
    (
        "failure-target",
        job_state("j", job([{"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"}]), NOW),
        "Fail",
        False,
    ),
    (
        "deadline-exceeded",
        job_state("j", job([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]), NOW),
        "Fail",
        False,
    ),
    ("running-past-timeout", job_state("j", job(active=1, start=NOW - timedelta(minutes=3)), NOW), "Fail", False),
    ("already-exists-after-restart", job_state("j", job([{"type": "Complete", "status": "True"}]), NOW), "Pass", False),
    ("api-unreachable", JobState("j", NOW, error="Kubernetes API unreachable"), "Inconclusive", False),
    ("rejected-manifest", JobState("j", NOW, error="Job j rejected", rejected=True), "Error", False),
]


@pytest.mark.parametrize(("state", "verdict", "pending"), [c[1:] for c in JOB_CASES], ids=[c[0] for c in JOB_CASES])
def test_job_verdicts(state: JobState, verdict: str, pending: bool) -> None:
    judgement = judge_job(job_gate(), state, NOW)
    assert (judgement.verdict, judgement.pending) == (verdict, pending), judgement.message


def test_job_name_is_deterministic_and_fits_a_label() -> None:
    assert job_name("web-3f9c2e1", "smoke", "canary") == "web-3f9c2e1-smoke-canary"
    long = job_name("r" * 60, "smoke", "canary")
    assert len(long) == 63 and long == job_name("r" * 60, "smoke", "canary")
    assert long != job_name("r" * 60, "smoke", "canarz")


def test_job_manifest_is_owned_labelled_templated_and_bounded() -> None:
    owner = {"apiVersion": "stopline.dev/v1alpha1", "kind": "Release", "name": "rel", "uid": "u-1"}
    m = job_manifest(job_gate("90s"), release="rel", namespace="shop", phase="canary", revision="abc", owner=owner)
    assert m["metadata"]["name"] == "rel-smoke-canary"
    assert m["metadata"]["ownerReferences"] == [{**owner, "controller": True, "blockOwnerDeletion": True}]
    assert m["metadata"]["labels"]["stopline.dev/phase"] == "canary"
    assert m["spec"]["activeDeadlineSeconds"] == 90 and m["spec"]["backoffLimit"] == 0
    assert m["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert m["spec"]["template"]["spec"]["containers"][0]["args"] == ["canary"]
    assert ours(m, "rel", "u-1") and not ours(m, "rel", "u-2") and not ours(m, "other", "u-1")


def test_job_manifest_rejects_unknown_variables() -> None:
    spec = {"template": {"spec": {"containers": [{"name": "t", "image": "x", "args": ["{{ nope }}"]}]}}}
    gate = Gate.model_validate({"name": "smoke", "job": {"spec": spec}})
    with pytest.raises(ValueError, match="nope"):
        job_manifest(gate, release="r", namespace="n", phase="p", revision="x", owner={})


# ---------------------------------------------------------------- http


def http_gate(**bounds: Any) -> Gate:
    http = {"url": "http://127.0.0.1:8080/health", **bounds.pop("http", {})}
    return Gate.model_validate({"name": "health", "http": http, **bounds})


def answer(status: int, body: Any = None) -> HttpResult:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
    return HttpResult(NOW, status=status, body=raw)


HTTP_CASES = [
    ("200-no-field", {}, answer(200), "Pass"),
    ("200-in-bounds", {"http": {"field": "checks.errors"}, "max": 0}, answer(200, {"checks": {"errors": 0}}), "Pass"),
    (
        "json-field-out-of-bounds",
        {"http": {"field": "checks.errors"}, "max": 0},
        answer(200, {"checks": {"errors": 2}}),
        "Fail",
    ),
    (
        "json-field-below-min",
        {"http": {"field": "items[1].v"}, "min": 5},
        answer(200, {"items": [{"v": 9}, {"v": 1}]}),
        "Fail",
    ),
    ("5xx", {}, answer(503, b"unavailable"), "Fail"),
    ("404", {}, answer(404), "Fail"),
    ("expected-status-listed", {"http": {"expectStatus": [204]}}, answer(204), "Pass"),
    ("2xx-not-listed", {"http": {"expectStatus": [204]}}, answer(200), "Fail"),
    ("timeout", {}, HttpResult(NOW, error="timed out after 5s"), "Inconclusive"),
    (
        "connection-refused",
        {},
        HttpResult(NOW, error="ConnectionRefusedError: [Errno 111] Connection refused"),
        "Inconclusive",
    ),
    ("non-json-body", {"http": {"field": "a"}, "max": 1}, answer(200, b"<html>ok</html>"), "Error"),
    ("field-missing", {"http": {"field": "a.b"}, "max": 1}, answer(200, {"a": {}}), "Error"),
    ("field-not-a-number", {"http": {"field": "a"}, "max": 1}, answer(200, {"a": "fast"}), "Error"),
    ("bool-field", {"http": {"field": "$.ok"}, "min": 1}, answer(200, {"ok": True}), "Pass"),
]


@pytest.mark.parametrize(("bounds", "result", "verdict"), [c[1:] for c in HTTP_CASES], ids=[c[0] for c in HTTP_CASES])
def test_http_verdicts(bounds: dict[str, Any], result: HttpResult, verdict: str) -> None:
    judgement, _ = judge_http(http_gate(**bounds), None, result)
    assert judgement.verdict == verdict, judgement.message


def test_http_field_without_bounds_is_recorded_and_passes() -> None:
    judgement, value = judge_http(
        http_gate(http={"field": "checks.errors"}), None, answer(200, {"checks": {"errors": 3}})
    )
    assert (judgement.verdict, value) == ("Pass", 3.0)
    assert judgement.message == "http://127.0.0.1:8080/health answered 200; checks.errors = 3 (recorded: no bounds)"


def test_http_relative_bound_uses_the_baseline_field() -> None:
    gate = http_gate(http={"field": "latency"}, maxIncreasePercent=50)
    judgement, value = judge_http(gate, 100.0, answer(200, {"latency": 180}))
    assert (judgement.verdict, value, judgement.delta) == ("Fail", 180.0, 80.0)


@pytest.mark.parametrize(
    ("path", "doc", "value"),
    [("a", {"a": 1}, 1.0), ("a.b[0]", {"a": {"b": [2.5]}}, 2.5), ("$.x", {"x": "3"}, 3.0), ("f", {"f": False}, 0.0)],
    ids=["key", "nested-index", "dollar-numeric-string", "bool"],
)
def test_json_field(path: str, doc: Any, value: float) -> None:
    assert json_field(doc, path) == value


def test_json_field_index_out_of_range() -> None:
    with pytest.raises(FieldError, match="no item 3"):
        json_field({"a": [1]}, "a[3]")


# ---------------------------------------------------------------- kinds, models, thresholds


def test_threshold_text_per_kind() -> None:
    assert threshold_text(kube_gate()) == "restarts>0 or notReady>0 or CrashLoopBackOff|ImagePullBackOff|ErrImagePull|…"
    assert threshold_text(job_gate("90s")) == "job not Complete in 1m30s"
    assert threshold_text(http_gate()) == "status not 2xx"
    assert threshold_text(http_gate(http={"field": "e"}, max=0)) == "status not 2xx or e >0"


def test_dispatch_by_kind_baseline_and_judgement() -> None:
    gate = kube_gate()
    reading = PodsReading(NOW, (pod("a", restarts=2), pod("b")))
    base = baseline(gate, Readings({}, checks={"pods": reading}))
    assert (base.pre, base.row) == (2.0, {"restarts_at_start": {"uid-a": 2}})
    row = GaugeRow(gate="pods", phase="p", restarts_at_start={"uid-a": 2})
    judged = judge_reading(gate, row, Readings({}, checks={"pods": PodsReading(NOW, (pod("a", restarts=3),))}), NOW)
    assert judged is not None and judged.judgement.verdict == "Fail" and judged.value == 1.0
    assert judge_reading(gate, row, Readings({}), NOW) is None
    assert baseline(job_gate(), Readings({})).pre is None


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        ({"name": "g", "kubernetes": {}, "query": "up", "max": 1}, "set exactly one of"),
        ({"name": "g", "kubernetes": {}, "max": 1}, "a kubernetes gate takes no numeric bounds"),
        ({"name": "g", "kubernetes": {"maxRestarts": -1}}, "greater than or equal to 0"),
        ({"name": "g", "http": {"url": "ftp://x"}}, "should match pattern"),
        ({"name": "g", "http": {"url": "http://x"}, "max": 1}, "need http.field"),
        ({"name": "g", "http": {"url": "http://x", "body": "{}"}}, "GET request takes no body"),
        ({"name": "g", "http": {"url": "http://x", "expectStatus": [700]}}, "not HTTP status codes"),
        ({"name": "g", "job": {"spec": {}}}, "must list at least one container"),
        ({"name": "g", "job": {}}, "Field required"),
    ],
    ids=[
        "two-kinds",
        "bounds-on-kubernetes",
        "negative-restarts",
        "http-scheme",
        "http-bounds-without-field",
        "get-with-body",
        "bad-status",
        "job-without-containers",
        "job-without-spec",
    ],
)
def test_bad_gates_are_rejected(gate: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Gate.model_validate(gate)


def test_kind_property() -> None:
    assert [kube_gate().kind, job_gate().kind, http_gate().kind] == ["kubernetes", "job", "http"]
    assert Gate.model_validate({"name": "q", "query": "up", "max": 1}).kind == "query"
