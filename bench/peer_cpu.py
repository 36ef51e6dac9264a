#!/usr/bin/env python3
"""The CPU peer of bench/peer_bench.sh: one PEFT LoRA training configuration.

transformers' LlamaForCausalLM loaded from a model directory written by
bench/make_synthetic (the same weights retort trains), PEFT LoRA r=16,
alpha 32, dropout 0 on every linear layer (target_modules "all-linear"),
AdamW (lr 1e-4) on the adapters, f32 on the CPU, eager or torch.compile.
Input: the directory's tokenizer.json applied to the same text retort reads,
cut into windows of seq+1 tokens (labels = ids, shifted inside the model, as
transformers does); random ids if the tokenizer cannot be loaded.

Prints one JSON line: the wall time of every timed step (after --warmup
steps, which include compilation), their median, tokens/s, the warm-up time
and the loss. Peak RSS is measured outside (GNU time), so run one
configuration per process.

  python bench/peer_cpu.py --model DIR --text FILE --seq 512 --batch 4 --mode eager
"""
import argparse
import json
import os
import statistics
import sys
import time


def batches(args, vocab):
    import torch
    ids = None
    try:
        from transformers import PreTrainedTokenizerFast
        tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(args.model, "tokenizer.json"))
        with open(args.text, encoding="utf-8") as f:
            ids = tok(f.read())["input_ids"]
        source = "tokenizer.json"
    except Exception as e:  # noqa: BLE001 - fall back to random ids, and say so
        print("peer_cpu.py: tokenizer failed (%s); random ids" % e, file=sys.stderr)
    if not ids or len(ids) < args.batch * (args.seq + 1):
        g = torch.Generator().manual_seed(1)
        ids = torch.randint(0, vocab, (args.batch * (args.seq + 1) * 8,), generator=g).tolist()
        source = "random"
    w = args.seq + 1
    rows = [ids[i:i + args.seq] for i in range(0, len(ids) - w, w)]
    n = len(rows) // args.batch
    out = [torch.tensor(rows[i * args.batch:(i + 1) * args.batch]) for i in range(n)]
    return out, source


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--mode", choices=["eager", "compile", "bnb4"], default="eager",
                    help="bnb4: QLoRA, the base quantized to NF4 by bitsandbytes (4-bit training "
                         "on the CPU; needs bitsandbytes >= 0.49), eager")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch
    import peft
    import transformers
    if args.mode == "bnb4":
        import bitsandbytes
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    quant = {}
    if args.mode == "bnb4":  # QLoRA's recipe: NF4 base, double quantization, f32 compute
        from transformers import BitsAndBytesConfig
        quant = dict(device_map="cpu", quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32))
    model = LlamaForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32,
                                             attn_implementation="sdpa", **quant)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                      bias="none", task_type="CAUSAL_LM")
    n4 = 0
    if args.mode == "bnb4":  # the base really is 4-bit: count bitsandbytes' NF4 layers
        n4 = sum(isinstance(m, bitsandbytes.nn.Linear4bit) for m in model.modules())
        if n4 == 0:
            sys.exit("peer_cpu.py: bnb4: no bitsandbytes Linear4bit layer after loading")
    model = get_peft_model(model, lora)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    fwd = torch.compile(model) if args.mode == "compile" else model
    data, source = batches(args, model.config.vocab_size)

    def step(i):
        ids = data[i % len(data)]
        loss = fwd(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    t0 = time.perf_counter()
    for i in range(args.warmup):
        step(i)
    warm = time.perf_counter() - t0
    times, loss = [], 0.0
    for i in range(args.steps):
        t0 = time.perf_counter()
        loss = step(args.warmup + i)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(json.dumps(dict(peer="torch %s transformers %s peft %s" % (
        torch.__version__, transformers.__version__, peft.__version__) + (
            " bitsandbytes %s" % bitsandbytes.__version__ if args.mode == "bnb4" else ""),
        mode=args.mode, nf4_layers=n4,
        seq=args.seq, batch=args.batch, threads=torch.get_num_threads(), data=source,
        step_s=[round(t, 3) for t in times], median_s=round(med, 3),
        tokens_per_s=round(args.batch * args.seq / med, 1), warmup_s=round(warm, 1),
        loss=round(loss, 4))), flush=True)


if __name__ == "__main__":
    main()
