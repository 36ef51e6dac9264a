/* retort — the table-driven op test (tests/test_ops.c).
 *
 * One row per test case. The harness (test_ops.c) fills the float inputs
 * with uniform random values in [lo, hi] (default [-1, 1]), runs `build`
 * on the CPU, and checks:
 *   1. forward: the output against `ref`, a naive loop written independently
 *      of the kernels (accumulating in double), within fwd_tol (max abs error
 *      relative to max(1, max |ref|));
 *   2. backward: for every input with diff[i], the analytic gradient of
 *      L = sum(out * G) (G random) against central finite differences of L
 *      (computed in double from f32 forwards), max relative error <= grad_tol;
 *   3. (when built with CUDA and a GPU is present) the same on the GPU
 *      against the CPU.
 * Non-float inputs (ids, labels, positions, segments) are made inside
 * build/ref from fixed arrays. Case files: tests/op_cases_*.c, each exports
 * an array and its length; test_ops.c lists them all and fails if an rt_op
 * has no row.
 */
#ifndef RT_OP_CASES_H
#define RT_OP_CASES_H

#include "autograd/ops.h"

#define RT_CASE_MAX_IN 4

typedef struct rt_op_case {
    rt_op op;
    const char *name;                              /* e.g. "matmul 2-D, b transposed" */
    int n_in;                                      /* float inputs */
    int ndim[RT_CASE_MAX_IN];
    int64_t shape[RT_CASE_MAX_IN][RT_MAX_DIMS];
    bool diff[RT_CASE_MAX_IN];                     /* gradient-check this input */
    /* The op under test; in[i] are f32 tensors with requires_grad = diff[i]. */
    rt_tensor *(*build)(rt_ctx *ctx, rt_tensor **in);
    /* Naive reference: in[i] host arrays, writes numel(out) floats to out. */
    void (*ref)(const float *const *in, float *out);
    float fwd_tol;                                 /* 0: default 1e-4 */
    float grad_tol;                                /* 0: default 1e-2 */
    float lo, hi;                                  /* 0,0: default -1, 1 */
} rt_op_case;

extern const rt_op_case rt_op_cases_a[];
extern const int rt_n_op_cases_a;
extern const rt_op_case rt_op_cases_b[];
extern const int rt_n_op_cases_b;
extern const rt_op_case rt_op_cases_c[];
extern const int rt_n_op_cases_c;
extern const rt_op_case rt_op_cases_d[];
extern const int rt_n_op_cases_d;
extern const rt_op_case rt_op_cases_e[];
extern const int rt_n_op_cases_e;

#endif
