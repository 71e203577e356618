#!/usr/bin/env bash
# Builds, once, the minimal Debian rootfs that sandboxed sshd instances run in.
#
#   scripts/sandbox/build-rootfs.sh        # prints the rootfs path
#
# The result is cached at $BAKERY_SANDBOX_DIR/rootfs-$ROOTFS_VERSION (see lib.sh) and
# reused until ROOTFS_VERSION changes. Safe to run concurrently: a lock serialises
# builders, and the rootfs appears under its final name only once complete.
#
# Contents: Debian bookworm (minbase) with openssh-server, sudo, python3, procps,
# ansible-core, and a `builder` user (uid 1000) with passwordless sudo, like `ubuntu` on EC2.
# ansible-core is there because the ansible step runs ansible-playbook on the builder; it
# adds 19 packages, a 6 MB download, 52 MB on disk and about 35 s to this one-time build.
# No SSH host keys are kept: each sandbox start generates its own.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/lib.sh"

if [ "$(id -u)" != 0 ]; then
    echo "build-rootfs.sh: must run as root (debootstrap, chroot)" >&2
    exit 1
fi
if [ -f "$ROOTFS_DIR/.bakery-rootfs-complete" ]; then
    echo "$ROOTFS_DIR"
    exit 0
fi
command -v debootstrap >/dev/null || {
    echo "build-rootfs.sh: debootstrap missing; run scripts/sandbox/setup.sh" >&2
    exit 1
}

mkdir -p "$BAKERY_SANDBOX_DIR"
exec 9>"$BAKERY_SANDBOX_DIR/build.lock"
flock 9
if [ -f "$ROOTFS_DIR/.bakery-rootfs-complete" ]; then
    echo "$ROOTFS_DIR"
    exit 0
fi

staging="$BAKERY_SANDBOX_DIR/staging-$ROOTFS_VERSION"
rm -rf "$staging"
mirror="$(sandbox_mirror)"
echo "build-rootfs.sh: debootstrap bookworm from $mirror into $staging" >&2
debootstrap --variant=minbase \
    --include=openssh-server,openssh-sftp-server,sudo,python3,procps,ca-certificates \
    bookworm "$staging" "$mirror" >&2

# Configure inside the rootfs. /proc is not needed for these commands.
chroot "$staging" /bin/sh -eu <<CHROOT
# ansible-core (for the ansible step, which runs ansible-playbook on the builder) goes in
# with apt rather than debootstrap's --include, whose one-pass configure cannot order its
# python dependencies.
apt-get update -q >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ansible-core >&2
useradd --create-home --uid $SANDBOX_UID --shell /bin/bash $SANDBOX_USER
# Not locked ('!'), no password: sshd without PAM refuses locked accounts.
usermod -p '*' $SANDBOX_USER
echo '$SANDBOX_USER ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/90-$SANDBOX_USER
chmod 0440 /etc/sudoers.d/90-$SANDBOX_USER
rm -f /etc/ssh/ssh_host_*
apt-get clean
rm -rf /var/lib/apt/lists/*
CHROOT

# sshd settings for the sandbox: no PAM (no login sessions in a chroot), keys only.
cat > "$staging/etc/ssh/sshd_config.d/10-bakery-sandbox.conf" <<'CONF'
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
PubkeyAuthentication yes
MaxStartups 100
MaxSessions 100
CONF
# A machine id to be truncated by sealing, as on a booted instance.
head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$staging/etc/machine-id"
echo >> "$staging/etc/machine-id"

echo "$ROOTFS_VERSION" > "$staging/.bakery-rootfs-complete"
rm -rf "$ROOTFS_DIR"
mv "$staging" "$ROOTFS_DIR"
echo "$ROOTFS_DIR"
