/* retort — rotary position embedding (Su et al. 2021, RoFormer). The
 * rotation is orthogonal, so backward is the inverse rotation of dy. */
#include "autograd/ops.h"

static void rope_backward(rt_ctx *ctx, rt_node *n) {
    rt_tensor *x = n->in[0], *pos = n->saved[0], *dx = rt_grad(ctx, x);
    if (!dx) return;
    rt_arena_mark mark = rt_arena_get_mark(ctx->arena);
    rt_tensor *tmp = rt_new_like(ctx, x);
    if (tmp) {
        ctx->k->rope(x->shape[0], x->shape[1], x->shape[2], x->shape[3], n->out->grad->data,
                     pos->data, n->f[0], (int)n->i[0], true, tmp->data);
        ctx->k->axpy(rt_numel(x), 1.0f, tmp->data, dx->data);
    }
    rt_arena_release(ctx->arena, mark);
}

rt_tensor *rt_rope(rt_ctx *ctx, rt_tensor *x, rt_tensor *pos, float theta, rt_rope_layout layout) {
    if (!x || !pos) return NULL;
    char sx[64], sp[64];
    if (x->dtype != RT_F32 || x->ndim != 4 || pos->dtype != RT_I32 ||
        rt_numel(pos) != x->shape[0] * x->shape[1] || x->device != ctx->device ||
        pos->device != ctx->device)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "rope: x %s (f32 [B,T,H,Dh]) and pos %s (i32 [B,T]) "
                           "do not match", rt_shape_str(x, sx, sizeof sx),
                           rt_shape_str(pos, sp, sizeof sp));
    if (x->shape[3] % 2)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "rope: head dim %lld is odd", (long long)x->shape[3]);
    if (layout != RT_ROPE_HF && layout != RT_ROPE_INTERLEAVED)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "rope: unknown layout %d", (int)layout);
    if (!ctx->k->rope || !ctx->k->axpy)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "rope: no %s kernel", ctx->k->name);
    rt_tensor *y = rt_new_like(ctx, x);
    if (!y) return NULL;
    ctx->k->rope(x->shape[0], x->shape[1], x->shape[2], x->shape[3], x->data, pos->data, theta,
                 (int)layout, false, y->data);
    rt_node *n = rt_record(ctx, "rope", rope_backward, y, 1, (rt_tensor *[]){x});
    if (n) {
        n->saved[0] = pos;
        n->f[0] = theta;
        n->i[0] = layout;
    }
    return y;
}
