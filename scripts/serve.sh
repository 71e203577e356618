#!/usr/bin/env bash
# Installs what bakery needs, then starts `bakery serve` on the embedded SQLite store
# (.bakery/bakery.db). A webhook secret is generated on first run into
# .bakery/webhook-secret (mode 0600): paste it into the GitHub App or webhook settings.
# The key that signs job page links is generated the same way into .bakery/job-page-key.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --build-only
mkdir -p .bakery
if [ ! -s .bakery/webhook-secret ]; then
  (umask 077; openssl rand -hex 32 > .bakery/webhook-secret)
  echo "==> generated a webhook secret in .bakery/webhook-secret"
fi
if [ ! -s .bakery/job-page-key ]; then
  (umask 077; openssl rand -hex 32 > .bakery/job-page-key)
  echo "==> generated a job page link key in .bakery/job-page-key"
fi
export BAKERY_JOB_PAGES__KEY_FILE="${BAKERY_JOB_PAGES__KEY_FILE:-$PWD/.bakery/job-page-key}"
export BAKERY_WEBHOOK__SECRET_FILES="${BAKERY_WEBHOOK__SECRET_FILES:-$PWD/.bakery/webhook-secret}"
exec cargo run --quiet --bin bakery -- serve "$@"
