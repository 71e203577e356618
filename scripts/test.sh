#!/usr/bin/env bash
# Sets up everything the tests need (idempotent), then runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Most tests wait on the components they start (moto, sshd, the bakery binary) rather
# than compute: a story uses a sixth of a core. Six at a time keep two cores busy.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-6}"
cargo test --locked --all-targets "$@"
