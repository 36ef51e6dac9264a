/* retort — RMSNorm (Zhang & Sennrich 2019, "Root Mean Square Layer
 * Normalization"; HF LlamaRMSNorm): y = x / sqrt(mean(x^2) + eps) * w over
 * the last dim. The per-row 1/rms is saved for backward. */
#include "autograd/ops.h"

static void rmsnorm_backward(rt_ctx *ctx, rt_node *n) {
    rt_tensor *x = n->in[0], *w = n->in[1], *rstd = n->saved[0];
    rt_tensor *dx = rt_grad(ctx, x), *dw = rt_grad(ctx, w);
    int64_t dim = x->shape[x->ndim - 1], rows = rt_numel(x) / dim;
    if (dx || dw)
        ctx->k->rmsnorm_bwd(rows, dim, x->data, w->data, rstd->data, n->out->grad->data,
                            dx ? dx->data : NULL, dw ? dw->data : NULL);
}

rt_tensor *rt_rmsnorm(rt_ctx *ctx, rt_tensor *x, rt_tensor *weight, float eps) {
    if (!x || !weight) return NULL;
    char sx[64], sw[64];
    if (x->dtype != RT_F32 || weight->dtype != RT_F32 || x->ndim < 1 || weight->ndim != 1 ||
        weight->shape[0] != x->shape[x->ndim - 1] || x->device != ctx->device ||
        weight->device != ctx->device)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "rmsnorm: x %s and weight %s do not match",
                           rt_shape_str(x, sx, sizeof sx), rt_shape_str(weight, sw, sizeof sw));
    if (!ctx->k->rmsnorm || !ctx->k->rmsnorm_bwd)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "rmsnorm: no %s kernel", ctx->k->name);
    int64_t dim = x->shape[x->ndim - 1], rows = rt_numel(x) / dim;
    rt_tensor *y = rt_new_like(ctx, x), *rstd = rt_new(ctx, RT_F32, 1, &rows);
    if (!y || !rstd) return NULL;
    ctx->k->rmsnorm(rows, dim, x->data, weight->data, eps, y->data, rstd->data);
    rt_node *n = rt_record(ctx, "rmsnorm", rmsnorm_backward, y, 2, (rt_tensor *[]){x, weight});
    if (n) {
        n->saved[0] = rstd;
        n->f[0] = eps;
    }
    return y;
}
