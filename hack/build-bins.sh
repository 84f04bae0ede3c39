#!/usr/bin/env bash
# Build the local e2e control plane from Go modules, once, into a versioned cache directory.
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (k8s.io/kubernetes)
#   etcd                                                              (go.etcd.io/etcd/server/v3)
#   kwok, kwokctl                                                     (sigs.k8s.io/kwok)
# Idempotent: a second run with the same versions does nothing. Prints the bin directory.
set -euo pipefail

K8S_VERSION="${STOPLINE_K8S_VERSION:-v1.35.4}"
ETCD_VERSION="${STOPLINE_ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${STOPLINE_KWOK_VERSION:-v0.8.0}"
CACHE="${STOPLINE_CACHE:-$HOME/.cache/stopline}"
BIN="$CACHE/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION"
WANT=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok kwokctl)

log() { printf '[build-bins] %s\n' "$*" >&2; }

have_all() {
  local b
  for b in "${WANT[@]}"; do [[ -x "$BIN/$b" ]] || return 1; done
}

if have_all; then
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { log "Go is required to build the e2e stack (apt-get install golang or use the machine's Go)"; exit 1; }
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$BIN"
WORK="$CACHE/build"
mkdir -p "$WORK"

build_kubernetes() {
  [[ -x "$BIN/kube-apiserver" && -x "$BIN/kube-controller-manager" && -x "$BIN/kube-scheduler" && -x "$BIN/kubectl" ]] && return 0
  local dir="$WORK/k8s-$K8S_VERSION" minor gomod staging
  mkdir -p "$dir"
  minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local patch="${K8S_VERSION##*.}"
  log "kubernetes $K8S_VERSION: preparing throwaway module in $dir"
  (
    cd "$dir"
    [[ -f go.mod ]] || go mod init stopline.dev/e2e-k8s >/dev/null 2>&1
    gomod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    staging="$(grep -E '=> \./staging/' "$gomod" | awk '{print $1}' | sort -u)"
    go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
    for m in $staging; do
      go mod edit -replace="$m=$m@v0.$minor.$patch"
    done
    cat > tools.go <<GO
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
    go mod tidy -e >/dev/null 2>&1 || true
    local L="-s -w" p
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      L="$L -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    done
    log "kubernetes $K8S_VERSION: go build (cold: 15-30 min on 2 cores)"
    go build -trimpath -ldflags "$L" -o "$BIN/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
  )
}

build_etcd() {
  [[ -x "$BIN/etcd" ]] && return 0
  local dir="$WORK/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  log "etcd $ETCD_VERSION: building"
  (
    cd "$dir"
    [[ -f go.mod ]] || go mod init stopline.dev/e2e-etcd >/dev/null 2>&1
    go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    cat > tools.go <<GO
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
    go mod tidy -e >/dev/null 2>&1 || true
    go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
  )
}

build_kwok() {
  [[ -x "$BIN/kwok" && -x "$BIN/kwokctl" ]] && return 0
  log "kwok $KWOK_VERSION: building"
  GOBIN="$BIN" GOFLAGS= go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
}

case "${1:-all}" in
  all) build_etcd; build_kwok; build_kubernetes ;;
  etcd) build_etcd ;;
  kwok) build_kwok ;;
  kubernetes) build_kubernetes ;;
  path) echo "$BIN"; exit 0 ;;
  *) log "usage: $0 [all|etcd|kwok|kubernetes|path]"; exit 2 ;;
esac
have_all || { log "build incomplete in $BIN"; exit 1; }
log "done: $BIN"
echo "$BIN"
