#!/usr/bin/env bash
# The main job, from a fresh machine: install and build (scripts/setup.sh),
# QLoRA-fine-tune stories260K on Moby-Dick with recipes/stories260k-qlora-mobydick.yaml,
# then show the held-out perplexity before and after and a generation with the adapter.
# Extra arguments are recipe overrides (e.g. max_steps=50).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SHARED=${RETORT_SHARED:-../shared}
OUT=out/stories260k-qlora-mobydick
build/retort finetune recipes/stories260k-qlora-mobydick.yaml \
  base_model="$SHARED/models/stories260K/stories260K.bin" \
  tokenizer="$SHARED/models/stories260K/tok512.bin" \
  datasets.0.path="$SHARED/data/moby-dick.txt" output_dir="$OUT" "$@"
echo
echo "held-out perplexity (metrics.jsonl):"
grep val_ppl "$OUT/metrics.jsonl" | sed -n '1p;$p'
echo
echo "generation with the adapter:"
build/retort generate --model "$SHARED/models/stories260K/stories260K.bin" \
  --tokenizer "$SHARED/models/stories260K/tok512.bin" --adapter "$OUT" \
  --prompt "Call me Ishmael." --max-new-tokens 80 --temperature 0.8 --seed 42
