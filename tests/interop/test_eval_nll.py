"""`retort eval`'s NLL is transformers' sliding-window NLL on the same windows.

The other tests compare logits on retort's own token ids and windows; this one
compares the number `retort eval` prints (its fused lm_head + cross-entropy
path, not the --dump-logits one) with an NLL computed from transformers alone:
the text tokenized by transformers' AutoTokenizer, cut into windows by the
algorithm of transformers' docs ("Perplexity of fixed-length models",
max_length = --seq-len, stride = --stride), log-softmax of its f32 logits in
float64, mean over the scored tokens. This is the definition train/evaluate.h
states. Tolerance 1e-4 nats on the mean: the logits agree to ~3e-6 relative
(measured NLL differences ~2e-7), while scoring other windows moves the NLL by
~2e-3 (SmolLM2-135M on Moby-Dick, windows of 257 tokens vs 256): each check
also asserts that the windows one token longer give a NLL more than 10x the
tolerance away (with --stride: the same windows without the stride), so a
change of definition cannot pass.
SmolLM2-135M (from its GGUF, read by transformers' GGUF loader, skipped
without it) runs at 640-token windows, also with stride 320, so positions up to
639 and attention over 639 keys are covered too.
"""
import json

import numpy as np
import pytest
import torch

from conftest import MOBY, record, retort, smollm2_gguf

TOL = 1e-4


def hf_window_nll(model, ids, max_length, stride=None):
    """transformers' docs' sliding-window perplexity: (mean NLL, scored count)."""
    stride = stride or max_length
    total, count, prev_end = 0.0, 0, 0
    with torch.no_grad():
        for begin in range(0, len(ids), stride):
            end = min(begin + max_length, len(ids))
            trg_len = end - prev_end  # tokens no earlier window scored
            x = torch.tensor(ids[begin:end], dtype=torch.long)[None]
            logp = torch.log_softmax(model(input_ids=x).logits[0].double(), -1)
            first = max(end - begin - trg_len, 1)  # the window's first token is never a target
            tgt = x[0, first:]
            total += float(-logp[torch.arange(first - 1, end - begin - 1), tgt].sum())
            count += len(tgt)
            prev_end = end
            if end == len(ids):
                break
    return total / count, count


def retort_nll(model, data, seq_len, stride=None):
    args = ["eval", "--model", model, "--data", data, "--seq-len", seq_len, "--json"]
    if stride:
        args += ["--stride", stride]
    out = json.loads(retort(*args).decode().strip().splitlines()[-1])
    return out["nll"], out["tokens"]


def check(name, path, model, tok, data, seq_len, stride=None):
    """retort eval of `path` vs transformers' `model` + `tok` (the same model)."""
    ids = tok(data.read_text(encoding="utf-8"))["input_ids"]
    got, n_got = retort_nll(path, data, seq_len, stride)
    want, n_want = hf_window_nll(model, ids, seq_len, stride)
    assert n_got == n_want, "retort scored %d tokens, transformers %d" % (n_got, n_want)
    # another definition must be told apart: windows one token longer, or
    # for a stride, the same windows without it (the stride is not ignored)
    other, _ = hf_window_nll(model, ids, seq_len, None) if stride else hf_window_nll(model, ids, seq_len + 1)
    assert abs(other - want) > 10 * TOL, "%s: the other windows give the same NLL, the check cannot fail" % name
    record("eval NLL = transformers' sliding-window NLL: %s, seq %d%s (%d tokens)" %
           (name, seq_len, ", stride %d" % stride if stride else "", n_want), abs(got - want), TOL, "nats")


def test_eval_nll_stories260k(stories_hf, text_file):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(stories_hf, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(stories_hf)
    check("stories260K", stories_hf, model, tok, text_file, 128)
    check("stories260K", stories_hf, model, tok, text_file, 100, 40)


@pytest.fixture(scope="session")
def smollm2_text(work):
    """The first 4,000 characters of Moby-Dick (~1,000 SmolLM2 tokens)."""
    p = work / "moby4k.txt"
    p.write_text(MOBY.read_text(encoding="utf-8")[:4000], encoding="utf-8")
    return p


def test_eval_nll_smollm2(smollm2_text):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    gguf = smollm2_gguf()
    kw = {"gguf_file": gguf.name}
    tok = AutoTokenizer.from_pretrained(gguf.parent, **kw)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kw).eval()
    check("SmolLM2-135M Q4_1 GGUF", gguf, model, tok, smollm2_text, 640)
    check("SmolLM2-135M Q4_1 GGUF", gguf, model, tok, smollm2_text, 640, 320)
