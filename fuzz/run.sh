#!/usr/bin/env bash
# Runs the recipe parser fuzz target for a while (default 600 s), seeded with the example
# recipes and the broken-recipe fixtures. Installs what it needs when missing: a nightly
# toolchain (rustup) and cargo-fuzz (crates.io). libFuzzer needs a C++ compiler (g++).
#
#   fuzz/run.sh [SECONDS]
set -euo pipefail

seconds="${1:-600}"
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

corpus="$here/corpus/recipe_parser"
mkdir -p "$corpus"
i=0
for f in "$repo"/recipes/*/recipe.toml "$repo"/tests/fixtures/recipes/*/recipes/*/recipe.toml; do
  i=$((i + 1))
  # A recipe, then bakery.toml, then a var file, split as the target splits them.
  { cat "$f"; printf '\n#---\n'; cat "$repo/bakery.toml"; printf '\n#---\ntools = ["a"]\n'; } >"$corpus/seed$i"
done

cd "$here"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target}"
cargo +nightly fuzz run recipe_parser "$corpus" -- \
  -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1
