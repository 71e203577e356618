#!/usr/bin/env bash
# Forgets every resource moto holds.   reset.sh http://127.0.0.1:PORT
set -euo pipefail
curl -fsS -X POST "${1:?endpoint URL}/moto-api/reset" >/dev/null
