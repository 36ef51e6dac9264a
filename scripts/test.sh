#!/usr/bin/env bash
# The test command: set up and build (scripts/setup.sh), then run every test
# with ctest. RETORT_SANITIZE=1 builds with ASan+UBSan into build-asan/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${RETORT_SANITIZE:-0}" = "1" ]; then
  bash scripts/setup.sh  # packages
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DRETORT_SANITIZE=ON -DRETORT_CUDA=OFF >/dev/null
  cmake --build build-asan -j"$(nproc)"
  cd build-asan
else
  bash scripts/setup.sh
  cd build
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ctest --output-on-failure -j"${RETORT_TEST_JOBS:-2}"
