/* retort — op test rows for the distillation losses, rt_kd_loss (harness:
 * tests/op_cases.h, tests/test_ops.c).
 *
 * Inputs: student logits [2,3,11] (gradient-checked) and teacher logits
 * [2,3,11] (never differentiated), both uniform in [-3, 3]; labels mask rows
 * 1 and 4. Every kind (forward KL, reverse KL, JSD beta = 0.3) at T = 1 and
 * T = 2, with the full teacher and with its top 5 of 11 (taken by
 * rt_kd_topk inside the build, as the online top-k path does).
 *
 * The reference is a naive double loop written from the definitions: plain
 * softmaxes, the top-k picked by repeated argmax, explicit k+1 buckets with
 * p_rest = 1 - sum_k p and q_rest = sum of q outside the top-k, and JSD from
 * the mixture M = beta p + (1-beta) q directly (no log-domain tricks).
 * Tolerances: the defaults (forward 1e-4; gradient 1e-2 vs. f32 central
 * differences); the top-k log-probs pass through f32 (~1e-7 relative).
 */
#include <math.h>

#include "tests/op_cases.h"

enum { KD_ROWS = 6, KD_V = 11, KD_K = 5 };

static const int32_t kd_labels[KD_ROWS] = {4, RT_IGNORE_INDEX, 2, 10, RT_IGNORE_INDEX, 0};

/* D(p || q) over n buckets for kind 0 forward KL, 1 reverse KL, 2 JSD. */
static double ref_div(int kind, double beta, const double *p, const double *q, int n) {
    if (kind == 2 && beta == 0.0) kind = 0;
    if (kind == 2 && beta == 1.0) kind = 1;
    double d = 0.0;
    for (int b = 0; b < n; b++) {
        if (kind == 0) {
            if (p[b] > 0) d += p[b] * log(p[b] / q[b]);
        } else if (kind == 1) {
            if (q[b] > 0) d += q[b] * log(q[b] / p[b]);
        } else {
            double M = beta * p[b] + (1 - beta) * q[b];
            if (p[b] > 0) d += beta * p[b] * log(p[b] / M);
            if (q[b] > 0) d += (1 - beta) * q[b] * log(q[b] / M);
        }
    }
    return d;
}

static void ref_softmax(const float *x, double T, double *y) {
    double z = 0.0;
    for (int v = 0; v < KD_V; v++) z += exp(x[v] / T);
    for (int v = 0; v < KD_V; v++) y[v] = exp(x[v] / T) / z;
}

/* T^2 * mean over unmasked rows of D; k == 0: full teacher, else its top k. */
static float ref_kd(const float *s, const float *t, int kind, double beta, double T, int k) {
    double sum = 0.0;
    int count = 0;
    for (int i = 0; i < KD_ROWS; i++) {
        if (kd_labels[i] == RT_IGNORE_INDEX) continue;
        double p[KD_V], q[KD_V], pb[KD_V + 1], qb[KD_V + 1];
        ref_softmax(s + i * KD_V, T, q);
        ref_softmax(t + i * KD_V, T, p);
        if (k == 0) {
            sum += ref_div(kind, beta, p, q, KD_V);
        } else {
            bool taken[KD_V] = {false};
            double p_top = 0.0;
            for (int j = 0; j < k; j++) {
                int best = -1;
                for (int v = 0; v < KD_V; v++)
                    if (!taken[v] && (best < 0 || t[i * KD_V + v] > t[i * KD_V + best])) best = v;
                taken[best] = true;
                pb[j] = p[best], qb[j] = q[best];
                p_top += p[best];
            }
            pb[k] = 1.0 - p_top, qb[k] = 0.0;
            for (int v = 0; v < KD_V; v++)
                if (!taken[v]) qb[k] += q[v];
            sum += ref_div(kind, beta, pb, qb, k + 1);
        }
        count++;
    }
    return (float)(T * T * sum / count);
}

static rt_tensor *build_kd(rt_ctx *ctx, rt_tensor **in, rt_kd_kind kind, float beta, float T,
                           int k) {
    rt_tensor *labels = rt_from_i32(ctx, kd_labels, 2, (int64_t[]){2, 3});
    if (!labels) return NULL;
    if (k == 0) return rt_kd_loss(ctx, in[0], in[1], NULL, labels, kind, beta, T, 0.0f);
    rt_tensor *ids, *logp;
    if (rt_kd_topk(ctx, in[1], k, T, &ids, &logp) != RT_OK)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "%s", rt_error_message());
    return rt_kd_loss(ctx, in[0], logp, ids, labels, kind, beta, T, 0.0f);
}

/* One build + ref pair per (name, kind, beta, T, k). */
#define KD_CASE(name, kind, beta, T, k)                                                           \
    static rt_tensor *build_##name(rt_ctx *ctx, rt_tensor **in) {                                 \
        return build_kd(ctx, in, kind, beta, T, k);                                                \
    }                                                                                              \
    static void ref_##name(const float *const *in, float *out) {                                  \
        out[0] = ref_kd(in[0], in[1], (int)(kind), beta, T, k);                                    \
    }

KD_CASE(fwd_full_t1, RT_KD_FORWARD_KL, 0.0f, 1.0f, 0)
KD_CASE(fwd_full_t2, RT_KD_FORWARD_KL, 0.0f, 2.0f, 0)
KD_CASE(fwd_topk_t1, RT_KD_FORWARD_KL, 0.0f, 1.0f, KD_K)
KD_CASE(fwd_topk_t2, RT_KD_FORWARD_KL, 0.0f, 2.0f, KD_K)
KD_CASE(rev_full_t1, RT_KD_REVERSE_KL, 0.0f, 1.0f, 0)
KD_CASE(rev_full_t2, RT_KD_REVERSE_KL, 0.0f, 2.0f, 0)
KD_CASE(rev_topk_t1, RT_KD_REVERSE_KL, 0.0f, 1.0f, KD_K)
KD_CASE(rev_topk_t2, RT_KD_REVERSE_KL, 0.0f, 2.0f, KD_K)
KD_CASE(jsd_full_t1, RT_KD_JSD, 0.3f, 1.0f, 0)
KD_CASE(jsd_full_t2, RT_KD_JSD, 0.3f, 2.0f, 0)
KD_CASE(jsd_topk_t1, RT_KD_JSD, 0.3f, 1.0f, KD_K)
KD_CASE(jsd_topk_t2, RT_KD_JSD, 0.3f, 2.0f, KD_K)
KD_CASE(jsd_topk1_t2, RT_KD_JSD, 0.7f, 2.0f, 1)

#define KD_ROW(desc, name)                                                                         \
    {RT_OP_KD_LOSS, desc, .n_in = 2, .ndim = {3, 3}, .shape = {{2, 3, KD_V}, {2, 3, KD_V}},        \
     .diff = {true, false}, .build = build_##name, .ref = ref_##name, .lo = -3, .hi = 3}

const rt_op_case rt_op_cases_c[] = {
    KD_ROW("kd_loss fwd KL [2,3,11] T=1, 2 of 6 rows masked", fwd_full_t1),
    KD_ROW("kd_loss fwd KL [2,3,11] T=2, masked", fwd_full_t2),
    KD_ROW("kd_loss fwd KL top-5 of 11 + rest, T=1, masked", fwd_topk_t1),
    KD_ROW("kd_loss fwd KL top-5 of 11 + rest, T=2, masked", fwd_topk_t2),
    KD_ROW("kd_loss rev KL [2,3,11] T=1, masked", rev_full_t1),
    KD_ROW("kd_loss rev KL [2,3,11] T=2, masked", rev_full_t2),
    KD_ROW("kd_loss rev KL top-5 of 11 + rest, T=1, masked", rev_topk_t1),
    KD_ROW("kd_loss rev KL top-5 of 11 + rest, T=2, masked", rev_topk_t2),
    KD_ROW("kd_loss JSD b=0.3 [2,3,11] T=1, masked", jsd_full_t1),
    KD_ROW("kd_loss JSD b=0.3 [2,3,11] T=2, masked", jsd_full_t2),
    KD_ROW("kd_loss JSD b=0.3 top-5 of 11 + rest, T=1, masked", jsd_topk_t1),
    KD_ROW("kd_loss JSD b=0.3 top-5 of 11 + rest, T=2, masked", jsd_topk_t2),
    KD_ROW("kd_loss JSD b=0.7 top-1 of 11 + rest, T=2, masked", jsd_topk1_t2),
};
const int rt_n_op_cases_c = (int)(sizeof rt_op_cases_c / sizeof rt_op_cases_c[0]);
