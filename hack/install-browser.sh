#!/usr/bin/env bash
# Headless Chromium for the status-page e2e test (Debian's chromium; idempotent).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-browser: chromium is missing and apt-get is not available; install Chromium" >&2
  exit 1
fi
echo "install-browser: installing Debian's chromium" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null
