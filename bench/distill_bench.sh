#!/bin/bash
# Distillation throughput: student training tokens/s with the online teacher
# vs the teacher-logit cache, and the cache's size per token for k = 8, 32,
# 128 (stories260K teacher -> the recipe's new student, teacher-generated
# data). Run from the repository root after building:
#     bench/distill_bench.sh [path/to/retort]
# Prints a table; scratch output goes to a temp dir that is removed.
set -euo pipefail
RETORT=${1:-build/retort}
RECIPE=recipes/stories260k-distill.yaml
STEPS=${STEPS:-30}
SAMPLES=${SAMPLES:-100}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
common=(max_steps=$STEPS eval_steps=0 logging_steps=1000 val_set_size=2
        datasets.0.num_samples=$SAMPLES save_steps=0)

field() { # $1 log, $2 sed expression -> first match
    sed -n "$2" "$1" | head -1
}

run() { # $1 name, rest: overrides
    local name=$1; shift
    "$RETORT" distill "$RECIPE" output_dir="$TMP/$name" "${common[@]}" "$@" > "$TMP/$name.log" 2>&1 ||
        { echo "run $name failed:"; tail -3 "$TMP/$name.log"; exit 1; }
}

tps() { field "$1" 's/.* steps in .* s (\([0-9]*\) tokens\/s).*/\1/p'; }

printf "%-34s %10s %12s %12s %14s\n" "mode" "tokens/s" "cache B/tok" "compression" "cache time s"
for k in 8 32 128; do
    run online-$k kd_top_k=$k teacher_logits=online
    run build-$k kd_top_k=$k teacher_logits=cache teacher_cache_dir="$TMP/cache-$k"
    run read-$k kd_top_k=$k teacher_logits=cache teacher_cache_dir="$TMP/cache-$k"
    bpt=$(field "$TMP/build-$k.log" 's/.* \([0-9.]*\) bytes\/token.*/\1/p')
    ratio=$(field "$TMP/build-$k.log" 's/.*compression \([0-9.]*\)x.*/\1/p')
    tb=$(field "$TMP/build-$k.log" 's/.*teacher cache .* built in \([0-9.]*\) s.*/\1/p')
    tr=$(field "$TMP/read-$k.log" 's/.*teacher cache .* read in \([0-9.]*\) s.*/\1/p')
    printf "%-34s %10s %12s %12s %14s\n" "online teacher, top-$k" "$(tps "$TMP/online-$k.log")" - - -
    printf "%-34s %10s %12s %12s %14s\n" "cache (first run builds), top-$k" "$(tps "$TMP/build-$k.log")" "$bpt" "${ratio}x" "$tb"
    printf "%-34s %10s %12s %12s %14s\n" "cache (later run reads), top-$k" "$(tps "$TMP/read-$k.log")" "$bpt" "${ratio}x" "$tr"
done
run ce kd_ratio=0
printf "%-34s %10s %12s %12s %14s\n" "no teacher (kd_ratio=0)" "$(tps "$TMP/ce.log")" - - -
