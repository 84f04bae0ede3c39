#!/usr/bin/env bash
# Build Helm 3 from its Go module, once, into a versioned cache directory; print the binary's path.
#   hack/install-helm.sh            -> ~/.cache/stopline/bin/helm-<version>/helm
# Idempotent: a second run with the same version builds nothing. The machine's Go is used as is
# (GOTOOLCHAIN=local); the build runs at the lowest CPU priority so it does not starve other work.
set -euo pipefail

HELM_VERSION="${STOPLINE_HELM_VERSION:-v3.22.0}"
CACHE="${STOPLINE_CACHE:-$HOME/.cache/stopline}"
BIN="$CACHE/bin/helm-$HELM_VERSION"
HELM="$BIN/helm"

log() { printf '[install-helm] %s\n' "$*" >&2; }

if [[ -x "$HELM" && -f "$BIN/.stamped-kube-version" ]] && "$HELM" version --short >/dev/null 2>&1; then
  echo "$HELM"
  exit 0
fi

command -v go >/dev/null || { log "Go is required to build helm (use the machine's Go or apt-get install golang)"; exit 1; }
export GOTOOLCHAIN=local CGO_ENABLED=0
mkdir -p "$BIN"
log "helm $HELM_VERSION: go install into $BIN (cold: several minutes on 2 cores)"
start=$SECONDS
# Helm's Makefile stamps the Kubernetes version it was built against (client-go v0.N -> 1.N) into the
# binary; without it `helm template` assumes Kubernetes 1.20 and rejects charts needing a newer one.
gomod="$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
k8s_minor="$(sed -n 's/^[[:space:]]*k8s\.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$gomod" | head -n1)"
[[ -n "$k8s_minor" ]] || { log "cannot read the client-go version from $gomod"; exit 1; }
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done
GOBIN="$BIN" nice -n 19 go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
"$HELM" version --short >/dev/null
echo "1.$k8s_minor" > "$BIN/.stamped-kube-version"
log "helm $HELM_VERSION: built in $((SECONDS - start))s"
echo "$HELM"
