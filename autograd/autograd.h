/* retort — the context, the tape and reverse-mode differentiation.
 *
 * Every op takes an rt_ctx: the device its kernels run on, the step arena its
 * outputs live in, and the tape it records to. An op whose inputs need no
 * gradient (or any op in no-grad mode) records nothing and keeps nothing.
 *
 * Errors inside a forward pass (out of memory, a shape mismatch, a missing
 * kernel) make the op return NULL and set ctx->status + the error message;
 * every op returns NULL when given a NULL input, so a whole graph can be
 * built and checked once at the end (`if (!loss) return ctx->status;`).
 */
#ifndef RT_AUTOGRAD_H
#define RT_AUTOGRAD_H

#include "autograd/tensor.h"
#include "kernels/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RT_NODE_MAX_IN 4
#define RT_NODE_MAX_SAVED 4

struct rt_ctx;
struct rt_node;
typedef void (*rt_backward_fn)(struct rt_ctx *ctx, struct rt_node *n);

/* One recorded op: its inputs, what its backward needs, and its output. */
typedef struct rt_node {
    const char *op;
    rt_backward_fn backward;
    struct rt_node *prev;                 /* tape is a list in the arena */
    rt_tensor *out;
    int n_in;
    rt_tensor *in[RT_NODE_MAX_IN];
    rt_tensor *saved[RT_NODE_MAX_SAVED];  /* extra tensors backward needs */
    float f[4];                           /* op scalars (eps, scale, p, ...) */
    int64_t i[4];                         /* op integers (flags, seeds, ...) */
    void *p;                              /* op-specific pointer (arena-owned) */
} rt_node;

typedef struct rt_ctx {
    rt_device device;
    const rt_kernels *k;     /* kernel table of `device` */
    rt_arena *arena;         /* activations; owned; reset by rt_ctx_reset */
    rt_node *tape;           /* last recorded node (NULL: empty) */
    bool no_grad;            /* record nothing (eval, teacher forward) */
    bool training;           /* dropout active */
    uint64_t seed;           /* dropout stream: masks are f(seed, counter) */
    uint64_t rng_counter;
    rt_status status;        /* first error of this step, RT_OK otherwise */
} rt_ctx;

/* NULL when the build lacks the device (message set). */
rt_ctx *rt_ctx_new(rt_device dev, size_t arena_chunk_bytes);
void rt_ctx_free(rt_ctx *ctx);
/* Drops the tape and every activation: call once per step. */
void rt_ctx_reset(rt_ctx *ctx);

/* Records the first error of the step; always returns NULL (op tail-call). */
rt_tensor *rt_ctx_fail(rt_ctx *ctx, rt_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Folds the process's device fault (kernels/fault.h: the first failed CUDA,
 * cuBLAS, cuDNN or NCCL call) into ctx->status and the error message, once;
 * returns ctx->status. rt_new (so every op), rt_backward and rt_to_host call
 * it, and so does the trainer after every optimizer step. */
rt_status rt_ctx_check(rt_ctx *ctx);

/* ---- helpers for op implementations ---- */

/* A new activation tensor in the arena (f32 unless dt says otherwise).
 * NULL + ctx error on OOM. */
rt_tensor *rt_new(rt_ctx *ctx, rt_dtype dt, int ndim, const int64_t *shape);
rt_tensor *rt_new_like(rt_ctx *ctx, const rt_tensor *t);
/* A view of t (shared data) with another shape of equal numel. */
rt_tensor *rt_view(rt_ctx *ctx, rt_tensor *t, int ndim, const int64_t *shape);

/* Appends a node for `out` if grad is enabled and some input requires grad;
 * then marks out->requires_grad. Returns the node (to fill saved/f/i) or
 * NULL when nothing was recorded. */
rt_node *rt_record(rt_ctx *ctx, const char *op, rt_backward_fn backward, rt_tensor *out,
                   int n_in, rt_tensor *const *in);

/* The gradient of t to accumulate into: t->grad, allocated zeroed in the
 * arena on first use; NULL if t does not require grad. */
rt_tensor *rt_grad(rt_ctx *ctx, rt_tensor *t);
/* The same for a backward that can overwrite: when t has no gradient yet,
 * it is allocated UNinitialised and *fresh is set (the caller must write
 * every element, not add); otherwise *fresh is false and the caller adds.
 * Saves the memset of a buffer the first contribution fills anyway. */
rt_tensor *rt_grad_fresh(rt_ctx *ctx, rt_tensor *t, bool *fresh);

/* ---- differentiation ---- */

/* Backward from a scalar loss (d loss = 1). Gradients accumulate into
 * every reachable tensor that requires grad (parameters: into the flat
 * gradient buffer). */
rt_status rt_backward(rt_ctx *ctx, rt_tensor *loss);
/* Backward from any tensor with a given upstream gradient (f32, numel(out)
 * elements on the ctx device); used by tests and by checkpointing. */
rt_status rt_backward_from(rt_ctx *ctx, rt_tensor *out, const float *dout);

/* ---- activation checkpointing (Chen et al. 2016, "Training Deep Nets with
 * Sublinear Memory Cost") ----
 * fn maps x to a tensor of x's shape (one transformer layer). Forward runs
 * fn without recording and keeps only the output; backward re-runs fn with
 * the same dropout stream, backpropagates through the recomputed block and
 * frees its activations again. Parameters read inside fn get their
 * gradients as usual. Any other tensor fn reads besides x must either need
 * no gradient (frozen weights, positions) or have its gradient allocated
 * before backward (rt_grad): a gradient first created during the recompute
 * would be freed with the recompute's activations. */
typedef rt_tensor *(*rt_block_fn)(rt_ctx *ctx, void *user, rt_tensor *x);
rt_tensor *rt_checkpoint(rt_ctx *ctx, rt_block_fn fn, void *user, rt_tensor *x);

#ifdef __cplusplus
}
#endif
#endif
