#!/usr/bin/env bash
# Brings every installed package up to date without prompts, keeping the image's own
# configuration files where a package ships a new version of one. Waits up to ten
# minutes for apt's lock, which unattended-upgrades may hold right after boot.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
apt() { apt-get -o DPkg::Lock::Timeout=600 "$@"; }

apt update
apt -y \
  -o Dpkg::Options::=--force-confdef \
  -o Dpkg::Options::=--force-confold \
  dist-upgrade
apt -y autoremove --purge
apt clean
