#!/usr/bin/env bash
# promtool for the dashboard PromQL unit test: Debian's prometheus package ships it (idempotent).
# The e2e stack (hack/stack.sh) installs the same package for its Prometheus.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/install-apt.sh" promtool prometheus
