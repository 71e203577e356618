#!/usr/bin/env bash
# Installs what the dashboard's browser test needs: Debian's Chromium (apt), driven
# headless by playwright-core, which scripts/github/setup.sh installs with the other npm
# fixtures (pinned by tests/fixtures/package-lock.json). Playwright's own browser
# downloads are never used: the test points playwright-core at /usr/bin/chromium.
# Idempotent.
set -euo pipefail
if [[ -x /usr/bin/chromium ]]; then
    echo "scripts/browser/setup.sh: $(/usr/bin/chromium --version 2>/dev/null || echo chromium) is installed"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "scripts/browser/setup.sh: $(/usr/bin/chromium --version) installed"
