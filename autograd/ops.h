/* retort — the differentiable ops. Each op lives in one autograd/op_*.c file
 * with its forward and its backward side by side; it checks its inputs,
 * calls the kernel of the inputs' device, and records a tape node.
 *
 * Conventions: activations are f32 and row-major contiguous; "[..., D]" means
 * any leading dims. Every op returns a new arena tensor (views say so), or
 * NULL on error / NULL input (see autograd.h). Integer inputs (ids, labels,
 * positions, segments) are RT_I32 tensors and are never differentiated.
 */
#ifndef RT_OPS_H
#define RT_OPS_H

#include "autograd/autograd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Every op, so tests/test_ops.c can check that each one has a test row. */
typedef enum {
    RT_OP_EMBEDDING,
    RT_OP_MATMUL,
    RT_OP_LINEAR,
    RT_OP_ADD,
    RT_OP_MUL,
    RT_OP_SCALE,
    RT_OP_RMSNORM,
    RT_OP_ROPE,
    RT_OP_SILU,
    RT_OP_SWIGLU,
    RT_OP_SOFTMAX,
    RT_OP_LOG_SOFTMAX,
    RT_OP_ATTENTION,
    RT_OP_DROPOUT,
    RT_OP_CROSS_ENTROPY,
    RT_OP_KL_DIV,
    RT_OP_RESHAPE,
    RT_OP_PERMUTE,
    RT_OP_SLICE,
    RT_OP_CHECKPOINT,
    RT_OP_COUNT
} rt_op;

const char *rt_op_name(rt_op op);

/* weight [V, D], ids i32 [...] -> [..., D]. Out-of-range ids are an error. */
rt_tensor *rt_embedding(rt_ctx *ctx, rt_tensor *weight, rt_tensor *ids);

/* a [..., M, K] (or [..., K, M] with trans_a), b [..., K, N] (or [..., N, K]
 * with trans_b) -> [..., M, N]. 2-D, or batched with equal leading dims, or
 * a batched a with a 2-D b (b broadcast). */
rt_tensor *rt_matmul(rt_ctx *ctx, rt_tensor *a, rt_tensor *b, bool trans_a, bool trans_b);

/* x [..., in], weight [out, in] (f32, or frozen RT_NF4: dequantized into
 * scratch for the one matmul, never kept), bias [out] or NULL
 * -> x @ weight^T + bias, [..., out]. */
rt_tensor *rt_linear(rt_ctx *ctx, rt_tensor *x, rt_tensor *weight, rt_tensor *bias);

/* b has a's shape, or a's trailing dims (broadcast over leading rows). */
rt_tensor *rt_add(rt_ctx *ctx, rt_tensor *a, rt_tensor *b);
rt_tensor *rt_mul(rt_ctx *ctx, rt_tensor *a, rt_tensor *b);
rt_tensor *rt_scale(rt_ctx *ctx, rt_tensor *a, float s);

/* x [..., D], weight [D]: x / sqrt(mean(x^2) + eps) * weight (HF LlamaRMSNorm). */
rt_tensor *rt_rmsnorm(rt_ctx *ctx, rt_tensor *x, rt_tensor *weight, float eps);

/* x [B, T, H, Dh], pos i32 [B, T] -> x rotated (see kernels.h for the angle
 * and the two pair layouts). */
rt_tensor *rt_rope(rt_ctx *ctx, rt_tensor *x, rt_tensor *pos, float theta, rt_rope_layout layout);

rt_tensor *rt_silu(rt_ctx *ctx, rt_tensor *x);
/* silu(gate) * up, same shapes. */
rt_tensor *rt_swiglu(rt_ctx *ctx, rt_tensor *gate, rt_tensor *up);

/* Over the last dim. */
rt_tensor *rt_softmax(rt_ctx *ctx, rt_tensor *x);
rt_tensor *rt_log_softmax(rt_ctx *ctx, rt_tensor *x);

/* Causal grouped-query attention, q [B, T, H, Dh], k, v [B, T, Hkv, Dh],
 * seg i32 [B, T] or NULL (packed samples attend only within their segment)
 * -> [B, T, H, Dh]. Differentiable in q, k, v. */
rt_tensor *rt_attention(rt_ctx *ctx, rt_tensor *q, rt_tensor *k, rt_tensor *v, rt_tensor *seg);

/* Inverted dropout with probability p while ctx->training; identity (the
 * same tensor) otherwise or when p == 0. */
rt_tensor *rt_dropout(rt_ctx *ctx, rt_tensor *x, float p);

/* logits [..., V], labels i32 [...] with ignore_index -100 -> scalar
 * sum(nll over non-ignored) / denom; denom <= 0 means the number of
 * non-ignored labels (a step's loss over several micro-batches passes the
 * step's total token count instead, so the step loss is the mean over all
 * its tokens). */
#define RT_IGNORE_INDEX (-100)
rt_tensor *rt_cross_entropy(rt_ctx *ctx, rt_tensor *logits, rt_tensor *labels, float denom);

/* Knowledge distillation (Hinton et al. 2015): scalar
 * T^2 * sum_rows KL(softmax(teacher/T) || softmax(student/T)) / denom over
 * rows whose label is not ignore_index (labels may be NULL: all rows), denom
 * as in rt_cross_entropy. Differentiable in student only. */
rt_tensor *rt_kl_div(rt_ctx *ctx, rt_tensor *student, rt_tensor *teacher, rt_tensor *labels,
                     float temperature, float denom);

/* A view with another shape of the same numel (shares data). */
rt_tensor *rt_reshape(rt_ctx *ctx, rt_tensor *x, int ndim, const int64_t *shape);
/* out dim d = x dim perm[d] (a contiguous copy). */
rt_tensor *rt_permute(rt_ctx *ctx, rt_tensor *x, const int *perm);
/* Rows [start, start+len) of the leading dim (a view). */
rt_tensor *rt_slice(rt_ctx *ctx, rt_tensor *x, int64_t start, int64_t len);

/* Convenience constructors (arena): an I32 tensor from host ints, and an
 * f32 tensor from host floats, on the ctx device; no grad. */
rt_tensor *rt_from_i32(rt_ctx *ctx, const int32_t *host, int ndim, const int64_t *shape);
rt_tensor *rt_from_f32(rt_ctx *ctx, const float *host, int ndim, const int64_t *shape);
/* Copies numel(t) f32 values to host memory. */
void rt_to_host(rt_ctx *ctx, const rt_tensor *t, float *host);

#ifdef __cplusplus
}
#endif
#endif
