/* retort — micro-benchmark of the CPU kernels at two training shapes, and a
 * large-shape correctness check of the kernels that block their loops.
 *
 * Build by hand from the repository root (no CMake target yet):
 *   gcc -std=c11 -O2 -g -fopenmp -D_GNU_SOURCE -Wall -Wextra -I. bench/bench_kernels.c \
 *       kernels/cpu/attention.c kernels/cpu/softmax.c kernels/cpu/elementwise.c \
 *       kernels/cpu/transformer.c kernels/cpu/gemm.c -lopenblas -lm -o /tmp/bench_kernels
 * Run:
 *   /tmp/bench_kernels [substring]   times every kernel whose row name contains substring
 *   /tmp/bench_kernels --check       compares attention, cross-entropy, softmax, rmsnorm,
 *                                    swiglu and rope at T = 200..256 against double loops
 * OMP_NUM_THREADS picks the thread count (default: all cores).
 *
 * Shapes: stories260K training (B=8, T=256, D=64, H=8, Hkv=4, F=172, V=512) and
 * stories15M (B=4, T=256, D=288, H=6, Hkv=6, F=768, V=32000), and SmolLM2-135M
 * (B=4, T=512, D=576, H=9, Hkv=3, F=1536, V=49152). Each row prints
 * the best and mean milliseconds per call over repeated calls (about 0.3 s of
 * calls after one warm-up) and a rate: GFLOP/s for GEMM and attention (causal
 * attention counts only the visible half of the score matrix: forward
 * 4*Dh FLOPs per visible (query, key) pair, backward 10*Dh), GB/s of compulsory
 * memory traffic for the rest. Backward kernels accumulate into their outputs,
 * so repeated calls keep adding; the values grow but stay finite. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cpu/cpu.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* xorshift64*: fills benchmark inputs reproducibly. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float uniform(float lo, float hi) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t r = rng_state * 0x2545F4914F6CDD1Dull;
    return lo + (hi - lo) * (float)(r >> 40) * (1.0f / 16777216.0f);
}

static float *rand_buf(int64_t n, float lo, float hi) {
    void *mem = NULL;
    /* 64-byte aligned like rt_cpu_malloc (which lives in memory.c, not linked here) */
    float *p = posix_memalign(&mem, 64, (size_t)n * sizeof(float)) == 0 ? mem : NULL;
    if (!p) {
        fprintf(stderr, "bench_kernels: out of memory (%lld floats)\n", (long long)n);
        exit(1);
    }
    for (int64_t i = 0; i < n; i++) p[i] = uniform(lo, hi);
    return p;
}

typedef struct shape {
    const char *name;
    int64_t B, T, D, H, Hkv, F, V;
} shape;

/* Everything one shape's kernels read and write. */
typedef struct bufs {
    shape s;
    int64_t N, Dh;
    float *x, *w, *y, *dy, *dx, *dw, *rstd;          /* [N,D], [D] */
    float *gate, *up, *h, *dh, *dgate, *dup;          /* [N,F] */
    float *q, *k, *v, *o, *lse, *dq, *dk, *dv, *dout; /* attention */
    float *logits, *dlogits, *sm_y, *ce_nll, *ce_lse; /* [N,V] */
    float *Wf, *Wv, *Wd, *dWf;                        /* [F,D], [V,D], [D,D], [F,D] */
    int32_t *pos, *labels;
} bufs;

static bufs make_bufs(shape s) {
    bufs b = {.s = s, .N = s.B * s.T, .Dh = s.D / s.H};
    int64_t N = b.N, D = s.D, F = s.F, V = s.V, kvd = s.Hkv * b.Dh;
    b.x = rand_buf(N * D, -1, 1);
    b.w = rand_buf(D, 0.5f, 1.5f);
    b.y = rand_buf(N * D, 0, 0);
    b.dy = rand_buf(N * D, -1, 1);
    b.dx = rand_buf(N * D, 0, 0);
    b.dw = rand_buf(D, 0, 0);
    b.rstd = rand_buf(N, 0, 0);
    b.gate = rand_buf(N * F, -4, 4);
    b.up = rand_buf(N * F, -1, 1);
    b.h = rand_buf(N * F, 0, 0);
    b.dh = rand_buf(N * F, -1, 1);
    b.dgate = rand_buf(N * F, 0, 0);
    b.dup = rand_buf(N * F, 0, 0);
    b.q = rand_buf(N * D, -2, 2);
    b.k = rand_buf(N * kvd, -2, 2);
    b.v = rand_buf(N * kvd, -1, 1);
    b.o = rand_buf(N * D, 0, 0);
    b.lse = rand_buf(s.B * s.H * s.T, 0, 0);
    b.dq = rand_buf(N * D, 0, 0);
    b.dk = rand_buf(N * kvd, 0, 0);
    b.dv = rand_buf(N * kvd, 0, 0);
    b.dout = rand_buf(N * D, -1, 1);
    b.logits = rand_buf(N * V, -6, 6);
    b.dlogits = rand_buf(N * V, 0, 0);
    b.sm_y = rand_buf(N * V, 0, 0);
    b.ce_nll = rand_buf(N, 0, 0);
    b.ce_lse = rand_buf(N, 0, 0);
    b.Wf = rand_buf(F * D, -0.1f, 0.1f);
    b.Wv = rand_buf(V * D, -0.1f, 0.1f);
    b.Wd = rand_buf(D * D, -0.1f, 0.1f);
    b.dWf = rand_buf(F * D, 0, 0);
    b.pos = malloc((size_t)N * sizeof(int32_t));
    b.labels = malloc((size_t)N * sizeof(int32_t));
    if (!b.pos || !b.labels) exit(1);
    for (int64_t i = 0; i < N; i++) {
        b.pos[i] = (int32_t)(i % s.T);
        b.labels[i] = (int32_t)((i * 7919) % V);
    }
    /* The attention backward needs a consistent forward (out, lse). */
    rt_cpu_attention(s.B, s.T, s.T, s.H, s.Hkv, b.Dh, b.q, b.k, b.v, NULL, b.o, b.lse);
    rt_cpu_cross_entropy(N, V, b.logits, b.labels, -100, b.ce_nll, b.ce_lse);
    return b;
}

static void free_bufs(bufs *b) {
    float *all[] = {b->x,   b->w,      b->y,      b->dy,     b->dx,   b->dw,    b->rstd,
                    b->gate, b->up,    b->h,      b->dh,     b->dgate, b->dup,  b->q,
                    b->k,   b->v,      b->o,      b->lse,    b->dq,   b->dk,    b->dv,
                    b->dout, b->logits, b->dlogits, b->sm_y, b->ce_nll, b->ce_lse, b->Wf, b->Wv,
                    b->Wd,  b->dWf};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    free(b->pos);
    free(b->labels);
}

/* ---- the rows of the table: one kernel call each ---- */

typedef enum { K_ATT, K_ATT_BWD, K_CE, K_CE_BWD, K_SM, K_SM_BWD, K_RMS, K_RMS_BWD, K_SWI,
               K_SWI_BWD, K_ROPE, K_ROPE_BWD, K_GEMM_QO, K_GEMM_FF, K_GEMM_FF_DX, K_GEMM_FF_DW,
               K_GEMM_CLS, K_GEMM_CLS_DX, K_COUNT } kernel_id;

static const char *kernel_name[K_COUNT] = {
    "attention fwd",  "attention bwd",   "cross_entropy fwd", "cross_entropy bwd",
    "softmax fwd [N,V]", "softmax bwd [N,V]", "rmsnorm fwd",  "rmsnorm bwd",
    "swiglu fwd",     "swiglu bwd",      "rope fwd",          "rope bwd (inverse)",
    "gemm x@Wq^T [N,D]x[D,D]", "gemm x@W1^T [N,D]x[F,D]", "gemm dx=dh@W1 [N,F]x[F,D]",
    "gemm dW1+=dh^T@x [F,N]x[N,D]", "gemm logits x@E^T [N,D]x[V,D]",
    "gemm dx=dlogits@E [N,V]x[V,D]"};

static void run_kernel(kernel_id id, bufs *b) {
    const shape *s = &b->s;
    int64_t N = b->N, D = s->D, F = s->F, V = s->V;
    switch (id) {
    case K_ATT:
        rt_cpu_attention(s->B, s->T, s->T, s->H, s->Hkv, b->Dh, b->q, b->k, b->v, NULL, b->o,
                         b->lse);
        break;
    case K_ATT_BWD:
        rt_cpu_attention_bwd(s->B, s->T, s->H, s->Hkv, b->Dh, b->q, b->k, b->v, NULL, b->o,
                             b->lse, b->dout, b->dq, b->dk, b->dv);
        break;
    case K_CE: rt_cpu_cross_entropy(N, V, b->logits, b->labels, -100, b->ce_nll, b->ce_lse); break;
    case K_CE_BWD:
        rt_cpu_cross_entropy_bwd(N, V, b->logits, b->labels, -100, b->ce_lse, 1.0f / (float)N,
                                 b->dlogits);
        break;
    case K_SM: rt_cpu_softmax(N, V, b->logits, b->sm_y); break;
    case K_SM_BWD: rt_cpu_softmax_bwd(N, V, b->sm_y, b->logits, b->dlogits); break;
    case K_RMS: rt_cpu_rmsnorm(N, D, b->x, b->w, 1e-5f, b->y, b->rstd); break;
    case K_RMS_BWD: rt_cpu_rmsnorm_bwd(N, D, b->x, b->w, b->rstd, b->dy, b->dx, b->dw); break;
    case K_SWI: rt_cpu_swiglu(N * F, b->gate, b->up, b->h); break;
    case K_SWI_BWD: rt_cpu_swiglu_bwd(N * F, b->gate, b->up, b->dh, b->dgate, b->dup); break;
    case K_ROPE:
        rt_cpu_rope(s->B, s->T, s->H, b->Dh, b->q, b->pos, 10000.0f, RT_ROPE_INTERLEAVED, false,
                    b->dq);
        break;
    case K_ROPE_BWD:
        rt_cpu_rope(s->B, s->T, s->H, b->Dh, b->dout, b->pos, 10000.0f, RT_ROPE_INTERLEAVED, true,
                    b->dq);
        break;
    case K_GEMM_QO: rt_cpu_gemm(1, false, true, N, D, D, 1, b->x, 0, b->Wd, 0, 0, b->y, 0); break;
    case K_GEMM_FF: rt_cpu_gemm(1, false, true, N, F, D, 1, b->x, 0, b->Wf, 0, 0, b->h, 0); break;
    case K_GEMM_FF_DX: rt_cpu_gemm(1, false, false, N, D, F, 1, b->dh, 0, b->Wf, 0, 1, b->dx, 0); break;
    case K_GEMM_FF_DW: rt_cpu_gemm(1, true, false, F, D, N, 1, b->dh, 0, b->x, 0, 1, b->dWf, 0); break;
    case K_GEMM_CLS:
        rt_cpu_gemm(1, false, true, N, V, D, 1, b->x, 0, b->Wv, 0, 0, b->logits, 0);
        break;
    case K_GEMM_CLS_DX:
        rt_cpu_gemm(1, false, false, N, D, V, 1, b->dlogits, 0, b->Wv, 0, 1, b->dx, 0);
        break;
    default: break;
    }
}

/* Work per call: FLOPs (GEMM, attention) or bytes (the rest). */
static double kernel_work(kernel_id id, const bufs *b, int *is_flops) {
    const shape *s = &b->s;
    double N = (double)b->N, D = (double)s->D, F = (double)s->F, V = (double)s->V;
    double pairs = (double)s->B * (double)s->H * (double)s->T * (double)(s->T + 1) / 2.0;
    *is_flops = 1;
    switch (id) {
    case K_ATT: return 4.0 * (double)b->Dh * pairs;
    case K_ATT_BWD: return 10.0 * (double)b->Dh * pairs;
    case K_GEMM_QO: return 2.0 * N * D * D;
    case K_GEMM_FF: case K_GEMM_FF_DX: case K_GEMM_FF_DW: return 2.0 * N * D * F;
    case K_GEMM_CLS: case K_GEMM_CLS_DX: return 2.0 * N * D * V;
    default: break;
    }
    *is_flops = 0;
    switch (id) {
    case K_CE: return 4.0 * N * V;               /* read logits */
    case K_CE_BWD: return 12.0 * N * V;          /* read logits, read+write dlogits */
    case K_SM: return 8.0 * N * V;               /* read x, write y */
    case K_SM_BWD: return 16.0 * N * V;          /* read y, dy, read+write dx */
    case K_RMS: return 8.0 * N * D;
    case K_RMS_BWD: return 16.0 * N * D;
    case K_SWI: return 12.0 * N * F;
    case K_SWI_BWD: return 28.0 * N * F;
    case K_ROPE: case K_ROPE_BWD: return 8.0 * N * D;
    default: return 0.0;
    }
}

static void bench_shape(shape s, const char *filter) {
    bufs b = make_bufs(s);
    printf("\n%s: B=%lld T=%lld D=%lld H=%lld Hkv=%lld Dh=%lld F=%lld V=%lld, %d threads\n",
           s.name, (long long)s.B, (long long)s.T, (long long)s.D, (long long)s.H,
           (long long)s.Hkv, (long long)b.Dh, (long long)s.F, (long long)s.V,
           omp_get_max_threads());
    printf("  %-32s %10s %10s %12s\n", "kernel", "best ms", "mean ms", "rate");
    for (int id = 0; id < K_COUNT; id++) {
        if (filter && !strstr(kernel_name[id], filter)) continue;
        run_kernel((kernel_id)id, &b); /* warm-up: page faults, thread start */
        double best = 1e30, total = 0.0;
        int reps = 0;
        while (reps < 3 || (total < 0.3 && reps < 1000)) {
            double t0 = now_s();
            run_kernel((kernel_id)id, &b);
            double dt = now_s() - t0;
            best = dt < best ? dt : best;
            total += dt;
            reps++;
        }
        int is_flops;
        double work = kernel_work((kernel_id)id, &b, &is_flops);
        printf("  %-32s %10.3f %10.3f %8.2f %s\n", kernel_name[id], best * 1e3,
               total / reps * 1e3, work / best * 1e-9, is_flops ? "GFLOP/s" : "GB/s");
    }
    free_bufs(&b);
}

/* ---- --check: large shapes against double-precision loops ---- */

static int failures = 0;

static void report(const char *what, double err, double tol) {
    int ok = err <= tol;
    printf("  %-58s max err %.3g (tol %.0e) %s\n", what, err, tol, ok ? "ok" : "FAIL");
    if (!ok) failures++;
}

/* Reference attention over one (b, h): forward out, lse and the gradients
 * of sum(out * dout) (FlashAttention-2 equations, in double). */
static void ref_attention(int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t Dh,
                          const float *q, const float *k, const float *v, const int32_t *seg,
                          const float *dout, double *out, double *lse, double *dq, double *dk,
                          double *dv) {
    const double scale = 1.0 / sqrt((double)Dh);
    double *p = malloc((size_t)T * sizeof(double));
    if (!p) exit(1);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            int64_t kh = h / (H / Hkv);
            for (int64_t i = 0; i < T; i++) {
                const float *qi = q + ((b * T + i) * H + h) * Dh;
                const float *doi = dout + ((b * T + i) * H + h) * Dh;
                double m = -INFINITY, z = 0.0;
                for (int64_t j = 0; j < T; j++) {
                    bool ok = j <= i && (!seg || seg[b * T + j] == seg[b * T + i]);
                    double s = 0.0;
                    for (int64_t d = 0; d < Dh; d++) s += (double)qi[d] * k[((b * T + j) * Hkv + kh) * Dh + d];
                    p[j] = ok ? s * scale : -INFINITY;
                    m = p[j] > m ? p[j] : m;
                }
                for (int64_t j = 0; j < T; j++) z += exp(p[j] - m);
                lse[(b * H + h) * T + i] = m + log(z);
                double *oi = out + ((b * T + i) * H + h) * Dh;
                for (int64_t d = 0; d < Dh; d++) oi[d] = 0.0;
                for (int64_t j = 0; j < T; j++) {
                    p[j] = exp(p[j] - m) / z;
                    for (int64_t d = 0; d < Dh; d++) oi[d] += p[j] * v[((b * T + j) * Hkv + kh) * Dh + d];
                }
                double D = 0.0;
                for (int64_t d = 0; d < Dh; d++) D += doi[d] * oi[d];
                for (int64_t j = 0; j < T; j++) {
                    if (p[j] == 0.0) continue;
                    const int64_t kv = ((b * T + j) * Hkv + kh) * Dh;
                    double dp = 0.0;
                    for (int64_t d = 0; d < Dh; d++) dp += (double)doi[d] * v[kv + d];
                    double ds = p[j] * (dp - D) * scale;
                    for (int64_t d = 0; d < Dh; d++) {
                        dv[kv + d] += p[j] * doi[d];
                        dq[((b * T + i) * H + h) * Dh + d] += ds * k[kv + d];
                        dk[kv + d] += ds * qi[d];
                    }
                }
            }
        }
    free(p);
}

/* max |a - ref| / max(1, max |ref|) */
static double max_err(int64_t n, const float *a, const double *ref) {
    double e = 0.0, scale = 1.0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
    for (int64_t i = 0; i < n; i++) e = fmax(e, fabs((double)a[i] - ref[i]));
    return e / scale;
}

static void check_attention(int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t Dh, bool segs) {
    int64_t nq = B * T * H * Dh, nk = B * T * Hkv * Dh;
    float *q = rand_buf(nq, -3, 3), *k = rand_buf(nk, -3, 3), *v = rand_buf(nk, -1, 1);
    float *dout = rand_buf(nq, -1, 1), *o = rand_buf(nq, 0, 0), *lse = rand_buf(B * H * T, 0, 0);
    float *dq = rand_buf(nq, 0, 0), *dk = rand_buf(nk, 0, 0), *dv = rand_buf(nk, 0, 0);
    double *ro = calloc((size_t)nq, sizeof(double)), *rl = calloc((size_t)(B * H * T), sizeof(double));
    double *rdq = calloc((size_t)nq, sizeof(double)), *rdk = calloc((size_t)nk, sizeof(double));
    double *rdv = calloc((size_t)nk, sizeof(double));
    int32_t *seg = malloc((size_t)(B * T) * sizeof(int32_t));
    if (!ro || !rl || !rdq || !rdk || !rdv || !seg) exit(1);
    /* Packed samples of uneven lengths (37, 100, ...), plus one id reused
     * non-contiguously to check that masking is by equality, not ranges. */
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) seg[b * T + t] = (int32_t)((t + 13 * b) / 37 % 3);
    rt_cpu_attention(B, T, T, H, Hkv, Dh, q, k, v, segs ? seg : NULL, o, lse);
    rt_cpu_attention_bwd(B, T, H, Hkv, Dh, q, k, v, segs ? seg : NULL, o, lse, dout, dq, dk, dv);
    ref_attention(B, T, H, Hkv, Dh, q, k, v, segs ? seg : NULL, dout, ro, rl, rdq, rdk, rdv);
    char what[128];
    const char *tag = segs ? ", segments" : "";
    snprintf(what, sizeof what, "attention out B%lld T%lld H%lld Hkv%lld Dh%lld%s", (long long)B,
             (long long)T, (long long)H, (long long)Hkv, (long long)Dh, tag);
    report(what, max_err(nq, o, ro), 1e-5);
    snprintf(what, sizeof what, "attention lse  (same shape)");
    report(what, max_err(B * H * T, lse, rl), 1e-5);
    report("attention dq   (same shape)", max_err(nq, dq, rdq), 1e-4);
    report("attention dk   (same shape)", max_err(nk, dk, rdk), 1e-4);
    report("attention dv   (same shape)", max_err(nk, dv, rdv), 1e-4);

    /* KV-cache decoding: the last 3 queries against all T keys. */
    int64_t Tq = 3;
    float *oq = rand_buf(B * Tq * H * Dh, 0, 0), *lq = rand_buf(B * H * Tq, 0, 0);
    float *qq = rand_buf(B * Tq * H * Dh, 0, 0);
    for (int64_t b = 0; b < B; b++)
        memcpy(qq + b * Tq * H * Dh, q + (b * T + T - Tq) * H * Dh, (size_t)(Tq * H * Dh) * sizeof(float));
    rt_cpu_attention(B, Tq, T, H, Hkv, Dh, qq, k, v, NULL, oq, lq);
    if (!segs) {
        double e = 0.0, el = 0.0;
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = 0; i < Tq; i++) {
                for (int64_t x = 0; x < H * Dh; x++)
                    e = fmax(e, fabs(oq[(b * Tq + i) * H * Dh + x] - ro[(b * T + T - Tq + i) * H * Dh + x]));
                for (int64_t h = 0; h < H; h++)
                    el = fmax(el, fabs(lq[(b * H + h) * Tq + i] - rl[(b * H + h) * T + T - Tq + i]));
            }
        report("attention decode Tq3 of Tk=T: out", e, 1e-5);
        report("attention decode Tq3 of Tk=T: lse", el, 1e-5);
    }
    free(oq); free(lq); free(qq);
    free(q); free(k); free(v); free(dout); free(o);
    free(lse); free(dq); free(dk); free(dv);
    free(ro); free(rl); free(rdq); free(rdk); free(rdv); free(seg);
}

static void check_softmax_family(int64_t N, int64_t V) {
    float *x = rand_buf(N * V, -8, 8), *y = rand_buf(N * V, 0, 0), *dy = rand_buf(N * V, -1, 1);
    float *dx = rand_buf(N * V, 0, 0), *nll = rand_buf(N, 0, 0), *lse = rand_buf(N, 0, 0);
    double *r = malloc((size_t)(N * V) * sizeof(double)), *rl = malloc((size_t)N * sizeof(double));
    int32_t *lab = malloc((size_t)N * sizeof(int32_t));
    if (!r || !rl || !lab) exit(1);
    for (int64_t i = 0; i < N; i++) {
        lab[i] = i % 5 == 4 ? -100 : (int32_t)((i * 7919) % V);
        double m = -INFINITY, z = 0.0;
        for (int64_t j = 0; j < V; j++) m = fmax(m, x[i * V + j]);
        for (int64_t j = 0; j < V; j++) z += exp(x[i * V + j] - m);
        rl[i] = m + log(z);
    }
    char what[128];
    /* softmax and its backward */
    rt_cpu_softmax(N, V, x, y);
    for (int64_t i = 0; i < N * V; i++) r[i] = exp(x[i] - rl[i / V]);
    snprintf(what, sizeof what, "softmax [%lld,%lld]", (long long)N, (long long)V);
    report(what, max_err(N * V, y, r), 1e-6);
    rt_cpu_softmax_bwd(N, V, y, dy, dx);
    for (int64_t i = 0; i < N; i++) {
        double dot = 0.0;
        for (int64_t j = 0; j < V; j++) dot += (double)dy[i * V + j] * y[i * V + j];
        for (int64_t j = 0; j < V; j++) r[i * V + j] = y[i * V + j] * (dy[i * V + j] - dot);
    }
    report("softmax bwd (same shape)", max_err(N * V, dx, r), 1e-6);
    /* log_softmax */
    rt_cpu_log_softmax(N, V, x, y);
    for (int64_t i = 0; i < N * V; i++) r[i] = x[i] - rl[i / V];
    report("log_softmax (same shape)", max_err(N * V, y, r), 1e-6);
    memset(dx, 0, (size_t)(N * V) * sizeof(float));
    rt_cpu_log_softmax_bwd(N, V, y, dy, dx);
    for (int64_t i = 0; i < N; i++) {
        double s = 0.0;
        for (int64_t j = 0; j < V; j++) s += dy[i * V + j];
        for (int64_t j = 0; j < V; j++) r[i * V + j] = dy[i * V + j] - exp(x[i * V + j] - rl[i]) * s;
    }
    report("log_softmax bwd (same shape)", max_err(N * V, dx, r), 1e-5);
    /* cross-entropy */
    rt_cpu_cross_entropy(N, V, x, lab, -100, nll, lse);
    double e = 0.0, el = 0.0;
    for (int64_t i = 0; i < N; i++) {
        double want = lab[i] == -100 ? 0.0 : rl[i] - x[i * V + lab[i]];
        e = fmax(e, fabs(nll[i] - want) / fmax(1.0, fabs(want)));
        el = fmax(el, fabs(lse[i] - rl[i]) / fmax(1.0, fabs(rl[i])));
    }
    snprintf(what, sizeof what, "cross_entropy nll [%lld,%lld]", (long long)N, (long long)V);
    report(what, e, 1e-6);
    report("cross_entropy lse (same shape)", el, 1e-6);
    memset(dx, 0, (size_t)(N * V) * sizeof(float));
    rt_cpu_cross_entropy_bwd(N, V, x, lab, -100, lse, 0.5f, dx);
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < V; j++)
            r[i * V + j] = lab[i] == -100 ? 0.0 : 0.5 * (exp(x[i * V + j] - rl[i]) - (j == lab[i]));
    report("cross_entropy bwd (same shape)", max_err(N * V, dx, r), 1e-6);
    /* KL(p_t || q_s) at T = 2 with row 1 masked; t = x, s = x + dy */
    float *sv = rand_buf(N * V, 0, 0), *kl = rand_buf(N, 0, 0);
    uint8_t *mask = malloc((size_t)N);
    if (!mask) exit(1);
    for (int64_t i = 0; i < N * V; i++) sv[i] = x[i] + dy[i];
    for (int64_t i = 0; i < N; i++) mask[i] = i != 1;
    rt_cpu_kl_div(N, V, sv, x, 2.0f, mask, kl);
    memset(dx, 0, (size_t)(N * V) * sizeof(float));
    rt_cpu_kl_div_bwd(N, V, sv, x, 2.0f, mask, 0.5f, dx);
    double ek = 0.0;
    for (int64_t i = 0; i < N; i++) {
        double mt = -INFINITY, ms = -INFINITY, zt = 0.0, zs = 0.0, want = 0.0;
        for (int64_t j = 0; j < V; j++) {
            mt = fmax(mt, 0.5 * x[i * V + j]);
            ms = fmax(ms, 0.5 * sv[i * V + j]);
        }
        for (int64_t j = 0; j < V; j++) {
            zt += exp(0.5 * x[i * V + j] - mt);
            zs += exp(0.5 * sv[i * V + j] - ms);
        }
        for (int64_t j = 0; j < V; j++) {
            double lp = 0.5 * x[i * V + j] - mt - log(zt), lq = 0.5 * sv[i * V + j] - ms - log(zs);
            want += exp(lp) * (lp - lq);
            r[i * V + j] = mask[i] ? 0.5 * 0.5 * (exp(lq) - exp(lp)) : 0.0;
        }
        if (!mask[i]) want = 0.0;
        ek = fmax(ek, fabs(kl[i] - want));
    }
    report("kl_div T=2, one row masked (same shape)", ek, 1e-6);
    report("kl_div bwd (same shape)", max_err(N * V, dx, r), 1e-6);
    free(sv); free(kl); free(mask);
    free(x); free(y); free(dy); free(dx); free(nll);
    free(lse); free(r); free(rl); free(lab);
}

/* rmsnorm, swiglu and rope at a 15M-like shape with odd tails. */
static void check_rows(int64_t N, int64_t D) {
    float *x = rand_buf(N * D, -2, 2), *w = rand_buf(D, 0.5f, 1.5f), *y = rand_buf(N * D, 0, 0);
    float *rs = rand_buf(N, 0, 0), *dy = rand_buf(N * D, -1, 1), *dx = rand_buf(N * D, 0, 0);
    float *dw = rand_buf(D, 0, 0), *up = rand_buf(N * D, -1, 1), *dup = rand_buf(N * D, 0, 0);
    double *r = calloc((size_t)(N * D), sizeof(double)), *r2 = calloc((size_t)(N * D), sizeof(double));
    double *rw = calloc((size_t)D, sizeof(double));
    if (!r || !r2 || !rw) exit(1);
    char what[128];
    rt_cpu_rmsnorm(N, D, x, w, 1e-5f, y, rs);
    for (int64_t i = 0; i < N; i++) {
        double ss = 0.0, dot = 0.0;
        for (int64_t c = 0; c < D; c++) ss += (double)x[i * D + c] * x[i * D + c];
        double rstd = 1.0 / sqrt(ss / (double)D + 1e-5);
        for (int64_t c = 0; c < D; c++) {
            r[i * D + c] = x[i * D + c] * rstd * w[c];
            dot += (double)dy[i * D + c] * w[c] * x[i * D + c];
            rw[c] += (double)dy[i * D + c] * x[i * D + c] * rstd;
        }
        for (int64_t c = 0; c < D; c++)
            r2[i * D + c] = rstd * (dy[i * D + c] * w[c] - x[i * D + c] * rstd * rstd * dot / (double)D);
    }
    snprintf(what, sizeof what, "rmsnorm [%lld,%lld]", (long long)N, (long long)D);
    report(what, max_err(N * D, y, r), 1e-5);
    rt_cpu_rmsnorm_bwd(N, D, x, w, rs, dy, dx, dw);
    report("rmsnorm bwd dx (same shape)", max_err(N * D, dx, r2), 1e-5);
    report("rmsnorm bwd dw (same shape)", max_err(D, dw, rw), 1e-5);
    /* swiglu */
    rt_cpu_swiglu(N * D, x, up, y);
    for (int64_t i = 0; i < N * D; i++) {
        double g = x[i], s = 1.0 / (1.0 + exp(-g));
        r[i] = g * s * up[i];
        r2[i] = dy[i] * up[i] * (s + g * s * (1.0 - s));
    }
    snprintf(what, sizeof what, "swiglu over %lld", (long long)(N * D));
    report(what, max_err(N * D, y, r), 1e-6);
    memset(dx, 0, (size_t)(N * D) * sizeof(float));
    rt_cpu_swiglu_bwd(N * D, x, up, dy, dx, dup);
    report("swiglu bwd dgate (same size)", max_err(N * D, dx, r2), 1e-6);
    for (int64_t i = 0; i < N * D; i++) r2[i] = dy[i] * x[i] / (1.0 + exp(-(double)x[i]));
    report("swiglu bwd dup (same size)", max_err(N * D, dup, r2), 1e-6);
    /* rope, interleaved and HF, forward then inverse is the identity */
    int64_t T = N / 2, H = 3, Dh = D / H;
    int32_t *pos = malloc((size_t)N * sizeof(int32_t));
    if (!pos) exit(1);
    for (int64_t i = 0; i < N; i++) pos[i] = (int32_t)(i % T);
    for (int layout = 0; layout < 2; layout++) {
        rt_cpu_rope(2, T, H, Dh, x, pos, 10000.0f, layout, false, y);
        for (int64_t t = 0; t < N; t++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t i = 0; i < Dh / 2; i++) {
                    double ang = pos[t] * pow(10000.0, -2.0 * (double)i / (double)Dh);
                    int64_t i0 = layout ? 2 * i : i, i1 = layout ? 2 * i + 1 : i + Dh / 2;
                    int64_t base = (t * H + h) * Dh;
                    double a = x[base + i0], bb = x[base + i1];
                    r[base + i0] = a * cos(ang) - bb * sin(ang);
                    r[base + i1] = bb * cos(ang) + a * sin(ang);
                    if (Dh % 2) r[base + Dh - 1] = x[base + Dh - 1]; /* unpaired */
                }
        snprintf(what, sizeof what, "rope %s [2,%lld,%lld,%lld]", layout ? "interleaved" : "HF",
                 (long long)T, (long long)H, (long long)Dh);
        /* f32 angles at positions up to T: |error| ~ T * ulp */
        report(what, max_err(N * D, y, r), 1e-4);
        rt_cpu_rope(2, T, H, Dh, y, pos, 10000.0f, layout, true, y);
        double e = 0.0;
        for (int64_t i = 0; i < N * D; i++) e = fmax(e, fabs(y[i] - x[i]));
        report("rope inverse(rope(x)) == x (in place)", e, 1e-5);
    }
    free(pos);
    free(x); free(w); free(y); free(rs); free(dy);
    free(dx); free(dw); free(up); free(dup);
    free(r); free(r2); free(rw);
}

/* GEMM split into panels/batches across threads against a naive loop, for
 * every transpose combination, with independent and with broadcast C. */
static void check_gemm(int64_t batch, int64_t M, int64_t N, int64_t K, bool broadcast_c) {
    for (int t = 0; t < 4; t++) {
        bool ta = t & 1, tb = t & 2;
        int64_t sc = broadcast_c ? 0 : M * N;
        float *A = rand_buf(batch * M * K, -1, 1), *Bm = rand_buf(batch * K * N, -1, 1);
        float *C = rand_buf(batch * M * N, -1, 1);
        double *R = malloc((size_t)(batch * M * N) * sizeof(double));
        if (!R) exit(1);
        for (int64_t i = 0; i < batch * M * N; i++) R[i] = 0.5 * C[i]; /* beta = 0.5 */
        for (int64_t b = 0; b < batch; b++)
            for (int64_t r = 0; r < M; r++)
                for (int64_t c = 0; c < N; c++) {
                    double acc = 0.0;
                    for (int64_t kk = 0; kk < K; kk++)
                        acc += (double)A[b * M * K + (ta ? kk * M + r : r * K + kk)] *
                               Bm[b * K * N + (tb ? c * K + kk : kk * N + c)];
                    double *dst = &R[(broadcast_c ? 0 : b * M * N) + r * N + c];
                    /* a broadcast C gets beta applied once per batch item */
                    *dst = broadcast_c && b > 0 ? 0.5 * *dst + 2.0 * acc : *dst + 2.0 * acc;
                }
        rt_cpu_gemm(batch, ta, tb, M, N, K, 2.0f, A, M * K, Bm, K * N, 0.5f, C, sc);
        char what[128];
        snprintf(what, sizeof what, "gemm batch %lld %s [%lld,%lld,%lld] ta=%d tb=%d",
                 (long long)batch, broadcast_c ? "broadcast C" : "", (long long)M, (long long)N,
                 (long long)K, ta, tb);
        report(what, max_err(broadcast_c ? M * N : batch * M * N, C, R), 1e-5);
        free(A); free(Bm); free(C); free(R);
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--check") == 0) {
        printf("kernels against double-precision loops, %d threads:\n", omp_get_max_threads());
        check_attention(2, 200, 4, 2, 8, false);
        check_attention(2, 200, 4, 2, 8, true);
        check_attention(1, 150, 6, 6, 48, false);
        check_attention(1, 150, 6, 3, 48, true);
        check_attention(1, 70, 2, 1, 13, true);
        check_attention(1, 140, 4, 2, 80, false); /* wider than the packed tiles */
        check_attention(1, 140, 4, 2, 80, true);
        check_softmax_family(6, 32000);
        check_softmax_family(7, 173);
        check_rows(512, 291); /* D = 3 heads of 97: odd tails everywhere */
        /* sizes above gemm.c's threading threshold (2^20 multiply-adds) */
        check_gemm(1, 301, 67, 64, false);  /* split by rows */
        check_gemm(1, 37, 290, 100, false); /* split by columns */
        check_gemm(3, 70, 90, 60, false);   /* split by batch */
        check_gemm(3, 130, 90, 100, true);  /* serial batch, panels inside */
        printf("%s\n", failures ? "CHECK FAILED" : "all checks passed");
        return failures ? 1 : 0;
    }
    const char *filter = argc > 1 ? argv[1] : NULL;
    shape s260k = {"stories260K", 8, 256, 64, 8, 4, 172, 512};
    shape s15m = {"stories15M", 4, 256, 288, 6, 6, 768, 32000};
    bench_shape(s260k, filter);
    bench_shape(s15m, filter);
    shape smol = {"SmolLM2-135M", 4, 512, 576, 9, 3, 1536, 49152};
    bench_shape(smol, filter);
    return 0;
}
