"""Why a rollout is stuck, from the workloads' own conditions and their pods. Pure: plain API dicts in.

The adapter (``controller.kube.cluster``) reads a workload's ReplicaSets, pods (and, for StatefulSets and
DaemonSets, its ``FailedCreate`` Events) by the workload's selector, only while it is not Available; the
functions here turn what it read into the first concrete :class:`~controller.release.actions.Cause`:

1. the workload's own conditions (``Progressing/ProgressDeadlineExceeded``, ``ReplicaFailure``),
2. the new ReplicaSet's ``ReplicaFailure`` condition (``FailedCreate``: forbidden, quota exceeded, ...),
3. the new pods: container waiting reasons (``ImagePullBackOff``, ``CreateContainerConfigError``, ...)
   and ``PodScheduled=False`` (``Unschedulable``),
4. for StatefulSets and DaemonSets, which report no create failure in their status: a recent
   ``FailedCreate`` Event of the workload.

A cause that waiting cannot fix (:data:`NO_HEAL`) comes before one that can; the planner fails the
phase once such a cause has lasted ``spec.stuckAfter``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from controller.release.actions import Cause
from controller.release.assign import split_key

#: Reasons no amount of waiting fixes: the spec, the namespace (quota, RBAC) or the image must change.
NO_HEAL: frozenset[str] = frozenset(
    {
        "FailedCreate",
        "ImagePullBackOff",
        "ErrImagePull",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "ProgressDeadlineExceeded",
    }
)
#: Reasons that are the rollout itself making progress: shown in status, never worth a Warning event.
PROGRESS: frozenset[str] = frozenset({"ContainerCreating", "PodInitializing", "ContainersNotReady"})
#: Waiting reasons whose detail is best given as the image (the kubelet's message repeats it at length).
IMAGE_REASONS: frozenset[str] = frozenset({"ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull", "InvalidImageName"})
#: A FailedCreate Event older than this is taken to belong to an earlier rollout.
EVENT_WINDOW = timedelta(minutes=2)
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
MAX_DETAIL = 400


def heals(reason: str) -> bool:
    """Whether waiting can fix a cause with this reason."""
    return reason not in NO_HEAL


def _name(key: str) -> str:
    return split_key(key)[1]


def _clip(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


def make_cause(key: str, reason: str, detail: str = "", pods: int = 0, image: bool = False) -> Cause:
    """A cause with the message users read.

    ``frontend: FailedCreate: <message>`` (workload level), ``web: 2 pods ImagePullBackOff (<image>)``,
    ``api: 1 pod CreateContainerConfigError: <message>``, ``db: Unschedulable: <message>``.
    """
    detail = _clip(detail)
    name = _name(key)
    if pods and reason != "Unschedulable":
        count = f"{pods} pod{'s' if pods != 1 else ''} {reason}"
        if not detail:
            message = f"{name}: {count}"
        else:
            message = f"{name}: {count} ({detail})" if image else f"{name}: {count}: {detail}"
    else:
        message = f"{name}: {reason}: {detail}" if detail else f"{name}: {reason}"
    return Cause(workload=key, reason=reason, message=message, detail=detail, pods=pods, heals=heals(reason))


def _conditions(obj: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    return list(((obj or {}).get("status") or {}).get("conditions") or [])


def condition_cause(key: str, obj: Mapping[str, Any] | None) -> Cause | None:
    """A cause from an object's own conditions: ``ReplicaFailure=True`` or ``ProgressDeadlineExceeded``."""
    for cond in _conditions(obj):
        kind, status, reason = cond.get("type"), cond.get("status"), str(cond.get("reason") or "")
        if kind == "ReplicaFailure" and status == "True":
            return make_cause(key, reason or "ReplicaFailure", str(cond.get("message") or ""))
        if kind == "Progressing" and reason == "ProgressDeadlineExceeded":
            return make_cause(key, reason, str(cond.get("message") or ""))
    return None


def _revision(obj: Mapping[str, Any]) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION) or 0)
    except ValueError:
        return 0


def _owned_by(obj: Mapping[str, Any], uid: str | None) -> bool:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return uid is None or any(r.get("uid") == uid for r in refs)


def new_replicaset(deployment: Mapping[str, Any], replicasets: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The Deployment's new ReplicaSet: owned by it, with the Deployment's revision (else the newest)."""
    uid = (deployment.get("metadata") or {}).get("uid")
    owned = [rs for rs in replicasets if _owned_by(rs, uid)]
    if not owned:
        return None
    want = _revision(deployment)
    same = [rs for rs in owned if want and _revision(rs) == want]
    return same[0] if same else max(owned, key=_revision)


def is_revision_of(replicaset: Mapping[str, Any], deployment: Mapping[str, Any]) -> bool:
    """Whether the ReplicaSet carries the Deployment's current revision (so it is the new one for good)."""
    want = _revision(deployment)
    return bool(want) and _revision(replicaset) == want


def pod_template_hash(replicaset: Mapping[str, Any] | None) -> str | None:
    """The ``pod-template-hash`` label the new ReplicaSet's pods carry."""
    if replicaset is None:
        return None
    labels = (replicaset.get("metadata") or {}).get("labels") or {}
    value = labels.get("pod-template-hash")
    return str(value) if value else None


def _ready(pod: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in _conditions(pod))


def _waiting(pod: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(reason, message, image) of every waiting container, init containers first."""
    st = pod.get("status") or {}
    out: list[tuple[str, str, str]] = []
    for cs in [*(st.get("initContainerStatuses") or []), *(st.get("containerStatuses") or [])]:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason:
            out.append((str(reason), str(waiting.get("message") or ""), str(cs.get("image") or "")))
    return out


def _pod_reasons(pod: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """(reason, detail, image?) of why one pod is not Ready, most telling first."""
    if (pod.get("metadata") or {}).get("deletionTimestamp") or _ready(pod):
        return []
    out: list[tuple[str, str, bool]] = []
    for reason, message, image in _waiting(pod):
        if reason in IMAGE_REASONS:
            out.append((reason, image or message, True))
        else:
            out.append((reason, message, False))
    for cond in _conditions(pod):
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            out.append((str(cond.get("reason") or "Unschedulable"), str(cond.get("message") or ""), False))
    if not out and (pod.get("status") or {}).get("phase") == "Running":
        for cond in _conditions(pod):
            if cond.get("type") == "Ready" and cond.get("status") == "False":
                out.append(("ContainersNotReady", str(cond.get("message") or ""), False))
    return out


def pods_cause(key: str, pods: Iterable[Mapping[str, Any]]) -> Cause | None:
    """The first concrete cause among pods that are not Ready: what cannot heal first, then the most pods."""
    seen: dict[tuple[str, str], tuple[int, bool, int]] = {}  # (reason, detail) → (pods, image?, first seen)
    for pod in pods:
        for reason, detail, image in dict.fromkeys(_pod_reasons(pod)):
            count, _img, order = seen.get((reason, detail), (0, image, len(seen)))
            seen[(reason, detail)] = (count + 1, image, order)
    if not seen:
        return None

    def rank(item: tuple[tuple[str, str], tuple[int, bool, int]]) -> tuple[int, int, int, int]:
        (reason, _detail), (count, _image, order) = item
        return (0 if not heals(reason) else 1, 1 if reason in PROGRESS else 0, -count, order)

    (reason, detail), (count, image, _order) = min(seen.items(), key=rank)
    return make_cause(key, reason, detail, pods=count, image=image)


def _event_time(event: Mapping[str, Any]) -> str:
    series = event.get("series") or {}
    return str(
        series.get("lastObservedTime")
        or event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def events_cause(key: str, events: Iterable[Mapping[str, Any]], now: datetime) -> Cause | None:
    """The newest recent ``FailedCreate`` Warning Event of a workload (StatefulSets and DaemonSets report
    create failures only as Events)."""
    recent: list[tuple[datetime, Mapping[str, Any]]] = []
    for ev in events:
        if ev.get("reason") != "FailedCreate" or ev.get("type", "Warning") != "Warning":
            continue
        at = _parse_time(_event_time(ev))
        if at is not None and now - at <= EVENT_WINDOW:
            recent.append((at, ev))
    if not recent:
        return None
    _at, ev = max(recent, key=lambda p: p[0])
    return make_cause(key, "FailedCreate", str(ev.get("note") or ev.get("message") or ""))


def _first(causes: Sequence[Cause | None]) -> Cause | None:
    found = [c for c in causes if c is not None]
    if not found:
        return None
    return next((c for c in found if not c.heals), found[0])


def deployment_cause(
    key: str,
    deployment: Mapping[str, Any],
    replicasets: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
) -> Cause | None:
    """A Deployment: its conditions, its new ReplicaSet's ``ReplicaFailure``, the new ReplicaSet's pods."""
    own = condition_cause(key, deployment)
    if own is not None and not own.heals:
        return own
    new = new_replicaset(deployment, replicasets)
    rs = condition_cause(key, new)
    if rs is not None and not rs.heals:
        return rs
    wanted = pod_template_hash(new)
    new_pods = [p for p in pods if wanted is None or _label(p, "pod-template-hash") == wanted]
    return _first([pods_cause(key, new_pods), own, rs])


def _label(obj: Mapping[str, Any], name: str) -> str | None:
    value = ((obj.get("metadata") or {}).get("labels") or {}).get(name)
    return str(value) if value is not None else None


def statefulset_cause(
    key: str,
    statefulset: Mapping[str, Any],
    pods: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]] = (),
    now: datetime | None = None,
) -> Cause | None:
    """A StatefulSet: its conditions, the pods of its update revision, a recent FailedCreate Event."""
    update = ((statefulset.get("status") or {}).get("updateRevision")) or None
    mine = [p for p in pods if update is None or _label(p, "controller-revision-hash") == update]
    return _first(
        [
            condition_cause(key, statefulset),
            events_cause(key, events, now) if now is not None else None,
            pods_cause(key, mine),
        ]
    )


def daemonset_cause(
    key: str,
    daemonset: Mapping[str, Any],
    pods: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]] = (),
    now: datetime | None = None,
) -> Cause | None:
    """A DaemonSet: its conditions, its pods that are not Ready, a recent FailedCreate Event."""
    return _first(
        [
            condition_cause(key, daemonset),
            events_cause(key, events, now) if now is not None else None,
            pods_cause(key, pods),
        ]
    )


def selector_string(selector: Mapping[str, Any] | None) -> str | None:
    """A metav1.LabelSelector as a ``labelSelector`` query (None: it selects nothing we can list safely)."""
    if not selector:
        return None
    terms = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        k, op, values = expr.get("key"), expr.get("operator"), list(expr.get("values") or [])
        if op == "In":
            terms.append(f"{k} in ({','.join(values)})")
        elif op == "NotIn":
            terms.append(f"{k} notin ({','.join(values)})")
        elif op == "Exists":
            terms.append(str(k))
        elif op == "DoesNotExist":
            terms.append(f"!{k}")
    return ",".join(terms) or None


def needs_pods(cause: Cause | None) -> bool:
    """Whether the pods must still be read: the workload itself named no cause that cannot heal."""
    return cause is None or cause.heals
