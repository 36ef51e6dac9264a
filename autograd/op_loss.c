/* retort — the losses: token cross-entropy and the distillation KL
 * divergence (autograd/ops.h). Both reduce per-row values (computed by a
 * kernel on the ctx device) to one scalar on the host, which keeps the op
 * device-agnostic at the cost of downloading N floats: the rows are tokens,
 * a few thousand per step, next to the N x V logits the kernels read.
 *
 * The normaliser: denom > 0 is used as given (the step's token count when a
 * step spans several micro-batches, so the step loss is a mean over all its
 * tokens); denom <= 0 means the number of rows that count. When no row counts
 * the loss is 0 with zero gradient (PyTorch would give NaN; a packed batch
 * whose labels are all ignored should not poison a run).
 */
#include <string.h>

#include "autograd/ops.h"

/* Host copy of the labels (arena), checked to lie in [0, V) or be
 * RT_IGNORE_INDEX; *count = rows that are not ignored. NULL + ctx error. */
static int32_t *host_labels(rt_ctx *ctx, const char *op, const rt_tensor *labels, int64_t N,
                            int64_t V, int64_t *count) {
    if (labels->dtype != RT_I32 || labels->device != ctx->device || rt_numel(labels) != N) {
        char s[64];
        rt_ctx_fail(ctx, RT_EINTERNAL, "%s: labels must be i32 on %s with %lld elements, got %s %s",
                    op, rt_device_name(ctx->device), (long long)N, rt_dtype_name(labels->dtype),
                    rt_shape_str(labels, s, sizeof s));
        return NULL;
    }
    int32_t *h = rt_arena_alloc_host(ctx->arena, (size_t)N * sizeof *h + 1);
    if (!h) {
        rt_ctx_fail(ctx, RT_EINTERNAL, "%s", rt_error_message());
        return NULL;
    }
    ctx->k->download(h, labels->data, (size_t)N * sizeof *h);
    *count = 0;
    for (int64_t i = 0; i < N; i++) {
        if (h[i] == RT_IGNORE_INDEX) continue;
        if (h[i] < 0 || h[i] >= V) {
            rt_ctx_fail(ctx, RT_EINPUT,
                        "%s: label %d at row %lld is outside the vocabulary [0, %lld) "
                        "(tokenizer and model disagree?)",
                        op, (int)h[i], (long long)i, (long long)V);
            return NULL;
        }
        (*count)++;
    }
    return h;
}

/* A 0-dim f32 tensor holding sum(vals[0..N)) * mul (summed in double). */
static rt_tensor *scalar_from_rows(rt_ctx *ctx, const rt_tensor *vals, int64_t N, double mul) {
    float *h = rt_arena_alloc_host(ctx->arena, (size_t)N * sizeof *h + 1);
    rt_tensor *loss = rt_new(ctx, RT_F32, 0, NULL);
    if (!h || !loss) return rt_ctx_fail(ctx, RT_EINTERNAL, "%s", rt_error_message());
    ctx->k->download(h, vals->data, (size_t)N * sizeof *h);
    double sum = 0.0;
    for (int64_t i = 0; i < N; i++) sum += h[i];
    const float value = (float)(sum * mul);
    ctx->k->upload(loss->data, &value, sizeof value);
    return loss;
}

/* d loss, the scalar upstream gradient, read back from the device. */
static float upstream(rt_ctx *ctx, const rt_node *n) {
    float g = 0.0f;
    ctx->k->download(&g, n->out->grad->data, sizeof g);
    return g;
}

static bool check_logits(rt_ctx *ctx, const char *op, const char *what, const rt_tensor *x) {
    if (x->dtype == RT_F32 && x->device == ctx->device && x->ndim >= 1 && x->shape[x->ndim - 1] > 0)
        return true;
    char s[64];
    rt_ctx_fail(ctx, RT_EINTERNAL, "%s: %s must be f32 [..., V] on %s, got %s %s %s", op, what,
                rt_device_name(ctx->device), rt_dtype_name(x->dtype), rt_device_name(x->device),
                rt_shape_str(x, s, sizeof s));
    return false;
}

/* ---- cross-entropy ---- */

static void cross_entropy_backward(rt_ctx *ctx, rt_node *n) {
    rt_tensor *x = n->in[0], *labels = n->in[1], *dx = rt_grad(ctx, x);
    if (!dx) return;
    const int64_t V = x->shape[x->ndim - 1];
    ctx->k->cross_entropy_bwd(rt_numel(x) / V, V, x->data, labels->data, RT_IGNORE_INDEX,
                              n->saved[0]->data, upstream(ctx, n) * n->f[0], dx->data);
}

rt_tensor *rt_cross_entropy(rt_ctx *ctx, rt_tensor *logits, rt_tensor *labels, float denom) {
    if (!logits || !labels) return NULL;
    if (!check_logits(ctx, "cross_entropy", "logits", logits)) return NULL;
    if (!ctx->k->cross_entropy || !ctx->k->cross_entropy_bwd)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "cross_entropy: no %s kernel", ctx->k->name);
    const int64_t V = logits->shape[logits->ndim - 1], N = rt_numel(logits) / V;
    int64_t count;
    if (!host_labels(ctx, "cross_entropy", labels, N, V, &count)) return NULL;
    const double d = denom > 0 ? denom : (double)count;
    const float inv = d > 0 ? (float)(1.0 / d) : 0.0f;

    rt_tensor *nll = rt_new(ctx, RT_F32, 1, &N), *lse = rt_new(ctx, RT_F32, 1, &N);
    if (!nll || !lse) return NULL;
    ctx->k->cross_entropy(N, V, logits->data, labels->data, RT_IGNORE_INDEX, nll->data, lse->data);
    rt_tensor *loss = scalar_from_rows(ctx, nll, N, inv);
    if (!loss) return NULL;
    rt_node *n = rt_record(ctx, "cross_entropy", cross_entropy_backward, loss, 2,
                           (rt_tensor *[]){logits, labels});
    if (n) {
        n->saved[0] = lse;
        n->f[0] = inv;
    }
    return loss;
}

/* ---- lm_head + cross-entropy, chunked (autograd/ops.h) ----
 * Memory: instead of logits, their softmax and their gradient ([N, V] each,
 * 400 MiB apiece at the SmolLM2-135M shape, B 4 x T 512), two buffers of
 * LCE_CHUNK_FLOATS floats. Compute: the same three GEMMs as the unfused pair
 * (logits, dx and dweight), no recomputation, because the gradient is formed
 * in the forward; backward only scales it. */

/* Floats in one chunk of logits (and one of their gradient): 32 MiB. */
#define LCE_CHUNK_FLOATS ((int64_t)8 << 20)

static void linear_ce_backward(rt_ctx *ctx, rt_node *n) {
    const float g = upstream(ctx, n);
    for (int i = 0; i < 2; i++) {
        rt_tensor *d = n->saved[i] ? rt_grad(ctx, n->in[i]) : NULL;
        if (d) ctx->k->axpy(rt_numel(d), g, n->saved[i]->data, d->data);
    }
}

rt_tensor *rt_linear_cross_entropy(rt_ctx *ctx, rt_tensor *x, rt_tensor *weight,
                                   rt_tensor *labels, float denom) {
    if (!x || !weight || !labels) return NULL;
    char sx[64], sw[64];
    if (x->dtype != RT_F32 || weight->dtype != RT_F32 || weight->ndim != 2 || x->ndim < 1 ||
        x->shape[x->ndim - 1] != weight->shape[1] || x->device != ctx->device ||
        weight->device != ctx->device)
        return rt_ctx_fail(ctx, RT_EINTERNAL,
                           "linear_cross_entropy: x %s %s and weight %s %s must be f32 [..., D] "
                           "and [V, D] on %s",
                           rt_shape_str(x, sx, sizeof sx), rt_dtype_name(x->dtype),
                           rt_shape_str(weight, sw, sizeof sw), rt_dtype_name(weight->dtype),
                           rt_device_name(ctx->device));
    const rt_kernels *k = ctx->k;
    if (!k->gemm || !k->cross_entropy || !k->cross_entropy_bwd || !k->zero || !k->axpy)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "linear_cross_entropy: no %s kernel", k->name);
    const int64_t D = weight->shape[1], V = weight->shape[0], N = rt_numel(x) / D;
    int64_t count;
    const int32_t *hl = host_labels(ctx, "linear_cross_entropy", labels, N, V, &count);
    if (!hl) return NULL;
    const double d = denom > 0 ? denom : (double)count;
    const float inv = d > 0 ? (float)(1.0 / d) : 0.0f;

    const bool grad = !ctx->no_grad && (x->requires_grad || weight->requires_grad);
    rt_tensor *nll = rt_new(ctx, RT_F32, 1, &N), *lse = rt_new(ctx, RT_F32, 1, &N);
    rt_tensor *dx = grad && x->requires_grad ? rt_new_like(ctx, x) : NULL;
    rt_tensor *dw = grad && weight->requires_grad ? rt_new_like(ctx, weight) : NULL;
    if (!nll || !lse || (grad && x->requires_grad && !dx) || (grad && weight->requires_grad && !dw))
        return NULL;
    /* Rows per chunk: a multiple of 16 (whole GEMM micro-tiles), at least
     * 16, and at most half the rows (rounded up), so that small inputs (the
     * op tests) go through the chunk loop more than once too. */
    int64_t R = LCE_CHUNK_FLOATS / V / 16 * 16, half = (N / 2 + 15) / 16 * 16;
    if (R > half) R = half;
    if (R < 16) R = 16;
    if (R > N) R = N;
    rt_arena_mark mark = rt_arena_get_mark(ctx->arena);
    float *logits = rt_arena_alloc(ctx->arena, (size_t)(R * V) * sizeof(float));
    float *dl = grad ? rt_arena_alloc(ctx->arena, (size_t)(R * V) * sizeof(float)) : NULL;
    if (!logits || (grad && !dl)) {
        rt_arena_release(ctx->arena, mark);
        return rt_ctx_fail(ctx, RT_EINTERNAL, "%s", rt_error_message());
    }
    const float *xf = x->data, *wf = weight->data;
    const int32_t *lab = labels->data;
    for (int64_t r0 = 0; r0 < N; r0 += R) {
        const int64_t n = r0 + R < N ? R : N - r0;
        k->gemm(1, false, true, n, V, D, 1.0f, xf + r0 * D, 0, wf, 0, 0.0f, logits, 0);
        k->cross_entropy(n, V, logits, lab + r0, RT_IGNORE_INDEX, (float *)nll->data + r0,
                         (float *)lse->data + r0);
        if (!grad) continue;
        /* dl = inv * (softmax - onehot); ignored rows stay 0 */
        k->zero(dl, (size_t)(n * V) * sizeof(float));
        k->cross_entropy_bwd(n, V, logits, lab + r0, RT_IGNORE_INDEX, (const float *)lse->data + r0,
                             inv, dl);
        if (dx) k->gemm(1, false, false, n, D, V, 1.0f, dl, 0, wf, 0, 0.0f, (float *)dx->data + r0 * D, 0);
        if (dw) k->gemm(1, true, false, V, D, n, 1.0f, dl, 0, xf + r0 * D, 0, r0 ? 1.0f : 0.0f, dw->data, 0);
    }
    rt_arena_release(ctx->arena, mark);
    rt_tensor *loss = scalar_from_rows(ctx, nll, N, inv);
    if (!loss) return NULL;
    rt_node *nd = rt_record(ctx, "linear_cross_entropy", linear_ce_backward, loss, 3,
                            (rt_tensor *[]){x, weight, labels});
    if (nd) {
        nd->saved[0] = dx;
        nd->saved[1] = dw;
    }
    return loss;
}

/* ---- distillation KL ---- */

static void kl_div_backward(rt_ctx *ctx, rt_node *n) {
    rt_tensor *s = n->in[0], *t = n->in[1], *ds = rt_grad(ctx, s);
    if (!ds) return;
    const int64_t V = s->shape[s->ndim - 1];
    const float T = n->f[0];
    /* loss = T^2 * sum(kl) * inv, so each row's KL gets g * T^2 * inv. */
    ctx->k->kl_div_bwd(rt_numel(s) / V, V, s->data, t->data, T,
                       n->saved[0] ? n->saved[0]->data : NULL, upstream(ctx, n) * T * T * n->f[1],
                       ds->data);
}

rt_tensor *rt_kl_div(rt_ctx *ctx, rt_tensor *student, rt_tensor *teacher, rt_tensor *labels,
                     float temperature, float denom) {
    if (!student || !teacher) return NULL;
    if (!check_logits(ctx, "kl_div", "student", student) ||
        !check_logits(ctx, "kl_div", "teacher", teacher))
        return NULL;
    if (!rt_same_shape(student, teacher)) {
        char a[64], b[64];
        return rt_ctx_fail(ctx, RT_EINTERNAL, "kl_div: student %s and teacher %s differ in shape",
                           rt_shape_str(student, a, sizeof a), rt_shape_str(teacher, b, sizeof b));
    }
    if (!(temperature > 0))
        return rt_ctx_fail(ctx, RT_EINPUT, "kl_div: temperature must be > 0, got %g",
                           (double)temperature);
    if (!ctx->k->kl_div || !ctx->k->kl_div_bwd)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "kl_div: no %s kernel", ctx->k->name);
    const int64_t V = student->shape[student->ndim - 1], N = rt_numel(student) / V;

    /* Kernels take a u8 row mask; build it from the labels on the host. */
    rt_tensor *mask = NULL;
    int64_t count = N;
    if (labels) {
        int32_t *h = host_labels(ctx, "kl_div", labels, N, V, &count);
        if (!h) return NULL;
        uint8_t *hm = rt_arena_alloc_host(ctx->arena, (size_t)N);
        if (!hm) return rt_ctx_fail(ctx, RT_EINTERNAL, "%s", rt_error_message());
        mask = rt_new(ctx, RT_U8, 1, &N);
        if (!mask) return NULL;
        for (int64_t i = 0; i < N; i++) hm[i] = h[i] != RT_IGNORE_INDEX;
        ctx->k->upload(mask->data, hm, (size_t)N);
    }
    const double d = denom > 0 ? denom : (double)count;
    const float inv = d > 0 ? (float)(1.0 / d) : 0.0f;

    rt_tensor *kl = rt_new(ctx, RT_F32, 1, &N);
    if (!kl) return NULL;
    ctx->k->kl_div(N, V, student->data, teacher->data, temperature, mask ? mask->data : NULL,
                   kl->data);
    rt_tensor *loss = scalar_from_rows(ctx, kl, N, (double)temperature * temperature * inv);
    if (!loss) return NULL;
    /* Backward never asks for the teacher's gradient, so it gets none even
     * if it requires one. */
    rt_node *n = rt_record(ctx, "kl_div", kl_div_backward, loss, 3,
                           (rt_tensor *[]){student, teacher, labels});
    if (n) {
        n->saved[0] = mask;
        n->f[0] = temperature;
        n->f[1] = inv;
    }
    return loss;
}
