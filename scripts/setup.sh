#!/usr/bin/env bash
# Installs everything bakery and its tests need on a Debian 12 machine, idempotently:
# build tools and libraries, the test components (PostgreSQL, OpenSSH for the sandboxed
# builder, moto for AWS, GitHub's REST description and webhook examples). Ansible is not
# installed on this host: the ansible step runs it on the builder.
# Run as root (or with sudo available). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

log() { echo "==> $*"; }

# --build-only: just what building and running bakery needs (no test components).
BUILD_ONLY=0
[ "${1:-}" = "--build-only" ] && BUILD_ONLY=1

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: Rust is not installed. Install Rust 1.85 or newer with rustup, then run this again." >&2
  exit 1
fi

# Each line: a command that shows the need is met, and the Debian package that meets it.
# Commands, not package names, are checked: a machine may have Node.js, npm or a PostgreSQL
# client from elsewhere, and Debian's packages would conflict with those.
NEEDS=(
  "cc build-essential" "pkg-config pkg-config" "mold mold" "git git" "ssh openssh-client"
  "openssl openssl"
)
dpkg_needs=("libssl-dev")
if [ "$BUILD_ONLY" -eq 0 ]; then
  NEEDS+=(
    "curl curl" "pip3 python3-pip" "node nodejs" "npm npm"   # test tooling
    "gpg gnupg"                                              # signed tags in the tests
    "psql postgresql-client" "pg_ctlcluster postgresql"      # the multi-replica store engine
    "debootstrap debootstrap"                                # the sandboxed builder's rootfs
    "wrk wrk"                                                # benchmarks
  )
fi
missing=()
for need in "${NEEDS[@]}"; do
  set -- $need
  command -v "$1" >/dev/null 2>&1 || missing+=("$2")
done
for p in "${dpkg_needs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$BUILD_ONLY" -eq 1 ]; then
  log "build dependencies ready"
  exit 0
fi

# PostgreSQL on 127.0.0.1:5432 with a `test` database and trust auth for local tests.
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  log "starting PostgreSQL"
  cluster_version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
  if [ -n "$cluster_version" ]; then
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$cluster_version" main start || true
  fi
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
if ! psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1; then
  log "configuring PostgreSQL for local tests (trust on 127.0.0.1, database test)"
  hba=$(ls /etc/postgresql/*/main/pg_hba.conf | head -n1)
  if ! grep -q "bakery-tests" "$hba"; then
    # pg_hba.conf is first-match: the trust lines go on top.
    $SUDO sed -i '1i # bakery-tests: local test server\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main reload || true
  sleep 1
  su postgres -s /bin/sh -c "psql -q -c 'CREATE DATABASE test'" 2>/dev/null || true
fi

# The test components: moto (AWS), the sandboxed sshd's rootfs (with ansible-core), QEMU and its
# cached test guest (scripts/qemu/), and GitHub's
# REST description and webhook payload examples (pinned by tests/fixtures/package-lock.json),
# in-toto's attestation bindings that check the provenance statements (scripts/provenance/),
# Chromium for the dashboard's browser test (playwright-core comes with the npm fixtures),
# and the Kubernetes manifest validators (scripts/kubernetes/).
for part in scripts/moto/setup.sh scripts/sandbox/setup.sh scripts/github/setup.sh scripts/qemu/setup.sh \
    scripts/provenance/setup.sh scripts/browser/setup.sh scripts/kubernetes/setup.sh; do
  log "$part"
  bash "$part"
done

log "setup done"
