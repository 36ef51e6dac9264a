/* retort — GeGLU: gelu_tanh(gate) * up (Shazeer 2020; Gemma's MLP). The
 * formula and its derivative: kernels/cpu/geglu.c. */
#include "autograd/ops.h"

static void geglu_backward(rt_ctx *ctx, rt_node *n) {
    rt_tensor *g = n->in[0], *u = n->in[1], *dg = rt_grad(ctx, g), *du = rt_grad(ctx, u);
    if (dg || du)
        ctx->k->geglu_bwd(rt_numel(g), g->data, u->data, n->out->grad->data, dg ? dg->data : NULL,
                          du ? du->data : NULL);
}

rt_tensor *rt_geglu(rt_ctx *ctx, rt_tensor *gate, rt_tensor *up) {
    if (!gate || !up) return NULL;
    char sg[64], su[64];
    if (gate->dtype != RT_F32 || up->dtype != RT_F32 || !rt_same_shape(gate, up) ||
        gate->device != ctx->device || up->device != ctx->device)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "geglu: gate %s and up %s must be f32 of one shape",
                           rt_shape_str(gate, sg, sizeof sg), rt_shape_str(up, su, sizeof su));
    if (!ctx->k->geglu || !ctx->k->geglu_bwd)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "geglu: no %s kernel", ctx->k->name);
    rt_tensor *y = rt_new_like(ctx, gate);
    if (!y) return NULL;
    ctx->k->geglu(rt_numel(gate), gate->data, up->data, y->data);
    rt_record(ctx, "geglu", geglu_backward, y, 2, (rt_tensor *[]){gate, up});
    return y;
}
