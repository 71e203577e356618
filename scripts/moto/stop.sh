#!/usr/bin/env bash
# Stops the moto started by start.sh.   stop.sh [--state-dir DIR]
set -euo pipefail
state_dir=".bakery/moto"
[ "${1:-}" = "--state-dir" ] && state_dir="$2"
if [ -f "$state_dir/pid" ]; then
    kill "$(cat "$state_dir/pid")" 2>/dev/null || true
    rm -f "$state_dir/pid" "$state_dir/port"
fi
