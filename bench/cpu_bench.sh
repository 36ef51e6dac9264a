#!/usr/bin/env bash
# retort CPU benchmarks: eval (forward) tokens/s, train tokens/s and peak RSS,
# NF4 vs f32 base-weight bytes. Prints markdown tables on stdout; progress and
# logs go to stderr and $WORK. See bench/README.md for what each number means.
#
#   bash bench/cpu_bench.sh            # from anywhere; about 5 minutes on 2 cores
#
# Environment (defaults in brackets):
#   THREADS [2]        OMP_NUM_THREADS / OPENBLAS_NUM_THREADS for every run
#   TEXT_KB [200]      eval text: the first TEXT_KB KiB of moby-dick.txt (whole lines)
#   STEPS_260K [30]    optimizer steps of the main recipe run
#   STEPS_15M [12]      optimizer steps of each synthetic-15M run
#   SKIP_BUILD [0]     1: use the existing build/ instead of running scripts/setup.sh
#   BUILD_DIR [build]  where retort and libretort_core.a are
#   RETORT_SHARED [../shared]  models, tokenizers and text
#   WORK [mktemp -d]   scratch dir (synthetic model, logs, adapters); removed
#                      at the end unless KEEP=1 or WORK was given
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS=${THREADS:-2}
TEXT_KB=${TEXT_KB:-200}
STEPS_260K=${STEPS_260K:-30}
STEPS_15M=${STEPS_15M:-12}
BUILD_DIR=${BUILD_DIR:-build}
SHARED=${RETORT_SHARED:-../shared}
RETORT=$BUILD_DIR/retort
KEEP=${KEEP:-0}
if [ -z "${WORK:-}" ]; then
  WORK=$(mktemp -d /tmp/retort-bench.XXXXXX)
  [ "$KEEP" = 1 ] || trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK"
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS

log() { echo "cpu_bench: $*" >&2; }
die() { log "$*"; exit 1; }

# ---- prerequisites ----------------------------------------------------------
if [ ! -x /usr/bin/time ]; then
  log "installing GNU time (/usr/bin/time) for peak RSS"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get install -y -qq time >/dev/null || die "need /usr/bin/time: apt-get install time"
fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "building ($BUILD_DIR) with scripts/setup.sh"
  bash scripts/setup.sh >&2
fi
[ -x "$RETORT" ] || die "$RETORT not found: run bash scripts/setup.sh (or unset SKIP_BUILD)"
for f in models/stories260K/stories260K.bin models/stories260K/tok512.bin \
         tokenizers/llama2/tokenizer.bin data/moby-dick.txt; do
  [ -f "$SHARED/$f" ] || die "$SHARED/$f missing (set RETORT_SHARED)"
done

# make_synthetic links against the library with the same libraries as retort.
LINK_TXT=$BUILD_DIR/CMakeFiles/retort.dir/link.txt
if [ -f "$LINK_TXT" ]; then
  RPATH=$(grep -o -- '-Wl,-rpath,[^ ]*' "$LINK_TXT" || true)
  LIBS=$(sed -e 's/.*libretort_core\.a//' "$LINK_TXT")
else
  RPATH="" LIBS="-lcjson -lyaml -lzstd -lopenblas -fopenmp -lm"
fi
# shellcheck disable=SC2086  # LIBS is a list of words
gcc -std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -I. bench/make_synthetic.c \
    "$BUILD_DIR/libretort_core.a" $RPATH $LIBS -o "$WORK/make_synthetic"

# ---- inputs -----------------------------------------------------------------
M260=$SHARED/models/stories260K/stories260K.bin
T260=$SHARED/models/stories260K/tok512.bin
SYN=$WORK/syn15m
TEXT=$WORK/moby-${TEXT_KB}k.txt
# whole lines only, so the cut never splits a UTF-8 sequence
head -c $((TEXT_KB * 1024)) "$SHARED/data/moby-dick.txt" | sed '$d' > "$TEXT"
log "synthetic stories15M-shape model -> $SYN"
"$WORK/make_synthetic" "$SYN" --tokenizer "$SHARED/tokenizers/llama2/tokenizer.bin" 2>"$WORK/make_synthetic.log" \
  || die "make_synthetic failed: $(cat "$WORK/make_synthetic.log")"

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# timed NAME CMD...: runs CMD with stdout+stderr in $WORK/NAME.log and GNU time's
# report in $WORK/NAME.time; fails loudly with the log's tail.
timed() {
  local name=$1; shift
  cut -d' ' -f1 /proc/loadavg > "$WORK/$name.load"
  if ! /usr/bin/time -v -o "$WORK/$name.time" "$@" >"$WORK/$name.log" 2>&1; then
    tail -5 "$WORK/$name.log" >&2
    die "$name failed (log: $WORK/$name.log)"
  fi
}
rss_mib() { awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$WORK/$1.time"; }
load1() { cat "$WORK/$1.load"; }  # 1-minute load average when the run started
cpu_pct() { awk -F': ' '/Percent of CPU this job got/ {print $2}' "$WORK/$1.time"; }
wall_s() {  # "Elapsed (wall clock) time (h:mm:ss or m:ss): 0:17.84"
  awk '/Elapsed \(wall clock\)/ {n = split($NF, a, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + a[i];
       printf "%.1f", s}' "$WORK/$1.time"
}

# ---- 1. eval tokens/s -------------------------------------------------------
eval_row() {  # name label model [--tokenizer T]
  local name=$1 label=$2; shift 2
  log "eval $label"
  timed "$name" "$RETORT" eval --model "$@" --data "$TEXT" --seq-len 256
  # stderr: "eval: N tokens in S s (R tokens/s)" -- timed over the forward passes only
  local line; line=$(grep -o 'eval: [0-9]* tokens in [0-9.]* s ([0-9]* tokens/s)' "$WORK/$name.log")
  local n s r ppl
  n=$(echo "$line" | awk '{print $2}'); s=$(echo "$line" | awk '{print $5}')
  r=$(echo "$line" | sed 's/.*(\([0-9]*\) tokens\/s)/\1/')
  ppl=$(grep -o 'ppl=[0-9.]*' "$WORK/$name.log" | cut -d= -f2)
  EVAL_ROWS+="| $label | $n | $s | **$r** | $ppl | $(rss_mib "$name") | $(cpu_pct "$name") | $(load1 "$name") |"$'\n'
}
EVAL_ROWS=""
eval_row eval260k "stories260K (.bin, tok512)" "$M260" --tokenizer "$T260"
eval_row eval15m "synthetic 15M (HF dir, Llama-2 vocab)" "$SYN"

# ---- 2. train tokens/s and peak RSS ----------------------------------------
# Steady-state rate: steps 2..N from metrics.jsonl (each step's tokens / its own
# time), so start-up, the first step (arena growth) and the held-out evals are
# all excluded. retort's own figure (steps 1..N plus the final one-row eval) is
# shown beside it.
steady_tps() {  # metrics.jsonl tokens_per_step
  awk -v tok="$2" '/"tokens_per_s"/ {
      match($0, /"step":[0-9]+/); st = substr($0, RSTART + 7, RLENGTH - 7) + 0
      match($0, /"tokens_per_s":[0-9.]+/); r = substr($0, RSTART + 15, RLENGTH - 15) + 0
      if (st > 1 && r > 0) { n++; dt += tok / r } }
    END { if (n) printf "%.0f", n * tok / dt; else printf "n/a" }' "$1"
}
TRAIN_ROWS=""
train_row() {  # name label steps micro_batch recipe-overrides...
  local name=$1 label=$2 steps=$3 mb=$4; shift 4
  log "train $label ($steps steps)"
  rm -rf "$WORK/$name.out"
  timed "$name" "$RETORT" finetune recipes/stories260k-qlora-mobydick.yaml "$@" \
    max_steps="$steps" micro_batch_size="$mb" sequence_len=256 gradient_accumulation_steps=1 \
    eval_steps=0 val_set_size=1 logging_steps=10 save_steps=0 output_dir="$WORK/$name.out"
  local trainable overall steady
  trainable=$(sed -n 's/.*, \([0-9]*\) trainable of \([0-9]*\) parameters.*/\1 of \2/p' "$WORK/$name.log")
  overall=$(sed -n 's/.*steps in [0-9.]* s (\([0-9]*\) tokens\/s).*/\1/p' "$WORK/$name.log")
  steady=$(steady_tps "$WORK/$name.out/metrics.jsonl" $((mb * 256)))
  TRAIN_ROWS+="| $label | $trainable | $steps x $mb x 256 | **$steady** | $overall | $(wall_s "$name") | **$(rss_mib "$name")** | $(cpu_pct "$name") | $(load1 "$name") |"$'\n'
}
train_row train260k "stories260K QLoRA (main recipe), no ckpt" "$STEPS_260K" 8
SYNARGS=(base_model="$SYN" tokenizer="$SYN" datasets.0.path="$TEXT")
train_row q15m "15M QLoRA (NF4 base), no ckpt" "$STEPS_15M" 4 "${SYNARGS[@]}" gradient_checkpointing=false
train_row q15m_ck "15M QLoRA (NF4 base), grad ckpt" "$STEPS_15M" 4 "${SYNARGS[@]}" gradient_checkpointing=true
train_row l15m "15M LoRA (f32 base), no ckpt" "$STEPS_15M" 4 "${SYNARGS[@]}" load_in_4bit=false adapter=lora gradient_checkpointing=false
train_row l15m_ck "15M LoRA (f32 base), grad ckpt" "$STEPS_15M" 4 "${SYNARGS[@]}" load_in_4bit=false adapter=lora gradient_checkpointing=true

# ---- 3. base-weight bytes: NF4 vs f32 --------------------------------------
QUANT_ROWS=""
quant_row() {  # name label model [--tokenizer T]
  local name=$1 label=$2; shift 2
  log "quantize $label"
  timed "$name" "$RETORT" quantize --model "$@" --out "$WORK/$name.out"
  # "quantize: 42 projections, 5971968 parameters, NF4 blocksize 64 with double quantization"
  # "quantize: 4.1273 bits per parameter (4.1270 nominal, QLoRA paper)"
  # "quantize: model tensors 60766848 -> 40012662 bytes (1.52x smaller)"
  local np bits before after
  np=$(sed -n 's/.*projections, \([0-9]*\) parameters.*/\1/p' "$WORK/$name.log")
  bits=$(sed -n 's/quantize: \([0-9.]*\) bits per parameter.*/\1/p' "$WORK/$name.log")
  before=$(sed -n 's/.*model tensors \([0-9]*\) -> \([0-9]*\) bytes.*/\1/p' "$WORK/$name.log")
  after=$(sed -n 's/.*model tensors \([0-9]*\) -> \([0-9]*\) bytes.*/\2/p' "$WORK/$name.log")
  QUANT_ROWS+="| $label | $np | 4.0000 | $(awk -v b="$bits" 'BEGIN {printf "%.4f", b / 8}') ($bits bits) | $(awk -v x="$before" 'BEGIN {printf "%.2f", x / 1048576}') | $(awk -v x="$after" 'BEGIN {printf "%.2f", x / 1048576}') |"$'\n'
}
quant_row quant260k "stories260K" "$M260" --tokenizer "$T260"
quant_row quant15m "synthetic 15M (tied)" "$SYN"

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- report -----------------------------------------------------------------
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
REV=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
DIRTY=""
if git status --porcelain 2>/dev/null | grep -qv '^??'; then DIRTY=" (+ uncommitted changes)"; fi
cat <<EOF
## retort CPU benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')

Machine: $CPU, $(nproc) cores; $THREADS threads (OMP_NUM_THREADS). retort $REV$DIRTY.
Load average (1/5/15 min) at start: $LOAD_START; at end: $LOAD_END.
CPU: the process's (user + system) / wall time from /usr/bin/time, whole run ($THREADS x 100% = it had all its
cores); load1: the 1-minute load average as it started. Low CPU / high load1: other work shared the cores.
Text: first $TEXT_KB KiB of moby-dick.txt (whole lines). Synthetic 15M: stories15M's shape, tied embeddings, N(0, 0.02).

### Eval (forward only, seq 256, batch 4)

| model | tokens | seconds | tokens/s | ppl | peak RSS MiB | CPU | load1 |
|---|---:|---:|---:|---:|---:|---:|---:|
$EVAL_ROWS
### Fine-tuning (seq 256, LoRA r=8 on all linear layers, AdamW)

Steady tokens/s: steps 2..N (metrics.jsonl), no start-up, no eval. retort tokens/s: what
\`retort finetune\` prints (steps 1..N plus the final one-row held-out eval).
Peak RSS: whole process (/usr/bin/time -v), loading and tokenization included.

| run | trainable of total params | steps x batch x seq | steady tokens/s | retort tokens/s | wall s | peak RSS MiB | CPU | load1 |
|---|---|---|---:|---:|---:|---:|---:|---:|
$TRAIN_ROWS
### Base weights: bytes per parameter (retort quantize, blocksize 64, double quantization)

Quantized: the linear projections (q/k/v/o/gate/up/down); embeddings and norms stay f32.

| model | projection params | f32 bytes/param | NF4 bytes/param | all tensors f32 MiB | all tensors NF4 MiB |
|---|---:|---:|---:|---:|---:|
$QUANT_ROWS
EOF
