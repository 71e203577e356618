#!/usr/bin/env bash
# Starts moto in the background on 127.0.0.1 and waits until it answers.
#   start.sh [--port N] [--state-dir DIR]
# Prints the endpoint URL. The pid and port are kept in DIR (default .bakery/moto) for stop.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
port=0
state_dir=".bakery/moto"
while [ $# -gt 0 ]; do
    case "$1" in
        --port) port="$2"; shift 2 ;;
        --state-dir) state_dir="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
mkdir -p "$state_dir"
if [ -f "$state_dir/pid" ] && kill -0 "$(cat "$state_dir/pid")" 2>/dev/null; then
    echo "http://127.0.0.1:$(cat "$state_dir/port")"
    exit 0
fi
rm -f "$state_dir/port"
nohup "$here/run.sh" --port "$port" --port-file "$state_dir/port" >"$state_dir/moto.log" 2>&1 &
echo $! >"$state_dir/pid"
for _ in $(seq 1 300); do
    if [ -s "$state_dir/port" ]; then
        echo "http://127.0.0.1:$(cat "$state_dir/port")"
        exit 0
    fi
    if ! kill -0 "$(cat "$state_dir/pid")" 2>/dev/null; then
        echo "moto exited; its log:" >&2
        cat "$state_dir/moto.log" >&2
        exit 1
    fi
    sleep 0.2
done
echo "moto did not start within 60s; see $state_dir/moto.log" >&2
exit 1
