"""The ``job`` gate: a smoke-test Job per phase. Pure: the Job manifest, its name, and verdicts over its status.

The Job is named ``<release>-<gate>-<phase>`` (cut with a hash suffix to fit a DNS label), so creating it is
idempotent: a restarted controller that finds it (AlreadyExists) reads it instead of creating another. It
is owned by the Release and labelled :data:`LABEL_RELEASE`, :data:`LABEL_GATE`, :data:`LABEL_PHASE`;
cleanup deletes only Jobs with those labels *and* the Release as owner. ``spec.activeDeadlineSeconds`` is
the gate's ``timeout``, so Kubernetes itself terminates a Job that runs too long (reason DeadlineExceeded);
the verdict also fails a Job still running well past the timeout, should nothing have stopped it.

Verdicts: not created yet or running → Inconclusive, *pending* (never counts toward inconclusiveLimit:
the timeout bounds the wait); ``Complete`` → Pass; ``Failed`` (or past the timeout) → Fail; the Job could
not be created or read → Inconclusive (counts), or Error when the API rejected the manifest.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from controller.gates.evaluate import Judgement, render_query
from controller.models.common import format_duration
from controller.models.release import Gate

LABEL_RELEASE = "stopline.dev/release"
LABEL_GATE = "stopline.dev/gate"
LABEL_PHASE = "stopline.dev/phase"
LABEL_MANAGED = "app.kubernetes.io/managed-by"
MAX_NAME = 63
#: Slack on top of the timeout before the verdict itself calls a still-running Job timed out.
TIMEOUT_SLACK = timedelta(seconds=5)


def job_name(release: str, gate: str, phase: str) -> str:
    """``<release>-<gate>-<phase>``, or a cut of it plus an 8-hex hash of the whole when longer than 63."""
    full = f"{release}-{gate}-{phase}"
    if len(full) <= MAX_NAME:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{full[: MAX_NAME - 9].rstrip('-.')}-{digest}"


def _label_value(value: str) -> str:
    if len(value) <= MAX_NAME:
        return value
    return f"{value[: MAX_NAME - 9].rstrip('-._')}-{hashlib.sha256(value.encode()).hexdigest()[:8]}"


def job_labels(release: str, gate: str, phase: str) -> dict[str, str]:
    """The labels that mark a Job as this gate's, for this Release and phase."""
    return {
        LABEL_RELEASE: _label_value(release),
        LABEL_GATE: gate,
        LABEL_PHASE: phase,
        LABEL_MANAGED: "stopline",
    }


def _render(value: Any, variables: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return render_query(value, **variables)
    if isinstance(value, list):
        return [_render(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: _render(v, variables) for k, v in value.items()}
    return value


def job_manifest(
    gate: Gate, *, release: str, namespace: str, phase: str, revision: str, owner: Mapping[str, str]
) -> dict[str, Any]:
    """The Job to create for the gate in this phase. ValueError for an unknown ``{{ variable }}``."""
    assert gate.job is not None
    variables = {"phase": phase, "revision": revision, "namespace": namespace}
    spec: dict[str, Any] = _render(copy.deepcopy(gate.job.spec), variables)
    spec.setdefault("backoffLimit", 0)
    spec["activeDeadlineSeconds"] = max(1, int(gate.job.timeout.total_seconds()))
    pod_spec = spec.setdefault("template", {}).setdefault("spec", {})
    pod_spec.setdefault("restartPolicy", "Never")
    labels = {**gate.job.metadata.labels, **job_labels(release, gate.name, phase)}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(release, gate.name, phase),
            "namespace": namespace,
            "labels": labels,
            "annotations": dict(gate.job.metadata.annotations),
            "ownerReferences": [{**owner, "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": spec,
    }


def ours(job: Mapping[str, Any], release: str, owner_uid: str) -> bool:
    """Whether a Job is one this Release's job gates created: our labels and the Release as owner."""
    meta = job.get("metadata") or {}
    labels = meta.get("labels") or {}
    owned = any(r.get("uid") == owner_uid for r in meta.get("ownerReferences") or [])
    return owned and labels.get(LABEL_RELEASE) == _label_value(release) and LABEL_GATE in labels


@dataclass(frozen=True)
class JobState:
    """A smoke-test Job as the gate sees it."""

    name: str
    at: datetime
    exists: bool = False
    started_at: datetime | None = None  # status.startTime, else its creation
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    complete: bool = False
    failed_reason: str | None = None  # the Failed condition's reason (BackoffLimitExceeded, DeadlineExceeded)
    message: str = ""
    error: str | None = None  # could not create or read it
    rejected: bool = False  # the API refused the manifest (422/400): fixing the spec is the only cure


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def job_state(name: str, job: Mapping[str, Any] | None, at: datetime) -> JobState:
    """The state of a Job from the API's copy (None: it does not exist)."""
    if job is None:
        return JobState(name=name, at=at)
    meta = job.get("metadata") or {}
    status = job.get("status") or {}
    conds = {str(c.get("type")): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    failed = conds.get("Failed") or conds.get("FailureTarget")
    return JobState(
        name=name,
        at=at,
        exists=True,
        started_at=_time(status.get("startTime")) or _time(meta.get("creationTimestamp")),
        active=int(status.get("active") or 0),
        succeeded=int(status.get("succeeded") or 0),
        failed=int(status.get("failed") or 0),
        complete="Complete" in conds or "SuccessCriteriaMet" in conds,
        failed_reason=str(failed.get("reason") or "Failed") if failed else None,
        message=str((failed or {}).get("message") or ""),
    )


def judge_job(gate: Gate, state: JobState, now: datetime) -> Judgement:
    """The verdict of one reading of a job gate."""
    assert gate.job is not None
    if state.error is not None:
        return Judgement("Error" if state.rejected else "Inconclusive", f"job {state.name}: {state.error}")
    if not state.exists:
        return Judgement("Inconclusive", f"job {state.name} not created yet", pending=True)
    if state.failed_reason is not None:
        why = f": {state.message}" if state.message else ""
        return Judgement("Fail", f"job {state.name} failed ({state.failed_reason}{why}; {state.failed} failed pod(s))")
    if state.complete:
        return Judgement("Pass", f"job {state.name} complete ({state.succeeded} succeeded)")
    timeout = gate.job.timeout
    if state.started_at is not None and now - state.started_at > timeout + TIMEOUT_SLACK:
        return Judgement("Fail", f"job {state.name} timed out: not complete after {format_duration(timeout)}")
    return Judgement("Inconclusive", f"job {state.name} running ({state.active} active)", pending=True)
