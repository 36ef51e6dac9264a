"""bitsandbytes (on the CPU) agrees with `retort quantize` byte for byte.

The real weights are stories260K's 35 projections, f32, from `retort convert`.
For each, bitsandbytes.functional.quantize_4bit(W, nf4, blocksize 64, double
quantization) must give exactly the packed codes, absmax codes, nested absmax,
offset and code tables retort stored; dequantize_4bit of retort's stored state
(read back with QuantState.from_dict, as transformers does) must give exactly
the weights retort dequantizes (what `retort merge` writes for a zero adapter).
"""
import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from conftest import record, rel_err, retort, retort_eval_logits, torch_logits

SEQ = 128
PROJ = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def proj_names(st):
    return sorted(k[:-len(".quant_state.bitsandbytes__nf4")] for k in st
                  if k.endswith(".quant_state.bitsandbytes__nf4"))


@pytest.fixture(scope="session")
def quantized(work, stories_hf):
    out = work / "stories260K-nf4"
    retort("quantize", "--model", stories_hf, "--out", out)
    return out


@pytest.fixture(scope="session")
def retort_dequantized(work, stories_hf, quantized):
    """retort's own dequantization of its NF4 directory: `retort merge` of a
    PEFT adapter whose lora_B is zero (PEFT's initialisation) writes every
    projection as dequant(W) + 0."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    base = AutoModelForCausalLM.from_pretrained(stories_hf, dtype=torch.float32)
    cfg = LoraConfig(r=2, lora_alpha=4, target_modules=[p.split(".")[1] for p in PROJ])
    zero = work / "zero-adapter"
    get_peft_model(base, cfg).save_pretrained(zero)
    out = work / "stories260K-nf4-dequantized"
    retort("merge", "--model", quantized, "--adapter", zero, "--out", out)
    return load_file(str(out / "model.safetensors"))


def bnb_state(st, name):
    """bitsandbytes' QuantState of `name` from retort's tensors, read the way
    transformers reads a saved 4-bit model (QuantState.from_dict)."""
    from bitsandbytes.functional import QuantState
    qs = {k[len(name) + 1:]: torch.from_numpy(v.copy()) for k, v in st.items()
          if k.startswith(name + ".")}
    return QuantState.from_dict(qs, device=torch.device("cpu"))


def absmax_code_differences(w, offset, got_codes):
    """bitsandbytes' double quantization of the block absmax of w, with the
    offset retort stored: quantize_blockwise(absmax - offset, blocksize=256),
    which is what quantize_4bit(compress_statistics=True) does after taking
    the offset as absmax.mean(). Returns (its state, the number of codes that
    differ from retort's, how many of those are bitsandbytes' CPU kernel
    picking a code that is not the nearest to (absmax - offset) /
    nested_absmax (float64 distances) where retort picks the nearest, as
    bitsandbytes' CUDA kernel (dQuantize) does)."""
    import bitsandbytes.functional as F
    am = w.reshape(-1, 64).abs().amax(1)
    codes, s2 = F.quantize_blockwise(am - offset, blocksize=256)
    x = (am.double().numpy() - float(offset)) / np.repeat(s2.absmax.double().numpy(), 256)[:len(am)]
    code = s2.code.double().numpy()
    bnb = codes.numpy()
    diff = np.flatnonzero(got_codes != bnb)
    explained = np.abs(x[diff] - code[got_codes[diff]]) < np.abs(x[diff] - code[bnb[diff]])
    return s2, len(diff), int(np.sum(explained))


def test_quantize_4bit_bytes(stories_hf, quantized):
    import bitsandbytes.functional as F
    src = load_file(str(stories_hf / "model.safetensors"))
    st = load_file(str(quantized / "model.safetensors"))
    names = proj_names(st)
    assert len(names) == 5 * 7, names
    diff = {"packed": 0, "absmax": 0, "absmax_bnb_cpu_not_nearest": 0, "nested_absmax": 0.0,
            "offset": 0.0, "quant_map": 0.0, "nested_quant_map": 0.0}
    n_bytes = n_absmax = 0
    for name in names:
        w = torch.from_numpy(src[name].copy())
        packed, s = F.quantize_4bit(w, quant_type="nf4", blocksize=64, compress_statistics=True)
        meta = json.loads(bytes(st[name + ".quant_state.bitsandbytes__nf4"]).decode())
        assert meta["quant_type"] == "nf4" and meta["blocksize"] == 64
        assert meta["shape"] == list(w.shape) and meta["dtype"] == "float32"
        assert meta["nested_blocksize"] == s.state2.blocksize
        assert st[name].shape == tuple(packed.shape) and st[name].dtype == np.uint8
        diff["packed"] += int(np.sum(st[name] != packed.numpy()))
        # The offset is a mean of f32 values: torch's vectorised sum and
        # retort's may round differently (by the CPU's vector width, even),
        # so it is compared to 2 ulps, and the codes that depend on it are
        # compared exactly against bitsandbytes given retort's offset.
        offset = torch.tensor(np.float32(meta["nested_offset"]))
        diff["offset"] = max(diff["offset"], abs(float(offset) - float(s.offset)) /
                             abs(float(s.offset)))
        s2, n, explained = absmax_code_differences(w, offset, st[name + ".absmax"])
        diff["absmax"] += n
        diff["absmax_bnb_cpu_not_nearest"] += explained
        diff["nested_absmax"] = max(diff["nested_absmax"], float(np.max(np.abs(
            st[name + ".nested_absmax"] - s2.absmax.numpy()))))
        diff["quant_map"] = max(diff["quant_map"], float(np.max(np.abs(
            st[name + ".quant_map"] - s.code.numpy()))))
        diff["nested_quant_map"] = max(diff["nested_quant_map"], float(np.max(np.abs(
            st[name + ".nested_quant_map"] - s2.code.numpy()))))
        n_bytes += packed.numel()
        n_absmax += s.absmax.numel()
    record("bnb quantize_4bit: packed codes differing (of %d bytes)" % n_bytes,
           diff["packed"], 0, "bytes")
    record("bnb quantize_4bit: offset (mean of absmax)", diff["offset"], 2 ** -22, "rel")
    # bitsandbytes' CPU kernel (csrc/cpu_ops.cpp quantize_cpu: a BinAlgo
    # search, then the nearer of two neighbours) sometimes lands one code
    # away from the nearest; its CUDA kernel and retort take the nearest. A
    # difference anywhere else is a retort bug.
    record("bnb quantize_blockwise: absmax codes differing where bnb-CPU picks the nearest "
           "(of %d; %d where it does not)" % (n_absmax, diff["absmax_bnb_cpu_not_nearest"]),
           diff["absmax"] - diff["absmax_bnb_cpu_not_nearest"], 0, "bytes")
    for k in ("nested_absmax", "quant_map", "nested_quant_map"):
        record("bnb quantize_4bit: %s" % k, diff[k], 0.0, "abs")


def test_dequantize_4bit(quantized, retort_dequantized):
    import bitsandbytes.functional as F
    st = load_file(str(quantized / "model.safetensors"))
    err = 0.0
    for name in proj_names(st):
        deq = F.dequantize_4bit(torch.from_numpy(st[name].copy()), bnb_state(st, name))
        got = retort_dequantized[name]
        assert got.dtype == np.float32 and got.shape == tuple(deq.shape)
        err = max(err, float(np.max(np.abs(got - deq.numpy()))))
    record("bnb dequantize_4bit of retort's state vs retort's weights", err, 0.0, "abs")


def test_eval_nf4_logits(work, stories_hf, quantized, text_file):
    """retort eval of its NF4 directory = transformers (f32) with the
    projections replaced by bitsandbytes' dequantization of retort's state."""
    import bitsandbytes.functional as F
    from transformers import AutoModelForCausalLM
    ids, pos, got = retort_eval_logits(work, quantized, text_file, SEQ, name="nf4")
    st = load_file(str(quantized / "model.safetensors"))
    model = AutoModelForCausalLM.from_pretrained(stories_hf, dtype=torch.float32).eval()
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in proj_names(st):
            params[name].copy_(F.dequantize_4bit(torch.from_numpy(st[name].copy()),
                                                 bnb_state(st, name)))
    record("retort eval of NF4 dir vs transformers + bnb dequant (f32)",
           rel_err(got, torch_logits(model, ids, pos)), 1e-4)


def test_transformers_loads_nf4_dir(work, quantized, text_file):
    """transformers + bitsandbytes load retort's NF4 directory on the CPU."""
    from transformers import AutoModelForCausalLM
    ids, pos, got = retort_eval_logits(work, quantized, text_file, SEQ, name="nf4-hf")
    model = AutoModelForCausalLM.from_pretrained(quantized, device_map="cpu").eval()
    n4 = 0
    for m in model.modules():
        if type(m).__name__ == "Linear4bit":
            # bitsandbytes' AVX512-BF16 CPU path repacks the weight and needs
            # out_features % 32 == 0 (stories260K's MLP has 172): use its
            # portable path, the same on every x86-64
            m.support_avx512bf16_for_cpu = False
            n4 += 1
    assert n4 == 35, "transformers loaded %d Linear4bit layers, not 35" % n4
    record("transformers+bnb (CPU) load of `retort quantize` dir: logits",
           rel_err(got, torch_logits(model, ids, pos)), 1e-4)
