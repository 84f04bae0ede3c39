#!/usr/bin/env bash
# install-apt.sh COMMAND PACKAGE...: install Debian PACKAGE(s) when COMMAND is missing (idempotent).
# Used for the tools the tests call: promtool (prometheus), node and npm (the cross-SDK check).
set -euo pipefail
cmd=$1
shift
if command -v "$cmd" >/dev/null 2>&1; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-apt: $cmd is missing and apt-get is not available; install: $*" >&2
  exit 1
fi
if [[ $(id -u) != 0 ]]; then
  echo "install-apt: $cmd is missing; run: sudo apt-get install -y --no-install-recommends $*" >&2
  exit 1
fi
echo "install-apt: installing Debian's $* (for $cmd)" >&2
apt-get -o DPkg::Lock::Timeout=300 update -qq
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "$@" >/dev/null
command -v "$cmd" >/dev/null
