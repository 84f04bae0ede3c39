"""The Release resource: one Git revision pushed through phases, judged by gates."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from controller.models.common import (
    DNS_LABEL_PATTERN,
    DNS_SUBDOMAIN_PATTERN,
    REPO_PATTERN,
    REVISION_PATTERN,
    Condition,
    Duration,
    LabelSelector,
    Model,
    SecretRef,
    StatusModel,
    cel,
    format_duration,
    valid_branch_name,
)
from controller.models.notify import NOTIFY_RULES, NotificationsStatus, Sink

BRANCH_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$"


HELM_RELEASE_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def _repo_relative(v: str, what: str) -> str:
    if not v or v.startswith("/") or "\\" in v or "\0" in v:
        raise ValueError(f"{what} {v!r} must be a relative path inside the repository")
    return v


class KustomizeSource(Model):
    """Render ``path`` with ``kustomize build`` at the revision (overlays, bases and components inside the
    repository, configMapGenerator/secretGenerator hashes). Files may only be loaded from inside the
    kustomization's own directory tree (kustomize's default load restriction); plugins, exec functions
    and Helm inflation are off."""


class HelmSource(Model):
    """Render the chart at ``path`` with ``helm template`` at the revision, into the Release's namespace."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "!has(self.valuesFiles) || self.valuesFiles.all(f, size(f) > 0 && !f.startsWith('/'))",
                "valuesFiles must be relative paths inside the repository",
            ),
        )
    )

    release_name: str | None = Field(
        default=None,
        description="Helm release name (.Release.Name). Default: the chart's name from Chart.yaml, the same "
        "for every revision; set it when two Releases in one namespace push the same chart.",
        pattern=HELM_RELEASE_NAME_PATTERN,
        max_length=53,
    )
    values_files: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list,
        description="Values files from the repository, relative to the chart directory (path), applied in "
        "order after the chart's values.yaml; '..' may reach elsewhere in the repository, never outside it.",
        max_length=32,
    )
    values: dict[str, Any] = Field(
        default_factory=dict, description="Inline values, applied after valuesFiles (highest precedence)."
    )

    @field_validator("values_files")
    @classmethod
    def _relative_files(cls, v: list[str]) -> list[str]:
        return [_repo_relative(f, "values file") for f in v]


class GitSource(Model):
    """Where the manifests come from."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            ("!has(self.kustomize) || !has(self.helm)", "set at most one of kustomize or helm"),
            (
                "!has(self.path) || (!self.path.startsWith('/') && !self.path.matches('(^|/)[.][.](/|$)'))",
                "path must be relative to the repository root and must not contain '..'",
            ),
            (
                "!has(self.branch) || (!self.branch.contains('..') && !self.branch.contains('//')"
                " && !self.branch.endsWith('/') && !self.branch.endsWith('.') && !self.branch.endsWith('.lock'))",
                "branch is not a valid git branch name",
            ),
        )
    )

    repo: str = Field(
        description="Git repository URL: http(s)://, ssh://, git://, file:// or scp-like user@host:path.",
        pattern=REPO_PATTERN,
        max_length=2048,
    )
    branch: str = Field(
        default="main",
        description="Branch the revision lives on; reverts are pushed here.",
        max_length=255,
        json_schema_extra={"pattern": BRANCH_PATTERN},
    )
    path: str = Field(
        default="deploy/",
        description="Directory inside the repository: plain YAML/JSON manifests (read recursively), or a "
        "kustomization (with kustomize) or a Helm chart (with helm).",
    )
    kustomize: KustomizeSource | None = Field(
        default=None, description="Render path with kustomize build at the revision ({} to enable)."
    )
    helm: HelmSource | None = Field(default=None, description="Render the chart at path with helm template.")
    secret_ref: SecretRef | None = Field(
        default=None,
        description="Secret with git credentials: username/password or token, or ssh-privatekey + known_hosts.",
    )

    @field_validator("branch")
    @classmethod
    def _branch_name(cls, v: str) -> str:
        if not valid_branch_name(v):
            raise ValueError(f"invalid branch name {v!r}")
        return v

    @field_validator("path")
    @classmethod
    def _relative_path(cls, v: str) -> str:
        if v.startswith("/") or any(part == ".." for part in v.split("/")):
            raise ValueError(f"path {v!r} must be relative to the repository root and must not contain '..'")
        return v

    @model_validator(mode="after")
    def _one_renderer(self) -> GitSource:
        if self.kustomize is not None and self.helm is not None:
            raise ValueError("source: set at most one of kustomize or helm")
        return self


class ReleaseSource(GitSource):
    """The Git revision a Release pushes."""

    revision: str = Field(description="Full commit SHA to push (40 hex characters).", pattern=REVISION_PATTERN)


class PrometheusRef(Model):
    """Prometheus endpoint used by gates; defaults to the controller's configured URL."""

    url: str = Field(description="Base URL of the Prometheus HTTP API.", pattern=r"^https?://.+")


DeploymentName = Annotated[
    str, Field(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253, description="A Deployment name (DNS-1123 subdomain).")
]
"""A Kubernetes object name: lowercase letters, digits, '-' and '.', starting and ending alphanumeric."""

WorkloadKind = Literal["Deployment", "StatefulSet", "DaemonSet"]


class WorkloadRef(Model):
    """A workload a phase pushes, by name and (when the name exists in several kinds) kind."""

    kind: WorkloadKind | None = Field(
        default=None,
        description="Deployment, StatefulSet or DaemonSet. Optional; required when the name exists in two kinds.",
    )
    name: str = Field(
        description="Workload name (metadata.name, a DNS-1123 subdomain).",
        pattern=DNS_SUBDOMAIN_PATTERN,
        max_length=253,
    )


class Phase(Model):
    """One step of the push: which workloads it changes and how long to watch afterwards.

    Targets are workloads (Deployment, StatefulSet, DaemonSet): by deployments, workloads, selector or remaining.
    Every other namespaced object goes with the first phase whose workloads use it, else with the first phase.
    Uses: ConfigMaps/Secrets mounted, projected or read by env/envFrom; the ServiceAccount and PVCs of the pods.
    Uses: Services, PDBs and NetworkPolicies selecting the pods; HPAs targeting the workload.
    Uses, indirectly: a RoleBinding with its ServiceAccount, a Role with its RoleBinding, an Ingress with its Service.
    Jobs and CronJobs go with the first phase; they are applied, never waited on.
    Apply order inside a phase: config and RBAC, then workloads, then Services, PDBs, HPAs and custom resources.
    """

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "[has(self.deployments), has(self.workloads), has(self.selector),"
                " has(self.remaining) && self.remaining].filter(x, x).size() == 1",
                "set exactly one of deployments, workloads, selector or remaining",
            ),
            ("self.name != 'watch'", "phase name 'watch' is reserved for the watch window"),
            (
                "!has(self.deployments) || !has(self.kind) || self.kind == 'Deployment'",
                "deployments lists Deployments: kind must be Deployment or unset",
            ),
        )
    )

    name: str = Field(description="Phase name, unique within the Release.", pattern=DNS_LABEL_PATTERN, max_length=63)
    deployments: list[DeploymentName] | None = Field(
        default=None, description="Deployment names this phase pushes.", min_length=1, max_length=256
    )
    workloads: list[WorkloadRef] | None = Field(
        default=None,
        description=(
            "Workloads this phase pushes: {kind, name} (kind optional unless the name exists in two kinds; "
            "defaults to the phase's kind)."
        ),
        min_length=1,
        max_length=256,
    )
    kind: WorkloadKind | None = Field(
        default=None,
        description=(
            "Only workloads of this kind (Deployment, StatefulSet, DaemonSet): applies to selector, remaining "
            "and workloads entries without a kind. Unset: all three kinds."
        ),
    )
    selector: LabelSelector | None = Field(
        default=None, description="Select the phase's workloads by their labels (metadata.labels)."
    )
    remaining: bool = Field(
        default=False,
        description="Every workload (of kind, when set) in the manifests not pushed by earlier phases.",
    )
    hold: Duration = Field(
        default=timedelta(0),
        description="Observe gates this long after the phase is Available before moving on (e.g. 60s, 2m).",
    )

    @model_validator(mode="after")
    def _exactly_one_target(self) -> Phase:
        chosen = [
            n
            for n, v in (("deployments", self.deployments), ("workloads", self.workloads), ("selector", self.selector))
            if v is not None
        ]
        if self.remaining:
            chosen.append("remaining")
        if self.name == "watch":
            raise ValueError("phase name 'watch' is reserved for the watch window")
        if len(chosen) != 1:
            listed = ", ".join(chosen) if chosen else "none"
            raise ValueError(
                f"phase {self.name!r}: set exactly one of deployments, workloads, selector or remaining (got {listed})"
            )
        if self.deployments is not None and self.kind not in (None, "Deployment"):
            raise ValueError(f"phase {self.name!r}: deployments lists Deployments; kind {self.kind} does not apply")
        return self


class ExperimentGate(Model):
    """Fail the push when an Experiment shows harm."""

    name: str = Field(description="Experiment name in the Release's namespace.", pattern=DNS_LABEL_PATTERN)
    fail_on: Literal["harm", "srm", "harmOrSrm"] = Field(
        default="harm", description="harm: a treatment is significantly worse; srm: sample ratio mismatch."
    )


#: Container states and last-termination reasons a ``kubernetes`` gate fails on by default.
DEFAULT_FAIL_ON_REASONS: tuple[str, ...] = (
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "RunContainerError",
    "OOMKilled",
)

#: Gate kinds, one per gate: the key that is set says which (``Gate.kind``).
GateKind = Literal["query", "experiment", "kubernetes", "job", "http", "compare"]
GATE_KINDS: tuple[GateKind, ...] = ("query", "experiment", "kubernetes", "job", "http", "compare")
#: Kinds whose bounds are the gate's own min/max/maxIncreasePercent/maxDecreasePercent.
NUMERIC_KINDS: frozenset[str] = frozenset({"query", "http"})


class KubernetesGate(Model):
    """Judge the pods of the workloads the Release pushed (this phase and earlier ones); no Prometheus.

    Restarts count from the gate's baseline (captured before the phase changed anything): a pod that
    existed then counts the restarts it made since, a pod created later all of its own. A pod counts as
    not ready once it has been not ready for longer than notReadyGrace (pods still starting are not a
    failure; while every pod is still starting the reading is Inconclusive without counting toward
    inconclusiveLimit). Pods being deleted are ignored. No pods at all: Inconclusive (counts); a pushed
    workload that does not exist: Error.
    """

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "!has(self.failOnReasons) || self.failOnReasons.all(r, size(r) > 0)",
                "failOnReasons entries must not be empty",
            ),
        )
    )

    max_restarts: int = Field(
        default=0, description="Container restarts tolerated since the phase began, over all pods.", ge=0
    )
    max_not_ready: int = Field(default=0, description="Pods tolerated not ready past notReadyGrace.", ge=0)
    not_ready_grace: Duration = Field(
        default=timedelta(seconds=60),
        description="How long a pod may be not ready (since it was created or last changed readiness) before it "
        "counts as not ready.",
    )
    fail_on_reasons: list[Annotated[str, Field(max_length=128)]] = Field(
        default_factory=lambda: list(DEFAULT_FAIL_ON_REASONS),
        description="A container waiting with, or last terminated with, one of these reasons fails the gate "
        "(default: CrashLoopBackOff, ImagePullBackOff, ErrImagePull, InvalidImageName, CreateContainerConfigError, "
        "RunContainerError, OOMKilled). [] turns the check off.",
        max_length=32,
    )


class JobMetadata(Model):
    """Labels and annotations for the smoke-test Job (and, via its pod template, nothing else)."""

    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels on the Job.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Extra annotations on the Job.")


class JobGate(Model):
    """Run a Job once per phase (a smoke test) in the Release's namespace: Pass when it completes, Fail when it
    fails or runs past timeout (then Kubernetes terminates it: activeDeadlineSeconds).

    The Job is named ``<release>-<gate>-<phase>`` (shortened with a hash to fit 63 characters), owned by the
    Release and labelled stopline.dev/release, stopline.dev/gate and stopline.dev/phase; it is created once
    (a restarted controller finds it by name) when the phase becomes Available, and deleted when the
    phase ends and when the Release is done. {{ phase }}, {{ revision }} and {{ namespace }} are filled in
    every string of spec (env values, args, ...).
    """

    spec: dict[str, Any] = Field(
        description="A batch/v1 JobSpec (template.spec.containers, backoffLimit, ...). restartPolicy defaults "
        "to Never and backoffLimit to 0."
    )
    metadata: JobMetadata = Field(default_factory=JobMetadata, description="Extra labels/annotations on the Job.")
    timeout: Duration = Field(
        default=timedelta(minutes=5), description="Fail when the Job has not completed within this time."
    )

    @field_validator("spec")
    @classmethod
    def _has_template(cls, v: dict[str, Any]) -> dict[str, Any]:
        template = v.get("template")
        containers = ((template or {}).get("spec") or {}).get("containers") if isinstance(template, dict) else None
        if not isinstance(containers, list) or not containers:
            raise ValueError("job.spec.template.spec.containers must list at least one container")
        return v

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, v: timedelta) -> timedelta:
        if v < timedelta(seconds=1):
            raise ValueError("job timeout must be at least 1s")
        return v


class SecretKeyRef(Model):
    """One key of a Secret in the Release's namespace."""

    name: str = Field(description="Secret name.", pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)
    key: str = Field(description="Key in the Secret's data.", min_length=1, max_length=253)


class HeaderSource(Model):
    """Where a header value comes from."""

    secret_key_ref: SecretKeyRef = Field(description="A key of a Secret (the value is never logged or shown).")


class HttpHeader(Model):
    """One request header: a literal value, or a value from a Secret."""

    model_config = ConfigDict(
        json_schema_extra=cel(("has(self.value) != has(self.valueFrom)", "set exactly one of value or valueFrom"))
    )

    name: str = Field(description="Header name.", pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", max_length=256)
    value: str | None = Field(default=None, description="Literal value ({{ phase }} etc. templated).")
    value_from: HeaderSource | None = Field(default=None, description="Value from a Secret key.")

    @model_validator(mode="after")
    def _one_source(self) -> HttpHeader:
        if (self.value is None) == (self.value_from is None):
            raise ValueError(f"header {self.name!r}: set exactly one of value or valueFrom")
        return self


class HttpGate(Model):
    """Call a URL (an in-cluster Service, or loopback in tests) and judge its answer.

    Fail: a status not in expectStatus (default any 2xx; a 5xx from a health endpoint is a real failure
    signal), or the JSON field outside the gate's min/max/maxIncreasePercent/maxDecreasePercent.
    Inconclusive (counts toward inconclusiveLimit): timeout, connection refused, DNS failure. Error: the
    body is not JSON, or the field is missing or not a number, when a field is set.
    """

    model_config = ConfigDict(
        json_schema_extra=cel(
            ("!has(self.body) || self.method != 'GET'", "a GET request takes no body"),
            (
                "!has(self.expectStatus) || self.expectStatus.all(s, s >= 100 && s <= 599)",
                "expectStatus entries must be HTTP status codes (100-599)",
            ),
        )
    )

    url: str = Field(
        description="URL to call ({{ phase }}, {{ revision }}, {{ namespace }} templated), e.g. "
        "http://web.shop.svc:8080/healthz.",
        pattern=r"^https?://[^\s/?#]+([/?#]\S*)?$",
        max_length=2048,
    )
    method: Literal["GET", "POST"] = Field(default="GET", description="GET or POST.")
    headers: list[HttpHeader] = Field(default_factory=list, description="Request headers.", max_length=32)
    body: str | None = Field(default=None, description="Request body (POST), templated.", max_length=65536)
    timeout: Duration = Field(default=timedelta(seconds=5), description="Give up on the request after this.")
    expect_status: list[int] = Field(
        default_factory=list, description="Status codes that pass (default: any 2xx).", max_length=32
    )
    field: str | None = Field(
        default=None,
        description="A number in the JSON body to judge with the gate's bounds: a dotted path with optional "
        "list indexes, e.g. 'checks.db.latencyMs' or 'items[0].value' (a leading '$.' is allowed). true/false "
        "read as 1/0.",
        max_length=512,
        pattern=r"^(\$\.?)?[A-Za-z0-9_\-]+(\[[0-9]+\])*(\.[A-Za-z0-9_\-]+(\[[0-9]+\])*)*$",
    )

    @field_validator("expect_status")
    @classmethod
    def _codes(cls, v: list[int]) -> list[int]:
        bad = [c for c in v if not 100 <= c <= 599]
        if bad:
            raise ValueError(f"expectStatus: not HTTP status codes: {bad}")
        return v

    @model_validator(mode="after")
    def _no_get_body(self) -> HttpGate:
        if self.body is not None and self.method == "GET":
            raise ValueError("http: a GET request takes no body (use method: POST)")
        return self


CompareDirection = Literal["increase", "decrease", "either"]


class CompareGate(Model):
    """Judge the pushed pods against the not-yet-pushed baseline pods of the phase, at the same time.

    The query is evaluated twice over the same window (a range query, one sample per ``step``): once
    with ``{{ workloads }}`` / ``{{ pods }}`` naming the workloads this phase and earlier ones pushed
    (the canary), once naming the workloads later phases will push (the baseline). The pooled samples
    of the two groups are compared with a Mann-Whitney U test; the push fails only when the difference
    is significant (p < alpha) and the canary's median is worse than the baseline's by more than the
    effect bound. A drift both groups share (diurnal load) therefore passes.
    """

    model_config = ConfigDict(
        json_schema_extra=cel(
            ("!has(self.alpha) || (self.alpha > 0.0 && self.alpha < 1.0)", "alpha must be between 0 and 1 (exclusive)"),
            ("!has(self.window) || duration(self.window) > duration('0s')", "window must be positive"),
            ("!has(self.step) || duration(self.step) >= duration('100ms')", "step must be at least 100ms"),
        )
    )

    query: str = Field(
        description=(
            "PromQL evaluated for each group; {{ workloads }} is an anchored regex alternation of the group's "
            "workload names (e.g. (web-canary)), {{ pods }} one matching their pods' names (Deployment, "
            "StatefulSet and DaemonSet pod naming); {{ phase }}, {{ revision }}, {{ namespace }} as in query "
            'gates. E.g. latency_seconds{namespace="{{ namespace }}", workload=~"{{ workloads }}"}.'
        ),
        min_length=1,
    )
    window: Duration = Field(
        default=timedelta(minutes=5),
        description="Compare at most this much of the phase: from when it became Available, capped to the last window.",
    )
    step: Duration = Field(
        default=timedelta(seconds=1),
        description=(
            "Range-query step: one sample per series per step. Set it to the series' scrape interval: a shorter "
            "step repeats samples and overstates significance."
        ),
    )
    alpha: float = Field(
        default=0.05, description="Significance level of the Mann-Whitney U test, in (0, 1).", gt=0, lt=1
    )
    direction: CompareDirection = Field(
        default="increase",
        description=(
            "Which difference is bad: increase (canary higher, e.g. latency, errors; one-sided test), "
            "decrease (canary lower, e.g. throughput; one-sided) or either (two-sided)."
        ),
    )
    max_increase_percent: float | None = Field(
        default=None,
        description=(
            "Effect bound: a significant increase fails only when the canary's median exceeds the baseline's by "
            "more than this percent of |baseline median| (default 0: any significant increase)."
        ),
        ge=0,
    )
    max_decrease_percent: float | None = Field(
        default=None,
        description="Effect bound for decreases, as maxIncreasePercent (default 0: any significant decrease).",
        ge=0,
    )
    min_effect_size: float | None = Field(
        default=None,
        description=(
            "Also require |Cliff's delta| (rank-biserial correlation, in [0, 1]) at least this large to fail "
            "(0.147 small, 0.33 medium, 0.474 large)."
        ),
        ge=0,
        le=1,
    )
    min_samples: int = Field(
        default=10, description="Samples each group needs before a verdict (fewer: Inconclusive).", ge=1
    )

    @field_validator("alpha", "max_increase_percent", "max_decrease_percent", "min_effect_size")
    @classmethod
    def _finite_number(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    @field_validator("window")
    @classmethod
    def _positive_window(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("window must be positive")
        return v

    @field_validator("step")
    @classmethod
    def _step(cls, v: timedelta) -> timedelta:
        if v < timedelta(milliseconds=100):
            raise ValueError("step must be at least 100ms")
        return v


class Gate(Model):
    """A metric check evaluated during every hold and the watch window."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "[" + ", ".join(f"has(self.{k})" for k in GATE_KINDS) + "].filter(x, x).size() == 1",
                "set exactly one gate kind: " + ", ".join(GATE_KINDS),
            ),
            (
                "!has(self.query) || has(self.min) || has(self.max) || has(self.maxIncreasePercent)"
                " || has(self.maxDecreasePercent)",
                "a query gate needs at least one bound: min, max, maxIncreasePercent or maxDecreasePercent",
            ),
            (
                "has(self.query) || has(self.http) || !(has(self.min) || has(self.max)"
                " || has(self.maxIncreasePercent) || has(self.maxDecreasePercent))",
                "min, max, maxIncreasePercent and maxDecreasePercent apply to query and http gates only",
            ),
            (
                "!has(self.http) || has(self.http.field) || !(has(self.min) || has(self.max)"
                " || has(self.maxIncreasePercent) || has(self.maxDecreasePercent))",
                "an http gate with bounds needs http.field (the JSON number they apply to)",
            ),
            ("!has(self.min) || !has(self.max) || self.min <= self.max", "min must not be greater than max"),
            ("!has(self.interval) || duration(self.interval) >= duration('100ms')", "interval must be at least 100ms"),
            (
                "!has(self.earlyInterval) || duration(self.earlyInterval) >= duration('100ms')",
                "earlyInterval must be at least 100ms",
            ),
        )
    )

    name: str = Field(description="Gate name, unique within the Release.", pattern=DNS_LABEL_PATTERN, max_length=63)
    query: str | None = Field(
        default=None,
        description="PromQL returning one number; {{ phase }}, {{ revision }}, {{ namespace }} are templated.",
        min_length=1,
    )
    experiment: ExperimentGate | None = Field(default=None, description="Judge by an Experiment instead of a query.")
    compare: CompareGate | None = Field(
        default=None, description="Judge the pushed pods against the baseline pods (Mann-Whitney U) instead of a query."
    )
    kubernetes: KubernetesGate | None = Field(
        default=None,
        description="Judge the pushed workloads' pods: restarts, crash loops, image pull errors, OOM kills, "
        "not-ready pods ({} for the defaults). Also read while the phase rolls out.",
    )
    job: JobGate | None = Field(default=None, description="Run a smoke-test Job once per phase.")
    http: HttpGate | None = Field(default=None, description="Call a URL: judge its status and a JSON field.")
    min: float | None = Field(default=None, description="Fail when the value is below this.")
    max: float | None = Field(default=None, description="Fail when the value is above this.")
    max_increase_percent: float | None = Field(
        default=None, description="Fail when post-push exceeds pre-push by more than this percent.", ge=0
    )
    max_decrease_percent: float | None = Field(
        default=None, description="Fail when post-push is below pre-push by more than this percent.", ge=0
    )
    interval: Duration = Field(default=timedelta(seconds=10), description="How often the gate is evaluated.")
    early_interval: Duration | None = Field(
        default=None,
        description=(
            "A faster reading interval for the first earlyFor after a phase becomes Available (when a bad "
            "push shows most often); interval applies afterwards and in the watch window. At least 100ms."
        ),
    )
    early_for: Duration = Field(
        default=timedelta(0), description="How long after a phase becomes Available earlyInterval applies."
    )
    failure_limit: int = Field(default=0, description="Consecutive breaches tolerated before failing.", ge=0)
    inconclusive_limit: int = Field(
        default=6, description="Consecutive no-data/error readings tolerated before failing.", ge=0
    )
    dry_run: bool = Field(default=False, description="Record readings but never fail the push.")
    phases: list[str] | None = Field(
        default=None,
        description="Only evaluate during these phases (and the watch window if 'watch' is listed).",
    )

    @field_validator("min", "max", "max_increase_percent", "max_decrease_percent")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("bound must be a finite number")
        return v

    @field_validator("interval")
    @classmethod
    def _positive_interval(cls, v: timedelta) -> timedelta:
        if v < timedelta(milliseconds=100):
            raise ValueError("interval must be at least 100ms")
        return v

    @field_validator("early_interval")
    @classmethod
    def _positive_early_interval(cls, v: timedelta | None) -> timedelta | None:
        if v is not None and v < timedelta(milliseconds=100):
            raise ValueError("earlyInterval must be at least 100ms")
        return v

    @property
    def kind(self) -> GateKind:
        """Which kind of gate this is: the one kind key that is set (validated: exactly one)."""
        for k in GATE_KINDS:
            if getattr(self, k) is not None:
                return k
        raise ValueError(f"gate {self.name!r} has no kind")  # unreachable after validation

    @model_validator(mode="after")
    def _source_and_bounds(self) -> Gate:
        kinds = [k for k in GATE_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            got = ", ".join(kinds) if kinds else "none"
            raise ValueError(f"gate {self.name!r}: set exactly one of {', '.join(GATE_KINDS)} (got {got})")
        bounds = (self.min, self.max, self.max_increase_percent, self.max_decrease_percent)
        if self.query is not None and all(b is None for b in bounds):
            raise ValueError(
                f"gate {self.name!r}: set at least one bound (min, max, maxIncreasePercent, maxDecreasePercent)"
            )
        if self.compare is not None and any(b is not None for b in bounds):
            raise ValueError(f"gate {self.name!r}: a compare gate takes its bounds inside compare")
        if kinds[0] not in NUMERIC_KINDS and any(b is not None for b in bounds):
            article = "an" if kinds[0][0] in "aeiou" else "a"
            raise ValueError(f"gate {self.name!r}: {article} {kinds[0]} gate takes no numeric bounds")
        if self.http is not None and self.http.field is None and any(b is not None for b in bounds):
            raise ValueError(f"gate {self.name!r}: bounds on an http gate need http.field (the JSON number to judge)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"gate {self.name!r}: min ({self.min}) is greater than max ({self.max})")
        return self


UndoMode = Literal["fast", "rolling"]


class OnFailure(Model):
    """What stopline does when a gate fails (or a push fails in any other way)."""

    rollback: bool = Field(
        default=True,
        description=(
            "Restore the exact pre-push copy of every object the push touched, delete the objects it created "
            "and recreate the objects it pruned."
        ),
    )
    undo: UndoMode = Field(
        default="fast",
        description=(
            "How restored workloads stop running the pushed version. fast (default): in one step — a "
            "Deployment is restored with a surge-all strategy (maxSurge 100%, maxUnavailable 100%: the old "
            "ReplicaSet is scaled to full at once and the new one to zero), a DaemonSet with maxSurge 100%, a "
            "StatefulSet with maxUnavailable 100%; once the workloads are Available their own strategy is put "
            "back exactly (a strategy-only change starts no rollout and adds no revision). Costs up to twice "
            "the pods of a workload for a moment. rolling: restore with the workload's own strategy "
            "(kube-controller-manager rolls back at its pace, e.g. 25% surge/unavailable)."
        ),
    )
    revert_commit: bool = Field(default=True, description="Push a git revert of the revision to the branch.")
    lock: bool = Field(default=True, description="Set the owning Track's commit lock.")


OnInconclusive = Literal["pause", "rollback", "rollbackAndRevert"]


DEFAULT_STUCK_AFTER = timedelta(seconds=60)
DEFAULT_PROGRESS_DEADLINE = timedelta(minutes=10)

_TEMPLATE_RULES: tuple[tuple[str, str], ...] = (
    (
        "!has(self.stuckAfter) || duration(self.stuckAfter) < "
        "(has(self.progressDeadline) ? duration(self.progressDeadline) : duration('10m'))",
        "stuckAfter must be shorter than progressDeadline (default 10m)",
    ),
    ("self.phases.all(p, self.phases.exists_one(q, q.name == p.name))", "phase names must be unique"),
    (
        "!has(self.gates) || self.gates.all(g, self.gates.exists_one(h, h.name == g.name))",
        "gate names must be unique",
    ),
    (
        "self.phases.all(p, !has(p.remaining) || !p.remaining || p.name == self.phases[self.phases.size() - 1].name)",
        "only the last phase may set remaining: true",
    ),
    *NOTIFY_RULES,
    (
        "!has(self.gates) || self.phases.size() > 1 || self.gates.all(g, !has(g.compare))",
        "a compare gate needs a phase with later phases to compare with (it is skipped in the last phase and watch)",
    ),
)


class ReleaseTemplate(Model):
    """Everything a Release needs besides its source; also the Track's template."""

    model_config = ConfigDict(json_schema_extra=cel(*_TEMPLATE_RULES))

    prometheus: PrometheusRef | None = Field(default=None, description="Prometheus for gates (controller default).")
    phases: list[Phase] = Field(description="Phases, pushed in order.", min_length=1, max_length=32)
    gates: list[Gate] = Field(
        default_factory=list, description="Gates judged during holds and the watch window.", max_length=64
    )
    watch: Duration = Field(default=timedelta(0), description="Keep gates on this long after the last phase.")
    progress_deadline: Duration = Field(
        default=DEFAULT_PROGRESS_DEADLINE,
        description="Fail the push when a phase is not Available within this time.",
    )
    stuck_after: Duration = Field(
        default=DEFAULT_STUCK_AFTER,
        description=(
            "Fail the phase this long after its rollout first shows a cause that waiting cannot fix: a "
            "FailedCreate that persists (forbidden: missing ServiceAccount, exceeded quota, ...), "
            "ImagePullBackOff/ErrImagePull, InvalidImageName, CreateContainerConfigError, "
            "ProgressDeadlineExceeded. The cause becomes the failure reason and message, then onFailure "
            "applies. Causes that can heal (Unschedulable, pods Pending on capacity, ContainerCreating) keep "
            "waiting up to progressDeadline; either way status.message, status.phases[].stuck, a Warning "
            "event and `stopline status` name the cause within seconds. A restore that cannot settle ends "
            "its wait the same way. Must be shorter than progressDeadline; default 60s (half of "
            "progressDeadline when that is 60s or less and stuckAfter is not set)."
        ),
    )
    on_failure: OnFailure = Field(default_factory=OnFailure, description="Rollback, revert and lock switches.")
    on_inconclusive: OnInconclusive = Field(
        default="pause",
        description=(
            "What a gate past its inconclusiveLimit (no data, NaN, Prometheus unreachable) does. "
            "pause (default): the push waits, paused, never promoted, until readings return — a monitoring "
            "outage alone never fails or reverts a push. rollback: fail the push and restore the cluster, "
            "without a git revert (the commit is not known to be bad). rollbackAndRevert: fail, restore and "
            "push the revert commit too."
        ),
    )
    notify: list[Sink] = Field(
        default_factory=list,
        description=(
            "Where to tell people what happened: Slack-compatible webhooks, JSON webhooks (HMAC-signed) and "
            "email. Added to the controller's default sinks (chart value notify); a sink named like a default "
            "replaces it, and {name, disabled: true} switches it off. Each sink sends RolledBack and "
            "RevertFailed unless it lists events."
        ),
        max_length=16,
    )
    prune: bool = Field(
        default=False,
        description=(
            "Delete objects stopline applied earlier for this app (same repository and path; label "
            "stopline.dev/app) that the revision no longer has: in the phase that pushed them (annotation "
            "stopline.dev/phase) or the first phase. A rollback recreates them."
        ),
    )

    @model_validator(mode="after")
    def _unique_names(self) -> ReleaseTemplate:
        named = (
            ("phase", [p.name for p in self.phases]),
            ("gate", [g.name for g in self.gates]),
            ("notify sink", [n.name for n in self.notify]),
        )
        for kind, names in named:
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate {kind} name(s): {', '.join(dupes)}")
        remaining = [p.name for p in self.phases if p.remaining]
        if len(remaining) > 1:
            raise ValueError(f"only one phase may set remaining: true (got {', '.join(remaining)})")
        if remaining and not self.phases[-1].remaining:
            raise ValueError(f"the remaining phase {remaining[0]!r} must be the last phase")
        if self.stuck_after >= self.progress_deadline:
            if "stuck_after" in self.model_fields_set:
                raise ValueError(
                    f"stuckAfter ({format_duration(self.stuck_after)}) must be shorter than progressDeadline "
                    f"({format_duration(self.progress_deadline)})"
                )
            self.stuck_after = self.progress_deadline / 2  # the default does not fit a short deadline
        phase_names = {p.name for p in self.phases} | {"watch"}
        for g in self.gates:
            unknown = sorted(set(g.phases or ()) - phase_names)
            if unknown:
                raise ValueError(f"gate {g.name!r} lists unknown phase(s): {', '.join(unknown)}")
            judged = [p for p in (g.phases or phase_names) if p not in ("watch", self.phases[-1].name)]
            if g.compare is not None and not judged:
                raise ValueError(
                    f"gate {g.name!r}: a compare gate needs a phase with later phases to compare with "
                    "(it is skipped in the last phase and the watch window)"
                )
        return self


class ReleaseSpec(ReleaseTemplate):
    """Desired state of a Release."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            *_TEMPLATE_RULES,
            (
                "self.source == oldSelf.source",
                "spec.source is immutable: create a new Release for another revision",
            ),
        )
    )

    source: ReleaseSource = Field(description="Repository, branch, revision and manifest path.")


ReleasePhase = Literal[
    "Pending",
    "Progressing",
    "Holding",
    "Watching",
    "Succeeded",
    "RollingBack",
    "RolledBack",
    "Failed",
    "Paused",
]
#: Release phases after which nothing more happens to the cluster (a pending git revert may still be retried).
FINAL_PHASES: frozenset[str] = frozenset({"Succeeded", "RolledBack", "Failed"})
PhaseState = Literal["Pending", "Progressing", "Holding", "Passed", "Failed", "RolledBack"]
Verdict = Literal["Pass", "Fail", "Inconclusive", "Error"]


class StuckStatus(StatusModel):
    """Why a rollout (or a restore) is not Available yet, in the cluster's own words."""

    workload: str = Field(description="The workload (Kind/name) that shows the cause.")
    reason: str = Field(
        description="The cluster's reason: FailedCreate, ImagePullBackOff, ErrImagePull, InvalidImageName, "
        "CreateContainerConfigError, ProgressDeadlineExceeded, Unschedulable, ContainerCreating, ..."
    )
    message: str = Field(
        description='What it says, e.g. \'frontend: FailedCreate: pods "frontend-…" is forbidden: error looking '
        'up service account shop/frontend: serviceaccount "frontend" not found\'.'
    )
    heals: bool = Field(
        description="Whether waiting can fix it (false: the phase fails at failsAt, after spec.stuckAfter)."
    )
    detail: str = Field(
        default="", description="The API's own message (or the image that cannot be pulled), without pod counts."
    )
    pods: int = Field(default=0, description="Pods showing it (0: the workload or its ReplicaSet says it).")
    since: datetime | None = Field(
        default=None,
        description="Since when it has not healed: first seen (kept while one cause that cannot heal follows another).",
    )
    fails_at: datetime | None = Field(
        default=None,
        description="When the phase fails (the restore stops waiting) unless it heals: since + stuckAfter.",
    )


class PhaseStatus(StatusModel):
    """Progress of one phase."""

    name: str = Field(description="Phase name.")
    state: PhaseState = Field(
        default="Pending", description="Pending, Progressing, Holding, Passed, Failed, RolledBack."
    )
    started_at: datetime | None = Field(default=None, description="When stopline started changing the phase.")
    available_at: datetime | None = Field(default=None, description="When every workload of the phase was ready.")
    hold_until: datetime | None = Field(
        default=None,
        description="Earliest end of the hold: now plus the observed time still missing (moves while gates lack data).",
    )
    observed_seconds: float = Field(
        default=0.0, description="Hold time so far in which every gate of the phase had conclusive readings."
    )
    observed_since: datetime | None = Field(
        default=None, description="Start of the current stretch of conclusive readings (not yet counted)."
    )
    completed_at: datetime | None = Field(default=None, description="When the phase passed or failed.")
    deployments: list[str] = Field(default_factory=list, description="Deployments this phase pushes.")
    workloads: list[str] = Field(
        default_factory=list, description="Workloads (Kind/name) this phase rolls out and waits for."
    )
    objects: list[str] = Field(
        default_factory=list, description="Every object (Kind/name) this phase pushes, in apply order."
    )
    pruned: list[str] = Field(
        default_factory=list, description="Objects (Kind/name) this phase deletes because the revision dropped them."
    )
    stuck: StuckStatus | None = Field(
        default=None,
        description="While the phase rolls out: why it is not Available yet (cleared when the cause goes away).",
    )


class GaugeRow(StatusModel):
    """One row of the push monitoring gauges table: a gate in a phase."""

    gate: str = Field(description="Gate name.")
    phase: str = Field(description="Phase name, or 'watch'.")
    kind: str = Field(
        default="query", description="What judges the gate: query, experiment, kubernetes, job, http or compare."
    )
    pre_push: float | None = Field(default=None, description="Value captured just before the phase changed anything.")
    post_push: float | None = Field(default=None, description="Latest value during the hold.")
    delta: float | None = Field(default=None, description="postPush - prePush.")
    delta_percent: float | None = Field(default=None, description="Delta relative to |prePush|, in percent.")
    threshold: str = Field(default="", description="The bounds, e.g. '>6 or >+25%'.")
    verdict: Verdict = Field(default="Inconclusive", description="Pass, Fail, Inconclusive or Error.")
    breaches: int = Field(default=0, description="Consecutive breaching readings.")
    inconclusive: int = Field(default=0, description="Consecutive readings without data.")
    readings: int = Field(default=0, description="Readings taken in this phase.")
    message: str = Field(default="", description="Why the verdict is what it is.")
    dry_run: bool = Field(default=False, description="The gate is in dry-run mode.")
    at: datetime | None = Field(default=None, description="Time of the latest reading.")
    next_at: datetime | None = Field(
        default=None,
        description=(
            "When the next reading is due: just after Prometheus is expected to have a new sample of the "
            "gate's series (scrape-aligned), or one interval after the latest reading."
        ),
    )
    scrape_period: float | None = Field(
        default=None, description="Seconds between samples of the gate's series, as learned from their timestamps."
    )
    restarts_at_start: dict[str, int] = Field(
        default_factory=dict,
        description="kubernetes gates: container restarts per pod (by UID; pods with none left out) at the baseline.",
    )


class SnapshotStatus(StatusModel):
    """Where the pre-push copies of touched objects are kept.

    Copies live in the ConfigMap ``<release>-snapshot`` (more parts ``-snapshot-2``, ``-3``, ... when they
    outgrow one object; large copies gzip-compressed); copies of Secrets live in the Secret
    ``<release>-snapshot``, never in a ConfigMap. All are owned by the Release.
    """

    config_map: str = Field(description="ConfigMap (owned by the Release) holding the pre-push objects.")
    secret: str | None = Field(default=None, description="Secret holding the pre-push copies of Secrets.")
    deployments: list[str] = Field(default_factory=list, description="Deployments captured so far.")
    objects: list[str] = Field(default_factory=list, description="Objects (Kind/name) captured so far.")
    absent: list[str] = Field(
        default_factory=list,
        description="Objects (Kind/name; a bare name is a Deployment) that did not exist before the push.",
    )
    created: dict[str, str] = Field(
        default_factory=dict,
        description="UID of each object the push created (Kind/name → uid); only these are deleted on rollback.",
    )


RevertState = Literal["Pending", "Pushed", "AlreadyReverted", "Conflict", "Error", "Skipped", "Waived"]
#: Revert states after which no further attempt is made.
REVERT_SETTLED: frozenset[str] = frozenset({"Pushed", "AlreadyReverted", "Conflict", "Skipped", "Waived"})
#: Revert states in which the revert commit is on the branch.
REVERT_LANDED: frozenset[str] = frozenset({"Pushed", "AlreadyReverted"})


class RevertStatus(StatusModel):
    """The git revert of the bad revision."""

    state: RevertState = Field(
        default="Pending",
        description=(
            "Pending: wanted, not on the branch yet (retried with capped backoff until it lands); Pushed; "
            "AlreadyReverted (found on the branch); Conflict (cannot be reverted cleanly: needs a human); "
            "Skipped (not configured or not wanted); Waived (a human unlocked without it)."
        ),
    )
    commit: str | None = Field(default=None, description="SHA of the revert commit on the branch.")
    pushed_at: datetime | None = Field(default=None, description="When it was pushed (or found already pushed).")
    message: str | None = Field(default=None, description="Commit message subject.")
    reason: str | None = Field(default=None, description="Why it could not be pushed.")
    attempts: int = Field(default=0, description="Push attempts so far.")
    last_attempt_at: datetime | None = Field(default=None, description="When the revert was last attempted.")
    attempt_started_at: datetime | None = Field(default=None, description="When the attempt in flight started.")
    next_attempt_at: datetime | None = Field(default=None, description="When the next attempt is due (Pending).")


class UndoStatus(StatusModel):
    """What the rollback did."""

    at: datetime | None = Field(default=None, description="When the restore was carried out.")
    restored: list[str] = Field(default_factory=list, description="Deployments restored to their snapshot.")
    deleted: list[str] = Field(default_factory=list, description="Deployments the push had created, deleted.")
    objects: list[str] = Field(
        default_factory=list, description="Every object (Kind/name) restored to its snapshot, Deployments included."
    )
    deleted_objects: list[str] = Field(
        default_factory=list, description="Every object (Kind/name) the push had created, deleted."
    )
    error: str | None = Field(default=None, description="Why the restore was incomplete.")
    attempts: int = Field(default=0, description="Restore attempts so far (a failed restore is retried).")
    stuck: StuckStatus | None = Field(
        default=None, description="Why a restored workload is not Available yet, while the restore settles."
    )
    mode: UndoMode = Field(default="rolling", description="fast or rolling (onFailure.undo at the time).")
    started_at: datetime | None = Field(default=None, description="When the first restore write was sent.")
    strategy_pending: list[str] = Field(
        default_factory=list,
        description=(
            "Workloads (Kind/name) restored with a temporary fast strategy whose own strategy is still to be "
            "put back (done once they are Available)."
        ),
    )
    strategy_restored_at: datetime | None = Field(
        default=None, description="When the workloads' own strategies were put back (fast undo)."
    )


class FailureStatus(StatusModel):
    """Why the push failed."""

    gate: str | None = Field(default=None, description="The gate that failed, if any.")
    phase: str | None = Field(default=None, description="Phase (or 'watch') in which it failed.")
    reason: str = Field(description="Machine-friendly reason: GateFailed, Aborted, ProgressDeadlineExceeded, ...")
    message: str = Field(description="Human-readable summary with the numbers.")
    at: datetime | None = Field(default=None, description="When the failure was detected.")
    revert: bool = Field(default=True, description="Whether this failure wants the revision reverted in Git.")


class ActionError(StatusModel):
    """The latest action that could not be carried out (cleared by the next one that succeeds)."""

    action: str = Field(description="The action, e.g. ApplyPhase, Snapshot, Undo.")
    message: str = Field(description="What went wrong.")
    permanent: bool = Field(default=False, description="Retrying cannot help: the planner fails the push.")
    phase: str | None = Field(default=None, description="Phase the action was for.")
    at: datetime | None = Field(default=None, description="When it failed.")
    attempts: int = Field(default=1, description="Failures in a row.")


class ReleaseStatus(StatusModel):
    """Observed state of a Release; written only by the controller."""

    phase: ReleasePhase = Field(default="Pending", description="Overall state of the push.")
    current_phase: str | None = Field(default=None, description="Phase being pushed or held (or 'watch').")
    failed_gate: str | None = Field(default=None, description="Gate that stopped the push.")
    observed_generation: int | None = Field(default=None, description="Spec generation last acted on.")
    phases: list[PhaseStatus] = Field(default_factory=list, description="Per-phase progress.")
    gauges: list[GaugeRow] = Field(
        default_factory=list, description="Push monitoring gauges: one row per gate per phase."
    )
    snapshot: SnapshotStatus | None = Field(default=None, description="Pre-push copies of touched objects.")
    revert: RevertStatus | None = Field(default=None, description="The git revert, when one was needed.")
    failure: FailureStatus | None = Field(default=None, description="Why the push failed.")
    watch_until: datetime | None = Field(default=None, description="Earliest end of the watch window.")
    watch_observed_seconds: float = Field(
        default=0.0, description="Watch time so far in which every watch gate had conclusive readings."
    )
    watch_observed_since: datetime | None = Field(
        default=None, description="Start of the current stretch of conclusive watch readings."
    )
    undo: UndoStatus | None = Field(default=None, description="What the rollback restored and deleted.")
    rolled_back_at: datetime | None = Field(default=None, description="When every touched Deployment was restored.")
    started_at: datetime | None = Field(default=None, description="When the push started.")
    completed_at: datetime | None = Field(default=None, description="When the push reached a final state.")
    user_paused: bool = Field(default=False, description="Paused by the user (annotation stopline.dev/paused).")
    pause_reason: Literal["User", "Inconclusive"] | None = Field(
        default=None,
        description="Derived: User (paused by annotation) or Inconclusive (an acting gate has no data).",
    )
    promoted: str | None = Field(default=None, description="Last promote token acted on.")
    skipped_commits: list[str] = Field(default_factory=list, description="Commits batched into this push by a Track.")
    author: str | None = Field(default=None, description="Who wrote the revision (git author, 'Name <email>').")
    committer: str | None = Field(
        default=None, description="Who committed the revision (git committer, 'Name <email>'; for a merge, who merged)."
    )
    action_error: ActionError | None = Field(default=None, description="The latest action that failed, if any.")
    notifications: NotificationsStatus | None = Field(
        default=None, description="The notification outbox: what was (or is still to be) sent to whom."
    )
    message: str | None = Field(default=None, description="Latest human-readable message.")
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, GatesPassing, RolledBack, GitReverted."
    )
