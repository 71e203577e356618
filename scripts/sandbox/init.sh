#!/bin/sh
# pid 1 of a bakery sshd sandbox (installed by start.sh as
# /usr/local/sbin/bakery-sandbox-init). Generates missing host keys, installs the
# authorized build key, then keeps sshd running: when sshd exits (the fake `reboot`
# kills it), it comes back after a short pause, like a machine coming back up.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

if [ -f /etc/bakery-sandbox/authorized_keys ]; then
    install -d -o builder -g builder -m 0700 /home/builder/.ssh
    install -o builder -g builder -m 0600 /etc/bakery-sandbox/authorized_keys \
        /home/builder/.ssh/authorized_keys
    rm -f /etc/bakery-sandbox/authorized_keys
fi
mkdir -p /run/sshd
chmod 0755 /run/sshd

sshd_pid=""
trap 'kill -TERM $sshd_pid 2>/dev/null; exit 0' TERM INT
while :; do
    ssh-keygen -A >/dev/null
    /usr/sbin/sshd -D -e &
    sshd_pid=$!
    wait "$sshd_pid"
    sleep 1
done
