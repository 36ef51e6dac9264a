#!/usr/bin/env bash
# Data-parallel benchmark on the CPU (issue: data-parallel training).
#  1. Weak scaling: the main recipe with the same micro-batch per rank, 1 rank
#     vs 2 ranks (mpirun), OMP_NUM_THREADS=1 per rank so 2 ranks use 2 cores.
#     Reports tokens/s per rank and the scaling efficiency (per-rank tokens/s
#     at 2 ranks / at 1 rank).
#  2. Bytes all-reduced per optimizer step (the flat f32 gradient buffer) for
#     LoRA (r=8, all linear layers) vs full fine-tuning of the stories15M shape.
# Run from the repository root after scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${RETORT_SHARED:-../shared}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
STEPS=${STEPS:-30}
OUT=$(mktemp -d)
ARGS="base_model=$SHARED/models/stories260K/stories260K.bin tokenizer=$SHARED/models/stories260K/tok512.bin
 datasets.0.path=$SHARED/data/moby-dick.txt max_steps=$STEPS eval_steps=0 val_set_size=8
 micro_batch_size=8 gradient_accumulation_steps=1 logging_steps=1000"

rate() { sed -n 's/.*steps in \([0-9.]*\) s (\([0-9]*\) tokens\/s).*/\2/p' "$1"; }

OMP_NUM_THREADS=1 build/retort finetune recipes/stories260k-qlora-mobydick.yaml $ARGS output_dir=$OUT/r1 > $OUT/r1.log
OMP_NUM_THREADS=1 mpirun -np 2 --oversubscribe -x OMP_NUM_THREADS build/retort finetune \
  recipes/stories260k-qlora-mobydick.yaml $ARGS output_dir=$OUT/r2 > $OUT/r2.log
r1=$(rate $OUT/r1.log); r2=$(rate $OUT/r2.log)
echo "| ranks | global tokens/s | tokens/s per rank | efficiency |"
echo "|---|---|---|---|"
echo "| 1 | $r1 | $r1 | 1.00 |"
awk -v a="$r1" -v b="$r2" 'BEGIN { printf "| 2 | %d | %d | %.2f |\n", b, b / 2, (b / 2) / a }'
echo
# stories15M shape: D=288, L=6, H=Hkv=6, F=768, V=32000 (tied embeddings).
awk 'BEGIN {
  D = 288; F = 768; L = 6; V = 32000; r = 8
  lora = L * r * (4 * (D + D) + 2 * (D + F) + (F + D))
  full = V * D + D + L * (4 * D * D + 3 * D * F + 2 * D)
  printf "| stories15M shape | trainable parameters | bytes all-reduced per step |\n|---|---|---|\n"
  printf "| LoRA r=8, all linear | %d | %.2f MB |\n", lora, lora * 4 / 1e6
  printf "| full fine-tuning | %d | %.2f MB |\n", full, full * 4 / 1e6
}'
rm -rf "$OUT"
