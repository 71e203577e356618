# Shared settings for the sandbox scripts. Sourced, not run.
#
# BAKERY_SANDBOX_DIR   where the cached rootfs lives (default /var/tmp/bakery-sandbox)
# ROOTFS_VERSION       names the rootfs recipe below; change it whenever the recipe in
#                      build-rootfs.sh changes, so every machine rebuilds its cache.

# chroot, debootstrap and friends live in sbin, which a non-login PATH may lack.
export PATH="/usr/local/sbin:/usr/sbin:/sbin:$PATH"

BAKERY_SANDBOX_DIR="${BAKERY_SANDBOX_DIR:-/var/tmp/bakery-sandbox}"
ROOTFS_VERSION="bookworm-4"
ROOTFS_DIR="$BAKERY_SANDBOX_DIR/rootfs-$ROOTFS_VERSION"
SANDBOX_USER="builder"
SANDBOX_UID=1000

# The Debian mirror: the one this machine's apt uses, else deb.debian.org.
sandbox_mirror() {
    if [ -n "${BAKERY_SANDBOX_MIRROR:-}" ]; then
        echo "$BAKERY_SANDBOX_MIRROR"
        return
    fi
    local url
    url=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ')
    echo "${url:-http://deb.debian.org/debian}"
}
