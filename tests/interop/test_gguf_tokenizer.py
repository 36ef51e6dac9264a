"""retort's tokenizer read from a GGUF file's tokenizer.ggml.* metadata
encodes like Hugging Face `tokenizers` built from the same metadata.

The reference tokenizer is assembled in Python with `tokenizers` (BPE from
tokenizer.ggml.tokens/merges, the pre-tokenizer tokenizer.ggml.pre names —
"smollm": Digits(individual_digits) + ByteLevel — CONTROL tokens as special
added tokens) and read with gguf-py; retort's ids come from
`retort tokenize --tokenizer FILE.gguf --no-bos`. Texts: Moby-Dick (30,000
characters), ChatML special tokens, digits, whitespace runs, non-Latin text.
Needs the SmolLM2-135M GGUF (scripts/get-models.sh); skips without it.

Run: RETORT_BIN=build/retort python tests/interop/test_gguf_tokenizer.py
"""
import os
import subprocess

from gguf import GGUFReader
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RETORT = os.environ.get("RETORT_BIN", os.path.join(ROOT, "build", "retort"))
SHARED = os.environ.get("RETORT_SHARED", os.path.join(ROOT, "..", "shared"))
CACHE = os.environ.get("RETORT_CACHE", os.path.expanduser("~/.cache/retort"))
SMOLLM2 = os.path.join(CACHE, "SmolLM2-135M-Instruct.Q4_1.gguf")
CONTROL = 3  # llama_token_type LLAMA_TOKEN_TYPE_CONTROL


def reference(path):
    r = GGUFReader(path)
    assert r.fields["tokenizer.ggml.model"].contents() == "gpt2"
    assert r.fields["tokenizer.ggml.pre"].contents() == "smollm"
    toks = r.fields["tokenizer.ggml.tokens"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    merges = [tuple(m.split(" ", 1)) for m in r.fields["tokenizer.ggml.merges"].contents()]
    tk = Tokenizer(models.BPE({t: i for i, t in enumerate(toks)}, merges))
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(toks[i], special=True, normalized=False)
                           for i, t in enumerate(types) if t == CONTROL])
    return tk


def test_smollm2_tokenizer():
    if not os.path.exists(SMOLLM2):
        print(f"  skip: {SMOLLM2} not fetched (scripts/get-models.sh)")
        return
    tk = reference(SMOLLM2)
    with open(os.path.join(SHARED, "data", "moby-dick.txt"), encoding="utf-8") as f:
        moby = f.read()[:30000]
    texts = ["Hello world 2024, it's   me!", moby,
             "<|im_start|>user\nWhat is 12345*678?<|im_end|>\n<|im_start|>assistant\n",
             "  leading\n\n\ttabs and ünïcödé — 東京 ½ ² 3.14159  \n"]
    for t in texts:
        want = tk.encode(t, add_special_tokens=False).ids
        out = subprocess.run([RETORT, "tokenize", "--tokenizer", SMOLLM2, "--no-bos"],
                             input=t.encode(), capture_output=True, check=True).stdout
        got = [int(x) for x in out.split()]
        first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
        assert got == want, f"ids differ at {first} ({len(got)} vs {len(want)} ids)"
        print(f"  {len(want)} ids identical")


if __name__ == "__main__":
    test_smollm2_tokenizer()
    print("ok")
