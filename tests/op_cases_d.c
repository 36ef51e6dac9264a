/* retort — op test rows for the fused chains, rt_add_rmsnorm and rt_rope_qk
 * (harness: tests/op_cases.h, tests/test_ops.c).
 *
 * Both ops have two outputs; a row's build returns a combination of them
 * (y + 0.5 s; q' + 0.5 k'), or one alone, so the finite differences check
 * the gradient through each output and through both, and the paths where
 * the first contribution to an input's gradient is written (fresh) and
 * where it is added (the input also feeds a later op). References: naive
 * double loops from the definitions, written here, not the kernels.
 */
#include <math.h>

#include "tests/op_cases.h"

/* ---- add + RMSNorm: s = x + d, y = s / sqrt(mean(s^2) + eps) * w ---- */

enum { AR_ROWS = 6, AR_DIM = 7 };
#define AR_EPS 1e-5

/* out = cy * y + cs * s + cxd * x * d (elementwise), x, d [rows, dim] */
static void ref_add_rmsnorm(const float *x, const float *d, const float *w, double cy, double cs,
                            double cxd, float *out) {
    for (int r = 0; r < AR_ROWS; r++) {
        double s[AR_DIM], ss = 0;
        for (int c = 0; c < AR_DIM; c++) {
            s[c] = (double)x[r * AR_DIM + c] + d[r * AR_DIM + c];
            ss += s[c] * s[c];
        }
        double rs = 1.0 / sqrt(ss / AR_DIM + AR_EPS);
        for (int c = 0; c < AR_DIM; c++) {
            int i = r * AR_DIM + c;
            out[i] = (float)(cy * s[c] * rs * w[c] + cs * s[c] + cxd * (double)x[i] * d[i]);
        }
    }
}

static rt_tensor *build_ar_both(rt_ctx *ctx, rt_tensor **in) {
    rt_tensor *s, *y = rt_add_rmsnorm(ctx, in[0], in[1], in[2], (float)AR_EPS, &s);
    return rt_add(ctx, y, rt_scale(ctx, s, 0.5f));
}
static void ref_ar_both(const float *const *in, float *out) {
    ref_add_rmsnorm(in[0], in[1], in[2], 1, 0.5, 0, out);
}
static rt_tensor *build_ar_y(rt_ctx *ctx, rt_tensor **in) {
    rt_tensor *s;
    return rt_add_rmsnorm(ctx, in[0], in[1], in[2], (float)AR_EPS, &s);
}
static void ref_ar_y(const float *const *in, float *out) { ref_add_rmsnorm(in[0], in[1], in[2], 1, 0, 0, out); }
static rt_tensor *build_ar_s(rt_ctx *ctx, rt_tensor **in) {
    rt_tensor *s;
    rt_add_rmsnorm(ctx, in[0], in[1], in[2], (float)AR_EPS, &s);
    return rt_scale(ctx, s, 0.5f);
}
static void ref_ar_s(const float *const *in, float *out) { ref_add_rmsnorm(in[0], in[1], in[2], 0, 0.5, 0, out); }
/* x and d also feed a later op: their gradients already hold a contribution. */
static rt_tensor *build_ar_acc(rt_ctx *ctx, rt_tensor **in) {
    rt_tensor *s, *y = rt_add_rmsnorm(ctx, in[0], in[1], in[2], (float)AR_EPS, &s);
    return rt_add(ctx, rt_add(ctx, y, rt_scale(ctx, s, 0.5f)), rt_mul(ctx, in[0], in[1]));
}
static void ref_ar_acc(const float *const *in, float *out) {
    ref_add_rmsnorm(in[0], in[1], in[2], 1, 0.5, 1, out);
}
/* x + x */
static rt_tensor *build_ar_self(rt_ctx *ctx, rt_tensor **in) {
    rt_tensor *s, *y = rt_add_rmsnorm(ctx, in[0], in[0], in[1], (float)AR_EPS, &s);
    return rt_add(ctx, y, rt_scale(ctx, s, 0.5f));
}
static void ref_ar_self(const float *const *in, float *out) {
    ref_add_rmsnorm(in[0], in[0], in[1], 1, 0.5, 0, out);
}

/* ---- RoPE of q and k: the rotation of pairs by p * theta^(-2i/Dh) ---- */

static const int32_t rqk_pos[6] = {0, 1, 2, 9, 4, 300};

static void ref_rot(const float *x, int BT, int H, int Dh, double theta, bool interleaved,
                    double coef, float *out) {
    for (int t = 0; t < BT; t++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < Dh / 2; i++) {
                double ang = rqk_pos[t] * pow(theta, -2.0 * i / Dh);
                int i0 = interleaved ? 2 * i : i, i1 = interleaved ? 2 * i + 1 : i + Dh / 2;
                const float *xv = x + (t * H + h) * Dh;
                float *o = out + (t * H + h) * Dh;
                o[i0] = (float)(o[i0] + coef * (xv[i0] * cos(ang) - xv[i1] * sin(ang)));
                o[i1] = (float)(o[i1] + coef * (xv[i1] * cos(ang) + xv[i0] * sin(ang)));
            }
}

/* q, k [2,3,2,8]; out = q' + 0.5 k' */
static rt_tensor *build_rqk_both(rt_ctx *ctx, rt_tensor **in) {
    rt_tensor *pos = rt_from_i32(ctx, rqk_pos, 2, (int64_t[]){2, 3}), *k;
    rt_tensor *q = rt_rope_qk(ctx, in[0], in[1], pos, 10000.0f, RT_ROPE_HF, &k);
    return rt_add(ctx, q, rt_scale(ctx, k, 0.5f));
}
static void ref_rqk_both(const float *const *in, float *out) {
    for (int i = 0; i < 96; i++) out[i] = 0;
    ref_rot(in[0], 6, 2, 8, 10000.0, false, 1.0, out);
    ref_rot(in[1], 6, 2, 8, 10000.0, false, 0.5, out);
}
/* GQA-shaped: q [1,6,4,4], k [1,6,2,4] interleaved; out = k' alone (q unused) */
static rt_tensor *build_rqk_k(rt_ctx *ctx, rt_tensor **in) {
    rt_tensor *pos = rt_from_i32(ctx, rqk_pos, 2, (int64_t[]){1, 6}), *k;
    rt_tensor *q = rt_rope_qk(ctx, in[0], in[1], pos, 500000.0f, RT_ROPE_INTERLEAVED, &k);
    (void)q;
    return k;
}
static void ref_rqk_k(const float *const *in, float *out) {
    for (int i = 0; i < 48; i++) out[i] = 0;
    ref_rot(in[1], 6, 2, 4, 500000.0, true, 1.0, out);
}
/* q [1,6,4,4], k [1,6,2,4]; out = q' * q (q's gradient gets a later contribution) */
static rt_tensor *build_rqk_q(rt_ctx *ctx, rt_tensor **in) {
    rt_tensor *pos = rt_from_i32(ctx, rqk_pos, 2, (int64_t[]){1, 6}), *k;
    rt_tensor *q = rt_rope_qk(ctx, in[0], in[1], pos, 10000.0f, RT_ROPE_HF, &k);
    return rt_mul(ctx, q, in[0]);
}
static void ref_rqk_q(const float *const *in, float *out) {
    for (int i = 0; i < 96; i++) out[i] = 0;
    ref_rot(in[0], 6, 4, 4, 10000.0, false, 1.0, out);
    for (int i = 0; i < 96; i++) out[i] *= in[0][i];
}

#define AR_IN .n_in = 3, .ndim = {2, 2, 1}, .shape = {{AR_ROWS, AR_DIM}, {AR_ROWS, AR_DIM}, {AR_DIM}}, \
              .diff = {true, true, true}

const rt_op_case rt_op_cases_d[] = {
    {RT_OP_ADD_RMSNORM, "add_rmsnorm [6,7] -> y + 0.5 s", AR_IN, .build = build_ar_both,
     .ref = ref_ar_both},
    {RT_OP_ADD_RMSNORM, "add_rmsnorm [6,7] -> y alone", AR_IN, .build = build_ar_y, .ref = ref_ar_y},
    {RT_OP_ADD_RMSNORM, "add_rmsnorm [6,7] -> 0.5 s alone", AR_IN, .build = build_ar_s, .ref = ref_ar_s},
    {RT_OP_ADD_RMSNORM, "add_rmsnorm [6,7] -> y + 0.5 s + x*d (gradients accumulate)", AR_IN,
     .build = build_ar_acc, .ref = ref_ar_acc},
    {RT_OP_ADD_RMSNORM, "add_rmsnorm x + x, [6,7] -> y + 0.5 s", .n_in = 2, .ndim = {2, 1},
     .shape = {{AR_ROWS, AR_DIM}, {AR_DIM}}, .diff = {true, true}, .build = build_ar_self,
     .ref = ref_ar_self},
    {RT_OP_ROPE_QK, "rope_qk HF q,k [2,3,2,8] -> q' + 0.5 k', pos up to 300", .n_in = 2,
     .ndim = {4, 4}, .shape = {{2, 3, 2, 8}, {2, 3, 2, 8}}, .diff = {true, true},
     .build = build_rqk_both, .ref = ref_rqk_both},
    {RT_OP_ROPE_QK, "rope_qk interleaved q [1,6,4,4], k [1,6,2,4] -> k' alone", .n_in = 2,
     .ndim = {4, 4}, .shape = {{1, 6, 4, 4}, {1, 6, 2, 4}}, .diff = {true, true},
     .build = build_rqk_k, .ref = ref_rqk_k},
    {RT_OP_ROPE_QK, "rope_qk HF q [1,6,4,4], k [1,6,2,4] -> q' * q", .n_in = 2, .ndim = {4, 4},
     .shape = {{1, 6, 4, 4}, {1, 6, 2, 4}}, .diff = {true, true}, .build = build_rqk_q,
     .ref = ref_rqk_q},
};
const int rt_n_op_cases_d = (int)(sizeof rt_op_cases_d / sizeof rt_op_cases_d[0]);
