/* retort — softmax and log-softmax over the last dim (autograd/ops.h).
 * Both backwards need only the op's own output, so nothing else is saved. */
#include "autograd/ops.h"

/* rows x cols of x, or a ctx error naming the op. */
static bool last_dim_rows(rt_ctx *ctx, const char *op, const rt_tensor *x, int64_t *rows,
                          int64_t *cols) {
    if (x->dtype != RT_F32 || x->device != ctx->device || x->ndim < 1) {
        char s[64];
        rt_ctx_fail(ctx, RT_EINTERNAL, "%s: x must be an f32 %s tensor with >= 1 dim, got %s %s %s",
                    op, rt_device_name(ctx->device), rt_dtype_name(x->dtype),
                    rt_device_name(x->device), rt_shape_str(x, s, sizeof s));
        return false;
    }
    *cols = x->shape[x->ndim - 1];
    *rows = *cols ? rt_numel(x) / *cols : 0;
    return true;
}

static void softmax_backward(rt_ctx *ctx, rt_node *n) {
    rt_tensor *y = n->out, *dx = rt_grad(ctx, n->in[0]);
    if (dx) ctx->k->softmax_bwd(n->i[0], n->i[1], y->data, y->grad->data, dx->data);
}

rt_tensor *rt_softmax(rt_ctx *ctx, rt_tensor *x) {
    if (!x) return NULL;
    int64_t rows, cols;
    if (!last_dim_rows(ctx, "softmax", x, &rows, &cols)) return NULL;
    if (!ctx->k->softmax || !ctx->k->softmax_bwd)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "softmax: no %s kernel", ctx->k->name);
    rt_tensor *y = rt_new_like(ctx, x);
    if (!y) return NULL;
    ctx->k->softmax(rows, cols, x->data, y->data);
    rt_node *n = rt_record(ctx, "softmax", softmax_backward, y, 1, (rt_tensor *[]){x});
    if (n) {
        n->i[0] = rows;
        n->i[1] = cols;
    }
    return y;
}

static void log_softmax_backward(rt_ctx *ctx, rt_node *n) {
    rt_tensor *y = n->out, *dx = rt_grad(ctx, n->in[0]);
    if (dx) ctx->k->log_softmax_bwd(n->i[0], n->i[1], y->data, y->grad->data, dx->data);
}

rt_tensor *rt_log_softmax(rt_ctx *ctx, rt_tensor *x) {
    if (!x) return NULL;
    int64_t rows, cols;
    if (!last_dim_rows(ctx, "log_softmax", x, &rows, &cols)) return NULL;
    if (!ctx->k->log_softmax || !ctx->k->log_softmax_bwd)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "log_softmax: no %s kernel", ctx->k->name);
    rt_tensor *y = rt_new_like(ctx, x);
    if (!y) return NULL;
    ctx->k->log_softmax(rows, cols, x->data, y->data);
    rt_node *n = rt_record(ctx, "log_softmax", log_softmax_backward, y, 1, (rt_tensor *[]){x});
    if (n) {
        n->i[0] = rows;
        n->i[1] = cols;
    }
    return y;
}
