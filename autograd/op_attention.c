/* retort — causal grouped-query attention (autograd/ops.h, kernels/kernels.h).
 *
 * out = softmax(q k^T / sqrt(Dh) + causal/segment mask) v per (batch, query
 * head), each query head reading kv head h / (H/Hkv) (GQA, Ainslie et al.
 * 2023). Only the [B,H,T] logsumexp of the scores is kept for backward,
 * which recomputes the probabilities (FlashAttention-2), so memory stays
 * O(T) per head instead of O(T^2).
 *
 * rt_attention_window adds a sliding window (kernels/kernels.h): each
 * query sees only the last `window` keys up to itself (Gemma 3's local
 * layers), in both directions.
 *
 * k and v may be longer than q (Tk > Tq: KV-cache decoding, where query i
 * sits at position Tk - Tq + i); that form is forward-only, so it is
 * refused when a gradient would be needed, and takes no segments.
 */
#include "autograd/ops.h"

static void attention_backward(rt_ctx *ctx, rt_node *n) {
    rt_tensor *q = n->in[0], *k = n->in[1], *v = n->in[2], *seg = n->in[3];
    rt_tensor *dq = rt_grad(ctx, q), *dk = rt_grad(ctx, k), *dv = rt_grad(ctx, v);
    if (!dq && !dk && !dv) return;
    ctx->k->attention_bwd(q->shape[0], q->shape[1], q->shape[2], k->shape[2], q->shape[3],
                          q->data, k->data, v->data, seg ? seg->data : NULL, n->i[0], n->out->data,
                          n->saved[0]->data, n->out->grad->data, dq ? dq->data : NULL,
                          dk ? dk->data : NULL, dv ? dv->data : NULL);
}

static bool is_f32_4d(const rt_ctx *ctx, const rt_tensor *t) {
    return t->dtype == RT_F32 && t->device == ctx->device && t->ndim == 4;
}

rt_tensor *rt_attention(rt_ctx *ctx, rt_tensor *q, rt_tensor *k, rt_tensor *v, rt_tensor *seg) {
    return rt_attention_window(ctx, q, k, v, seg, 0);
}

rt_tensor *rt_attention_window(rt_ctx *ctx, rt_tensor *q, rt_tensor *k, rt_tensor *v,
                               rt_tensor *seg, int64_t window) {
    if (!q || !k || !v) return NULL;
    if (window < 0) return rt_ctx_fail(ctx, RT_EINTERNAL, "attention: window %lld < 0", (long long)window);
    char sq[64], sk[64], sv[64];
    rt_shape_str(q, sq, sizeof sq);
    rt_shape_str(k, sk, sizeof sk);
    rt_shape_str(v, sv, sizeof sv);
    if (!is_f32_4d(ctx, q) || !is_f32_4d(ctx, k) || !is_f32_4d(ctx, v))
        return rt_ctx_fail(ctx, RT_EINTERNAL,
                           "attention: q %s, k %s, v %s must be 4-D f32 tensors on %s", sq, sk,
                           sv, rt_device_name(ctx->device));
    const int64_t B = q->shape[0], T = q->shape[1], H = q->shape[2], Dh = q->shape[3];
    const int64_t Hkv = k->shape[2], Tk = k->shape[1];
    if (!rt_same_shape(k, v) || k->shape[0] != B || Tk < T || k->shape[3] != Dh || Hkv < 1 ||
        H % Hkv != 0)
        return rt_ctx_fail(ctx, RT_EINTERNAL,
                           "attention: q %s [B,T,H,Dh] needs k, v [B,Tk>=T,Hkv,Dh] with H %% Hkv "
                           "== 0; got k %s, v %s",
                           sq, sk, sv);
    bool needs_grad = !ctx->no_grad && (q->requires_grad || k->requires_grad || v->requires_grad);
    if (Tk != T && (seg || needs_grad))
        return rt_ctx_fail(ctx, RT_EINTERNAL,
                           "attention: keys longer than queries (KV cache) is forward-only and "
                           "takes no segments");
    if (seg && (seg->dtype != RT_I32 || seg->device != ctx->device || seg->ndim != 2 ||
                seg->shape[0] != B || seg->shape[1] != T)) {
        char ss[64];
        return rt_ctx_fail(ctx, RT_EINTERNAL, "attention: seg must be i32 [%lld,%lld], got %s %s",
                           (long long)B, (long long)T, rt_dtype_name(seg->dtype),
                           rt_shape_str(seg, ss, sizeof ss));
    }
    if (!ctx->k->attention || !ctx->k->attention_bwd)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "attention: no %s kernel", ctx->k->name);

    rt_tensor *out = rt_new_like(ctx, q);
    rt_tensor *lse = rt_new(ctx, RT_F32, 3, (int64_t[]){B, H, T});
    if (!out || !lse) return NULL;
    ctx->k->attention(B, T, Tk, H, Hkv, Dh, q->data, k->data, v->data, seg ? seg->data : NULL, window,
                      out->data, lse->data);
    rt_node *n = rt_record(ctx, "attention", attention_backward, out, 4,
                           (rt_tensor *[]){q, k, v, seg});
    if (n) {
        n->saved[0] = lse;
        n->i[0] = window;
    }
    return out;
}
