#!/usr/bin/env bash
# Many builds at once in one `bakery serve` (release build), against moto behind the
# recording proxy with a fixed latency on every EC2 call, each build provisioning a
# sandboxed sshd builder of its own (the pool). A lone build runs first in the same
# server, so every figure comes from one run. Prints the server's peak RSS (goal
# < 120 MB), the p50/p99 time to completion of the N builds, the ratio slowest
# concurrent build / lone build (goal <= 1.5), and the AWS calls per second.
#
# It also prints where the cores went while the N builds ran: the machine's busy time,
# bakery serve's CPU time per build, moto's per call, the test's own process (the AWS
# proxy and the harness), and the rest (the builders); and the floors these set for
# slowest / lone whatever bakery does: moto's CPU time on its one core, and the machine's
# busy time spread over all its cores.
#
# The warm-up build's calls are judged by the IAM oracle; after it the proxy only
# records, so moto does bakery's calls and not the oracle's lookups.
#
#   bench/concurrent/run.sh [builds] [latency-ms]     (defaults: 50 builds, 50 ms)
#
# N builds need N + 2 sandboxes (two for the lone builds: a warm-up and the measured one).
#
# Needs what the stories need (scripts/setup.sh: moto, the sandbox rootfs, git).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
scripts/moto/setup.sh >/dev/null
export CONCURRENT_BENCH_BUILDS="${1:-50}"
export CONCURRENT_BENCH_LATENCY_MS="${2:-50}"
# BENCH_PROFILE=debug measures the debug build (no release compile; RSS is then higher).
profile=()
[ "${BENCH_PROFILE:-release}" = release ] && profile=(--release)
cargo test "${profile[@]}" --quiet --test it aws::concurrent::bench_concurrent_builds \
    -- --ignored --nocapture 2>&1 \
    | grep -E '^(sandboxes|builds at once|lone build|[0-9]+ builds|slowest|peak RSS|AWS calls|CPU while|floors)|panicked|FAILED'
