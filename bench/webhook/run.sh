#!/usr/bin/env bash
# Signed deliveries to `bakery serve` (SQLite store, every accepted delivery committed
# before the reply) against a bare axum endpoint that only answers 200, side by side in
# one run, then the same against bakery on PostgreSQL (127.0.0.1:5432, a database of its
# own, dropped after). Prints deliveries/s, p50 and p99 latency, the ratio bakery/bare for
# each store, and checks that every accepted delivery is in the store.
#   bench/webhook/run.sh [duration=15s] [connections=32]
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${1:-15s}
CONNECTIONS=${2:-32}
THREADS=2
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

cargo build --release --quiet --bin bakery --example bare_webhook
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release"
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
SECRET=bench-secret
python3 bench/webhook/gen_deliveries.py "$SECRET" 20000 "$WORK/deliveries.tsv" \
  tests/fixtures/node_modules/@octokit/webhooks-examples/api.github.com/index.json

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 1 100); do curl -s -o /dev/null "http://$1/" && return 0; sleep 0.1; done; echo "no server at $1" >&2; exit 1; }

BARE=127.0.0.1:$(port)
"$BIN/examples/bare_webhook" "$BARE" & wait_up "$BARE"

BAKERY=127.0.0.1:$(port)
(cd "$WORK" && BAKERY_LOG=warn BAKERY_LISTEN=$BAKERY BAKERY_WEBHOOK__SECRETS=$SECRET \
  BAKERY_WORKERS__CONCURRENCY=0 "$BIN/bakery" serve) & wait_up "$BAKERY"

run() { RUN=$RANDOM$RANDOM DELIVERIES="$WORK/deliveries.tsv" WRK_THREADS=$THREADS wrk -t$THREADS -c"$CONNECTIONS" -d"$DURATION" \
  -s bench/webhook/deliveries.lua "http://$1" | grep '^RESULT'; }

PGDB=bakery_bench_$$
psql -q -h 127.0.0.1 -U postgres -d test -c "CREATE DATABASE $PGDB" >/dev/null
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 0.5; psql -q -h 127.0.0.1 -U postgres -d test -c "DROP DATABASE IF EXISTS $PGDB" >/dev/null 2>&1; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/pg"
BAKERY_PG=127.0.0.1:$(port)
(cd "$WORK/pg" && BAKERY_LOG=warn BAKERY_LISTEN=$BAKERY_PG BAKERY_WEBHOOK__SECRETS=$SECRET \
  BAKERY_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$PGDB \
  BAKERY_WORKERS__CONCURRENCY=0 "$BIN/bakery" serve) & wait_up "$BAKERY_PG"

echo "warm-up"; run "$BARE" >/dev/null; run "$BAKERY" > "$WORK/bakery-warm"; run "$BAKERY_PG" > /dev/null
echo "bare:              $(run "$BARE" | tee "$WORK/bare")"
echo "bakery SQLite:     $(run "$BAKERY" | tee "$WORK/bakery")"
echo "bakery PostgreSQL: $(run "$BAKERY_PG" | tee "$WORK/bakery-pg")"
field() { sed -E "s/.*$2=([0-9.]+).*/\1/" "$WORK/$1"; }
# Every accepted delivery is attached to a job (a new one, or the job of the same tag).
stored=$(cd "$WORK" && "$BIN/bakery" jobs --format json | python3 -c 'import json,sys; print(sum(len(j["delivery_ids"]) for j in json.load(sys.stdin)))')
python3 - "$(field bare rps)" "$(field bakery rps)" "$(field bakery-pg rps)" <<PY
import sys
bare, bakery, pg = (float(a) for a in sys.argv[1:4])
print(f"deliveries/s  bare={bare:.0f}  bakery(SQLite)={bakery:.0f}  bakery(PostgreSQL)={pg:.0f}")
print(f"ratio bakery/bare = {bakery / bare:.2f} on SQLite (goal >= 0.3), {pg / bare:.2f} on PostgreSQL")
PY
accepted=$(( $(field bakery-warm accepted) + $(field bakery accepted) ))
echo "accepted by bakery: $accepted; deliveries in the store: $stored"
# wrk stops counting at the deadline: requests still in flight then are stored but not
# counted, so the store may hold a few more than were counted as accepted, never fewer.
[ "$stored" -ge "$accepted" ] && echo "every accepted delivery is stored" || { echo "MISMATCH: accepted deliveries missing from the store" >&2; exit 1; }
