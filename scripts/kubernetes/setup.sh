#!/usr/bin/env bash
# Installs the Kubernetes manifest validators the tests use on deploy/kubernetes/:
# kubernetes-validate (PyPI), which carries the Kubernetes API's JSON schemas itself, so
# validating needs no network, and the Prometheus Operator's typed models
# (cloudcoil-models-prometheus-operator) for the ServiceMonitor. Into a virtualenv (Debian 12's python refuses system-wide
# pip installs); scripts/kubernetes/python prints its interpreter.
# Idempotent: does nothing when the pinned version is there.
set -euo pipefail
venv="${BAKERY_K8S_VENV:-$HOME/.cache/bakery/k8s-venv}"
specs=("kubernetes-validate==1.37.0" "cloudcoil-models-prometheus-operator==0.80.1.0")

if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c '
import importlib.metadata as m, sys
sys.exit(not all(m.version(n) == v for n, v in (a.split("==") for a in sys.argv[1:])))' "${specs[@]}" 2>/dev/null; then
    echo "scripts/kubernetes/setup.sh: the validators are installed in $venv"
    exit 0
fi
. "$(dirname "${BASH_SOURCE[0]}")/../lib/venv.sh"
make_venv "$venv" "${specs[@]}"
echo "scripts/kubernetes/setup.sh: ${specs[*]} installed into $venv"
