#!/bin/bash
# Real text or the teacher's own generations? The SmolLM2-135M distillation
# recipe (recipes/smollm2-135m-distill.yaml: teacher SmolLM2-135M-Instruct,
# student from its layers 0/14/28, 25% of its parameters, KD at the recipe's
# loss) trained twice per seed at equal steps and batch: once on real text
# (Moby-Dick) and once on text the teacher writes itself (`type:
# teacher_generate`, sequence-level KD, Kim & Rush 2016), with about as many
# unique training tokens. Both are scored on the same real held-out text, a
# part of Moby-Dick neither trains on. Prints one markdown table.
#     bench/gen_bench.sh [path/to/retort] [key=value ...]    (from the repository root)
# Environment: TEACHER (the .gguf or HF dir), SEEDS ["42"], JOBS [2] runs at
# a time, THREADS [2/JOBS] threads each, WORK (scratch; default a temp dir,
# kept; rerunning with the same WORK keeps the runs that finished),
# GEN_SAMPLES [48] and GEN_TOKENS [128] (teacher_generate's num_samples and
# max_new_tokens), REAL_SHARDS [48] (the real train text is the first
# 1/REAL_SHARDS of Moby-Dick: 24 windows of 256 tokens at 48, ~6.1K tokens, the
# size of the generated set at the defaults). Every key=value is passed to
# every run.
set -euo pipefail
RETORT=${1:-build/retort}
shift || true
RECIPE=recipes/smollm2-135m-distill.yaml
TEACHER=${TEACHER:-out/models/SmolLM2-135M-Instruct.Q4_1.gguf}
SEEDS=${SEEDS:-42}
JOBS=${JOBS:-2}
THREADS=${THREADS:-$((2 / JOBS > 0 ? 2 / JOBS : 1))}
WORK=${WORK:-$(mktemp -d /tmp/gen-bench.XXXXXX)}
GEN_SAMPLES=${GEN_SAMPLES:-48}
GEN_TOKENS=${GEN_TOKENS:-128}
REAL_SHARDS=${REAL_SHARDS:-48}
MOBY=${RETORT_SHARED:-../shared}/data/moby-dick.txt
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS
# Held out for both: 1/128 of the book from its middle (shard 64 of 128,
# ~2.4K tokens), far from the real train text at its start. Packing puts the
# generated texts (mostly shorter than 256 tokens) into full rows, so a step
# trains on the same number of tokens in both runs.
test_set="test_datasets=[{path: $MOBY, type: text, shards: 128, shards_idx: 64}]"
real_set="datasets=[{path: $MOBY, type: text, shards: $REAL_SHARDS, shards_idx: 0}]"
gen_set="datasets=[{path: teacher-gen.jsonl, type: teacher_generate, num_samples: $GEN_SAMPLES, \
max_new_tokens: $GEN_TOKENS, temperature: 1.0, top_p: 0.9, seed: 1234}]"
common=(teacher_model="$TEACHER" save_steps=0 val_set_size=0 sample_packing=true "$test_set" "$@")
echo "gen_bench: work dir $WORK, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

run() { # name, seed, datasets override (a run whose log already has its result is kept)
    local name=$1 seed=$2 data=$3
    if grep -q '^distill: held-out perplexity' "$WORK/$name.log" 2>/dev/null; then
        echo "gen_bench: $name kept from an earlier run" >&2
        return 0
    fi
    /usr/bin/time -f "time: wall %e s, cpu %U s" "$RETORT" distill "$RECIPE" "${common[@]}" "$data" \
        output_dir="$WORK/$name" seed="$seed" teacher_cache_dir="$WORK/cache-$name" > "$WORK/$name.log" 2>&1 ||
        { echo "run $name failed:" >&2; tail -3 "$WORK/$name.log" >&2; return 1; }
    echo "gen_bench: $name done ($(grep -o 'wall .*' "$WORK/$name.log"), load $(cut -d' ' -f1 /proc/loadavg))" >&2
}

for s in $SEEDS; do
    for job in "gen-$s" "real-$s"; do
        while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
        case $job in gen-*) run "$job" "$s" "$gen_set" & ;; *) run "$job" "$s" "$real_set" & ;; esac
    done
done
wait

ppl() { sed -n 's/^distill: held-out perplexity [0-9.e+]* -> \([0-9.]*\).*/\1/p' "$WORK/$1.log"; }
field() { sed -n "$2" "$WORK/$1.log" | head -1; }
echo
echo "Held out: Moby-Dick shard 64 of 128 ($(field "real-${SEEDS%% *}" 's/^distill: \([0-9]*\) train rows, \([0-9]*\) held-out rows.*/\2 rows of 256/p')); teacher held-out perplexity $(field "real-${SEEDS%% *}" 's/^distill: teacher held-out perplexity \([0-9.]*\).*/\1/p')."
echo "Generated: $(field "gen-${SEEDS%% *}" 's/^distill: teacher generated \(.*\)/\1/p')"
echo
echo "| seed | train data | unique train tokens | train rows | student at init | student after | wall s |"
echo "|---|---|---:|---:|---:|---:|---|"
for s in $SEEDS; do
    for v in real gen; do
        n=$v-$s
        rows=$(field "$n" 's/^distill: \([0-9]*\) train rows.*/\1/p')
        toks=$(field "$n" 's/^distill: teacher cache .*: \([0-9]*\) tokens, top.*/\1/p')
        init=$(field "$n" 's/^distill: held-out perplexity \([0-9.e+]*\) -> .*/\1/p')
        wall=$(field "$n" 's/^time: wall \([0-9.]*\) s.*/\1/p')
        what=$([ "$v" = real ] && echo "Moby-Dick, first 1/$REAL_SHARDS" || echo "teacher_generate, $GEN_SAMPLES x <= $GEN_TOKENS tokens")
        echo "| $s | $what | $toks | $rows | $(printf '%.3g' "$init") | **$(ppl "$n")** | $wall |"
    done
done
echo "gen_bench: load average at the end $(cut -d' ' -f1-3 /proc/loadavg)" >&2
