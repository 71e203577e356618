#!/usr/bin/env bash
# fsync count of one build: the story "1 recipe -> 3 regions" (its store is a SQLite file)
# against moto, under `strace -f -c -e trace=fsync,fdatasync`. Every process of the test is
# counted (bakery's store, the recording proxy, moto), so the figure is an upper bound on
# bakery's own.
#
#   bench/journal-fsync/run.sh
#
# Needs strace and scripts/moto/setup.sh.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
scripts/moto/setup.sh >/dev/null
bin="$(cargo test --quiet --test it --no-run --message-format=json \
    | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "it" and m.get("executable"):
        print(m["executable"])')"
strace -f -c -e trace=fsync,fdatasync -o /dev/stderr \
    "$bin" aws::a_build_to_three_regions_stays_within_its_aws_call_budget --exact --nocapture \
    2>&1 >/dev/null | grep -E 'calls|fsync|fdatasync|total'
