#!/bin/bash
# Does knowledge distillation help? The SmolLM2-135M distillation recipe
# (recipes/smollm2-135m-distill.yaml: teacher SmolLM2-135M-Instruct, student
# from its layers 0/14/28, 25% of its parameters, Moby-Dick) trained with KD
# (forward KL at the recipe's kd_temperature and kd_ratio) and with CE only
# (kd_ratio=0), SEEDS seeds each, at equal steps and data; then reverse KL and
# JSD(beta 0.5) once. Prints one markdown table of held-out perplexities
# (mean, sample standard deviation, min..max) plus the teacher's and the
# student's at initialisation. The seed changes the order of the training
# rows (the initialisation comes from the teacher and is the same for all).
#     bench/kd_bench.sh [path/to/retort] [key=value ...]    (from the repository root)
# Environment: TEACHER (the .gguf or HF dir), SEEDS ["1 2 3"], JOBS [2]
# runs at a time, THREADS [2/JOBS] threads each, WORK (scratch; default a
# temp dir, kept: logs and students stay for inspection; rerunning with the
# same WORK keeps the runs that finished). Every key=value
# is passed to every run (e.g. max_steps=20 to make it smaller).
set -euo pipefail
RETORT=${1:-build/retort}
shift || true
RECIPE=recipes/smollm2-135m-distill.yaml
TEACHER=${TEACHER:-out/models/SmolLM2-135M-Instruct.Q4_1.gguf}
SEEDS=${SEEDS:-1 2 3}
JOBS=${JOBS:-2}
THREADS=${THREADS:-$((2 / JOBS > 0 ? 2 / JOBS : 1))}
WORK=${WORK:-$(mktemp -d /tmp/kd-bench.XXXXXX)}
mkdir -p "$WORK"
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS
KL_SEED=${KL_SEED:-${SEEDS%% *}}
# The seed also draws the held-out split, so each seed has its own train
# rows and its own teacher cache; KD and CE of one seed see the same data.
common=(teacher_model="$TEACHER" save_steps=0 "$@")
echo "kd_bench: work dir $WORK, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

run() { # name, seed, overrides... (a run whose log already has its result is kept)
    local name=$1 seed=$2; shift 2
    if grep -q '^distill: held-out perplexity' "$WORK/$name.log" 2>/dev/null; then
        echo "kd_bench: $name kept from an earlier run" >&2
        return 0
    fi
    /usr/bin/time -f "time: wall %e s, cpu %U s" "$RETORT" distill "$RECIPE" "${common[@]}" \
        output_dir="$WORK/$name" seed="$seed" teacher_cache_dir="$WORK/cache-$seed" "$@" > "$WORK/$name.log" 2>&1 ||
        { echo "run $name failed:" >&2; tail -3 "$WORK/$name.log" >&2; return 1; }
    echo "kd_bench: $name done ($(grep -o 'wall .*' "$WORK/$name.log"))" >&2
}

# KD runs build their seed's teacher cache; the KL/JSD runs read KL_SEED's,
# so they start after kd-$KL_SEED
run kd-$KL_SEED $KL_SEED &
kd_first=$!
pending=()
for s in $SEEDS; do
    [ "$s" = "$KL_SEED" ] || pending+=("kd-$s $s")
    pending+=("ce-$s $s kd_ratio=0")
done
later=("rkl-$KL_SEED $KL_SEED kd_loss=reverse_kl" "jsd-$KL_SEED $KL_SEED kd_loss=jsd kd_beta=0.5")
for job in "${pending[@]}" WAIT "${later[@]}"; do
    if [ "$job" = WAIT ]; then wait "$kd_first"; continue; fi
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
    # shellcheck disable=SC2086
    run $job &
done
wait

ppl() { sed -n 's/^distill: held-out perplexity [0-9.]* -> \([0-9.]*\).*/\1/p' "$WORK/$1.log"; }
stats() { # values... -> "mean ± sd (min..max)"
    printf '%s\n' "$@" | awk '{v[NR]=$1; s+=$1} END {m=s/NR; for(i=1;i<=NR;i++) q+=(v[i]-m)^2;
        sd=NR>1?sqrt(q/(NR-1)):0; mn=v[1]; mx=v[1]; for(i=2;i<=NR;i++){if(v[i]<mn)mn=v[i]; if(v[i]>mx)mx=v[i]}
        printf "%.2f ± %.2f (%.2f..%.2f)", m, sd, mn, mx}'
}
kd=() ce=()
for s in $SEEDS; do kd+=("$(ppl kd-$s)"); ce+=("$(ppl ce-$s)"); done
log=$WORK/kd-$KL_SEED.log
teacher=$(sed -n 's/^distill: teacher held-out perplexity \([0-9.]*\).*/\1/p' "$log")
init=$(sed -n 's/^distill: held-out perplexity \([0-9.]*\) -> .*/\1/p' "$log")
kdline=$(sed -n 's/^distill: loss = \(.*\)/\1/p' "$log")
steps=$(sed -n 's/^distill: \([0-9]*\) steps in \([0-9.]*\) s (\([0-9]*\) tokens\/s).*/\1 steps, \2 s, \3 tokens\/s/p' "$log")
echo
echo "KD loss: $kdline; seed $KL_SEED: $(grep -m1 '^distill: .* train rows' "$log" | sed 's/^distill: //'); kd-$KL_SEED: $steps"
echo
echo "| run | held-out perplexity, mean ± sd (min..max) over seeds $SEEDS |"
echo "|---|---|"
echo "| teacher (SmolLM2-135M-Instruct), seed $KL_SEED split | $teacher |"
echo "| student at initialisation (teacher layers), seed $KL_SEED split | $init |"
echo "| student, KD (forward KL) | $(stats "${kd[@]}") |"
echo "| student, CE only (kd_ratio 0) | $(stats "${ce[@]}") |"
echo "| student, KD reverse KL (seed $KL_SEED) | $(ppl rkl-$KL_SEED) |"
echo "| student, KD JSD β=0.5 (seed $KL_SEED) | $(ppl jsd-$KL_SEED) |"
echo
echo "| seed | teacher | student at init | KD (forward KL) | CE only | KD - CE |"
echo "|---|---|---|---|---|---|"
for s in $SEEDS; do
    t=$(sed -n 's/^distill: teacher held-out perplexity \([0-9.]*\).*/\1/p' "$WORK/kd-$s.log")
    i=$(sed -n 's/^distill: held-out perplexity \([0-9.e+]*\) -> .*/\1/p' "$WORK/kd-$s.log")
    k=$(ppl kd-$s) c=$(ppl ce-$s)
    echo "| $s | $t | $(printf '%.3g' "$i") | $k | $c | $(awk -v a="$k" -v b="$c" 'BEGIN {printf "%.2f", a - b}') |"
done
echo
echo "kd_bench: load average at the end $(cut -d' ' -f1-3 /proc/loadavg)" >&2
