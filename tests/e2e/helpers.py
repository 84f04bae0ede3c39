"""Foundation for the e2e tests: the local stack (hack/stack.sh) and small, blocking helpers.

Everything here talks to real processes on loopback: kube-apiserver (through the stack's kubectl),
Prometheus, the test-controlled exporter (hack/exporter.py) and `git daemon`.

    stack = get_stack()                      # reads `hack/stack.sh env`
    kubectl("get", "nodes", "-o", "json")    # the stack's kubectl and KUBECONFIG
    set_metric("chat_load", 7.2, namespace="shop")
    wait_for(lambda: promql('chat_load{namespace="shop"}'), timeout=10, message="chat_load scraped")
    url = make_repo("shop-app", {"deploy/web.yaml": "..."})
    sha = push_commit(url, {"deploy/web.yaml": "..."}, "web v2")
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import secrets
import shlex
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]
STACK_SH = REPO_ROOT / "hack" / "stack.sh"
OUTPUT_DIR = REPO_ROOT / "tests" / "e2e" / "output"
CRD_DIR = REPO_ROOT / "crds"
GIT_IDENTITY = ("-c", "user.name=stopline-e2e", "-c", "user.email=e2e@stopline.invalid")

T = TypeVar("T")


class CommandError(subprocess.CalledProcessError):
    """A command failed; str() shows the command, exit code and stderr (CalledProcessError does not)."""

    def __str__(self) -> str:
        cmd = self.cmd if isinstance(self.cmd, str) else shlex.join(str(c) for c in self.cmd)
        err = (self.stderr or "").strip() or (self.output or "").strip()
        return f"`{cmd}` exited {self.returncode}: {err[-2000:]}"


def run(
    args: Sequence[str],
    *,
    input: str | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capture text output; raise CommandError (with stderr) when check and it fails."""
    proc = subprocess.run(
        list(args),
        input=input,
        capture_output=True,
        text=True,
        env=None if env is None else {**os.environ, **env},
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise CommandError(proc.returncode, proc.args, proc.stdout, proc.stderr)
    return proc


# ---------------------------------------------------------------------------------------- stack
@dataclass(frozen=True)
class Stack:
    """Where the parts of a running stack are (from `hack/stack.sh env`)."""

    kubeconfig: Path
    kubectl_bin: str
    prometheus_url: str
    exporter_url: str
    git_url: str  # git://127.0.0.1:PORT — the daemon root; repos are at {git_url}/<name>.git
    git_base: Path  # the daemon's --base-path: a bare repo created here is served at once
    backend: str
    state_dir: Path
    kustomize: str = ""  # the stack's kustomize and helm (hack/install-*.sh), for source.kustomize/helm
    helm: str = ""

    @property
    def app_repo_url(self) -> str:
        """The seeded example app (deploy/: web-canary, web, chat, api)."""
        return self.repo_url("app")

    def repo_url(self, name: str) -> str:
        return f"{self.git_url}/{name}.git"

    def repo_path(self, name: str) -> Path:
        return self.git_base / f"{name}.git"

    @classmethod
    def from_env_text(cls, text: str) -> Stack:
        """Parse `export NAME=value` lines as printed by `hack/stack.sh env`."""
        env: dict[str, str] = {}
        for line in text.splitlines():
            words = shlex.split(line)
            if len(words) == 2 and words[0] == "export" and "=" in words[1]:
                key, value = words[1].split("=", 1)
                env[key] = value
        missing = [
            k
            for k in ("KUBECONFIG", "KUBECTL", "PROMETHEUS_URL", "EXPORTER_URL", "GIT_URL", "GIT_BASE")
            if k not in env
        ]
        if missing:
            raise RuntimeError(f"hack/stack.sh env did not print {', '.join(missing)}:\n{text}")
        return cls(
            kubeconfig=Path(env["KUBECONFIG"]),
            kubectl_bin=env["KUBECTL"],
            prometheus_url=env["PROMETHEUS_URL"].rstrip("/"),
            exporter_url=env["EXPORTER_URL"].rstrip("/"),
            git_url=env["GIT_URL"].rstrip("/"),
            git_base=Path(env["GIT_BASE"]),
            backend=env.get("STOPLINE_E2E_BACKEND", "kwok"),
            state_dir=Path(env.get("STOPLINE_STACK_DIR", str(Path(env["KUBECONFIG"]).parent))),
            kustomize=env.get("STOPLINE_KUSTOMIZE", ""),
            helm=env.get("STOPLINE_HELM", ""),
        )

    def env(self) -> dict[str, str]:
        """Environment for a process (e.g. the controller under test) that should use this stack."""
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "PROMETHEUS_URL": self.prometheus_url,
            "EXPORTER_URL": self.exporter_url,
            "GIT_URL": self.git_url,
            "GIT_BASE": str(self.git_base),
        }


def stack_up(log_path: Path | None = None, timeout: float = 3600) -> None:
    """`hack/stack.sh up` (reuses a healthy stack). Raises RuntimeError with the output tail on failure.

    The output goes to a file, not a pipe: daemons the script starts must never hold our pipe open.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    log_path = log_path or OUTPUT_DIR / f"stack-up{'-' + worker if worker else ''}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        proc = subprocess.run(
            ["bash", str(STACK_SH), "up"], stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False
        )
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text().splitlines()[-40:])
        raise RuntimeError(f"hack/stack.sh up failed (exit {proc.returncode}); full log in {log_path}:\n{tail}")


def load_stack() -> Stack:
    return Stack.from_env_text(run(["bash", str(STACK_SH), "env"], timeout=30).stdout)


@functools.cache
def get_stack() -> Stack:
    """The running stack (read once per process). Call stack_up() first if it may be down."""
    return load_stack()


# ---------------------------------------------------------------------------------------- waiting
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (CommandError, urllib.error.URLError, ConnectionError)


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.2,
    message: str = "condition",
    ignore: tuple[type[BaseException], ...] = TRANSIENT_ERRORS,
) -> T:
    """Poll predicate until it returns a truthy value (returned) or the deadline passes.

    Exceptions listed in `ignore` count as "not yet" (their text becomes the last value); others propagate.
    On timeout raise AssertionError naming `message` and the last value seen.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except ignore as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {message}; last value: {last!r}")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------- kubernetes
def kubectl(
    *args: str, input: str | None = None, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the stack's kubectl against its cluster."""
    stack = get_stack()
    return run(
        [stack.kubectl_bin, "--kubeconfig", str(stack.kubeconfig), *args],
        input=input,
        check=check,
        timeout=timeout,
    )


def kubectl_json(*args: str) -> Any:
    """`kubectl ... -o json`, parsed."""
    return json.loads(kubectl(*args, "-o", "json").stdout)


def apply(manifest: str, namespace: str | None = None, *extra: str) -> subprocess.CompletedProcess[str]:
    """Server-side apply YAML/JSON text (many documents allowed)."""
    ns = ["-n", namespace] if namespace else []
    return kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=stopline-e2e",
        *ns,
        *extra,
        "-f",
        "-",
        input=manifest,
    )


def deployment_available(namespace: str, name: str) -> bool:
    obj = kubectl_json("-n", namespace, "get", "deployment", name)
    conditions = obj.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions) and obj.get(
        "status", {}
    ).get("updatedReplicas", 0) == obj.get("spec", {}).get("replicas", 1)


def wait_deployment_available(namespace: str, name: str, timeout: float = 60) -> None:
    wait_for(
        lambda: deployment_available(namespace, name),
        timeout=timeout,
        message=f"deployment {namespace}/{name} Available",
    )


def k8s_name(text: str, prefix: str = "", max_len: int = 63) -> str:
    """A DNS-1123 label from arbitrary text (e.g. a test name), kept unique by a short hash."""
    digest = hashlib.sha1(text.encode()).hexdigest()[:6]
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"
    keep = max_len - len(prefix) - len(digest) - 1
    return f"{prefix}{slug[:keep].rstrip('-')}-{digest}"


def create_namespace(name: str, labels: Mapping[str, str]) -> None:
    meta = {"name": name, "labels": dict(labels)}
    apply(json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": meta}))
    wait_for(
        lambda: kubectl("-n", name, "get", "serviceaccount", "default", check=False).returncode == 0,
        timeout=30,
        message=f"default ServiceAccount in namespace {name}",
    )


def delete_namespace(name: str) -> None:
    kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


def namespace_report(namespace: str) -> str:
    """Events and objects of a namespace, for failure output."""
    parts = []
    for title, args in (
        ("events", ("-n", namespace, "get", "events", "--sort-by=.lastTimestamp")),
        ("objects", ("-n", namespace, "get", "deployments,replicasets,pods", "-o", "wide")),
    ):
        proc = kubectl(*args, check=False)
        parts.append(f"--- {title} in {namespace} ---\n{proc.stdout}{proc.stderr}")
    return "\n".join(parts)


def crd_files() -> list[Path]:
    """The CRD manifests in crds/ (generated from controller/models)."""
    return sorted([*CRD_DIR.glob("*.yaml"), *CRD_DIR.glob("*.yml")])


def crd_names(paths: Iterable[Path]) -> list[str]:
    """metadata.name of every CustomResourceDefinition in the given YAML files."""
    import yaml  # local: only the e2e suite needs it

    names = []
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                names.append(str(doc["metadata"]["name"]))
    return names


def install_crds(paths: Sequence[Path], timeout: float = 60) -> list[str]:
    """Server-side apply CRD files and wait until every CRD in them is Established; return their names."""
    for path in paths:
        kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=stopline-e2e", "-f", str(path))
    names = crd_names(paths)
    for name in names:
        wait_for(
            functools.partial(crd_established, name),
            timeout=timeout,
            message=f"CRD {name} Established",
        )
    return names


def crd_established(name: str) -> bool:
    obj = kubectl_json("get", "crd", name)
    return any(
        c.get("type") == "Established" and c.get("status") == "True"
        for c in obj.get("status", {}).get("conditions", [])
    )


# ---------------------------------------------------------------------------------------- metrics
def _post(url: str, body: Mapping[str, Any], timeout: float = 5) -> Any:
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        exc.close()
        raise RuntimeError(f"POST {url} {dict(body)} -> HTTP {exc.code}: {detail}") from None


def _get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        body: bytes = resp.read()
        return body


def _json_value(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return value


def set_metric(name: str, value: float, **labels: str) -> None:
    """Set one series on the exporter; Prometheus scrapes it within ~1 s (see wait_scraped)."""
    _post(f"{get_stack().exporter_url}/set", {"name": name, "labels": labels, "value": _json_value(value)})


def delete_metric(name: str, **labels: str) -> int:
    """Delete the series with exactly these labels; Prometheus marks it stale on the next scrape."""
    result = _post(f"{get_stack().exporter_url}/delete", {"name": name, "labels": labels})
    return int(result.get("deleted", 0))


def reset_metrics() -> None:
    """Drop every series on the exporter (other tests' too: use only in a dedicated session)."""
    _post(f"{get_stack().exporter_url}/reset", {})


def exporter_generation() -> int:
    """How many changes the exporter has seen (its `stopline_e2e_exporter_generation` gauge)."""
    for line in _get(f"{get_stack().exporter_url}/metrics").decode().splitlines():
        if line.startswith("stopline_e2e_exporter_generation "):
            return int(float(line.split()[1]))
    raise RuntimeError("exporter did not report stopline_e2e_exporter_generation")


def wait_scraped(timeout: float = 10) -> None:
    """Wait until Prometheus has scraped every exporter change made so far."""
    target = exporter_generation()
    wait_for(
        lambda: [r for r in promql("stopline_e2e_exporter_generation") if sample_value(r) >= target],
        timeout=timeout,
        message=f"Prometheus to scrape exporter generation {target}",
    )


def promql(query: str, timeout: float = 5) -> list[dict[str, Any]]:
    """Instant query; returns data.result (for a vector: [{"metric": {...}, "value": [ts, "1.5"]}, ...])."""
    url = f"{get_stack().prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        body = json.loads(_get(url, timeout=timeout))
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        exc.close()
        raise RuntimeError(f"PromQL {query!r} -> HTTP {exc.code}: {detail}") from None
    if body.get("status") != "success":
        raise RuntimeError(f"PromQL {query!r} failed: {body}")
    data = body["data"]
    if data["resultType"] in ("scalar", "string"):
        return [{"metric": {}, "value": data["result"]}]
    result: list[dict[str, Any]] = data["result"]
    return result


def sample_value(sample: Mapping[str, Any]) -> float:
    """The float of one instant-vector sample ("NaN" and "+Inf" included)."""
    return float(sample["value"][1])


# ---------------------------------------------------------------------------------------- git
def git(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(
        ["git", *GIT_IDENTITY, *args],
        cwd=cwd,
        check=check,
        env={"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"},
    )


def _write_files(root: Path, files: Mapping[str, str]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def make_repo(name: str, files: Mapping[str, str], branch: str = "main", message: str = "initial commit") -> str:
    """Create a fresh bare repo <git_base>/<name>.git (replacing one of that name) holding one commit
    with `files` on `branch`; return its git:// URL."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ValueError(f"repo name must be a plain directory name, got {name!r}")
    stack = get_stack()
    bare = stack.repo_path(name)
    if bare.exists():
        shutil.rmtree(bare)
    git("init", "-q", "--bare", "-b", branch, str(bare))
    url = stack.repo_url(name)
    with tempfile.TemporaryDirectory(prefix="stopline-e2e-") as tmp:
        work = Path(tmp)
        git("init", "-q", "-b", branch, cwd=work)
        _write_files(work, files)
        git("add", "-A", cwd=work)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=work)
        git("push", "-q", url, f"HEAD:refs/heads/{branch}", cwd=work)
    return url


def push_commit(
    url: str, files: Mapping[str, str], message: str, delete: Iterable[str] = (), branch: str = "main"
) -> str:
    """Clone `branch`, write `files`, remove `delete`, commit, push; return the new commit SHA."""
    with tempfile.TemporaryDirectory(prefix="stopline-e2e-") as tmp:
        work = Path(tmp) / "work"
        git("clone", "-q", "--branch", branch, "--single-branch", url, str(work))
        _write_files(work, files)
        for rel in delete:
            git("rm", "-q", "-r", "--", rel, cwd=work)
        git("add", "-A", cwd=work)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=work)
        git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=work)
        return git("rev-parse", "HEAD", cwd=work).stdout.strip()


def branch_sha(url: str, branch: str = "main") -> str:
    """The commit `branch` points at on the server (via ls-remote)."""
    out = git("ls-remote", url, f"refs/heads/{branch}").stdout.split()
    if not out:
        raise CommandError(2, ["git", "ls-remote", url, branch], "", f"no branch {branch} in {url}")
    return out[0]


def git_log(url: str, branch: str = "main") -> list[tuple[str, str]]:
    """(sha, subject) of every commit on `branch`, newest first."""
    with tempfile.TemporaryDirectory(prefix="stopline-e2e-") as tmp:
        clone = Path(tmp) / "repo.git"
        git("clone", "-q", "--bare", "--branch", branch, "--single-branch", url, str(clone))
        out = git("log", "--format=%H%x00%s", branch, cwd=clone).stdout
    log: list[tuple[str, str]] = []
    for line in out.splitlines():
        sha, _, subject = line.partition("\0")
        log.append((sha, subject))
    return log


def git_show(url: str, ref: str, path: str) -> str:
    """Content of `path` at `ref` (branch or SHA) in the remote repo."""
    with tempfile.TemporaryDirectory(prefix="stopline-e2e-") as tmp:
        clone = Path(tmp) / "repo.git"
        git("clone", "-q", "--bare", url, str(clone))
        return git("show", f"{ref}:{path}", cwd=clone).stdout


def unique_suffix() -> str:
    return secrets.token_hex(3)


def until(fetch: Callable[[], T | None], ok: Callable[[T], bool], timeout: float, message: str) -> T:
    """Poll ``fetch`` until it returns a value ``ok`` accepts (transient kubectl errors count as "not yet")."""

    def ready() -> T | None:
        value = fetch()
        return value if value is not None and ok(value) else None

    result = wait_for(ready, timeout=timeout, message=message)
    assert result is not None
    return result
