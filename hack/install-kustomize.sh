#!/usr/bin/env bash
# Build kustomize from its Go module, once, into a versioned cache directory; print the binary's path.
#   hack/install-kustomize.sh       -> ~/.cache/stopline/bin/kustomize-<version>/kustomize
# Idempotent: a second run with the same version builds nothing. The machine's Go is used as is
# (GOTOOLCHAIN=local); the build runs at the lowest CPU priority so it does not starve other work.
# v5.8.2 is the newest release whose go.mod accepts Go 1.26 (v5.8.3 needs Go 1.27).
set -euo pipefail

KUSTOMIZE_VERSION="${STOPLINE_KUSTOMIZE_VERSION:-v5.8.2}"
CACHE="${STOPLINE_CACHE:-$HOME/.cache/stopline}"
BIN="$CACHE/bin/kustomize-$KUSTOMIZE_VERSION"
KUSTOMIZE="$BIN/kustomize"

log() { printf '[install-kustomize] %s\n' "$*" >&2; }

if [[ -x "$KUSTOMIZE" ]] && "$KUSTOMIZE" version >/dev/null 2>&1; then
  echo "$KUSTOMIZE"
  exit 0
fi

command -v go >/dev/null || { log "Go is required to build kustomize (use the machine's Go or apt-get install golang)"; exit 1; }
export GOTOOLCHAIN=local CGO_ENABLED=0
mkdir -p "$BIN"
log "kustomize $KUSTOMIZE_VERSION: go install into $BIN (cold: a few minutes on 2 cores)"
start=$SECONDS
# kustomize's release build stamps its version here; without it `kustomize version` prints "(devel)".
ldflags="-s -w -X sigs.k8s.io/kustomize/api/provenance.version=kustomize/$KUSTOMIZE_VERSION"
# Build into a temporary directory and move into place, so an interrupted build never leaves a
# half-written binary that a later run would take for a finished one.
tmp="$(mktemp -d "$BIN/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" nice -n 19 go install -trimpath -ldflags "$ldflags" \
  "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
"$tmp/kustomize" version >/dev/null
mv -f "$tmp/kustomize" "$KUSTOMIZE"
log "kustomize $KUSTOMIZE_VERSION: built in $((SECONDS - start))s"
echo "$KUSTOMIZE"
