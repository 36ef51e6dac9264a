/* retort — token embedding lookup: out[..., :] = weight[ids[...], :]. */
#include "autograd/ops.h"

static void embedding_backward(rt_ctx *ctx, rt_node *n) {
    rt_tensor *w = n->in[0], *ids = n->saved[0], *dw = rt_grad(ctx, w);
    if (dw)
        ctx->k->embedding_bwd(rt_numel(ids), w->shape[1], w->shape[0], ids->data,
                              n->out->grad->data, dw->data);
}

rt_tensor *rt_embedding(rt_ctx *ctx, rt_tensor *weight, rt_tensor *ids) {
    if (!weight || !ids) return NULL;
    char sw[64];
    if (weight->dtype != RT_F32 || weight->ndim != 2 || ids->dtype != RT_I32 ||
        ids->ndim >= RT_MAX_DIMS || weight->device != ctx->device || ids->device != ctx->device)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "embedding: weight %s %s with ids %s (need f32 "
                           "[V, D] and i32 ids of rank < %d on %s)",
                           rt_shape_str(weight, sw, sizeof sw), rt_dtype_name(weight->dtype),
                           rt_dtype_name(ids->dtype), RT_MAX_DIMS, ctx->k->name);
    if (!ctx->k->embedding || !ctx->k->embedding_bwd)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "embedding: no %s kernel", ctx->k->name);
    int64_t V = weight->shape[0], D = weight->shape[1], n = rt_numel(ids);
    /* A bad id would read (and in backward write) outside the table. Device
     * ids cannot be checked here without a copy: their kernel checks them
     * against V and records the first bad one as a device fault. */
    if (ids->device == RT_CPU) {
        const int32_t *id = ids->data;
        for (int64_t i = 0; i < n; i++)
            if (id[i] < 0 || id[i] >= V)
                return rt_ctx_fail(ctx, RT_EINPUT, "embedding: token id %d at position %lld is "
                                   "outside the vocabulary [0, %lld)", (int)id[i], (long long)i,
                                   (long long)V);
    }
    int64_t shape[RT_MAX_DIMS];
    for (int d = 0; d < ids->ndim; d++) shape[d] = ids->shape[d];
    shape[ids->ndim] = D;
    rt_tensor *y = rt_new(ctx, RT_F32, ids->ndim + 1, shape);
    if (!y) return NULL;
    ctx->k->embedding(n, D, V, ids->data, weight->data, y->data);
    rt_node *nd = rt_record(ctx, "embedding", embedding_backward, y, 1, (rt_tensor *[]){weight});
    if (nd) nd->saved[0] = ids;
    return y;
}
