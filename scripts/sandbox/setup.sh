#!/usr/bin/env bash
# Installs what bakery's SSH tests and the upload benchmark need on a fresh Debian 12
# machine, then builds the cached sandbox rootfs. Idempotent; run as root.
#
# Debian packages: debootstrap (builds the rootfs), openssh-client (scp and ssh-keygen,
# for the benchmark and tests), util-linux (unshare), procps, python3, python3-pip.
# PyPI: ansible-core (ansible-playbook, for the ansible step), unless ansible-playbook is
# already on PATH.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: must run as root" >&2
    exit 1
fi

need=()
for pkg in debootstrap openssh-client util-linux procps python3 python3-pip; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${need[@]}"
fi

if ! command -v ansible-playbook >/dev/null 2>&1; then
    # Debian's python is externally managed; pip needs to be told it may install there.
    python3 -m pip install -q ansible-core 2>/dev/null \
        || python3 -m pip install -q --break-system-packages ansible-core
fi
ansible-playbook --version | head -n1

"$here/build-rootfs.sh"
