#!/usr/bin/env bash
# The main job, from a fresh machine: install and build (scripts/setup.sh), fetch
# SmolLM2-135M-Instruct as the GGUF llama.cpp runs (scripts/get-models.sh), QLoRA-fine-tune it
# on Moby-Dick with recipes/smollm2-135m-qlora-mobydick.yaml (held-out perplexity before and
# after, PEFT adapter + llama.cpp GGUF adapter), then generate with the adapter — in retort and,
# when llama-cpp-python is installed in the interop venv ($RETORT_PYTHON, else
# $RETORT_CACHE/venv-interop-*/bin/python), in llama.cpp with the GGUF adapter.
# Extra arguments are recipe overrides (e.g. max_steps=10).
# The previous main job (stories260K, ~1 min): retort finetune recipes/stories260k-qlora-mobydick.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SHARED=${RETORT_SHARED:-../shared}
GGUF=$(bash scripts/get-models.sh smollm2)
OUT=out/smollm2-135m-qlora-mobydick
PROMPT="Call me Ishmael. Some years ago"
echo "base: $GGUF"
/usr/bin/time -f "finetune: %e s wall, peak RSS %M KB" \
  build/retort finetune recipes/smollm2-135m-qlora-mobydick.yaml base_model="$GGUF" \
  datasets.0.path="$SHARED/data/moby-dick.txt" output_dir="$OUT" "$@"
echo
echo "held-out perplexity (metrics.jsonl, first and last evaluation):"
grep val_ppl "$OUT/metrics.jsonl" | sed -n '1p;$p'
echo
echo "retort, greedy, with the adapter:"
build/retort generate --model "$GGUF" --adapter "$OUT" --prompt "$PROMPT" --max-new-tokens 40 \
  --temperature 0
echo
PY=${RETORT_PYTHON:-$(ls -d "${RETORT_CACHE:-$HOME/.cache/retort}"/venv-interop-*/bin/python 2>/dev/null | head -1)}
if [ -n "$PY" ] && [ -x "$PY" ] && "$PY" -c "import llama_cpp" 2>/dev/null; then
  echo "llama.cpp (llama-cpp-python), greedy, with $OUT/adapter_model.gguf:"
  "$PY" - "$GGUF" "$OUT/adapter_model.gguf" "$PROMPT" <<'PY'
import sys
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], lora_path=sys.argv[2], n_ctx=256, n_threads=2, verbose=False)
out = llm(sys.argv[3], max_tokens=40, temperature=0.0)
print(sys.argv[3] + out["choices"][0]["text"])
PY
else
  echo "(llama.cpp step skipped: no interop venv with llama-cpp-python${PY:+ at $PY})"
fi
