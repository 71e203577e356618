#!/usr/bin/env bash
# Builds the same recipe against moto, through a proxy that adds latency to every EC2
# call, to 1 region and to 16 regions, side by side in one run. Prints the ratio
# time(16)/time(1) (goal: at most 1.3, the copies run in parallel) and the AWS calls per
# build (EC2, STS, KMS, SSM), in total and by action.
#
#   bench/aws-parallel/run.sh [latency-ms] [rounds]     (defaults: 50 ms, 3 rounds)
#
# Release build by default; BENCH_PROFILE=debug measures the debug build.
# BENCH_TIMELINE=1 also prints the first measured round's calls in order, with when each
# reached the proxy and when it was answered: where the regions wait for each other.
#
# The warm-up builds are judged by the IAM oracle; after them the proxy only records, so
# moto does bakery's calls and not the oracle's lookups.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
scripts/moto/setup.sh >/dev/null
export BAKERY_BENCH_LATENCY_MS="${1:-50}"
export BAKERY_BENCH_ROUNDS="${2:-3}"
profile=()
[ "${BENCH_PROFILE:-release}" = release ] && profile=(--release)
cargo test "${profile[@]}" --quiet --test it aws::bench_parallel_copies -- --ignored --nocapture 2>&1 \
    | grep -E '^(latency|build to|time\(|calls|timeline)'
