#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# setup.sh — install every Debian package nearsock's build, tests, demo and benchmarks need.
# Idempotent: installs only what is missing. Needs root (or sudo) on a Debian 12 machine.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config clang libclang-rt-14-dev valgrind cppcheck clang-tidy
  iproute2 procps psmisc util-linux
  redis-server redis-tools iperf3 sockperf netpipe-tcp socat curl
  memcached libmemcached-tools nginx-light wrk python3 nodejs
  liblapacke-dev libopenblas-dev gnuplot-nox
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PKGS[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Services shipped by these packages must not start on install: the tests start their own instances.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
