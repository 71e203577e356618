#!/usr/bin/env bash
# Builds, once, the minimal Debian guest the qemu builder's tests boot.
#
#   scripts/qemu/build-guest.sh        # prints the guest's folder
#
# Cached at $BAKERY_QEMU_DIR/guest-<hash of this script> (default /var/tmp/bakery-qemu), so
# any change here rebuilds it. A lock serialises builders; the folder appears under its
# final name only once complete. No loop device and no mount: mmdebstrap writes a tree,
# `mke2fs -d` turns the tree into a filesystem image, and QEMU boots the kernel directly.
#
# The folder holds:
#   disk.qcow2   an ext4 filesystem (no partition table), root=/dev/vda
#   vmlinuz, initrd.img   Debian's cloud kernel and its initramfs
#   disk.sha256  the sha256 of disk.qcow2, as a recipe names it
#
# The guest: bookworm with systemd, the cloud kernel, openssh-server, sudo and
# systemd-networkd (DHCP on the user-mode network). In place of cloud-init, a small boot
# unit (bakery-seed) reads the NoCloud seed disk labelled CIDATA that bakery attaches: it
# creates the user named in user-data, installs its ssh_authorized_keys and generates
# missing SSH host keys before sshd starts. No host key and no machine id are kept.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PATH="/usr/local/sbin:/usr/sbin:/sbin:$PATH"

BAKERY_QEMU_DIR="${BAKERY_QEMU_DIR:-/var/tmp/bakery-qemu}"
key=$(sha256sum "$here/build-guest.sh" | cut -c1-12)
out="$BAKERY_QEMU_DIR/guest-$key"
if [ -f "$out/.complete" ]; then
    echo "$out"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "build-guest.sh: must run as root (mmdebstrap)" >&2
    exit 1
fi
mkdir -p "$BAKERY_QEMU_DIR"
exec 9>"$BAKERY_QEMU_DIR/build.lock"
flock 9
if [ -f "$out/.complete" ]; then
    echo "$out"
    exit 0
fi

staging="$BAKERY_QEMU_DIR/staging-$key"
rm -rf "$staging"
mkdir -p "$staging"
tree="$staging/tree"
mirror="${BAKERY_QEMU_MIRROR:-http://deb.debian.org/debian}"
echo "build-guest.sh: mmdebstrap bookworm from $mirror" >&2
mmdebstrap --variant=minbase --mode=root \
    --include=systemd-sysv,udev,linux-image-cloud-amd64,openssh-server,sudo,iproute2,procps,dosfstools,mtools \
    --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
    bookworm "$tree" "$mirror" >&2

mkdir -p "$tree/etc/systemd/network"
cat > "$tree/etc/systemd/network/10-dhcp.network" <<'NET'
[Match]
Name=en* eth*

[Network]
DHCP=yes
NET
ln -sf /lib/systemd/system/systemd-networkd.service \
    "$tree/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"

cat > "$tree/usr/local/sbin/bakery-seed" <<'SEED'
#!/bin/sh
# Reads the NoCloud seed disk (label CIDATA, vfat) without mounting it: the user and
# ssh_authorized_keys of the first entry in user-data's `users:`. Then host keys.
set -eu
export MTOOLS_SKIP_CHECK=1
# The seed disk is attached at boot; udev names it moments after the coldplug.
dev=""
for _ in $(seq 1 20); do
    dev=$(blkid -L CIDATA 2>/dev/null || blkid -L cidata 2>/dev/null || true)
    [ -n "$dev" ] && break
    sleep 0.5
done
if [ -n "$dev" ]; then
    data=$(mtype -i "$dev" ::user-data 2>/dev/null || true)
    user=$(printf '%s\n' "$data" | sed -n 's/^  - name: *//p' | head -n1)
    if [ -n "$user" ]; then
        id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$user"
        usermod -p '*' "$user"
        echo "$user ALL=(ALL) NOPASSWD:ALL" > "/etc/sudoers.d/90-$user"
        chmod 0440 "/etc/sudoers.d/90-$user"
        home=$(getent passwd "$user" | cut -d: -f6)
        install -d -m 0700 -o "$user" -g "$user" "$home/.ssh"
        printf '%s\n' "$data" | sed -n 's/^      - \(ssh-.*\)$/\1/p' > "$home/.ssh/authorized_keys"
        chown "$user:$user" "$home/.ssh/authorized_keys"
        chmod 0600 "$home/.ssh/authorized_keys"
    fi
fi
# One ed25519 host key: RSA key generation takes minutes under software emulation.
[ -f /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
SEED
chmod 0755 "$tree/usr/local/sbin/bakery-seed"
cat > "$tree/etc/systemd/system/bakery-seed.service" <<'UNIT'
[Unit]
Description=Read the NoCloud seed disk (user, SSH keys) and make SSH host keys
Before=ssh.service
After=systemd-udev-trigger.service local-fs.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/bakery-seed

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/bakery-seed.service \
    "$tree/etc/systemd/system/multi-user.target.wants/bakery-seed.service"
printf 'UseDNS no\nHostKey /etc/ssh/ssh_host_ed25519_key\n' > "$tree/etc/ssh/sshd_config.d/10-bakery-guest.conf"
printf '127.0.0.1 localhost\n127.0.1.1 bakery-guest\n' > "$tree/etc/hosts"
# Timers and scrubs that only slow an emulated boot.
for unit in e2scrub_reap.service e2scrub_all.timer apt-daily.timer apt-daily-upgrade.timer; do
    ln -sf /dev/null "$tree/etc/systemd/system/$unit"
done
echo '/dev/vda / ext4 defaults 0 1' > "$tree/etc/fstab"
echo 'bakery-guest' > "$tree/etc/hostname"
: > "$tree/etc/machine-id"
# The console needs no getty; the serial getty would only slow the boot.
rm -f "$tree/etc/systemd/system/getty.target.wants/"*
# Nothing waits for the network to be "online": sshd listens as soon as it starts.
rm -f "$tree/etc/systemd/system/network-online.target.wants/"*

cp -L "$tree/vmlinuz" "$staging/vmlinuz"
cp -L "$tree/initrd.img" "$staging/initrd.img"
rm -rf "$tree/var/cache/apt/archives/"*.deb "$tree/var/lib/apt/lists/"*
mke2fs -q -t ext4 -L root -d "$tree" "$staging/disk.raw" 1536M
qemu-img convert -O qcow2 "$staging/disk.raw" "$staging/disk.qcow2"
rm -rf "$staging/disk.raw" "$tree"
sha256sum "$staging/disk.qcow2" | cut -d' ' -f1 > "$staging/disk.sha256"
touch "$staging/.complete"
rm -rf "$out"
mv "$staging" "$out"
echo "$out"
