#!/usr/bin/env python3
"""PyTorch + PEFT LoRA training throughput: the peer retort is measured against.

LoRA r=16 (alpha 32, dropout 0.05) on every linear layer of a randomly
initialised Llama (transformers LlamaForCausalLM, bf16 base weights, adapter
weights fp32 as PEFT keeps them), AdamW on the adapters, random token ids as
input and labels (throughput does not depend on the data). Each configuration
runs eager and under torch.compile; each prints training tokens/s over the
timed steps (after warm-up steps, which include compilation) and the peak
CUDA memory torch allocated (torch.cuda.max_memory_allocated: weights,
activations, gradients, optimizer state; not the caching allocator's slack).

Shapes (--config SHAPE:SEQ, repeatable):
  15m  Karpathy's stories15M: hidden 288, 6 layers, 6 heads, 6 KV heads,
       MLP 768, vocab 32000 (tied embeddings, like the llama2.c model)
  1b   Llama-3.2-1B: hidden 2048, 16 layers, 32 heads, 8 KV heads, MLP 8192,
       vocab 128256, rope theta 500000 (tied embeddings, as the release)

  python3 bench/peer_peft.py                          # 15m:2048 and 1b:2048
  python3 bench/peer_peft.py --config 15m:256 --steps 20 --markdown

Needs torch (with CUDA), transformers and peft; run by bench/gpu.sh.
"""
import argparse
import gc
import sys
import time

SHAPES = {
    "15m": dict(hidden_size=288, num_hidden_layers=6, num_attention_heads=6,
                num_key_value_heads=6, intermediate_size=768, vocab_size=32000,
                rope_theta=10000.0, tie_word_embeddings=True),
    "1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, intermediate_size=8192, vocab_size=128256,
               rope_theta=500000.0, tie_word_embeddings=True),
}


def build(shape, seq, grad_ckpt):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(max_position_embeddings=max(seq, 2048), rms_norm_eps=1e-5,
                      attn_implementation="sdpa", **SHAPES[shape])
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    if grad_ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                      bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    model.train()
    return model


def run(shape, seq, batch, mode, steps, warmup, grad_ckpt):
    import torch

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = build(shape, seq, grad_ckpt)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    fwd = torch.compile(model) if mode == "compile" else model
    vocab = SHAPES[shape]["vocab_size"]
    gen = torch.Generator(device="cuda").manual_seed(1)

    def one_step():
        ids = torch.randint(0, vocab, (batch, seq), device="cuda", generator=gen)
        loss = fwd(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    t0 = time.perf_counter()
    for _ in range(warmup):
        one_step()
    torch.cuda.synchronize()
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = one_step()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30
    row = dict(shape=shape, seq=seq, batch=batch, mode=mode, tps=steps * batch * seq / dt,
               step_ms=1e3 * dt / steps, peak_gib=peak, warm_s=warm_s, loss=float(loss),
               trainable=trainable, total=total)
    del fwd, model, opt
    gc.collect()
    torch.cuda.empty_cache()
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", action="append", default=None,
                    help="SHAPE:SEQ, SHAPE in %s (default: 15m:2048 and 1b:2048)" % sorted(SHAPES))
    ap.add_argument("--batch", type=int, default=1, help="sequences per step [1]")
    ap.add_argument("--steps", type=int, default=10, help="timed steps [10]")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first, compile included [3]")
    ap.add_argument("--modes", default="eager,compile", help="eager,compile [both]")
    ap.add_argument("--grad-ckpt", action="store_true", help="gradient checkpointing")
    ap.add_argument("--markdown", action="store_true", help="markdown table rows")
    args = ap.parse_args()

    import peft
    import torch
    import transformers

    if not torch.cuda.is_available():
        sys.exit("peer_peft.py: no CUDA device")
    print("# torch %s, transformers %s, peft %s, %s" % (
        torch.__version__, transformers.__version__, peft.__version__, torch.cuda.get_device_name()),
        flush=True)
    configs = args.config or ["15m:2048", "1b:2048"]
    if args.markdown:
        print("| shape | seq x batch | mode | trainable / total params | tokens/s | ms/step "
              "| peak GiB | warm-up s |")
        print("|---|---|---|---|---:|---:|---:|---:|")
    status = 0
    for c in configs:
        shape, seq = c.split(":")
        if shape not in SHAPES:
            sys.exit("peer_peft.py: unknown shape %r (have %s)" % (shape, sorted(SHAPES)))
        for mode in args.modes.split(","):
            try:
                r = run(shape, int(seq), args.batch, mode, args.steps, args.warmup, args.grad_ckpt)
            except Exception as e:  # one failed configuration (OOM, compile) does not stop the rest
                status = 1
                msg = "%s: %s" % (type(e).__name__, str(e).splitlines()[0][:120] if str(e) else "")
                print(("| %s | %s x %d | %s | - | error | - | - | %s |" if args.markdown else
                       "%s seq %s batch %d %s: error: %s") % (shape, seq, args.batch, mode, msg),
                      flush=True)
                gc.collect()
                torch.cuda.empty_cache()
                continue
            if args.markdown:
                print("| %s | %d x %d | %s | %.2fM / %.1fM | **%.0f** | %.1f | %.2f | %.1f |" % (
                    r["shape"], r["seq"], r["batch"], r["mode"], r["trainable"] / 1e6,
                    r["total"] / 1e6, r["tps"], r["step_ms"], r["peak_gib"], r["warm_s"]),
                    flush=True)
            else:
                print("%s seq %d batch %d %s: %.0f tokens/s, %.1f ms/step, peak %.2f GiB, "
                      "warm-up %.1f s, loss %.3f" % (r["shape"], r["seq"], r["batch"], r["mode"],
                                                      r["tps"], r["step_ms"], r["peak_gib"],
                                                      r["warm_s"], r["loss"]), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
