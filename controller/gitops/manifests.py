"""Read plain YAML/JSON manifests out of a Git tree (object database only, no checkout)."""

from __future__ import annotations

import json
import os
from pathlib import PurePosixPath
from typing import Any

import yaml
from git.objects import Blob, Tree

from controller.gitops.errors import GitInputError, GitNotFoundError, ManifestError

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _ManifestLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """Safe loader that keeps timestamp-looking scalars as strings, as Kubernetes' YAML decoding does."""


_ManifestLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def normalize_path(path: str) -> str:
    """``deploy/``, ``./deploy``, ``/deploy`` → ``deploy``; ``""``/``.`` → ``""`` (the repository root)."""
    parts = [p for p in path.strip().replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise GitInputError(f"manifest path {path!r} must not contain '..'")
    return "/".join(parts)


def parse_documents(file_path: str, data: bytes) -> list[dict[str, Any]]:
    """All non-empty documents of one file; every document must be a mapping."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{file_path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    docs: list[Any]
    if file_path.endswith(".json"):
        try:
            docs = [json.loads(text)] if text.strip() else []
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{file_path}: invalid JSON: {exc}") from exc
    else:
        try:
            docs = list(yaml.load_all(text, Loader=_ManifestLoader))
        except yaml.YAMLError as exc:
            raise ManifestError(f"{file_path}: invalid YAML: {exc}") from exc
    result: list[dict[str, Any]] = []
    for index, doc in enumerate(docs, start=1):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ManifestError(
                f"{file_path}: document {index} is a {type(doc).__name__}, not a mapping (Kubernetes object)"
            )
        result.append(doc)
    return result


def read_manifests(root: Tree, path: str, where: str) -> list[dict[str, Any]]:
    """Documents of every ``*.yaml``/``*.yml``/``*.json`` blob under ``path`` of ``root``, recursively,
    in file-path order. ``where`` names the revision/repo in error messages."""
    norm = normalize_path(path)
    target: Any = root
    if norm:
        try:
            target = root / norm
        except KeyError:
            raise GitNotFoundError(f"path {norm!r} does not exist {where}") from None
    blobs: list[Blob]
    if isinstance(target, Blob):
        if not os.fspath(target.path).endswith(MANIFEST_SUFFIXES):
            expected = ", ".join(MANIFEST_SUFFIXES)
            raise ManifestError(f"{os.fspath(target.path)}: not a manifest file (expected {expected})")
        blobs = [target]
    elif isinstance(target, Tree):
        blobs = [
            item
            for item in target.traverse()
            if isinstance(item, Blob)
            and item.mode != Blob.link_mode
            and PurePosixPath(item.path).suffix in MANIFEST_SUFFIXES
        ]
    else:
        raise GitNotFoundError(f"path {norm!r} is a submodule, not a directory of manifests, {where}")
    documents: list[dict[str, Any]] = []
    for blob in sorted(blobs, key=lambda b: os.fspath(b.path)):
        documents.extend(parse_documents(os.fspath(blob.path), blob.data_stream.read()))
    return documents
