"""`retort tokenize` encodes like Hugging Face `tokenizers` on real text.

The same tokenizer files, read by both: ../shared/tokenizers/{llama3, qwen3,
mistral}/tokenizer.json (tokenizers.Tokenizer.from_file) and GPT-2's
encoder.json + vocab.bpe (a byte-level BPE assembled in `tokenizers` as
GPT-2's tokenizer.json describes it: ByteLevel pre-tokenizer without prefix
space, ByteLevel decoder, <|endoftext|> special). Texts: the whole of
Moby-Dick, 30 State of the Union addresses in one text, 25 single paragraphs
of each, and hard strings (scripts, digits, emoji, runs of whitespace,
upper-case contractions, special tokens inside text, byte/piece-looking
text). Checked id for id, with and without the tokenizer's special tokens
(BOS), and decode (see the test's docstring).
"""
import json
import random
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import MOBY, RETORT, SHARED, record

TOKENIZERS = {
    "llama3": SHARED / "tokenizers" / "llama3" / "tokenizer.json",
    "qwen3": SHARED / "tokenizers" / "qwen3" / "tokenizer.json",
    "mistral": SHARED / "tokenizers" / "mistral" / "tokenizer.json",
    "gpt2": SHARED / "tokenizers" / "gpt2" / "encoder.json",
}
SOTU = SHARED / "data" / "sotu.jsonl"

HARD = [
    "", "Hello world", "  leading spaces", "trailing spaces   ", "one\ntwo\n\n\nthree\n",
    "\t\ttabs\tand spaces \t \n", "   \n  \n\n \t", " " * 100, "\n" * 50, "\r\n\r\nwindows\r\n",
    "a" * 500, "ab" * 300, "!!!!!!??????......,,,,;;;;", "--- === *** ### ```code```",
    "I'M HERE, YOU'RE THERE, IT'S HIS, WE'VE GONE, THEY'LL GO, HE'D SAY, DON'T",
    "don't won't y'all o'clock rock'n'roll 'quoted' ''double''",
    "1234567890 12,345.67 3.14159 -1e-10 0x1F 2021-03-04 10:30:00 1st 22nd 333rd",
    "Ελληνικά γράμματα και αριθμοί 123", "Русский текст, ЗАГЛАВНЫЕ буквы", "中文字符和数字１２３，标点。",
    "日本語のテキスト、カタカナ、ひらがな", "한국어 텍스트입니다", "العربية ١٢٣٤ مرحبا", "हिन्दी ०१२३ नमस्ते",
    "ภาษาไทยไม่มีช่องว่าง", "עברית שלום", "Ünïcödé naïve café résumé Straße ÆØÅ",
    "e\u0301 a\u0308 n\u0303 (combining marks)", "\u00a0nbsp\u2003em space\u3000ideographic\u2028line sep",
    "zero\u200bwidth\u200djoiner\ufeffbom", "emoji 😀👍🏽👨‍👩‍👧‍👦 🇺🇸🇯🇵 ❤️‍🔥 🫠",
    "math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ∑∫√∞ ≤≥≠ ½¾ ²³", "<|begin_of_text|>Hi<|eot_id|> <|start_header_id|>user<|end_header_id|>\n\n",
    "text<|eot_id|>more <|end_of_text|>", "<|im_start|>user\nhi<|im_end|>\n<think>\nx\n</think>", "<s>[INST] hi [/INST] ok</s>",
    "a<|endoftext|>b <|endoftext|> c", "<|begin_of_text", "<|eot_id", "<|im_start", "|>", "<0xFF><0x00><0x0A>",
    "▁▁hello▁world▁", "ĠHello ĊĠ", "\ufffd\ufffd replacement", "\x7f\x01\x1b[0m control", "<unk> </s> <pad>",
    "http://example.com/path?q=1&r=2#frag user@example.com", "C:\\Windows\\System32 /usr/bin/env",
]


def reference(name):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    path = TOKENIZERS[name]
    if name != "gpt2":
        return Tokenizer.from_file(str(path))
    tk = Tokenizer(models.BPE.from_file(str(path), str(path.with_name("vocab.bpe"))))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    return tk


def retort_ids(path, text, *flags):
    p = subprocess.run([str(RETORT), "tokenize", "--tokenizer", str(path), *flags],
                       input=text.encode("utf-8"), capture_output=True)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return [int(x) for x in p.stdout.split()]


def retort_decode(path, ids):
    p = subprocess.run([str(RETORT), "tokenize", "--tokenizer", str(path), "--decode"],
                       input=" ".join(map(str, ids)).encode(), capture_output=True)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return p.stdout.decode("utf-8", errors="surrogateescape")


def first_diff(a, b):
    i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return "at %d of %d/%d: retort %s, tokenizers %s" % (i, len(a), len(b), a[i:i + 8], b[i:i + 8])


def texts():
    """(label, text, with_bos): whole texts, single paragraphs and the hard
    strings; with_bos: also compare the encoding with special tokens (BOS)."""
    moby = MOBY.read_text(encoding="utf-8")
    sotu = [json.loads(line)["text"] for line in SOTU.read_text(encoding="utf-8").splitlines() if line.strip()]
    some = sotu[::8] + sotu[-1:]
    out = [("moby-dick (whole book)", moby, True),
           ("sotu (%d addresses, 1790-2021)" % len(some), "\n\n".join(some), True)]
    rnd = random.Random(13)
    paras = [p for p in moby.split("\n\n") if p.strip()]
    out += [("moby paragraph %d" % i, paras[i], False) for i in sorted(rnd.sample(range(len(paras)), 25))]
    spar = [(k, p) for k, t in enumerate(sotu) for p in t.split("\n") if p.strip()]
    out += [("sotu %d paragraph" % spar[i][0], spar[i][1], False) for i in sorted(rnd.sample(range(len(spar)), 25))]
    out += [("hard %d %r" % (i, s[:24]), s, True) for i, s in enumerate(HARD)]
    return out


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
def test_tokenize_like_tokenizers(name):
    """Ids equal to tokenizers' encode (add_special_tokens False, and True
    where with_bos); retort's decode equals tokenizers' decode with
    skip_special_tokens (retort decodes special tokens to nothing) and is the
    text again wherever tokenizers' decode is (not where special tokens or a
    normalizer, e.g. Qwen3's NFC or Mistral's ' ' -> '▁', change it)."""
    path = TOKENIZERS[name]
    if not path.exists():
        pytest.skip("%s not in ../shared" % path)
    tk = reference(name)
    cases = texts()

    def one(case):
        label, text, with_bos = case
        errs = []
        for flags, special in (((), True), (("--no-bos",), False)):
            if special and not with_bos:
                continue
            got = retort_ids(path, text, *flags)
            want = tk.encode(text, add_special_tokens=special).ids
            if got != want:
                errs.append("%s %s: ids differ %s" % (label, flags, first_diff(got, want)))
        ids = tk.encode(text, add_special_tokens=False).ids
        back = retort_decode(path, ids) if ids else ""
        theirs = tk.decode(ids, skip_special_tokens=True)
        if back != theirs:
            errs.append("%s: retort decode %r, tokenizers' %r" % (label, back[:60], theirs[:60]))
        if theirs == text and back != text:
            errs.append("%s: retort decode(encode(x)) != x: %r" % (label, back[:80]))
        return len(ids), theirs == text, errs

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(one, cases))
    errors = [e for _, _, es in results for e in es]
    total = sum(n for n, _, _ in results)
    exact = sum(r for _, r, _ in results)
    try:
        record("tokenizers ids/decode of %s, %d texts (%d ids; decode(encode(x)) == x on %d)"
               % (name, len(cases), total, exact), len(errors), 0, "texts")
    except AssertionError as e:
        raise AssertionError("%s\n%s" % (e, "\n".join(errors[:20]))) from None
