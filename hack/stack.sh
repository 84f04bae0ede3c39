#!/usr/bin/env bash
# The local e2e stack: a real control plane on fake nodes, Prometheus, a test-controlled exporter
# and a Git server, all on loopback, plus the kustomize and helm binaries the controller renders
# sources with (built once by hack/install-{kustomize,helm}.sh). No Docker engine and no internet
# needed (see docs/e2e.md).
#
#   hack/stack.sh up      install what is missing, start what is down, reuse what is healthy
#   hack/stack.sh down    stop everything this state dir started (by recorded PID) and remove it
#   hack/stack.sh env     print `export KUBECONFIG=... PROMETHEUS_URL=...` lines
#   hack/stack.sh status  exit non-zero when any part is down, naming which
#
# Environment:
#   STOPLINE_STACK_DIR    state dir (default <repo>/.stack): PIDs, logs, kubeconfig, TSDB, git repos
#   STOPLINE_E2E_BACKEND  kwok | kind | auto (default: kind only when `docker info` succeeds)
#   STOPLINE_E2E_NODES    fake nodes (default 2)
#   STOPLINE_STACK_PROFILE  e2e (default) | bench: kube-controller-manager without its client-side
#                         throttle (docs/benchmarks.md item 4), so a scale run measures stopline
#                         rather than the controller-manager's 20 requests/s; default: the profile
#                         the stack was made with (a different one recreates the cluster)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$(realpath -m "${STOPLINE_STACK_DIR:-$REPO/.stack}")"
CLUSTER="stopline-e2e"
PROFILE="${STOPLINE_STACK_PROFILE:-$(cat "$STATE/profile" 2>/dev/null || echo e2e)}"
NODES="${STOPLINE_E2E_NODES:-2}"
KIND_VERSION="${STOPLINE_KIND_VERSION:-v0.32.0}"
CACHE="${STOPLINE_CACHE:-$HOME/.cache/stopline}"
STATE_FILE="$STATE/stack.env"
PIDS="$STATE/pids"
LOGS="$STATE/logs"
GIT_BASE="$STATE/git"
export KWOK_WORKDIR="$STATE/kwok"

log() { printf '[stack] %s\n' "$*" >&2; }
die() {
  printf '[stack] ERROR: %s\n' "$*" >&2
  exit 1
}

case "$PROFILE" in
  e2e | bench) ;;
  *) die "STOPLINE_STACK_PROFILE must be e2e or bench, not '$PROFILE'" ;;
esac

# Show the end of a log file on stderr (used when a component fails to start).
show_log() {
  [[ -f "$1" ]] || return 0
  printf '[stack] --- last lines of %s ---\n' "$1" >&2
  tail -n 25 "$1" >&2 || true
}

# wait_until SECONDS COMMAND...: poll COMMAND every 0.2 s until it succeeds or the deadline passes.
wait_until() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_free() {
  "$PY" -c 'import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}

pick_python() {
  local p
  for p in "${STOPLINE_PYTHON:-}" /usr/bin/python3 "$(command -v python3 || true)"; do
    if [[ -n "$p" && -x "$p" ]]; then
      PY="$p"
      return 0
    fi
  done
  die "python3 is required (hack/exporter.py and port probing use it)"
}

# ---------------------------------------------------------------- recorded state (stack.env)
load_state() {
  BACKEND="" KUBECTL="" PROM_PORT="" EXPORTER_PORT="" GIT_PORT="" KUSTOMIZE="" HELM=""
  # shellcheck disable=SC1090
  [[ -f "$STATE_FILE" ]] && source "$STATE_FILE"
  return 0
}

save_state() {
  mkdir -p "$STATE"
  cat >"$STATE_FILE.tmp" <<EOF
BACKEND=$BACKEND
KUBECTL=$KUBECTL
PROM_PORT=$PROM_PORT
EXPORTER_PORT=$EXPORTER_PORT
GIT_PORT=$GIT_PORT
KUSTOMIZE=$KUSTOMIZE
HELM=$HELM
EOF
  mv "$STATE_FILE.tmp" "$STATE_FILE"
}

# ---------------------------------------------------------------- processes we own (by PID file)
# Running = exists and is not a zombie (orphans are reaped by PID 1, which may take a while).
pid_running() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ -n "$stat" && "${stat:0:1}" != Z ]]
}

pid_gone() { ! pid_running "$1"; }

pid_of() { [[ -f "$PIDS/$1.pid" ]] && cat "$PIDS/$1.pid"; }

# A PID is ours only if it is alive and its command line mentions this state dir (guards against
# a recycled PID after a reboot).
owned_alive() {
  local pid
  pid="$(pid_of "$1")" || return 1
  [[ -n "$pid" ]] && pid_running "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$STATE"
}

# start_daemon NAME COMMAND...: run detached (own session, no inherited stdio), record its PID.
start_daemon() {
  local name="$1"
  shift
  mkdir -p "$PIDS" "$LOGS"
  rm -f "$PIDS/$name.pid"
  # shellcheck disable=SC2016 # $$, $0 and $@ belong to the inner shell
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PIDS/$name.pid" "$@" \
    </dev/null >"$LOGS/$name.log" 2>&1 &
  wait_until 5 test -s "$PIDS/$name.pid" || die "$name did not start (see $LOGS/$name.log)"
}

stop_daemon() {
  local name="$1" pid
  owned_alive "$name" || {
    rm -f "$PIDS/$name.pid"
    return 0
  }
  pid="$(pid_of "$name")"
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_until 10 pid_gone "$pid"; then
    log "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDS/$name.pid"
}

# ---------------------------------------------------------------- tools
apt_install() {
  local missing=("$@")
  ((${#missing[@]})) || return 0
  command -v apt-get >/dev/null || die "missing: ${missing[*]} (no apt-get here; install them yourself)"
  [[ $(id -u) == 0 ]] || die "missing: ${missing[*]} (run: sudo apt-get install -y ${missing[*]})"
  log "installing Debian packages: ${missing[*]}"
  {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  } >"$STATE/apt.log" 2>&1 || {
    show_log "$STATE/apt.log"
    die "apt-get install ${missing[*]} failed"
  }
}

ensure_tools() {
  mkdir -p "$STATE"
  local missing=()
  command -v git >/dev/null || missing+=(git)
  command -v prometheus >/dev/null || missing+=(prometheus)
  command -v curl >/dev/null || missing+=(curl)
  apt_install "${missing[@]}"
}

choose_backend() {
  case "${STOPLINE_E2E_BACKEND:-auto}" in
    kwok | kind) BACKEND="$STOPLINE_E2E_BACKEND" ;;
    auto)
      if command -v docker >/dev/null && docker info >/dev/null 2>&1; then BACKEND=kind; else BACKEND=kwok; fi
      ;;
    *) die "STOPLINE_E2E_BACKEND must be kwok, kind or auto, not '$STOPLINE_E2E_BACKEND'" ;;
  esac
}

# ---------------------------------------------------------------- renderers
# kustomize and helm for source.kustomize / source.helm, built once from their Go modules into the
# cache (a no-op when present); the controller under test gets them as STOPLINE_KUSTOMIZE/STOPLINE_HELM.
renderers_up() {
  KUSTOMIZE="$("$REPO/hack/install-kustomize.sh" | tail -n 1)" || die "hack/install-kustomize.sh failed"
  HELM="$("$REPO/hack/install-helm.sh" | tail -n 1)" || die "hack/install-helm.sh failed"
  [[ -x "$KUSTOMIZE" && -x "$HELM" ]] || die "renderers missing after install: kustomize='$KUSTOMIZE' helm='$HELM'"
}

# ---------------------------------------------------------------- cluster
kc() { "$KUBECTL" --kubeconfig "$STATE/kubeconfig" --request-timeout=10s "$@"; }

cluster_ready() {
  [[ -n "$KUBECTL" && -x "$KUBECTL" && -f "$STATE/kubeconfig" ]] || return 1
  kc get --raw /readyz >/dev/null 2>&1
}

kwok_dir() { echo "$KWOK_WORKDIR/clusters/$CLUSTER"; }

# Every component kwokctl started is alive (kwokctl records their PIDs in its cluster dir).
kwok_components_alive() {
  local f pid n=0
  for f in "$(kwok_dir)"/pids/*.pid; do
    [[ -f "$f" ]] || continue
    pid="$(cat "$f")"
    pid_running "$pid" || return 1
    n=$((n + 1))
  done
  ((n >= 5))
}

# Anything kwokctl could not stop: kill by the PIDs it recorded (only if they run from this state dir).
kill_kwok_leftovers() {
  local f pid
  for f in "$(kwok_dir)"/pids/*.pid; do
    [[ -f "$f" ]] || continue
    pid="$(cat "$f")"
    if pid_running "$pid" && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$STATE"; then
      kill -KILL "$pid" || true
    fi
  done
}

# write_kwokctl_config BIN: the kwokctl config (local binaries + hack/kwok-stages.yaml) into
# kwokctl.yaml.next; `kwok_up` reuses a healthy cluster only when it was created from the same config.
write_kwokctl_config() {
  local bin="$1"
  mkdir -p "$STATE"
  {
    cat <<EOF
# Generated by hack/stack.sh: every binary is a local path, so kwokctl downloads nothing.
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  bindAddress: 127.0.0.1
  etcdBinary: $bin/etcd
  kubeApiserverBinary: $bin/kube-apiserver
  kubeControllerManagerBinary: $bin/kube-controller-manager
  kubeSchedulerBinary: $bin/kube-scheduler
  kwokControllerBinary: $bin/kwok
  kubectlBinary: $bin/kubectl
EOF
    if [[ "$PROFILE" == bench ]]; then
      # kube-controller-manager's defaults (--kube-api-qps=20, 5 concurrent Deployment syncs) make it
      # the bottleneck of a 500-Release run: ~3 rollouts/s for the whole cluster.
      cat <<EOF
componentsPatches:
- name: kube-controller-manager
  extraArgs:
  - {key: kube-api-qps, value: "100"}
  - {key: kube-api-burst, value: "200"}
  - {key: concurrent-deployment-syncs, value: "20"}
  - {key: concurrent-replicaset-syncs, value: "20"}
EOF
    fi
    printf -- '---\n'
    cat "$REPO/hack/kwok-stages.yaml"
  } >"$STATE/kwokctl.yaml.next"
}

# Whether a kwok cluster was created from the config this script writes now (true for kind).
kwok_config_current() {
  [[ "$BACKEND" == kwok ]] || return 0
  write_kwokctl_config "$("$REPO/hack/build-bins.sh" path)"
  if cmp -s "$STATE/kwokctl.yaml.next" "$STATE/kwokctl.yaml"; then
    rm -f "$STATE/kwokctl.yaml.next"
    return 0
  fi
  return 1
}

# Refuse to create a cluster whose plan downloads anything.
check_no_download() {
  local kwokctl="$1" plan="$LOGS/kwokctl-dry-run.log"
  KWOK_WORKDIR="$STATE/kwok-dry-run" "$kwokctl" -c "$STATE/kwokctl.yaml" --name "$CLUSTER" --dry-run \
    create cluster --kubeconfig '' >"$plan" 2>&1 || {
    show_log "$plan"
    die "kwokctl --dry-run create cluster failed"
  }
  rm -rf "$STATE/kwok-dry-run"
  if grep -E '^# Download ' "$plan" | grep -vE '^# Download /' >&2; then
    die "kwokctl would download the lines above; every *Binary in $STATE/kwokctl.yaml must be a local path"
  fi
  if grep -qiE 'https?://[^ ]*(releases|dl\.)' "$plan"; then
    die "kwokctl plan references a remote binary (see $plan)"
  fi
}

nodes_ready() {
  local n
  n="$(kc get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
    grep -c '^True$')" || return 1
  ((n >= NODES))
}

probe_deployment() {
  local image="${STOPLINE_E2E_PROBE_IMAGE:-registry.example/app:v1}"
  wait_until 60 kc -n default get serviceaccount default ||
    die "kube-controller-manager did not create the default ServiceAccount (see $(kwok_dir)/logs)"
  kc -n default apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: stopline-stack-probe, labels: {app.kubernetes.io/part-of: stopline-e2e}}
spec:
  replicas: 2
  selector: {matchLabels: {app: stopline-stack-probe}}
  template:
    metadata: {labels: {app: stopline-stack-probe}}
    spec:
      containers: [{name: app, image: $image}]
EOF
  kc -n default wait --for=condition=Available deployment/stopline-stack-probe --timeout=90s >/dev/null || {
    kc -n default get pods -o wide >&2 || true
    die "probe Deployment did not become Available (scheduler or kwok-controller not working; see $(kwok_dir)/logs)"
  }
  kc -n default delete deployment stopline-stack-probe --wait=false >/dev/null
}

kwok_up() {
  local bin kwokctl f
  bin="$("$REPO/hack/build-bins.sh" all | tail -n 1)" || die "hack/build-bins.sh failed: the Go-built binaries are missing"
  KUBECTL="$bin/kubectl"
  kwokctl="$bin/kwokctl"
  write_kwokctl_config "$bin"
  if cluster_ready && kwok_components_alive && nodes_ready; then
    if cmp -s "$STATE/kwokctl.yaml.next" "$STATE/kwokctl.yaml"; then
      rm -f "$STATE/kwokctl.yaml.next"
      log "cluster: reusing kwok cluster $CLUSTER"
      return 0
    fi
    log "cluster: kwok config changed (hack/kwok-stages.yaml or binaries); recreating $CLUSTER"
  fi
  mv "$STATE/kwokctl.yaml.next" "$STATE/kwokctl.yaml"
  if [[ -d "$(kwok_dir)" ]]; then
    # Recreate rather than `kwokctl start`: a restarted kwok-controller waits for the old node leases
    # (200 s) to expire before it manages pods again. A fresh cluster takes ~15 s.
    log "cluster: kwok cluster $CLUSTER is unhealthy; recreating it"
    "$kwokctl" --name "$CLUSTER" delete cluster --kubeconfig "$STATE/kubeconfig" >>"$LOGS/kwokctl.log" 2>&1 || true
    kill_kwok_leftovers
    rm -rf "$(kwok_dir)"
  fi
  check_no_download "$kwokctl"
  log "cluster: creating kwok cluster $CLUSTER (binaries from $bin)"
  "$kwokctl" -c "$STATE/kwokctl.yaml" --name "$CLUSTER" create cluster --kubeconfig '' --wait 2m \
    >>"$LOGS/kwokctl.log" 2>&1 || {
    show_log "$LOGS/kwokctl.log"
    for f in "$(kwok_dir)"/logs/*.log; do show_log "$f"; done
    die "kwokctl create cluster failed"
  }
  "$kwokctl" --name "$CLUSTER" get kubeconfig >"$STATE/kubeconfig.tmp" && mv "$STATE/kubeconfig.tmp" "$STATE/kubeconfig"
  wait_until 60 cluster_ready || die "kube-apiserver is not ready (see $(kwok_dir)/logs/kube-apiserver.log)"
  "$kwokctl" --name "$CLUSTER" scale node --replicas "$NODES" >>"$LOGS/kwokctl.log" 2>&1 || {
    show_log "$LOGS/kwokctl.log"
    die "kwokctl scale node failed"
  }
  wait_until 60 nodes_ready || die "$NODES fake nodes did not become Ready (see $(kwok_dir)/logs/kwok-controller.log)"
  probe_deployment
  echo "$PROFILE" >"$STATE/profile"
  log "cluster: ready ($NODES fake nodes, a Deployment became Available, profile $PROFILE)"
}

kind_up() {
  local kind
  if ! { command -v docker >/dev/null && docker info >/dev/null 2>&1; }; then
    die "backend kind needs a running Docker engine"
  fi
  kind="$(command -v kind || true)"
  if [[ -z "$kind" ]]; then
    kind="$CACHE/bin/kind-$KIND_VERSION/kind"
    if [[ ! -x "$kind" ]]; then
      command -v go >/dev/null || die "backend kind needs kind or Go to build it"
      log "building kind $KIND_VERSION"
      GOBIN="$(dirname "$kind")" go install "sigs.k8s.io/kind@$KIND_VERSION" || die "go install kind failed"
    fi
  fi
  KUBECTL="$(command -v kubectl || true)"
  if [[ -z "$KUBECTL" ]]; then
    KUBECTL="$("$REPO/hack/build-bins.sh" kubernetes | tail -n 1)/kubectl"
  fi
  if ! "$kind" get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    log "cluster: creating kind cluster $CLUSTER"
    printf 'kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes: [{role: control-plane}, {role: worker}]\n' \
      >"$STATE/kind.yaml"
    "$kind" create cluster --name "$CLUSTER" --config "$STATE/kind.yaml" --kubeconfig "$STATE/kubeconfig" \
      --wait 3m >>"$LOGS/kind.log" 2>&1 || {
      show_log "$LOGS/kind.log"
      die "kind create cluster failed"
    }
  fi
  "$kind" get kubeconfig --name "$CLUSTER" >"$STATE/kubeconfig"
  wait_until 120 cluster_ready || die "kind cluster $CLUSTER is not ready"
  NODES=2
  wait_until 120 nodes_ready || die "kind nodes did not become Ready"
}

cluster_down() {
  case "$BACKEND" in
    kwok)
      local kwokctl
      kwokctl="$("$REPO/hack/build-bins.sh" path)/kwokctl"
      if [[ -d "$(kwok_dir)" ]]; then
        if [[ -x "$kwokctl" ]]; then
          "$kwokctl" --name "$CLUSTER" delete cluster --kubeconfig "$STATE/kubeconfig" >>"$LOGS/kwokctl.log" 2>&1 || log "kwokctl delete cluster failed"
        fi
        kill_kwok_leftovers
      fi
      ;;
    kind)
      local kind
      kind="$(command -v kind || echo "$CACHE/bin/kind-$KIND_VERSION/kind")"
      if [[ -x "$kind" ]]; then "$kind" delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; fi
      ;;
  esac
}

# ---------------------------------------------------------------- exporter
exporter_healthy() {
  [[ -n "$EXPORTER_PORT" ]] && owned_alive exporter &&
    curl -fsS --max-time 2 "http://127.0.0.1:$EXPORTER_PORT/healthz" >/dev/null 2>&1
}

exporter_up() {
  if exporter_healthy; then
    log "exporter: reusing 127.0.0.1:$EXPORTER_PORT"
    return 0
  fi
  stop_daemon exporter
  if [[ -z "$EXPORTER_PORT" ]] || ! port_free "$EXPORTER_PORT"; then EXPORTER_PORT="$(free_port)"; fi
  start_daemon exporter "$PY" "$REPO/hack/exporter.py" --host 127.0.0.1 --port "$EXPORTER_PORT" \
    --port-file "$STATE/exporter.port"
  wait_until 15 exporter_healthy || {
    show_log "$LOGS/exporter.log"
    die "exporter did not start on 127.0.0.1:$EXPORTER_PORT"
  }
  log "exporter: started on 127.0.0.1:$EXPORTER_PORT"
}

# ---------------------------------------------------------------- prometheus
write_prometheus_config() {
  mkdir -p "$STATE/prometheus"
  cat >"$STATE/prometheus/prometheus.yml.tmp" <<EOF
# Generated by hack/stack.sh
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: stopline-e2e-exporter
    honor_labels: true
    static_configs:
      - targets: ['127.0.0.1:$EXPORTER_PORT']
EOF
  if cmp -s "$STATE/prometheus/prometheus.yml.tmp" "$STATE/prometheus/prometheus.yml"; then
    rm "$STATE/prometheus/prometheus.yml.tmp"
    return 1 # unchanged
  fi
  mv "$STATE/prometheus/prometheus.yml.tmp" "$STATE/prometheus/prometheus.yml"
}

prometheus_ready() {
  [[ -n "$PROM_PORT" ]] && owned_alive prometheus &&
    curl -fsS --max-time 2 "http://127.0.0.1:$PROM_PORT/-/ready" >/dev/null 2>&1
}

exporter_scraped() {
  curl -fsS --max-time 2 --get --data-urlencode 'query=up{job="stopline-e2e-exporter"} == 1' \
    "http://127.0.0.1:$PROM_PORT/api/v1/query" | grep -q '"value":\['
}

prometheus_up() {
  local changed=0
  write_prometheus_config && changed=1
  if prometheus_ready; then
    if ((changed)); then
      log "prometheus: config changed, reloading"
      curl -fsS --max-time 5 -X POST "http://127.0.0.1:$PROM_PORT/-/reload" >/dev/null || die "prometheus reload failed"
    else
      log "prometheus: reusing 127.0.0.1:$PROM_PORT"
    fi
  else
    stop_daemon prometheus
    if [[ -z "$PROM_PORT" ]] || ! port_free "$PROM_PORT"; then PROM_PORT="$(free_port)"; fi
    mkdir -p "$STATE/prometheus/data"
    start_daemon prometheus prometheus \
      --config.file="$STATE/prometheus/prometheus.yml" \
      --storage.tsdb.path="$STATE/prometheus/data" \
      --storage.tsdb.retention.time=1d \
      --web.listen-address="127.0.0.1:$PROM_PORT" \
      --web.enable-lifecycle
    wait_until 60 prometheus_ready || {
      show_log "$LOGS/prometheus.log"
      die "prometheus did not become ready on 127.0.0.1:$PROM_PORT"
    }
    log "prometheus: started on 127.0.0.1:$PROM_PORT"
  fi
  wait_until 30 exporter_scraped || {
    show_log "$LOGS/prometheus.log"
    die "prometheus is not scraping the exporter (up{job=\"stopline-e2e-exporter\"} != 1)"
  }
}

# ---------------------------------------------------------------- git
git_healthy() {
  [[ -n "$GIT_PORT" ]] && owned_alive git-daemon &&
    timeout 5 git ls-remote "git://127.0.0.1:$GIT_PORT/app.git" >/dev/null 2>&1
}

# Seed app.git: an example app whose deploy/ holds 4 Deployments.
seed_app_repo() {
  local repo="$GIT_BASE/app.git" work
  [[ -d "$repo" ]] && return 0
  mkdir -p "$GIT_BASE"
  git init -q --bare -b main "$repo.tmp"
  work="$(mktemp -d "$STATE/seed.XXXXXX")"
  git init -q -b main "$work"
  mkdir -p "$work/deploy"
  cat >"$work/README.md" <<'EOF'
# app
Example app for the stopline e2e stack. `deploy/` holds plain Deployment manifests.
EOF
  local name tier replicas
  for spec in web-canary:web:1 web:web:2 chat:chat:2 api:api:1; do
    IFS=: read -r name tier replicas <<<"$spec"
    cat >"$work/deploy/$name.yaml" <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: $name
  labels: {app: $name, tier: $tier}
spec:
  replicas: $replicas
  selector:
    matchLabels: {app: $name}
  template:
    metadata:
      labels: {app: $name, tier: $tier}
    spec:
      containers:
        - name: app
          image: registry.example/app:v1
          env: [{name: VERSION, value: v1}]
EOF
  done
  (
    cd "$work"
    git add -A
    GIT_AUTHOR_NAME=stopline-e2e GIT_AUTHOR_EMAIL=e2e@stopline.invalid \
      GIT_COMMITTER_NAME=stopline-e2e GIT_COMMITTER_EMAIL=e2e@stopline.invalid \
      git commit -q -m "app v1: web-canary, web, chat, api"
    git push -q "$repo.tmp" main
  )
  rm -rf "$work"
  mv "$repo.tmp" "$repo"
}

git_up() {
  seed_app_repo
  if git_healthy; then
    log "git: reusing git://127.0.0.1:$GIT_PORT"
    return 0
  fi
  stop_daemon git-daemon
  if [[ -z "$GIT_PORT" ]] || ! port_free "$GIT_PORT"; then GIT_PORT="$(free_port)"; fi
  # git-daemon itself, not the `git daemon` wrapper, so the recorded PID is the listening process.
  start_daemon git-daemon "$(git --exec-path)/git-daemon" --export-all --enable=receive-pack --reuseaddr --informative-errors \
    --base-path="$GIT_BASE" --listen=127.0.0.1 --port="$GIT_PORT" "$GIT_BASE"
  wait_until 15 git_healthy || {
    show_log "$LOGS/git-daemon.log"
    die "git daemon did not start on 127.0.0.1:$GIT_PORT"
  }
  log "git: started git://127.0.0.1:$GIT_PORT (base $GIT_BASE)"
}

# ---------------------------------------------------------------- commands
# Prints one line per part; returns non-zero when any is down.
check_all() {
  local bad=0
  if [[ ! -f "$STATE_FILE" ]]; then
    echo "stack: DOWN (no state in $STATE; run hack/stack.sh up)"
    return 1
  fi
  if cluster_ready && { [[ "$BACKEND" != kwok ]] || kwok_components_alive; }; then
    echo "cluster ($BACKEND): ok"
  else
    echo "cluster ($BACKEND): DOWN"
    bad=1
  fi
  if prometheus_ready; then echo "prometheus: ok (http://127.0.0.1:$PROM_PORT)"; else
    echo "prometheus: DOWN"
    bad=1
  fi
  if exporter_healthy; then echo "exporter: ok (http://127.0.0.1:$EXPORTER_PORT)"; else
    echo "exporter: DOWN"
    bad=1
  fi
  if git_healthy; then echo "git: ok (git://127.0.0.1:$GIT_PORT)"; else
    echo "git: DOWN"
    bad=1
  fi
  return $bad
}

print_env() {
  local line
  for line in \
    "KUBECONFIG=$STATE/kubeconfig" \
    "KUBECTL=$KUBECTL" \
    "PROMETHEUS_URL=http://127.0.0.1:$PROM_PORT" \
    "EXPORTER_URL=http://127.0.0.1:$EXPORTER_PORT" \
    "GIT_URL=git://127.0.0.1:$GIT_PORT" \
    "GIT_APP_URL=git://127.0.0.1:$GIT_PORT/app.git" \
    "GIT_BASE=$GIT_BASE" \
    "STOPLINE_KUSTOMIZE=$KUSTOMIZE" \
    "STOPLINE_HELM=$HELM" \
    "STOPLINE_E2E_BACKEND=$BACKEND" \
    "STOPLINE_STACK_DIR=$STATE"; do
    printf 'export %s=%q\n' "${line%%=*}" "${line#*=}"
  done
}

cmd_up() {
  local started=$SECONDS
  pick_python
  load_state
  renderers_up
  if [[ -n "$BACKEND" ]] && check_all >/dev/null 2>&1 && kwok_config_current; then
    save_state # a stack started before the renderers were part of it learns their paths
    if write_prometheus_config; then # this script's scrape config changed since the stack started
      curl -fsS --max-time 5 -X POST "http://127.0.0.1:$PROM_PORT/-/reload" >/dev/null || die "prometheus reload failed"
      log "prometheus: reloaded the new scrape config"
    fi
    log "stack already up in $STATE (reused)"
    return 0
  fi
  ensure_tools
  mkdir -p "$PIDS" "$LOGS"
  [[ -n "$BACKEND" ]] || choose_backend
  case "$BACKEND" in
    kwok) kwok_up ;;
    kind) kind_up ;;
  esac
  save_state
  exporter_up
  save_state
  prometheus_up
  save_state
  git_up
  save_state
  check_all >&2 || die "stack came up but a part is down (see above)"
  log "stack up in $((SECONDS - started))s; state in $STATE"
}

cmd_down() {
  pick_python
  load_state
  if [[ ! -d "$STATE" ]]; then
    log "nothing to stop ($STATE does not exist)"
    return 0
  fi
  stop_daemon git-daemon
  stop_daemon prometheus
  stop_daemon exporter
  [[ -n "$BACKEND" ]] && cluster_down
  rm -rf "$STATE"
  log "stack down; removed $STATE"
}

# One `up` or `down` at a time per state dir: parallel test workers (or a demo beside a test run) each
# call `up`; the first starts what is down, the others wait and then find everything healthy.
# flock -o: the lock is held by flock itself for the command's run and NOT inherited by the command,
# so the daemons `up` starts never hold it (they would block every later up/down for their lifetime).
serialized() {
  mkdir -p "$(dirname "$STATE")"
  flock -o "$STATE.lock" bash "${BASH_SOURCE[0]}" "$1"
}

case "${1:-}" in
  up) serialized __up ;;
  down) serialized __down ;;
  __up) cmd_up ;;
  __down) cmd_down ;;
  env)
    load_state
    [[ -f "$STATE_FILE" && -n "$PROM_PORT" && -n "$GIT_PORT" ]] || die "stack is not up in $STATE; run hack/stack.sh up"
    print_env
    ;;
  status)
    pick_python
    load_state
    check_all
    ;;
  *)
    echo "usage: $0 up|down|env|status" >&2
    exit 2
    ;;
esac
