#!/usr/bin/env bash
# Runs as root of the sandbox's user namespace (see start.sh): mounts the overlay and a
# minimal /dev, /proc and /run, then becomes the sandbox's init inside the chroot.
#   inside.sh ROOTFS DIR
set -euo pipefail
export PATH="/usr/local/sbin:/usr/sbin:/sbin:$PATH"
rootfs="$1" dir="$2"
m="$dir/merged"

mount -t overlay overlay \
    -o "lowerdir=$rootfs,upperdir=$dir/upper,workdir=$dir/work,userxattr" "$m"
mount -t proc proc "$m/proc"
mount -t tmpfs -o mode=0755,size=64m tmpfs "$m/run"
mount -t tmpfs -o mode=0755,size=1m tmpfs "$m/dev"
# Only harmless device nodes are bound in; the host's disks stay out of reach.
for n in null zero full random urandom tty; do
    touch "$m/dev/$n"
    mount --bind "/dev/$n" "$m/dev/$n"
done
mkdir -p "$m/dev/pts" "$m/dev/shm"
mount -t tmpfs -o mode=1777,size=256m tmpfs "$m/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$m/dev/pts" 2>/dev/null || true
ln -sf pts/ptmx "$m/dev/ptmx"
ln -sf /proc/self/fd "$m/dev/fd"
ln -sf /proc/self/fd/0 "$m/dev/stdin"
ln -sf /proc/self/fd/1 "$m/dev/stdout"
ln -sf /proc/self/fd/2 "$m/dev/stderr"

hostname bakery-sandbox
cd "$m"
exec chroot "$m" /usr/local/sbin/bakery-sandbox-init
