#!/usr/bin/env bash
# Installs what bakery's SSH tests and the upload benchmark need on a fresh Debian 12
# machine, then builds the cached sandbox rootfs. Idempotent; run as root.
#
# Debian packages: debootstrap (builds the rootfs), openssh-client (ssh, scp and
# ssh-keygen, for the benchmark), util-linux (unshare), procps, python3. Ansible is not
# needed here: the ansible step runs ansible-playbook on the builder, and the rootfs
# carries ansible-core.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: must run as root" >&2
    exit 1
fi

need=()
pkgs=(debootstrap openssh-client util-linux procps python3)
for pkg in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${need[@]}"
fi

"$here/build-rootfs.sh"
