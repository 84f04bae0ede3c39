"""The layout of a Release's snapshot: pre-push copies of objects across ConfigMaps and Secrets. Pure.

* ``<release>-snapshot`` (ConfigMap) holds a copy of every object except Secrets, one data key per
  object: ``<kind>.<name>`` (lower-case kind), the object as JSON, or ``absent`` when it did not exist
  before the push. A copy over ``INLINE_LIMIT`` bytes is gzip-compressed, base64-encoded and cut into
  keys ``<kind>.<name>_gz_0``, ``_gz_1``, ... (``_`` never occurs in a Kubernetes name).
* ``<release>-snapshot`` (Secret) holds the copies of Secrets the same way; Secret data never goes
  into a ConfigMap, into status, events or logs.
* When the keys outgrow one object, further parts ``<release>-snapshot-2``, ``-3``, ... are used (900 kB of
  entries per ConfigMap part, 700 kB per Secret part, which base64 makes 4/3 larger); the first part's
  annotation ``stopline.dev/snapshot-parts`` says how many there are.
  Placement is append-only: a key once written is never moved or overwritten (the first copy is the
  true pre-push state), so a controller restart mid-snapshot cannot lose or change a copy.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from controller.release.assign import split_key

ABSENT_MARKER = "absent"
ANNOTATION_PARTS = "stopline.dev/snapshot-parts"
PART_LIMIT = 900_000  # bytes of data per ConfigMap part; the API server rejects objects over ~1.5 MiB
SECRET_PART_LIMIT = 700_000  # per Secret part, before base64 (4/3 larger): Secret data is limited to 1 MiB
INLINE_LIMIT = 256_000  # larger copies are compressed
_GZ = "_gz_"

_VOLATILE_METADATA = (
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
    "ownerReferences",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
_VOLATILE_ANNOTATIONS = ("deployment.kubernetes.io/revision",)


def part_name(base: str, index: int) -> str:
    """Name of part ``index`` (0-based) of a snapshot: ``base``, ``base-2``, ``base-3``, ..."""
    return base if index == 0 else f"{base}-{index + 1}"


def entry_name(key: str) -> str:
    """The data key of an object's copy: ``configmap.settings``, ``deployment.web``."""
    kind, name = split_key(key)
    return f"{kind.lower()}.{name}"


def is_secret(key: str) -> bool:
    """Copies of Secrets are kept in the snapshot Secret."""
    return split_key(key)[0] == "Secret"


def clean(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a live object that define it: no status, no server-managed metadata."""
    out = copy.deepcopy(dict(obj))
    out.pop("status", None)
    meta = out.setdefault("metadata", {})
    for k in _VOLATILE_METADATA:
        meta.pop(k, None)
    annotations = meta.get("annotations") or {}
    for k in _VOLATILE_ANNOTATIONS:
        annotations.pop(k, None)
    if not annotations:
        meta.pop("annotations", None)
    return out


def part_limit(secret: bool) -> int:
    """How many bytes of entries one part of the store may hold."""
    return SECRET_PART_LIMIT if secret else PART_LIMIT


def encode(key: str, obj: Mapping[str, Any] | None, limit: int = PART_LIMIT) -> dict[str, str]:
    """The data keys holding one object's copy (``None``: it did not exist)."""
    name = entry_name(key)
    if obj is None:
        return {name: ABSENT_MARKER}
    text = json.dumps(clean(obj), sort_keys=True, separators=(",", ":"))
    if len(text) <= INLINE_LIMIT:
        return {name: text}
    packed = base64.b64encode(gzip.compress(text.encode(), mtime=0)).decode()
    step = limit - 1024
    return {f"{name}{_GZ}{i}": packed[off : off + step] for i, off in enumerate(range(0, len(packed), step))}


def decode(data: Mapping[str, str]) -> dict[str, dict[str, Any] | None]:
    """Entry name → object copy (None: absent) from the merged data of every part."""
    out: dict[str, dict[str, Any] | None] = {}
    chunks: dict[str, dict[int, str]] = {}
    for k, v in data.items():
        if _GZ in k:
            name, _, index = k.rpartition(_GZ)
            chunks.setdefault(name, {})[int(index)] = v
        else:
            out[k] = None if v == ABSENT_MARKER else json.loads(v)
    for name, parts in chunks.items():
        if sorted(parts) != list(range(len(parts))):
            continue  # incomplete (never happens with append-only writes): treat as not taken
        packed = "".join(parts[i] for i in range(len(parts)))
        out[name] = json.loads(gzip.decompress(base64.b64decode(packed)))
    return out


def has_entry(data: Mapping[str, str], key: str) -> bool:
    """Whether the copy of ``key`` is already stored."""
    name = entry_name(key)
    return name in data or f"{name}{_GZ}0" in data


def size(data: Mapping[str, str]) -> int:
    """Bytes a part's data takes."""
    return sum(len(k) + len(v) for k, v in data.items())


def place(
    parts: Sequence[Mapping[str, str]], new: Iterable[Mapping[str, str]], limit: int = PART_LIMIT
) -> list[dict[str, str]]:
    """The parts after appending ``new`` entries: existing keys stay where they are; entries fill the last
    part and then open new ones. Returns every part (unchanged ones included)."""
    out = [dict(p) for p in parts] or [{}]
    for entry in new:
        if not entry:
            continue
        if size(out[-1]) + size(entry) > limit and out[-1]:
            out.append({})
        for k, v in entry.items():
            if size(out[-1]) + len(k) + len(v) > limit and out[-1]:
                out.append({})
            out[-1][k] = v
    return out


def to_secret_data(data: Mapping[str, str]) -> dict[str, str]:
    """Secret ``data`` (base64) for a part."""
    return {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}


def from_secret_data(data: Mapping[str, str]) -> dict[str, str]:
    """The part's entries from Secret ``data``."""
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def for_create(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy fit for re-creating a deleted object: server-allocated fields that may be taken are dropped."""
    out = copy.deepcopy(dict(obj))
    if out.get("kind") == "Service":
        spec = out.get("spec") or {}
        if spec.get("clusterIP") != "None":  # headless Services keep theirs
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        for port in spec.get("ports") or []:
            if spec.get("type") in (None, "ClusterIP"):
                port.pop("nodePort", None)
    if out.get("kind") == "PersistentVolumeClaim":
        (out.get("spec") or {}).pop("volumeName", None)
    return out
