#!/usr/bin/env bash
# Runs moto's server in the foreground on 127.0.0.1.
#   run.sh [--port N] [--port-file PATH]
# Port 0 (the default) picks a free port; the chosen port is written to --port-file once
# the server accepts connections. Tests start moto this way and own the process.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="$("$here/python")"
exec "$py" "$here/server.py" "$@"
