#!/bin/sh
# A stand-in for `reboot` inside a bakery sshd sandbox: drops every SSH connection (and
# with it the command that called this) by killing all sshd processes. The sandbox's
# init starts sshd again after a pause, as a rebooted machine would come back.
if [ "$(id -u)" != 0 ]; then
    echo "reboot: must be root" >&2
    exit 1
fi
sync
pkill -KILL -x sshd
