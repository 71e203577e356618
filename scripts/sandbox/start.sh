#!/usr/bin/env bash
# Starts one sandboxed OpenSSH sshd and stays in the foreground until stopped.
#
#   scripts/sandbox/start.sh --dir DIR --port PORT --authorized-keys FILE [--owner-pid PID]
#
# DIR               a fresh, empty directory for this sandbox: the overlay's upper and
#                   work dirs and the merged mount point live there.
# PORT              sshd listens on 127.0.0.1:PORT (and nowhere else).
# FILE              public keys authorized for the `builder` user.
# --owner-pid PID   stop the sandbox when process PID exits (so a crashed test run leaves
#                   nothing behind).
#
# How it is isolated: the cached rootfs (build-rootfs.sh) is the lower layer of an overlay
# whose upper layer is DIR/upper, mounted in a private mount namespace; sshd runs chrooted
# into it as pid 1's child in a new pid (and uts) namespace, in a user namespace (uids mapped 1:1).
# Every write made over SSH, as root or not, lands in DIR/upper; the host's files are never
# touched. Host keys are generated at start, so each sandbox has its own.
#
# Stop it with SIGTERM/SIGINT to this script's pid: everything in the sandbox is killed and
# the mounts vanish with the namespace. DIR is left for the caller to inspect or remove.
# While it runs, the sandbox's file system is visible at /proc/<pid in DIR/init.pid>/root.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/lib.sh"

dir="" port="" keys="" owner=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) dir="$2"; shift 2 ;;
        --port) port="$2"; shift 2 ;;
        --authorized-keys) keys="$2"; shift 2 ;;
        --owner-pid) owner="$2"; shift 2 ;;
        *) echo "start.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ -z "$dir" ] || [ -z "$port" ] || [ -z "$keys" ]; then
    echo "usage: start.sh --dir DIR --port PORT --authorized-keys FILE [--owner-pid PID]" >&2
    exit 2
fi
if [ "$(id -u)" != 0 ]; then
    echo "start.sh: must run as root (namespaces, overlay mounts)" >&2
    exit 1
fi

rootfs="$("$here/build-rootfs.sh")"
dir="$(cd "$dir" && pwd)"
umask 022
mkdir -p "$dir/upper" "$dir/work" "$dir/merged"

# Seed the upper layer: pid 1, the fake reboot, the listen address, the build key.
install -D -m 0755 "$here/init.sh" "$dir/upper/usr/local/sbin/bakery-sandbox-init"
install -D -m 0755 "$here/reboot.sh" "$dir/upper/usr/local/sbin/reboot"
install -D -m 0644 /dev/null "$dir/upper/etc/ssh/sshd_config.d/20-bakery-sandbox-listen.conf"
printf 'ListenAddress 127.0.0.1:%s\n' "$port" > "$dir/upper/etc/ssh/sshd_config.d/20-bakery-sandbox-listen.conf"
install -D -m 0600 "$keys" "$dir/upper/etc/bakery-sandbox/authorized_keys"
echo bakery-sandbox > "$dir/upper/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tbakery-sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$dir/upper/etc/hosts"

fifo="$dir/mapped.fifo"
rm -f "$fifo"
mkfifo "$fifo"

# Stage 1 waits (without privileges) until the uid/gid maps are written, then execs
# stage 2, which gains root's capabilities inside the new user namespace.
unshare --user --mount --pid --uts --fork --kill-child --propagation private -- \
    /bin/sh -c 'read _ < "$1"; exec /bin/bash "$2" "$3" "$4"' sh \
    "$fifo" "$here/inside.sh" "$rootfs" "$dir" &
upid=$!

init=""
stop() {
    # Killing the sandbox's pid 1 kills everything in its pid namespace. (unshare's
    # --kill-child does not reach it: gaining capabilities on exec clears it.)
    [ -n "$init" ] && kill -KILL "$init" 2>/dev/null || true
    kill -KILL "$upid" 2>/dev/null || true
    wait "$upid" 2>/dev/null || true
    exit 0
}
trap stop TERM INT HUP

own_ns="$(readlink /proc/self/ns/user)"
for _ in $(seq 1 500); do
    ns="$(readlink "/proc/$upid/ns/user" 2>/dev/null || true)"
    [ -n "$ns" ] && [ "$ns" != "$own_ns" ] && break
    sleep 0.01
done
echo "0 0 65536" > "/proc/$upid/uid_map"
echo "0 0 65536" > "/proc/$upid/gid_map"
echo go > "$fifo"

# The sandbox's pid 1, as seen from here, for reading its file system via /proc.
for _ in $(seq 1 500); do
    init="$(cat "/proc/$upid/task/$upid/children" 2>/dev/null | awk '{print $1}')"
    [ -n "$init" ] && break
    sleep 0.01
done
echo "${init:-}" > "$dir/init.pid"

if [ -n "$owner" ]; then
    while kill -0 "$owner" 2>/dev/null && kill -0 "$upid" 2>/dev/null; do
        sleep 1 &
        wait $! || true
    done
    stop
fi
wait "$upid"
