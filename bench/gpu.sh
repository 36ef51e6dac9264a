#!/usr/bin/env bash
# retort GPU check + benchmarks, in ONE command on a machine with an NVIDIA GPU
# (written for an H100 / sm_90; about 6-9 minutes in all, each step time-boxed):
#
#   bash bench/gpu.sh
#
#   1. configure + build with CUDA (-DCMAKE_CUDA_ARCHITECTURES=90) into $BUILD_DIR
#   2. build/test_ops: CPU rows, then its GPU-vs-CPU section (every op forward and
#      gradient on the GPU against the CPU, 1e-4 / 1e-3 relative)
#   3. compute-sanitizer --tool memcheck on test_ops (out-of-bounds / misaligned
#      accesses, bad frees, launch errors), then racecheck (shared-memory races:
#      the attention and kd kernels stage tiles in shared memory)
#   4. the other ctest programs (CPU-side; catches a broken CUDA build's link/init),
#      then bench/gpu_kernels.c: every CUDA kernel against the CPU one at realistic
#      shapes (several attention tiles, V = 32000, NF4 rows...) and kernel timings
#      at Llama-3.2-1B shapes
#   5. retort on the GPU: eval tokens/s and fine-tuning tokens/s + peak GPU memory
#      (stories260K QLoRA recipe; synthetic stories15M shape, QLoRA and LoRA)
#   6. the PyTorch + PEFT peer (bench/peer_peft.py) at the same and at larger
#      shapes, eager and torch.compile -- only if python3 can import torch + peft
#
# Everything is logged under $LOG_DIR (default $OUT/gpu-bench when $OUT is set,
# else /tmp/retort-gpu-bench) and a markdown summary is printed at the end and
# written to $LOG_DIR/summary.md. The script goes on after a failed step and
# exits 1 at the end if any check (steps 1-4) failed.
#
# Environment (defaults in brackets):
#   BUILD_DIR [build-gpu]   CUDA_ARCH [90]   JOBS [nproc]
#   RETORT_SHARED [../shared]      models, tokenizers and text
#   STEPS [20]              optimizer steps per retort fine-tuning run
#   SKIP_SANITIZER [0]      1: skip step 3      SKIP_PEER [0]  1: skip step 6
#   PEER_STEPS [10]         timed steps per PEFT configuration
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

BUILD_DIR=${BUILD_DIR:-build-gpu}
CUDA_ARCH=${CUDA_ARCH:-90}
JOBS=${JOBS:-$(nproc)}
SHARED=${RETORT_SHARED:-../shared}
STEPS=${STEPS:-20}
PEER_STEPS=${PEER_STEPS:-10}
if [ -n "${OUT:-}" ]; then LOG_DIR=${LOG_DIR:-$OUT/gpu-bench}; else LOG_DIR=${LOG_DIR:-/tmp/retort-gpu-bench}; fi
mkdir -p "$LOG_DIR"
WORK=$(mktemp -d /tmp/retort-gpu.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export PATH=/usr/local/cuda/bin:$PATH

FAILED=()
SUMMARY="$LOG_DIR/summary.md"
: > "$SUMMARY"
log() { echo "gpu.sh: $*" >&2; }
say() { echo "$*" | tee -a "$SUMMARY"; }
# step NAME SECONDS CMD...: runs CMD time-boxed, output in $LOG_DIR/NAME.log.
step() {
  local name=$1 secs=$2; shift 2
  log "$name: $*"
  local t0=$SECONDS rc=0
  timeout --kill-after=10 "$secs" "$@" >"$LOG_DIR/$name.log" 2>&1 || rc=$?
  log "$name: exit $rc after $((SECONDS - t0)) s"
  return $rc
}

# link_like_retort SRC.c OUT: compiles a C program against the library and
# links it exactly as CMake links retort (its link.txt, run in the build dir,
# with SRC's object in place of main.c's): the CUDA build needs g++/cudart.
link_like_retort() {
  local src=$1 out=$2 obj cmd
  obj=$WORK/$(basename "$src" .c).o
  gcc -std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -I. -I/usr/local/cuda/include -DRETORT_HAVE_CUDA=1 \
      -c "$src" -o "$obj" || return 1
  cmd=$(sed -e "s|@CMakeFiles/retort.dir/objects1|$obj|" \
            -e "s|CMakeFiles/retort.dir/train/cli/main.c.o|$obj|" \
            -e "s|-o retort|-o $out|" "$BUILD_DIR/CMakeFiles/retort.dir/link.txt") || return 1
  (cd "$BUILD_DIR" && bash -c "$cmd")
}

say "## retort GPU run, $(date -u '+%Y-%m-%d %H:%M UTC')"
say ""
say "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo 'nvidia-smi failed')"
say "nvcc: $(nvcc --version 2>/dev/null | tail -1)"
say "retort: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git status --porcelain 2>/dev/null | grep -qv '^??' && echo ' (+ uncommitted changes)')"
say ""

# ---- 1. build ------------------------------------------------------------------
if step configure 300 cmake -S . -B "$BUILD_DIR" -DRETORT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCH" \
     -DCMAKE_BUILD_TYPE=Release && step build 400 cmake --build "$BUILD_DIR" -j "$JOBS"; then
  say "- build: ok ($(grep -ci 'warning' "$LOG_DIR/build.log") warning lines in build.log)"
else
  say "- build: FAILED (see build.log / configure.log)"; FAILED+=(build)
  tail -30 "$LOG_DIR/build.log" "$LOG_DIR/configure.log" 2>/dev/null >&2
  cat "$SUMMARY"; exit 1
fi

# ---- 2. test_ops with its GPU-vs-CPU section -------------------------------------
if step test_ops 300 "$BUILD_DIR/test_ops"; then say "- test_ops: ok"; else say "- test_ops: FAILED"; FAILED+=(test_ops); fi
say "  $(grep -E '^[0-9]+ passed, [0-9]+ failed' "$LOG_DIR/test_ops.log" | tail -1)"
say "  GPU rows compared: $(grep -c '^gpu ' "$LOG_DIR/test_ops.log")"
grep -E '^SKIP|^FAIL' "$LOG_DIR/test_ops.log" | head -20 | sed 's/^/  /' | tee -a "$SUMMARY" >&2

# ---- 3. compute-sanitizer ----------------------------------------------------------
if [ "${SKIP_SANITIZER:-0}" != 1 ]; then
  if command -v compute-sanitizer >/dev/null; then
    for tool in memcheck racecheck; do
      if step "sanitizer_$tool" 420 compute-sanitizer --tool "$tool" --error-exitcode 99 "$BUILD_DIR/test_ops"; then
        say "- compute-sanitizer $tool: ok ($(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$LOG_DIR/sanitizer_$tool.log" | tail -1))"
      else
        say "- compute-sanitizer $tool: FAILED ($(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$LOG_DIR/sanitizer_$tool.log" | tail -1))"
        FAILED+=("sanitizer_$tool")
        grep -m5 -A4 -E '^========= (Invalid|Error|Race|Program hit)' "$LOG_DIR/sanitizer_$tool.log" >&2
      fi
    done
  else
    say "- compute-sanitizer: not found (skipped)"
  fi
fi

# ---- 4. the other tests ------------------------------------------------------------
if step ctest 400 ctest --test-dir "$BUILD_DIR" -j "$JOBS" --output-on-failure -E '^test_ops$'; then
  say "- ctest (all but test_ops): ok"
else
  say "- ctest (all but test_ops): FAILED: $(grep -E '^\s+[0-9]+ - ' "$LOG_DIR/ctest.log" | tr -s ' ' | tr '\n' ';')"
  FAILED+=(ctest)
fi

# ---- 4b. kernel table GPU vs CPU at realistic shapes, then kernel timings ----------
if link_like_retort bench/gpu_kernels.c "$WORK/gpu_kernels" >"$LOG_DIR/gpu_kernels_build.log" 2>&1 \
   && step gpu_kernels 300 "$WORK/gpu_kernels"; then
  say "- gpu_kernels (bench/gpu_kernels.c): ok"
else
  say "- gpu_kernels (bench/gpu_kernels.c): FAILED (gpu_kernels.log / gpu_kernels_build.log)"
  FAILED+=(gpu_kernels)
fi
grep -E 'FAIL|error' "$LOG_DIR/gpu_kernels.log" 2>/dev/null | head -20 | sed 's/^/  /' | tee -a "$SUMMARY" >&2
if grep -q '^GPU timings' "$LOG_DIR/gpu_kernels.log" 2>/dev/null; then
  say ""
  say '```'
  sed -n '/^GPU timings/,$p' "$LOG_DIR/gpu_kernels.log" | tee -a "$SUMMARY"
  say '```'
fi

# ---- 5. retort on the GPU ------------------------------------------------------------
RETORT=$BUILD_DIR/retort
M260=$SHARED/models/stories260K/stories260K.bin
T260=$SHARED/models/stories260K/tok512.bin
TEXT=$WORK/moby-200k.txt
head -c $((200 * 1024)) "$SHARED/data/moby-dick.txt" 2>/dev/null | sed '$d' > "$TEXT"

# Peak GPU memory of a command: nvidia-smi sampled every 100 ms in the background.
gpu_mem_sampler_start() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$WORK/mem.txt" 2>/dev/null & SAMPLER=$!; }
gpu_mem_sampler_stop() { kill "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null; sort -n "$WORK/mem.txt" | tail -1; }
steady_tps() {  # metrics.jsonl tokens_per_step: steps 2..N, as bench/cpu_bench.sh
  awk -v tok="$2" '/"tokens_per_s"/ {
      match($0, /"step":[0-9]+/); st = substr($0, RSTART + 7, RLENGTH - 7) + 0
      match($0, /"tokens_per_s":[0-9.]+/); r = substr($0, RSTART + 15, RLENGTH - 15) + 0
      if (st > 1 && r > 0) { n++; dt += tok / r } }
    END { if (n) printf "%.0f", n * tok / dt; else printf "n/a" }' "$1" 2>/dev/null || echo n/a
}

ROWS=""
if [ -x "$RETORT" ] && [ -f "$M260" ]; then
  MS_OK=1
  link_like_retort bench/make_synthetic.c "$WORK/make_synthetic" >"$LOG_DIR/make_synthetic.log" 2>&1 \
    && "$WORK/make_synthetic" "$WORK/syn15m" --tokenizer "$SHARED/tokenizers/llama2/tokenizer.bin" \
         >>"$LOG_DIR/make_synthetic.log" 2>&1 || MS_OK=0

  eval_row() {  # name label model-args...
    local name=$1 label=$2; shift 2
    gpu_mem_sampler_start
    step "$name" 300 "$RETORT" eval --device cuda --model "$@" --data "$TEXT" --seq-len 256
    local rc=$? mem; mem=$(gpu_mem_sampler_stop)
    local r; r=$(grep -o '([0-9]* tokens/s)' "$LOG_DIR/$name.log" | tr -dc '0-9')
    [ $rc = 0 ] || r="FAILED"
    ROWS+="| eval $label | seq 256 | ${r:-n/a} | ${mem:-?} |"$'\n'
  }
  train_row() {  # name label micro_batch overrides...
    local name=$1 label=$2 mb=$3; shift 3
    rm -rf "$WORK/$name.out"
    gpu_mem_sampler_start
    step "$name" 400 "$RETORT" finetune recipes/stories260k-qlora-mobydick.yaml device=cuda "$@" \
      max_steps="$STEPS" micro_batch_size="$mb" sequence_len=256 gradient_accumulation_steps=1 \
      eval_steps=0 val_set_size=1 logging_steps=5 save_steps=0 output_dir="$WORK/$name.out"
    local rc=$? mem; mem=$(gpu_mem_sampler_stop)
    local r; r=$(steady_tps "$WORK/$name.out/metrics.jsonl" $((mb * 256)))
    [ $rc = 0 ] || r="FAILED"
    ROWS+="| train $label | $STEPS x $mb x 256 | $r | ${mem:-?} |"$'\n'
  }
  eval_row eval260k "stories260K" "$M260" --tokenizer "$T260"
  train_row train260k "stories260K QLoRA r=8 (recipe)" 8
  if [ $MS_OK = 1 ]; then
    SYN=(base_model="$WORK/syn15m" tokenizer="$WORK/syn15m" datasets.0.path="$TEXT")
    eval_row eval15m "synthetic 15M" "$WORK/syn15m"
    train_row q15m "15M QLoRA r=8 (NF4 base)" 8 "${SYN[@]}" gradient_checkpointing=false
    train_row q15m_ck "15M QLoRA r=8, grad ckpt" 8 "${SYN[@]}" gradient_checkpointing=true
    train_row l15m "15M LoRA r=16 (f32 base)" 8 "${SYN[@]}" load_in_4bit=false adapter=lora lora_r=16 lora_alpha=32 gradient_checkpointing=false
  else
    say "- make_synthetic failed (make_synthetic.log): no 15M rows"
  fi
else
  say "- retort benchmarks skipped: $RETORT or $M260 missing"
fi
say ""
say "### retort on the GPU (f32 kernels; peak memory: nvidia-smi, whole GPU, MiB)"
say ""
say "| run | shape | tokens/s (train: steady, steps 2..N) | peak GPU MiB |"
say "|---|---|---:|---:|"
printf '%s' "$ROWS" | tee -a "$SUMMARY"

# ---- 6. PyTorch + PEFT peer -----------------------------------------------------------
if [ "${SKIP_PEER:-0}" != 1 ]; then
  if python3 -c 'import torch, peft, transformers; assert torch.cuda.is_available()' 2>"$LOG_DIR/peer_import.log"; then
    say ""
    say "### PyTorch + PEFT LoRA r=16 (bench/peer_peft.py, bf16 base)"
    say ""
    step peer 540 python3 bench/peer_peft.py --steps "$PEER_STEPS" --markdown \
      --config 15m:256 --config 15m:2048 --config 1b:2048
    grep '^|' "$LOG_DIR/peer.log" | tee -a "$SUMMARY"
  else
    say "- peer_peft.py skipped: python3 cannot import torch/peft/transformers with CUDA ($(tail -1 "$LOG_DIR/peer_import.log"))"
  fi
fi

say ""
if [ ${#FAILED[@]} -gt 0 ]; then
  say "FAILED: ${FAILED[*]} (logs: $LOG_DIR)"
  exit 1
fi
say "all checks passed (logs: $LOG_DIR)"
