#!/usr/bin/env bash
# Installs moto's server mode (the local EC2/STS/KMS API the AWS tests run against).
# Idempotent: does nothing when a usable moto is already there.
#
# moto goes into a virtualenv (Debian 12's python refuses system-wide pip installs);
# scripts/moto/python prints the interpreter the other scripts use.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${BAKERY_MOTO_VENV:-$HOME/.cache/bakery/moto-venv}"
moto_spec="${BAKERY_MOTO_SPEC:-moto[server]>=5.1,<6}"

usable() {
    "$1" -c 'import moto, moto.server, werkzeug, cryptography' >/dev/null 2>&1
}

if py="$("$here/python" 2>/dev/null)" && usable "$py"; then
    echo "moto is installed ($("$py" -c 'import moto; print(moto.__version__)')) for $py"
    exit 0
fi

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq python3 python3-venv python3-pip
    else
        echo "python3 with the venv module is needed: install python3-venv" >&2
        exit 1
    fi
fi

python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet "$moto_spec"
usable "$venv/bin/python" || { echo "moto was installed into $venv but does not import" >&2; exit 1; }
echo "moto $("$venv/bin/python" -c 'import moto; print(moto.__version__)') installed into $venv"
