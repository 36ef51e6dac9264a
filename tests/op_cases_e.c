/* retort — op test rows for Gemma 3's pieces (harness: tests/op_cases.h,
 * tests/test_ops.c): GeGLU, sliding-window attention (forward and backward,
 * windows shorter than the sequence, across the CPU kernel's key blocks, on
 * both its tiled and its wide-head paths, and in decoding), and the (1 + w)
 * RMSNorm as the model builds it (rmsnorm of add(1, w)), over a last dim
 * and over head_dim of [B,T,H,Dh] as for q/k norms.
 *
 * References are naive double loops written from the definitions
 * (transformers' gelu_pytorch_tanh, sliding_window_overlay kv > q - window,
 * Gemma3RMSNorm), independent of kernels/cpu.
 */
#include <math.h>
#include <stdlib.h>

#include "tests/op_cases.h"

/* ---- geglu ---- */

static double ref_gelu_tanh(double x) {
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}
static rt_tensor *build_geglu(rt_ctx *ctx, rt_tensor **in) { return rt_geglu(ctx, in[0], in[1]); }
static void ref_geglu_35(const float *const *in, float *out) {
    for (int i = 0; i < 35; i++) out[i] = (float)(ref_gelu_tanh(in[0][i]) * in[1][i]);
}
static void ref_geglu_48(const float *const *in, float *out) {
    for (int i = 0; i < 48; i++) out[i] = (float)(ref_gelu_tanh(in[0][i]) * in[1][i]);
}

/* ---- sliding-window attention ---- */

static void ref_attention_window(const float *q, const float *k, const float *v, int B, int Tq,
                                 int Tk, int H, int Hkv, int Dh, int window, float *out) {
    double *S = malloc(sizeof(double) * (size_t)Tk);
    const double scale = 1.0 / sqrt((double)Dh);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const int kh = h / (H / Hkv);
            for (int i = 0; i < Tq; i++) {
                const int p = Tk - Tq + i;
                double m = -INFINITY, z = 0.0;
                for (int j = 0; j < Tk; j++) {
                    bool ok = j <= p && j > p - window;
                    double s = 0.0;
                    for (int d = 0; d < Dh; d++)
                        s += (double)q[((b * Tq + i) * H + h) * Dh + d] *
                             k[((b * Tk + j) * Hkv + kh) * Dh + d];
                    S[j] = ok ? s * scale : -INFINITY;
                    m = S[j] > m ? S[j] : m;
                }
                for (int j = 0; j < Tk; j++) z += exp(S[j] - m);
                for (int d = 0; d < Dh; d++) {
                    double o = 0.0;
                    for (int j = 0; j < Tk; j++)
                        o += exp(S[j] - m) / z * v[((b * Tk + j) * Hkv + kh) * Dh + d];
                    out[((b * Tq + i) * H + h) * Dh + d] = (float)o;
                }
            }
        }
    free(S);
}

static rt_tensor *build_win4(rt_ctx *ctx, rt_tensor **in) {
    return rt_attention_window(ctx, in[0], in[1], in[2], NULL, 4);
}
static void ref_win4(const float *const *in, float *out) {
    ref_attention_window(in[0], in[1], in[2], 2, 13, 13, 4, 2, 8, 4, out);
}
/* T 150 > window 70 > the 64-key block: masked and visible keys share
 * blocks, and whole blocks fall out of the window (tiled path, Dh 8). */
static rt_tensor *build_win70(rt_ctx *ctx, rt_tensor **in) {
    return rt_attention_window(ctx, in[0], in[1], in[2], NULL, 70);
}
static void ref_win70(const float *const *in, float *out) {
    ref_attention_window(in[0], in[1], in[2], 1, 150, 150, 2, 1, 8, 70, out);
}
/* Wide heads (the blocked-GEMM path), window 33 inside a 64-key block. */
static rt_tensor *build_win33(rt_ctx *ctx, rt_tensor **in) {
    return rt_attention_window(ctx, in[0], in[1], in[2], NULL, 33);
}
static void ref_win33(const float *const *in, float *out) {
    ref_attention_window(in[0], in[1], in[2], 1, 140, 140, 4, 2, 20, 33, out);
}
/* Decoding: the last 3 of 70 positions, window 10 (forward only). */
static rt_tensor *build_win_decode(rt_ctx *ctx, rt_tensor **in) {
    rt_tensor *out = rt_new_like(ctx, in[0]);
    rt_tensor *lse = rt_new(ctx, RT_F32, 3, (int64_t[]){1, 2, 3});
    if (!out || !lse) return NULL;
    if (!ctx->k->attention)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "attention: no %s kernel", ctx->k->name);
    ctx->k->attention(1, 3, 70, 2, 1, 20, in[0]->data, in[1]->data, in[2]->data, NULL, 10,
                      out->data, lse->data);
    return out;
}
static void ref_win_decode(const float *const *in, float *out) {
    ref_attention_window(in[0], in[1], in[2], 1, 3, 70, 2, 1, 20, 10, out);
}

/* ---- (1 + w) RMSNorm ---- */

static rt_tensor *norm_1p(rt_ctx *ctx, rt_tensor *x, rt_tensor *w) {
    int64_t n = rt_numel(w);
    float one[16];
    for (int i = 0; i < 16; i++) one[i] = 1.0f;
    return rt_rmsnorm(ctx, x, rt_add(ctx, rt_from_f32(ctx, one, 1, &n), w), 1e-6f);
}
static rt_tensor *build_norm_1p(rt_ctx *ctx, rt_tensor **in) { return norm_1p(ctx, in[0], in[1]); }
static void ref_norm_1p(const float *x, const float *w, int rows, int dim, float *y) {
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int c = 0; c < dim; c++) ss += (double)x[r * dim + c] * x[r * dim + c];
        double rs = 1.0 / sqrt(ss / dim + 1e-6);
        for (int c = 0; c < dim; c++) y[r * dim + c] = (float)(x[r * dim + c] * rs * (1.0 + w[c]));
    }
}
static void ref_norm_1p_3x13(const float *const *in, float *out) { ref_norm_1p(in[0], in[1], 3, 13, out); }
static void ref_norm_1p_qk(const float *const *in, float *out) { ref_norm_1p(in[0], in[1], 6, 8, out); }

#define QKV(B, T, H, HKV, DH)                                                                      \
    .n_in = 3, .ndim = {4, 4, 4}, .shape = {{B, T, H, DH}, {B, T, HKV, DH}, {B, T, HKV, DH}},      \
    .diff = {true, true, true}

const rt_op_case rt_op_cases_e[] = {
    {RT_OP_GEGLU, "geglu [5,7], inputs in [-3,3]", .n_in = 2, .ndim = {2, 2},
     .shape = {{5, 7}, {5, 7}}, .diff = {true, true}, .build = build_geglu, .ref = ref_geglu_35,
     .lo = -3, .hi = 3},
    {RT_OP_GEGLU, "geglu [2,4,6], inputs in [-8,8] (tails)", .n_in = 2, .ndim = {3, 3},
     .shape = {{2, 4, 6}, {2, 4, 6}}, .diff = {true, true}, .build = build_geglu,
     .ref = ref_geglu_48, .lo = -8, .hi = 8},
    {RT_OP_ATTENTION, "attention, sliding window 4, B2 T13 H4 Hkv2 Dh8", QKV(2, 13, 4, 2, 8),
     .build = build_win4, .ref = ref_win4},
    {RT_OP_ATTENTION, "attention, sliding window 70, B1 T150 H2 Hkv1 Dh8 (key blocks out of window)",
     QKV(1, 150, 2, 1, 8), .build = build_win70, .ref = ref_win70},
    {RT_OP_ATTENTION, "attention, sliding window 33, B1 T140 H4 Hkv2 Dh20 (wide heads)",
     QKV(1, 140, 4, 2, 20), .build = build_win33, .ref = ref_win33},
    {RT_OP_ATTENTION, "attention kernel, sliding window 10, decode Tq3 of Tk70 (forward only)",
     .n_in = 3, .ndim = {4, 4, 4}, .shape = {{1, 3, 2, 20}, {1, 70, 1, 20}, {1, 70, 1, 20}},
     .build = build_win_decode, .ref = ref_win_decode},
    {RT_OP_RMSNORM, "rmsnorm with 1 + w (Gemma) [3,13], eps 1e-6", .n_in = 2, .ndim = {2, 1},
     .shape = {{3, 13}, {13}}, .diff = {true, true}, .build = build_norm_1p, .ref = ref_norm_1p_3x13},
    {RT_OP_RMSNORM, "rmsnorm with 1 + w over head_dim of [1,3,2,8] (q/k norm)", .n_in = 2,
     .ndim = {4, 1}, .shape = {{1, 3, 2, 8}, {8}}, .diff = {true, true}, .build = build_norm_1p,
     .ref = ref_norm_1p_qk},
};
const int rt_n_op_cases_e = (int)(sizeof rt_op_cases_e / sizeof rt_op_cases_e[0]);
