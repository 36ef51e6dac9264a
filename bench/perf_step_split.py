#!/usr/bin/env python3
"""Where a retort training step's CPU time goes, from `perf record --call-graph dwarf`.

Reads `perf script -F time,ip,sym,dso` output (stdin) and a step log whose lines
start with CLOCK_MONOTONIC seconds (the `retort finetune` stderr stamped by
bench/kernel_times.sh), keeps the samples between the end of step FIRST and
the end of step LAST (steady steps only: no loading, no first step), and
prints CPU seconds per step by category. A sample belongs to attention or
cross-entropy when any frame of its call chain is one of their kernels
(their tile GEMMs are OpenBLAS calls), else to its leaf's category.

  perf script -i perf.data -F time,ip,sym,dso | python3 bench/perf_step_split.py steps.log 1 3 99
"""
import re
import sys

ATTN = re.compile(r"^(fwd_gemm_unit|bwd_gemm_pair|fwd_tiled_unit|bwd_tiled_pair|rt_cpu_attention"
                  r"|softmax_scaled_acc_row|pack_tile|tile_dots|probs_and_dscores|unpack_add_tile"
                  r"|mask_segments|rt_cpu_gemm_tile)")
CE = re.compile(r"^(lse_row|row_lse|row_max_sumexp|rt_cpu_cross_entropy|ce_|softmax_row|linear_ce)")
GEMM = re.compile(r"^(sgemm|blas_|cblas_|rt_cpu_gemm|frozen_matmul|exec_blas|inner_thread|gemm_)")
ELEM = re.compile(r"^(rt_cpu_(add|mul|scale|axpy|sum_rows|mul_acc|rmsnorm|rope|swiglu|silu|zero|prefault"
                  r"|copy|permute|dropout|embedding)|add_rmsnorm|swiglu|silu|__memset|__memmove|__memcpy"
                  r"|__sincosf|__powf|__cosf|__sinf|rt_cpu_rope_qk)")
OPT = re.compile(r"^(rt_adamw|adamw|rt_cpu_sumsq|rt_cpu_all_finite)")
NF4 = re.compile(r"^(rt_cpu_nf4|nf4_|dequant)")


def category(frames):
    leaf = frames[0] if frames else "?"
    if any(f == "exc_page_fault@k" for f in frames):
        return "page faults (first touch)"
    for f in frames:
        if ATTN.match(f):
            return "attention"
        if CE.match(f):
            return "cross-entropy"
    for rx, name in ((GEMM, "GEMM"), (ELEM, "elementwise + memset"), (OPT, "optimizer"),
                     (NF4, "NF4 dequant")):
        if rx.match(leaf):
            return name
    if any(f == "exc_page_fault" for f in frames):
        return "page faults (first touch)"
    if leaf.endswith("@k"):
        return "kernel (scheduling, other)"
    return "other"


def main():
    log, first, last, freq = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    ends = {}
    for line in open(log):
        m = re.match(r"([0-9.]+) step (\d+)/", line)
        if m:
            ends[int(m.group(2))] = float(m.group(1))
    t0, t1 = ends[first], ends[last]
    counts, cur_t, frames = {}, None, []

    def flush():
        if cur_t is not None and t0 <= cur_t <= t1:
            c = category(frames)
            counts[c] = counts.get(c, 0) + 1

    for line in sys.stdin:
        m = re.match(r"\s*(?:\S+\s+)?([0-9]+\.[0-9]+):\s*$", line)
        if m:
            flush()
            cur_t, frames = float(m.group(1)), []
            continue
        parts = line.split()
        if len(parts) >= 2 and cur_t is not None:
            sym = parts[1].split("+")[0]
            frames.append(sym + ("@k" if "[kernel.kallsyms]" in line else ""))
    flush()
    steps = last - first
    total = sum(counts.values())
    print("steps %d..%d: %.1f s wall per step, %.1f CPU s per step sampled" % (
        first + 1, last, (t1 - t0) / steps, total / freq / steps))
    for c, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print("%-28s %7.2f CPU s/step  %5.1f%%" % (c, n / freq / steps, 100.0 * n / total))


if __name__ == "__main__":
    main()
