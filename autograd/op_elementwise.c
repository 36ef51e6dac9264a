/* retort — elementwise ops: add, mul, scale, silu, swiglu, dropout.
 * b of add/mul is a's shape or a's trailing dims, repeated over a's leading
 * rows; its gradient is the sum over those rows (k->sum_rows). */
#include "autograd/ops.h"

/* Checks a and b for a broadcasting binary op; returns nb or -1. */
static int64_t bcast_check(rt_ctx *ctx, const char *op, const rt_tensor *a, const rt_tensor *b) {
    char sa[64], sb[64];
    bool ok = a->dtype == RT_F32 && b->dtype == RT_F32 && b->ndim <= a->ndim &&
              a->device == ctx->device && b->device == ctx->device;
    for (int d = 0; ok && d < b->ndim; d++) ok = b->shape[d] == a->shape[a->ndim - b->ndim + d];
    if (!ok) {
        rt_ctx_fail(ctx, RT_EINTERNAL, "%s: %s %s and %s %s do not broadcast (b must have a's "
                    "trailing dims, f32, on %s)", op, rt_shape_str(a, sa, sizeof sa),
                    rt_dtype_name(a->dtype), rt_shape_str(b, sb, sizeof sb),
                    rt_dtype_name(b->dtype), ctx->k->name);
        return -1;
    }
    return rt_numel(b);
}

static rt_tensor *no_kernel(rt_ctx *ctx, const char *op) {
    return rt_ctx_fail(ctx, RT_EINTERNAL, "%s: no %s kernel", op, ctx->k->name);
}

/* ---- add ---- */

/* A residual add's first contribution to a is dy itself: a takes dy's
 * buffer (as view_backward does), b a copy; later ones accumulate. */
static void add_backward(rt_ctx *ctx, rt_node *n) {
    rt_tensor *a = n->in[0], *b = n->in[1];
    int64_t na = rt_numel(a), nb = rt_numel(b);
    const float *dy = n->out->grad->data;
    if (a->requires_grad && !a->grad && a != b) {
        a->grad = rt_view(ctx, n->out->grad, a->ndim, a->shape);
        if (!a->grad) return;
    } else if (a->requires_grad) {
        rt_tensor *da = rt_grad(ctx, a);
        if (!da) return;
        ctx->k->axpy(na, 1.0f, dy, da->data);
    }
    bool fresh = false;
    rt_tensor *db = nb == na ? rt_grad_fresh(ctx, b, &fresh) : rt_grad(ctx, b);
    if (db && fresh) {
        ctx->k->copy(db->data, dy, (size_t)nb * sizeof(float));
        return;
    }
    if (db) {
        if (nb == na) ctx->k->axpy(na, 1.0f, dy, db->data);
        else ctx->k->sum_rows(na / nb, nb, dy, NULL, db->data);
    }
}

rt_tensor *rt_add(rt_ctx *ctx, rt_tensor *a, rt_tensor *b) {
    if (!a || !b) return NULL;
    int64_t nb = bcast_check(ctx, "add", a, b);
    if (nb < 0) return NULL;
    if (!ctx->k->add || !ctx->k->axpy || !ctx->k->sum_rows) return no_kernel(ctx, "add");
    rt_tensor *y = rt_new_like(ctx, a);
    if (!y) return NULL;
    ctx->k->add(rt_numel(a), nb, a->data, b->data, y->data);
    rt_record(ctx, "add", add_backward, y, 2, (rt_tensor *[]){a, b});
    return y;
}

/* ---- mul ---- */

static void mul_backward(rt_ctx *ctx, rt_node *n) {
    rt_tensor *a = n->in[0], *b = n->in[1], *da = rt_grad(ctx, a), *db = rt_grad(ctx, b);
    int64_t na = rt_numel(a), nb = rt_numel(b);
    const float *dy = n->out->grad->data;
    if (da) ctx->k->mul_acc(na, nb, dy, b->data, da->data);
    if (db) {
        if (nb == na) ctx->k->mul_acc(na, na, dy, a->data, db->data);
        else ctx->k->sum_rows(na / nb, nb, dy, a->data, db->data);
    }
}

rt_tensor *rt_mul(rt_ctx *ctx, rt_tensor *a, rt_tensor *b) {
    if (!a || !b) return NULL;
    int64_t nb = bcast_check(ctx, "mul", a, b);
    if (nb < 0) return NULL;
    if (!ctx->k->mul || !ctx->k->mul_acc || !ctx->k->sum_rows) return no_kernel(ctx, "mul");
    rt_tensor *y = rt_new_like(ctx, a);
    if (!y) return NULL;
    ctx->k->mul(rt_numel(a), nb, a->data, b->data, y->data);
    rt_record(ctx, "mul", mul_backward, y, 2, (rt_tensor *[]){a, b});
    return y;
}

/* ---- scale ---- */

static void scale_backward(rt_ctx *ctx, rt_node *n) {
    rt_tensor *da = rt_grad(ctx, n->in[0]);
    if (da) ctx->k->axpy(rt_numel(da), n->f[0], n->out->grad->data, da->data);
}

rt_tensor *rt_scale(rt_ctx *ctx, rt_tensor *a, float s) {
    if (!a) return NULL;
    if (a->dtype != RT_F32 || a->device != ctx->device)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "scale: needs an f32 tensor on %s", ctx->k->name);
    if (!ctx->k->scale || !ctx->k->axpy) return no_kernel(ctx, "scale");
    rt_tensor *y = rt_new_like(ctx, a);
    if (!y) return NULL;
    ctx->k->scale(rt_numel(a), s, a->data, y->data);
    rt_node *n = rt_record(ctx, "scale", scale_backward, y, 1, (rt_tensor *[]){a});
    if (n) n->f[0] = s;
    return y;
}

/* ---- silu / swiglu ---- */

static void silu_backward(rt_ctx *ctx, rt_node *n) {
    rt_tensor *x = n->in[0], *dx = rt_grad(ctx, x);
    if (dx) ctx->k->silu_bwd(rt_numel(x), x->data, n->out->grad->data, dx->data);
}

rt_tensor *rt_silu(rt_ctx *ctx, rt_tensor *x) {
    if (!x) return NULL;
    if (x->dtype != RT_F32 || x->device != ctx->device)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "silu: needs an f32 tensor on %s", ctx->k->name);
    if (!ctx->k->silu || !ctx->k->silu_bwd) return no_kernel(ctx, "silu");
    rt_tensor *y = rt_new_like(ctx, x);
    if (!y) return NULL;
    ctx->k->silu(rt_numel(x), x->data, y->data);
    rt_record(ctx, "silu", silu_backward, y, 1, (rt_tensor *[]){x});
    return y;
}

static void swiglu_backward(rt_ctx *ctx, rt_node *n) {
    rt_tensor *g = n->in[0], *u = n->in[1];
    if (ctx->k->swiglu_bwd_set && g != u && g->requires_grad && u->requires_grad && !g->grad &&
        !u->grad) { /* the usual case: the first contributions, written without a memset */
        bool fg, fu;
        rt_tensor *dg = rt_grad_fresh(ctx, g, &fg), *du = rt_grad_fresh(ctx, u, &fu);
        if (dg && du)
            ctx->k->swiglu_bwd_set(rt_numel(g), g->data, u->data, n->out->grad->data, dg->data,
                                   du->data);
        return;
    }
    rt_tensor *dg = rt_grad(ctx, g), *du = rt_grad(ctx, u);
    if (dg || du)
        ctx->k->swiglu_bwd(rt_numel(g), g->data, u->data, n->out->grad->data,
                           dg ? dg->data : NULL, du ? du->data : NULL);
}

rt_tensor *rt_swiglu(rt_ctx *ctx, rt_tensor *gate, rt_tensor *up) {
    if (!gate || !up) return NULL;
    char sg[64], su[64];
    if (gate->dtype != RT_F32 || up->dtype != RT_F32 || !rt_same_shape(gate, up) ||
        gate->device != ctx->device || up->device != ctx->device)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "swiglu: gate %s and up %s must be f32 of one shape",
                           rt_shape_str(gate, sg, sizeof sg), rt_shape_str(up, su, sizeof su));
    if (!ctx->k->swiglu || !ctx->k->swiglu_bwd) return no_kernel(ctx, "swiglu");
    rt_tensor *y = rt_new_like(ctx, gate);
    if (!y) return NULL;
    ctx->k->swiglu(rt_numel(gate), gate->data, up->data, y->data);
    rt_record(ctx, "swiglu", swiglu_backward, y, 2, (rt_tensor *[]){gate, up});
    return y;
}

/* ---- dropout ------------------------------------------------------------------
 * Inverted dropout (Srivastava et al. 2014, kept values scaled by 1/(1-p)
 * as torch.nn.Dropout). The mask is never stored: element i of the call
 * takes position ctx->rng_counter + i of a splitmix64 stream seeded with
 * ctx->seed (see rt_cpu_dropout), the op advances the counter by numel,
 * and backward applies the same kernel with the same position to dy
 * (dropout is linear in x with the mask fixed). */

#define RT_GOLDEN 0x9E3779B97F4A7C15ull

static uint64_t dropout_seed(uint64_t seed, uint64_t counter) { return seed + counter * RT_GOLDEN; }

static void dropout_backward(rt_ctx *ctx, rt_node *n) {
    rt_tensor *x = n->in[0], *dx = rt_grad(ctx, x);
    if (!dx) return;
    int64_t numel = rt_numel(x);
    rt_arena_mark mark = rt_arena_get_mark(ctx->arena);
    float *tmp = rt_arena_alloc(ctx->arena, (size_t)numel * sizeof(float));
    if (!tmp) {
        rt_ctx_fail(ctx, RT_EINTERNAL, "%s", rt_error_message());
        return;
    }
    ctx->k->dropout(numel, n->f[0], (uint64_t)n->i[0], n->out->grad->data, tmp);
    ctx->k->axpy(numel, 1.0f, tmp, dx->data);
    rt_arena_release(ctx->arena, mark);
}

rt_tensor *rt_dropout(rt_ctx *ctx, rt_tensor *x, float p) {
    if (!x) return NULL;
    if (!(p >= 0.0f && p < 1.0f))
        return rt_ctx_fail(ctx, RT_EINPUT, "dropout: probability %g is not in [0, 1)", (double)p);
    if (!ctx->training || p == 0.0f) return x;
    if (x->dtype != RT_F32 || x->device != ctx->device)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "dropout: needs an f32 tensor on %s", ctx->k->name);
    if (!ctx->k->dropout || !ctx->k->axpy) return no_kernel(ctx, "dropout");
    int64_t numel = rt_numel(x);
    uint64_t seed = dropout_seed(ctx->seed, ctx->rng_counter);
    ctx->rng_counter += (uint64_t)numel;
    rt_tensor *y = rt_new_like(ctx, x);
    if (!y) return NULL;
    ctx->k->dropout(numel, p, seed, x->data, y->data);
    rt_node *n = rt_record(ctx, "dropout", dropout_backward, y, 1, (rt_tensor *[]){x});
    if (n) {
        n->f[0] = p;
        n->i[0] = (int64_t)seed;
    }
    return y;
}
