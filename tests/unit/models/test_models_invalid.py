"""Bad specs are rejected, each with one error that names the field and the rule it breaks.

Every case starts from a valid spec of its kind and changes one thing, so the assertion that exactly
one error comes back also proves the base is valid and no other rule fired by accident.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from controller.models.experiment import ALPHA_MESSAGE, ExperimentSpec
from controller.models.release import ReleaseSpec
from controller.models.track import TrackSpec

SHA = "3f9c2e1d5b7a4c8e9f0a1b2c3d4e5f60718293a4"
DELETE = object()

RELEASE: dict[str, Any] = {
    "source": {"repo": "https://git.example.test/shop/app.git", "branch": "main", "revision": SHA},
    "phases": [
        {"name": "canary", "deployments": ["web-canary"], "hold": "60s"},
        {"name": "chat", "selector": {"matchLabels": {"tier": "chat"}}, "hold": "2m"},
        {"name": "rest", "remaining": True},
    ],
    "gates": [
        {"name": "load", "query": "avg(node_load1)", "max": 6, "maxIncreasePercent": 25},
        {"name": "harm", "experiment": {"name": "gdc-europe-2011"}},
    ],
    "watch": "10m",
}
TRACK: dict[str, Any] = {
    "source": {"repo": "git@git.example.test:shop/app.git", "branch": "main", "path": "deploy/"},
    "pollInterval": "15s",
    "template": {
        "phases": [{"name": "canary", "deployments": ["web-canary"]}, {"name": "rest", "remaining": True}],
        "gates": [{"name": "load", "query": "avg(node_load1)", "max": 6}],
    },
}
EXPERIMENT: dict[str, Any] = {
    "key": "GDCEurope2011",
    "rollout": 10,
    "branches": {"control": 0.5, "enhanced": 0.5},
    "alpha": 0.05,
}
BASES: dict[type[BaseModel], dict[str, Any]] = {
    ReleaseSpec: RELEASE,
    TrackSpec: TRACK,
    ExperimentSpec: EXPERIMENT,
}


def patched(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with dotted paths (``phases__0__hold``) set, or removed with DELETE."""
    out = copy.deepcopy(base)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node: Any = out
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(leaf)] = value
        elif value is DELETE:
            del node[leaf]
        else:
            node[leaf] = value
    return out


@dataclass(frozen=True)
class Bad:
    """One rejected input: the error must sit at ``loc`` and its message must match ``message``."""

    id: str
    model: type[BaseModel]
    data: dict[str, Any]
    loc: str
    message: str


R, T, E = ReleaseSpec, TrackSpec, ExperimentSpec
ALPHA = "^" + re.escape(ALPHA_MESSAGE) + "$"
DNS_SUBDOMAIN = r"String should match pattern '\^\[a-z0-9\]"
PHASES = RELEASE["phases"]
GATES = RELEASE["gates"]

CASES: list[Bad] = [
    # --- Release: durations -------------------------------------------------------------------
    Bad(
        "hold-in-words",
        R,
        patched(RELEASE, phases__0__hold="10 minutes"),
        "phases.0.hold",
        r"invalid duration '10 minutes': use a number with a unit ms, s, m or h",
    ),
    Bad("watch-in-days", R, patched(RELEASE, watch="1d"), "watch", r"invalid duration '1d'"),
    Bad(
        "hold-negative-number",
        R,
        patched(RELEASE, phases__0__hold=-5),
        "phases.0.hold",
        r"invalid duration -5: must not be negative",
    ),
    Bad(
        "interval-zero",
        R,
        patched(RELEASE, gates__0__interval="0s"),
        "gates.0.interval",
        r"interval must be at least 100ms",
    ),
    # --- Release: phases ----------------------------------------------------------------------
    Bad(
        "phase-deployments-and-selector",
        R,
        patched(RELEASE, phases__0__selector={"matchLabels": {"tier": "web"}}),
        "phases.0",
        r"phase 'canary': set exactly one of deployments, workloads, selector or remaining"
        r" \(got deployments, selector\)",
    ),
    Bad(
        "phase-no-target",
        R,
        patched(RELEASE, phases__0={"name": "canary", "hold": "1s"}),
        "phases.0",
        r"phase 'canary': set exactly one of deployments, workloads, selector or remaining \(got none\)",
    ),
    Bad(
        "phase-deployments-and-remaining",
        R,
        patched(RELEASE, phases__2__deployments=["web"]),
        "phases.2",
        r"phase 'rest': set exactly one .* \(got deployments, remaining\)",
    ),
    Bad(
        "phase-deployment-name-not-dns",
        R,
        patched(RELEASE, phases__0__deployments=["web", "Web_Canary!"]),
        "phases.0.deployments.1",
        DNS_SUBDOMAIN,
    ),
    Bad(
        "phase-deployment-name-too-long",
        R,
        patched(RELEASE, phases__0__deployments=["a" * 254]),
        "phases.0.deployments.0",
        r"String should have at most 253 characters",
    ),
    Bad(
        "track-phase-deployment-name-not-dns",
        T,
        patched(TRACK, template__phases__0__deployments=["web-"]),
        "template.phases.0.deployments.0",
        DNS_SUBDOMAIN,
    ),
    Bad(
        "phase-empty-deployments",
        R,
        patched(RELEASE, phases__0__deployments=[]),
        "phases.0.deployments",
        r"List should have at least 1 item",
    ),
    Bad(
        "remaining-not-last",
        R,
        patched(RELEASE, phases=[PHASES[2], PHASES[0]]),
        "",
        r"the remaining phase 'rest' must be the last phase",
    ),
    Bad(
        "two-remaining-phases",
        R,
        patched(
            RELEASE, phases=[PHASES[0], {"name": "rest-a", "remaining": True}, {"name": "rest-b", "remaining": True}]
        ),
        "",
        r"only one phase may set remaining: true \(got rest-a, rest-b\)",
    ),
    Bad(
        "duplicate-phase-names", R, patched(RELEASE, phases__1__name="canary"), "", r"duplicate phase name\(s\): canary"
    ),
    Bad("empty-phases", R, patched(RELEASE, phases=[]), "phases", r"List should have at least 1 item"),
    Bad("missing-phases", R, patched(RELEASE, phases=DELETE), "phases", r"Field required"),
    Bad(
        "phase-name-uppercase",
        R,
        patched(RELEASE, phases__0__name="Canary"),
        "phases.0.name",
        r"String should match pattern",
    ),
    Bad(
        "selector-empty",
        R,
        patched(RELEASE, phases__1__selector={}),
        "phases.1.selector",
        r"selector needs matchLabels or matchExpressions",
    ),
    Bad(
        "selector-in-without-values",
        R,
        patched(RELEASE, phases__1__selector={"matchExpressions": [{"key": "tier", "operator": "In"}]}),
        "phases.1.selector.matchExpressions.0",
        r"operator In needs at least one value",
    ),
    Bad(
        "selector-exists-with-values",
        R,
        patched(
            RELEASE,
            phases__1__selector={"matchExpressions": [{"key": "tier", "operator": "Exists", "values": ["chat"]}]},
        ),
        "phases.1.selector.matchExpressions.0",
        r"operator Exists takes no values",
    ),
    Bad(
        "selector-unknown-operator",
        R,
        patched(
            RELEASE, phases__1__selector={"matchExpressions": [{"key": "tier", "operator": "Gt", "values": ["1"]}]}
        ),
        "phases.1.selector.matchExpressions.0.operator",
        r"Input should be 'In', 'NotIn', 'Exists' or",
    ),
    # --- Release: gates -----------------------------------------------------------------------
    Bad("duplicate-gate-names", R, patched(RELEASE, gates__1__name="load"), "", r"duplicate gate name\(s\): load"),
    Bad(
        "gate-without-bounds",
        R,
        patched(RELEASE, gates__0={"name": "load", "query": "up"}),
        "gates.0",
        r"gate 'load': set at least one bound \(min, max, maxIncreasePercent, maxDecreasePercent\)",
    ),
    Bad(
        "gate-query-and-experiment",
        R,
        patched(RELEASE, gates__0__experiment={"name": "gdc"}),
        "gates.0",
        r"gate 'load': set exactly one of query, experiment, kubernetes, job, http, compare",
    ),
    Bad(
        "gate-neither-query-nor-experiment",
        R,
        patched(RELEASE, gates__0={"name": "load", "max": 1}),
        "gates.0",
        r"gate 'load': set exactly one of query, experiment, kubernetes, job, http, compare",
    ),
    Bad(
        "experiment-gate-with-bounds",
        R,
        patched(RELEASE, gates__1__max=1),
        "gates.1",
        r"gate 'harm': an experiment gate takes no numeric bounds",
    ),
    Bad(
        "compare-gate-with-outer-bounds",
        R,
        patched(RELEASE, gates__1={"name": "cmp", "compare": {"query": "up"}, "max": 1}),
        "gates.1",
        r"gate 'cmp': a compare gate takes its bounds inside compare",
    ),
    Bad(
        "compare-gate-alpha-1",
        R,
        patched(RELEASE, gates__1={"name": "cmp", "compare": {"query": "up", "alpha": 1}}),
        "gates.1.compare.alpha",
        r"Input should be less than 1",
    ),
    Bad(
        "compare-gate-zero-window",
        R,
        patched(RELEASE, gates__1={"name": "cmp", "compare": {"query": "up", "window": "0s"}}),
        "gates.1.compare.window",
        r"window must be positive",
    ),
    Bad(
        "compare-gate-without-query",
        R,
        patched(RELEASE, gates__1={"name": "cmp", "compare": {"alpha": 0.1}}),
        "gates.1.compare.query",
        r"Field required",
    ),
    Bad(
        "compare-gate-only-in-the-last-phase",
        R,
        patched(RELEASE, gates__1={"name": "cmp", "compare": {"query": "up"}, "phases": ["rest", "watch"]}),
        "",
        r"gate 'cmp': a compare gate needs a phase with later phases to compare with",
    ),
    Bad(
        "experiment-gate-bad-fail-on",
        R,
        patched(RELEASE, gates__1__experiment={"name": "x", "failOn": "win"}),
        "gates.1.experiment.failOn",
        r"Input should be 'harm', 'srm' or 'harmOrSrm'",
    ),
    Bad(
        "gate-min-above-max",
        R,
        patched(RELEASE, gates__0__min=7, gates__0__max=6),
        "gates.0",
        r"gate 'load': min \(7\.0\) is greater than max \(6\.0\)",
    ),
    Bad("gate-nan-bound", R, patched(RELEASE, gates__0__max=math.nan), "gates.0.max", r"bound must be a finite number"),
    Bad(
        "gate-infinite-bound",
        R,
        patched(RELEASE, gates__0__min=-math.inf),
        "gates.0.min",
        r"bound must be a finite number",
    ),
    Bad(
        "gate-negative-increase-percent",
        R,
        patched(RELEASE, gates__0__maxIncreasePercent=-5),
        "gates.0.maxIncreasePercent",
        r"Input should be greater than or equal to 0",
    ),
    Bad(
        "gate-negative-failure-limit",
        R,
        patched(RELEASE, gates__0__failureLimit=-1),
        "gates.0.failureLimit",
        r"Input should be greater than or equal to 0",
    ),
    Bad(
        "gate-unknown-phase",
        R,
        patched(RELEASE, gates__0__phases=["canary", "nope", "watch"]),
        "",
        r"gate 'load' lists unknown phase\(s\): nope",
    ),
    Bad(
        "gate-empty-query",
        R,
        patched(RELEASE, gates__0__query=""),
        "gates.0.query",
        r"String should have at least 1 character",
    ),
    # --- Release: source and the rest ---------------------------------------------------------
    Bad(
        "revision-short-sha",
        R,
        patched(RELEASE, source__revision="3f9c2e1"),
        "source.revision",
        r"String should match pattern '\^\[0-9a-f\]\{40\}",
    ),
    Bad(
        "revision-uppercase-sha",
        R,
        patched(RELEASE, source__revision=SHA.upper()),
        "source.revision",
        r"String should match pattern",
    ),
    Bad("revision-missing", R, patched(RELEASE, source__revision=DELETE), "source.revision", r"Field required"),
    Bad(
        "repo-bad-scheme",
        R,
        patched(RELEASE, source__repo="ftp://git.example.test/app.git"),
        "source.repo",
        r"String should match pattern '\^\(https\?://",
    ),
    Bad(
        "path-with-dotdot",
        R,
        patched(RELEASE, source__path="deploy/../../etc"),
        "source.path",
        r"path 'deploy/../../etc' must be relative to the repository root and must not contain '\.\.'",
    ),
    Bad(
        "path-absolute",
        R,
        patched(RELEASE, source__path="/etc/deploy"),
        "source.path",
        r"path '/etc/deploy' must be relative to the repository root",
    ),
    Bad(
        "branch-with-space",
        R,
        patched(RELEASE, source__branch="my branch"),
        "source.branch",
        r"invalid branch name 'my branch'",
    ),
    Bad(
        "branch-with-dotdot",
        R,
        patched(RELEASE, source__branch="release..1"),
        "source.branch",
        r"invalid branch name 'release\.\.1'",
    ),
    Bad("branch-leading-dash", R, patched(RELEASE, source__branch="-f"), "source.branch", r"invalid branch name '-f'"),
    Bad("branch-at", R, patched(RELEASE, source__branch="@"), "source.branch", r"invalid branch name '@'"),
    Bad(
        "branch-hidden-part",
        R,
        patched(RELEASE, source__branch="a/.b"),
        "source.branch",
        r"invalid branch name 'a/\.b'",
    ),
    Bad(
        "kustomize-and-helm",
        R,
        patched(RELEASE, source__kustomize={}, source__helm={}),
        "source",
        r"set at most one of kustomize or helm",
    ),
    Bad(
        "track-kustomize-and-helm",
        T,
        patched(TRACK, source__kustomize={}, source__helm={"valuesFiles": ["values-prod.yaml"]}),
        "source",
        r"set at most one of kustomize or helm",
    ),
    Bad(
        "kustomize-unknown-option",
        R,
        patched(RELEASE, source__kustomize={"enableHelm": True}),
        "source.kustomize.enableHelm",
        r"Extra inputs are not permitted",
    ),
    Bad(
        "helm-values-file-absolute",
        R,
        patched(RELEASE, source__helm={"valuesFiles": ["/etc/passwd"]}),
        "source.helm.valuesFiles",
        r"values file '/etc/passwd' must be a relative path inside the repository",
    ),
    Bad(
        "helm-release-name-uppercase",
        R,
        patched(RELEASE, source__helm={"releaseName": "Web"}),
        "source.helm.releaseName",
        r"String should match pattern",
    ),
    Bad(
        "helm-release-name-too-long",
        R,
        patched(RELEASE, source__helm={"releaseName": "w" * 54}),
        "source.helm.releaseName",
        r"at most 53 characters",
    ),
    Bad(
        "secret-ref-bad-name",
        R,
        patched(RELEASE, source__secretRef={"name": "Git_Creds"}),
        "source.secretRef.name",
        r"String should match pattern",
    ),
    Bad(
        "prometheus-url-bad-scheme",
        R,
        patched(RELEASE, prometheus={"url": "prometheus:9090"}),
        "prometheus.url",
        r"String should match pattern '\^https\?://",
    ),
    Bad(
        "unknown-field-phase",
        R,
        patched(RELEASE, phases__0__holdd="1s"),
        "phases.0.holdd",
        r"Extra inputs are not permitted",
    ),
    Bad("unknown-field-spec", R, patched(RELEASE, replicas=3), "replicas", r"Extra inputs are not permitted"),
    Bad(
        "snake-case-field-name",
        R,
        patched(RELEASE, on_failure_typo={"rollback": False}),
        "on_failure_typo",
        r"Extra inputs are not permitted",
    ),
    # --- Track --------------------------------------------------------------------------------
    Bad(
        "track-poll-500ms", T, patched(TRACK, pollInterval="500ms"), "pollInterval", r"pollInterval must be at least 1s"
    ),
    Bad(
        "track-source-with-revision",
        T,
        patched(TRACK, source__revision=SHA),
        "source.revision",
        r"Extra inputs are not permitted",
    ),
    Bad(
        "track-template-with-source",
        T,
        patched(TRACK, template__source=RELEASE["source"]),
        "template.source",
        r"Extra inputs are not permitted",
    ),
    Bad(
        "track-history-limit-zero",
        T,
        patched(TRACK, historyLimit=0),
        "historyLimit",
        r"Input should be greater than or equal to 1",
    ),
    Bad(
        "track-template-remaining-first",
        T,
        patched(
            TRACK, template__phases=[{"name": "rest", "remaining": True}, {"name": "canary", "deployments": ["web"]}]
        ),
        "template",
        r"the remaining phase 'rest' must be the last phase",
    ),
    Bad("track-missing-template", T, patched(TRACK, template=DELETE), "template", r"Field required"),
    Bad(
        "track-bad-branch",
        T,
        patched(TRACK, source__branch="feature:x"),
        "source.branch",
        r"invalid branch name 'feature:x'",
    ),
    # --- Experiment ---------------------------------------------------------------------------
    Bad(
        "weights-not-summing-to-1",
        E,
        patched(EXPERIMENT, branches={"control": 0.5, "enhanced": 0.4}),
        "branches",
        r"branch weights must sum to 1 \(got 0\.9\)",
    ),
    Bad(
        "negative-weight",
        E,
        patched(EXPERIMENT, branches={"control": 1.5, "enhanced": -0.5}),
        "branches",
        r"branch 'enhanced': weight must be a finite number >= 0 \(got -0\.5\)",
    ),
    Bad(
        "nan-weight",
        E,
        patched(EXPERIMENT, branches={"control": 1.0, "enhanced": math.nan}),
        "branches",
        r"branch 'enhanced': weight must be a finite number >= 0 \(got nan\)",
    ),
    Bad(
        "single-branch",
        E,
        patched(EXPERIMENT, branches={"control": 1.0}),
        "branches",
        r"Dictionary should have at least 2 items",
    ),
    Bad(
        "uppercase-branch-name",
        E,
        patched(EXPERIMENT, branches={"control": 0.5, "Enhanced": 0.5}),
        "branches",
        r"branch name 'Enhanced' must be a lowercase DNS label",
    ),
    Bad(
        "close-on-not-a-branch",
        E,
        patched(EXPERIMENT, closeOn="treatment"),
        "",
        r"closeOn 'treatment' is not one of the branches \(control, enhanced\)",
    ),
    Bad(
        "force-user-to-no-branch",
        E,
        patched(EXPERIMENT, force={"users": {"alice": "treatment"}}),
        "",
        r"force.users names treatment, not one of the branches \(control, enhanced\)",
    ),
    Bad(
        "force-group-to-no-branch",
        E,
        patched(EXPERIMENT, force={"groups": {"qa": "beta"}}),
        "",
        r"force.groups names beta, not one of the branches",
    ),
    Bad(
        "control-not-a-branch",
        E,
        patched(EXPERIMENT, control="baseline"),
        "",
        r"control 'baseline' is not one of the branches \(control, enhanced\)",
    ),
    Bad("rollout-150", E, patched(EXPERIMENT, rollout=150), "rollout", r"Input should be less than or equal to 100"),
    Bad(
        "rollout-negative", E, patched(EXPERIMENT, rollout=-1), "rollout", r"Input should be greater than or equal to 0"
    ),
    Bad("alpha-0.7", E, patched(EXPERIMENT, alpha=0.7), "alpha", ALPHA),
    Bad("alpha-zero", E, patched(EXPERIMENT, alpha=0), "alpha", ALPHA),
    Bad("alpha-0.5", E, patched(EXPERIMENT, alpha=0.5), "alpha", ALPHA),
    Bad("alpha-negative", E, patched(EXPERIMENT, alpha=-0.05), "alpha", ALPHA),
    Bad(
        "min-samples-zero",
        E,
        patched(EXPERIMENT, minSamples=0),
        "minSamples",
        r"Input should be greater than or equal to 1",
    ),
    Bad("empty-key", E, patched(EXPERIMENT, key=""), "key", r"String should have at least 1 character"),
    Bad("hash-version-3", E, patched(EXPERIMENT, hashVersion=3), "hashVersion", r"Input should be 1 or 2"),
    Bad(
        "experiment-interval-in-words",
        E,
        patched(EXPERIMENT, interval="thirty seconds"),
        "interval",
        r"invalid duration 'thirty seconds'",
    ),
    Bad(
        "experiment-unknown-field",
        E,
        patched(EXPERIMENT, weights={"a": 1}),
        "weights",
        r"Extra inputs are not permitted",
    ),
]


def test_cases_are_distinct_and_numerous() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 25
    assert {c.model for c in CASES} == set(BASES)


@pytest.mark.parametrize("model", list(BASES), ids=[m.__name__ for m in BASES])
def test_bases_are_valid(model: type[BaseModel]) -> None:
    model.model_validate(BASES[model])


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rejected(case: Bad) -> None:
    with pytest.raises(ValidationError) as info:
        case.model.model_validate(case.data)
    errors = info.value.errors()
    shown = [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in errors]
    assert len(errors) == 1, f"expected one error, got {shown}"
    loc, msg = shown[0]
    assert loc == case.loc, f"error at {loc!r}, expected {case.loc!r}: {msg}"
    assert re.search(case.message, msg), f"{msg!r} does not match {case.message!r}"
