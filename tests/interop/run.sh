#!/usr/bin/env bash
# Interop tests: every file retort writes, read by the real reader (PEFT,
# transformers, bitsandbytes, tokenizers, gguf-py, llama.cpp), numbers compared.
#   tests/interop/run.sh [pytest args...]     (from anywhere; retort must be built)
# Makes a virtual environment from the pinned tests/interop/requirements*.txt
# in $RETORT_CACHE (default ~/.cache/retort), one per set of pins, from wheels
# cached in $RETORT_CACHE/wheels: llama-cpp-python has no wheel on PyPI, so
# its sdist is built once here (CMAKE_ARGS below) and the wheel is cached.
# Then runs pytest on tests/interop/test_*.py and prints the table of checks
# (check, max error, tolerance). Skips, printing why, only when the wheels are
# not cached and PyPI cannot be reached.
# Environment: RETORT_BIN (default build/retort), RETORT_SHARED (../shared),
# RETORT_CACHE, PYTHON (python3), PIP_INDEX_URL (PyPI).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${RETORT_CACHE:-$HOME/.cache/retort}
wheels=$cache/wheels
py=${PYTHON:-python3}
index=${PIP_INDEX_URL:-https://pypi.org/simple}
export RETORT_BIN=${RETORT_BIN:-$root/build/retort}
export RETORT_SHARED=${RETORT_SHARED:-$root/../shared}
export RETORT_CACHE=$cache
export PYTHONDONTWRITEBYTECODE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false

[ -x "$RETORT_BIN" ] || { echo "interop: $RETORT_BIN not built (cmake --build build)" >&2; exit 2; }
reqs=("$here"/requirements*.txt)
pyver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
key=$(cat "${reqs[@]}" | sha256sum | cut -c1-12)
venv=$cache/venv-interop-py$pyver-$key
mkdir -p "$wheels"

# llama.cpp's CPU backend only, portable code (no -march=native, so a cached
# wheel runs on any x86-64), without its tools, tests, examples and llava.
export CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF \
-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"
export CMAKE_BUILD_PARALLEL_LEVEL=$(nproc)

pypi_reachable() {
  "$py" - "$index" <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1].rstrip("/") + "/pip/", timeout=20).read(1)
except Exception as e:
    print(e)
    sys.exit(1)
PY
}

fetch_wheels() { # everything pinned into $wheels; llama-cpp-python built once
  local pin t0
  pin=$(grep -h '^llama-cpp-python==' "${reqs[@]}" | head -1 || true)
  if [ -n "$pin" ] && ! ls "$wheels"/llama_cpp_python-"${pin#*==}"-*.whl >/dev/null 2>&1; then
    echo "interop: building $pin from its sdist (once; the wheel is cached in $wheels)"
    t0=$(date +%s)
    "$venv/bin/pip" wheel --quiet --no-deps --no-binary llama-cpp-python "$pin" -w "$wheels"
    echo "interop: built $pin in $(( $(date +%s) - t0 )) s"
  fi
  "$venv/bin/pip" download --quiet --find-links "$wheels" -d "$wheels" "${req_args[@]}"
}

if [ ! -f "$venv/.complete" ]; then
  t0=$(date +%s)
  rm -rf "$venv"
  "$py" -m venv "$venv"
  req_args=()
  for r in "${reqs[@]}"; do req_args+=(-r "$r"); done
  if ! "$venv/bin/pip" install --quiet --no-index --find-links "$wheels" "${req_args[@]}" 2>/dev/null; then
    if ! why=$(pypi_reachable); then
      echo "SKIP interop tests: the pinned wheels are not cached in $wheels and PyPI ($index) cannot be reached: $why"
      rm -rf "$venv"
      exit 0
    fi
    fetch_wheels
    "$venv/bin/pip" install --quiet --no-index --find-links "$wheels" "${req_args[@]}"
  fi
  touch "$venv/.complete"
  echo "interop: made $venv in $(( $(date +%s) - t0 )) s"
fi

# The llama-cpp-python sdist itself, kept for test_chat_templates.py (the real
# Hugging Face chat templates llama.cpp vendors); fetched once when PyPI answers.
sdist_pin=$(grep -h '^llama-cpp-python==' "${reqs[@]}" | head -1 || true)
if [ -n "$sdist_pin" ] && [ ! -f "$wheels/llama_cpp_python-${sdist_pin#*==}.tar.gz" ] && pypi_reachable >/dev/null; then
  "$venv/bin/pip" download --quiet --no-deps --no-binary :all: "$sdist_pin" -d "$wheels" ||
    echo "interop: could not fetch the $sdist_pin sdist (test_chat_templates.py will skip)"
fi

export RETORT_INTEROP_TABLE=${RETORT_INTEROP_TABLE:-$root/build/interop-table.txt}
cd "$root"
set +e
"$venv/bin/python" -m pytest -p no:cacheprovider -q -rs "$here" "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then
  # pytest's "no tests collected": fine when the caller's own selection
  # (-k, a node id) matched nothing, a failure when tests/interop has none.
  if [ $# -gt 0 ]; then echo "interop: no test matched: $*"; exit 0; fi
  echo "interop: no tests collected in $here" >&2
fi
exit $rc
