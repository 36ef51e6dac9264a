"""llama.cpp (llama-cpp-python) runs the GGUF files retort exports.

- stories260K exported as an f32 GGUF (`retort export gguf --type f32`, from
  the llama2.c checkpoint with its SentencePiece tokenizer) plus
  retort's adapter as a llama.cpp LoRA (`retort export gguf-lora`), and the
  merged model (`retort export gguf --adapter`), give the next-token logits of
  `retort eval --adapter` on the same tokens. Both sides compute in f32 (the
  KV cache too: llama.cpp's default f16 cache alone costs ~1.4e-3), summing in
  another order: max |retort - llama.cpp| / max |llama.cpp| <= 1e-4.
- SmolLM2-135M (when $RETORT_CACHE holds its GGUF) plus retort's GGUF LoRA:
  as an f32 GGUF that retort exports from the Q4_1 file (<= 1e-4), and the
  Q4_1 file itself. llama.cpp multiplies Q4_1 weights with activations it
  rounds to Q8_1 blocks, retort with the dequantized f32 weights; measured
  0.059 relative, tolerance 0.1 (loose: it bounds gross errors only, the f32
  check is the precise one).
Each check skips, saying why, while retort has no `export` command.
"""
import numpy as np
import pytest

from conftest import (STORIES_BIN, STORIES_TOK, record, rel_err, require_command, retort,
                      retort_eval_logits, smollm2_gguf)

TOL_F32 = 1e-4
TOL_Q4_1 = 0.1
SEQ = 128


def llama_cpp_logits(model_path, ids, pos, lora=None):
    """llama.cpp's logits for every position of retort's windows (each window
    evaluated from an empty context)."""
    from llama_cpp import Llama
    starts = list(np.flatnonzero(pos == 0)) + [len(ids)]
    n_ctx = max(b - a for a, b in zip(starts[:-1], starts[1:])) + 8
    # the KV cache in f32 (GGML_TYPE_F32 = 0; llama.cpp's default is f16)
    llm = Llama(model_path=str(model_path), lora_path=str(lora) if lora else None, n_ctx=n_ctx,
                n_batch=n_ctx, logits_all=True, n_threads=2, seed=0, verbose=False,
                type_k=0, type_v=0)
    outs = []
    for a, b in zip(starts[:-1], starts[1:]):
        llm.reset()
        llm.eval([int(t) for t in ids[a:b]])
        outs.append(np.array(llm.scores[:b - a], dtype=np.float32))
    return np.concatenate(outs)


def export_requirements():
    require_command("export", "GGUF export, issue #12")


def test_llama_cpp_base_plus_lora(work, stories_hf, retort_adapter, text_file):
    export_requirements()
    base = work / "stories260K-f32.gguf"
    lora = work / "retort-adapter.gguf"
    retort("export", "gguf", "--model", STORIES_BIN, "--tokenizer", STORIES_TOK, "--type", "f32",
           "--out", base)
    retort("export", "gguf-lora", "--adapter", retort_adapter, "--model", stories_hf, "--out", lora)
    ids, pos, got = retort_eval_logits(work, stories_hf, text_file, SEQ, adapter=retort_adapter,
                                       name="llama-cpp-lora")
    ref = llama_cpp_logits(base, ids, pos, lora=lora)
    assert rel_err(llama_cpp_logits(base, ids, pos), ref) > 10 * TOL_F32, "the LoRA changes nothing"
    record("llama.cpp: stories260K f32 GGUF + retort's GGUF LoRA", rel_err(got, ref), TOL_F32)


def test_llama_cpp_merged(work, stories_hf, retort_adapter, text_file):
    export_requirements()
    merged = work / "stories260K-merged-f32.gguf"
    retort("export", "gguf", "--model", STORIES_BIN, "--tokenizer", STORIES_TOK, "--adapter",
           retort_adapter, "--type", "f32", "--out", merged)
    ids, pos, got = retort_eval_logits(work, stories_hf, text_file, SEQ, adapter=retort_adapter,
                                       name="llama-cpp-merged")
    record("llama.cpp: stories260K merged f32 GGUF (export gguf --adapter)",
           rel_err(got, llama_cpp_logits(merged, ids, pos)), TOL_F32)


def test_llama_cpp_smollm2_f32_lora(work, smollm2_adapter):
    """SmolLM2-135M as an f32 GGUF written by retort from the Q4_1 one (so
    both sides hold the same dequantized weights) plus retort's GGUF LoRA."""
    export_requirements()
    src = smollm2_gguf()
    adapter, text = smollm2_adapter
    base = work / "smollm2-f32.gguf"
    lora = work / "smollm2-adapter.gguf"
    retort("export", "gguf", "--model", src, "--type", "f32", "--out", base)
    retort("export", "gguf-lora", "--adapter", adapter, "--model", src, "--out", lora)
    ids, pos, got = retort_eval_logits(work, src, text, 64, adapter=adapter,
                                       name="llama-cpp-smollm2-f32")
    record("llama.cpp: SmolLM2-135M f32 GGUF (retort export) + retort's GGUF LoRA",
           rel_err(got, llama_cpp_logits(base, ids, pos, lora=lora)), TOL_F32)


def test_llama_cpp_smollm2_q4_1_lora(work, smollm2_adapter):
    """The Q4_1 file users run, plus retort's GGUF LoRA."""
    export_requirements()
    base = smollm2_gguf()
    adapter, text = smollm2_adapter
    lora = work / "smollm2-adapter.gguf"
    retort("export", "gguf-lora", "--adapter", adapter, "--model", base, "--out", lora)
    ids, pos, got = retort_eval_logits(work, base, text, 64, adapter=adapter,
                                       name="llama-cpp-smollm2")
    record("llama.cpp: SmolLM2-135M Q4_1 GGUF + retort's GGUF LoRA",
           rel_err(got, llama_cpp_logits(base, ids, pos, lora=lora)), TOL_Q4_1)
