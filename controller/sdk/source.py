"""Reading published experiment configs from a mounted ConfigMap (or any file or directory).

A path is either one file or a directory. In a directory every ``*.json`` file not starting with a
dot is read (a mounted ConfigMap's ``..data`` entries are skipped), in name order; each holds the
published document ``{"experiments": [...]}``, a list of configs, or one config (``<key>.json``).

Change detection is a stat signature (name, mtime, size, inode of every file): kubelet updates a
mounted ConfigMap by swapping a symlink to a new directory, which changes the inode and mtime seen
through the file's path.
"""

from __future__ import annotations

import os
from pathlib import Path

from controller.experiments.growthbook import GROWTHBOOK_SUFFIX
from controller.experiments.hashing import ExperimentConfig, loads_published

__all__ = ["Signature", "load_path", "signature"]

Signature = tuple[tuple[str, int, int, int], ...] | None


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(
            Path(entry.path)
            for entry in os.scandir(path)
            if entry.name.endswith(".json")
            and not entry.name.endswith(GROWTHBOOK_SUFFIX)  # GrowthBook SDK payloads beside the configs
            and not entry.name.startswith(".")
            and entry.is_file()
        )
    return [path] if path.is_file() else []


def signature(path: Path) -> Signature:
    """Cheap fingerprint of the files under ``path``; None when it does not exist."""
    if not path.exists():
        return None
    parts: list[tuple[str, int, int, int]] = []
    for file in _files(path):
        try:
            st = file.stat()
        except OSError:
            continue
        parts.append((file.name, st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(parts)


def load_path(path: Path) -> tuple[list[ExperimentConfig], list[str]]:
    """(configs, problems). A file that cannot be read or parsed raises ValueError (callers keep
    their previous configs); invalid or duplicate experiments inside a file are skipped and listed."""
    if not path.exists():
        return [], [f"{path}: does not exist (no experiments published yet?)"]
    configs: list[ExperimentConfig] = []
    problems: list[str] = []
    seen: set[str] = set()
    for file in _files(path):
        try:
            text = file.read_text(encoding="utf-8")
            found, errors = loads_published(text)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"{file}: {exc}") from exc
        problems.extend(f"{file.name}: {error}" for error in errors)
        for config in found:
            if config.key in seen:
                problems.append(f"{file.name}: experiment {config.key!r} defined twice, first kept")
                continue
            seen.add(config.key)
            configs.append(config)
    return configs, problems
