#!/usr/bin/env bash
# CPU time per steady training step by kind of kernel (GEMM, attention,
# cross-entropy, elementwise, optimizer, page faults), from perf. Writes the
# synthetic model (bench/make_synthetic) and runs `retort finetune` under
# `perf record --call-graph dwarf` (OpenBLAS kernels have no frame
# pointers: only DWARF unwinding sees which op called them); steps 2..STEPS are kept (bench/perf_step_split.py).
#
#   bash bench/kernel_times.sh [RETORT [SHAPE [SEQ [STEPS [ADAPTER]]]]]
#   bash bench/kernel_times.sh build/retort smollm2 512 3 lora   # the defaults
#
# Needs perf (Debian: linux-perf) and kernel.perf_event_paranoid <= 1 (or root).
set -euo pipefail
cd "$(dirname "$0")/.."
RETORT=${1:-build/retort} SHAPE=${2:-smollm2} SEQ=${3:-512} STEPS=${4:-3} ADAPTER=${5:-lora}
BUILD_DIR=${BUILD_DIR:-build} SHARED=${RETORT_SHARED:-../shared} FREQ=${FREQ:-99}
WORK=${WORK:-$(mktemp -d /tmp/retort-ktimes.XXXXXX)}
mkdir -p "$WORK"
export OMP_NUM_THREADS=${THREADS:-2} OPENBLAS_NUM_THREADS=${THREADS:-2} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
command -v perf >/dev/null || { echo "kernel_times: perf not found (apt-get install linux-perf)" >&2; exit 1; }
if [ ! -d "$WORK/$SHAPE" ]; then
  LINK_TXT=$BUILD_DIR/CMakeFiles/retort.dir/link.txt
  # shellcheck disable=SC2046,SC2086
  gcc -std=c11 -O2 -D_GNU_SOURCE -I. bench/make_synthetic.c "$BUILD_DIR/libretort_core.a" \
      $(grep -o -- '-Wl,-rpath,[^ ]*' "$LINK_TXT" || true) $(sed -e 's/.*libretort_core\.a//' "$LINK_TXT") \
      -o "$WORK/make_synthetic"
  args="--shape smollm2-135m"; [ "$SHAPE" = 15m ] && args="--shape 15m --max-pos 1024"
  # shellcheck disable=SC2086
  "$WORK/make_synthetic" "$WORK/$SHAPE" $args --tokenizer "$SHARED/tokenizers/llama2/tokenizer.bin" 2>/dev/null
  head -c 400000 "$SHARED/data/moby-dick.txt" | sed '$d' > "$WORK/text.txt"
fi
q=false; [ "$ADAPTER" = qlora ] && q=true
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
# its output lines stamped with CLOCK_MONOTONIC, perf's clock here too
perf record -q -k CLOCK_MONOTONIC -F "$FREQ" --call-graph dwarf,8192 -o "$WORK/perf.data" -- "$RETORT" finetune \
  recipes/stories260k-qlora-mobydick.yaml base_model="$WORK/$SHAPE" tokenizer="$WORK/$SHAPE" \
  datasets.0.path="$WORK/text.txt" adapter="$ADAPTER" load_in_4bit=$q lora_r=16 lora_alpha=32 \
  lora_dropout=0 gradient_checkpointing=false max_steps="$STEPS" micro_batch_size=4 sequence_len="$SEQ" \
  eval_steps=0 val_set_size=1 logging_steps=1 save_steps=0 output_dir="$WORK/out" 2>&1 \
  | python3 -c 'import sys, time
for l in sys.stdin: print("%.6f %s" % (time.monotonic(), l), end="", flush=True)' > "$WORK/steps.log"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
grep -E "step [0-9]+/|arena" "$WORK/steps.log" | cut -d' ' -f2- | sed 's/^/  /'
perf script -i "$WORK/perf.data" -F time,ip,sym,dso 2>/dev/null \
  | python3 bench/perf_step_split.py "$WORK/steps.log" 1 "$STEPS" "$FREQ"
