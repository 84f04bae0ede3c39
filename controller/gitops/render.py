"""Render a kustomization or a Helm chart at a revision into manifests.

Rendering needs files on disk, the cached clone has none to spare: its work tree belongs to the
revert. :func:`materialize` therefore writes the revision's tree from the object database into a
private temporary directory (exact blob bytes: no checkout, no ``.gitattributes`` filters, no
``export-subst``), and :func:`render` runs ``kustomize build`` or ``helm template`` there with a
timeout and parses its standard output with the same parser as plain manifests.

The tools get a minimal environment (``PATH`` and a throwaway ``HOME``/helm directories): no git
credentials, no kubeconfig. Symbolic links in the tree are kept only when they resolve inside it, so
neither tool can read the controller's own files. Everything here blocks; callers run it off the
event loop. Errors derive from :class:`ManifestError`: a render that fails fails the push.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from git.objects import Blob, Tree

from controller.gitops.credentials import scrub
from controller.gitops.errors import GitNotFoundError, ManifestError
from controller.gitops.manifests import normalize_path, parse_documents
from controller.models.release import HELM_RELEASE_NAME_PATTERN, GitSource

MAX_TREE_BYTES = 256 * 1024 * 1024
"""A revision whose files add up to more than this is not materialized (a repository of manifests is
a few MB; this stops a mistaken monorepo path from filling the disk)."""
MAX_MESSAGE_CHARS = 2000
"""How much of a tool's stderr reaches the Release's status (its last lines)."""
_MESSAGE_LINES = 12
_HOW_TO_GET = {
    "kustomize": "build it with hack/install-kustomize.sh (kustomize v5 from its Go module) or install "
    "kustomize v5, and point STOPLINE_KUSTOMIZE at it (or put it on PATH)",
    "helm": "build it with hack/install-helm.sh (helm v3 from its Go module) or install helm v3, and point "
    "STOPLINE_HELM at it (or put it on PATH)",
}
_CHART_FILES = ("Chart.yaml", "Chart.yml")
_KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+:")


class RenderError(ManifestError):
    """kustomize or helm could not render the source at the revision (the message says why)."""


class RendererMissing(RenderError):
    """The kustomize or helm binary is not where the settings say (or not on PATH)."""


class RenderTimeout(RenderError):
    """The tool ran longer than the render timeout and was killed."""


@dataclass(frozen=True)
class Tools:
    """Where the renderers are and how long one render may take (from the controller settings)."""

    kustomize: str = "kustomize"
    """Path of the kustomize binary, or a name looked up on PATH."""
    helm: str = "helm"
    """Path of the helm binary, or a name looked up on PATH."""
    timeout: float = 60.0
    """Seconds before a render is killed."""


@dataclass(frozen=True)
class KustomizeBuild:
    """``kustomize build <path>`` with kustomize's defaults: files only from inside the kustomization
    root, no plugins, no exec functions, no Helm inflation."""


@dataclass(frozen=True)
class HelmTemplate:
    """``helm template <release> <path> --namespace <namespace> --skip-tests`` with values."""

    namespace: str
    release_name: str | None = None
    """None: the chart's name from Chart.yaml."""
    values_files: tuple[str, ...] = ()
    """Relative to the chart directory; must stay inside the repository."""
    values_json: str = "{}"
    """Inline values as canonical JSON (sorted keys), so equal values give equal, hashable options."""

    @property
    def values(self) -> dict[str, Any]:
        """The inline values."""
        loaded: dict[str, Any] = json.loads(self.values_json)
        return loaded


RenderOptions = KustomizeBuild | HelmTemplate
"""How a source is rendered; hashable, so it is part of every manifest cache key."""


def render_options(source: GitSource, namespace: str) -> RenderOptions | None:
    """The render options a source asks for (None: plain manifests, read from the object database)."""
    if source.kustomize is not None:
        return KustomizeBuild()
    if source.helm is not None:
        helm = source.helm
        return HelmTemplate(
            namespace=namespace,
            release_name=helm.release_name,
            values_files=tuple(helm.values_files),
            values_json=json.dumps(helm.values, sort_keys=True, separators=(",", ":")),
        )
    return None


# -- materializing a tree --------------------------------------------------------------------------


def materialize(tree: Tree, dest: Path, max_bytes: int = MAX_TREE_BYTES) -> None:
    """Write every file of ``tree`` under ``dest`` (which must exist): blob bytes as stored, the
    executable bit kept, submodules skipped, symbolic links kept only when they resolve inside
    ``dest``. Reads the object database only, so it is safe beside any other use of the clone."""
    root = dest.resolve()
    total = 0
    links: list[Path] = []
    for item in tree.traverse():
        if isinstance(item, Tree):
            (root / os.fspath(item.path)).mkdir(parents=True, exist_ok=True)
            continue
        if not isinstance(item, Blob):  # a submodule (a commit of another repository): not materialized
            continue
        target = root / os.fspath(item.path)
        data = item.data_stream.read()
        total += len(data)
        if total > max_bytes:
            raise ManifestError(
                f"the revision's files exceed {max_bytes // (1024 * 1024)} MiB; keep manifests in a smaller repository"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        if item.mode == Blob.link_mode:
            os.symlink(os.fsdecode(data), target)
            links.append(target)
            continue
        target.write_bytes(data)
        if item.mode & stat.S_IXUSR:
            target.chmod(0o755)
    # Drop links that lead outside the tree (after all exist: a link may point through another link).
    for link in links:
        if not Path(os.path.realpath(link)).is_relative_to(root):
            link.unlink()


# -- running the tools -----------------------------------------------------------------------------


def render(tools: Tools, options: RenderOptions, root: Path, path: str, where: str) -> list[dict[str, Any]]:
    """Render ``path`` of the materialized tree at ``root`` and parse the output. ``where`` names the
    revision and repository in error messages."""
    norm = normalize_path(path)
    target = (root / norm) if norm else root
    shown = norm or "."
    if not target.is_dir():
        what = "is not a directory" if target.exists() else "does not exist"
        raise GitNotFoundError(f"path {shown!r} {what} {where}")
    with _scratch(root) as scratch:
        if isinstance(options, KustomizeBuild):
            check_kustomizations(root, where)
            argv = [_binary("kustomize", tools.kustomize), "build", str(target)]
            tool = f"kustomize build {shown}"
        else:
            argv = _helm_argv(tools, options, root, target, shown, scratch, where)
            tool = f"helm template {shown}"
        out = _run(tool, argv, root, scratch, tools.timeout, where)
    return parse_documents(f"{tool} output {where}", out)


def check_kustomizations(root: Path, where: str) -> None:
    """Refuse kustomizations that reach outside the repository.

    kustomize's load restriction keeps *files* inside each kustomization's directory, but a base,
    resource or component directory may be any path on the machine, and a ``file://`` URL clones
    any local repository: either would let one repository read another's cached clone. So every
    local ``resources``/``bases``/``components`` entry of every kustomization in the tree must stay
    inside it; remote entries (``https://``, ``ssh://``, ``git@host:``) are left to kustomize."""
    top = root.resolve()
    for kfile in sorted(p for name in _KUSTOMIZATION_FILES for p in root.rglob(name)):
        try:
            docs = parse_documents(str(kfile), kfile.read_bytes())
        except (ManifestError, OSError):
            continue  # kustomize reports it, with its own message
        shown = os.path.relpath(kfile, root)
        for key in ("resources", "bases", "components"):
            entries = docs[0].get(key) if docs else None
            for entry in entries if isinstance(entries, list) else ():
                if isinstance(entry, str) and _leaves_tree(top, kfile.parent, entry):
                    raise ManifestError(
                        f"{shown} {where}: {key} entry {entry!r} points outside the repository; "
                        "stopline renders only bases and resources inside it (or remote https/ssh ones)"
                    )


def _leaves_tree(top: Path, base: Path, entry: str) -> bool:
    """Whether a kustomization entry is a local path (or ``file://`` URL) outside ``top``."""
    if "file:" in entry.lower():  # file://, git::file://: a clone of any repository on the machine
        return True
    if _REMOTE.match(entry) or _SCP_LIKE.match(entry):
        return False
    if entry.startswith("/"):
        return True
    return not Path(os.path.realpath(os.path.normpath(base / entry))).is_relative_to(top)


def _helm_argv(
    tools: Tools, options: HelmTemplate, root: Path, chart: Path, shown: str, scratch: Path, where: str
) -> list[str]:
    if not any((chart / name).is_file() for name in _CHART_FILES):
        raise ManifestError(f"{shown} has no Chart.yaml {where}: source.helm needs path to be a Helm chart")
    name = options.release_name or _chart_name(chart, shown, where)
    argv = [_binary("helm", tools.helm), "template", name, str(chart), "--namespace", options.namespace]
    argv.append("--skip-tests")
    for values_file in options.values_files:
        argv += ["--values", str(_inside(root, chart, values_file, where))]
    if options.values:
        inline = scratch / "inline-values.json"
        inline.write_text(options.values_json)
        argv += ["--values", str(inline)]
    return argv


def _chart_name(chart: Path, shown: str, where: str) -> str:
    data = next((chart / n).read_bytes() for n in _CHART_FILES if (chart / n).is_file())
    docs = parse_documents(f"{shown}/Chart.yaml", data)
    name = docs[0].get("name") if docs else None
    if not isinstance(name, str) or len(name) > 53 or not re.fullmatch(HELM_RELEASE_NAME_PATTERN, name):
        raise ManifestError(
            f"{shown}/Chart.yaml {where}: chart name {name!r} is not a valid Helm release name; "
            "set source.helm.releaseName"
        )
    return name


def _inside(root: Path, base: Path, relative: str, where: str) -> Path:
    """``base / relative`` resolved, which must be a file inside ``root``."""
    candidate = (base / relative).resolve()
    shown = os.path.normpath(os.path.relpath(base / relative, root))
    if not candidate.is_relative_to(root.resolve()):
        raise ManifestError(f"values file {relative!r} resolves outside the repository")
    if not candidate.is_file():
        raise ManifestError(f"values file {shown!r} does not exist {where}")
    return candidate


def _binary(name: str, configured: str) -> str:
    found = shutil.which(configured)
    if found is None:
        setting = f"STOPLINE_{name.upper()}"
        where = f"{setting}={configured!r}" if configured != name else f"{name!r} on PATH ({setting} is unset)"
        raise RendererMissing(f"{name} is needed to render this source but was not found: {where}; {_HOW_TO_GET[name]}")
    return found


@contextlib.contextmanager
def _scratch(root: Path) -> Iterator[Path]:
    """A private directory beside the tree for HOME, helm's directories and inline values."""
    path = Path(tempfile.mkdtemp(prefix=".render-", dir=root.parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _environment(scratch: Path) -> dict[str, str]:
    home = scratch / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "helm-cache"),
        "HELM_CONFIG_HOME": str(home / "helm-config"),
        "HELM_DATA_HOME": str(home / "helm-data"),
        "KUBECONFIG": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        # kustomize clones remote bases with git: never from a local path (another repository's clone).
        "GIT_ALLOW_PROTOCOL": "https:http:ssh:git",
        "GIT_CONFIG_NOSYSTEM": "1",
        "LANG": "C.UTF-8",
    }
    return env


def _run(tool: str, argv: list[str], root: Path, scratch: Path, timeout: float, where: str) -> bytes:
    env = _environment(scratch)
    proc = subprocess.Popen(
        argv,
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: a timeout kills whatever it started too
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        raise RenderTimeout(f"{tool} {where} did not finish within {timeout:g}s and was stopped") from None
    except BaseException:
        _kill_group(proc)
        proc.communicate()
        raise
    if proc.returncode != 0:
        detail = trim_message(err.decode("utf-8", "replace") or out.decode("utf-8", "replace"), root, scratch)
        raise RenderError(f"{tool} failed {where} (exit {proc.returncode}): {detail or 'no output'}")
    return out


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def trim_message(text: str, root: Path, scratch: Path | None = None, limit: int = MAX_MESSAGE_CHARS) -> str:
    """A tool's stderr fit for status: temporary paths shown relative to the repository, credentials in
    URLs removed, only the last lines, at most ``limit`` characters."""
    replacements = [(str(root.resolve()), "."), (str(root), ".")]
    if scratch is not None:
        replacements = [(str(scratch.resolve()), "<scratch>"), (str(scratch), "<scratch>"), *replacements]
    for base, shown in replacements:
        text = text.replace(base + "/", "" if shown == "." else shown + "/").replace(base, shown)
    lines = [line.rstrip() for line in text.strip().splitlines() if line.strip()]
    text = scrub(" / ".join(lines[-_MESSAGE_LINES:]))
    if len(text) > limit:
        text = "…" + text[-(limit - 1) :]
    return text
