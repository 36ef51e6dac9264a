/* Tests for optim/: AdamW, SGD, gradient clipping, LR schedules.
 *
 * References are written here independently, in double, from the textbook
 * formulas (Adam with bias-corrected m_hat/v_hat; SGD as in torch's docs),
 * plus literal values worked out by hand in the comments. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/schedule.h"
#include "optim/sgd.h"
#include "tests/testutil.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng_state >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

static int close_to(double got, double want, double rtol, double atol) {
    return fabs(got - want) <= atol + rtol * fabs(want);
}

/* Largest |a-b| / (atol + rtol|b|); <= 1 means every element is close. */
static double worst(const float *a, const double *b, int64_t n, double rtol, double atol) {
    double w = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]) / (atol + rtol * fabs(b[i]));
        if (isnan(e)) return INFINITY;
        if (e > w) w = e;
    }
    return w;
}

/* ---- AdamW ------------------------------------------------------------- */

/* Textbook AdamW (Loshchilov & Hutter, Alg. 2) in double:
 * p *= 1 - lr*wd; m_hat = m/(1-b1^t); v_hat = v/(1-b2^t);
 * p -= lr * m_hat / (sqrt(v_hat) + eps). */
static void ref_adamw(double *p, const float *g, double *m, double *v, int64_t n, double lr,
                      const rt_adamw_config *c, int t) {
    for (int64_t i = 0; i < n; i++) {
        p[i] *= 1.0 - lr * c->weight_decay;
        m[i] = c->beta1 * m[i] + (1.0 - c->beta1) * g[i];
        v[i] = c->beta2 * v[i] + (1.0 - c->beta2) * (double)g[i] * g[i];
        double mh = m[i] / (1.0 - pow(c->beta1, t));
        double vh = v[i] / (1.0 - pow(c->beta2, t));
        p[i] -= lr * mh / (sqrt(vh) + c->eps);
    }
}

static void test_adamw_vs_reference(int64_t n) {
    rt_adamw_config c = {0.9, 0.95, 1e-6, 0.1};
    float *p = malloc(n * sizeof *p), *g = malloc(n * sizeof *g);
    float *m = calloc(n, sizeof *m), *v = calloc(n, sizeof *v);
    double *rp = malloc(n * sizeof *rp), *rm = calloc(n, sizeof *rm), *rv = calloc(n, sizeof *rv);
    for (int64_t i = 0; i < n; i++) rp[i] = p[i] = frand();
    int ok = 1;
    for (int t = 1; t <= 12; t++) {
        for (int64_t i = 0; i < n; i++) g[i] = frand() * (i % 3 == 0 ? 1e-3f : 1.0f);
        float lr = rt_lr_at(RT_LR_COSINE, 1e-2f, t - 1, 3, 12) + 1e-4f;
        ok &= rt_adamw_update(p, g, m, v, n, lr, &c, t) == RT_OK;
        ref_adamw(rp, g, rm, rv, n, lr, &c, t);
    }
    CHECK(ok, "adamw_update failed: %s", rt_error_message());
    double w = worst(p, rp, n, 1e-5, 1e-6);
    CHECK(w <= 1.0, "adamw n=%lld: params off reference by %g tolerances", (long long)n, w);
    double wm = worst(m, rm, n, 1e-5, 1e-7);
    CHECK(wm <= 1.0, "adamw n=%lld: m off reference by %g tolerances", (long long)n, wm);
    double wv = worst(v, rv, n, 1e-5, 1e-9);
    CHECK(wv <= 1.0, "adamw n=%lld: v off reference by %g tolerances", (long long)n, wv);
    free(p), free(g), free(m), free(v), free(rp), free(rm), free(rv);
}

static void test_adamw_literals(void) {
    /* First step, no decay: m_hat = g, v_hat = g^2, so p moves by
     * lr * g/(|g| + eps) = lr*sign(g) up to eps/|g|. */
    rt_adamw_config c = {0.9, 0.999, 1e-12, 0.0};
    float p[4] = {1.0f, 1.0f, -2.0f, 0.5f}, g[4] = {0.5f, -3.0f, 1e-3f, -1e-2f};
    float m[4] = {0}, v[4] = {0};
    CHECK(rt_adamw_update(p, g, m, v, 4, 1e-3f, &c, 1) == RT_OK, "%s", rt_error_message());
    const float want[4] = {0.999f, 1.001f, -2.001f, 0.501f};
    for (int i = 0; i < 4; i++)
        CHECK(close_to(p[i], want[i], 1e-6, 0), "adamw step1 p[%d] = %.9g, want %.9g", i, p[i],
              want[i]);

    /* Two steps, g = +1 then -1, lr 0.1, p0 = 0, b = (0.9, 0.999):
     * t=1: p = -0.1.  t=2: m = 0.9*0.1 - 0.1 = -0.01, v = 0.999*0.001 + 0.001
     * = 0.001999 = bc2, so v_hat = 1; m_hat = -0.01/0.19 = -1/19;
     * p = -0.1 + 0.1/19 = -0.0947368421. */
    float q = 0, mq = 0, vq = 0, gq = 1.0f;
    c.eps = 0.0;
    rt_adamw_update(&q, &gq, &mq, &vq, 1, 0.1f, &c, 1);
    CHECK(close_to(q, -0.1, 1e-6, 0), "adamw t=1 p = %.9g, want -0.1", q);
    gq = -1.0f;
    rt_adamw_update(&q, &gq, &mq, &vq, 1, 0.1f, &c, 2);
    CHECK(close_to(q, -0.0947368421, 1e-6, 0), "adamw t=2 p = %.9g, want -0.0947368421", q);
    CHECK(close_to(mq, -0.01, 1e-5, 0) && close_to(vq, 0.001999, 1e-5, 0),
          "adamw t=2 m = %.9g (want -0.01), v = %.9g (want 0.001999)", mq, vq);

    /* Decoupled decay first: p = 2*(1 - 0.1*0.5) = 1.9, then - lr*sign(g) = 1.8.
     * With zero gradient the decay is all that happens: 2 -> 1.9. */
    c.weight_decay = 0.5;
    float r[2] = {2.0f, 2.0f}, gr[2] = {1.0f, 0.0f}, mr[2] = {0}, vr[2] = {0};
    c.eps = 1e-8;
    rt_adamw_update(r, gr, mr, vr, 2, 0.1f, &c, 1);
    CHECK(close_to(r[0], 1.8, 1e-6, 0), "adamw decay p = %.9g, want 1.8", r[0]);
    CHECK(close_to(r[1], 1.9, 1e-6, 0), "adamw decay, g=0: p = %.9g, want 1.9", r[1]);
}

/* ZeRO-1 calls the update on shards: the result must equal the whole call
 * bit for bit, with and without the OpenMP path. */
static void test_adamw_shards(void) {
    const int64_t n = 70001, cut = 33333;
    rt_adamw_config c = rt_adamw_default();
    float *a = malloc(4 * n * sizeof *a), *b = malloc(4 * n * sizeof *b);
    float *g = malloc(n * sizeof *g);
    for (int64_t i = 0; i < n; i++) a[i] = frand();
    for (int64_t i = n; i < 4 * n; i++) a[i] = 0.0f;
    memcpy(b, a, 4 * n * sizeof *a);
    for (int t = 1; t <= 3; t++) {
        for (int64_t i = 0; i < n; i++) g[i] = frand();
        rt_adamw_update(a, g, a + n, a + 2 * n, n, 1e-3f, &c, t);
        rt_adamw_update(b, g, b + n, b + 2 * n, cut, 1e-3f, &c, t);
        rt_adamw_update(b + cut, g + cut, b + n + cut, b + 2 * n + cut, n - cut, 1e-3f, &c, t);
    }
    CHECK(memcmp(a, b, 3 * n * sizeof *a) == 0, "adamw sharded update differs from whole");
    free(a), free(b), free(g);
}

static void test_adamw_errors(void) {
    float p = 0, g = 0, m = 0, v = 0;
    rt_adamw_config c = rt_adamw_default();
    rt_error_clear();
    CHECK(rt_adamw_update(&p, &g, &m, &v, 1, 1e-3f, &c, 0) == RT_EINPUT &&
              strstr(rt_error_message(), "step"),
          "t=0 not rejected: '%s'", rt_error_message());
    c.beta1 = 1.0;
    CHECK(rt_adamw_check(&c) == RT_EINPUT && strstr(rt_error_message(), "beta1"),
          "beta1=1 not rejected: '%s'", rt_error_message());
    c = rt_adamw_default();
    c.eps = NAN;
    CHECK(rt_adamw_check(&c) == RT_EINPUT && strstr(rt_error_message(), "eps"),
          "eps=NaN not rejected: '%s'", rt_error_message());
    c = rt_adamw_default();
    CHECK(rt_adamw_update(&p, &g, &m, &v, 1, -1.0f, &c, 1) == RT_EINPUT,
          "negative lr not rejected");
    CHECK(rt_adamw_update(NULL, NULL, NULL, NULL, 0, 1e-3f, &c, 1) == RT_OK,
          "n=0 with NULL buffers should be a no-op");
    CHECK(rt_adamw_update(NULL, &g, &m, &v, 1, 1e-3f, &c, 1) == RT_EINTERNAL,
          "NULL param not rejected");
}

/* ---- SGD --------------------------------------------------------------- */

/* torch.optim.SGD's documented algorithm, in double. */
static void ref_sgd(double *p, const float *g, double *buf, int64_t n, double lr,
                    const rt_sgd_config *c, int t) {
    for (int64_t i = 0; i < n; i++) {
        double d = g[i] + c->weight_decay * p[i];
        if (c->momentum != 0) {
            buf[i] = t == 1 ? d : c->momentum * buf[i] + (1.0 - c->dampening) * d;
            d = c->nesterov ? d + c->momentum * buf[i] : buf[i];
        }
        p[i] -= lr * d;
    }
}

static void test_sgd_vs_reference(const char *name, rt_sgd_config c, int64_t n) {
    float *p = malloc(n * sizeof *p), *g = malloc(n * sizeof *g), *b = malloc(n * sizeof *b);
    double *rp = malloc(n * sizeof *rp), *rb = malloc(n * sizeof *rb);
    for (int64_t i = 0; i < n; i++) {
        rp[i] = p[i] = frand();
        b[i] = 123.0f; /* garbage: must be ignored at t == 1 */
    }
    int ok = 1;
    for (int t = 1; t <= 10; t++) {
        for (int64_t i = 0; i < n; i++) g[i] = frand();
        float lr = 0.05f / (float)t;
        ok &= rt_sgd_update(p, g, c.momentum != 0.0 ? b : NULL, n, lr, &c, t) == RT_OK;
        ref_sgd(rp, g, rb, n, lr, &c, t);
    }
    CHECK(ok, "sgd %s: update failed: %s", name, rt_error_message());
    double w = worst(p, rp, n, 1e-5, 1e-6);
    CHECK(w <= 1.0, "sgd %s n=%lld: params off reference by %g tolerances", name, (long long)n,
          w);
    free(p), free(g), free(b), free(rp), free(rb);
}

static void test_sgd_literals(void) {
    /* momentum 0.9, g = 1, lr 0.1, p0 = 0:
     * buf 1, 1.9, 2.71 -> p -0.1, -0.29, -0.561. */
    rt_sgd_config c = {0.9, 0.0, 0.0, 0};
    float p = 0, g = 1, b = 0;
    const float want[3] = {-0.1f, -0.29f, -0.561f};
    for (int t = 1; t <= 3; t++) {
        rt_sgd_update(&p, &g, &b, 1, 0.1f, &c, t);
        CHECK(close_to(p, want[t - 1], 1e-6, 0), "sgd momentum t=%d p = %.9g, want %.9g", t, p,
              want[t - 1]);
    }
    /* nesterov: t=1 buf 1, d = 1 + 0.9 = 1.9, p = -0.19;
     * t=2 buf 1.9, d = 1 + 1.71 = 2.71, p = -0.461. */
    c.nesterov = 1;
    p = 0, b = 0;
    rt_sgd_update(&p, &g, &b, 1, 0.1f, &c, 1);
    CHECK(close_to(p, -0.19, 1e-6, 0), "sgd nesterov t=1 p = %.9g, want -0.19", p);
    rt_sgd_update(&p, &g, &b, 1, 0.1f, &c, 2);
    CHECK(close_to(p, -0.461, 1e-6, 0), "sgd nesterov t=2 p = %.9g, want -0.461", p);
    /* dampening 0.5 is skipped at t=1 (buf = g = 1, p = -0.1), applied at t=2:
     * buf = 0.9 + 0.5 = 1.4, p = -0.24. */
    c = (rt_sgd_config){0.9, 0.5, 0.0, 0};
    p = 0, b = 0;
    rt_sgd_update(&p, &g, &b, 1, 0.1f, &c, 1);
    rt_sgd_update(&p, &g, &b, 1, 0.1f, &c, 2);
    CHECK(close_to(b, 1.4, 1e-6, 0) && close_to(p, -0.24, 1e-6, 0),
          "sgd dampening: buf = %.9g (want 1.4), p = %.9g (want -0.24)", b, p);
    /* plain SGD with weight decay 0.5: d = 1 + 0.5*2 = 2, p = 2 - 0.1*2 = 1.8. */
    c = (rt_sgd_config){0.0, 0.0, 0.5, 0};
    p = 2.0f;
    CHECK(rt_sgd_update(&p, &g, NULL, 1, 0.1f, &c, 1) == RT_OK && close_to(p, 1.8, 1e-6, 0),
          "sgd weight decay p = %.9g, want 1.8", p);

    c = (rt_sgd_config){0.9, 0.1, 0.0, 1};
    CHECK(rt_sgd_check(&c) == RT_EINPUT && strstr(rt_error_message(), "nesterov"),
          "nesterov with dampening not rejected: '%s'", rt_error_message());
    c = (rt_sgd_config){0.0, 0.0, 0.0, 1};
    CHECK(rt_sgd_check(&c) == RT_EINPUT, "nesterov without momentum not rejected");
    c = (rt_sgd_config){0.9, 0.0, 0.0, 0};
    CHECK(rt_sgd_update(&p, &g, NULL, 1, 0.1f, &c, 1) == RT_EINTERNAL,
          "momentum with NULL buffer not rejected");
}

/* ---- clipping ---------------------------------------------------------- */

static double norm_ref(const float *g, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    return sqrt(s);
}

static void test_clip(void) {
    /* 3-4-5: the norm is 5; clipping to 1 scales by 1/(5 + 1e-6). */
    float g[2] = {3.0f, 4.0f};
    float norm = rt_clip_grad_norm(g, 2, 1.0f);
    CHECK(norm == 5.0f, "clip returned norm %.9g, want 5", norm);
    CHECK(close_to(g[0], 0.6, 1e-6, 0) && close_to(g[1], 0.8, 1e-6, 0),
          "clipped g = (%.9g, %.9g), want (0.6, 0.8)", g[0], g[1]);
    CHECK(close_to(norm_ref(g, 2), 1.0, 1e-6, 0), "post-clip norm %.9g, want 1",
          norm_ref(g, 2));

    /* Under the limit, or clipping off: untouched, norm still reported. */
    float h[2] = {3.0f, 4.0f};
    CHECK(rt_clip_grad_norm(h, 2, 10.0f) == 5.0f && h[0] == 3.0f && h[1] == 4.0f,
          "clip under the limit changed g: (%g, %g)", h[0], h[1]);
    CHECK(rt_clip_grad_norm(h, 2, 0.0f) == 5.0f && h[0] == 3.0f && h[1] == 4.0f,
          "max_norm 0 changed g");
    CHECK(rt_clip_coef(5.0, -1.0f) == 1.0f, "negative max_norm should mean no clipping");
    CHECK(close_to(rt_clip_coef(4.0, 1.0f), 0.25, 1e-6, 0), "coef(4, 1) = %g, want 0.25",
          rt_clip_coef(4.0, 1.0f));
    CHECK(isnan(rt_clip_coef(NAN, 1.0f)) && rt_clip_coef(INFINITY, 1.0f) == 0.0f,
          "non-finite norms: coef(NaN) = %g (want NaN), coef(inf) = %g (want 0)",
          rt_clip_coef(NAN, 1.0f), rt_clip_coef(INFINITY, 1.0f));

    /* A large buffer: sumsq matches a serial double loop, is bitwise the same
     * for 1 and 2 threads, and shard sums add up to the whole. */
    const int64_t n = 100003;
    float *big = malloc(n * sizeof *big);
    for (int64_t i = 0; i < n; i++) big[i] = frand();
    double want = norm_ref(big, n);
    want *= want;
    omp_set_num_threads(1);
    double s1 = rt_sumsq(big, n);
    omp_set_num_threads(2);
    double s2 = rt_sumsq(big, n);
    CHECK(close_to(s1, want, 1e-12, 0), "sumsq %.17g, want %.17g", s1, want);
    CHECK(s1 == s2, "sumsq differs across thread counts: %.17g vs %.17g", s1, s2);
    double sh = rt_sumsq(big, 4000) + rt_sumsq(big + 4000, n - 4000);
    CHECK(close_to(sh, want, 1e-12, 0), "sharded sumsq %.17g, want %.17g", sh, want);
    CHECK(rt_sumsq(big, 0) == 0.0 && rt_sumsq(NULL, 5) == 0.0, "empty sumsq not 0");

    float pre = rt_clip_grad_norm(big, n, 2.5f);
    CHECK(close_to(pre, sqrt(want), 1e-6, 0), "big: returned norm %.9g, want %.9g", pre,
          sqrt(want));
    CHECK(close_to(norm_ref(big, n), 2.5, 1e-5, 0), "big: post-clip norm %.9g, want 2.5",
          norm_ref(big, n));
    free(big);
}

/* ---- schedules --------------------------------------------------------- */

static void test_schedule(void) {
    const float lr = 2e-4f;
    rt_lr_kind k;
    CHECK(rt_lr_kind_parse("constant", &k) == RT_OK && k == RT_LR_CONSTANT, "parse constant");
    CHECK(rt_lr_kind_parse("constant_with_warmup", &k) == RT_OK && k == RT_LR_CONSTANT,
          "parse constant_with_warmup");
    CHECK(rt_lr_kind_parse("linear", &k) == RT_OK && k == RT_LR_LINEAR, "parse linear");
    CHECK(rt_lr_kind_parse("cosine", &k) == RT_OK && k == RT_LR_COSINE, "parse cosine");
    CHECK(rt_lr_kind_parse("Cosine", &k) == RT_EINPUT && strstr(rt_error_message(), "'Cosine'"),
          "bad name not rejected: '%s'", rt_error_message());
    CHECK(!strcmp(rt_lr_kind_name(RT_LR_COSINE), "cosine"), "kind name");

    /* constant, W = 10: 0 at step 0, lr/2 at 5, lr from 10 on. */
    CHECK(rt_lr_at(RT_LR_CONSTANT, lr, 0, 10, 100) == 0.0f, "constant step 0 not 0");
    CHECK(close_to(rt_lr_at(RT_LR_CONSTANT, lr, 5, 10, 100), lr / 2, 1e-6, 0), "constant 5");
    CHECK(rt_lr_at(RT_LR_CONSTANT, lr, 10, 10, 100) == lr, "constant end of warmup");
    CHECK(rt_lr_at(RT_LR_CONSTANT, lr, 5000, 10, 100) == lr, "constant past total");
    CHECK(rt_lr_at(RT_LR_CONSTANT, lr, 0, 0, 100) == lr, "constant without warmup");

    /* linear, W = 10, T = 110: 0.3 lr at 3, lr at 10, lr/2 at 60, 0 at 110 and after. */
    CHECK(close_to(rt_lr_at(RT_LR_LINEAR, lr, 3, 10, 110), 0.3 * lr, 1e-6, 0), "linear 3");
    CHECK(close_to(rt_lr_at(RT_LR_LINEAR, lr, 10, 10, 110), lr, 1e-6, 0), "linear 10");
    CHECK(close_to(rt_lr_at(RT_LR_LINEAR, lr, 60, 10, 110), 0.5 * lr, 1e-6, 0), "linear 60");
    CHECK(rt_lr_at(RT_LR_LINEAR, lr, 110, 10, 110) == 0.0f, "linear end not 0");
    CHECK(rt_lr_at(RT_LR_LINEAR, lr, 150, 10, 110) == 0.0f, "linear past end not 0");
    CHECK(rt_lr_at(RT_LR_LINEAR, lr, 0, 0, 4) == lr &&
              close_to(rt_lr_at(RT_LR_LINEAR, lr, 1, 0, 4), 0.75 * lr, 1e-6, 0),
          "linear without warmup: %g, %g", rt_lr_at(RT_LR_LINEAR, lr, 0, 0, 4),
          rt_lr_at(RT_LR_LINEAR, lr, 1, 0, 4));

    /* cosine, W = 10, T = 110: warmup as linear; lr at 10; at a quarter of the
     * decay 0.5(1 + cos(pi/4)) = 0.8535533906 lr; lr/2 at the midpoint; 0 at T. */
    CHECK(close_to(rt_lr_at(RT_LR_COSINE, lr, 5, 10, 110), 0.5 * lr, 1e-6, 0), "cosine 5");
    CHECK(close_to(rt_lr_at(RT_LR_COSINE, lr, 10, 10, 110), lr, 1e-6, 0), "cosine 10");
    CHECK(close_to(rt_lr_at(RT_LR_COSINE, lr, 35, 10, 110), 0.8535533905932737 * lr, 1e-6, 0),
          "cosine 35 = %.9g", rt_lr_at(RT_LR_COSINE, lr, 35, 10, 110));
    CHECK(close_to(rt_lr_at(RT_LR_COSINE, lr, 60, 10, 110), 0.5 * lr, 1e-6, 0),
          "cosine midpoint = %.9g, want %.9g", rt_lr_at(RT_LR_COSINE, lr, 60, 10, 110),
          0.5 * lr);
    CHECK(fabsf(rt_lr_at(RT_LR_COSINE, lr, 110, 10, 110)) < 1e-12f, "cosine end = %g, want 0",
          rt_lr_at(RT_LR_COSINE, lr, 110, 10, 110));

    /* warmup ratio -> steps, as transformers' get_warmup_steps. */
    CHECK(rt_warmup_steps(0, 0.1, 1000) == 100, "ratio 0.1 of 1000");
    CHECK(rt_warmup_steps(0, 0.1, 15) == 2, "ratio 0.1 of 15 = ceil(1.5)");
    CHECK(rt_warmup_steps(0, 0.03, 1000) == 30, "ratio 0.03 of 1000");
    CHECK(rt_warmup_steps(0, 0.07, 100) == 8, "ratio 0.07 of 100 (Python gives 7.000000000000001)");
    CHECK(rt_warmup_steps(5, 0.5, 100) == 5, "explicit steps win over ratio");
    CHECK(rt_warmup_steps(0, 0.0, 100) == 0, "no warmup");
}

int main(void) {
    test_adamw_vs_reference(37);
    test_adamw_vs_reference(40000); /* above the OpenMP threshold */
    test_adamw_literals();
    test_adamw_shards();
    test_adamw_errors();
    printf("adamw: done\n");

    test_sgd_vs_reference("plain", (rt_sgd_config){0.0, 0.0, 0.0, 0}, 29);
    test_sgd_vs_reference("momentum+dampening", (rt_sgd_config){0.9, 0.1, 0.0, 0}, 29);
    test_sgd_vs_reference("nesterov", (rt_sgd_config){0.9, 0.0, 0.0, 1}, 29);
    test_sgd_vs_reference("momentum+wd", (rt_sgd_config){0.8, 0.0, 0.01, 0}, 29);
    test_sgd_vs_reference("nesterov+wd large", (rt_sgd_config){0.9, 0.0, 0.05, 1}, 40000);
    test_sgd_literals();
    printf("sgd: done\n");

    test_clip();
    printf("clip: done\n");
    test_schedule();
    printf("schedule: done\n");
    return rt_test_summary();
}
