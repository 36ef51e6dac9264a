#!/usr/bin/env bash
# retort's GPU check and benchmark: ONE command, at most ~8 minutes, on the
# device machine, from a bundle built beforehand on a CPU machine
# (scripts/device-bundle.sh: nothing is compiled on the device):
#
#   bash scripts/device-bundle.sh                    # here: .device/bundle, ~44 MiB
#   run(carry=[".device"], timeout_s=560,
#       command="bash bench/gpu.sh .device/bundle")  # there
#
# Stages, in this order, each with its own time-out and all under one
# overall deadline (DEADLINE_S, default 470 s), so a partial run still
# reports what it reached:
#   1. probe: nvidia-smi; ldd of every bundle file (each library must
#      resolve inside the bundle, to a base system library or to cuBLAS);
#      test_fault (the sticky first-fault bookkeeping)
#   2. op table: test_ops (every op GPU vs CPU, then real sizes: V 49152 and
#      128256, attention T 2048 Dh 64/128, logits > 2^31 elements, embedding
#      ids at V-1 and a bad id), then gpu_kernels (the kernel table at
#      realistic shapes + kernel timings) -- under RETORT_CUDA_SYNC=1 so a
#      fault names its kernel
#   3. stories260K: eval on cuda vs cpu (NLL within 1e-4 relative), and 20
#      QLoRA steps of the recipe on cuda vs the CPU's loss curve (every step
#      within 1e-3 relative: f32 kernels, different summation orders)
#   4. benchmarks, shortest first: stories260K eval and train tokens/s, then
#      the synthetic 15M shape (QLoRA, QLoRA + checkpointing, LoRA r=16),
#      then the PyTorch + PEFT peer (bench/peer_peft.py) if torch is there;
#      peak GPU memory sampled with nvidia-smi (whole GPU, MiB)
#
# Output: $OUT/gpu-summary.json (rewritten after every stage) and
# $OUT/gpu.log (everything); without $OUT, /tmp/retort-gpu. On a machine
# without a GPU, stages 1-3 run their CPU parts, the GPU parts print one
# SKIP line each, and the script exits 0 with "gpu": false in the summary.
# Exit status: 1 if any check failed, else 0.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
T_START=$SECONDS
BUNDLE=$(cd "${1:-.device/bundle}" 2>/dev/null && pwd) || {
  echo "gpu.sh: no bundle at ${1:-.device/bundle}: run bash scripts/device-bundle.sh first" >&2; exit 2; }
D=$BUNDLE/data
DEADLINE_S=${DEADLINE_S:-470}
STEPS=${STEPS:-20}
OUTDIR=${OUT:-/tmp/retort-gpu}
mkdir -p "$OUTDIR"
LOG=$OUTDIR/gpu.log
JSON=$OUTDIR/gpu-summary.json
WORK=$(mktemp -d /tmp/retort-gpu.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
: > "$LOG"

# ---- helpers ---------------------------------------------------------------
FIELDS=()     # "key": value pairs of the summary, in order
FAILED=()
field() {  # field KEY JSON-VALUE (a key set again is replaced in place)
  local i
  for i in "${!FIELDS[@]}"; do
    if [[ ${FIELDS[$i]} == "\"$1\": "* ]]; then FIELDS[$i]="\"$1\": $2"; write_json; return; fi
  done
  FIELDS+=("\"$1\": $2"); write_json
}
str() { printf '"%s"' "$(printf '%s' "$1" | tr -d '\000-\037' | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
write_json() {
  local IFS=$'\n' body
  body=$(printf '  %s,\n' "${FIELDS[@]}")
  printf '{\n%s\n  "failed": [%s],\n  "seconds": %d\n}\n' "$body" \
    "$([ ${#FAILED[@]} -gt 0 ] && printf '"%s",' "${FAILED[@]}" | sed 's/,$//')" \
    $((SECONDS - T_START)) > "$JSON"
}
say() { echo "gpu.sh: $*" | tee -a "$LOG"; }
fail() { FAILED+=("$1"); say "FAIL: $1${2:+: $2}"; write_json; }
left() { echo $((DEADLINE_S - (SECONDS - T_START))); }
# run_step NAME SECONDS CMD...: time-boxed (never past the deadline), output
# appended to the log and kept in $WORK/NAME.out.
run_step() {
  local name=$1 secs=$2; shift 2
  local l; l=$(left)
  if [ "$l" -lt 15 ]; then say "$name: not run (deadline)"; return 124; fi
  [ "$secs" -gt "$l" ] && secs=$l
  say "$name (limit ${secs}s): $*"
  local t0=$SECONDS rc=0
  timeout --kill-after=5 "$secs" "$@" > "$WORK/$name.out" 2>&1 || rc=$?
  { echo "---- $name: exit $rc after $((SECONDS - t0)) s"; cat "$WORK/$name.out"; echo; } >> "$LOG"
  [ $rc = 124 ] && say "$name: TIMED OUT after ${secs}s"
  return $rc
}

# ---- 1. probe -----------------------------------------------------------------
say "bundle $BUNDLE; retort $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
GPU_NAME=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>>"$LOG" | head -1)
field gpu_name "$(str "${GPU_NAME:-none}")"
# cuBLAS (not carried: 600 MB) from the device's CUDA install or PyTorch's wheels.
CUBLAS_DIR=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
  [ -e "$d/libcublas.so.13" ] && { CUBLAS_DIR=$d; break; }
done
[ -n "$CUBLAS_DIR" ] || CUBLAS_DIR=$(dirname "$(find /opt /usr/local -name 'libcublas.so.13' -print -quit 2>/dev/null)" 2>/dev/null)
[ -n "$CUBLAS_DIR" ] && [ "$CUBLAS_DIR" != . ] && export LD_LIBRARY_PATH=$CUBLAS_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
field cublas_dir "$(str "${CUBLAS_DIR:-not found}")"
base='^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+|libcublas|libcublasLt)\.so'
ldd_bad=0
# The executables and the module (the carried libraries are loaded through
# their RPATH, which also serves the libraries' own needs).
for f in "$BUNDLE"/retort "$BUNDLE"/test_* "$BUNDLE"/gpu_kernels "$BUNDLE"/make_synthetic "$BUNDLE"/libretort_cuda.so; do
  [ -f "$f" ] || continue
  ldd "$f" > "$WORK/ldd" 2>&1 || continue
  { echo "---- ldd $(basename "$f")"; cat "$WORK/ldd"; } >> "$LOG"
  while read -r lib arrow where _; do
    [ "$arrow" = "=>" ] || continue
    [[ $lib =~ $base ]] && [ "$where" != "not" ] && continue
    case $where in "$BUNDLE"/*) ;; *) ldd_bad=1; say "ldd: $(basename "$f"): $lib => $where" ;; esac
  done < "$WORK/ldd"
done
[ $ldd_bad = 0 ] && field ldd '"ok"' || { field ldd '"unresolved or outside the bundle"'; fail ldd; }
RT=$BUNDLE/retort
if run_step test_fault 20 "$BUNDLE/test_fault"; then field test_fault '"ok"'; else field test_fault '"FAILED"'; fail test_fault; fi
GPU=0
[ -n "$GPU_NAME" ] && GPU=1
field gpu $([ $GPU = 1 ] && echo true || echo false)
if [ $GPU = 0 ]; then
  say "SKIP: no NVIDIA GPU here (nvidia-smi lists none): GPU parts skipped, CPU parts run"
else
  # The smallest use of the device: load the module (cuBLAS found?) and
  # evaluate a few tokens (the recipe as --data: a short text).
  run_step probe 60 "$RT" eval --device cuda --model "$D/stories260K.bin" --tokenizer "$D/tok512.bin" \
    --data "$D/stories260k-qlora-mobydick.yaml" --seq-len 8 \
    && field probe '"ok"' || { field probe "$(str "$(tail -1 "$WORK/probe.out")")"; fail probe "$(tail -1 "$WORK/probe.out")"; }
fi

# ---- 2. op table ----------------------------------------------------------------
export RETORT_CUDA_SYNC=1
run_step test_ops 150 "$BUNDLE/test_ops"; rc=$?
ops_line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$WORK/test_ops.out" | tail -1)
field test_ops "$(str "${ops_line:-exit $rc}")"
field test_ops_gpu_rows $(grep -c '^gpu ' "$WORK/test_ops.out")
grep -E '^SKIP' "$WORK/test_ops.out" | sed 's/^/  /' | tee -a "$LOG"
[ $rc = 0 ] || fail test_ops "$(grep -m3 '^FAIL' "$WORK/test_ops.out" | tr '\n' ' ')"
if [ $GPU = 1 ]; then
  run_step gpu_kernels 120 "$BUNDLE/gpu_kernels"; rc=$?
  field gpu_kernels "$(str "$(grep -E 'comparison\(s\) failed' "$WORK/gpu_kernels.out" | tail -1)")"
  [ $rc = 0 ] || fail gpu_kernels "$(grep -m3 'FAIL\|fault' "$WORK/gpu_kernels.out" | tr '\n' ' ')"
fi

# ---- 3. stories260K on cuda vs cpu ---------------------------------------------------
# CPU references: computed on this machine's CPU where time allows, else
# the ones the bundle brought (scripts/device-bundle.sh computed them).
EVAL=(eval --model "$D/stories260K.bin" --tokenizer "$D/tok512.bin" --data "$D/moby-40k.txt" --seq-len 256)
nll_of() { grep -o 'nll=[0-9.]*' "$1" | cut -d= -f2; }
a=""
run_step eval_cpu 60 "$RT" "${EVAL[@]}" --device cpu && a=$(nll_of "$WORK/eval_cpu.out")
[ -n "$a" ] || a=$(cat "$D/ref-eval-nll.txt" 2>/dev/null)
field eval_nll_cpu "${a:-null}"
[ -n "$a" ] || fail eval_cpu "no CPU eval NLL (run and bundle reference both missing)"
if [ $GPU = 1 ]; then
  if run_step eval_cuda 60 "$RT" "${EVAL[@]}" --device cuda; then
    b=$(nll_of "$WORK/eval_cuda.out")
    field eval_nll_cuda "${b:-null}"
    awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= 1e-4 * a) }' \
      || fail eval_match "cuda nll $b vs cpu $a"
  else fail eval_cuda "$(tail -1 "$WORK/eval_cuda.out")"; fi
fi
TRAIN=(finetune "$D/stories260k-qlora-mobydick.yaml" base_model="$D/stories260K.bin" tokenizer="$D/tok512.bin"
       datasets.0.path="$D/moby-200k.txt" max_steps="$STEPS" eval_steps=0 save_steps=0 logging_steps=1
       val_set_size=0.02)
losses() { awk '/"loss"/ && !/val_loss/ { match($0, /"step":[0-9]+/); s = substr($0, RSTART + 7, RLENGTH - 7)
             match($0, /"loss":[-0-9.eE+naif]+/); printf "%s %s\n", s, substr($0, RSTART + 7, RLENGTH - 7) }' "$1" 2>/dev/null; }
if [ -s "$D/ref-loss.txt" ] && [ "$STEPS" = 20 ]; then
  cp "$D/ref-loss.txt" "$WORK/loss_cpu"   # the bundle's CPU curve (20 steps)
  field loss_curve_cpu_source '"bundle (scripts/device-bundle.sh)"'
else
  run_step train_cpu 150 "$RT" "${TRAIN[@]}" --device cpu output_dir="$WORK/train_cpu"
  losses "$WORK/train_cpu/metrics.jsonl" > "$WORK/loss_cpu"
  field loss_curve_cpu_source '"this run"'
fi
[ "$(wc -l < "$WORK/loss_cpu")" = "$STEPS" ] || fail loss_curve_cpu "$(wc -l < "$WORK/loss_cpu") of $STEPS CPU steps"
field loss_curve_cpu "[$(awk '{printf "%s%s", (NR > 1 ? ", " : ""), $2}' "$WORK/loss_cpu")]"
if [ $GPU = 1 ]; then
  run_step train_cuda 120 "$RT" "${TRAIN[@]}" --device cuda output_dir="$WORK/train_cuda"
  losses "$WORK/train_cuda/metrics.jsonl" > "$WORK/loss_cuda"
  field loss_curve_cuda "[$(awk '{printf "%s%s", (NR > 1 ? ", " : ""), $2}' "$WORK/loss_cuda")]"
  worst=$(paste -d' ' "$WORK/loss_cpu" "$WORK/loss_cuda" | awk '$1 != $3 || $4 !~ /^-?[0-9.]+([eE][-+]?[0-9]+)?$/ { bad = 1 }
           { d = ($2 - $4) / $2; if (d < 0) d = -d; if (d != d || d > w) w = d; n++ }
           END { if (n == 0 || bad) print "nan"; else printf "%.3g", w }')
  field loss_curve_max_rel_diff "$(str "$worst")"
  awk -v w="$worst" -v n="$(wc -l < "$WORK/loss_cuda")" -v s="$STEPS" 'BEGIN { exit !(w != "nan" && w + 0 <= 1e-3 && n + 0 == s + 0) }' \
    || fail loss_curve "cuda vs cpu max relative difference $worst over $(wc -l < "$WORK/loss_cuda") of $STEPS steps"
fi
unset RETORT_CUDA_SYNC

# ---- 4. benchmarks, shortest first --------------------------------------------------
if [ $GPU = 0 ]; then
  say "SKIP: benchmarks need a GPU"
else
  mem_start() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$WORK/mem" 2>/dev/null & SAMPLER=$!; }
  mem_stop() { kill "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null; sort -n "$WORK/mem" | tail -1; }
  steady_tps() {  # tokens/s over steps 2..N from metrics.jsonl
    awk -v tok="$2" '/"tokens_per_s"/ { match($0, /"step":[0-9]+/); st = substr($0, RSTART + 7, RLENGTH - 7) + 0
        match($0, /"tokens_per_s":[0-9.]+/); r = substr($0, RSTART + 15, RLENGTH - 15) + 0
        if (st > 1 && r > 0) { n++; dt += tok / r } } END { if (n) printf "%.0f", n * tok / dt; else printf "null" }' "$1" 2>/dev/null || echo null; }
  ROWS=()
  bench_eval() {  # name model-args...
    local name=$1; shift; mem_start
    run_step "$name" 60 "$RT" eval --device cuda --model "$@" --data "$D/moby-200k.txt" --seq-len 256
    local rc=$? m; m=$(mem_stop)
    local r; r=$(grep -o '([0-9]* tokens/s)' "$WORK/$name.out" | tr -dc '0-9')
    [ $rc = 0 ] || r=null
    ROWS+=("{\"run\": \"$name\", \"tokens_per_s\": ${r:-null}, \"peak_gpu_mib\": ${m:-null}}")
    field benchmarks "[$(IFS=,; echo "${ROWS[*]}")]"
  }
  bench_train() {  # name micro_batch overrides...
    local name=$1 mb=$2; shift 2; mem_start
    run_step "$name" 90 "$RT" finetune "$D/stories260k-qlora-mobydick.yaml" --device cuda base_model="$D/stories260K.bin" \
      tokenizer="$D/tok512.bin" datasets.0.path="$D/moby-200k.txt" max_steps="$STEPS" micro_batch_size="$mb" \
      sequence_len=256 gradient_accumulation_steps=1 eval_steps=0 val_set_size=0.02 logging_steps=5 save_steps=0 \
      output_dir="$WORK/$name" "$@"
    local rc=$? m; m=$(mem_stop)
    local r; r=$(steady_tps "$WORK/$name/metrics.jsonl" $((mb * 256)))
    [ $rc = 0 ] || r=null
    ROWS+=("{\"run\": \"$name\", \"shape\": \"${STEPS}x${mb}x256\", \"tokens_per_s\": $r, \"peak_gpu_mib\": ${m:-null}}")
    field benchmarks "[$(IFS=,; echo "${ROWS[*]}")]"
  }
  bench_eval eval_260k "$D/stories260K.bin" --tokenizer "$D/tok512.bin"
  bench_train train_260k_qlora 8
  if [ -f "$D/tokenizer.bin" ] && run_step make_synthetic 60 "$BUNDLE/make_synthetic" "$WORK/syn15m" --tokenizer "$D/tokenizer.bin"; then
    SYN=(base_model="$WORK/syn15m" tokenizer="$WORK/syn15m")
    bench_eval eval_15m "$WORK/syn15m"
    bench_train train_15m_qlora 8 "${SYN[@]}" gradient_checkpointing=false
    bench_train train_15m_qlora_ckpt 8 "${SYN[@]}" gradient_checkpointing=true
    bench_train train_15m_lora_r16 8 "${SYN[@]}" load_in_4bit=false adapter=lora lora_r=16 lora_alpha=32 gradient_checkpointing=false
  fi
  if [ "$(left)" -gt 60 ] && python3 -c 'import torch, peft, transformers; assert torch.cuda.is_available()' >> "$LOG" 2>&1; then
    run_step peer $(( $(left) - 10 )) python3 bench/peer_peft.py --steps 10 --markdown --batch 8 --config 15m:256 --modes eager
    field peer_peft "[$(grep '^|' "$WORK/peer.out" | grep -v -- '---' | tail -n +2 | while read -r l; do str "$l"; echo ,; done | tr -d '\n' | sed 's/,$//')]"
  fi
fi

field done true
if [ ${#FAILED[@]} -gt 0 ]; then say "FAILED: ${FAILED[*]} ($JSON, $LOG)"; exit 1; fi
say "all checks passed$([ $GPU = 0 ] && echo ' (no GPU: GPU parts skipped)') in $((SECONDS - T_START)) s ($JSON, $LOG)"
