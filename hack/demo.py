"""`make demo`: the IMVU story on the local stack, in one command.

A Track follows `main` of a local Git repo holding four Deployments, chat's ConfigMap, its Service and
its StatefulSet store. A good merge goes out in three phases; a bad merge
breaches the `chat-loadavg` gate in phase 2, so stopline restores the cluster, pushes a `git revert`
to `main` and locks the line. The gauges table, the rollback and `git log` are printed at the end.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NS = "stopline-demo"
TRACK = "shop"
DEPLOYMENTS = {"web-canary": "web", "web": "web", "chat": "chat", "api": "api"}


def say(text: str) -> None:
    print(f"\n\033[1;36m==> {text}\033[0m", flush=True)


def sh(*args: str, env: dict[str, str] | None = None, input: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(list(args), env=env, input=input, text=True, capture_output=True, check=False)
    if check and proc.returncode != 0:
        raise SystemExit(f"demo: `{shlex.join(args)}` failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def stack_env() -> dict[str, str]:
    out = sh("bash", str(ROOT / "hack" / "stack.sh"), "env")
    env = dict(os.environ)
    for line in out.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            k, v = words[1].split("=", 1)
            env[k] = v
    return env


def wait(what: str, check: Callable[[], Any], timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise SystemExit(f"demo: timed out waiting for {what}")


def deployment(name: str, tier: str, version: str) -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app": name, "tier": tier}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name, "tier": tier}},
                    "spec": {"containers": [{"name": "app", "image": f"registry.example/{name}:{version}"}]},
                },
            },
        },
        indent=2,
    )


def chat_objects(version: str) -> dict[str, str]:
    """The rest of the app: chat's config (a ConfigMap it reads), its Service and its store (a StatefulSet)."""
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "chat-config"},
        "data": {"protocol": "v2" if version == "v3" else "v1", "version": version},
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "chat"},
        "spec": {"selector": {"app": "chat"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    store = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "chat-store", "labels": {"app": "chat-store", "tier": "chat"}},
        "spec": {
            "replicas": 1,
            "serviceName": "chat",
            "selector": {"matchLabels": {"app": "chat-store"}},
            "template": {
                "metadata": {"labels": {"app": "chat-store", "tier": "chat"}},
                "spec": {
                    "containers": [
                        {
                            "name": "store",
                            "image": f"registry.example/chat-store:{version}",
                            "envFrom": [{"configMapRef": {"name": "chat-config"}}],
                        }
                    ]
                },
            },
        },
    }
    return {
        "chat-config.yaml": json.dumps(config, indent=2),
        "chat-service.yaml": json.dumps(service, indent=2),
        "chat-store.yaml": json.dumps(store, indent=2),
    }


class Receiver:
    """A loopback webhook receiver (stdlib http.server in a thread): what a chat or incident tool would get."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        got = self.got = []  # type: list[tuple[dict[str, str], bytes]]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                got.append((dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stopline"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def main() -> int:
    say("Starting the local stack (API server + controllers + fake nodes, Prometheus, Git server)")
    subprocess.run(["bash", str(ROOT / "hack" / "stack.sh"), "up"], check=True)
    env = stack_env()
    kubectl = env["KUBECTL"]

    def k(*args: str, input: str | None = None, check: bool = True) -> str:
        return sh(kubectl, *args, env=env, input=input, check=check)

    def metric(name: str, value: float) -> None:
        body = json.dumps({"name": name, "labels": {"namespace": NS}, "value": value}).encode()
        req = urllib.request.Request(f"{env['EXPORTER_URL']}/set", data=body, method="POST")
        req.add_header("Content-Type", "application/json")
        urllib.request.urlopen(req, timeout=5).read()

    say("Installing the stopline CRDs")
    for crd in sorted((ROOT / "crds").glob("*.yaml")):
        k("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    k("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")

    say(f"Fresh namespace {NS} with the app at v1, and a Git repo holding it")
    # A previous demo's objects may still carry a finalizer from an older controller that is no longer
    # running: they are the demo's own, so let them go before the namespace is recreated.
    for obj in k("get", "releases,tracks,experiments", "-n", NS, "-o", "name", check=False).split():
        k("patch", obj, "-n", NS, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False)
    k("delete", "namespace", NS, "--ignore-not-found", "--wait=true", "--timeout=120s")
    k("create", "namespace", NS)
    git_base = Path(env["GIT_BASE"])
    bare = git_base / "demo.git"
    shutil.rmtree(bare, ignore_errors=True)
    repo_url = f"{env['GIT_URL'].rstrip('/')}/demo.git"
    work = Path(tempfile.mkdtemp(prefix="stopline-demo-"))
    git = ["git", "-C", str(work), "-c", "user.name=Dev", "-c", "user.email=dev@example.com"]
    sh("git", "init", "-q", "--bare", "-b", "main", str(bare))
    sh("git", "init", "-q", "-b", "main", str(work))
    (work / "deploy").mkdir()

    def commit(version: str, message: str) -> str:
        for name, tier in DEPLOYMENTS.items():
            (work / "deploy" / f"{name}.yaml").write_text(deployment(name, tier, version))
        for file, text in chat_objects(version).items():
            (work / "deploy" / file).write_text(text)
        sh(*git, "add", "-A")
        sh(*git, "commit", "-q", "-m", message)
        sh(*git, "push", "-q", repo_url, "HEAD:refs/heads/main")
        return sh(*git, "rev-parse", "HEAD").strip()

    commit("v1", "app v1")
    for file in sorted((work / "deploy").glob("*.yaml")):
        k("apply", "-n", NS, "-f", "-", input=file.read_text())
    k("wait", "-n", NS, "--for=condition=Available", "deployment", "--all", "--timeout=120s")
    k("rollout", "status", "-n", NS, "statefulset/chat-store", "--timeout=120s")
    metric("stopline_demo_chat_load", 4.13)

    say("Starting the stopline controller")
    log_path = Path(env.get("STOPLINE_STACK_DIR", ROOT / ".stack")) / "demo-controller.log"
    ctl_env = {
        **env,
        "STOPLINE_PROMETHEUS_URL": env["PROMETHEUS_URL"],
        "STOPLINE_REPO_CACHE": str(work.parent / "stopline-demo-repos"),
        "STOPLINE_HTTP_PORT": "18480",
    }
    with log_path.open("w") as log:
        ctl = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "run", "--namespace", NS, "--lease-name", "stopline-demo"],
            cwd=ROOT,
            env=ctl_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    receiver = Receiver()
    try:
        track = {
            "apiVersion": "stopline.dev/v1alpha1",
            "kind": "Track",
            "metadata": {"name": TRACK, "namespace": NS},
            "spec": {
                "source": {"repo": repo_url, "branch": "main", "path": "deploy/"},
                "pollInterval": "1s",
                "template": {
                    "phases": [
                        {"name": "canary", "deployments": ["web-canary"], "hold": "3s"},
                        {"name": "chat", "selector": {"matchLabels": {"tier": "chat"}}, "hold": "8s"},
                        {"name": "everything-else", "remaining": True, "hold": "3s"},
                    ],
                    "gates": [
                        {
                            "name": "chat-loadavg",
                            "query": 'max(stopline_demo_chat_load{namespace="{{ namespace }}"})',
                            "max": 6,
                            "maxIncreasePercent": 25,
                            "interval": "1s",
                        }
                    ],
                    # failures only (RolledBack, RevertFailed) unless a sink lists events
                    "notify": [{"name": "demo-hook", "webhook": {"url": receiver.url}}],
                },
            },
        }
        v2 = commit("v2", "app v2: faster checkout")
        say(f"Merged {v2[:7]} (good) to main; the Track pushes it in three phases")
        k("apply", "-f", "-", input=json.dumps(track))

        def release_phase(name: str) -> str:
            out = k(
                "get", "release", name, "-n", NS, "-o", "jsonpath={.status.phase}/{.status.currentPhase}", check=False
            )
            return out.strip()

        good = f"{TRACK}-{v2[:7]}"
        wait(f"{good} to succeed", lambda: release_phase(good).startswith("Succeeded"))
        print(k("get", "releases", "-n", NS))

        v3 = commit("v3", "app v3: new chat protocol")
        bad = f"{TRACK}-{v3[:7]}"
        say(f"Merged {v3[:7]} (bad) to main; chat load will jump to 7.2 during phase 2")
        wait(f"{bad} to hold phase chat", lambda: release_phase(bad) == "Holding/chat")
        metric("stopline_demo_chat_load", 7.2)
        wait(f"{bad} to roll back", lambda: release_phase(bad).startswith(("RolledBack", "Failed")))
        metric("stopline_demo_chat_load", 4.13)

        say("What stopline did")
        # This checkout's CLI (like the controller above), not whichever `stopline` is installed.
        stopline = (
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv.pop(1)); from controller.cli import main; main()",
            str(ROOT),
        )
        print(sh(*stopline, "status", bad, "-n", NS, env=env, check=False) or "")
        print(k("get", "releases", "-n", NS))
        say(f"The message the webhook receiver got ({receiver.url})")
        wait("the RolledBack notification", lambda: receiver.got, timeout=60)
        headers, body = receiver.got[0]
        for h in ("X-Stopline-Delivery", "X-Stopline-Event"):
            print(f"{h}: {headers.get(h)}")
        print(json.loads(body)["text"])
        say("The line is locked until a human looks")
        print(sh(*stopline, "status", TRACK, "-n", NS, env=env, check=False) or "")
        say("git log --oneline -3 (main)")
        sh(*git, "fetch", "-q", repo_url, "main")
        print(sh(*git, "log", "--oneline", "-3", "FETCH_HEAD"))
        images = k(
            "get",
            "deployments",
            "-n",
            NS,
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.spec.template.spec.containers[0].image}{'\\n'}{end}",
        )
        say("Images live in the cluster (v2 everywhere: v3 was rolled back)")
        print(images)
        say("Restored next to the Deployments: chat's ConfigMap and its StatefulSet (v2 again)")
        print(k("get", "configmap", "chat-config", "-n", NS, "-o", "jsonpath=chat-config data={.data}") + "\n")
        print(
            k(
                "get",
                "statefulset",
                "chat-store",
                "-n",
                NS,
                "-o",
                "jsonpath=chat-store image={.spec.template.spec.containers[0].image}",
            )
            + "\n"
        )
        print(k("get", "release", bad, "-n", NS, "-o", "jsonpath=restored: {.status.undo.objects}") + "\n")
    finally:
        ctl.terminate()
        try:
            ctl.wait(15)
        except subprocess.TimeoutExpired:
            ctl.kill()
        shutil.rmtree(work, ignore_errors=True)
    say("Done. `make stack-down` stops the local stack; controller log: " + str(log_path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
