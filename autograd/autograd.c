#include "autograd/autograd.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/fault.h"

rt_ctx *rt_ctx_new(rt_device dev, size_t arena_chunk_bytes) {
    const rt_kernels *k = rt_kernels_for(dev);
    if (!k) {
        rt_errorf(RT_EINPUT, "this build of retort has no %s backend", rt_device_name(dev));
        return NULL;
    }
    rt_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return NULL;
    ctx->device = dev;
    ctx->k = k;
    ctx->arena = rt_arena_new(dev, arena_chunk_bytes);
    if (!ctx->arena) {
        free(ctx);
        return NULL;
    }
    return ctx;
}

void rt_ctx_free(rt_ctx *ctx) {
    if (!ctx) return;
    rt_arena_free(ctx->arena);
    free(ctx);
}

void rt_ctx_reset(rt_ctx *ctx) {
    rt_arena_reset(ctx->arena);
    ctx->tape = NULL;
    ctx->status = RT_OK;
}

rt_tensor *rt_ctx_fail(rt_ctx *ctx, rt_status st, const char *fmt, ...) {
    if (ctx->status == RT_OK) { /* keep the first, root-cause message */
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        rt_errorf(st, "%s", msg);
        ctx->status = st;
    }
    return NULL;
}

rt_status rt_ctx_check(rt_ctx *ctx) {
    if (ctx->status == RT_OK && rt_fault_status() != RT_OK) {
        rt_errorf(RT_EINTERNAL, "%s", rt_fault_message());
        ctx->status = RT_EINTERNAL;
    }
    return ctx->status;
}

rt_tensor *rt_new(rt_ctx *ctx, rt_dtype dt, int ndim, const int64_t *shape) {
    /* Every op allocates its output here first: a device fault stops the
     * graph at the next op instead of computing on garbage. */
    if (rt_ctx_check(ctx) != RT_OK) return NULL;
    rt_tensor *t = rt_arena_tensor(ctx->arena, dt, ndim, shape);
    if (!t) return rt_ctx_fail(ctx, RT_EINTERNAL, "%s", rt_error_message());
    return t;
}

rt_tensor *rt_new_like(rt_ctx *ctx, const rt_tensor *t) {
    return rt_new(ctx, t->dtype == RT_NF4 ? RT_F32 : t->dtype, t->ndim, t->shape);
}

rt_tensor *rt_view(rt_ctx *ctx, rt_tensor *t, int ndim, const int64_t *shape) {
    rt_tensor *v = rt_arena_alloc_host(ctx->arena, sizeof *v);
    if (!v) return rt_ctx_fail(ctx, RT_EINTERNAL, "%s", rt_error_message());
    *v = *t;
    v->ndim = ndim;
    for (int d = 0; d < ndim; d++) v->shape[d] = shape[d];
    v->grad = NULL;
    v->node = NULL;
    v->requires_grad = false;
    if (rt_numel(v) != rt_numel(t)) {
        char a[64], b[64];
        return rt_ctx_fail(ctx, RT_EINTERNAL, "view: %s has %lld elements, not %s",
                           rt_shape_str(t, a, sizeof a), (long long)rt_numel(t),
                           rt_shape_str(v, b, sizeof b));
    }
    return v;
}

rt_node *rt_record(rt_ctx *ctx, const char *op, rt_backward_fn backward, rt_tensor *out,
                   int n_in, rt_tensor *const *in) {
    if (ctx->no_grad) return NULL;
    bool need = false;
    for (int i = 0; i < n_in; i++) need |= in[i] && in[i]->requires_grad;
    if (!need) return NULL;
    rt_node *n = rt_arena_alloc_host(ctx->arena, sizeof *n);
    if (!n) {
        rt_ctx_fail(ctx, RT_EINTERNAL, "%s", rt_error_message());
        return NULL;
    }
    memset(n, 0, sizeof *n);
    n->op = op;
    n->backward = backward;
    n->out = out;
    n->n_in = n_in;
    for (int i = 0; i < n_in; i++) n->in[i] = in[i];
    n->prev = ctx->tape;
    ctx->tape = n;
    out->requires_grad = true;
    out->node = n;
    return n;
}

rt_tensor *rt_grad(rt_ctx *ctx, rt_tensor *t) {
    if (!t || !t->requires_grad) return NULL;
    if (!t->grad) {
        t->grad = rt_arena_tensor_zero(ctx->arena, RT_F32, t->ndim, t->shape);
        if (!t->grad) rt_ctx_fail(ctx, RT_EINTERNAL, "%s", rt_error_message());
    }
    return t->grad;
}

rt_tensor *rt_grad_fresh(rt_ctx *ctx, rt_tensor *t, bool *fresh) {
    *fresh = false;
    if (!t || !t->requires_grad) return NULL;
    if (t->grad) return t->grad;
    t->grad = rt_arena_tensor(ctx->arena, RT_F32, t->ndim, t->shape);
    if (!t->grad) return rt_ctx_fail(ctx, RT_EINTERNAL, "%s", rt_error_message());
    *fresh = true;
    return t->grad;
}

/* Walks the tape from the newest node down to (excluding) `stop`. */
static rt_status run_backward(rt_ctx *ctx, rt_node *stop) {
    for (rt_node *n = ctx->tape; n && n != stop; n = n->prev) {
        if (n->out->grad) n->backward(ctx, n);
        if (rt_ctx_check(ctx) != RT_OK) return ctx->status;
    }
    return rt_ctx_check(ctx);
}

rt_status rt_backward_from(rt_ctx *ctx, rt_tensor *out, const float *dout) {
    if (rt_ctx_check(ctx) != RT_OK) return ctx->status;
    if (!out) return ctx->status ? ctx->status : rt_errorf(RT_EINTERNAL, "backward of NULL");
    if (!out->requires_grad) return rt_errorf(RT_EINTERNAL, "backward: output needs no gradient");
    rt_tensor *g = rt_grad(ctx, out);
    if (!g) return ctx->status;
    ctx->k->axpy(rt_numel(out), 1.0f, dout, g->data);
    return run_backward(ctx, NULL);
}

rt_status rt_backward(rt_ctx *ctx, rt_tensor *loss) {
    if (rt_ctx_check(ctx) != RT_OK) return ctx->status;
    if (!loss) return ctx->status ? ctx->status : rt_errorf(RT_EINTERNAL, "backward of NULL");
    if (rt_numel(loss) != 1) return rt_errorf(RT_EINTERNAL, "backward: loss is not a scalar");
    rt_tensor *g = rt_grad(ctx, loss);
    if (!g) return ctx->status ? ctx->status : rt_errorf(RT_EINTERNAL, "backward: loss needs no gradient");
    const float one = 1.0f;
    float *tmp = rt_arena_alloc(ctx->arena, sizeof one);
    if (!tmp) return rt_ctx_fail(ctx, RT_EINTERNAL, "%s", rt_error_message()), ctx->status;
    ctx->k->upload(tmp, &one, sizeof one);
    ctx->k->axpy(1, 1.0f, tmp, g->data);
    return run_backward(ctx, NULL);
}

/* ---- activation checkpointing --------------------------------------------- */

typedef struct {
    rt_block_fn fn;
    void *user;
    uint64_t rng_counter; /* dropout stream position at the block's start */
} ckpt_info;

static void checkpoint_backward(rt_ctx *ctx, rt_node *n) {
    ckpt_info *ci = n->p;
    rt_tensor *x = n->in[0];
    rt_tensor *gx = rt_grad(ctx, x); /* before the mark: it must outlive the recompute */
    rt_arena_mark mark = rt_arena_get_mark(ctx->arena);
    rt_node *tape = ctx->tape;
    uint64_t counter = ctx->rng_counter;
    bool no_grad = ctx->no_grad;

    /* A fresh leaf sharing x's data collects the block's input gradient. */
    rt_tensor *xd = rt_view(ctx, x, x->ndim, x->shape);
    if (!xd) return;
    xd->requires_grad = true;
    ctx->no_grad = false;
    ctx->rng_counter = ci->rng_counter;
    rt_tensor *y = ci->fn(ctx, ci->user, xd);
    ctx->rng_counter = counter;
    if (y && y->requires_grad) {
        rt_tensor *gy = rt_grad(ctx, y);
        if (gy) {
            ctx->k->axpy(rt_numel(y), 1.0f, n->out->grad->data, gy->data);
            run_backward(ctx, tape);
            if (gx && xd->grad) ctx->k->axpy(rt_numel(x), 1.0f, xd->grad->data, gx->data);
        }
    } else if (!y) {
        rt_ctx_fail(ctx, RT_EINTERNAL, "checkpoint: the block failed while recomputing");
    }
    ctx->tape = tape;
    ctx->no_grad = no_grad;
    rt_arena_release(ctx->arena, mark);
}

rt_tensor *rt_checkpoint(rt_ctx *ctx, rt_block_fn fn, void *user, rt_tensor *x) {
    if (!x) return NULL;
    uint64_t counter = ctx->rng_counter;
    if (ctx->no_grad) return fn(ctx, user, x);
    rt_tensor *out = rt_new_like(ctx, x);
    ckpt_info *ci = out ? rt_arena_alloc_host(ctx->arena, sizeof *ci) : NULL;
    if (!ci) return rt_ctx_fail(ctx, RT_EINTERNAL, "%s", rt_error_message());
    *ci = (ckpt_info){fn, user, counter};

    /* Run the block without recording, keep only its output. */
    rt_arena_mark mark = rt_arena_get_mark(ctx->arena);
    ctx->no_grad = true;
    rt_tensor *y = fn(ctx, user, x);
    ctx->no_grad = false;
    if (!y) return NULL;
    if (!rt_same_shape(y, x))
        return rt_ctx_fail(ctx, RT_EINTERNAL, "checkpoint: block output shape differs from input");
    ctx->k->copy(out->data, y->data, rt_nbytes(out));
    rt_arena_release(ctx->arena, mark);

    /* The block's parameters are inside `user`, so the node must be recorded
     * even when x itself needs no gradient (the first layer's input). */
    rt_tensor *in[1] = {x};
    bool x_req = x->requires_grad;
    x->requires_grad = true;
    rt_node *n = rt_record(ctx, "checkpoint", checkpoint_backward, out, 1, in);
    x->requires_grad = x_req;
    if (n) n->p = ci;
    return out;
}
