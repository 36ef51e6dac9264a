#!/usr/bin/env bash
# Fuzzing in CI (issue #11): builds one libFuzzer target per parser
# (tests/fuzz/fuzz.c, build-fuzz/, clang with -fsanitize=fuzzer,address,
# undefined), makes each a seed corpus with the retort binary of build/
# (run scripts/setup.sh first) — files retort itself writes, not copied
# data — and runs every target for FUZZ_SECONDS (default 20) seconds.
# Fails on any crash, sanitizer report, leak, input slower than 1 s or
# over 2 GB of memory; the failing input is left in build-fuzz/artifacts/.
# Inputs that once failed live in tests/fuzz/regressions/<target>/ and are
# replayed first. FUZZ_TARGETS="recipe llama2c" runs a subset.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-20}
shared=${RETORT_SHARED:-../shared}
all="safetensors config_json adapter_config tokenizer_json tokenizer_bin gpt2_bpe llama2c recipe dataset checkpoint gguf teacher_cache"
targets=${FUZZ_TARGETS:-$all}
command -v clang >/dev/null || { echo "fuzz.sh: needs clang and libclang-rt-14-dev (scripts/setup.sh)"; exit 1; }
CC=clang cmake -S . -B build-fuzz -DRETORT_FUZZ=ON -DRETORT_CUDA=OFF -DRETORT_MPI=OFF \
  -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-fuzz -j"$(nproc)" >/dev/null

# ---- seeds, written by retort (and a few hand-made minimal files) ----
seeds=build-fuzz/seeds
rm -rf "$seeds" && mkdir -p "$seeds"
bin=$shared/models/stories260K/stories260K.bin tok=$shared/models/stories260K/tok512.bin
build/retort convert llama2c "$bin" --tokenizer "$tok" --out "$seeds/hf" >/dev/null 2>&1
mkdir -p "$seeds/in/gguf"
build/retort export gguf --model "$bin" --tokenizer "$tok" --type q8_0 --out "$seeds/in/gguf/s.gguf" >/dev/null 2>&1
printf 'Call me Ishmael. Some years ago, never mind how long precisely.\n' > "$seeds/text.txt"
for i in $(seq 40); do cat "$seeds/text.txt"; done > "$seeds/train.txt"
build/retort finetune recipes/stories260k-qlora-mobydick.yaml base_model="$bin" tokenizer="$tok" \
  datasets.0.path="$seeds/train.txt" sequence_len=32 micro_batch_size=2 val_set_size=0 eval_steps=0 \
  max_steps=2 save_steps=1 lora_dropout=0 output_dir="$seeds/ft" >/dev/null 2>&1
python3 - "$seeds" <<'PY'
import json, os, struct, sys
d = sys.argv[1]
def w(name, data):
    os.makedirs(os.path.join(d, 'in', os.path.dirname(name)), exist_ok=True)
    open(os.path.join(d, 'in', name), 'wb').write(data)
# safetensors: two small tensors
hdr = json.dumps({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
                  "b": {"dtype": "BF16", "shape": [3], "data_offsets": [16, 22]},
                  "__metadata__": {"format": "pt"}}).encode()
w('safetensors/small.safetensors', struct.pack('<Q', len(hdr)) + hdr + bytes(22))
# tokenizer.bin (llama2.c): max_len, then score, len, bytes per token
toks = [b'<unk>', b'<s>', b'</s>', b' ', b'a', b'b', b'ab', b' ab']
w('tokenizer_bin/tok.bin', struct.pack('<i', 3) + b''.join(struct.pack('<fi', -i, len(t)) + t for i, t in enumerate(toks)))
# GPT-2 encoder.json NUL vocab.bpe
enc = {"a": 0, "b": 1, "ab": 2, "\u0120": 3, "\u0120ab": 4, "<|endoftext|>": 5}
w('gpt2_bpe/gpt2', json.dumps(enc).encode() + b'\0' + '#version: 0.2\na b\n\u0120 ab\n'.encode())
# llama2.c .bin: dim 8, hidden 16, 1 layer, 2 heads, 2 kv heads, vocab 16 (shared), seq 4
D, F, L, H, KV, V, S = 8, 16, 1, 2, 2, 16, 4
hd = D // H
n = V*D + L*D + 2*L*D*D + 2*L*KV*hd*D + L*D + 3*L*F*D + D + S*hd
w('llama2c/tiny.bin', struct.pack('<7i', D, F, L, H, KV, V, S) + struct.pack('<%df' % n, *([0.01] * n)))
# dataset lines (jsonl, field text)
w('dataset/lines.jsonl', b'{"text": "Call me Ishmael."}\n{"text": "Some years ago"}\n{"text": ""}\n')
PY
mkseed() { mkdir -p "$seeds/$1"; shift_t=$1; shift; for f in "$@"; do [ -f "$f" ] && cp "$f" "$seeds/$shift_t/"; done; true; }
mkseed safetensors "$seeds"/in/safetensors/*
mkseed config_json "$seeds/hf/config.json"
mkseed adapter_config "$seeds/ft/adapter_config.json"
mkseed tokenizer_json "$seeds/hf/tokenizer.json"
mkseed tokenizer_bin "$seeds"/in/tokenizer_bin/*
mkseed gpt2_bpe "$seeds"/in/gpt2_bpe/*
mkseed llama2c "$seeds"/in/llama2c/*
mkseed recipe "$seeds/ft/recipe.yaml" recipes/*.yaml
mkseed dataset "$seeds"/in/dataset/*
mkseed checkpoint "$seeds/ft/checkpoint-1/trainer_state-rank0.bin"
mkseed gguf "$seeds"/in/gguf/*
mkseed teacher_cache   # no seed: libFuzzer finds the magic and header fields by itself

export RETORT_FUZZ_MODEL=$bin RETORT_FUZZ_TOKENIZER=$tok
mkdir -p build-fuzz/artifacts
fail=0 n_ok=0 n_bad=0
printf '%-16s %8s %8s %8s\n' target seconds corpus execs
for t in $targets; do
  corpus=build-fuzz/corpus/$t reg=tests/fuzz/regressions/$t
  mkdir -p "$corpus"
  dirs=("$corpus" "$seeds/$t")
  [ -d "$reg" ] && dirs+=("$reg")
  log=build-fuzz/$t.log
  if ! ASAN_OPTIONS=detect_leaks=1 build-fuzz/fuzz_$t -max_total_time="$secs" -timeout=1 -rss_limit_mb=2048 \
       -max_len=65536 -artifact_prefix=build-fuzz/artifacts/$t- -print_final_stats=1 "${dirs[@]}" >"$log" 2>&1; then
    echo "fuzz_$t FAILED (input in build-fuzz/artifacts/, log $log):"; tail -30 "$log"; fail=1
    n_bad=$((n_bad + 1))
  else
    n_ok=$((n_ok + 1))
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  printf '%-16s %8s %8s %8s\n' "$t" "$secs" "$(ls "$corpus" | wc -l)" "$execs"
done
echo "fuzz: $n_ok passed, $n_bad failed"
exit $fail
