/* retort — fused elementwise chains: residual add + RMSNorm, and RoPE of q
 * and k together. Each is one kernel (one OpenMP region, one pass) forward
 * and one backward where the unfused ops took two to four, and backward
 * writes a gradient it is the first to produce instead of zeroing it and
 * adding (rt_grad_fresh). Results equal the separate ops' (same arithmetic
 * in the same order, kernels/cpu/fused.c); a device without the fused
 * kernels runs the separate ones.
 *
 * Both ops have two outputs. The tape holds one output per node, so each
 * records two nodes: the first (older) for the second output alone, the
 * second (newer, so its backward runs first, after every consumer of both
 * outputs) for the fused backward of both, which marks the first done. If
 * only the second output is used, the first node does the work alone. */
#include "autograd/ops.h"

/* ---- add + RMSNorm ----------------------------------------------------------
 * s = x + d; y = s / sqrt(mean(s^2) + eps) * w (HF LlamaRMSNorm of the
 * residual stream after a sublayer, Zhang & Sennrich 2019). */

/* s's own node: s = x + d alone, when the norm's node did not run. */
static void add_rmsnorm_s_backward(rt_ctx *ctx, rt_node *n) {
    if (n->i[0]) return; /* folded into the norm node's backward */
    rt_tensor *x = n->in[0], *d = n->in[1], *dx = rt_grad(ctx, x), *dd = rt_grad(ctx, d);
    const float *ds = n->out->grad->data;
    if (dx) ctx->k->axpy(rt_numel(x), 1.0f, ds, dx->data);
    if (dd) ctx->k->axpy(rt_numel(d), 1.0f, ds, dd->data);
}

static void add_rmsnorm_backward(rt_ctx *ctx, rt_node *n) {
    rt_tensor *x = n->in[0], *d = n->in[1], *w = n->in[2], *s = n->saved[0], *rstd = n->saved[1];
    rt_node *sn = n->p;
    const int64_t dim = s->shape[s->ndim - 1], rows = rt_numel(s) / dim;
    const float *dy = n->out->grad->data;
    rt_tensor *dw = rt_grad(ctx, w);
    if (dw) ctx->k->rmsnorm_bwd(rows, dim, s->data, w->data, rstd->data, dy, NULL, dw->data);
    if (!sn) return; /* x and d need no gradient */
    sn->i[0] = 1;
    const float *ds = s->grad ? s->grad->data : NULL;
    if (ctx->k->add_rmsnorm_bwd) {
        bool fx = false, fd = false;
        rt_tensor *dx = rt_grad_fresh(ctx, x, &fx);
        rt_tensor *dd = d == x ? dx : rt_grad_fresh(ctx, d, &fd);
        if (rt_ctx_check(ctx) != RT_OK) return;
        ctx->k->add_rmsnorm_bwd(rows, dim, s->data, w->data, rstd->data, dy, ds,
                                dx ? dx->data : NULL, fx, d == x ? NULL : dd ? dd->data : NULL, fd);
        if (d == x && dx) /* x + x: g reaches x twice */
            ctx->k->add_rmsnorm_bwd(rows, dim, s->data, w->data, rstd->data, dy, ds, dx->data,
                                    false, NULL, false);
        return;
    }
    /* Unfused: the norm's gradient into s's, then the add's. */
    rt_tensor *gs = rt_grad(ctx, s);
    if (!gs) return;
    ctx->k->rmsnorm_bwd(rows, dim, s->data, w->data, rstd->data, dy, gs->data, NULL);
    sn->i[0] = 0;
    add_rmsnorm_s_backward(ctx, sn);
    sn->i[0] = 1;
}

rt_tensor *rt_add_rmsnorm(rt_ctx *ctx, rt_tensor *x, rt_tensor *d, rt_tensor *weight, float eps,
                          rt_tensor **sum) {
    *sum = NULL;
    if (!x || !d || !weight) return NULL;
    char sx[64], sd[64], sw[64];
    if (x->dtype != RT_F32 || d->dtype != RT_F32 || weight->dtype != RT_F32 || x->ndim < 1 ||
        !rt_same_shape(x, d) || weight->ndim != 1 || weight->shape[0] != x->shape[x->ndim - 1] ||
        x->device != ctx->device || d->device != ctx->device || weight->device != ctx->device)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "add_rmsnorm: x %s, d %s and weight %s do not match",
                           rt_shape_str(x, sx, sizeof sx), rt_shape_str(d, sd, sizeof sd),
                           rt_shape_str(weight, sw, sizeof sw));
    if (!ctx->k->rmsnorm || !ctx->k->rmsnorm_bwd || !ctx->k->add || !ctx->k->axpy)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "add_rmsnorm: no %s kernel", ctx->k->name);
    const int64_t dim = x->shape[x->ndim - 1], rows = rt_numel(x) / dim;
    rt_tensor *s = rt_new_like(ctx, x), *y = s ? rt_new_like(ctx, x) : NULL,
              *rstd = y ? rt_new(ctx, RT_F32, 1, &rows) : NULL;
    if (!rstd) return NULL;
    if (ctx->k->add_rmsnorm) {
        ctx->k->add_rmsnorm(rows, dim, x->data, d->data, weight->data, eps, s->data, y->data,
                            rstd->data);
    } else {
        ctx->k->add(rt_numel(x), rt_numel(x), x->data, d->data, s->data);
        ctx->k->rmsnorm(rows, dim, s->data, weight->data, eps, y->data, rstd->data);
    }
    rt_node *sn = rt_record(ctx, "add_rmsnorm", add_rmsnorm_s_backward, s, 2, (rt_tensor *[]){x, d});
    rt_node *n = rt_record(ctx, "add_rmsnorm", add_rmsnorm_backward, y, 3, (rt_tensor *[]){x, d, weight});
    if (n) {
        n->saved[0] = s;
        n->saved[1] = rstd;
        n->f[0] = eps;
        n->p = sn;
    }
    *sum = s;
    return y;
}

/* ---- RoPE of q and k --------------------------------------------------------
 * rt_rope of both at the same positions; backward is the inverse rotation
 * of each gradient (the rotation is orthogonal). */

/* Rotates (inverse) dq and/or dk into the inputs' gradients. */
static void rope_qk_grads(rt_ctx *ctx, rt_node *n, const float *gq, const float *gk) {
    rt_tensor *q = n->in[0], *k = n->in[1], *pos = n->saved[0];
    const float theta = n->f[0];
    const int layout = (int)n->i[1];
    const int64_t B = q->shape[0], T = q->shape[1], Dh = q->shape[3];
    bool fq = false, fk = false;
    rt_tensor *dq = gq ? rt_grad_fresh(ctx, q, &fq) : NULL, *dk = gk ? rt_grad_fresh(ctx, k, &fk) : NULL;
    if (rt_ctx_check(ctx) != RT_OK) return;
    if (ctx->k->rope_qk && Dh / 2 <= 512 && (fq == fk || !dq || !dk)) { /* one pass when both are set or both add */
        ctx->k->rope_qk(B, T, q->shape[2], k->shape[2], Dh, dq ? gq : NULL, dk ? gk : NULL,
                        pos->data, theta, layout, true, dq ? fq : fk, dq ? dq->data : NULL,
                        dk ? dk->data : NULL);
        return;
    }
    rt_tensor *src[2] = {q, k}, *dst[2] = {dq, dk};
    const float *g[2] = {gq, gk};
    bool fresh[2] = {fq, fk};
    for (int i = 0; i < 2; i++) {
        if (!dst[i]) continue;
        if (fresh[i]) {
            ctx->k->rope(B, T, src[i]->shape[2], Dh, g[i], pos->data, theta, layout, true, dst[i]->data);
            continue;
        }
        rt_arena_mark mark = rt_arena_get_mark(ctx->arena);
        rt_tensor *tmp = rt_new_like(ctx, src[i]);
        if (tmp) {
            ctx->k->rope(B, T, src[i]->shape[2], Dh, g[i], pos->data, theta, layout, true, tmp->data);
            ctx->k->axpy(rt_numel(tmp), 1.0f, tmp->data, dst[i]->data);
        }
        rt_arena_release(ctx->arena, mark);
    }
}

/* k's rotation alone, when q's node did not run. */
static void rope_qk_k_backward(rt_ctx *ctx, rt_node *n) {
    rt_node *qn = n->p;
    if (n->i[0]) return;
    rope_qk_grads(ctx, qn, NULL, n->out->grad->data);
}

static void rope_qk_backward(rt_ctx *ctx, rt_node *n) {
    rt_node *kn = n->p;
    rt_tensor *ko = n->saved[1];
    if (kn) kn->i[0] = 1;
    rope_qk_grads(ctx, n, n->out->grad->data, kn && ko->grad ? ko->grad->data : NULL);
}

rt_tensor *rt_rope_qk(rt_ctx *ctx, rt_tensor *q, rt_tensor *k, rt_tensor *pos, float theta,
                      rt_rope_layout layout, rt_tensor **k_out) {
    *k_out = NULL;
    if (!q || !k || !pos) return NULL;
    char sq[64], sk[64], sp[64];
    if (q->dtype != RT_F32 || k->dtype != RT_F32 || q->ndim != 4 || k->ndim != 4 ||
        pos->dtype != RT_I32 || q->shape[0] != k->shape[0] || q->shape[1] != k->shape[1] ||
        q->shape[3] != k->shape[3] || rt_numel(pos) != q->shape[0] * q->shape[1] ||
        q->device != ctx->device || k->device != ctx->device || pos->device != ctx->device)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "rope_qk: q %s, k %s (f32 [B,T,H,Dh]) and pos %s "
                           "(i32 [B,T]) do not match", rt_shape_str(q, sq, sizeof sq),
                           rt_shape_str(k, sk, sizeof sk), rt_shape_str(pos, sp, sizeof sp));
    if (q->shape[3] % 2)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "rope_qk: head dim %lld is odd", (long long)q->shape[3]);
    if (layout != RT_ROPE_HF && layout != RT_ROPE_INTERLEAVED)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "rope_qk: unknown layout %d", (int)layout);
    if (!ctx->k->rope || !ctx->k->axpy)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "rope_qk: no %s kernel", ctx->k->name);
    const int64_t B = q->shape[0], T = q->shape[1], Dh = q->shape[3];
    rt_tensor *qo = rt_new_like(ctx, q), *ko = qo ? rt_new_like(ctx, k) : NULL;
    if (!ko) return NULL;
    if (ctx->k->rope_qk && Dh / 2 <= 512) {
        ctx->k->rope_qk(B, T, q->shape[2], k->shape[2], Dh, q->data, k->data, pos->data, theta,
                        (int)layout, false, true, qo->data, ko->data);
    } else {
        ctx->k->rope(B, T, q->shape[2], Dh, q->data, pos->data, theta, (int)layout, false, qo->data);
        ctx->k->rope(B, T, k->shape[2], Dh, k->data, pos->data, theta, (int)layout, false, ko->data);
    }
    rt_node *kn = rt_record(ctx, "rope_qk", rope_qk_k_backward, ko, 2, (rt_tensor *[]){q, k});
    rt_node *n = rt_record(ctx, "rope_qk", rope_qk_backward, qo, 2, (rt_tensor *[]){q, k});
    rt_node *nodes[2] = {kn, n};
    for (int i = 0; i < 2; i++)
        if (nodes[i]) {
            nodes[i]->saved[0] = pos;
            nodes[i]->saved[1] = ko;
            nodes[i]->f[0] = theta;
            nodes[i]->i[1] = layout;
        }
    if (kn) kn->p = n;
    if (n) n->p = kn;
    *k_out = ko;
    return qo;
}
