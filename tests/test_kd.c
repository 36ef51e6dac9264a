/* retort — identities and properties of the distillation losses (rt_kd_loss)
 * and the teacher top-k (rt_kd_topk); the values against a naive reference
 * and the gradients against finite differences are rows of tests/test_ops.c
 * (tests/op_cases_c.c). What is checked, with tolerances:
 *   - JSD with beta = 0 / 1 is forward / reverse KL: loss and gradient bitwise;
 *   - KL_fwd(s as student, t as teacher) = KL_rev(t as student, s as teacher),
 *     JSD_beta(s, t) = JSD_(1-beta)(t, s) (the mixture is the same), 1e-6;
 *   - D(p, p) = 0 for every kind, loss and gradient within 1e-7;
 *   - 0 <= JSD_beta / T^2 <= H(beta) = -b ln b - (1-b) ln(1-b) on random rows,
 *     and ~ H(beta) (1e-4) for nearly disjoint p, q; at T = 2 with logits
 *     doubled (same p, q) the loss is 4x;
 *   - temperature: loss(s, t, T) = T^2 loss(s/T, t/T, 1) and
 *     d loss(s, t, T)/ds = T d loss(s', t', 1)/ds' at s' = s/T (1e-5);
 *   - masking: masked rows' values do not matter (bitwise), their gradient is
 *     0, the masked mean equals the loss over the kept rows alone (1e-6),
 *     denom rescales, all rows masked gives 0;
 *   - top-k with k = V equals the full loss (1e-6) and gradient (1e-5);
 *   - a tiny student rest mass (~3e-10) matches an analytic double value;
 *   - each row's gradient sums to 0 (softmax shift invariance), 1e-6;
 *   - rt_kd_topk against qsort (ties by lower id) and a double log-softmax;
 *   - error paths name the problem.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ops.h"
#include "tests/compare.h"
#include "tests/testutil.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float uniform(float lo, float hi) {
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return lo + (hi - lo) * (float)((double)((rng * 0x2545F4914F6CDD1Dull) >> 40) / 16777216.0);
}
static void fill(float *x, int n, float lo, float hi) {
    for (int i = 0; i < n; i++) x[i] = uniform(lo, hi);
}

/* One loss evaluation on host arrays: student s [N,V]; teacher t = logits
 * [N,V] (ids NULL) or log-probs [N,K] with ids [N,K]. grad (N*V, or NULL)
 * receives d loss / ds. Returns NAN on error (message set). */
static float kd(const float *s, const float *t, const int32_t *ids, int N, int V, int K,
                const int32_t *labels, rt_kd_kind kind, float beta, float T, float denom,
                float *grad) {
    rt_ctx *ctx = rt_ctx_new(RT_CPU, 1 << 20);
    int64_t ss[2] = {N, V}, ts[2] = {N, ids ? K : V}, ls[1] = {N};
    rt_tensor *st = rt_from_f32(ctx, s, 2, ss), *tt = rt_from_f32(ctx, t, 2, ts);
    rt_tensor *it = ids ? rt_from_i32(ctx, ids, 2, ts) : NULL;
    rt_tensor *lt = labels ? rt_from_i32(ctx, labels, 1, ls) : NULL;
    st->requires_grad = grad != NULL;
    rt_tensor *loss = rt_kd_loss(ctx, st, tt, it, lt, kind, beta, T, denom);
    float v = NAN;
    if (loss) {
        rt_to_host(ctx, loss, &v);
        if (grad) {
            memset(grad, 0, (size_t)N * V * sizeof *grad);
            if (rt_backward(ctx, loss) != RT_OK) v = NAN;
            else if (st->grad) rt_to_host(ctx, st->grad, grad);
        }
    }
    rt_ctx_free(ctx);
    return v;
}

/* rt_kd_topk on host arrays; false on error. */
static bool topk(const float *t, int N, int V, int K, float T, int32_t *ids, float *logp) {
    rt_ctx *ctx = rt_ctx_new(RT_CPU, 1 << 20);
    rt_tensor *tt = rt_from_f32(ctx, t, 2, (int64_t[]){N, V}), *it, *lp;
    bool ok = rt_kd_topk(ctx, tt, K, T, &it, &lp) == RT_OK;
    if (ok) {
        ctx->k->download(ids, it->data, (size_t)N * K * sizeof *ids);
        rt_to_host(ctx, lp, logp);
    }
    rt_ctx_free(ctx);
    return ok;
}

static double max_rel(const float *a, const float *b, int n) {
    double m = 0, scale = 1e-30;
    for (int i = 0; i < n; i++) scale = fmax(scale, fabs((double)b[i]));
    for (int i = 0; i < n; i++) m = rt_worse(m, rt_abs_err(a[i], b[i]));
    return m / scale;
}
static double rel(double a, double b) { return fabs(a - b) / fmax(1e-30, fabs(b)); }

enum { N = 6, V = 11, K = 5 };
static const rt_kd_kind kinds[3] = {RT_KD_FORWARD_KL, RT_KD_REVERSE_KL, RT_KD_JSD};
static const char *const kind_names[3] = {"fwd", "rev", "jsd"};

static void check_endpoints(const float *s, const float *t, const int32_t *ids, const float *lp) {
    float g0[N * V], g1[N * V];
    for (int topk_mode = 0; topk_mode < 2; topk_mode++) {
        const float *tt = topk_mode ? lp : t;
        const int32_t *ii = topk_mode ? ids : NULL;
        for (int e = 0; e < 2; e++) {
            rt_kd_kind ref = e ? RT_KD_REVERSE_KL : RT_KD_FORWARD_KL;
            float a = kd(s, tt, ii, N, V, K, NULL, RT_KD_JSD, (float)e, 2.0f, 0, g0);
            float b = kd(s, tt, ii, N, V, K, NULL, ref, 0.5f, 2.0f, 0, g1);
            CHECK(a == b && memcmp(g0, g1, sizeof g0) == 0,
                  "%s: JSD beta=%d (%.9g) must equal %s KL (%.9g) bitwise, gradient too",
                  topk_mode ? "top-k" : "full", e, a, e ? "reverse" : "forward", b);
        }
    }
    /* Swapping the roles: KL(p||q) read as the reverse KL of the other pair. */
    float f = kd(s, t, NULL, N, V, 0, NULL, RT_KD_FORWARD_KL, 0, 1.5f, 0, NULL);
    float r = kd(t, s, NULL, N, V, 0, NULL, RT_KD_REVERSE_KL, 0, 1.5f, 0, NULL);
    CHECK(rel(f, r) <= 1e-6, "KL_fwd(s, t) %.9g != KL_rev(t, s) %.9g", f, r);
    float j1 = kd(s, t, NULL, N, V, 0, NULL, RT_KD_JSD, 0.3f, 1.5f, 0, NULL);
    float j2 = kd(t, s, NULL, N, V, 0, NULL, RT_KD_JSD, 0.7f, 1.5f, 0, NULL);
    CHECK(rel(j1, j2) <= 1e-6, "JSD_0.3(s, t) %.9g != JSD_0.7(t, s) %.9g", j1, j2);
    printf("endpoints: JSD b=0/1 == fwd/rev KL bitwise; fwd(s,t)=%.6f rev(t,s)=%.6f; "
           "JSD_.3(s,t)=%.6f JSD_.7(t,s)=%.6f\n", f, r, j1, j2);
}

static void check_self_and_bounds(const float *s, const float *t) {
    float g[N * V];
    double worst = 0;
    for (int k = 0; k < 3; k++) {
        float l = kd(s, s, NULL, N, V, 0, NULL, kinds[k], 0.4f, 2.0f, 0, g);
        double gm = 0;
        for (int i = 0; i < N * V; i++) gm = rt_worse(gm, fabs(g[i]));
        CHECK(fabs(l) <= 1e-7 && gm <= 1e-7, "%s(p, p): loss %.3g, max |grad| %.3g (want 0)",
              kind_names[k], l, gm);
        worst = rt_worse(worst, rt_worse(fabs(l), gm));
    }
    const float betas[3] = {0.3f, 0.5f, 0.8f};
    for (int b = 0; b < 3; b++) {
        double be = betas[b], H = -be * log(be) - (1 - be) * log(1 - be);
        for (int T = 1; T <= 2; T++) {
            float l = kd(s, t, NULL, N, V, 0, NULL, RT_KD_JSD, betas[b], (float)T, 0, NULL);
            CHECK(l >= 0 && l / (T * T) <= H, "JSD_%.1f at T=%d: loss/T^2 = %.6g outside [0, %.6g]",
                  be, T, l / (T * T), H);
        }
        /* p peaks on token 0, q on token 1 (mass ~1e-17 elsewhere): JSD -> H(beta). */
        float ps[V] = {0}, pt[V] = {0}, ps2[V], pt2[V];
        ps[1] = 40, pt[0] = 40;
        for (int v = 0; v < V; v++) ps2[v] = 2 * ps[v], pt2[v] = 2 * pt[v];
        float l1 = kd(ps, pt, NULL, 1, V, 0, NULL, RT_KD_JSD, betas[b], 1.0f, 0, NULL);
        float l2 = kd(ps2, pt2, NULL, 1, V, 0, NULL, RT_KD_JSD, betas[b], 2.0f, 0, NULL);
        CHECK(fabs(l1 - H) <= 1e-4 && rel(l2, 4.0 * l1) <= 1e-6,
              "disjoint JSD_%.1f: %.7g (want H = %.7g), at T=2 with doubled logits %.7g (want 4x)",
              be, l1, H, l2);
    }
    printf("self: max |D(p,p)|, |grad| = %.2e; JSD within [0, H(beta)] and -> H(beta) when "
           "disjoint\n", worst);
}

static void check_temperature(const float *s, const float *t) {
    const float Ts[2] = {2.0f, 3.0f};
    float sT[N * V], tT[N * V], g[N * V], gT[N * V];
    int32_t ids[N * K], idsT[N * K];
    float lp[N * K], lpT[N * K];
    double worst = 0;
    for (int c = 0; c < 2; c++) {
        const float T = Ts[c];
        for (int i = 0; i < N * V; i++) sT[i] = s[i] / T, tT[i] = t[i] / T;
        bool ok = topk(t, N, V, K, T, ids, lp) && topk(tT, N, V, K, 1.0f, idsT, lpT);
        CHECK(ok && memcmp(ids, idsT, sizeof ids) == 0 && max_rel(lp, lpT, N * K) <= 1e-6,
              "top-k of t at T=%g and of t/T at 1 differ", T);
        for (int k = 0; k < 3; k++)
            for (int m = 0; m < 2; m++) {
                float a = kd(s, m ? lp : t, m ? ids : NULL, N, V, K, NULL, kinds[k], 0.3f, T, 0, g);
                float b = kd(sT, m ? lpT : tT, m ? idsT : NULL, N, V, K, NULL, kinds[k], 0.3f, 1.0f,
                             0, gT);
                for (int i = 0; i < N * V; i++) gT[i] *= T;
                double e = rt_worse(rel(a, (double)T * T * b), max_rel(g, gT, N * V));
                CHECK(e <= 1e-5, "%s %s T=%g: loss %.9g vs T^2 * loss(s/T, t/T, 1) = %.9g, "
                      "or gradient off (rel %.3g)", kind_names[k], m ? "top-k" : "full", T, a,
                      T * T * b, e);
                worst = rt_worse(worst, e);
            }
    }
    printf("temperature: loss(s,t,T) = T^2 loss(s/T,t/T,1), grad = T grad(s/T): max rel %.2e\n",
           worst);
}

static void check_masking(const float *s, const float *t, const int32_t *ids, const float *lp) {
    const int32_t labels[N] = {3, RT_IGNORE_INDEX, 0, RT_IGNORE_INDEX, 7, 10};
    const int keep[4] = {0, 2, 4, 5};
    const int32_t none[N] = {RT_IGNORE_INDEX, RT_IGNORE_INDEX, RT_IGNORE_INDEX,
                             RT_IGNORE_INDEX, RT_IGNORE_INDEX, RT_IGNORE_INDEX};
    float s2[N * V], g[N * V], g2[N * V], sk[4 * V], tk[4 * V], lk[4 * K], gk[4 * V];
    int32_t ik[4 * K];
    memcpy(s2, s, sizeof s2);
    for (int v = 0; v < V; v++) s2[1 * V + v] = uniform(-50, 50), s2[3 * V + v] = uniform(-50, 50);
    for (int r = 0; r < 4; r++) {
        memcpy(sk + r * V, s + keep[r] * V, V * sizeof *s);
        memcpy(tk + r * V, t + keep[r] * V, V * sizeof *t);
        memcpy(ik + r * K, ids + keep[r] * K, K * sizeof *ids);
        memcpy(lk + r * K, lp + keep[r] * K, K * sizeof *lp);
    }
    for (int k = 0; k < 3; k++)
        for (int m = 0; m < 2; m++) {
            const float *tt = m ? lp : t, *ttk = m ? lk : tk;
            const int32_t *ii = m ? ids : NULL, *iik = m ? ik : NULL;
            const char *mode = m ? "top-k" : "full";
            float a = kd(s, tt, ii, N, V, K, labels, kinds[k], 0.3f, 2.0f, 0, g);
            float b = kd(s2, tt, ii, N, V, K, labels, kinds[k], 0.3f, 2.0f, 0, g2);
            float c = kd(sk, ttk, iik, 4, V, K, NULL, kinds[k], 0.3f, 2.0f, 0, gk);
            float d = kd(s, tt, ii, N, V, K, labels, kinds[k], 0.3f, 2.0f, 8.0f, NULL);
            float z = kd(s, tt, ii, N, V, K, none, kinds[k], 0.3f, 2.0f, 0, g2);
            bool zero_masked = true, zero_all = z == 0.0f;
            for (int v = 0; v < V; v++) zero_masked &= g[1 * V + v] == 0 && g[3 * V + v] == 0;
            for (int i = 0; i < N * V; i++) zero_all &= g2[i] == 0;
            double e = 0;
            for (int r = 0; r < 4; r++) e = rt_worse(e, max_rel(g + keep[r] * V, gk + r * V, V));
            CHECK(a == b, "%s %s: masked rows changed the loss (%.9g vs %.9g)", kind_names[k],
                  mode, a, b);
            CHECK(zero_masked, "%s %s: masked rows got a gradient", kind_names[k], mode);
            CHECK(rel(a, c) <= 1e-6 && e <= 1e-6,
                  "%s %s: masked mean %.9g vs the kept rows alone %.9g (grad rel %.3g)",
                  kind_names[k], mode, a, c, e);
            CHECK(rel(8.0 * d, 4.0 * a) <= 1e-6, "%s %s: denom 8 gives %.9g, want %.9g",
                  kind_names[k], mode, d, a / 2);
            CHECK(zero_all, "%s %s: all rows masked must give loss 0 and no gradient (%.3g)",
                  kind_names[k], mode, z);
        }
    printf("masking: masked rows ignored (values and gradient), mean over kept rows, denom\n");
}

static void check_topk_equals_full(const float *s, const float *t) {
    int32_t ids[N * V];
    float lp[N * V], g[N * V], gf[N * V];
    double worst = 0;
    for (int T = 1; T <= 2; T++) {
        CHECK(topk(t, N, V, V, (float)T, ids, lp), "topk k=V: %s", rt_error_message());
        for (int k = 0; k < 3; k++) {
            float a = kd(s, lp, ids, N, V, V, NULL, kinds[k], 0.3f, (float)T, 0, g);
            float b = kd(s, t, NULL, N, V, 0, NULL, kinds[k], 0.3f, (float)T, 0, gf);
            double eg = max_rel(g, gf, N * V);
            CHECK(rel(a, b) <= 1e-6 && eg <= 1e-5, "%s T=%d: top-k with k=V %.9g vs full %.9g, "
                  "gradient rel %.3g", kind_names[k], T, a, b, eg);
            worst = rt_worse(worst, rt_worse(rel(a, b), eg));
        }
    }
    printf("top-k with k = V vs full: max rel %.2e\n", worst);
}

/* Teacher: top-5 logits 2, rest 0; student: top-5 logits 22, rest 0, so
 * q_rest = 6 / (5 e^22 + 6) ~ 3.3e-10: 1 - sum_k q would lose it in f32. */
static void check_tiny_rest(void) {
    float s[V] = {0}, lp[K], g[V];
    int32_t ids[K] = {9, 1, 4, 0, 7};
    for (int j = 0; j < K; j++) s[ids[j]] = 22;
    const double zt = K * exp(2.0) + (V - K), zs = K * exp(22.0) + (V - K);
    const double p = exp(2.0) / zt, q = exp(22.0) / zs, pr = (V - K) / zt, qr = (V - K) / zs;
    for (int j = 0; j < K; j++) lp[j] = (float)log(p);
    const double want = K * p * log(p / q) + pr * log(pr / qr);
    float got = kd(s, lp, ids, 1, V, K, NULL, RT_KD_FORWARD_KL, 0, 1.0f, 0, g);
    /* dD/ds_v on the tail: q_v (-p_rest/q_rest + 1) = q_v - p_rest / (V-K). */
    const double g_tail = 1.0 / zs - pr / (V - K);
    CHECK(rel(got, want) <= 1e-6 && rel(g[2], g_tail) <= 1e-5,
          "tiny rest: loss %.9g (want %.9g), tail gradient %.9g (want %.9g)", got, want, g[2],
          g_tail);
    printf("tiny rest mass q_rest = %.3g: loss %.7f (analytic %.7f)\n", qr, got, want);
}

static void check_grad_sums(const float *s, const float *t, const int32_t *ids, const float *lp) {
    float g[N * V];
    double worst = 0;
    for (int k = 0; k < 3; k++)
        for (int m = 0; m < 2; m++) {
            kd(s, m ? lp : t, m ? ids : NULL, N, V, K, NULL, kinds[k], 0.3f, 2.0f, 0, g);
            for (int i = 0; i < N; i++) {
                double sum = 0, mag = 0;
                for (int v = 0; v < V; v++) sum += g[i * V + v], mag += fabs(g[i * V + v]);
                worst = rt_worse(worst, fabs(sum) / fmax(mag, 1e-30));
            }
        }
    CHECK(worst <= 1e-6, "row gradients must sum to 0 (shift invariance): worst %.3g", worst);
    printf("gradient row sums / row |grad| sums: worst %.2e\n", worst);
}

typedef struct { float v; int32_t id; } pair;
static int by_value_then_id(const void *x, const void *y) {
    const pair *a = x, *b = y;
    if (a->v != b->v) return a->v > b->v ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

static void check_topk_vs_sort(void) {
    enum { R = 7, W = 37 };
    float t[R * W], lp[R * W];
    int32_t ids[R * W];
    for (int i = 0; i < R * W; i++) t[i] = roundf(uniform(-2, 2) * 4) / 4; /* many ties */
    const int ks[3] = {1, 5, W};
    int ties = 0, bad_ids = 0;
    double worst = 0;
    for (int c = 0; c < 3; c++) {
        const float T = c == 1 ? 1.7f : 1.0f;
        CHECK(topk(t, R, W, ks[c], T, ids, lp), "kd_topk k=%d: %s", ks[c], rt_error_message());
        for (int r = 0; r < R; r++) {
            pair p[W];
            double m = -INFINITY, z = 0;
            for (int v = 0; v < W; v++) {
                p[v] = (pair){t[r * W + v], v};
                m = rt_worse(m, t[r * W + v] / (double)T);
            }
            for (int v = 0; v < W; v++) z += exp(t[r * W + v] / (double)T - m);
            qsort(p, W, sizeof *p, by_value_then_id);
            for (int j = 0; j < ks[c]; j++) {
                bad_ids += ids[r * ks[c] + j] != p[j].id;
                ties += j > 0 && p[j].v == p[j - 1].v;
                double want = p[j].v / (double)T - m - log(z);
                worst = rt_worse(worst, fabs(lp[r * ks[c] + j] - want));
            }
        }
    }
    CHECK(bad_ids == 0 && worst <= 1e-6,
          "kd_topk vs qsort: %d ids differ, log-prob error %.3g", bad_ids, worst);
    CHECK(ties > 10, "the top-k test should exercise ties (%d)", ties);
    printf("kd_topk vs qsort (k = 1, 5, %d; %d ties): ids identical, log-prob error %.2e\n", W,
           ties, worst);
}

/* v must be NAN (the op failed) with a message containing want. */
static int expect_error(const char *what, float v, const char *want) {
    const char *msg = rt_error_message();
    CHECK(isnan(v) && strstr(msg, want), "%s: want an error mentioning '%s', got %g / '%s'",
          what, want, v, msg);
    return 1;
}

static void check_errors(const float *s, const float *t, const int32_t *ids, const float *lp) {
    int32_t bad[N * K];
    const int32_t bad_labels[N] = {0, 1, 11, 2, 3, 4};
    int n = 0;
    n += expect_error("T = 0", kd(s, t, NULL, N, V, 0, NULL, RT_KD_FORWARD_KL, 0, 0, 0, NULL),
                      "temperature must be > 0");
    n += expect_error("beta 1.5", kd(s, t, NULL, N, V, 0, NULL, RT_KD_JSD, 1.5f, 1, 0, NULL),
                      "beta must lie in [0, 1]");
    memcpy(bad, ids, sizeof bad);
    bad[7] = V;
    n += expect_error("id = V", kd(s, lp, bad, N, V, K, NULL, RT_KD_REVERSE_KL, 0, 1, 0, NULL),
                      "teacher id 11 at row 1 is outside");
    memcpy(bad, ids, sizeof bad);
    bad[K + 3] = bad[K + 1];
    n += expect_error("repeated id", kd(s, lp, bad, N, V, K, NULL, RT_KD_JSD, 0.5f, 1, 0, NULL),
                      "appears twice");
    n += expect_error("label 11",
                      kd(s, t, NULL, N, V, 0, bad_labels, RT_KD_FORWARD_KL, 0, 1, 0, NULL),
                      "label 11 at row 2");

    rt_ctx *ctx = rt_ctx_new(RT_CPU, 1 << 20);
    rt_tensor *st = rt_from_f32(ctx, s, 2, (int64_t[]){N, V});
    rt_tensor *tt = rt_from_f32(ctx, t, 2, (int64_t[]){V, N});
    CHECK(!rt_kd_loss(ctx, st, tt, NULL, NULL, RT_KD_FORWARD_KL, 0, 1, 0) &&
              ctx->status == RT_EINTERNAL && strstr(rt_error_message(), "differ in shape"),
          "teacher [11,6] vs student [6,11]: '%s'", rt_error_message());
    rt_ctx_free(ctx);

    int32_t oi[N * V];
    float ol[N * V];
    CHECK(!topk(t, N, V, 0, 1.0f, oi, ol) && strstr(rt_error_message(), "k = 0"),
          "kd_topk k=0: '%s'", rt_error_message());
    CHECK(!topk(t, N, V, V + 1, 1.0f, oi, ol) && strstr(rt_error_message(), "k = 12"),
          "kd_topk k=V+1: '%s'", rt_error_message());
    printf("errors: %d bad inputs rejected with a message naming the problem\n", n + 3);
}

int main(void) {
    float s[N * V], t[N * V], lp[N * K];
    int32_t ids[N * K];
    fill(s, N * V, -3, 3);
    fill(t, N * V, -3, 3);
    CHECK(topk(t, N, V, K, 2.0f, ids, lp), "kd_topk: %s", rt_error_message());
    check_endpoints(s, t, ids, lp);
    check_self_and_bounds(s, t);
    check_temperature(s, t);
    check_masking(s, t, ids, lp);
    check_topk_equals_full(s, t);
    check_tiny_rest();
    check_grad_sums(s, t, ids, lp);
    check_topk_vs_sort();
    check_errors(s, t, ids, lp);
    return rt_test_summary();
}
