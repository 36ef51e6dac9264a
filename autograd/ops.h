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

/* Every op, once: its enum value and its name (tests/test_ops.c checks that
 * each one has a test row). */
#define RT_OPS(X) \
    X(EMBEDDING, "embedding") \
    X(MATMUL, "matmul") \
    X(LINEAR, "linear") \
    X(ADD, "add") \
    X(MUL, "mul") \
    X(SCALE, "scale") \
    X(RMSNORM, "rmsnorm") \
    X(ROPE, "rope") \
    X(SILU, "silu") \
    X(SWIGLU, "swiglu") \
    X(ADD_RMSNORM, "add_rmsnorm") \
    X(ROPE_QK, "rope_qk") \
    X(SOFTMAX, "softmax") \
    X(LOG_SOFTMAX, "log_softmax") \
    X(ATTENTION, "attention") \
    X(DROPOUT, "dropout") \
    X(CROSS_ENTROPY, "cross_entropy") \
    X(KL_DIV, "kl_div") \
    X(RESHAPE, "reshape") \
    X(PERMUTE, "permute") \
    X(SLICE, "slice") \
    X(CHECKPOINT, "checkpoint") \
    X(KD_LOSS, "kd_loss") \
    X(LINEAR_LORA, "linear_lora") \
    X(LINEAR_CROSS_ENTROPY, "linear_cross_entropy") \
    X(GEGLU, "geglu")

typedef enum {
#define RT_OP_ENUM(id, name) RT_OP_##id,
    RT_OPS(RT_OP_ENUM)
#undef RT_OP_ENUM
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

/* A LoRA-adapted linear without bias (Hu et al. 2021; PEFT's LoraLayer):
 * x [..., in], weight [out, in] (f32 or frozen NF4, as rt_linear), h [..., r]
 * = lora_A(dropout(x)) computed by the caller, lora_B [out, r]
 * -> x @ weight^T + scaling * h @ lora_B^T, [..., out], as one tensor (the
 * low-rank term accumulates in the same GEMM output; no intermediates). */
rt_tensor *rt_linear_lora(rt_ctx *ctx, rt_tensor *x, rt_tensor *weight, rt_tensor *h,
                          rt_tensor *lora_B, float scaling);

/* b has a's shape, or a's trailing dims (broadcast over leading rows). */
rt_tensor *rt_add(rt_ctx *ctx, rt_tensor *a, rt_tensor *b);
rt_tensor *rt_mul(rt_ctx *ctx, rt_tensor *a, rt_tensor *b);
rt_tensor *rt_scale(rt_ctx *ctx, rt_tensor *a, float s);

/* x [..., D], weight [D]: x / sqrt(mean(x^2) + eps) * weight (HF LlamaRMSNorm). */
rt_tensor *rt_rmsnorm(rt_ctx *ctx, rt_tensor *x, rt_tensor *weight, float eps);

/* x [B, T, H, Dh], pos i32 [B, T] -> x rotated (see kernels.h for the angle
 * and the two pair layouts). */
rt_tensor *rt_rope(rt_ctx *ctx, rt_tensor *x, rt_tensor *pos, float theta, rt_rope_layout layout);

/* Fused chains (autograd/op_fused.c): the same results as the separate ops
 * in one pass each way.
 * x, d [..., D], weight [D]: *sum = x + d (the residual stream, a tensor of
 * its own that later ops may use), returns rt_rmsnorm(*sum, weight, eps). */
rt_tensor *rt_add_rmsnorm(rt_ctx *ctx, rt_tensor *x, rt_tensor *d, rt_tensor *weight, float eps,
                          rt_tensor **sum);
/* q [B, T, Hq, Dh], k [B, T, Hk, Dh], pos i32 [B, T]: returns rt_rope(q),
 * *k_out = rt_rope(k), the angles computed once per token. */
rt_tensor *rt_rope_qk(rt_ctx *ctx, rt_tensor *q, rt_tensor *k, rt_tensor *pos, float theta,
                      rt_rope_layout layout, rt_tensor **k_out);

rt_tensor *rt_silu(rt_ctx *ctx, rt_tensor *x);
/* silu(gate) * up, same shapes. */
rt_tensor *rt_swiglu(rt_ctx *ctx, rt_tensor *gate, rt_tensor *up);
/* gelu_tanh(gate) * up, same shapes (GeGLU: Gemma's gated MLP with
 * transformers' "gelu_pytorch_tanh"; autograd/op_geglu.c). */
rt_tensor *rt_geglu(rt_ctx *ctx, rt_tensor *gate, rt_tensor *up);

/* Over the last dim. */
rt_tensor *rt_softmax(rt_ctx *ctx, rt_tensor *x);
rt_tensor *rt_log_softmax(rt_ctx *ctx, rt_tensor *x);

/* Causal grouped-query attention, q [B, T, H, Dh], k, v [B, T, Hkv, Dh],
 * seg i32 [B, T] or NULL (packed samples attend only within their segment)
 * -> [B, T, H, Dh]. Differentiable in q, k, v. */
rt_tensor *rt_attention(rt_ctx *ctx, rt_tensor *q, rt_tensor *k, rt_tensor *v, rt_tensor *seg);
/* The same with a sliding window (window > 0; 0 is rt_attention): query at
 * position p sees keys j with p - window < j <= p (Gemma 3's local layers;
 * transformers' sliding_window_overlay). */
rt_tensor *rt_attention_window(rt_ctx *ctx, rt_tensor *q, rt_tensor *k, rt_tensor *v,
                               rt_tensor *seg, int64_t window);

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

/* rt_cross_entropy(rt_linear(x, weight, NULL), labels, denom) without the
 * [..., V] logits: x [..., D], weight [V, D] f32 (the lm_head), labels i32
 * [...]. The rows go through in chunks of a few MiB of logits; each chunk's
 * GEMM, log-sum-exp and, when a gradient will be needed, its gradient
 * (softmax - onehot, in the chunk's buffer) and that gradient's products
 * with weight (dx, saved [..., D]) and x (dweight, saved [V, D], only if
 * weight requires grad) are done before the next, as Liger-Kernel's fused
 * linear cross-entropy (Hsu et al. 2024) does. Backward scales the saved
 * gradients by the upstream one. */
rt_tensor *rt_linear_cross_entropy(rt_ctx *ctx, rt_tensor *x, rt_tensor *weight,
                                   rt_tensor *labels, float denom);

/* Knowledge distillation (Hinton et al. 2015): scalar
 * T^2 * sum_rows KL(softmax(teacher/T) || softmax(student/T)) / denom over
 * rows whose label is not ignore_index (labels may be NULL: all rows), denom
 * as in rt_cross_entropy. Differentiable in student only. */
rt_tensor *rt_kl_div(rt_ctx *ctx, rt_tensor *student, rt_tensor *teacher, rt_tensor *labels,
                     float temperature, float denom);

/* ---- distillation losses (autograd/op_kd.c, kernels/cpu/kd.c) ----
 *
 * Per row (token position), at temperature T > 0 with p = teacher
 * softmax(t/T) and q = student softmax(s/T):
 *   RT_KD_FORWARD_KL  KL(p||q) = sum_v p log(p/q)   (Hinton et al. 2015,
 *                     "Distilling the Knowledge in a Neural Network")
 *   RT_KD_REVERSE_KL  KL(q||p) = sum_v q log(q/p)   (mode seeking; MiniLLM,
 *                     Gu et al. 2024)
 *   RT_KD_JSD         generalized JSD_beta = beta KL(p||M) + (1-beta) KL(q||M),
 *                     M = beta p + (1-beta) q (GKD, Agarwal et al. 2024, "On-
 *                     Policy Distillation of Language Models"; TRL's
 *                     GKDTrainer.generalized_jsd_loss, Liger's LigerJSD).
 *                     0 <= JSD_beta <= H(beta) = -beta ln beta - (1-beta) ln(1-beta)
 *                     (ln 2 at beta = 0.5). beta == 0 is computed EXACTLY as
 *                     forward KL and beta == 1 exactly as reverse KL, as TRL
 *                     and Liger do: at the endpoints M equals q (resp. p) and
 *                     the surviving term has weight 0, so the mixture formula
 *                     is identically 0 there. Near the endpoints
 *                     JSD_beta ~ beta KL(p||q) (resp. (1-beta) KL(q||p)), so the
 *                     loss scale is discontinuous at beta in {0, 1}: GKD's
 *                     "beta interpolates between forward and reverse KL" holds
 *                     for the direction of the gradient, not its size.
 * The loss is the scalar T^2 * sum_rows D / denom, the T^2 keeping gradient
 * magnitudes comparable across temperatures (Hinton et al.); rows whose label
 * is RT_IGNORE_INDEX contribute nothing (labels NULL: every row counts);
 * denom as in rt_cross_entropy (<= 0: the number of rows that count; no row
 * counts: loss 0, gradient 0). Gradient flows to the student only.
 *
 * Top-k teacher (teacher_ids != NULL): a cached or online teacher keeps only
 * its k most likely tokens per row: teacher = log p at those ids (f32
 * [..., k], already at temperature T, e.g. from rt_kd_topk) and teacher_ids
 * (i32 [..., k], distinct per row, in [0, V)). The two distributions are then
 * compared on k+1 buckets: the k teacher tokens, plus one "rest" bucket for
 * everything else, holding p_rest = 1 - sum_k p and the student's
 * q_rest = sum of q over the V-k tokens outside the teacher's top-k. The
 * student is thus still pushed to put (only) p_rest on the tail as a whole,
 * instead of either ignoring the tail (which lets the student's tail mass
 * grow unchecked) or renormalising the teacher's top-k (which claims the
 * teacher puts zero mass there). Numerical care: q_rest is summed over the
 * complement (the ids are sorted per row), never formed as 1 - sum_k q, which
 * would cancel catastrophically when the top-k holds almost all the mass;
 * both rest masses are clamped at 1e-12 before their logs (p_rest is only as
 * exact as the f32 log-probs it comes from, ~1e-7 absolute, and may round
 * slightly negative; its weight is clamped at 0). Below the clamp the value
 * saturates while the gradient keeps its unclamped form (bounded: q_v/q_rest
 * <= 1 on the tail), which still pushes the student's tail mass toward
 * p_rest. With k == V the rest bucket is empty and dropped, and the loss
 * equals the full one up to the rounding of the given log-probs. */
typedef enum { RT_KD_FORWARD_KL, RT_KD_REVERSE_KL, RT_KD_JSD } rt_kd_kind;

/* student f32 [..., V]; teacher: full logits f32 of the student's shape
 * (teacher_ids NULL), or top-k log-probs f32 [..., k] with teacher_ids i32 of
 * the same shape (rows: numel / k must equal the student's, 1 <= k <= V);
 * labels i32 [...] (one per row, in [0, V) or RT_IGNORE_INDEX) or NULL.
 * beta is used by RT_KD_JSD only and must lie in [0, 1]. Returns a 0-dim f32
 * tensor. Errors (RT_EINPUT): T <= 0, beta outside [0, 1], a teacher id
 * outside [0, V) or repeated within a row, a label outside the vocabulary;
 * shape/dtype/device mismatches are RT_EINTERNAL. */
rt_tensor *rt_kd_loss(rt_ctx *ctx, rt_tensor *student, rt_tensor *teacher, rt_tensor *teacher_ids,
                      rt_tensor *labels, rt_kd_kind kind, float beta, float temperature,
                      float denom);

/* No-grad helper: the top k of each row of teacher logits f32 [..., V] (on the
 * ctx device) at temperature T -> *ids i32 [..., k] and *logp f32 [..., k] =
 * log softmax(t/T) at those ids (the softmax over all V), in descending
 * order, ties broken by the lower id. Used by the online top-k path and by
 * the teacher-logit cache, so both see identical numbers. The outputs are
 * arena tensors of ctx (freed by rt_ctx_reset), never recorded on the tape.
 * Errors: k outside [1, V] or T <= 0 (RT_EINPUT), a bad teacher tensor or a
 * missing kernel (RT_EINTERNAL); *ids and *logp are NULL then. */
rt_status rt_kd_topk(rt_ctx *ctx, rt_tensor *teacher_logits, int k, float temperature,
                     rt_tensor **ids, rt_tensor **logp);

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
/* Copies numel(t) f32 values to host memory. Returns ctx's status after the
 * copy (rt_ctx_check): on a device fault the host values are NaN and the
 * fault's message is set. */
rt_status rt_to_host(rt_ctx *ctx, const rt_tensor *t, float *host);

#ifdef __cplusplus
}
#endif
#endif
