"""Which objects of a revision each phase pushes, in which order, and what a push prunes. Pure: no I/O.

Every object is named by its key ``Kind/name`` (a bare name, as older statuses hold, is a Deployment).

* **Workloads** (Deployment, StatefulSet, DaemonSet) are the phase targets: by name, selector or
  ``remaining``; each is rolled out and waited for by its kind's own rule.
* **Every other namespaced object** goes with the first phase whose workloads use it: a ConfigMap or
  Secret mounted (volume, projected volume), read by ``env.valueFrom`` / ``envFrom`` or named in
  ``imagePullSecrets``; a ServiceAccount by ``serviceAccountName``; a PersistentVolumeClaim by volume; a
  Service, PodDisruptionBudget or NetworkPolicy selecting the workload's pod labels; an HPA by
  ``scaleTargetRef``. Indirect use counts too (a RoleBinding goes with its ServiceAccount, a Role with
  its RoleBinding, an Ingress with its Service, the config of a CronJob with the CronJob). Objects that
  nothing uses (and Jobs/CronJobs, which are applied, never waited on) go with the first phase.
* **Order inside a phase**: config and RBAC (tier 0), then workloads, Jobs and CronJobs (tier 1), then
  everything else — Services, PDBs, HPAs, Ingresses, custom resources (tier 2).
* Cluster-scoped objects, objects for another namespace and kinds the cluster does not serve fail the
  push at once, naming every offending object; nothing is applied.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.models.release import Phase, PhaseStatus, SnapshotStatus, UndoStatus

WORKLOAD_KINDS: tuple[str, ...] = ("Deployment", "StatefulSet", "DaemonSet")
APPLIED_ONLY_KINDS: tuple[str, ...] = ("Job", "CronJob")  # applied, never waited on
_POD_TEMPLATE_KINDS = (*WORKLOAD_KINDS, "Job", "ReplicaSet")
TIER_CONFIG = frozenset(
    {
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Secret",
        "PersistentVolumeClaim",
        "LimitRange",
        "ResourceQuota",
        "NetworkPolicy",
    }
)
TIER_WORKLOAD = frozenset({*WORKLOAD_KINDS, *APPLIED_ONLY_KINDS, "ReplicaSet", "Pod"})

# Written by stopline on every object it applies (one definition, imported by the kube adapter).
LABEL_APP = "stopline.dev/app"  # which app (repo + path) the object belongs to: the prune scope
ANNOTATION_RELEASE = "stopline.dev/release"  # the Release that last applied the object
ANNOTATION_PHASE = "stopline.dev/phase"  # the phase that pushed it (a later prune deletes it there)


# ---------------------------------------------------------------- keys
def object_key(kind: str, name: str) -> str:
    """``Kind/name``."""
    return f"{kind}/{name}"


def split_key(key: str) -> tuple[str, str]:
    """(kind, name) of a key; a bare name is a Deployment (statuses written before other kinds were pushed)."""
    kind, sep, name = key.partition("/")
    return (kind, name) if sep else ("Deployment", key)


def normal_key(key: str) -> str:
    """The key with its kind spelled out."""
    return object_key(*split_key(key))


def deployment_names(keys: Iterable[str]) -> list[str]:
    """Names of the Deployments among the keys."""
    return [name for kind, name in map(split_key, keys) if kind == "Deployment"]


def is_workload_key(key: str) -> bool:
    """Whether the object is a workload whose rollout is waited for."""
    return split_key(key)[0] in WORKLOAD_KINDS


def tier(kind: str) -> int:
    """Apply order inside a phase: 0 config and RBAC, 1 workloads, 2 everything else."""
    if kind in TIER_CONFIG:
        return 0
    if kind in TIER_WORKLOAD:
        return 1
    return 2


def app_id(repo: str, path: str) -> str:
    """The value of ``stopline.dev/app``: stable for a repository + path, a valid label value."""
    norm = path.strip("/") or "."
    return hashlib.sha256(f"{repo}\n{norm}".encode()).hexdigest()[:16]


# ---------------------------------------------------------------- what an object is
@dataclass(frozen=True)
class ManifestObject:
    """One object of the revision, reduced to what assignment and validation need."""

    kind: str
    name: str
    api_version: str = "v1"
    namespace: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    namespaced: bool | None = True  # from discovery; None: the cluster does not serve the kind
    pod_labels: Mapping[str, str] = field(default_factory=dict)  # a workload's pod template labels
    uses: tuple[str, ...] = ()  # keys of objects this one needs (ConfigMap/x, Secret/y, ServiceAccount/z, ...)
    selector: Mapping[str, Any] | None = None  # matchLabels/matchExpressions over pod labels
    targets: tuple[str, ...] = ()  # keys it goes with (HPA → its workload, Ingress → Service, ...)

    @property
    def key(self) -> str:
        """``Kind/name``."""
        return object_key(self.kind, self.name)


def _pod_spec(doc: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, str]]:
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    elif kind == "Pod":
        return spec, (doc.get("metadata") or {}).get("labels") or {}
    elif kind not in _POD_TEMPLATE_KINDS:
        return {}, {}
    template = spec.get("template") or {}
    return template.get("spec") or {}, (template.get("metadata") or {}).get("labels") or {}


def _pod_uses(pod: Mapping[str, Any]) -> list[str]:
    uses: list[str] = []
    sa = pod.get("serviceAccountName") or pod.get("serviceAccount")
    if sa:
        uses.append(object_key("ServiceAccount", str(sa)))
    for ref in pod.get("imagePullSecrets") or []:
        if ref.get("name"):
            uses.append(object_key("Secret", ref["name"]))
    for vol in pod.get("volumes") or []:
        if (vol.get("configMap") or {}).get("name"):
            uses.append(object_key("ConfigMap", vol["configMap"]["name"]))
        if (vol.get("secret") or {}).get("secretName"):
            uses.append(object_key("Secret", vol["secret"]["secretName"]))
        if (vol.get("persistentVolumeClaim") or {}).get("claimName"):
            uses.append(object_key("PersistentVolumeClaim", vol["persistentVolumeClaim"]["claimName"]))
        for src in (vol.get("projected") or {}).get("sources") or []:
            if (src.get("configMap") or {}).get("name"):
                uses.append(object_key("ConfigMap", src["configMap"]["name"]))
            if (src.get("secret") or {}).get("name"):
                uses.append(object_key("Secret", src["secret"]["name"]))
    containers = [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]
    containers += pod.get("ephemeralContainers") or []
    for c in containers:
        for env in c.get("env") or []:
            source = env.get("valueFrom") or {}
            if (source.get("configMapKeyRef") or {}).get("name"):
                uses.append(object_key("ConfigMap", source["configMapKeyRef"]["name"]))
            if (source.get("secretKeyRef") or {}).get("name"):
                uses.append(object_key("Secret", source["secretKeyRef"]["name"]))
        for env_from in c.get("envFrom") or []:
            if (env_from.get("configMapRef") or {}).get("name"):
                uses.append(object_key("ConfigMap", env_from["configMapRef"]["name"]))
            if (env_from.get("secretRef") or {}).get("name"):
                uses.append(object_key("Secret", env_from["secretRef"]["name"]))
    return uses


def describe(doc: Mapping[str, Any], namespaced: bool | None = True) -> ManifestObject:
    """What assignment needs to know about one manifest (``namespaced`` comes from discovery)."""
    meta = doc.get("metadata") or {}
    kind = str(doc.get("kind") or "")
    spec = doc.get("spec") or {}
    pod, pod_labels = _pod_spec(doc)
    uses = _pod_uses(pod) if pod else []
    selector: Mapping[str, Any] | None = None
    targets: list[str] = []
    if kind == "Service" and spec.get("selector"):
        selector = {"matchLabels": dict(spec["selector"])}
    elif kind in ("PodDisruptionBudget", "NetworkPolicy"):
        sel = spec.get("selector") if kind == "PodDisruptionBudget" else spec.get("podSelector")
        if sel:  # an empty selector matches every pod: first phase
            selector = dict(sel)
    elif kind == "HorizontalPodAutoscaler":
        ref = spec.get("scaleTargetRef") or {}
        if ref.get("kind") and ref.get("name"):
            targets.append(object_key(ref["kind"], ref["name"]))
    elif kind == "RoleBinding":
        for subject in doc.get("subjects") or []:
            if subject.get("kind") == "ServiceAccount" and subject.get("name"):
                targets.append(object_key("ServiceAccount", subject["name"]))
        role = doc.get("roleRef") or {}
        if role.get("kind") == "Role" and role.get("name"):
            uses.append(object_key("Role", role["name"]))
    elif kind == "Ingress":
        for rule in spec.get("rules") or []:
            for path in (rule.get("http") or {}).get("paths") or []:
                svc = ((path.get("backend") or {}).get("service") or {}).get("name")
                if svc:
                    targets.append(object_key("Service", svc))
        default = ((spec.get("defaultBackend") or {}).get("service") or {}).get("name")
        if default:
            targets.append(object_key("Service", default))
    return ManifestObject(
        kind=kind,
        name=str(meta.get("name") or ""),
        api_version=str(doc.get("apiVersion") or ""),
        namespace=meta.get("namespace"),
        labels=dict(meta.get("labels") or {}),
        namespaced=namespaced,
        pod_labels=dict(pod_labels),
        uses=tuple(dict.fromkeys(uses)),
        selector=selector,
        targets=tuple(dict.fromkeys(targets)),
    )


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels + matchExpressions) against a label set."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for req in selector.get("matchExpressions") or []:
        key, op, values = req.get("key"), req.get("operator"), req.get("values") or []
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }.get(op, False)
        if not ok:
            return False
    return bool(selector.get("matchLabels") or selector.get("matchExpressions"))


# ---------------------------------------------------------------- validation
def problems(objects: Sequence[ManifestObject], namespace: str) -> list[str]:
    """Why these objects cannot be pushed into ``namespace`` (every offender named), or nothing."""
    out: list[str] = []
    unnamed = [o.kind or "<no kind>" for o in objects if not o.name or not o.kind]
    if unnamed:
        out.append(f"object(s) without kind or metadata.name: {', '.join(unnamed)}")
    unserved = [f"{o.key} ({o.api_version})" for o in objects if o.namespaced is None]
    if unserved:
        out.append(f"kind(s) the cluster does not serve: {', '.join(unserved)}")
    cluster = [o.key for o in objects if o.namespaced is False]
    if cluster:
        out.append(
            f"cluster-scoped object(s) {', '.join(cluster)}: a Release may only touch its own namespace ({namespace})"
        )
    foreign = [f"{o.key} (namespace {o.namespace})" for o in objects if o.namespace and o.namespace != namespace]
    if foreign:
        out.append(
            f"object(s) for another namespace: {', '.join(foreign)}; a Release may only touch its own ({namespace})"
        )
    keys = [o.key for o in objects if o.name and o.kind]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        out.append(f"object(s) defined twice in the manifests: {', '.join(dupes)}")
    return out


# ---------------------------------------------------------------- assignment
@dataclass(frozen=True)
class PhaseContents:
    """What one phase pushes: its workloads (waited for), every object in apply order, what it prunes."""

    name: str
    workloads: tuple[str, ...] = ()
    objects: tuple[str, ...] = ()
    prune: tuple[str, ...] = ()

    @property
    def deployments(self) -> tuple[str, ...]:
        """Names of the phase's Deployments (the ``deployments`` status field)."""
        return tuple(split_key(k)[1] for k in self.workloads if split_key(k)[0] == "Deployment")


@dataclass(frozen=True)
class PhaseTarget:
    """A phase's target as the spec says it (decoupled from the pydantic model)."""

    name: str
    kind: str | None = None
    deployments: tuple[str, ...] | None = None
    workloads: tuple[tuple[str | None, str], ...] | None = None  # (kind or None, name)
    selector: Mapping[str, Any] | None = None
    remaining: bool = False


@dataclass(frozen=True)
class Assignment:
    """The resolved push, or why it cannot go out."""

    phases: tuple[PhaseContents, ...] = ()
    unassigned: tuple[str, ...] = ()  # workloads no phase selects (not pushed)
    error: str | None = None
    error_phase: str | None = None


def _pick_workloads(
    target: PhaseTarget, workloads: Mapping[str, ManifestObject], taken: set[str], revision: str
) -> tuple[list[str], str | None]:
    kinds = (target.kind,) if target.kind else WORKLOAD_KINDS
    if target.deployments is not None:
        missing = [n for n in target.deployments if object_key("Deployment", n) not in workloads]
        if missing:
            return [], f"phase {target.name}: Deployment(s) {', '.join(missing)} not in the manifests at {revision}"
        keys = [object_key("Deployment", n) for n in dict.fromkeys(target.deployments)]
        return [k for k in keys if k not in taken], None
    if target.workloads is not None:
        keys, missing, clashes = [], [], []
        for kind, name in target.workloads:
            candidates = [object_key(k, name) for k in ((kind,) if kind else kinds)]
            found = [k for k in candidates if k in workloads]
            if not found:
                missing.append(object_key(kind, name) if kind else name)
            elif len(found) > 1:
                clashes.append(f"{name} ({', '.join(split_key(k)[0] for k in found)})")
            else:
                keys.append(found[0])
        if clashes:
            return [], (
                f"phase {target.name}: workload name(s) {', '.join(clashes)} exist in more than one kind; "
                "say which with kind:"
            )
        if missing:
            return [], f"phase {target.name}: workload(s) {', '.join(missing)} not in the manifests at {revision}"
        return [k for k in dict.fromkeys(keys) if k not in taken], None
    chosen = sorted(
        (k for k, o in workloads.items() if o.kind in kinds and k not in taken),
        key=lambda k: (WORKLOAD_KINDS.index(split_key(k)[0]), split_key(k)[1]),
    )
    if target.selector is not None:
        chosen = [k for k in chosen if selector_matches(target.selector, workloads[k].labels)]
    return chosen, None


def _phase_of_objects(objects: Sequence[ManifestObject], placed: Mapping[str, int]) -> dict[str, int]:
    """Earliest phase index of every non-workload object (relaxed to a fixpoint); unused → 0."""
    by_key = {o.key: o for o in objects}
    phase: dict[str, int] = dict(placed)
    others = [o for o in objects if o.key not in placed]
    workload_pods = [(placed[o.key], o.pod_labels) for o in objects if o.key in placed]
    for o in others:  # direct: selecting a workload's pods
        if o.selector is not None:
            hits = [i for i, labels in workload_pods if labels and selector_matches(o.selector, labels)]
            if hits:
                phase[o.key] = min(hits)
    for _ in range(len(objects) + 1):
        changed = False
        for o in others:
            best = phase.get(o.key)
            sources = [phase[t] for t in o.targets if t in phase]
            sources += [phase[u.key] for u in objects if o.key in u.uses and u.key in phase]
            if o.kind in APPLIED_ONLY_KINDS:
                sources.append(0)  # applied with the first phase, never waited on
            if sources and (best is None or min(sources) < best):
                phase[o.key] = min(sources)
                changed = True
        if not changed:
            break
    for o in others:
        phase.setdefault(o.key, 0)
    return {k: v for k, v in phase.items() if k in by_key}


def assign(
    targets: Sequence[PhaseTarget],
    objects: Sequence[ManifestObject],
    revision: str = "",
    prune: Mapping[str, str] | None = None,
) -> Assignment:
    """Resolve the phases: workloads by target (first phase that names one wins), other objects by use.

    ``prune`` maps keys of live objects to delete to the phase that held them (``stopline.dev/phase``);
    they are pruned in that phase when it still exists, else in the first one.
    """
    workloads = {o.key: o for o in objects if o.kind in WORKLOAD_KINDS}
    taken: set[str] = set()
    picked: list[list[str]] = []
    for target in targets:
        keys, error = _pick_workloads(target, workloads, taken, revision)
        if error:
            return Assignment(error=error, error_phase=target.name)
        taken.update(keys)
        picked.append(keys)
    placed = {k: i for i, keys in enumerate(picked) for k in keys}
    unassigned = tuple(sorted(set(workloads) - taken))
    pushed = [o for o in objects if o.key not in unassigned]
    phase_of = _phase_of_objects(pushed, placed)
    kinds = {o.key: o.kind for o in pushed}
    names = [t.name for t in targets]
    pruned: dict[int, list[str]] = {}
    for key, held_by in sorted((prune or {}).items()):
        if key not in kinds:
            pruned.setdefault(names.index(held_by) if held_by in names else 0, []).append(key)
    phases = []
    for i, target in enumerate(targets):
        mine = [k for k, p in phase_of.items() if p == i and k not in placed]
        ordered = sorted(mine, key=lambda k: (tier(kinds[k]), kinds[k], k))
        wl = picked[i]
        in_order = [k for k in ordered if tier(kinds[k]) < 1] + wl + [k for k in ordered if tier(kinds[k]) >= 1]
        prune_keys = sorted(pruned.get(i, []), key=lambda k: (-tier(split_key(k)[0]), k))
        phases.append(PhaseContents(target.name, tuple(wl), tuple(in_order), tuple(prune_keys)))
    return Assignment(tuple(phases), unassigned)


def flatten(docs: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The objects of the documents, with ``kind: List`` (``v1/List``, ``ConfigMapList``, ...) expanded."""
    out: list[Mapping[str, Any]] = []
    for doc in docs:
        if str(doc.get("kind") or "").endswith("List") and isinstance(doc.get("items"), list):
            out.extend(flatten(i for i in doc["items"] if isinstance(i, Mapping)))
        else:
            out.append(doc)
    return out


def order(docs: Iterable[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Documents grouped by tier, in apply order (each group can go out concurrently)."""
    groups: dict[int, list[Mapping[str, Any]]] = {}
    for doc in docs:
        groups.setdefault(tier(str(doc.get("kind") or "")), []).append(doc)
    return [groups[t] for t in sorted(groups)]


# ---------------------------------------------------------------- prune
@dataclass(frozen=True)
class LiveObject:
    """A live object stopline applied for this app earlier (found by ``stopline.dev/app``)."""

    key: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


def prune_set(live: Iterable[LiveObject], manifest_keys: Iterable[str], app: str) -> dict[str, str]:
    """Live objects of ``app`` that stopline applied and the new revision no longer has → the phase that held them.

    Only objects carrying both our app label and our release annotation qualify; anything else (created
    by hand, by another tool, or a stopline snapshot) is never pruned.
    """
    keep = {normal_key(k) for k in manifest_keys}
    out: dict[str, str] = {}
    for o in live:
        if o.labels.get(LABEL_APP) != app or not o.annotations.get(ANNOTATION_RELEASE):
            continue
        if normal_key(o.key) not in keep:
            out[normal_key(o.key)] = o.annotations.get(ANNOTATION_PHASE, "")
    return out


# ---------------------------------------------------------------- from the spec
def targets_of(phases: Iterable[Phase]) -> tuple[PhaseTarget, ...]:
    """The spec's phases as assignment targets."""
    return tuple(
        PhaseTarget(
            name=p.name,
            kind=p.kind,
            deployments=tuple(p.deployments) if p.deployments is not None else None,
            workloads=tuple((w.kind or p.kind, w.name) for w in p.workloads) if p.workloads is not None else None,
            selector=p.selector.model_dump(by_alias=True) if p.selector is not None else None,
            remaining=p.remaining,
        )
        for p in phases
    )


def phase_keys(phase: PhaseStatus) -> tuple[str, ...]:
    """Every object a phase touches (pushes or prunes); older statuses list only Deployments."""
    if phase.objects or phase.pruned:
        return (*phase.objects, *phase.pruned)
    return tuple(phase.deployments)


def workload_keys(phase: PhaseStatus) -> tuple[str, ...]:
    """The workloads a phase waits for; older statuses list only Deployments (bare names)."""
    return tuple(phase.workloads) if phase.workloads or phase.objects else tuple(phase.deployments)


def snapshot_keys(snapshot: SnapshotStatus | None) -> tuple[str, ...]:
    """Keys with a pre-push copy (older statuses list only Deployments)."""
    if snapshot is None:
        return ()
    return tuple(snapshot.objects) if snapshot.objects else tuple(snapshot.deployments)


def restored_keys(undo: UndoStatus) -> list[str]:
    """Objects the rollback restored (older statuses list only Deployment names)."""
    return list(undo.objects) if undo.objects else list(undo.restored)


def deleted_keys(undo: UndoStatus) -> list[str]:
    """Objects the rollback deleted (older statuses list only Deployment names)."""
    return list(undo.deleted_objects) if undo.deleted_objects else list(undo.deleted)


def short_key(key: str) -> str:
    """How people read a key in messages: a Deployment by its name, anything else as Kind/name."""
    kind, name = split_key(key)
    return name if kind == "Deployment" else f"{kind}/{name}"


def snapshotted(snapshot: SnapshotStatus | None) -> set[str]:
    """Normalised keys already in the snapshot (copied or recorded absent): never copied again."""
    if snapshot is None:
        return set()
    return {normal_key(k) for k in (*snapshot.objects, *snapshot.deployments, *snapshot.absent)}
