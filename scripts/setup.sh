#!/usr/bin/env bash
# Installs retort's build dependencies (Debian/Ubuntu, as root or with sudo)
# and builds it into build/. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
PKGS="cmake make gcc g++ python3 python3-venv python3-pip libopenblas-openmp-dev libopenmpi-dev openmpi-bin libzstd-dev libyaml-dev libcjson-dev libpcre2-dev libunistring-dev zlib1g-dev clang libclang-rt-14-dev"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release ${RETORT_CMAKE_ARGS:-} >/dev/null
cmake --build build -j"$(nproc)"
