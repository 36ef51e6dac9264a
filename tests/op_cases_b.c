/* retort — op test rows for softmax, log_softmax, attention, cross_entropy
 * and kl_div (harness: tests/op_cases.h, tests/test_ops.c).
 *
 * The references are naive double-precision loops written from the
 * definitions, independent of kernels/cpu: attention builds the full [T,T]
 * score matrix with an explicit causal/segment mask per (batch, head).
 * Integer inputs (segments, labels) are fixed arrays shared by build and ref.
 */
#include <math.h>

#include "tests/op_cases.h"

/* ---- softmax / log_softmax ---- */

static void ref_softmax_rows(const float *x, float *y, int rows, int cols, bool log_out) {
    for (int r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        double m = xr[0], s = 0.0;
        for (int j = 1; j < cols; j++) m = xr[j] > m ? xr[j] : m;
        for (int j = 0; j < cols; j++) s += exp((double)xr[j] - m);
        for (int j = 0; j < cols; j++) {
            double lp = (double)xr[j] - m - log(s);
            y[r * cols + j] = (float)(log_out ? lp : exp(lp));
        }
    }
}

static rt_tensor *build_softmax(rt_ctx *ctx, rt_tensor **in) { return rt_softmax(ctx, in[0]); }
static rt_tensor *build_log_softmax(rt_ctx *ctx, rt_tensor **in) {
    return rt_log_softmax(ctx, in[0]);
}
static void ref_softmax_3x7(const float *const *in, float *out) {
    ref_softmax_rows(in[0], out, 3, 7, false);
}
static void ref_softmax_2x3x5(const float *const *in, float *out) {
    ref_softmax_rows(in[0], out, 6, 5, false);
}
static void ref_log_softmax_5x13(const float *const *in, float *out) {
    ref_softmax_rows(in[0], out, 5, 13, true);
}
static void ref_log_softmax_2x3x5(const float *const *in, float *out) {
    ref_softmax_rows(in[0], out, 6, 5, true);
}

/* ---- attention ---- */

/* Packed samples: batch 0 holds three sequences, batch 1 two (ids need not
 * be small or ordered, only equal within a sample). */
static const int32_t seg_b2t7[2 * 7] = {0, 0, 0, 1, 1, 2, 2, 4, 4, 4, 4, 4, 9, 9};
static const int32_t seg_b1t13[13] = {3, 3, 3, 3, 3, 3, 3, 3, 1, 1, 1, 1, 1};

/* Query i sits at position Tk-Tq+i (Tq < Tk: decoding with a KV cache). */
static void ref_attention(const float *q, const float *k, const float *v, const int32_t *seg,
                          int B, int Tq, int Tk, int H, int Hkv, int Dh, float *out) {
    static double S[70][70]; /* every case here has T <= 70 */
    const double scale = 1.0 / sqrt((double)Dh);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const int kh = h / (H / Hkv);
            for (int i = 0; i < Tq; i++)
                for (int j = 0; j < Tk; j++) {
                    bool ok = j <= Tk - Tq + i && (!seg || seg[b * Tk + i] == seg[b * Tk + j]);
                    double s = 0.0;
                    for (int d = 0; d < Dh; d++)
                        s += (double)q[((b * Tq + i) * H + h) * Dh + d] *
                             k[((b * Tk + j) * Hkv + kh) * Dh + d];
                    S[i][j] = ok ? s * scale : -INFINITY;
                }
            for (int i = 0; i < Tq; i++) {
                double m = -INFINITY, z = 0.0;
                for (int j = 0; j < Tk; j++) m = S[i][j] > m ? S[i][j] : m;
                for (int j = 0; j < Tk; j++) z += exp(S[i][j] - m);
                for (int d = 0; d < Dh; d++) {
                    double o = 0.0;
                    for (int j = 0; j < Tk; j++)
                        o += exp(S[i][j] - m) / z * v[((b * Tk + j) * Hkv + kh) * Dh + d];
                    out[((b * Tq + i) * H + h) * Dh + d] = (float)o;
                }
            }
        }
}

static rt_tensor *build_attention(rt_ctx *ctx, rt_tensor **in) {
    return rt_attention(ctx, in[0], in[1], in[2], NULL);
}
static rt_tensor *build_attention_seg_b2t7(rt_ctx *ctx, rt_tensor **in) {
    rt_tensor *seg = rt_from_i32(ctx, seg_b2t7, 2, (int64_t[]){2, 7});
    return seg ? rt_attention(ctx, in[0], in[1], in[2], seg) : NULL;
}
static rt_tensor *build_attention_seg_b1t13(rt_ctx *ctx, rt_tensor **in) {
    rt_tensor *seg = rt_from_i32(ctx, seg_b1t13, 2, (int64_t[]){1, 13});
    return seg ? rt_attention(ctx, in[0], in[1], in[2], seg) : NULL;
}
static void ref_attention_mha(const float *const *in, float *out) {
    ref_attention(in[0], in[1], in[2], NULL, 2, 7, 7, 2, 2, 8, out);
}
static void ref_attention_gqa(const float *const *in, float *out) {
    ref_attention(in[0], in[1], in[2], NULL, 2, 7, 7, 4, 1, 8, out);
}
static void ref_attention_seg_b2t7(const float *const *in, float *out) {
    ref_attention(in[0], in[1], in[2], seg_b2t7, 2, 7, 7, 4, 2, 8, out);
}
static void ref_attention_seg_b1t13(const float *const *in, float *out) {
    ref_attention(in[0], in[1], in[2], seg_b1t13, 1, 13, 13, 6, 3, 5, out);
}

/* The op needs Tq == Tk; generation calls the kernel with Tq < Tk (the last
 * Tq positions of a Tk-token cache), so this row checks the kernel directly
 * (forward only: nothing here is differentiable). */
static rt_tensor *build_attention_decode(rt_ctx *ctx, rt_tensor **in) {
    rt_tensor *out = rt_new_like(ctx, in[0]);
    rt_tensor *lse = rt_new(ctx, RT_F32, 3, (int64_t[]){2, 4, 3});
    if (!out || !lse) return NULL;
    if (!ctx->k->attention)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "attention: no %s kernel", ctx->k->name);
    ctx->k->attention(2, 3, 7, 4, 2, 8, in[0]->data, in[1]->data, in[2]->data, NULL, 0, out->data,
                      lse->data);
    return out;
}
/* T = 70 crosses the CPU kernel's 64-key blocks; Dh = 20 takes its
 * wide-head path (tiles are used up to Dh 16). */
static void ref_attention_t70(const float *const *in, float *out) {
    ref_attention(in[0], in[1], in[2], NULL, 1, 70, 70, 2, 1, 20, out);
}

static void ref_attention_decode(const float *const *in, float *out) {
    ref_attention(in[0], in[1], in[2], NULL, 2, 3, 7, 4, 2, 8, out);
}

/* Wide heads (the blocked-GEMM path) with GQA and a segment boundary at 45,
 * inside the first 64-key block, so masked and visible keys share tiles. */
static int32_t seg_t70[70];
static void fill_seg_t70(void) {
    for (int i = 0; i < 70; i++) seg_t70[i] = i < 45 ? 5 : 8;
}
static rt_tensor *build_attention_seg_t70(rt_ctx *ctx, rt_tensor **in) {
    fill_seg_t70();
    rt_tensor *seg = rt_from_i32(ctx, seg_t70, 2, (int64_t[]){1, 70});
    return seg ? rt_attention(ctx, in[0], in[1], in[2], seg) : NULL;
}
static void ref_attention_seg_t70(const float *const *in, float *out) {
    fill_seg_t70();
    ref_attention(in[0], in[1], in[2], seg_t70, 1, 70, 70, 4, 2, 20, out);
}

/* Decoding with wide heads: the last 3 of 70 positions. */
static rt_tensor *build_attention_decode_wide(rt_ctx *ctx, rt_tensor **in) {
    rt_tensor *out = rt_new_like(ctx, in[0]);
    rt_tensor *lse = rt_new(ctx, RT_F32, 3, (int64_t[]){1, 2, 3});
    if (!out || !lse) return NULL;
    if (!ctx->k->attention)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "attention: no %s kernel", ctx->k->name);
    ctx->k->attention(1, 3, 70, 2, 1, 20, in[0]->data, in[1]->data, in[2]->data, NULL, 0, out->data,
                      lse->data);
    return out;
}
static void ref_attention_decode_wide(const float *const *in, float *out) {
    ref_attention(in[0], in[1], in[2], NULL, 1, 3, 70, 2, 1, 20, out);
}

/* ---- cross-entropy ---- */

static const int32_t ce_labels[6] = {3, RT_IGNORE_INDEX, 0, 6, RT_IGNORE_INDEX, 2};
static const int32_t ce_labels_all[5] = {10, 0, 4, 7, 1};

/* sum over non-ignored rows of (logsumexp(x) - x[label]), divided by denom
 * (or by the number of non-ignored rows when denom <= 0). */
static float ref_ce(const float *x, const int32_t *labels, int N, int V, double denom) {
    double sum = 0.0;
    int count = 0;
    for (int i = 0; i < N; i++) {
        if (labels[i] == RT_IGNORE_INDEX) continue;
        double m = x[i * V], z = 0.0;
        for (int j = 1; j < V; j++) m = x[i * V + j] > m ? x[i * V + j] : m;
        for (int j = 0; j < V; j++) z += exp((double)x[i * V + j] - m);
        sum += m + log(z) - x[i * V + labels[i]];
        count++;
    }
    return (float)(sum / (denom > 0 ? denom : count));
}

static rt_tensor *build_ce(rt_ctx *ctx, rt_tensor **in, float denom) {
    rt_tensor *labels = rt_from_i32(ctx, ce_labels, 2, (int64_t[]){2, 3});
    return labels ? rt_cross_entropy(ctx, in[0], labels, denom) : NULL;
}
static rt_tensor *build_ce_mean(rt_ctx *ctx, rt_tensor **in) { return build_ce(ctx, in, 0.0f); }
static rt_tensor *build_ce_denom(rt_ctx *ctx, rt_tensor **in) { return build_ce(ctx, in, 10.0f); }
static rt_tensor *build_ce_all(rt_ctx *ctx, rt_tensor **in) {
    rt_tensor *labels = rt_from_i32(ctx, ce_labels_all, 1, (int64_t[]){5});
    return labels ? rt_cross_entropy(ctx, in[0], labels, 3.5f) : NULL;
}
static void ref_ce_mean(const float *const *in, float *out) {
    out[0] = ref_ce(in[0], ce_labels, 6, 7, 0.0);
}
static void ref_ce_denom(const float *const *in, float *out) {
    out[0] = ref_ce(in[0], ce_labels, 6, 7, 10.0);
}
static void ref_ce_all(const float *const *in, float *out) {
    out[0] = ref_ce(in[0], ce_labels_all, 5, 11, 3.5);
}

/* ---- lm_head + cross-entropy: the reference forms the logits x W^T in
 * double, rounds them to f32 (as the unfused pair would hold them) and takes
 * ref_ce of them. 40 rows go through the op's chunk loop twice (32 + 8). ---- */

#define LCE_N 40
static int32_t lce_labels[LCE_N];

static void lce_fill_labels(void) { /* every 5th row ignored, the rest 0..8 */
    for (int i = 0; i < LCE_N; i++) lce_labels[i] = i % 5 == 4 ? RT_IGNORE_INDEX : (i * 7) % 9;
}

static float ref_lce(const float *x, const float *w, const int32_t *labels, int N, int D, int V,
                     double denom) {
    float logits[LCE_N * 9];
    for (int i = 0; i < N; i++)
        for (int v = 0; v < V; v++) {
            double s = 0.0;
            for (int d = 0; d < D; d++) s += (double)x[i * D + d] * w[v * D + d];
            logits[i * V + v] = (float)s;
        }
    return ref_ce(logits, labels, N, V, denom);
}

static rt_tensor *build_lce_small(rt_ctx *ctx, rt_tensor **in) {
    rt_tensor *labels = rt_from_i32(ctx, ce_labels, 2, (int64_t[]){2, 3});
    return labels ? rt_linear_cross_entropy(ctx, in[0], in[1], labels, 0.0f) : NULL;
}
static void ref_lce_small(const float *const *in, float *out) {
    out[0] = ref_lce(in[0], in[1], ce_labels, 6, 5, 7, 0.0);
}
static rt_tensor *build_lce_chunks(rt_ctx *ctx, rt_tensor **in) {
    lce_fill_labels();
    rt_tensor *labels = rt_from_i32(ctx, lce_labels, 1, (int64_t[]){LCE_N});
    return labels ? rt_linear_cross_entropy(ctx, in[0], in[1], labels, 12.5f) : NULL;
}
static void ref_lce_chunks(const float *const *in, float *out) {
    lce_fill_labels();
    out[0] = ref_lce(in[0], in[1], lce_labels, LCE_N, 6, 9, 12.5);
}

/* ---- distillation KL ---- */

static const int32_t kl_labels[6] = {1, RT_IGNORE_INDEX, 2, 3, RT_IGNORE_INDEX, 0};

/* T^2 * sum over kept rows of sum_v p (log p - log q), p = softmax(t/T),
 * q = softmax(s/T), divided by denom (or the number of kept rows). */
static float ref_kl(const float *s, const float *t, const int32_t *labels, int N, int V, double T,
                    double denom) {
    double sum = 0.0;
    int count = 0;
    for (int i = 0; i < N; i++) {
        if (labels && labels[i] == RT_IGNORE_INDEX) continue;
        double zs = 0.0, zt = 0.0;
        for (int j = 0; j < V; j++) {
            zs += exp(s[i * V + j] / T);
            zt += exp(t[i * V + j] / T);
        }
        for (int j = 0; j < V; j++) {
            double p = exp(t[i * V + j] / T) / zt, q = exp(s[i * V + j] / T) / zs;
            sum += p * log(p / q);
        }
        count++;
    }
    return (float)(T * T * sum / (denom > 0 ? denom : count));
}

static rt_tensor *build_kl(rt_ctx *ctx, rt_tensor **in, bool masked, float T, float denom) {
    rt_tensor *labels = masked ? rt_from_i32(ctx, kl_labels, 2, (int64_t[]){2, 3}) : NULL;
    if (masked && !labels) return NULL;
    return rt_kl_div(ctx, in[0], in[1], labels, T, denom);
}
static rt_tensor *build_kl_t1(rt_ctx *ctx, rt_tensor **in) {
    return build_kl(ctx, in, true, 1.0f, 0.0f);
}
static rt_tensor *build_kl_t2(rt_ctx *ctx, rt_tensor **in) {
    return build_kl(ctx, in, true, 2.0f, 0.0f);
}
static rt_tensor *build_kl_t2_denom(rt_ctx *ctx, rt_tensor **in) {
    return build_kl(ctx, in, true, 2.0f, 8.0f);
}
static rt_tensor *build_kl_nolabels(rt_ctx *ctx, rt_tensor **in) {
    return build_kl(ctx, in, false, 2.0f, 0.0f);
}
static void ref_kl_t1(const float *const *in, float *out) {
    out[0] = ref_kl(in[0], in[1], kl_labels, 6, 7, 1.0, 0.0);
}
static void ref_kl_t2(const float *const *in, float *out) {
    out[0] = ref_kl(in[0], in[1], kl_labels, 6, 7, 2.0, 0.0);
}
static void ref_kl_t2_denom(const float *const *in, float *out) {
    out[0] = ref_kl(in[0], in[1], kl_labels, 6, 7, 2.0, 8.0);
}
static void ref_kl_nolabels(const float *const *in, float *out) {
    out[0] = ref_kl(in[0], in[1], NULL, 6, 7, 2.0, 0.0);
}

/* ---- the table ---- */

#define QKV(B, T, H, HKV, DH)                                                                      \
    .n_in = 3, .ndim = {4, 4, 4}, .shape = {{B, T, H, DH}, {B, T, HKV, DH}, {B, T, HKV, DH}},      \
    .diff = {true, true, true}

const rt_op_case rt_op_cases_b[] = {
    {RT_OP_SOFTMAX, "softmax [3,7], inputs in [-3,3]", .n_in = 1, .ndim = {2},
     .shape = {{3, 7}}, .diff = {true}, .build = build_softmax, .ref = ref_softmax_3x7, .lo = -3,
     .hi = 3},
    {RT_OP_SOFTMAX, "softmax [2,3,5]", .n_in = 1, .ndim = {3}, .shape = {{2, 3, 5}},
     .diff = {true}, .build = build_softmax, .ref = ref_softmax_2x3x5},
    {RT_OP_LOG_SOFTMAX, "log_softmax [5,13], inputs in [-3,3]", .n_in = 1, .ndim = {2},
     .shape = {{5, 13}}, .diff = {true}, .build = build_log_softmax, .ref = ref_log_softmax_5x13,
     .lo = -3, .hi = 3},
    {RT_OP_LOG_SOFTMAX, "log_softmax [2,3,5]", .n_in = 1, .ndim = {3}, .shape = {{2, 3, 5}},
     .diff = {true}, .build = build_log_softmax, .ref = ref_log_softmax_2x3x5},
    {RT_OP_ATTENTION, "attention MHA B2 T7 H2 Dh8", QKV(2, 7, 2, 2, 8), .build = build_attention,
     .ref = ref_attention_mha},
    {RT_OP_ATTENTION, "attention GQA B2 T7 H4 Hkv1 Dh8", QKV(2, 7, 4, 1, 8),
     .build = build_attention, .ref = ref_attention_gqa},
    {RT_OP_ATTENTION, "attention GQA B2 T7 H4 Hkv2 Dh8, 3+2 packed segments", QKV(2, 7, 4, 2, 8),
     .build = build_attention_seg_b2t7, .ref = ref_attention_seg_b2t7},
    {RT_OP_ATTENTION, "attention GQA B1 T13 H6 Hkv3 Dh5, 2 packed segments", QKV(1, 13, 6, 3, 5),
     .build = build_attention_seg_b1t13, .ref = ref_attention_seg_b1t13},
    {RT_OP_ATTENTION, "attention GQA B1 T70 H2 Hkv1 Dh20 (several key blocks, wide heads)",
     QKV(1, 70, 2, 1, 20), .build = build_attention, .ref = ref_attention_t70},
    {RT_OP_ATTENTION, "attention GQA B1 T70 H4 Hkv2 Dh20, 45+25 packed segments (wide)",
     QKV(1, 70, 4, 2, 20), .build = build_attention_seg_t70, .ref = ref_attention_seg_t70},
    {RT_OP_ATTENTION, "attention kernel, decode Tq3 of Tk70, H2 Hkv1 Dh20 (forward only)",
     .n_in = 3, .ndim = {4, 4, 4}, .shape = {{1, 3, 2, 20}, {1, 70, 1, 20}, {1, 70, 1, 20}},
     .build = build_attention_decode_wide, .ref = ref_attention_decode_wide},
    {RT_OP_ATTENTION, "attention kernel, decode Tq3 of Tk7, H4 Hkv2 Dh8 (forward only)",
     .n_in = 3, .ndim = {4, 4, 4}, .shape = {{2, 3, 4, 8}, {2, 7, 2, 8}, {2, 7, 2, 8}},
     .build = build_attention_decode, .ref = ref_attention_decode},
    {RT_OP_CROSS_ENTROPY, "cross_entropy [2,3,7], 2 of 6 ignored, mean", .n_in = 1, .ndim = {3},
     .shape = {{2, 3, 7}}, .diff = {true}, .build = build_ce_mean, .ref = ref_ce_mean, .lo = -3,
     .hi = 3},
    {RT_OP_CROSS_ENTROPY, "cross_entropy [2,3,7], 2 of 6 ignored, denom 10", .n_in = 1,
     .ndim = {3}, .shape = {{2, 3, 7}}, .diff = {true}, .build = build_ce_denom,
     .ref = ref_ce_denom},
    {RT_OP_CROSS_ENTROPY, "cross_entropy [5,11], none ignored, denom 3.5", .n_in = 1, .ndim = {2},
     .shape = {{5, 11}}, .diff = {true}, .build = build_ce_all, .ref = ref_ce_all},
    {RT_OP_LINEAR_CROSS_ENTROPY, "linear_cross_entropy x [2,3,5], W [7,5], 2 of 6 ignored, mean",
     .n_in = 2, .ndim = {3, 2}, .shape = {{2, 3, 5}, {7, 5}}, .diff = {true, true},
     .build = build_lce_small, .ref = ref_lce_small, .lo = -2, .hi = 2},
    {RT_OP_LINEAR_CROSS_ENTROPY, "linear_cross_entropy x [40,6], W [9,6], 2 chunks, denom 12.5",
     .n_in = 2, .ndim = {2, 2}, .shape = {{40, 6}, {9, 6}}, .diff = {true, true},
     .build = build_lce_chunks, .ref = ref_lce_chunks, .lo = -2, .hi = 2},
    {RT_OP_KL_DIV, "kl_div [2,3,7] T=1, 2 of 6 rows masked", .n_in = 2, .ndim = {3, 3},
     .shape = {{2, 3, 7}, {2, 3, 7}}, .diff = {true, false}, .build = build_kl_t1,
     .ref = ref_kl_t1, .lo = -2, .hi = 2},
    {RT_OP_KL_DIV, "kl_div [2,3,7] T=2, 2 of 6 rows masked", .n_in = 2, .ndim = {3, 3},
     .shape = {{2, 3, 7}, {2, 3, 7}}, .diff = {true, false}, .build = build_kl_t2,
     .ref = ref_kl_t2, .lo = -3, .hi = 3},
    {RT_OP_KL_DIV, "kl_div [2,3,7] T=2, masked, denom 8", .n_in = 2, .ndim = {3, 3},
     .shape = {{2, 3, 7}, {2, 3, 7}}, .diff = {true, false}, .build = build_kl_t2_denom,
     .ref = ref_kl_t2_denom, .lo = -3, .hi = 3},
    {RT_OP_KL_DIV, "kl_div [2,3,7] T=2, no labels", .n_in = 2, .ndim = {3, 3},
     .shape = {{2, 3, 7}, {2, 3, 7}}, .diff = {true, false}, .build = build_kl_nolabels,
     .ref = ref_kl_nolabels},
};
const int rt_n_op_cases_b = (int)(sizeof rt_op_cases_b / sizeof rt_op_cases_b[0]);
