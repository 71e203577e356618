#!/usr/bin/env bash
# Runs the recipe parser fuzz target for a while (default 600 s), seeded with the example
# recipes and the broken-recipe fixtures. Installs what it needs when missing: a nightly
# toolchain (rustup) and cargo-fuzz (crates.io). libFuzzer needs a C++ compiler (g++).
#
#   fuzz/run.sh [SECONDS] [TARGET]     TARGET: recipe_parser (default) or webhook_event
set -euo pipefail

seconds="${1:-600}"
target="${2:-recipe_parser}"
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"

if ! command -v c++ >/dev/null; then
  apt-get update && apt-get install -y g++
fi
if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

corpus="$here/corpus/$target"
mkdir -p "$corpus"
if [ "$target" = webhook_event ]; then
  # Seeds: GitHub's example payloads, each as "<event name>\n<body>".
  examples="$repo/tests/fixtures/node_modules/@octokit/webhooks-examples/api.github.com/index.json"
  python3 - "$examples" "$corpus" <<'PY'
import json, sys
for entry in json.load(open(sys.argv[1])):
    for i, ex in enumerate(entry["examples"]):
        open(f"{sys.argv[2]}/{entry['name']}-{i}", "w").write(entry["name"] + "\n" + json.dumps(ex))
PY
fi
i=0
[ "$target" = recipe_parser ] && for f in "$repo"/recipes/*/recipe.toml "$repo"/tests/fixtures/recipes/*/recipes/*/recipe.toml; do
  i=$((i + 1))
  # A recipe, then bakery.toml, then a var file, split as the target splits them.
  { cat "$f"; printf '\n#---\n'; cat "$repo/bakery.toml"; printf '\n#---\ntools = ["a"]\n'; } >"$corpus/seed$i"
done

cd "$here"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target}"
cargo +nightly fuzz run "$target" "$corpus" -- \
  -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1
