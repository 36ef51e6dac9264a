/* retort — the CUDA kernel table against the CPU one at realistic shapes
 * (tests/test_ops.c compares them at tiny shapes only: one attention tile,
 * one row chunk), then GPU timings at Llama-3.2-1B training shapes.
 *
 * Built by CMake (target gpu_kernels, CUDA builds only; links no CUDA
 * library: the kernels come from the backend module) and run by bench/gpu.sh:
 *   gpu_kernels            exit 0 when every comparison is within tolerance
 *
 * Comparisons (max |gpu - cpu| / max(1, max |cpu|), or exact where the GPU
 * must reproduce the CPU bit for bit: dropout masks, NF4 values, top-k ids):
 * attention forward/backward over several key tiles with GQA, packed
 * segments, Tq < Tk and Dh 64/128; cross-entropy at V = 32000 with ignored
 * rows; teacher top-k with ties and a NaN; top-k KD loss for the three
 * divergences; GEMM in every transpose combination and a broadcast C
 * accumulating over a batch; RMSNorm / sum_rows over more rows than one
 * reduction chunk; NF4 dequantization of a row range; RoPE; dropout;
 * embedding backward with repeated ids; permute; sumsq; all_finite. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/backend.h"
#include "kernels/fault.h"
#include "kernels/kernels.h"
#include "kernels/nf4.h"
#include "tests/compare.h"

static const rt_kernels *C, *G;
static int failures;

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float uni(float lo, float hi) {
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return lo + (hi - lo) * (float)((rng * 0x2545F4914F6CDD1Dull) >> 40) / 16777216.0f;
}
static float *hrand(int64_t n, float lo, float hi) {
    float *p = malloc((size_t)n * sizeof *p);
    for (int64_t i = 0; i < n; i++) p[i] = uni(lo, hi);
    return p;
}
static void *dup_dev(const void *h, size_t bytes) {
    void *d = G->malloc(bytes);
    G->upload(d, h, bytes);
    return d;
}
static void *down(const void *d, size_t bytes) {
    void *h = malloc(bytes);
    G->download(h, d, bytes);
    return h;
}

/* Compares n floats of device buffer d against host reference ref. */
static void cmp(const char *what, const float *d, const float *ref, int64_t n, double tol) {
    float *g = down(d, (size_t)n * sizeof *g);
    double err = rt_max_abs_rel(g, ref, n); /* NaN-aware: tests/compare.h */
    int ok = err <= tol;
    failures += !ok;
    printf("%-58s %9.2e %s\n", what, err, ok ? "ok" : "FAIL");
    free(g);
}
static void cmp_exact(const char *what, const void *d, const void *ref, size_t bytes) {
    void *g = down(d, bytes);
    int ok = memcmp(g, ref, bytes) == 0;
    failures += !ok;
    printf("%-58s %9s %s\n", what, "exact", ok ? "ok" : "FAIL");
    free(g);
}

static void check_attention(int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t Hkv, int64_t Dh,
                            int use_seg) {
    int64_t nq = B * Tq * H * Dh, nk = B * Tk * Hkv * Dh;
    float *q = hrand(nq, -1, 1), *k = hrand(nk, -1, 1), *v = hrand(nk, -1, 1), *dO = hrand(nq, -1, 1);
    int32_t *seg = malloc((size_t)(B * Tk) * sizeof *seg);
    for (int64_t i = 0; i < B * Tk; i++) seg[i] = (int32_t)((i % Tk) / 100 + (i % Tk > 250));
    const int32_t *sg = use_seg ? seg : NULL;
    float *out = calloc((size_t)nq, 4), *lse = calloc((size_t)(B * H * Tq), 4);
    C->attention(B, Tq, Tk, H, Hkv, Dh, q, k, v, sg, 0, out, lse);
    float *dq_ = dup_dev(q, nq * 4), *dk_ = dup_dev(k, nk * 4), *dv_ = dup_dev(v, nk * 4);
    int32_t *dseg = dup_dev(seg, (size_t)(B * Tk) * 4);
    float *dout = G->malloc(nq * 4), *dlse = G->malloc(B * H * Tq * 4);
    G->attention(B, Tq, Tk, H, Hkv, Dh, dq_, dk_, dv_, use_seg ? dseg : NULL, 0, dout, dlse);
    char name[128];
    snprintf(name, sizeof name, "attention B%lld Tq%lld Tk%lld H%lld/%lld Dh%lld%s out",
             (long long)B, (long long)Tq, (long long)Tk, (long long)H, (long long)Hkv,
             (long long)Dh, use_seg ? " seg" : "");
    cmp(name, dout, out, nq, 1e-4);
    cmp("  lse", dlse, lse, B * H * Tq, 1e-4);
    if (Tq == Tk) {
        /* gradients start from non-zero values: the kernels must accumulate */
        float *gq = hrand(nq, -1, 1), *gk = hrand(nk, -1, 1), *gv = hrand(nk, -1, 1);
        float *dgq = dup_dev(gq, nq * 4), *dgk = dup_dev(gk, nk * 4), *dgv = dup_dev(gv, nk * 4);
        float *ddO = dup_dev(dO, nq * 4);
        C->attention_bwd(B, Tq, H, Hkv, Dh, q, k, v, sg, 0, out, lse, dO, gq, gk, gv);
        G->attention_bwd(B, Tq, H, Hkv, Dh, dq_, dk_, dv_, use_seg ? dseg : NULL, 0, dout, dlse, ddO,
                         dgq, dgk, dgv);
        cmp("  dq", dgq, gq, nq, 1e-3);
        cmp("  dk", dgk, gk, nk, 1e-3);
        cmp("  dv", dgv, gv, nk, 1e-3);
        free(gq), free(gk), free(gv);
        G->free(dgq), G->free(dgk), G->free(dgv), G->free(ddO);
    }
    free(q), free(k), free(v), free(dO), free(seg), free(out), free(lse);
    G->free(dq_), G->free(dk_), G->free(dv_), G->free(dseg), G->free(dout), G->free(dlse);
}

static void check_losses(void) {
    const int64_t N = 64, V = 32000;
    float *x = hrand(N * V, -8, 8);
    int32_t lab[64];
    for (int i = 0; i < N; i++) lab[i] = i % 7 == 3 ? -100 : (int32_t)((i * 7919) % V);
    float nll[64], lse[64], *dx = hrand(N * V, -1, 1);
    float *gx = dup_dev(x, N * V * 4), *gdx = dup_dev(dx, N * V * 4);
    int32_t *glab = dup_dev(lab, sizeof lab);
    float *gnll = G->malloc(sizeof nll), *glse = G->malloc(sizeof lse);
    C->cross_entropy(N, V, x, lab, -100, nll, lse);
    G->cross_entropy(N, V, gx, glab, -100, gnll, glse);
    cmp("cross_entropy N64 V32000 (ignored rows) nll", gnll, nll, N, 1e-4);
    cmp("  lse", glse, lse, N, 1e-4);
    C->cross_entropy_bwd(N, V, x, lab, -100, lse, 0.5f, dx);
    G->cross_entropy_bwd(N, V, gx, glab, -100, glse, 0.5f, gdx);
    cmp("  dlogits", gdx, dx, N * V, 1e-4);

    /* teacher top-k: values on a 0.25 grid (many ties) and one NaN */
    const int64_t n = 16, v = 5000, K = 50;
    float *t = hrand(n * v, -4, 4);
    for (int64_t i = 0; i < n * v; i++) t[i] = roundf(t[i] * 4) / 4;
    t[3 * v + 17] = NAN;
    int32_t *ids = malloc(n * K * 4);
    float *lp = malloc(n * K * 4);
    C->kd_topk(n, v, K, t, 2.0f, ids, lp);
    float *gt = dup_dev(t, n * v * 4), *glp = G->malloc(n * K * 4);
    int32_t *gids = G->malloc(n * K * 4);
    G->kd_topk(n, v, K, gt, 2.0f, gids, glp);
    cmp_exact("kd_topk N16 V5000 K50 (ties, NaN) ids", gids, ids, n * K * 4);
    cmp("  logp", glp, lp, n * K, 1e-4);
    float *s = hrand(n * v, -3, 3), *gs = dup_dev(s, n * v * 4);
    uint8_t mask[16];
    for (int i = 0; i < 16; i++) mask[i] = i != 5;
    uint8_t *gmask = dup_dev(mask, sizeof mask);
    for (int kind = 0; kind < 3; kind++) {
        float loss[16], *gloss = G->malloc(sizeof loss), *ds = hrand(n * v, -1, 1);
        float *gds = dup_dev(ds, n * v * 4);
        char name[96];
        C->kd_topk_loss(n, v, K, s, ids, lp, 2.0f, kind, 0.3f, mask, loss);
        G->kd_topk_loss(n, v, K, gs, gids, glp, 2.0f, kind, 0.3f, gmask, gloss);
        snprintf(name, sizeof name, "kd_topk_loss kind %d loss", kind);
        cmp(name, gloss, loss, n, 1e-4);
        C->kd_topk_loss_bwd(n, v, K, s, ids, lp, 2.0f, kind, 0.3f, mask, 1.5f, ds);
        G->kd_topk_loss_bwd(n, v, K, gs, gids, glp, 2.0f, kind, 0.3f, gmask, 1.5f, gds);
        cmp("  ds", gds, ds, n * v, 1e-4);
        G->free(gloss), G->free(gds), free(ds);
    }
    free(x), free(dx), free(t), free(ids), free(lp), free(s);
    G->free(gx), G->free(gdx), G->free(glab), G->free(gnll), G->free(glse), G->free(gt);
    G->free(glp), G->free(gids), G->free(gs), G->free(gmask);
}

static void check_gemm(void) {
    const int64_t M = 300, N = 200, K = 150;
    for (int t = 0; t < 4; t++) {
        bool ta = t & 1, tb = t & 2;
        float *A = hrand(M * K, -1, 1), *B = hrand(K * N, -1, 1), *Cm = hrand(M * N, -1, 1);
        float *gA = dup_dev(A, M * K * 4), *gB = dup_dev(B, K * N * 4), *gC = dup_dev(Cm, M * N * 4);
        C->gemm(1, ta, tb, M, N, K, 0.75f, A, 0, B, 0, 0.5f, Cm, 0);
        G->gemm(1, ta, tb, M, N, K, 0.75f, gA, 0, gB, 0, 0.5f, gC, 0);
        char name[64];
        snprintf(name, sizeof name, "gemm 300x200x150 ta=%d tb=%d", ta, tb);
        cmp(name, gC, Cm, M * N, 1e-5);
        free(A), free(B), free(Cm), G->free(gA), G->free(gB), G->free(gC);
    }
    /* a broadcast C (strideC 0) accumulating a batch of 4 products */
    float *A = hrand(4 * 64 * 32, -1, 1), *B = hrand(4 * 32 * 48, -1, 1), *Cm = hrand(64 * 48, -1, 1);
    float *gA = dup_dev(A, 4 * 64 * 32 * 4), *gB = dup_dev(B, 4 * 32 * 48 * 4), *gC = dup_dev(Cm, 64 * 48 * 4);
    C->gemm(4, true, false, 64, 48, 32, 1.0f, A, 64 * 32, B, 32 * 48, 1.0f, Cm, 0);
    G->gemm(4, true, false, 64, 48, 32, 1.0f, gA, 64 * 32, gB, 32 * 48, 1.0f, gC, 0);
    cmp("gemm batch 4, broadcast C accumulates", gC, Cm, 64 * 48, 1e-5);
    free(A), free(B), free(Cm), G->free(gA), G->free(gB), G->free(gC);
}

static void check_rest(void) {
    /* RMSNorm over 1000 rows (4 reduction chunks for dw) */
    const int64_t R = 1000, D = 288, n = R * D;
    float *x = hrand(n, -2, 2), *w = hrand(D, 0.5f, 1.5f), *dy = hrand(n, -1, 1);
    float *y = malloc(n * 4), rstd[1000], *dx = hrand(n, -1, 1), *dw = hrand(D, -1, 1);
    float *gx = dup_dev(x, n * 4), *gw = dup_dev(w, D * 4), *gdy = dup_dev(dy, n * 4);
    float *gy = G->malloc(n * 4), *grs = G->malloc(R * 4), *gdx = dup_dev(dx, n * 4), *gdw = dup_dev(dw, D * 4);
    C->rmsnorm(R, D, x, w, 1e-5f, y, rstd);
    G->rmsnorm(R, D, gx, gw, 1e-5f, gy, grs);
    cmp("rmsnorm 1000x288 y", gy, y, n, 1e-5);
    C->rmsnorm_bwd(R, D, x, w, rstd, dy, dx, dw);
    G->rmsnorm_bwd(R, D, gx, gw, grs, gdy, gdx, gdw);
    cmp("  dx", gdx, dx, n, 1e-5);
    cmp("  dw", gdw, dw, D, 1e-5);
    float *sr = hrand(D, -1, 1), *gsr = dup_dev(sr, D * 4);
    C->sum_rows(R, D, x, dy, sr);
    G->sum_rows(R, D, gx, gdy, gsr);
    cmp("sum_rows 1000x288 with y", gsr, sr, D, 1e-5);

    /* RoPE, both layouts, in place on the GPU */
    int32_t pos[2 * 50];
    for (int i = 0; i < 100; i++) pos[i] = (i * 37) % 2048;
    int32_t *gpos = dup_dev(pos, sizeof pos);
    for (int layout = 0; layout < 2; layout++) {
        const int64_t nr = 2 * 50 * 4 * 64;
        float *rx = hrand(nr, -1, 1), *ry = malloc(nr * 4), *grx = dup_dev(rx, nr * 4);
        C->rope(2, 50, 4, 64, rx, pos, 10000.0f, layout, layout == 1, ry);
        G->rope(2, 50, 4, 64, grx, gpos, 10000.0f, layout, layout == 1, grx);
        cmp(layout ? "rope interleaved inverse (in place)" : "rope hf (in place)", grx, ry, nr, 1e-5);
        free(rx), free(ry), G->free(grx);
    }

    /* dropout masks: bit-identical */
    float *dr = malloc(n * 4), *gdr = G->malloc(n * 4);
    C->dropout(n, 0.1f, 12345 + 7 * 0x9E3779B97F4A7C15ull, x, dr);
    G->dropout(n, 0.1f, 12345 + 7 * 0x9E3779B97F4A7C15ull, gx, gdr);
    cmp_exact("dropout p=0.1 (same mask and values)", gdr, dr, n * 4);

    /* embedding backward with repeated ids */
    int32_t ids[300];
    for (int i = 0; i < 300; i++) ids[i] = (i * 13) % 40;
    int32_t *gids = dup_dev(ids, sizeof ids);
    float *dW = hrand(40 * D, -1, 1), *gdW = dup_dev(dW, 40 * D * 4);
    C->embedding_bwd(300, D, 40, ids, dy, dW);
    G->embedding_bwd(300, D, 40, gids, gdy, gdW);
    cmp("embedding_bwd 300 ids (repeats) into 40 rows", gdW, dW, 40 * D, 1e-5);

    /* permute [5,6,7,8] by (2,0,3,1) */
    int64_t shp[4] = {5, 6, 7, 8};
    int perm[4] = {2, 0, 3, 1};
    float *po = malloc(1680 * 4), *gpo = G->malloc(1680 * 4);
    C->permute(4, shp, perm, x, po);
    G->permute(4, shp, perm, gx, gpo);
    cmp_exact("permute [5,6,7,8] (2,0,3,1)", gpo, po, 1680 * 4);

    /* NF4 rows [5, 200) of a [300, 2048] weight, double quantized */
    const int64_t nw = 300 * 2048, nr5 = 195 * 2048;
    float *wf = hrand(nw, -0.1f, 0.1f), *deq = malloc(nr5 * 4), *gdeq = G->malloc(nr5 * 4);
    uint8_t *packed = malloc((size_t)rt_nf4_packed_bytes(nw)), *gp = NULL;
    rt_nf4_state st;
    if (rt_nf4_quantize(wf, nw, 64, true, packed, &st) == RT_OK) {
        gp = dup_dev(packed, (size_t)rt_nf4_packed_bytes(nw));
        C->nf4_dequant_rows(packed, &st, 2048, 5, 200, deq);
        G->nf4_dequant_rows(gp, &st, 2048, 5, 200, gdeq);
        cmp_exact("nf4_dequant_rows [5,200) of 300x2048 (dq, bs 64)", gdeq, deq, nr5 * 4);
        /* same state address, other contents: the device cache must notice */
        st.nested_offset += 0.01f;
        C->nf4_dequant_rows(packed, &st, 2048, 5, 200, deq);
        G->nf4_dequant_rows(gp, &st, 2048, 5, 200, gdeq);
        cmp_exact("  after the state's contents change", gdeq, deq, nr5 * 4);
        rt_nf4_state_free(&st);
    } else {
        failures++;
        printf("nf4 quantize failed\n");
    }

    /* reductions */
    double ss = C->sumsq(n, x), gss = G->sumsq(n, gx);
    int ok = fabs(gss - ss) <= 1e-12 * ss;
    failures += !ok;
    printf("%-58s %9.2e %s\n", "sumsq 288000", fabs(gss - ss) / ss, ok ? "ok" : "FAIL");
    ok = G->all_finite(n, gx);
    x[n / 2] = INFINITY;
    G->upload(gx, x, n * 4);
    ok = ok && !G->all_finite(n, gx);
    failures += !ok;
    printf("%-58s %9s %s\n", "all_finite (finite, then one inf)", "-", ok ? "ok" : "FAIL");

    free(x), free(w), free(dy), free(y), free(dx), free(dw), free(sr), free(dr), free(dW), free(po);
    free(wf), free(deq), free(packed);
    G->free(gx), G->free(gw), G->free(gdy), G->free(gy), G->free(grs), G->free(gdx), G->free(gdw);
    G->free(gsr), G->free(gpos), G->free(gdr), G->free(gids), G->free(gdW), G->free(gpo);
    G->free(gdeq);
    if (gp) G->free(gp);
}

/* ---- timings at Llama-3.2-1B training shapes (B=1, T=2048) ---- */

/* Host clock around a device synchronisation (the kernel table's
 * synchronize entry): the program links no CUDA library itself, the
 * backend module does. Includes one launch gap per call. */
static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}
static float time_ms(void (*fn)(void *), void *arg) {
    fn(arg); /* warm-up */
    G->synchronize();
    int reps = 0;
    double total = 0;
    while (total < 300 && reps < 100) {
        double t0 = now_ms();
        fn(arg);
        G->synchronize();
        total += now_ms() - t0, reps++;
    }
    return (float)(total / reps);
}

typedef struct {
    float *a, *b, *c, *d, *e, *f, *g, *h;
    int32_t *ids;
} bufs;

enum { T = 2048, Dm = 2048, H = 32, HKV = 8, DH = 64, F = 8192, V = 128256 };

static void t_attn(void *p) {
    bufs *b = p;
    G->attention(1, T, T, H, HKV, DH, b->a, b->b, b->c, NULL, 0, b->d, b->e);
}
static void t_attn_bwd(void *p) {
    bufs *b = p;
    G->attention_bwd(1, T, H, HKV, DH, b->a, b->b, b->c, NULL, 0, b->d, b->e, b->d, b->f, b->g, b->h);
}
static void t_gemm(void *p) { /* up projection: [T, Dm] x [F, Dm]^T */
    bufs *b = p;
    G->gemm(1, false, true, T, F, Dm, 1.0f, b->a, 0, b->b, 0, 0.0f, b->c, 0);
}
static void t_ce(void *p) {
    bufs *b = p;
    G->cross_entropy(T, V, b->a, b->ids, -100, b->b, b->c);
}
static void t_ce_bwd(void *p) {
    bufs *b = p;
    G->cross_entropy_bwd(T, V, b->a, b->ids, -100, b->c, 1.0f / T, b->d);
}
static void t_rms(void *p) {
    bufs *b = p;
    G->rmsnorm(T, Dm, b->a, b->b, 1e-5f, b->c, b->d);
}

static float *dev_rand(int64_t n) {
    float *h = hrand(n, -1, 1), *d = dup_dev(h, (size_t)n * 4);
    free(h);
    return d;
}

static void timings(void) {
    printf("\nGPU timings, Llama-3.2-1B shapes (T=%d, H=%d/%d, Dh=%d, F=%d, V=%d):\n", T, H, HKV, DH,
           F, V);
    const int64_t nq = (int64_t)T * H * DH, nk = (int64_t)T * HKV * DH;
    bufs a = {dev_rand(nq), dev_rand(nk), dev_rand(nk), dev_rand(nq), dev_rand(H * T),
              dev_rand(nq), dev_rand(nk), dev_rand(nk), NULL};
    t_attn(&a); /* a real lse for the backward */
    double flop_f = 4.0 * DH * H * ((double)T * (T + 1) / 2), flop_b = 2.5 * flop_f;
    float ms = time_ms(t_attn, &a);
    printf("  %-40s %8.3f ms  %7.1f TFLOP/s\n", "attention forward (causal)", ms, flop_f / ms / 1e9);
    ms = time_ms(t_attn_bwd, &a);
    printf("  %-40s %8.3f ms  %7.1f TFLOP/s\n", "attention backward", ms, flop_b / ms / 1e9);
    G->free(a.a), G->free(a.b), G->free(a.c), G->free(a.d), G->free(a.e), G->free(a.f);
    G->free(a.g), G->free(a.h);

    bufs g = {.a = dev_rand((int64_t)T * Dm), .b = dev_rand((int64_t)F * Dm), .c = dev_rand((int64_t)T * F)};
    ms = time_ms(t_gemm, &g);
    printf("  %-40s %8.3f ms  %7.1f TFLOP/s\n", "gemm 2048x8192x2048 (f32, no TF32)", ms,
           2.0 * T * F * Dm / ms / 1e9);
    ms = time_ms(t_rms, &(bufs){.a = g.a, .b = g.b, .c = g.c, .d = g.c + (int64_t)T * Dm});
    printf("  %-40s %8.3f ms  %7.1f GB/s\n", "rmsnorm 2048x2048", ms, 3.0 * T * Dm * 4 / ms / 1e6);
    G->free(g.a), G->free(g.b), G->free(g.c);

    int32_t *lab = malloc(T * 4);
    for (int i = 0; i < T; i++) lab[i] = (i * 7919) % V;
    bufs c = {.a = dev_rand((int64_t)T * V), .b = dev_rand(T), .c = dev_rand(T), .d = dev_rand((int64_t)T * V)};
    c.ids = dup_dev(lab, T * 4);
    ms = time_ms(t_ce, &c);
    printf("  %-40s %8.3f ms  %7.1f GB/s\n", "cross_entropy 2048x128256", ms,
           (double)T * V * 4 / ms / 1e6);
    ms = time_ms(t_ce_bwd, &c);
    printf("  %-40s %8.3f ms  %7.1f GB/s\n", "cross_entropy_bwd 2048x128256", ms,
           3.0 * T * V * 4 / ms / 1e6);
    G->free(c.a), G->free(c.b), G->free(c.c), G->free(c.d), G->free(c.ids);
    free(lab);
}

int main(void) {
    C = rt_kernels_for(0);
    G = rt_kernels_for(1);
    if (!G) {
        fprintf(stderr, "gpu_kernels: SKIP: %s\n", rt_cuda_module_error());
        return 2;
    }
    if (rt_device_count(1) == 0) {
        fprintf(stderr, "gpu_kernels: SKIP: no CUDA device visible to this process\n");
        return 2;
    }
    printf("%-58s %9s\n", "GPU vs CPU", "max err");
    check_attention(2, 300, 300, 8, 2, 64, 1);
    check_attention(1, 200, 200, 4, 4, 128, 0);
    check_attention(2, 50, 300, 8, 2, 64, 0);
    check_attention(1, 70, 70, 6, 3, 33, 1); /* odd head dim, partial lanes */
    check_losses();
    check_gemm();
    check_rest();
    G->synchronize();
    if (rt_fault_status() != RT_OK) {
        printf("device fault: %s\n", rt_fault_message());
        failures++;
    }
    if (rt_error_message()[0]) printf("last retort error message: %s\n", rt_error_message());
    printf("%d comparison(s) failed\n", failures);
    if (!failures) timings();
    return failures ? 1 : 0;
}
