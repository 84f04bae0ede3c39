#!/usr/bin/env bash
# promtool for the dashboard PromQL unit test: Debian's prometheus package ships it (idempotent).
# The e2e stack (hack/stack.sh) installs the same package for its Prometheus.
set -euo pipefail
if command -v promtool >/dev/null 2>&1; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-promtool: promtool is missing and apt-get is not available; install Prometheus' promtool" >&2
  exit 1
fi
if [[ $(id -u) != 0 ]]; then
  echo "install-promtool: promtool is missing; run: sudo apt-get install -y --no-install-recommends prometheus" >&2
  exit 1
fi
echo "install-promtool: installing Debian's prometheus (for promtool)" >&2
apt-get -o DPkg::Lock::Timeout=300 update -qq
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends prometheus >/dev/null
command -v promtool >/dev/null
