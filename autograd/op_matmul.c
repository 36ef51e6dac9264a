/* retort — matmul and linear (forward + backward).
 *
 * Backward of C = op(A) @ op(B) with upstream dC (op = optional transpose):
 *   dop(A) = dC @ op(B)^T,  dop(B) = op(A)^T @ dC,
 * written back into the stored layout, i.e. for a transposed operand the
 * gradient is computed transposed (dA_stored = op(B) @ dC^T when ta,
 * dB_stored = dC^T @ op(A) when tb). All gemms use beta = 1: gradients
 * accumulate.
 */
#include "autograd/ops.h"

/* ---- matmul ---------------------------------------------------------------- */

static void matmul_dims(const rt_tensor *a, const rt_tensor *b, bool ta, bool tb, int64_t *M,
                        int64_t *N, int64_t *K, int64_t *Kb) {
    int64_t ar = a->shape[a->ndim - 2], ac = a->shape[a->ndim - 1];
    int64_t br = b->shape[b->ndim - 2], bc = b->shape[b->ndim - 1];
    *M = ta ? ac : ar;
    *K = ta ? ar : ac;
    *Kb = tb ? bc : br;
    *N = tb ? br : bc;
}

static void matmul_backward(rt_ctx *ctx, rt_node *n) {
    rt_tensor *a = n->in[0], *b = n->in[1];
    bool ta = n->i[0], tb = n->i[1];
    int64_t batch = n->i[2], M, N, K, Kb;
    bool bcast = b->ndim == 2 && batch > 1;
    matmul_dims(a, b, ta, tb, &M, &N, &K, &Kb);
    rt_tensor *da = rt_grad(ctx, a), *db = rt_grad(ctx, b);
    const float *dc = n->out->grad->data;
    const rt_kernels *k = ctx->k;
    if (bcast && !ta) { /* a's batch folds into its rows: one 2-D gemm each */
        int64_t BM = batch * M;
        if (da) k->gemm(1, false, !tb, BM, K, N, 1.0f, dc, 0, b->data, 0, 1.0f, da->data, 0);
        if (db) {
            if (!tb) k->gemm(1, true, false, K, N, BM, 1.0f, a->data, 0, dc, 0, 1.0f, db->data, 0);
            else k->gemm(1, true, false, N, K, BM, 1.0f, dc, 0, a->data, 0, 1.0f, db->data, 0);
        }
        return;
    }
    int64_t sa = M * K, sb = bcast ? 0 : K * N, sc = M * N;
    if (da) {
        if (!ta) k->gemm(batch, false, !tb, M, K, N, 1.0f, dc, sc, b->data, sb, 1.0f, da->data, sa);
        else k->gemm(batch, tb, true, K, M, N, 1.0f, b->data, sb, dc, sc, 1.0f, da->data, sa);
    }
    if (db) {
        /* A broadcast b sums over the batch: one gemm per batch entry, in
         * order, so the accumulation never races on a device. */
        int64_t calls = bcast ? batch : 1, per = bcast ? 1 : batch;
        for (int64_t c = 0; c < calls; c++) {
            const float *ac = (const float *)a->data + c * sa;
            const float *dcc = dc + c * sc;
            if (!tb) k->gemm(per, !ta, false, K, N, M, 1.0f, ac, sa, dcc, sc, 1.0f, db->data, sb);
            else k->gemm(per, true, ta, N, K, M, 1.0f, dcc, sc, ac, sa, 1.0f, db->data, sb);
        }
    }
}

rt_tensor *rt_matmul(rt_ctx *ctx, rt_tensor *a, rt_tensor *b, bool trans_a, bool trans_b) {
    if (!a || !b) return NULL;
    char sa_[64], sb_[64];
    if (a->dtype != RT_F32 || b->dtype != RT_F32 || a->device != ctx->device ||
        b->device != ctx->device)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "matmul: needs f32 tensors on %s (got %s, %s)",
                           ctx->k->name, rt_dtype_name(a->dtype), rt_dtype_name(b->dtype));
    if (a->ndim < 2 || b->ndim < 2 || (b->ndim != 2 && b->ndim != a->ndim))
        return rt_ctx_fail(ctx, RT_EINTERNAL, "matmul: bad ranks %s @ %s",
                           rt_shape_str(a, sa_, sizeof sa_), rt_shape_str(b, sb_, sizeof sb_));
    int64_t M, N, K, Kb, batch = 1;
    matmul_dims(a, b, trans_a, trans_b, &M, &N, &K, &Kb);
    for (int d = 0; d < a->ndim - 2; d++) {
        batch *= a->shape[d];
        if (b->ndim == a->ndim && b->shape[d] != a->shape[d]) Kb = -1;
    }
    if (K != Kb)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "matmul: shapes %s%s @ %s%s do not match",
                           rt_shape_str(a, sa_, sizeof sa_), trans_a ? "^T" : "",
                           rt_shape_str(b, sb_, sizeof sb_), trans_b ? "^T" : "");
    if (!ctx->k->gemm) return rt_ctx_fail(ctx, RT_EINTERNAL, "matmul: no %s kernel", ctx->k->name);
    int64_t shape[RT_MAX_DIMS];
    for (int d = 0; d < a->ndim - 2; d++) shape[d] = a->shape[d];
    shape[a->ndim - 2] = M;
    shape[a->ndim - 1] = N;
    rt_tensor *c = rt_new(ctx, RT_F32, a->ndim, shape);
    if (!c) return NULL;
    bool bcast = b->ndim == 2 && batch > 1;
    if (bcast && !trans_a)
        ctx->k->gemm(1, false, trans_b, batch * M, N, K, 1.0f, a->data, 0, b->data, 0, 0.0f,
                     c->data, 0);
    else
        ctx->k->gemm(batch, trans_a, trans_b, M, N, K, 1.0f, a->data, M * K, b->data,
                     bcast ? 0 : K * N, 0.0f, c->data, M * N);
    rt_node *n = rt_record(ctx, "matmul", matmul_backward, c, 2, (rt_tensor *[]){a, b});
    if (n) {
        n->i[0] = trans_a;
        n->i[1] = trans_b;
        n->i[2] = batch;
    }
    return c;
}

/* ---- linear ------------------------------------------------------------------
 * y = x @ W^T + bias (torch.nn.functional.linear). An NF4 weight (QLoRA) is
 * dequantized into arena scratch for exactly one gemm and released right
 * after, in forward and again in backward, so no full-precision copy of a
 * frozen weight outlives a matmul. NF4 weights never receive gradients. */

/* W as f32 for one gemm: the weight itself, or a dequantized scratch copy
 * (caller releases the arena to a mark taken before this call). */
static const float *linear_weight_f32(rt_ctx *ctx, const rt_tensor *w) {
    if (w->dtype != RT_NF4) return w->data;
    int64_t rows = w->shape[0], cols = w->shape[1];
    float *buf = rt_arena_alloc(ctx->arena, (size_t)(rows * cols) * sizeof(float));
    if (!buf) {
        rt_ctx_fail(ctx, RT_EINTERNAL, "%s", rt_error_message());
        return NULL;
    }
    ctx->k->nf4_dequant_rows(w->data, w->nf4, cols, 0, rows, buf);
    return buf;
}

/* y [..., out] = x [..., in] W^T for a frozen W (NF4 dequantized into
 * scratch that is released at once): the base term of linear and
 * linear_lora. NULL on failure (ctx->status set). */
static rt_tensor *frozen_matmul(rt_ctx *ctx, const rt_tensor *x, const rt_tensor *w, int64_t rows,
                                int64_t in, int64_t out) {
    int64_t shape[RT_MAX_DIMS];
    for (int d = 0; d < x->ndim - 1; d++) shape[d] = x->shape[d];
    shape[x->ndim - 1] = out;
    rt_tensor *y = rt_new(ctx, RT_F32, x->ndim, shape);
    if (!y) return NULL;
    rt_arena_mark mark = rt_arena_get_mark(ctx->arena);
    const float *wf = linear_weight_f32(ctx, w);
    if (wf) ctx->k->gemm(1, false, true, rows, out, in, 1.0f, x->data, 0, wf, 0, 0.0f, y->data, 0);
    rt_arena_release(ctx->arena, mark);
    return wf ? y : NULL;
}

static void linear_backward(rt_ctx *ctx, rt_node *n) {
    rt_tensor *x = n->in[0], *w = n->in[1], *bias = n->in[2];
    int64_t in = w->shape[1], out = w->shape[0], rows = rt_numel(x) / in;
    rt_tensor *dx = rt_grad(ctx, x), *dw = rt_grad(ctx, w), *db = rt_grad(ctx, bias);
    const float *dy = n->out->grad->data;
    if (dx) {
        rt_arena_mark mark = rt_arena_get_mark(ctx->arena);
        const float *wf = linear_weight_f32(ctx, w);
        if (wf) ctx->k->gemm(1, false, false, rows, in, out, 1.0f, dy, 0, wf, 0, 1.0f, dx->data, 0);
        rt_arena_release(ctx->arena, mark);
    }
    if (dw) ctx->k->gemm(1, true, false, out, in, rows, 1.0f, dy, 0, x->data, 0, 1.0f, dw->data, 0);
    if (db) ctx->k->sum_rows(rows, out, dy, NULL, db->data);
}

rt_tensor *rt_linear(rt_ctx *ctx, rt_tensor *x, rt_tensor *weight, rt_tensor *bias) {
    if (!x || !weight) return NULL;
    char sx[64], sw[64];
    rt_tensor *w = weight;
    if (x->dtype != RT_F32 || (w->dtype != RT_F32 && w->dtype != RT_NF4) || w->ndim != 2 ||
        x->ndim < 1 || x->shape[x->ndim - 1] != w->shape[1])
        return rt_ctx_fail(ctx, RT_EINTERNAL, "linear: x %s %s, weight %s %s do not match",
                           rt_shape_str(x, sx, sizeof sx), rt_dtype_name(x->dtype),
                           rt_shape_str(w, sw, sizeof sw), rt_dtype_name(w->dtype));
    if (x->device != ctx->device || w->device != ctx->device || (bias && bias->device != ctx->device))
        return rt_ctx_fail(ctx, RT_EINTERNAL, "linear: tensors must be on %s", ctx->k->name);
    if (bias && (bias->dtype != RT_F32 || rt_numel(bias) != w->shape[0]))
        return rt_ctx_fail(ctx, RT_EINTERNAL, "linear: bias %s for weight %s",
                           rt_shape_str(bias, sx, sizeof sx), rt_shape_str(w, sw, sizeof sw));
    if (w->dtype == RT_NF4 && (w->requires_grad || !w->nf4))
        return rt_ctx_fail(ctx, RT_EINTERNAL, "linear: NF4 weight %s must be frozen and have a "
                           "quantization state", w->name ? w->name : "");
    if (!ctx->k->gemm || (bias && (!ctx->k->add || !ctx->k->sum_rows)) || (w->dtype == RT_NF4 && !ctx->k->nf4_dequant_rows))
        return rt_ctx_fail(ctx, RT_EINTERNAL, "linear: no %s kernel", ctx->k->name);
    int64_t in = w->shape[1], out = w->shape[0], rows = rt_numel(x) / in;
    rt_tensor *y = frozen_matmul(ctx, x, w, rows, in, out);
    if (!y) return NULL;
    if (bias) ctx->k->add(rows * out, out, y->data, bias->data, y->data);
    rt_node *n = rt_record(ctx, "linear", linear_backward, y, bias ? 3 : 2,
                           (rt_tensor *[]){x, w, bias});
    (void)n;
    return y;
}

/* ---- LoRA linear -------------------------------------------------------------
 * y = x @ W^T + scaling * h @ B^T with h = lora_A(dropout(x)) [..., r] (PEFT's
 * LoraLayer.forward, Hu et al. 2021). One output tensor instead of four (the
 * base output, B's output, its scaled copy and the sum), and the low-rank
 * term is accumulated by the GEMM itself (beta = 1): at the SmolLM2-135M
 * shape the separate tensors and their gradients were ~60% of a training
 * step's activation memory. */

static void linear_lora_backward(rt_ctx *ctx, rt_node *n) {
    rt_tensor *x = n->in[0], *w = n->in[1], *h = n->in[2], *B = n->in[3];
    const int64_t in = w->shape[1], out = w->shape[0], r = B->shape[1], rows = rt_numel(x) / in;
    const float s = n->f[0], *dy = n->out->grad->data;
    rt_tensor *dx = rt_grad(ctx, x), *dw = rt_grad(ctx, w), *dh = rt_grad(ctx, h),
              *dB = rt_grad(ctx, B);
    const rt_kernels *k = ctx->k;
    if (dx) {
        rt_arena_mark mark = rt_arena_get_mark(ctx->arena);
        const float *wf = linear_weight_f32(ctx, w);
        if (wf) k->gemm(1, false, false, rows, in, out, 1.0f, dy, 0, wf, 0, 1.0f, dx->data, 0);
        rt_arena_release(ctx->arena, mark);
    }
    if (dw) k->gemm(1, true, false, out, in, rows, 1.0f, dy, 0, x->data, 0, 1.0f, dw->data, 0);
    if (dh) k->gemm(1, false, false, rows, r, out, s, dy, 0, B->data, 0, 1.0f, dh->data, 0);
    if (dB) k->gemm(1, true, false, out, r, rows, s, dy, 0, h->data, 0, 1.0f, dB->data, 0);
}

rt_tensor *rt_linear_lora(rt_ctx *ctx, rt_tensor *x, rt_tensor *weight, rt_tensor *h,
                          rt_tensor *B, float scaling) {
    if (!x || !weight || !h || !B) return NULL;
    char sx[64], sw[64], sh[64], sb[64];
    rt_tensor *w = weight;
    const int64_t in = w->ndim == 2 ? w->shape[1] : -1, out = w->shape[0];
    const int64_t r = B->ndim == 2 ? B->shape[1] : -1, rows = in > 0 ? rt_numel(x) / in : 0;
    if (x->dtype != RT_F32 || (w->dtype != RT_F32 && w->dtype != RT_NF4) || h->dtype != RT_F32 ||
        B->dtype != RT_F32 || w->ndim != 2 || B->ndim != 2 || x->ndim < 1 ||
        x->shape[x->ndim - 1] != in || B->shape[0] != out || h->shape[h->ndim - 1] != r ||
        rt_numel(h) != rows * r)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "linear_lora: x %s, weight %s, h %s, lora_B %s do not match",
                           rt_shape_str(x, sx, sizeof sx), rt_shape_str(w, sw, sizeof sw),
                           rt_shape_str(h, sh, sizeof sh), rt_shape_str(B, sb, sizeof sb));
    if (x->device != ctx->device || w->device != ctx->device || h->device != ctx->device ||
        B->device != ctx->device)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "linear_lora: tensors must be on %s", ctx->k->name);
    if (w->dtype == RT_NF4 && (w->requires_grad || !w->nf4))
        return rt_ctx_fail(ctx, RT_EINTERNAL, "linear_lora: NF4 weight %s must be frozen and have "
                           "a quantization state", w->name ? w->name : "");
    if (!ctx->k->gemm || (w->dtype == RT_NF4 && !ctx->k->nf4_dequant_rows))
        return rt_ctx_fail(ctx, RT_EINTERNAL, "linear_lora: no %s kernel", ctx->k->name);
    rt_tensor *y = frozen_matmul(ctx, x, w, rows, in, out);
    if (!y) return NULL;
    ctx->k->gemm(1, false, true, rows, out, r, scaling, h->data, 0, B->data, 0, 1.0f, y->data, 0);
    rt_node *n = rt_record(ctx, "linear_lora", linear_lora_backward, y, 4, (rt_tensor *[]){x, w, h, B});
    if (n) n->f[0] = scaling;
    return y;
}
