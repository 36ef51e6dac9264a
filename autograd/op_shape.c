/* retort — shape ops (reshape, permute, slice), host <-> tensor helpers and
 * the op names. */
#include "autograd/ops.h"

#include <math.h>

static const char *const op_names[RT_OP_COUNT] = {
#define RT_OP_NAME(id, name) [RT_OP_##id] = name,
    RT_OPS(RT_OP_NAME)
#undef RT_OP_NAME
};

const char *rt_op_name(rt_op op) {
    return (unsigned)op < RT_OP_COUNT && op_names[op] ? op_names[op] : "?";
}

/* ---- reshape: a view; its gradient flows back unchanged ---- */

/* When x has no gradient yet, the view's gradient becomes x's (same data,
 * x's shape): no memset, no copy. The view's own gradient is complete when
 * this runs and nothing reads it afterwards. */
static void view_backward(rt_ctx *ctx, rt_node *n) {
    rt_tensor *x = n->in[0];
    if (!x->requires_grad) return;
    if (!x->grad) {
        rt_tensor *g = rt_view(ctx, n->out->grad, x->ndim, x->shape);
        if (g) x->grad = g;
        return;
    }
    ctx->k->axpy(rt_numel(x), 1.0f, n->out->grad->data, x->grad->data);
}

rt_tensor *rt_reshape(rt_ctx *ctx, rt_tensor *x, int ndim, const int64_t *shape) {
    if (!x) return NULL;
    if (ndim < 0 || ndim > RT_MAX_DIMS)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "reshape: rank %d is not in [0, %d]", ndim, RT_MAX_DIMS);
    rt_tensor *y = rt_view(ctx, x, ndim, shape);
    if (!y) return NULL;
    if (x->requires_grad && x->dtype != RT_F32)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "reshape: gradient of a %s tensor", rt_dtype_name(x->dtype));
    rt_record(ctx, "reshape", view_backward, y, 1, (rt_tensor *[]){x});
    return y;
}

/* ---- permute: a contiguous copy; backward applies the inverse permutation ---- */

static void permute_backward(rt_ctx *ctx, rt_node *n) {
    rt_tensor *x = n->in[0], *y = n->out, *dx = rt_grad(ctx, x);
    if (!dx) return;
    int inv[RT_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) inv[n->i[d]] = d;
    rt_arena_mark mark = rt_arena_get_mark(ctx->arena);
    rt_tensor *tmp = rt_new_like(ctx, x);
    if (tmp) {
        ctx->k->permute(y->ndim, y->shape, inv, y->grad->data, tmp->data);
        ctx->k->axpy(rt_numel(x), 1.0f, tmp->data, dx->data);
    }
    rt_arena_release(ctx->arena, mark);
}

rt_tensor *rt_permute(rt_ctx *ctx, rt_tensor *x, const int *perm) {
    if (!x) return NULL;
    if (x->dtype != RT_F32 || x->device != ctx->device)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "permute: needs an f32 tensor on %s", ctx->k->name);
    int seen = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (perm[d] < 0 || perm[d] >= x->ndim || (seen >> perm[d] & 1))
            return rt_ctx_fail(ctx, RT_EINTERNAL, "permute: entry %d (%d) is not a permutation of "
                               "%d dims", d, perm[d], x->ndim);
        seen |= 1 << perm[d];
    }
    if (!ctx->k->permute || !ctx->k->axpy)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "permute: no %s kernel", ctx->k->name);
    int64_t shape[RT_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[perm[d]];
    rt_tensor *y = rt_new(ctx, RT_F32, x->ndim, shape);
    if (!y) return NULL;
    ctx->k->permute(x->ndim, x->shape, perm, x->data, y->data);
    rt_node *n = rt_record(ctx, "permute", permute_backward, y, 1, (rt_tensor *[]){x});
    if (n)
        for (int d = 0; d < x->ndim; d++) n->i[d] = perm[d];
    return y;
}

/* ---- slice: rows [start, start+len) of the leading dim, a view ---- */

static void slice_backward(rt_ctx *ctx, rt_node *n) {
    rt_tensor *x = n->in[0], *dx = rt_grad(ctx, x);
    if (!dx) return;
    int64_t row = rt_numel(x) / x->shape[0];
    ctx->k->axpy(rt_numel(n->out), 1.0f, n->out->grad->data, (float *)dx->data + n->i[0] * row);
}

rt_tensor *rt_slice(rt_ctx *ctx, rt_tensor *x, int64_t start, int64_t len) {
    if (!x) return NULL;
    if (x->ndim < 1 || x->dtype == RT_NF4 || start < 0 || len < 0 || start + len > x->shape[0])
        return rt_ctx_fail(ctx, RT_EINTERNAL, "slice: rows [%lld, %lld) of a %d-D %s tensor with "
                           "%lld rows", (long long)start, (long long)(start + len), x->ndim,
                           rt_dtype_name(x->dtype), x->ndim ? (long long)x->shape[0] : 0LL);
    if (x->requires_grad && x->dtype != RT_F32)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "slice: gradient of a %s tensor", rt_dtype_name(x->dtype));
    rt_tensor *y = rt_arena_alloc_host(ctx->arena, sizeof *y);
    if (!y) return rt_ctx_fail(ctx, RT_EINTERNAL, "%s", rt_error_message());
    *y = *x;
    y->shape[0] = len;
    y->grad = NULL;
    y->node = NULL;
    y->requires_grad = false;
    int64_t row_bytes = (int64_t)rt_nbytes(x) / (x->shape[0] ? x->shape[0] : 1);
    y->data = (char *)x->data + start * row_bytes;
    rt_node *n = rt_record(ctx, "slice", slice_backward, y, 1, (rt_tensor *[]){x});
    if (n) n->i[0] = start;
    return y;
}

/* ---- host data in and out ---- */

static rt_tensor *from_host(rt_ctx *ctx, rt_dtype dt, const void *host, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > RT_MAX_DIMS)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "from_host: rank %d is not in [0, %d]", ndim, RT_MAX_DIMS);
    rt_tensor *t = rt_new(ctx, dt, ndim, shape);
    if (t) ctx->k->upload(t->data, host, rt_nbytes(t));
    return t;
}

rt_tensor *rt_from_i32(rt_ctx *ctx, const int32_t *host, int ndim, const int64_t *shape) {
    return from_host(ctx, RT_I32, host, ndim, shape);
}

rt_tensor *rt_from_f32(rt_ctx *ctx, const float *host, int ndim, const int64_t *shape) {
    return from_host(ctx, RT_F32, host, ndim, shape);
}

rt_status rt_to_host(rt_ctx *ctx, const rt_tensor *t, float *host) {
    if (!t || !host) return rt_ctx_check(ctx) ? ctx->status : rt_errorf(RT_EINTERNAL, "rt_to_host: NULL tensor");
    const rt_kernels *k = t->device == ctx->device ? ctx->k : rt_kernels_for(t->device);
    if (k) k->download(host, t->data, rt_nbytes(t));
    if (rt_ctx_check(ctx) != RT_OK) {
        /* The copy (or a kernel before it) failed: never hand out stale bytes. */
        for (int64_t i = 0; t->dtype == RT_F32 && i < rt_numel(t); i++) host[i] = NAN;
        return ctx->status;
    }
    return RT_OK;
}
