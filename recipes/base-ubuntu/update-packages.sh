#!/usr/bin/env bash
# Brings every installed package up to date without prompts, keeping the image's own
# configuration files where a package ships a new version of one.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

apt-get update
apt-get -y \
  -o Dpkg::Options::=--force-confdef \
  -o Dpkg::Options::=--force-confold \
  dist-upgrade
apt-get -y autoremove --purge
apt-get clean
