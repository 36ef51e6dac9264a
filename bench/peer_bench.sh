#!/usr/bin/env bash
# retort's LoRA / QLoRA training step against PyTorch 2.x + transformers + PEFT on the CPU,
# in one run: same model (bench/make_synthetic), same threads, interleaved runs.
# Prints markdown tables on stdout (progress on stderr). See bench/README.md.
#
#   bash bench/peer_bench.sh                 # the full table: ~25 min on 2 idle cores
#   CONFIGS="smollm2:512" VARIANTS="lora eager" bash bench/peer_bench.sh   # one cell pair
#
# Environment (defaults in brackets):
#   CONFIGS ["smollm2:512 smollm2:256 15m:256 15m:512"]  SHAPE:SEQ pairs
#   BATCH [4]           sequences per step (micro_batch_size), every config
#   STEPS_SMOLLM2 [2], STEPS_15M [6]   timed steps per run at each shape (retort runs
#                       STEPS+1 and drops its first; the peer runs 1 warm-up step first)
#   ROUNDS [1]          rounds of the variants, interleaved; medians across rounds
#   VARIANTS ["lora qlora eager compile bnb4"]  which runs: retort LoRA (f32 base), retort
#                       QLoRA (NF4 base), peer PEFT LoRA eager, peer under torch.compile,
#                       peer QLoRA (bitsandbytes NF4 base, 4-bit training on the CPU, eager)
#   THREADS [2]         OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / torch.set_num_threads
#   OMP_WAIT_POLICY [passive]  for both (see README.md, "Shared machines")
#   BUILD_DIR [build]  RETORT_SHARED [../shared]  WORK [mktemp -d; kept if KEEP=1]
# A peer run that fails (torch.compile, bitsandbytes) is a "failed" row, not the end of
# the run. The peer's virtual environment is made from bench/requirements-peer.txt in
# ~/.cache/retort/venv-peer (pip's wheel cache: ~/.cache/retort/pip), and
# remade when that file changes. The Linux torch wheel on PyPI brings the
# CUDA runtime wheels with it (several GB, downloaded once).
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIGS=${CONFIGS:-"smollm2:512 smollm2:256 15m:256 15m:512"}
BATCH=${BATCH:-4}
STEPS_SMOLLM2=${STEPS_SMOLLM2:-2}
STEPS_15M=${STEPS_15M:-6}
ROUNDS=${ROUNDS:-1}
VARIANTS=${VARIANTS:-"lora qlora eager compile bnb4"}
THREADS=${THREADS:-2}
BUILD_DIR=${BUILD_DIR:-build}
SHARED=${RETORT_SHARED:-../shared}
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ -z "${WORK:-}" ]; then
  WORK=$(mktemp -d /tmp/retort-peer.XXXXXX)
  [ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK"
log() { echo "peer_bench: $*" >&2; }
die() { log "$*"; exit 1; }

# ---- the peer's venv ----------------------------------------------------------
CACHE=$HOME/.cache/retort
VENV=$CACHE/venv-peer
REQ=bench/requirements-peer.txt
if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$REQ" "$VENV/requirements.txt"; then
  log "making $VENV from $REQ (first time: several GB of wheels)"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  PIP_CACHE_DIR=$CACHE/pip "$VENV/bin/pip" install -q -r "$REQ" >&2
  cp "$REQ" "$VENV/requirements.txt"
fi
[ -x /usr/bin/time ] || apt-get install -y -qq time >/dev/null || die "need GNU time (apt-get install time)"

# ---- retort, the models, the text ----------------------------------------------
[ -x "$BUILD_DIR/retort" ] || die "$BUILD_DIR/retort not built (bash scripts/setup.sh)"
cp "$BUILD_DIR/retort" "$WORK/retort"   # rebuilding during the run does not change it
LINK_TXT=$BUILD_DIR/CMakeFiles/retort.dir/link.txt
RPATH=$(grep -o -- '-Wl,-rpath,[^ ]*' "$LINK_TXT" || true)
LIBS=$(sed -e 's/.*libretort_core\.a//' "$LINK_TXT")
for prog in make_synthetic gemm_bound; do
  # shellcheck disable=SC2086
  gcc -std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -I. "bench/$prog.c" "$BUILD_DIR/libretort_core.a" \
      $RPATH $LIBS -o "$WORK/$prog"
done
TEXT=$WORK/text.txt
head -c 400000 "$SHARED/data/moby-dick.txt" | sed '$d' > "$TEXT"
declare -A SHAPE_ARGS=([smollm2]="--shape smollm2-135m" [15m]="--shape 15m --max-pos 1024")
declare -A GEOM=([smollm2]="576 1536 30 9 3 49152" [15m]="288 768 6 6 6 32000")
for c in $CONFIGS; do
  s=${c%%:*}
  [ -n "${SHAPE_ARGS[$s]:-}" ] || die "unknown shape $s (smollm2, 15m)"
  [ -d "$WORK/$s" ] && continue
  # shellcheck disable=SC2086
  "$WORK/make_synthetic" "$WORK/$s" ${SHAPE_ARGS[$s]} \
      --tokenizer "$SHARED/tokenizers/llama2/tokenizer.bin" 2>>"$WORK/make_synthetic.log"
done

median() { sort -g | awk '{a[n++] = $1} END { if (n) print n % 2 ? a[(n - 1) / 2] : (a[n / 2 - 1] + a[n / 2]) / 2 }'; }

# ---- one run of each kind -------------------------------------------------------
# Each writes $WORK/NAME.{log,time,load} and NAME.res: "median_step_s first_step_s",
# or "failed failed" (a peer run that failed; its log says why).
timed() {
  local name=$1; shift
  cut -d' ' -f1 /proc/loadavg > "$WORK/$name.load"
  /usr/bin/time -v -o "$WORK/$name.time" "$@" > "$WORK/$name.log" 2>&1
}
steps_of() { [ "$1" = smollm2 ] && echo "$STEPS_SMOLLM2" || echo "$STEPS_15M"; }
retort_run() {  # name shape seq adapter
  local name=$1 shape=$2 seq=$3 q=false steps; [ "$4" = qlora ] && q=true
  steps=$(steps_of "$shape")
  rm -rf "$WORK/$name.out"
  timed "$name" "$WORK/retort" finetune recipes/stories260k-qlora-mobydick.yaml \
    base_model="$WORK/$shape" tokenizer="$WORK/$shape" datasets.0.path="$TEXT" \
    adapter="$4" load_in_4bit=$q lora_r=16 lora_alpha=32 lora_dropout=0 gradient_checkpointing=false \
    max_steps=$((steps + 1)) micro_batch_size="$BATCH" sequence_len="$seq" gradient_accumulation_steps=1 \
    eval_steps=0 val_set_size=1 logging_steps=1 save_steps=0 output_dir="$WORK/$name.out" \
    || { tail -5 "$WORK/$name.log" >&2; die "$name failed (log: $WORK/$name.log)"; }
  # step time = tokens per step / the step's tokens_per_s (metrics.jsonl)
  local times; times=$(awk -v tok=$((BATCH * seq)) '/"tokens_per_s"/ {
      match($0, /"step":[0-9]+/); st = substr($0, RSTART + 7, RLENGTH - 7) + 0
      match($0, /"tokens_per_s":[0-9.]+/); r = substr($0, RSTART + 15, RLENGTH - 15) + 0
      printf "%d %.3f\n", st, tok / r }' "$WORK/$name.out/metrics.jsonl")
  echo "$(echo "$times" | awk '$1 > 1 {print $2}' | median) $(echo "$times" | awk '$1 == 1 {print $2}')" \
    > "$WORK/$name.res"
}
peer_run() {  # name shape seq mode
  if ! timed "$1" "$VENV/bin/python" bench/peer_cpu.py --model "$WORK/$2" --text "$TEXT" --seq "$3" \
      --batch "$BATCH" --mode "$4" --steps "$(steps_of "$2")" --warmup 1 --threads "$THREADS" \
      || ! grep -q '^{' "$WORK/$1.log"; then
    log "$1 failed: $(grep -v '^ *$' "$WORK/$1.log" | tail -1 | cut -c1-200)"
    echo "failed failed" > "$WORK/$1.res"
    return 0
  fi
  local line; line=$(grep '^{' "$WORK/$1.log" | tail -1)
  "$VENV/bin/python" -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["median_s"], d["warmup_s"])' \
    "$line" > "$WORK/$1.res"
  grep -o '"peer": "[^"]*"' "$WORK/$1.log" | head -1 | cut -d'"' -f4 > "$WORK/peer.$4.version"
}
rss_mib() { awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$WORK/$1.time"; }
fmt_s() { awk -v s="$1" 'BEGIN {printf "%d min %02d s", s / 60, s % 60}'; }

# ---- the GEMM bound of every config first: it also sizes the run -------------------
# gemm_bound times every product of the step at its own shape (bound_s: the step's GEMMs
# alone at the measured rates). Expected run time, from it and from the ratios seen on
# this machine kind (2-core Zen 5): retort's step ~1.6x the bound, the eager peer's ~2x,
# the compiled peer's ~2x plus its compilation (~60 s at 15m, ~150 s at SmolLM2), the
# bitsandbytes peer's ~2.5x; each process loads in ~5 s (retort) / ~15 s (the peer).
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
EST=0
for c in $CONFIGS; do
  s=${c%%:*} seq=${c##*:}
  log "$s seq $seq: GEMM bound"
  # shellcheck disable=SC2086
  "$WORK/gemm_bound" ${GEOM[$s]} "$BATCH" "$seq" 16 > "$WORK/bound.$s.$seq"
  b=$(sed -n 's/.*"bound_s":\([0-9.]*\).*/\1/p' "$WORK/bound.$s.$seq")
  n=$(( $(steps_of "$s") + 1 )) comp=60; [ "$s" = smollm2 ] && comp=150
  for v in $VARIANTS; do
    EST=$(awk -v e="$EST" -v b="$b" -v n="$n" -v v="$v" -v comp="$comp" -v r="$ROUNDS" 'BEGIN {
      f = v == "lora" || v == "qlora" ? 1.6 : v == "bnb4" ? 2.5 : 2.0
      t = (v == "lora" || v == "qlora" ? 5 : 15) + n * f * b + (v == "compile" ? comp : 0)
      printf "%.0f", e + r * t }')
  done
done
log "expected duration of the runs: ~$(fmt_s "$EST") (estimate from the measured sgemm rates; +-50%)"
echo "Expected duration (printed before the runs): ~$(fmt_s "$EST")." > "$WORK/expected"
T0=$(date +%s)
for c in $CONFIGS; do
  s=${c%%:*} seq=${c##*:}
  for r in $(seq 1 "$ROUNDS"); do
    for v in $VARIANTS; do
      log "$s seq $seq round $r: $v ($(fmt_s $(( $(date +%s) - T0 ))) elapsed)"
      case $v in
        lora|qlora) retort_run "$v.$s.$seq.$r" "$s" "$seq" "$v" ;;
        eager|compile|bnb4) peer_run "$v.$s.$seq.$r" "$s" "$seq" "$v" ;;
        *) die "unknown variant $v" ;;
      esac
    done
  done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(( $(date +%s) - T0 ))

# ---- report -----------------------------------------------------------------------
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
declare -A LABEL=([lora]="retort LoRA (f32 base)" [qlora]="retort QLoRA (NF4 base)"
                  [eager]="PEFT LoRA, eager (f32 base)" [compile]="PEFT LoRA, torch.compile (f32 base)"
                  [bnb4]="PEFT QLoRA, bitsandbytes NF4 base, eager")
echo "## retort vs PyTorch + PEFT, CPU training step, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "Machine: $CPU, $(nproc) cores; $THREADS threads, OMP_WAIT_POLICY=$OMP_WAIT_POLICY. retort $(git rev-parse --short HEAD)."
echo "Peer: $(cat "$WORK"/peer.*.version 2>/dev/null | sort -u | tail -1 || echo -). LoRA r=16, alpha 32, dropout 0, all linear layers, AdamW; batch $BATCH."
echo "Load average (1/5/15 min) at start: $LOAD_START; at end: $LOAD_END. $ROUNDS round(s); timed steps per run:"
echo "SmolLM2 shape $STEPS_SMOLLM2, 15m shape $STEPS_15M (after retort's first step / the peer's warm-up step); medians."
echo "$(cat "$WORK/expected") Took $(fmt_s "$ELAPSED") (GEMM bounds and model writing not counted)."
echo
echo "GEMM bound / step: (GEMM FLOPs of the step / this machine's sgemm rate measured at each of the"
echo "step's shapes) / the measured step time: the share of the step the GEMMs alone would take."
echo
for c in $CONFIGS; do
  s=${c%%:*} seq=${c##*:}
  read -r gflop bound rate < <(sed -n 's/.*"gemm_gflop":\([0-9.]*\).*"bound_s":\([0-9.]*\),"gflops":\([0-9.]*\).*/\1 \2 \3/p' "$WORK/bound.$s.$seq")
  echo "### $s shape, seq $seq, batch $BATCH: $gflop GFLOP of GEMM per step; sgemm at its shapes $rate GFLOP/s; bound $bound s"
  echo
  echo "| run | s/step | tokens/s | peak RSS MiB | GEMM bound / step | first step s (retort) / warm-up s (peer) | load1 at start |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  declare -A MED=() RSS=()
  for v in $VARIANTS; do
    MED[$v]=$(for r in $(seq 1 "$ROUNDS"); do cut -d' ' -f1 "$WORK/$v.$s.$seq.$r.res"; done | grep -v failed | median || true)
    RSS[$v]=$(for r in $(seq 1 "$ROUNDS"); do rss_mib "$v.$s.$seq.$r"; echo; done | median)
    first=$(for r in $(seq 1 "$ROUNDS"); do cut -d' ' -f2 "$WORK/$v.$s.$seq.$r.res"; done | grep -v failed | median || true)
    load=$(for r in $(seq 1 "$ROUNDS"); do cat "$WORK/$v.$s.$seq.$r.load"; done | median)
    if [ -z "${MED[$v]}" ]; then
      echo "| ${LABEL[$v]} | failed (log: $v.$s.$seq.1.log) | | | | | $load |"
      unset "MED[$v]"
      continue
    fi
    tps=$(awk -v t="${MED[$v]}" -v n=$((BATCH * seq)) 'BEGIN {printf "%.0f", n / t}')
    frac=$(awk -v b="$bound" -v t="${MED[$v]}" 'BEGIN {printf "%.0f%%", 100 * b / t}')
    echo "| ${LABEL[$v]} | ${MED[$v]} | $tps | ${RSS[$v]} | $frac | $first | $load |"
  done
  echo
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
  for v in lora qlora; do
    [ -n "${MED[$v]:-}" ] || continue
    line="${LABEL[$v]}: step"
    [ -n "${MED[eager]:-}" ] && line+=" $(ratio "${MED[$v]}" "${MED[eager]}")x eager's,"
    [ -n "${MED[compile]:-}" ] && line+=" $(ratio "${MED[$v]}" "${MED[compile]}")x compiled's,"
    [ "$v" = qlora ] && [ -n "${MED[bnb4]:-}" ] && line+=" $(ratio "${MED[$v]}" "${MED[bnb4]}")x the bitsandbytes QLoRA peer's,"
    line+=" peak RSS"
    [ -n "${RSS[eager]:-}" ] && line+=" $(ratio "${RSS[$v]}" "${RSS[eager]}")x eager's,"
    [ -n "${RSS[compile]:-}" ] && line+=" $(ratio "${RSS[$v]}" "${RSS[compile]}")x compiled's,"
    [ "$v" = qlora ] && [ -n "${RSS[bnb4]:-}" ] && line+=" $(ratio "${RSS[$v]}" "${RSS[bnb4]}")x the bitsandbytes peer's,"
    echo "- ${line%,}"
  done
  echo
  unset MED RSS
done
