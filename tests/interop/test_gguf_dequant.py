"""retort's GGUF dequantization equals gguf-py's, bit for bit.

For every tensor type retort reads (F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0
Q4_K Q5_K Q6_K) a GGUF file is written with gguf-py: gguf-py quantizes
random weights where it can (F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0); for
the K-quants, which gguf-py only dequantizes, the blocks are random bytes
with finite f16 scales. `retort export gguf-tensors` dequantizes every
tensor to F32 and the result must equal `gguf.quants.dequantize` exactly
(compared as uint32 bit patterns). The real SmolLM2-135M GGUF is checked
too when scripts/get-models.sh has fetched it ($RETORT_CACHE), and Gemma 3 270M's Q4_K_M
GGUF (real Q4_K, Q6_K, Q5_0 and Q8_0 blocks) when `get-models.sh gemma3` has.

Run: RETORT_BIN=build/retort python tests/interop/test_gguf_dequant.py
(or under pytest). Needs tests/interop/requirements-gguf.txt.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RETORT = os.environ.get("RETORT_BIN", os.path.join(ROOT, "build", "retort"))
CACHE = os.environ.get("RETORT_CACHE", os.path.expanduser("~/.cache/retort"))
SMOLLM2 = os.path.join(CACHE, "SmolLM2-135M-Instruct.Q4_1.gguf")
GEMMA3 = os.path.join(CACHE, "gemma-3-270m-q4_k_m.gguf")  # real Q4_K/Q6_K/Q5_0/Q8_0 blocks

QUANTIZABLE = [T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]
K_QUANTS = {T.Q4_K: (144, [0, 2]), T.Q5_K: (176, [0, 2]), T.Q6_K: (210, [208])}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        base = 8 + n
    out = {}
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(mm[base + a:base + b], dtype=np.float32).reshape(info["shape"])
    return out


def retort_dequant(gguf_path, tmp):
    out = os.path.join(tmp, "deq.safetensors")
    subprocess.run([RETORT, "export", "gguf-tensors", gguf_path, "--out", out], check=True)
    return read_safetensors(out)


def random_k_blocks(rng, qtype, n_blocks):
    size, scale_offsets = K_QUANTS[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    for off in scale_offsets:  # finite, varied f16 scales (d, dmin)
        h = rng.uniform(-2.0, 2.0, size=n_blocks).astype(np.float16)
        raw[:, off:off + 2] = h.view(np.uint8).reshape(n_blocks, 2)
    return raw


def build_file(path, rng):
    """Writes one tensor per type; returns {name: (qtype, raw bytes array)}."""
    w = gguf.GGUFWriter(path, "llama")
    made = {}
    rows, cols = 8, 512
    x = (rng.standard_normal((rows, cols)) * rng.uniform(0.01, 3.0, (rows, 1))).astype(np.float32)
    x[0, :40] = 0.0  # all-zero blocks (d = 0)
    x[1, 5] = 1e4    # one outlier
    w.add_tensor("f32", x)
    made["f32"] = (T.F32, x)
    for qt in QUANTIZABLE:
        q = quantize(x, qt)
        w.add_tensor(qt.name.lower(), q, raw_dtype=qt)
        made[qt.name.lower()] = (qt, q)
    for qt in K_QUANTS:
        q = random_k_blocks(rng, qt, rows * cols // 256).reshape(rows, -1)
        w.add_tensor(qt.name.lower(), q, raw_dtype=qt)
        made[qt.name.lower()] = (qt, q)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return made


def bits_equal(a, b):
    a = np.ascontiguousarray(a, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def test_every_type_bit_exact():
    rng = np.random.default_rng(1234)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "types.gguf")
        made = build_file(path, rng)
        got = retort_dequant(path, tmp)
        for name, (qt, raw) in made.items():
            want = raw if qt == T.F32 else dequantize(raw, qt)
            assert bits_equal(got[name], want), f"{name}: retort differs from gguf-py"
            print(f"  {qt.name:5s} {want.size:6d} values: bit-identical")


def check_real_model(path, what, fetch):
    if not os.path.exists(path):
        print(f"  skip: {path} not fetched (scripts/get-models.sh {fetch})")
        return
    reader = gguf.GGUFReader(path)
    with tempfile.TemporaryDirectory() as tmp:
        got = retort_dequant(path, tmp)
        types = {}
        for t in reader.tensors:
            want = dequantize(t.data, t.tensor_type)
            assert bits_equal(got[t.name], want), f"{what}: {t.name} ({t.tensor_type.name}) differs"
            types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
        print(f"  {what}: {len(reader.tensors)} tensors bit-identical {types}")


def test_real_model_bit_exact():
    check_real_model(SMOLLM2, "SmolLM2-135M", "smollm2")


def test_real_k_quants_bit_exact():
    check_real_model(GEMMA3, "Gemma 3 270M", "gemma3")


if __name__ == "__main__":
    for f in (test_every_type_bit_exact, test_real_model_bit_exact, test_real_k_quants_bit_exact):
        print(f.__name__)
        f()
    print("ok")
