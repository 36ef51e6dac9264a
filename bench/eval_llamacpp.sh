#!/usr/bin/env bash
# Prompt processing (forward only, no sampling): `retort eval` against llama.cpp
# (llama-cpp-python from the interop venv) on the same GGUF, the same text and the same
# threads, windows of SEQ tokens scored one after another. For information (issue #14):
# retort dequantizes the GGUF to f32 and runs f32 GEMMs; llama.cpp computes on the
# quantized weights (Q4_1 x Q8_1 dot products).
#   bash bench/eval_llamacpp.sh [GGUF]     (default: scripts/get-models.sh smollm2)
# Environment: SEQ [512], CHARS [60000] (characters of Moby-Dick), THREADS [2], BUILD_DIR [build],
#   RETORT_PYTHON (default: $RETORT_CACHE/venv-interop-*/bin/python, made by tests/interop/run.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
SEQ=${SEQ:-512} CHARS=${CHARS:-60000} THREADS=${THREADS:-2} BUILD_DIR=${BUILD_DIR:-build}
SHARED=${RETORT_SHARED:-../shared}
GGUF=${1:-$(bash scripts/get-models.sh smollm2)}
PY=${RETORT_PYTHON:-$(ls -d "${RETORT_CACHE:-$HOME/.cache/retort}"/venv-interop-*/bin/python 2>/dev/null | head -1)}
[ -n "$PY" ] && "$PY" -c "import llama_cpp" 2>/dev/null ||
  { echo "eval_llamacpp: no llama-cpp-python (run tests/interop/run.sh once)" >&2; exit 2; }
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
text=$(mktemp /tmp/retort-evalbench.XXXXXX)
trap 'rm -f "$text" "$text.ids"' EXIT
head -c "$CHARS" "$SHARED/data/moby-dick.txt" > "$text"
"$BUILD_DIR/retort" tokenize --tokenizer "$GGUF" < "$text" > "$text.ids"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "retort eval (f32 compute from the dequantized GGUF), seq $SEQ:"
/usr/bin/time -f "  wall %e s, peak RSS %M KB" "$BUILD_DIR/retort" eval --model "$GGUF" --data "$text" \
  --seq-len "$SEQ" 2>&1 | grep -E "tokens in|wall|nll" | sed 's/^/  /'
echo "llama.cpp (llama-cpp-python $("$PY" -c 'import llama_cpp; print(llama_cpp.__version__)'), quantized compute), seq $SEQ:"
"$PY" - "$GGUF" "$text.ids" "$SEQ" "$THREADS" <<'PY'
import sys, time
import numpy as np
from llama_cpp import Llama
gguf, ids_path, seq, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ids = [int(x) for x in open(ids_path).read().split()]
llm = Llama(model_path=gguf, n_ctx=seq, n_batch=seq, n_ubatch=seq, n_threads=threads,
            n_threads_batch=threads, logits_all=True, verbose=False)
t_eval, nll, n = 0.0, 0.0, 0
for s in range(0, len(ids) - 1, seq):
    w = ids[s:s + seq]
    if len(w) < 2: break
    t0 = time.perf_counter()
    llm.reset(); llm.eval(w)
    t_eval += time.perf_counter() - t0   # llama.cpp's forward only, not the NLL below
    lg = np.asarray(llm.scores[:len(w) - 1], dtype=np.float64)
    m = lg.max(axis=1, keepdims=True)
    lse = (m[:, 0] + np.log(np.exp(lg - m).sum(axis=1)))
    nll += float((lse - lg[np.arange(len(w) - 1), w[1:]]).sum()); n += len(w) - 1
print("  %d tokens in %.2f s of llm.eval (%.0f tokens/s), nll %.4f over %d predictions"
      % (len(ids), t_eval, len(ids) / t_eval, nll / n, n))
PY
