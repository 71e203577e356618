#!/usr/bin/env bash
# Installs what the qemu builder and its tests need on a Debian 12 machine, then builds the
# cached test guest (build-guest.sh). Idempotent; run as root.
#
# QEMU comes from bookworm-backports, qemu-system-x86 AND qemu-utils together: installing
# qemu-system-x86 from plain bookworm would replace a backported qemu-img with the older one
# (or remove it). Also: mmdebstrap and e2fsprogs (the test guest, without loop devices or
# mounts), dosfstools and mtools (the cloud-init seed disk bakery writes for every build),
# ovmf (UEFI firmware for `boot = "uefi"`), libvmdk-utils (vmdkinfo, a second reader of the exported VMDK in the tests).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PATH="/usr/local/sbin:/usr/sbin:/sbin:$PATH"

if [ "$(id -u)" != 0 ]; then
    echo "qemu/setup.sh: must run as root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive

backports=/etc/apt/sources.list.d/bakery-bookworm-backports.sources
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    cat > "$backports" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt-get update -q
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
from_backports() {
    # The candidate from backports, if bookworm-backports is what apt would install.
    dpkg-query -W -f='${Version}' "$1" 2>/dev/null | grep -q 'bpo12'
}

need_bpo=()
for pkg in qemu-system-x86 qemu-utils; do
    if ! installed "$pkg" || ! from_backports "$pkg"; then need_bpo+=("$pkg"); fi
done
if [ ${#need_bpo[@]} -gt 0 ]; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends -t bookworm-backports qemu-system-x86 qemu-utils
fi

need=()
for pkg in mmdebstrap e2fsprogs dosfstools mtools ovmf libvmdk-utils openssh-client; do
    installed "$pkg" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    apt-get install -y -q --no-install-recommends "${need[@]}"
fi

"$here/build-guest.sh"
