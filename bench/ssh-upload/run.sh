#!/usr/bin/env bash
# Upload time: bakery's file step against OpenSSH's `scp -O`, both sending the same
# 100 MB file to the same sandboxed sshd (scripts/sandbox/start.sh), alternating in one
# run so both see the same machine load, on four builders: with Python and openssl, without
# openssl, without Python (openssl hashes), and with neither (`sha256sum` hashes).
# Prints the time of each and the ratio bakery/scp for each builder (goal: at most 0.9).
#
#   bench/ssh-upload/run.sh [ROUNDS]        # default 5 rounds of each
#
# bakery's time covers connecting, the upload, the sha256 check on the builder and moving
# the file into place; scp's covers connecting and the upload. Needs root and
# scripts/sandbox/setup.sh. Builds examples/ssh_upload_bench with --release.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
rounds="${1:-5}"
size_mb=100

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
(cd "$root" && cargo build --quiet --release --example ssh_upload_bench)
bench_bin="$CARGO_TARGET_DIR/release/examples/ssh_upload_bench"

work="$(mktemp -d /tmp/bakery-bench.XXXXXX)"
sandbox_pid=""
cleanup() {
    if [ -n "$sandbox_pid" ]; then
        kill -TERM "$sandbox_pid" 2>/dev/null || true
        wait "$sandbox_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

ssh-keygen -q -t ed25519 -N '' -f "$work/key"
mkdir -p "$work/repo" "$work/sb"
head -c "$((size_mb * 1000 * 1000))" /dev/urandom > "$work/repo/payload.bin"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

"$root/scripts/sandbox/start.sh" --dir "$work/sb" --port "$port" \
    --authorized-keys "$work/key.pub" --owner-pid $$ > "$work/sandbox.log" 2>&1 &
sandbox_pid=$!
for _ in $(seq 1 1200); do
    grep -q "Server listening on 127.0.0.1 port $port" "$work/sandbox.log" && break
    sleep 0.1
done
grep -q "Server listening" "$work/sandbox.log" || { cat "$work/sandbox.log" >&2; exit 1; }

common=(-i "$work/key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
    -o BatchMode=yes -o LogLevel=error)
scp_opts=(-O -q -P "$port" "${common[@]}")
ssh_cmd=(ssh -p "$port" "${common[@]}" builder@127.0.0.1)
inside="/proc/$(cat "$work/sb/init.pid")/root"

now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }
# One pass of $rounds rounds, alternating bakery and scp; prints the ratio of the totals.
pass() {
    local label="$1" bakery_total=0 scp_total=0 r t0 t1 t2 b s
    echo "builder $label"
    echo "round  bakery(s)  scp -O(s)"
    for r in $(seq 1 "$rounds"); do
        t0="$(now)"
        "$bench_bin" 127.0.0.1 "$port" builder "$work/key" "$work/repo" payload.bin \
            "/home/builder/bakery-$r.bin" > /dev/null
        t1="$(now)"
        scp "${scp_opts[@]}" "$work/repo/payload.bin" "builder@127.0.0.1:/home/builder/scp-$r.bin"
        t2="$(now)"
        b="$(calc "$t1 - $t0")"
        s="$(calc "$t2 - $t1")"
        printf '%5d  %9.3f  %9.3f\n' "$r" "$b" "$s"
        bakery_total="$(calc "$bakery_total + $b")"
        scp_total="$(calc "$scp_total + $s")"
        # Keep the sandbox's disk use flat.
        "${ssh_cmd[@]}" rm -f "bakery-$r.bin" "scp-$r.bin"
    done
    printf 'builder %s: bakery %.3f s, scp -O %.3f s per upload; ratio bakery/scp: %.2f (goal <= 0.9)\n' \
        "$label" "$(calc "$bakery_total / $rounds")" "$(calc "$scp_total / $rounds")" \
        "$(calc "$bakery_total / $scp_total")"
}

# Both copies must be whole before a speed means anything.
want="$(sha256sum < "$work/repo/payload.bin" | cut -d' ' -f1)"
"$bench_bin" 127.0.0.1 "$port" builder "$work/key" "$work/repo" payload.bin /home/builder/check-bakery.bin > /dev/null
scp "${scp_opts[@]}" "$work/repo/payload.bin" builder@127.0.0.1:/home/builder/check-scp.bin
for f in check-bakery.bin check-scp.bin; do
    got="$(sha256sum < "$inside/home/builder/$f" | cut -d' ' -f1)"
    [ "$got" = "$want" ] || { echo "corrupt upload: $f" >&2; exit 1; }
done

pass "with Python and openssl (one Python process receives)"
# The same builder without openssl: Python still receives. The sandbox's root is an
# overlay of its own, so hiding a binary touches no other sandbox.
hide() { mv "$inside/usr/bin/$1" "$inside/usr/bin/$1.hidden"
    "${ssh_cmd[@]}" "command -v $1" >/dev/null && { echo "$1 still found" >&2; exit 1; }; true; }
unhide() { mv "$inside/usr/bin/$1.hidden" "$inside/usr/bin/$1"; }
hide openssl
pass "without openssl (one Python process receives)"
# Without Python, with openssl: tee writes the file and feeds openssl.
unhide openssl
hide python3
pass "without Python (tee and openssl)"
# Neither: tee and coreutils' sha256sum.
hide openssl
pass "with only sha256sum (tee and sha256sum)"
