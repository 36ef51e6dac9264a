"""The SmolLM2-shaped student of recipes/smollm2-135m-distill.yaml loads in
the real readers (skipped without SmolLM2-135M's GGUF).

The fixture runs the recipe itself, cut to 3 steps of 2 x 64 tokens with the
teacher online (so it takes seconds on 2 cores): teacher SmolLM2-135M-Instruct
from its GGUF, student from its layers 0/14/28 with the MLP cut to 512 (33.6M
parameters, vocabulary 49152), trained and saved as an HF directory.

- transformers: AutoModelForCausalLM/AutoTokenizer load the directory, the
  logits equal `retort eval --dump-logits` (<= 1e-4 relative, as in
  test_transformers.py), `retort eval`'s NLL equals transformers'
  sliding-window NLL (test_eval_nll.py's check), and the
  generation_config.json retort writes loads with GenerationConfig with the
  tokenizer's BOS/EOS ids.
- llama.cpp: `retort export gguf` of the directory alone (its tokenizer.json
  becomes gpt2 BPE metadata, which llama.cpp tokenizes with as transformers
  does) at --type f32, f16 and q8_0 loads in llama-cpp-python, whose logits
  are compared with retort's on
  the student directory (f32 weights). f32: 1e-4 relative (summation order
  only). f16 and q8_0 round the weights, and llama.cpp also rounds the
  activations to the weights' format before each product (ggml's vec_dot
  type: f16 for f16, q8_0 blocks of 32 for q8_0). The tolerance is derived
  from the weight rounding alone, measured in the same run: retort reads the
  exported file back (dequantizing as gguf-py does) and eval's logits move by
  e_w; rounding the activations in the same format adds about as much again,
  so the bound is 3 e_w (2 e_w plus half of it for margin), never below the
  f32 tolerance. e_w itself must stay under 1e-2 (f16) / 5e-2 (q8_0), and the
  q8_0 check must be tighter than that: a broken export moves logits by O(1).
"""
import numpy as np
import pytest
import torch

from conftest import (MOBY, ROOT, record, rel_err, retort, retort_eval_logits, smollm2_gguf,
                      torch_logits)
from test_eval_nll import check as check_eval_nll
from test_llama_cpp import llama_cpp_logits

TOL_F32 = 1e-4
SEQ = 64
E_W_MAX = {"f16": 1e-2, "q8_0": 5e-2}


@pytest.fixture(scope="session")
def smollm2_student(work):
    """(student dir, text): recipes/smollm2-135m-distill.yaml for 3 steps of
    2 x 64 tokens on 6,000 characters of Moby-Dick (2 rows held out), the
    teacher online; and 600 other characters to evaluate on."""
    gguf = smollm2_gguf()
    data = work / "moby6k.txt"
    text = MOBY.read_text(encoding="utf-8")
    data.write_text(text[:6000], encoding="utf-8")
    out = work / "smollm2-student"
    retort("distill", ROOT / "recipes" / "smollm2-135m-distill.yaml", "teacher_model=%s" % gguf,
           "datasets.0.path=%s" % data, "datasets.0.shards=1", "sequence_len=%d" % SEQ,
           "micro_batch_size=2", "max_steps=3", "warmup_steps=0", "val_set_size=2", "eval_steps=0",
           "teacher_logits=online", "save_steps=0", "output_dir=%s" % out, cwd=ROOT)
    assert (out / "config.json").exists() and (out / "model.safetensors").exists()
    evaltext = work / "smollm2-student.txt"
    evaltext.write_text(text[20000:20600], encoding="utf-8")
    return out, evaltext


def test_student_transformers(work, smollm2_student):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    student, text = smollm2_student
    tok = AutoTokenizer.from_pretrained(student)
    model = AutoModelForCausalLM.from_pretrained(student, dtype=torch.float32).eval()
    assert model.config.num_hidden_layers == 3 and model.config.intermediate_size == 512
    assert model.config.vocab_size == 49152
    ids, pos, got = retort_eval_logits(work, student, text, SEQ, name="smollm2-student")
    record("transformers logits of the SmolLM2-shaped distilled student dir",
           rel_err(got, torch_logits(model, ids, pos)), TOL_F32)
    check_eval_nll("SmolLM2-shaped student", student, model, tok, text, SEQ)
    gen = GenerationConfig.from_pretrained(student)
    assert gen.bos_token_id == tok.bos_token_id and gen.eos_token_id == tok.eos_token_id, (
        gen.bos_token_id, gen.eos_token_id, tok.bos_token_id, tok.eos_token_id)


def check_gguf_tokenizer(gguf, student, text):
    """llama.cpp tokenizes with the GGUF's tokenizer.ggml.* (gpt2 BPE written
    from the student's tokenizer.json) as transformers does with that
    tokenizer.json: 12,000 characters of Moby-Dick and the eval text."""
    from llama_cpp import Llama
    from transformers import AutoTokenizer
    llm = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    tok = AutoTokenizer.from_pretrained(student)
    bad = 0
    for t in (MOBY.read_text(encoding="utf-8")[30000:42000], text.read_text(encoding="utf-8")):
        want = tok(t, add_special_tokens=False)["input_ids"]
        got = llm.tokenize(t.encode("utf-8"), add_bos=False, special=False)
        bad += sum(a != b for a, b in zip(got, want)) + abs(len(got) - len(want))
    record("llama.cpp ids of the student GGUF's tokenizer vs transformers' (gpt2 BPE)", bad, 0, "ids")


@pytest.mark.parametrize("gtype", ["f32", "f16", "q8_0"])
def test_student_llama_cpp(work, smollm2_student, gtype):
    student, text = smollm2_student
    gguf = work / ("smollm2-student-%s.gguf" % gtype)
    retort("export", "gguf", "--model", student, "--type", gtype, "--out", gguf)
    ids, pos, ref = retort_eval_logits(work, student, text, SEQ, name="smollm2-student-ref")
    got = llama_cpp_logits(gguf, ids, pos)
    name = "llama.cpp: SmolLM2-shaped student, retort export gguf --type %s" % gtype
    if gtype == "f32":
        record(name, rel_err(got, ref), TOL_F32)
        check_gguf_tokenizer(gguf, student, text)
        return
    ids2, pos2, back = retort_eval_logits(work, gguf, text, SEQ, name="smollm2-student-" + gtype)
    assert (ids2 == ids).all() and (pos2 == pos).all()
    e_w = rel_err(back, ref)
    record("%s weight rounding alone (retort eval of the file)" % gtype, e_w, E_W_MAX[gtype])
    assert e_w > 0, "the %s file holds the f32 weights unchanged" % gtype
    record(name + " (3 x weight rounding)", rel_err(got, ref), max(3 * e_w, TOL_F32))


def test_student_lora(work, smollm2_student):
    """A pretrained student trained with LoRA: `retort distill` with
    student_model = the distilled student directory and adapter: lora (the
    teacher online, 3 steps) writes a PEFT adapter that PEFT loads on that
    directory with retort's logits (`retort eval --adapter`), <= 1e-4."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    student, text = smollm2_student
    gguf = smollm2_gguf()
    recipe = work / "smollm2-student-lora.yaml"
    out = work / "smollm2-student-lora"
    recipe.write_text("\n".join([
        "teacher_model: %s" % gguf,
        "student_model: %s" % student,
        "adapter: lora",
        "lora_r: 8",
        "lora_alpha: 16",
        "lora_dropout: 0.0",
        "lora_target_modules: all-linear",
        "datasets:",
        "  - path: %s" % (work / "moby6k.txt"),
        "    type: text",
        "val_set_size: 2",
        "sequence_len: %d" % SEQ,
        "kd_ratio: 0.5",
        "kd_top_k: 32",
        "teacher_logits: online",
        "micro_batch_size: 2",
        "max_steps: 3",
        "learning_rate: 1.0e-2",
        "eval_steps: 0",
        "output_dir: %s" % out,
        "seed: 42",
    ]) + "\n")
    log = retort("distill", recipe, cwd=work).decode()
    assert "PEFT adapter" in log, log
    ids, pos, got = retort_eval_logits(work, student, text, SEQ, adapter=out, name="smollm2-student-lora")
    base = AutoModelForCausalLM.from_pretrained(student, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, out).eval()
    ref = torch_logits(model, ids, pos)
    with model.disable_adapter():
        assert rel_err(torch_logits(model, ids, pos), ref) > 10 * TOL_F32, "the adapter changes nothing"
    record("PEFT logits of a LoRA student's adapter on the SmolLM2-shaped student", rel_err(got, ref), TOL_F32)
