/* retort — CPU knowledge-distillation kernels: forward KL, reverse KL and the
 * generalized Jensen-Shannon divergence between a teacher p and a student q
 * (full V-way, or top-k + one "rest" bucket), their gradients w.r.t. the
 * student logits, and the teacher top-k. Semantics: kernels/kernels.h and
 * rt_kd_loss in autograd/ops.h.
 *
 * The gradient. Both modes compare distributions over buckets b (a token, or
 * in top-k mode the rest bucket: every token outside the teacher's top-k).
 * With z = s/T, q_b = sum_{v in b} q_v and softmax's d q_b / d z_v =
 * q_v (1[v in b] - q_b), any D(p, q) has
 *     dD/dz_v = q_v (g_b(v) - gbar),   g_b = dD/dq_b,   gbar = sum_b q_b g_b,
 * and constants added to every g_b cancel. With h_b = q_b g_b:
 *     forward KL  h_b = -p_b
 *     reverse KL  h_b = q_b log(q_b/p_b)              (the +1 cancels)
 *     JSD_beta    h_b = (1-beta) q_b log(q_b/M_b)     (the p-terms cancel:
 *                 d/dq_b of the whole sum is exactly (1-beta) log(q_b/M_b))
 * A one-token bucket gets dz_v = h_b - q_v gbar (no division, so q_v may
 * underflow); a member of the rest bucket gets dz_v = e_v h_r / R - q_v gbar,
 * with e_v = exp(z_v - max) and R their sum over the rest, so the ratio
 * q_v / q_rest stays <= 1 however small the rest is.
 *
 * Each row works in double; logs come straight from the logits (log q_v =
 * z_v - logsumexp), so no p or q is ever log'ed after underflowing, and a
 * zero-mass term contributes 0 (the 0 log 0 = 0 limit).
 */
#include <math.h>
#include <stdlib.h>

#include "kernels/cpu/cpu.h"

enum { KD_FWD = 0, KD_REV = 1, KD_JSD = 2 };

/* Clamp for the rest masses before their logs (see ops.h). */
static const double rest_eps = 1e-12;

typedef struct {
    int kind;
    double beta, log_beta, log_1mbeta;
} kd_par;

/* JSD at the endpoints is forward / reverse KL (ops.h says why). */
static kd_par kd_params(int kind, float beta) {
    kd_par k = {kind, beta, 0, 0};
    if (kind == KD_JSD && beta <= 0.0f) k.kind = KD_FWD;
    if (kind == KD_JSD && beta >= 1.0f) k.kind = KD_REV;
    if (k.kind == KD_JSD) {
        k.log_beta = log(k.beta);
        k.log_1mbeta = log1p(-k.beta);
    }
    return k;
}

static double logaddexp(double x, double y) {
    double m = x > y ? x : y;
    if (m == -INFINITY) return -INFINITY;
    return m + log1p(exp(-fabs(x - y)));
}

/* One bucket with masses p, q and logs lp, lq: returns its term of D and
 * sets *h = q_b dD/dq_b (module comment). */
static double kd_term(const kd_par *k, double p, double lp, double q, double lq, double *h) {
    switch (k->kind) {
    case KD_FWD:
        *h = -p;
        return p > 0 ? p * (lp - lq) : 0.0;
    case KD_REV:
        *h = q > 0 ? q * (lq - lp) : 0.0;
        return *h;
    default: {
        double lm = logaddexp(k->log_beta + lp, k->log_1mbeta + lq);
        *h = q > 0 ? (1.0 - k->beta) * q * (lq - lm) : 0.0;
        return (p > 0 ? k->beta * p * (lp - lm) : 0.0) + *h;
    }
    }
}

/* max_j a*x[j] (returned in *m) and log sum_j exp(a*x[j] - m). */
static double row_lse(int64_t n, const float *x, double a, double *m_out) {
    double m = -INFINITY;
    for (int64_t j = 0; j < n; j++) m = fmax(m, a * x[j]);
    double s = 0.0;
    for (int64_t j = 0; j < n; j++) s += exp(a * x[j] - m);
    if (m_out) *m_out = m;
    return m + log(s);
}

/* ---- full V-way distributions ---- */

void rt_cpu_kd_loss(int64_t N, int64_t V, const float *s, const float *t, float T, int kind,
                    float beta, const uint8_t *mask, float *loss) {
    const double a = 1.0 / T;
    const kd_par k = kd_params(kind, beta);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) {
        if (mask && !mask[i]) {
            loss[i] = 0.0f;
            continue;
        }
        const float *sr = s + i * V, *tr = t + i * V;
        const double ls = row_lse(V, sr, a, NULL), lt = row_lse(V, tr, a, NULL);
        double sum = 0.0, h;
        for (int64_t v = 0; v < V; v++) {
            double lp = a * tr[v] - lt, lq = a * sr[v] - ls;
            sum += kd_term(&k, exp(lp), lp, exp(lq), lq, &h);
        }
        loss[i] = (float)sum;
    }
}

void rt_cpu_kd_loss_bwd(int64_t N, int64_t V, const float *s, const float *t, float T, int kind,
                        float beta, const uint8_t *mask, float g, float *ds) {
    const double a = 1.0 / T;
    const kd_par k = kd_params(kind, beta);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) {
        if (mask && !mask[i]) continue;
        const float *sr = s + i * V, *tr = t + i * V;
        float *dr = ds + i * V;
        const double ls = row_lse(V, sr, a, NULL), lt = row_lse(V, tr, a, NULL);
        double gbar = 0.0, h;
        for (int64_t v = 0; v < V; v++) {
            double lp = a * tr[v] - lt, lq = a * sr[v] - ls;
            kd_term(&k, exp(lp), lp, exp(lq), lq, &h);
            gbar += h;
        }
        for (int64_t v = 0; v < V; v++) {
            double lp = a * tr[v] - lt, lq = a * sr[v] - ls, q = exp(lq);
            kd_term(&k, exp(lp), lp, q, lq, &h);
            dr[v] += (float)(g * a * (h - q * gbar));
        }
    }
}

/* ---- top-k teacher + rest bucket ---- */

static int cmp_i32(const void *x, const void *y) {
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return (a > b) - (a < b);
}

/* Membership in a row's top-k ids for v = 0, 1, ..., V-1 in turn: a cursor
 * over the sorted ids, or (no scratch memory) a linear search. */
typedef struct {
    const int32_t *ids, *sorted;
    int64_t K, cur;
} id_walk;

static id_walk walk_begin(const int32_t *ids, int64_t K, int32_t *scratch) {
    if (scratch) {
        for (int64_t j = 0; j < K; j++) scratch[j] = ids[j];
        qsort(scratch, (size_t)K, sizeof *scratch, cmp_i32);
    }
    return (id_walk){ids, scratch, K, 0};
}

static bool walk_member(id_walk *w, int64_t v) {
    if (!w->sorted) {
        for (int64_t j = 0; j < w->K; j++)
            if (w->ids[j] == v) return true;
        return false;
    }
    bool member = w->cur < w->K && w->sorted[w->cur] == v;
    while (w->cur < w->K && w->sorted[w->cur] == v) w->cur++;
    return member;
}

/* What a row needs from the student: z = a*s, m = max z, Z = sum exp(z - m),
 * R = the same sum over the complement of the top-k (summed directly, so a
 * tiny rest keeps its relative accuracy), ls = logsumexp z. */
typedef struct {
    double m, Z, R, ls;
} topk_row;

static topk_row topk_scan(int64_t V, const float *sr, id_walk w, double a) {
    topk_row r = {0, 0, 0, 0};
    r.ls = row_lse(V, sr, a, &r.m);
    for (int64_t v = 0; v < V; v++) {
        double e = exp(a * sr[v] - r.m);
        r.Z += e;
        if (!walk_member(&w, v)) r.R += e;
    }
    return r;
}

/* The rest bucket's term and *h (both 0 when k == V: the bucket is empty). */
static double rest_term(const kd_par *k, int64_t V, int64_t K, const float *lpr,
                        const topk_row *r, double *h) {
    *h = 0.0;
    if (K >= V) return 0.0;
    double P = 0.0;
    for (int64_t j = 0; j < K; j++) P += exp((double)lpr[j]);
    const double p_rest = 1.0 - P, q_rest = r->R / r->Z;
    const double lp = log(fmax(p_rest, rest_eps));
    const double lq = r->R > 0 ? fmax(log(r->R) - log(r->Z), log(rest_eps)) : log(rest_eps);
    return kd_term(k, fmax(p_rest, 0.0), lp, q_rest, lq, h);
}

static float topk_loss_row(const kd_par *k, int64_t V, int64_t K, const float *sr,
                           const int32_t *ir, const float *lpr, double a, int32_t *scratch) {
    const topk_row r = topk_scan(V, sr, walk_begin(ir, K, scratch), a);
    double h, sum = rest_term(k, V, K, lpr, &r, &h);
    for (int64_t j = 0; j < K; j++) {
        double lp = lpr[j], lq = a * sr[ir[j]] - r.ls;
        sum += kd_term(k, exp(lp), lp, exp(lq), lq, &h);
    }
    return (float)sum;
}

static void topk_bwd_row(const kd_par *k, int64_t V, int64_t K, const float *sr,
                         const int32_t *ir, const float *lpr, double a, double g,
                         int32_t *scratch, float *dr) {
    id_walk w = walk_begin(ir, K, scratch);
    const topk_row r = topk_scan(V, sr, w, a);
    double h_rest, h;
    rest_term(k, V, K, lpr, &r, &h_rest);
    double gbar = h_rest;
    for (int64_t j = 0; j < K; j++) {
        double lp = lpr[j], lq = a * sr[ir[j]] - r.ls;
        kd_term(k, exp(lp), lp, exp(lq), lq, &h);
        gbar += h;
    }
    if (K < V) { /* rest members: dz_v = e_v (h_rest / R - gbar / Z) */
        const double c = (r.R > 0 ? h_rest / r.R : 0.0) - gbar / r.Z;
        for (int64_t v = 0; v < V; v++)
            if (!walk_member(&w, v)) dr[v] += (float)(g * a * exp(a * sr[v] - r.m) * c);
    }
    for (int64_t j = 0; j < K; j++) {
        double lp = lpr[j], lq = a * sr[ir[j]] - r.ls, q = exp(lq);
        kd_term(k, exp(lp), lp, q, lq, &h);
        dr[ir[j]] += (float)(g * a * (h - q * gbar));
    }
}

/* Each thread sorts its rows' ids in one scratch row of K ints; if that
 * malloc fails the walk falls back to a linear search (slow, same result). */
void rt_cpu_kd_topk_loss(int64_t N, int64_t V, int64_t K, const float *s, const int32_t *ids,
                         const float *logp, float T, int kind, float beta, const uint8_t *mask,
                         float *loss) {
    const double a = 1.0 / T;
    const kd_par k = kd_params(kind, beta);
#pragma omp parallel
    {
        int32_t *scratch = malloc((size_t)K * sizeof *scratch);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < N; i++)
            loss[i] = mask && !mask[i] ? 0.0f
                                       : topk_loss_row(&k, V, K, s + i * V, ids + i * K,
                                                       logp + i * K, a, scratch);
        free(scratch);
    }
}

void rt_cpu_kd_topk_loss_bwd(int64_t N, int64_t V, int64_t K, const float *s, const int32_t *ids,
                             const float *logp, float T, int kind, float beta,
                             const uint8_t *mask, float g, float *ds) {
    const double a = 1.0 / T;
    const kd_par k = kd_params(kind, beta);
#pragma omp parallel
    {
        int32_t *scratch = malloc((size_t)K * sizeof *scratch);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < N; i++)
            if (!mask || mask[i])
                topk_bwd_row(&k, V, K, s + i * V, ids + i * K, logp + i * K, a, g, scratch,
                             ds + i * V);
        free(scratch);
    }
}

/* ---- teacher top-k ---- */

/* NaN sorts below everything, so a broken logit is never "most likely". */
static double key(float x) { return x != x ? -INFINITY : (double)x; }

/* Is (x, u) ranked after (y, w)? Lower value, or equal value and higher id. */
static bool worse(double x, int32_t u, double y, int32_t w) { return x < y || (x == y && u > w); }

/* Restores the min-heap (root = worst kept entry) below position j of
 * (val, id)[0..n). */
static void sift_down(float *val, int32_t *id, int64_t n, int64_t j) {
    for (;;) {
        int64_t l = 2 * j + 1, r = l + 1, w = j;
        if (l < n && worse(key(val[l]), id[l], key(val[w]), id[w])) w = l;
        if (r < n && worse(key(val[r]), id[r], key(val[w]), id[w])) w = r;
        if (w == j) return;
        float tv = val[j];
        int32_t ti = id[j];
        val[j] = val[w], id[j] = id[w];
        val[w] = tv, id[w] = ti;
        j = w;
    }
}

/* A size-K min-heap kept in the output row itself (no scratch): O(V log K),
 * then a heapsort that leaves the row best-first. */
void rt_cpu_kd_topk(int64_t N, int64_t V, int64_t K, const float *t, float T, int32_t *ids,
                    float *logp) {
    const double a = 1.0 / T;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) {
        const float *tr = t + i * V;
        float *val = logp + i * K;
        int32_t *id = ids + i * K;
        for (int64_t v = 0; v < K; v++) val[v] = tr[v], id[v] = (int32_t)v;
        for (int64_t j = K / 2 - 1; j >= 0; j--) sift_down(val, id, K, j);
        for (int64_t v = K; v < V; v++) {
            if (!worse(key(val[0]), id[0], key(tr[v]), (int32_t)v)) continue;
            val[0] = tr[v], id[0] = (int32_t)v;
            sift_down(val, id, K, 0);
        }
        for (int64_t n = K - 1; n > 0; n--) {
            float tv = val[0];
            int32_t ti = id[0];
            val[0] = val[n], id[0] = id[n];
            val[n] = tv, id[n] = ti;
            sift_down(val, id, n, 0);
        }
        const double lse = row_lse(V, tr, a, NULL);
        for (int64_t j = 0; j < K; j++) val[j] = (float)(a * tr[id[j]] - lse);
    }
}
