#!/usr/bin/env bash
# kubectl for the Kubernetes backend's manifest checks (`kubectl create --dry-run=client`).
# No service to start: the tests run an emulated API server (kmock) themselves. Idempotent:
# an installed kubectl is kept; otherwise Debian's `kubernetes-client` package provides it.
set -euo pipefail
if command -v kubectl >/dev/null 2>&1; then
    echo "kubectl present: $(command -v kubectl)"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 kubernetes-client >/dev/null
command -v kubectl
