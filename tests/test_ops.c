/* retort — the table-driven op test (rows: tests/op_cases_a.c, op_cases_b.c, op_cases_c.c, op_cases_d.c, op_cases_e.c;
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
#include "tests/compare.h"
#include "tests/testutil.h"

#include "kernels/backend.h"
#include "kernels/fault.h"

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
            double d = rt_abs_err(fd, (double)res->grad[i][j]);
            if (fabs(fd) > max_fd) max_fd = fabs(fd);
            max_diff = rt_worse(max_diff, d);
        }
        worst = rt_worse(worst, max_diff / fmax(1e-3, max_fd));
    }
    return worst;
}

static double max_abs_rel(const float *a, const float *b, int64_t n) {
    return rt_max_abs_rel(a, b, n); /* NaN-aware: tests/compare.h */
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
    if (!rt_kernels_for(RT_CUDA)) {
        SKIP("GPU-vs-CPU comparison: %s", rt_cuda_module_error());
        return;
    }
    if (rt_device_count(RT_CUDA) == 0) {
        SKIP("GPU-vs-CPU comparison: no CUDA device visible to this process");
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
                        gerr = rt_worse(gerr, max_abs_rel(g.grad[i], r->cpu.grad[i],
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
    double e = rt_worse(rt_worse(max_abs_rel(out[1], out[0], R * D), max_abs_rel(gx[1], gx[0], R * D)),
                        rt_worse(rt_worse(max_abs_rel(gw[1], gw[0], D), max_abs_rel(gW[1], gW[0], D * D)),
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

/* ---- bounds, and GPU rows at real sizes ----------------------------------------- */

/* The arena is not capped by its chunk table: 200 chunk-sized allocations
 * without a reset (64 chunks were the old ceiling, 4 GiB at 64 MiB chunks),
 * and the geometric growth (each chunk at least half of what is held)
 * over-reserves by at most about a half. */
static void check_arena_growth(void) {
    const size_t chunk = 4096;
    rt_arena *a = rt_arena_new(RT_CPU, chunk);
    bool ok = a != NULL;
    for (int i = 0; i < 200 && ok; i++) {
        char *p = rt_arena_alloc(a, chunk);
        ok = p != NULL;
        if (p) memset(p, i, chunk);
    }
    CHECK(ok, "arena: 200 chunk-sized allocations: %s", rt_error_message());
    size_t need = 200 * chunk;
    CHECK(a && rt_arena_reserved(a) >= need && rt_arena_reserved(a) <= need + need / 2 + 2 * chunk,
          "arena: %zu bytes reserved for %zu used", a ? rt_arena_reserved(a) : 0, need);
    rt_arena_reset(a);
    char *big = a ? rt_arena_alloc(a, need / 2) : NULL;
    CHECK(big != NULL, "arena: one allocation larger than any chunk after a reset");
    if (big) memset(big, 1, need / 2);
    rt_arena_free(a);
}

/* The CPU embedding kernels never touch memory outside W for an id outside
 * [0, V) (ASan would see it): the row is NaN, the gradient dropped. */
static void check_embedding_bounds(void) {
    const int64_t V = 5, D = 3;
    float W[15], out[9], dW[15] = {0};
    for (int i = 0; i < 15; i++) W[i] = (float)i;
    const int32_t ids[3] = {4, 5, -1};
    const float dout[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    rt_kernels_cpu.embedding(3, D, V, ids, W, out);
    CHECK(out[0] == 12 && out[2] == 14 && isnan(out[3]) && isnan(out[8]),
          "cpu embedding: in-range row copied, ids 5 and -1 give NaN rows");
    rt_kernels_cpu.embedding_bwd(3, D, V, ids, dout, dW);
    double s = 0;
    for (int i = 0; i < 15; i++) s += dW[i];
    CHECK(s == 3 && dW[12] == 1, "cpu embedding_bwd: only the in-range id accumulates");
}

static uint64_t rs_state = 0x2545F4914F6CDD1Dull;
static float rs_uni(float lo, float hi) {
    rs_state = rs_state * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (hi - lo) * (float)(rs_state >> 40) / 16777216.0f;
}
static float *rs_rand(int64_t n, float lo, float hi) {
    float *p = malloc((size_t)n * sizeof *p);
    for (int64_t i = 0; p && i < n; i++) p[i] = rs_uni(lo, hi);
    return p;
}
static void *gpu_dup(const rt_kernels *G, const void *h, size_t bytes) {
    void *d = G->malloc(bytes);
    if (d) G->upload(d, h, bytes);
    return d;
}
/* NaN-aware error of a device buffer against a host reference. */
static double gpu_err(const rt_kernels *G, const float *d, const float *ref, int64_t n) {
    float *h = malloc((size_t)n * sizeof *h);
    G->download(h, d, (size_t)n * sizeof *h);
    double e = rt_max_abs_rel(h, ref, n);
    free(h);
    return e;
}
static void report_row(const char *what, double err, double tol) {
    CHECK(err <= tol && rt_fault_status() == RT_OK, "gpu real size: %s: error %.3g (tol %.0e) %s",
          what, err, tol, rt_fault_message());
    printf("gpu real size | %-60s | %9.2e | %s\n", what, err, err <= tol ? "ok" : "FAIL");
}

/* Cross-entropy forward + backward at a real vocabulary size. */
static void gpu_cross_entropy(const rt_kernels *G, int64_t N, int64_t V) {
    float *x = rs_rand(N * V, -8, 8), *dx = calloc((size_t)(N * V), sizeof *dx);
    int32_t *lab = malloc((size_t)N * sizeof *lab);
    for (int64_t i = 0; i < N; i++) lab[i] = i % 7 == 3 ? -100 : (int32_t)((i * 7919 + V - 1) % V);
    float *nll = malloc((size_t)N * 4), *lse = malloc((size_t)N * 4);
    rt_kernels_cpu.cross_entropy(N, V, x, lab, -100, nll, lse);
    rt_kernels_cpu.cross_entropy_bwd(N, V, x, lab, -100, lse, 0.5f, dx);
    float *gx = gpu_dup(G, x, (size_t)(N * V) * 4), *gdx = G->malloc((size_t)(N * V) * 4);
    int32_t *glab = gpu_dup(G, lab, (size_t)N * 4);
    float *gnll = G->malloc((size_t)N * 4), *glse = G->malloc((size_t)N * 4);
    char what[96];
    if (gx && gdx && glab && gnll && glse) {
        G->zero(gdx, (size_t)(N * V) * 4);
        G->cross_entropy(N, V, gx, glab, -100, gnll, glse);
        G->cross_entropy_bwd(N, V, gx, glab, -100, glse, 0.5f, gdx);
        snprintf(what, sizeof what, "cross_entropy N=%lld V=%lld nll", (long long)N, (long long)V);
        report_row(what, gpu_err(G, gnll, nll, N), GPU_FWD_TOL);
        snprintf(what, sizeof what, "cross_entropy N=%lld V=%lld dlogits", (long long)N, (long long)V);
        report_row(what, gpu_err(G, gdx, dx, N * V), GPU_GRAD_TOL);
    } else {
        CHECK(0, "gpu cross_entropy V=%lld: out of device memory: %s", (long long)V, rt_error_message());
    }
    G->free(gx), G->free(gdx), G->free(glab), G->free(gnll), G->free(glse);
    free(x), free(dx), free(lab), free(nll), free(lse);
}

/* Logits of more than 2^31 elements: rows past element 2^31 are where 32-bit
 * indexing would wrap. The GPU runs every row; the CPU checks a few rows at
 * the start, across the 2^31 boundary and at the end. Rows repeat a pattern
 * of 64 host rows (uploaded block by block) so the host never holds 8 GiB. */
static void gpu_cross_entropy_2g(const rt_kernels *G) {
    const int64_t V = 128256, N = 16800, P = 64; /* N * V = 2.15e9 > 2^31 */
    const size_t bytes = (size_t)(N * V) * 4;
    float *pat = rs_rand(P * V, -8, 8);
    int32_t *lab = malloc((size_t)N * sizeof *lab);
    for (int64_t i = 0; i < N; i++) lab[i] = i % 7 == 3 ? -100 : (int32_t)((i * 7919 + V - 1) % V);
    float *gx = G->malloc(bytes), *gdx = gx ? G->malloc(bytes) : NULL;
    int32_t *glab = gpu_dup(G, lab, (size_t)N * 4);
    float *gnll = G->malloc((size_t)N * 4), *glse = G->malloc((size_t)N * 4);
    if (!gx || !gdx || !glab || !gnll || !glse) {
        CHECK(0, "gpu cross_entropy over 2^31 logits: out of device memory: %s", rt_error_message());
    } else {
        for (int64_t r = 0; r < N; r += P) {
            int64_t rows = N - r < P ? N - r : P;
            G->upload(gx + r * V, pat, (size_t)(rows * V) * 4);
        }
        G->zero(gdx, bytes);
        G->cross_entropy(N, V, gx, glab, -100, gnll, glse);
        G->cross_entropy_bwd(N, V, gx, glab, -100, glse, 1.0f, gdx);
        float *hnll = malloc((size_t)N * 4);
        G->download(hnll, gnll, (size_t)N * 4);
        const int64_t check[] = {0, 1, 2, 3, 16741, 16742, 16743, 16744, 16745, 16746, N - 2, N - 1};
        double enll = 0, edx = 0;
        float *row = malloc((size_t)V * 4), *ref = malloc((size_t)V * 4);
        for (size_t c = 0; c < sizeof check / sizeof *check; c++) {
            int64_t i = check[c];
            const float *xi = pat + (i % P) * V;
            float nll, lse;
            rt_kernels_cpu.cross_entropy(1, V, xi, &lab[i], -100, &nll, &lse);
            memset(ref, 0, (size_t)V * 4);
            rt_kernels_cpu.cross_entropy_bwd(1, V, xi, &lab[i], -100, &lse, 1.0f, ref);
            enll = rt_worse(enll, rt_abs_err(hnll[i], nll) / fmax(1.0, fabs(nll)));
            G->download(row, gdx + i * V, (size_t)V * 4);
            edx = rt_worse(edx, rt_max_abs_rel(row, ref, V));
        }
        report_row("cross_entropy N=16800 V=128256 (2.15e9 logits) nll, 12 rows", enll, GPU_FWD_TOL);
        report_row("cross_entropy N=16800 V=128256 (2.15e9 logits) dlogits, 12 rows", edx, GPU_GRAD_TOL);
        free(hnll), free(row), free(ref);
    }
    G->free(gx), G->free(gdx), G->free(glab), G->free(gnll), G->free(glse);
    free(pat), free(lab);
}

/* Causal GQA attention forward + backward at T = 2048. */
static void gpu_attention(const rt_kernels *G, int64_t Dh) {
    const int64_t B = 1, T = 2048, H = 4, Hkv = 2;
    const int64_t nq = B * T * H * Dh, nk = B * T * Hkv * Dh, nl = B * H * T;
    float *q = rs_rand(nq, -2, 2), *k = rs_rand(nk, -2, 2), *v = rs_rand(nk, -1, 1);
    float *dout = rs_rand(nq, -1, 1);
    float *out = malloc((size_t)nq * 4), *lse = malloc((size_t)nl * 4);
    float *dq = calloc((size_t)nq, 4), *dk = calloc((size_t)nk, 4), *dv = calloc((size_t)nk, 4);
    rt_kernels_cpu.attention(B, T, T, H, Hkv, Dh, q, k, v, NULL, 0, out, lse);
    rt_kernels_cpu.attention_bwd(B, T, H, Hkv, Dh, q, k, v, NULL, 0, out, lse, dout, dq, dk, dv);
    float *gq = gpu_dup(G, q, nq * 4), *gk = gpu_dup(G, k, nk * 4), *gv = gpu_dup(G, v, nk * 4);
    float *gdo = gpu_dup(G, dout, nq * 4), *go = G->malloc(nq * 4), *gl = G->malloc(nl * 4);
    float *gdq = G->malloc(nq * 4), *gdk = G->malloc(nk * 4), *gdv = G->malloc(nk * 4);
    char what[96];
    if (gq && gk && gv && gdo && go && gl && gdq && gdk && gdv) {
        G->zero(gdq, nq * 4), G->zero(gdk, nk * 4), G->zero(gdv, nk * 4);
        G->attention(B, T, T, H, Hkv, Dh, gq, gk, gv, NULL, 0, go, gl);
        G->attention_bwd(B, T, H, Hkv, Dh, gq, gk, gv, NULL, 0, go, gl, gdo, gdq, gdk, gdv);
        snprintf(what, sizeof what, "attention T=2048 H=4 Hkv=2 Dh=%lld out, lse", (long long)Dh);
        report_row(what, rt_worse(gpu_err(G, go, out, nq), gpu_err(G, gl, lse, nl)), GPU_FWD_TOL);
        snprintf(what, sizeof what, "attention T=2048 H=4 Hkv=2 Dh=%lld dq, dk, dv", (long long)Dh);
        report_row(what, rt_worse(rt_worse(gpu_err(G, gdq, dq, nq), gpu_err(G, gdk, dk, nk)),
                                  gpu_err(G, gdv, dv, nk)),
                   GPU_GRAD_TOL);
    } else {
        CHECK(0, "gpu attention Dh=%lld: out of device memory: %s", (long long)Dh, rt_error_message());
    }
    G->free(gq), G->free(gk), G->free(gv), G->free(gdo), G->free(go), G->free(gl);
    G->free(gdq), G->free(gdk), G->free(gdv);
    free(q), free(k), free(v), free(dout), free(out), free(lse), free(dq), free(dk), free(dv);
}

/* Embedding at V = 128256 (ids up to V-1: 64-bit row offsets), then a bad
 * id, which must become a device fault naming it (cleared afterwards: our
 * own record, the CUDA context itself is fine). */
static void gpu_embedding(const rt_kernels *G) {
    const int64_t V = 128256, D = 2048, n = 64;
    float *W = rs_rand(V * D, -1, 1), *ref = malloc((size_t)(n * D) * 4);
    int32_t ids[64];
    for (int i = 0; i < n; i++) ids[i] = i < 8 ? (int32_t)(V - 1 - i) : (int32_t)((i * 7919) % V);
    rt_kernels_cpu.embedding(n, D, V, ids, W, ref);
    float *gW = gpu_dup(G, W, (size_t)(V * D) * 4), *go = G->malloc((size_t)(n * D) * 4);
    int32_t *gids = gpu_dup(G, ids, sizeof ids);
    if (gW && go && gids) {
        G->embedding(n, D, V, gids, gW, go);
        report_row("embedding V=128256 D=2048 (ids up to V-1)", gpu_err(G, go, ref, n * D), 0);
        ids[5] = (int32_t)V;
        G->upload(gids, ids, sizeof ids);
        G->embedding(n, D, V, gids, gW, go);
        CHECK(rt_fault_status() != RT_OK && strstr(rt_fault_message(), "token id 128256 at position 5"),
              "gpu embedding: a bad id is a fault naming it: '%s'", rt_fault_message());
        printf("gpu real size | %-60s | %9s | %s\n", "embedding id V (out of range) -> fault", "-",
               rt_fault_status() != RT_OK ? "ok" : "FAIL");
        rt_fault_clear();
    } else {
        CHECK(0, "gpu embedding: out of device memory: %s", rt_error_message());
    }
    G->free(gW), G->free(go), G->free(gids);
    free(W), free(ref);
}

static void gpu_real_sizes(void) {
    const char *what = "GPU rows at real sizes (cross_entropy V=49152 and 128256, logits > 2^31 "
                       "elements, attention T=2048 Dh 64/128, embedding V=128256)";
    const rt_kernels *G = rt_kernels_for(RT_CUDA);
    if (!G) {
        SKIP("%s: %s", what, rt_cuda_module_error());
        return;
    }
    if (rt_device_count(RT_CUDA) == 0) {
        SKIP("%s: no CUDA device visible to this process", what);
        return;
    }
    gpu_cross_entropy(G, 64, 49152);
    gpu_cross_entropy(G, 64, 128256);
    gpu_attention(G, 64);
    gpu_attention(G, 128);
    gpu_cross_entropy_2g(G);
    gpu_embedding(G);
}

/* The fused ops on a device without their fused kernels (the CUDA table
 * today) take the separate kernels: the same rows on a CPU table with the
 * fused entries removed must give the fused run's output and gradients
 * (same arithmetic; 1e-6 leaves room for a vectoriser's summation order). */
static void check_fused_fallback(case_run *runs, int n) {
    rt_kernels plain = rt_kernels_cpu;
    plain.add_rmsnorm = NULL;
    plain.add_rmsnorm_bwd = NULL;
    plain.rope_qk = NULL;
    plain.swiglu_bwd_set = NULL;
    int checked = 0;
    for (int k = 0; k < n; k++) {
        case_run *r = &runs[k];
        const rt_op_case *c = r->c;
        if (!r->cpu_ok || (c->op != RT_OP_ADD_RMSNORM && c->op != RT_OP_ROPE_QK && c->op != RT_OP_SWIGLU))
            continue;
        rt_ctx *ctx = rt_ctx_new(RT_CPU, 1 << 20);
        if (!ctx) continue;
        ctx->k = &plain;
        rt_tensor *tin[RT_CASE_MAX_IN] = {0};
        case_result u = {0};
        float *G = r->G;
        bool ok = run_case(ctx, c, r->in, &G, tin, &u);
        CHECK(ok, "unfused %s: %s: %s", rt_op_name(c->op), c->name, rt_error_message());
        if (ok) {
            double err = max_abs_rel(u.out, r->cpu.out, u.n_out);
            for (int i = 0; i < c->n_in; i++)
                if (c->diff[i])
                    err = rt_worse(err, max_abs_rel(u.grad[i], r->cpu.grad[i],
                                                    shape_numel(c->ndim[i], c->shape[i])));
            CHECK(err <= 1e-6, "unfused %s: %s: differs from the fused kernels by %.3g",
                  rt_op_name(c->op), c->name, err);
            checked++;
        }
        result_free(&u);
        rt_ctx_free(ctx);
    }
    printf("fused ops without their fused kernels: %d rows agree with the fused run\n", checked);
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
        {rt_op_cases_d, rt_n_op_cases_d},
        {rt_op_cases_e, rt_n_op_cases_e},
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
    check_embedding_bounds();
    check_arena_growth();
    check_fused_fallback(runs, n);

#ifdef RETORT_HAVE_CUDA
    run_gpu(runs, n);
#else
    SKIP("GPU-vs-CPU comparison: this build has no CUDA backend");
#endif
    gpu_real_sizes();

    for (int k = 0; k < n; k++) {
        for (int i = 0; i < RT_CASE_MAX_IN; i++) free(runs[k].in[i]);
        free(runs[k].G);
        result_free(&runs[k].cpu);
    }
    free(runs);
    return rt_test_summary();
}
