"""PEFT + transformers read retort's LoRA adapters, and retort reads PEFT's.

Both sides run in f32 on the same token windows (those of `retort eval`);
tolerance: max |retort - PEFT| / max |PEFT logits| <= 1e-4.
"""
import numpy as np
import pytest
import torch

from conftest import (record, rel_err, retort_eval_logits, torch_logits, MOBY)

TOL = 1e-4
SEQ = 128  # several windows of the 2,000-character text


def peft_model(base_dir, adapter_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    return PeftModel.from_pretrained(base, adapter_dir).eval()


def test_peft_loads_retort_adapter(work, stories_hf, retort_adapter, text_file):
    ids, pos, got = retort_eval_logits(work, stories_hf, text_file, SEQ, adapter=retort_adapter,
                                       name="peft-retort-adapter")
    model = peft_model(stories_hf, retort_adapter)
    ref = torch_logits(model, ids, pos)
    # the adapter must matter, or the comparison proves nothing about it
    with model.disable_adapter():
        base = torch_logits(model, ids, pos)
    assert rel_err(base, ref) > 100 * TOL, "retort's adapter changes nothing"
    record("PEFT logits of retort's adapter (stories260K, f32)", rel_err(got, ref), TOL)


def test_adapter_config_keys_match_peft(work, stories_hf, retort_adapter):
    """retort's adapter_config.json uses PEFT's key names and value forms:
    every key is one that the pinned PEFT's LoraConfig.save_pretrained writes,
    with a value of the same JSON type, and peft_version / revision as PEFT
    writes them (the version string of the release whose layout it is)."""
    import json
    import peft
    from peft import LoraConfig
    ours = json.loads((retort_adapter / "adapter_config.json").read_text())
    cfg = LoraConfig(r=ours["r"], lora_alpha=ours["lora_alpha"], lora_dropout=ours["lora_dropout"],
                     target_modules=ours["target_modules"], task_type="CAUSAL_LM",
                     base_model_name_or_path=str(stories_hf), inference_mode=True)  # as PeftModel saves
    out = work / "peft-config-only"
    cfg.save_pretrained(out)
    theirs = json.loads((out / "adapter_config.json").read_text())
    unknown = sorted(set(ours) - set(theirs))
    assert not unknown, f"keys PEFT {peft.__version__} does not write: {unknown}"
    kind = lambda v: "null" if v is None else "number" if isinstance(v, (int, float)) and not isinstance(v, bool) \
        else type(v).__name__
    differ = {k: (ours[k], theirs[k]) for k in ours
              if kind(ours[k]) != kind(theirs[k]) or (kind(ours[k]) == "dict" and ours[k] != theirs[k])}
    assert not differ, f"values of another form than PEFT's: {differ}"
    for k in ("peft_version", "revision", "peft_type", "task_type", "target_modules", "r", "lora_alpha",
              "lora_dropout", "base_model_name_or_path"):
        assert k in ours, f"retort's adapter_config.json lacks {k}"
    assert ours["peft_version"] == theirs["peft_version"] == peft.__version__, \
        f"peft_version {ours['peft_version']!r}, PEFT writes {theirs['peft_version']!r}"
    assert ours["revision"] is None and theirs["revision"] is None
    for k in ("lora_alpha", "lora_dropout"):  # written as given: 0.05, not 0.05000000074505806
        assert repr(ours[k]) == repr(theirs[k]), f"{k}: {ours[k]!r} vs PEFT's {theirs[k]!r}"
    # the defaults PEFT writes for what retort does not implement are what retort writes
    same = {k: (ours[k], theirs[k]) for k in ours if k not in ("base_model_name_or_path", "target_modules")
            and ours[k] != theirs[k]}
    assert not same, f"values that differ from PEFT's for the same LoraConfig: {same}"
    record(f"adapter_config.json keys/values as PEFT {peft.__version__} writes ({len(ours)} keys)", 0.0, 0.0)


def train_peft_adapter(base_dir, out_dir, steps=8):
    """A LoRA adapter trained a few AdamW steps by PEFT on Moby-Dick: rank 4,
    alpha 16, on q_proj, v_proj and down_proj only, saved by save_pretrained."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(base_dir)
    cfg = LoraConfig(r=4, lora_alpha=16, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                     target_modules=["q_proj", "v_proj", "down_proj"])
    model = get_peft_model(base, cfg)
    text = MOBY.read_text(encoding="utf-8")[20000:40000]
    x = torch.tensor(tok(text)["input_ids"][:8 * 64]).view(8, 64)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(out_dir)
    return model.eval()


def test_retort_loads_peft_adapter(work, stories_hf, text_file):
    out = work / "peft-adapter"
    model = train_peft_adapter(stories_hf, out)
    assert (out / "adapter_model.safetensors").exists()
    ids, pos, got = retort_eval_logits(work, stories_hf, text_file, SEQ, adapter=out,
                                       name="retort-peft-adapter")
    ref = torch_logits(model, ids, pos)
    with model.disable_adapter():
        base = torch_logits(model, ids, pos)
    assert rel_err(base, ref) > 100 * TOL, "PEFT's adapter changes nothing"
    record("retort logits of PEFT's adapter (stories260K, f32)", rel_err(got, ref), TOL)


def test_peft_loads_retort_adapter_smollm2(work, smollm2_adapter):
    """SmolLM2-135M: transformers reads the GGUF itself (gguf_file=, through
    gguf-py), PEFT adds retort's adapter trained on that GGUF."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from conftest import smollm2_gguf
    gguf = smollm2_gguf()
    adapter, text = smollm2_adapter
    ids, pos, got = retort_eval_logits(work, gguf, text, 64, adapter=adapter, name="peft-smollm2")
    base = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapter).eval()
    ref = torch_logits(model, ids, pos)
    with model.disable_adapter():
        assert rel_err(torch_logits(model, ids, pos), ref) > 10 * TOL, "the adapter changes nothing"
    record("PEFT logits of retort's adapter (SmolLM2-135M from GGUF, f32)", rel_err(got, ref), TOL)
