/* retort — the table-driven op test (rows: tests/op_cases_a.c, op_cases_b.c, op_cases_c.c;
 * contract: tests/op_cases.h) plus a few dedicated checks that do not fit a
 * row (checkpoint vs. plain, dropout statistics, error paths).
 *
 * Per row: forward vs. the naive reference; the analytic gradient of
 * L = sum(out * G) w.r.t. every diff input vs. central finite differences
 * of L (double sums of f32 forwards, step h = 1e-2 * max(1, |x|)); on a GPU
 * build with a device, the GPU forward and gradients vs. the CPU's.
 *
 * Error measures (printed in the table):
 *   fwd err  = max |out - ref| / max(1, max |ref|)
 *   grad err = max_j |analytic_j - fd_j| / max(1e-3, max_j |fd_j|), per
 *              input, max over inputs (a global relative error: elementwise
 *              ratios are meaningless where the gradient is ~0).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/op_cases.h"
#include "tests/testutil.h"

#ifdef RETORT_HAVE_CUDA
#include <cuda_runtime.h>
#endif

#define DEFAULT_FWD_TOL 1e-4f
#define DEFAULT_GRAD_TOL 1e-2f
#define GPU_FWD_TOL 1e-4
#define GPU_GRAD_TOL 1e-3

/* ---- deterministic inputs (xorshift64*, fixed seed) ---- */

static uint64_t rng_state = 0x243F6A8885A308D3ull;
static float rng_uniform(float lo, float hi) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t r = rng_state * 0x2545F4914F6CDD1Dull;
    return lo + (hi - lo) * (float)((double)(r >> 40) / 16777216.0);
}

static int64_t shape_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    return n;
}

/* What one run of a case produced (host copies). */
typedef struct {
    int64_t n_out;
    float *out;
    float *grad[RT_CASE_MAX_IN]; /* NULL unless diff */
} case_result;

static void result_free(case_result *r) {
    free(r->out);
    for (int i = 0; i < RT_CASE_MAX_IN; i++) free(r->grad[i]);
    memset(r, 0, sizeof *r);
}

/* Resets the ctx fields a build may change, so every evaluation of a row
 * (forward, each finite difference) sees the same state. */
static void ctx_prepare(rt_ctx *ctx) {
    ctx->training = false;
    ctx->seed = 0;
    ctx->rng_counter = 0;
}

/* Forward + backward of a row on ctx's device. in_host: the inputs; G: the
 * upstream gradient (host, n_out values; NULL on the first call, when it is
 * drawn). Leaves the input tensors in tin[] for finite differences. Returns
 * false (message set) if the build failed. */
static bool run_case(rt_ctx *ctx, const rt_op_case *c, float **in_host, float **G,
                     rt_tensor **tin, case_result *res) {
    ctx_prepare(ctx);
    for (int i = 0; i < c->n_in; i++) {
        tin[i] = rt_from_f32(ctx, in_host[i], c->ndim[i], c->shape[i]);
        if (!tin[i]) return false;
        tin[i]->requires_grad = c->diff[i];
    }
    rt_tensor *out = c->build(ctx, tin);
    if (!out || ctx->status != RT_OK) return false;
    res->n_out = rt_numel(out);
    res->out = malloc((size_t)res->n_out * sizeof(float));
    rt_to_host(ctx, out, res->out);
    if (!*G) {
        *G = malloc((size_t)res->n_out * sizeof(float));
        for (int64_t j = 0; j < res->n_out; j++) (*G)[j] = rng_uniform(-1, 1);
    }
    bool any_diff = false;
    for (int i = 0; i < c->n_in; i++) any_diff |= c->diff[i];
    if (!any_diff) return true;
    float *g_dev = rt_arena_alloc(ctx->arena, (size_t)res->n_out * sizeof(float));
    if (!g_dev) return false;
    ctx->k->upload(g_dev, *G, (size_t)res->n_out * sizeof(float));
    if (rt_backward_from(ctx, out, g_dev) != RT_OK) return false;
    for (int i = 0; i < c->n_in; i++) {
        if (!c->diff[i]) continue;
        int64_t n = rt_numel(tin[i]);
        res->grad[i] = calloc((size_t)n, sizeof(float));
        if (tin[i]->grad) rt_to_host(ctx, tin[i]->grad, res->grad[i]);
    }
    return true;
}

/* L = sum(out * G) in double, for the current input values (CPU ctx). */
static bool eval_loss(rt_ctx *ctx, const rt_op_case *c, rt_tensor **tin, const float *G,
                      int64_t n_out, double *L) {
    rt_arena_mark mark = rt_arena_get_mark(ctx->arena);
    rt_node *tape = ctx->tape;
    ctx_prepare(ctx);
    ctx->no_grad = true;
    rt_tensor *out = c->build(ctx, tin);
    ctx->no_grad = false;
    bool ok = out && ctx->status == RT_OK && rt_numel(out) == n_out;
    if (ok) {
        const float *o = out->data;
        double s = 0;
        for (int64_t j = 0; j < n_out; j++) s += (double)o[j] * G[j];
        *L = s;
    }
    ctx->tape = tape;
    rt_arena_release(ctx->arena, mark);
    return ok;
}

/* Max global relative error of the analytic gradients against central
 * differences; -1 if a forward failed. */
static double grad_check(rt_ctx *ctx, const rt_op_case *c, rt_tensor **tin, const float *G,
                         const case_result *res) {
    double worst = 0;
    for (int i = 0; i < c->n_in; i++) {
        if (!c->diff[i]) continue;
        float *x = tin[i]->data; /* CPU: the harness pokes inputs in place */
        int64_t n = rt_numel(tin[i]);
        double max_fd = 0, max_diff = 0;
        for (int64_t j = 0; j < n; j++) {
            float x0 = x[j];
            float h = 1e-2f * fmaxf(1.0f, fabsf(x0));
            float xp = x0 + h, xm = x0 - h;
            double Lp, Lm;
            x[j] = xp;
            bool ok = eval_loss(ctx, c, tin, G, res->n_out, &Lp);
            x[j] = xm;
            ok = ok && eval_loss(ctx, c, tin, G, res->n_out, &Lm);
            x[j] = x0;
            if (!ok) return -1;
            double fd = (Lp - Lm) / ((double)xp - (double)xm);
            double d = fabs(fd - (double)res->grad[i][j]);
            if (fabs(fd) > max_fd) max_fd = fabs(fd);
            if (d > max_diff) max_diff = d;
        }
        double rel = max_diff / fmax(1e-3, max_fd);
        if (rel > worst) worst = rel;
    }
    return worst;
}

static double max_abs_rel(const float *a, const float *b, int64_t n) {
    double m = 0, scale = 1;
    for (int64_t j = 0; j < n; j++) scale = fmax(scale, fabs((double)b[j]));
    for (int64_t j = 0; j < n; j++) {
        double d = fabs((double)a[j] - (double)b[j]);
        if (!(d <= m)) m = d; /* NaN propagates */
    }
    return m / scale;
}

typedef struct {
    const rt_op_case *c;
    float *in[RT_CASE_MAX_IN];
    float *G;
    case_result cpu;
    bool cpu_ok;
} case_run;

static double op_max_grad[RT_OP_COUNT];
static bool op_has_grad[RT_OP_COUNT];

static void run_cpu(case_run *r) {
    const rt_op_case *c = r->c;
    float fwd_tol = c->fwd_tol > 0 ? c->fwd_tol : DEFAULT_FWD_TOL;
    float grad_tol = c->grad_tol > 0 ? c->grad_tol : DEFAULT_GRAD_TOL;
    float lo = c->lo, hi = c->hi;
    if (lo == 0 && hi == 0) lo = -1, hi = 1;
    for (int i = 0; i < c->n_in; i++) {
        int64_t n = shape_numel(c->ndim[i], c->shape[i]);
        r->in[i] = malloc((size_t)n * sizeof(float));
        for (int64_t j = 0; j < n; j++) r->in[i][j] = rng_uniform(lo, hi);
    }
    rt_ctx *ctx = rt_ctx_new(RT_CPU, 1 << 20);
    rt_tensor *tin[RT_CASE_MAX_IN] = {0};
    bool ok = ctx && run_case(ctx, c, r->in, &r->G, tin, &r->cpu);
    CHECK(ok, "%s: %s: build/backward failed: %s", rt_op_name(c->op), c->name, rt_error_message());
    if (!ok) {
        printf("%-13s | %-62s | %9s | %9s | FAIL\n", rt_op_name(c->op), c->name, "-", "-");
        rt_ctx_free(ctx);
        return;
    }
    float *ref = malloc((size_t)r->cpu.n_out * sizeof(float));
    c->ref((const float *const *)r->in, ref);
    double fwd = max_abs_rel(r->cpu.out, ref, r->cpu.n_out);
    free(ref);
    bool any_diff = false;
    for (int i = 0; i < c->n_in; i++) any_diff |= c->diff[i];
    double gerr = any_diff ? grad_check(ctx, c, tin, r->G, &r->cpu) : 0;
    bool fwd_ok = fwd <= fwd_tol, grad_ok = gerr >= 0 && gerr <= grad_tol;
    CHECK(fwd_ok, "%s: %s: forward error %.3g > %.3g", rt_op_name(c->op), c->name, fwd, fwd_tol);
    CHECK(grad_ok, "%s: %s: gradient error %.3g > %.3g", rt_op_name(c->op), c->name, gerr, grad_tol);
    if (any_diff) {
        op_has_grad[c->op] = true;
        if (gerr > op_max_grad[c->op] || gerr < 0) op_max_grad[c->op] = gerr < 0 ? INFINITY : gerr;
    }
    char gbuf[32] = "        -";
    if (any_diff) snprintf(gbuf, sizeof gbuf, "%9.2e", gerr);
    printf("%-13s | %-62s | %9.2e | %s | %s\n", rt_op_name(c->op), c->name, fwd, gbuf,
           fwd_ok && grad_ok ? "ok" : "FAIL");
    r->cpu_ok = true;
    rt_ctx_free(ctx);
}

/* ---- GPU vs CPU -------------------------------------------------------------- */

#ifdef RETORT_HAVE_CUDA
static void run_gpu(case_run *runs, int n) {
    int devices = 0;
    cudaError_t e = cudaGetDeviceCount(&devices);
    if (e != cudaSuccess || devices == 0) {
        SKIP("GPU-vs-CPU comparison: %s", e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device");
        return;
    }
    bool skipped[RT_OP_COUNT] = {0};
    for (int k = 0; k < n; k++) {
        case_run *r = &runs[k];
        const rt_op_case *c = r->c;
        if (!r->cpu_ok) continue;
        rt_ctx *ctx = rt_ctx_new(RT_CUDA, 1 << 20);
        CHECK(ctx != NULL, "cuda ctx: %s", rt_error_message());
        if (!ctx) return;
        rt_tensor *tin[RT_CASE_MAX_IN] = {0};
        case_result g = {0};
        float *G = r->G;
        rt_error_clear();
        bool ok = run_case(ctx, c, r->in, &G, tin, &g);
        if (!ok && strstr(rt_error_message(), "no cuda kernel")) {
            if (!skipped[c->op]) SKIP("GPU-vs-CPU comparison: %s: %s", rt_op_name(c->op), rt_error_message());
            skipped[c->op] = true;
        } else {
            CHECK(ok, "gpu %s: %s: %s", rt_op_name(c->op), c->name, rt_error_message());
            if (ok) {
                double fwd = max_abs_rel(g.out, r->cpu.out, g.n_out), gerr = 0;
                for (int i = 0; i < c->n_in; i++)
                    if (c->diff[i])
                        gerr = fmax(gerr, max_abs_rel(g.grad[i], r->cpu.grad[i],
                                                      shape_numel(c->ndim[i], c->shape[i])));
                CHECK(fwd <= GPU_FWD_TOL, "gpu %s: %s: forward differs from CPU by %.3g",
                      rt_op_name(c->op), c->name, fwd);
                CHECK(gerr <= GPU_GRAD_TOL, "gpu %s: %s: gradient differs from CPU by %.3g",
                      rt_op_name(c->op), c->name, gerr);
                printf("gpu %-9s | %-62s | %9.2e | %9.2e\n", rt_op_name(c->op), c->name, fwd, gerr);
            }
        }
        result_free(&g);
        rt_ctx_free(ctx);
    }
}
#endif

/* ---- dedicated checks ---------------------------------------------------------- */

typedef struct { rt_tensor *w, *W, *b; float p; } block_params;

/* x + dropout(linear(silu(rmsnorm(x)))): the dropout makes the recompute
 * depend on replaying the random stream. */
static rt_tensor *block(rt_ctx *ctx, void *user, rt_tensor *x) {
    block_params *bp = user;
    rt_tensor *h = rt_silu(ctx, rt_rmsnorm(ctx, x, bp->w, 1e-5f));
    return rt_add(ctx, x, rt_dropout(ctx, rt_linear(ctx, h, bp->W, bp->b), bp->p));
}

/* Two checkpointed blocks in a row vs. the same two blocks recorded plainly:
 * output, input gradient and every weight gradient must agree. */
static void check_checkpoint_vs_plain(void) {
    enum { R = 5, D = 13 };
    float xh[R * D], wh[D], Wh[D * D], bh[D], G[R * D];
    for (int i = 0; i < R * D; i++) xh[i] = rng_uniform(-1, 1), G[i] = rng_uniform(-1, 1);
    for (int i = 0; i < D; i++) wh[i] = rng_uniform(0.5f, 1.5f), bh[i] = rng_uniform(-0.5f, 0.5f);
    for (int i = 0; i < D * D; i++) Wh[i] = rng_uniform(-0.3f, 0.3f);
    float out[2][R * D], gx[2][R * D], gw[2][D], gW[2][D * D], gb[2][D];
    uint64_t counter_after[2];
    for (int mode = 0; mode < 2; mode++) {
        /* The weights live in a parameter store, as in training: their
         * gradients must outlive the recompute's arena scratch. */
        rt_ctx *ctx = rt_ctx_new(RT_CPU, 1 << 20);
        rt_params ps;
        rt_params_init(&ps, RT_CPU);
        int64_t sx[2] = {R, D}, sw[1] = {D}, sW[2] = {D, D};
        block_params bp = {rt_params_add(&ps, "w", 1, sw), rt_params_add(&ps, "W", 2, sW),
                           rt_params_add(&ps, "b", 1, sw), 0.25f};
        CHECK(rt_params_finalize(&ps, 1) == RT_OK, "params: %s", rt_error_message());
        memcpy(bp.w->data, wh, sizeof wh);
        memcpy(bp.W->data, Wh, sizeof Wh);
        memcpy(bp.b->data, bh, sizeof bh);
        ctx->training = true;
        ctx->seed = 42;
        ctx->rng_counter = 7;
        rt_tensor *x = rt_from_f32(ctx, xh, 2, sx);
        x->requires_grad = true;
        rt_tensor *y = mode ? rt_checkpoint(ctx, block, &bp, rt_checkpoint(ctx, block, &bp, x))
                            : block(ctx, &bp, block(ctx, &bp, x));
        CHECK(y != NULL, "checkpoint mode %d: %s", mode, rt_error_message());
        if (!y) {
            rt_params_free(&ps);
            rt_ctx_free(ctx);
            return;
        }
        counter_after[mode] = ctx->rng_counter;
        rt_to_host(ctx, y, out[mode]);
        CHECK(rt_backward_from(ctx, y, G) == RT_OK, "checkpoint backward: %s", rt_error_message());
        rt_to_host(ctx, x->grad, gx[mode]);
        rt_to_host(ctx, bp.w->grad, gw[mode]);
        rt_to_host(ctx, bp.W->grad, gW[mode]);
        rt_to_host(ctx, bp.b->grad, gb[mode]);
        rt_params_free(&ps);
        rt_ctx_free(ctx);
    }
    double e = fmax(fmax(max_abs_rel(out[1], out[0], R * D), max_abs_rel(gx[1], gx[0], R * D)),
                    fmax(fmax(max_abs_rel(gw[1], gw[0], D), max_abs_rel(gW[1], gW[0], D * D)),
                         max_abs_rel(gb[1], gb[0], D)));
    CHECK(e <= 1e-6, "checkpointed vs plain blocks differ by %.3g", e);
    CHECK(counter_after[0] == counter_after[1] && counter_after[0] == 7 + 2 * R * D,
          "dropout stream position after the blocks: plain %llu, checkpointed %llu",
          (unsigned long long)counter_after[0], (unsigned long long)counter_after[1]);
    printf("checkpoint vs plain (2 blocks with dropout): max difference %.2e\n", e);
}

static void check_dropout_stats(void) {
    enum { N = 20000 };
    rt_ctx *ctx = rt_ctx_new(RT_CPU, 1 << 20);
    float *h = malloc(N * sizeof(float)), *y1 = malloc(N * sizeof(float)), *y2 = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) h[i] = 1.0f;
    rt_tensor *x = rt_from_f32(ctx, h, 1, (int64_t[]){N});
    CHECK(rt_dropout(ctx, x, 0.5f) == x, "dropout outside training must return its input");
    ctx->training = true;
    CHECK(rt_dropout(ctx, x, 0.0f) == x, "dropout with p = 0 must return its input");
    ctx->seed = 99;
    rt_tensor *a = rt_dropout(ctx, x, 0.5f), *b = rt_dropout(ctx, x, 0.5f);
    CHECK(ctx->rng_counter == 2 * N, "rng_counter %llu after two dropouts of %d",
          (unsigned long long)ctx->rng_counter, N);
    rt_to_host(ctx, a, y1);
    rt_to_host(ctx, b, y2);
    int zeros = 0, same = 0, bad = 0;
    for (int i = 0; i < N; i++) {
        zeros += y1[i] == 0.0f;
        same += (y1[i] == 0.0f) == (y2[i] == 0.0f);
        bad += y1[i] != 0.0f && y1[i] != 2.0f;
    }
    /* Binomial(20000, 0.5): sd 71, so +-400 is > 5 sd. */
    CHECK(abs(zeros - N / 2) < 400, "dropout p=0.5 zeroed %d of %d", zeros, N);
    CHECK(abs(same - N / 2) < 400, "consecutive dropout masks agree on %d of %d (not independent)", same, N);
    CHECK(bad == 0, "%d kept values are not x / (1 - p)", bad);
    CHECK(rt_dropout(ctx, x, 1.0f) == NULL && ctx->status == RT_EINPUT, "dropout p = 1 must fail");
    printf("dropout p=0.5 over %d: %d dropped, masks of two calls agree on %d\n", N, zeros, same);
    free(h), free(y1), free(y2);
    rt_ctx_free(ctx);
}

static void check_errors(void) {
    rt_ctx *ctx = rt_ctx_new(RT_CPU, 1 << 20);
    float w[12] = {0};
    int32_t ids[3] = {1, 4, 2};
    rt_tensor *W = rt_from_f32(ctx, w, 2, (int64_t[]){4, 3});
    rt_tensor *t = rt_from_i32(ctx, ids, 1, (int64_t[]){3});
    CHECK(rt_embedding(ctx, W, t) == NULL && ctx->status == RT_EINPUT &&
              strstr(rt_error_message(), "token id 4"),
          "out-of-range id: status %d, message '%s'", ctx->status, rt_error_message());
    rt_ctx_reset(ctx);
    W = rt_from_f32(ctx, w, 2, (int64_t[]){4, 3});
    rt_tensor *B = rt_from_f32(ctx, w, 2, (int64_t[]){4, 3});
    CHECK(rt_matmul(ctx, W, B, false, false) == NULL && ctx->status == RT_EINTERNAL &&
              strstr(rt_error_message(), "do not match"),
          "matmul [4,3] @ [4,3]: status %d, message '%s'", ctx->status, rt_error_message());
    rt_ctx_reset(ctx);
    CHECK(rt_add(ctx, NULL, NULL) == NULL && ctx->status == RT_OK, "NULL input must pass through");
    W = rt_from_f32(ctx, w, 2, (int64_t[]){4, 3});
    CHECK(rt_slice(ctx, W, 3, 2) == NULL && ctx->status != RT_OK, "slice past the end must fail");
    rt_ctx_free(ctx);
}

/* test_ops [SUBSTRING]: with an argument, only the rows whose op or case
 * name contains it (e.g. to run a few rows under a sanitizer). */
int main(int argc, char **argv) {
    const char *only = argc > 1 ? argv[1] : NULL;
    /* Every case file's rows, in order. */
    const struct { const rt_op_case *rows; int n; } files[] = {
        {rt_op_cases_a, rt_n_op_cases_a},
        {rt_op_cases_b, rt_n_op_cases_b},
        {rt_op_cases_c, rt_n_op_cases_c},
    };
    int n = 0;
    for (size_t f = 0; f < sizeof files / sizeof *files; f++) n += files[f].n;
    case_run *runs = calloc((size_t)n, sizeof *runs);
    int k0 = 0;
    for (size_t f = 0; f < sizeof files / sizeof *files; f++)
        for (int i = 0; i < files[f].n; i++)
            if (!only || strstr(files[f].rows[i].name, only) ||
                strstr(rt_op_name(files[f].rows[i].op), only))
                runs[k0++].c = &files[f].rows[i];
    n = k0;

    for (int op = 0; op < RT_OP_COUNT && !only; op++) {
        bool found = false;
        for (int k = 0; k < n; k++) found |= runs[k].c->op == (rt_op)op;
        CHECK(found, "op %s has no row in tests/op_cases_*.c", rt_op_name((rt_op)op));
    }

    printf("%-13s | %-62s | %9s | %9s | %s\n", "op", "case", "fwd err", "grad err", "pass");
    for (int k = 0; k < n; k++) run_cpu(&runs[k]);

    printf("\nper-op max relative gradient error (finite differences, CPU):\n");
    for (int op = 0; op < RT_OP_COUNT; op++) {
        if (op_has_grad[op]) printf("  %-13s %.2e\n", rt_op_name((rt_op)op), op_max_grad[op]);
        else printf("  %-13s -\n", rt_op_name((rt_op)op));
    }
    printf("\n");

    check_checkpoint_vs_plain();
    check_dropout_stats();
    check_errors();

#ifdef RETORT_HAVE_CUDA
    run_gpu(runs, n);
#else
    SKIP("GPU-vs-CPU comparison: this build has no CUDA backend");
#endif

    for (int k = 0; k < n; k++) {
        for (int i = 0; i < RT_CASE_MAX_IN; i++) free(runs[k].in[i]);
        free(runs[k].G);
        result_free(&runs[k].cpu);
    }
    free(runs);
    return rt_test_summary();
}
