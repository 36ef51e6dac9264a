"""transformers and tokenizers read every HF directory retort writes.

Each directory (convert, merge, a distilled student; quantize is in
test_bnb.py) loads with AutoModelForCausalLM and AutoTokenizer, and its
logits (f32) equal `retort eval --dump-logits` on the same windows:
max |retort - transformers| / max |transformers| <= 1e-4. The tokenizer.json
retort writes loads in `tokenizers` and encodes and decodes real text exactly
as `retort tokenize` does.
"""
import subprocess

import numpy as np
import pytest
import torch

from conftest import (RETORT, ROOT, SHARED, record, rel_err, retort, retort_eval_logits,
                      torch_logits)

TOL = 1e-4
SEQ = 128


def hf_model(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    AutoTokenizer.from_pretrained(path)  # loads, or the test fails here
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def test_convert_dir(work, stories_hf, text_file):
    ids, pos, got = retort_eval_logits(work, stories_hf, text_file, SEQ, name="convert")
    record("transformers logits of `retort convert llama2c` dir (stories260K)",
           rel_err(got, torch_logits(hf_model(stories_hf), ids, pos)), TOL)


def test_merge_dir(work, stories_hf, retort_adapter, text_file):
    out = work / "merged"
    retort("merge", "--model", stories_hf, "--adapter", retort_adapter, "--out", out)
    model = hf_model(out)
    ids, pos, got = retort_eval_logits(work, stories_hf, text_file, SEQ, adapter=retort_adapter,
                                       name="merge-adapter")
    ref = torch_logits(model, ids, pos)
    record("transformers logits of `retort merge` dir vs retort eval --adapter",
           rel_err(got, ref), TOL)
    ids2, pos2, got2 = retort_eval_logits(work, out, text_file, SEQ, name="merged")
    assert (ids2 == ids).all()
    record("transformers logits of `retort merge` dir vs retort eval of it",
           rel_err(got2, ref), TOL)


@pytest.fixture(scope="session")
def student(work):
    """recipes/stories260k-distill.yaml cut short: 48 teacher stories (8 held
    out), 10 steps."""
    text = (ROOT / "recipes" / "stories260k-distill.yaml").read_text()
    text = text.replace("../shared/", "%s/" % SHARED)
    for a, b in (("num_samples: 300", "num_samples: 48"), ("val_set_size: 40", "val_set_size: 8")):
        assert a in text, a
        text = text.replace(a, b)
    recipe = work / "distill.yaml"
    recipe.write_text(text)
    out = work / "student"
    retort("distill", recipe, "max_steps=10", "eval_steps=0", "logging_steps=5",
           "output_dir=%s" % out, "teacher_cache_dir=%s" % (work / "teacher-cache"), cwd=work)
    assert (out / "config.json").exists()
    return out


def test_distilled_student_dir(work, student, text_file):
    ids, pos, got = retort_eval_logits(work, student, text_file, SEQ, name="student")
    record("transformers logits of a `retort distill` student dir",
           rel_err(got, torch_logits(hf_model(student), ids, pos)), TOL)


TEXTS = {
    "moby": SHARED / "tokenizers" / "expected" / "moby_ch1.txt",
    "sotu": SHARED / "tokenizers" / "expected" / "sotu_2021.txt",
}


def retort_tokenize(tokenizer, data, *flags):
    p = subprocess.run([str(RETORT), "tokenize", "--tokenizer", str(tokenizer), *flags],
                       input=data, capture_output=True, check=True)
    return p.stdout


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_tokenizer_json(stories_hf, name):
    """tokenizers (and transformers' AutoTokenizer) read retort's
    tokenizer.json and encode 12,000 characters of real text to the same ids
    as `retort tokenize`, with and without BOS, and decode them back alike."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer
    raw = TEXTS[name].read_bytes()
    text = raw.decode("utf-8")
    tok = Tokenizer.from_file(str(stories_hf / "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(stories_hf)
    bad = 0
    for flags, special in (((), True), (("--no-bos",), False)):
        want = [int(x) for x in retort_tokenize(stories_hf / "tokenizer.json", raw, *flags).split()]
        got = tok.encode(text, add_special_tokens=special).ids
        got_auto = auto(text, add_special_tokens=special)["input_ids"]
        assert len(want) > 1000
        bad += sum(a != b for a, b in zip(got, want)) + abs(len(got) - len(want))
        bad += sum(a != b for a, b in zip(got_auto, want)) + abs(len(got_auto) - len(want))
    ids = tok.encode(text, add_special_tokens=False).ids
    decoded = retort_tokenize(stories_hf / "tokenizer.json",
                              " ".join(map(str, ids)).encode(), "--decode")
    bad += decoded != tok.decode(ids).encode("utf-8")
    record("tokenizers/AutoTokenizer ids of retort's tokenizer.json (%s, %d ids)" %
           (name, len(ids)), bad, 0, "ids")
