/* retort — CPU elementwise kernels, activations, dropout and permute.
 * Semantics: kernels/kernels.h. All loops are OpenMP-parallel; reductions
 * accumulate in double and are split so that no two threads write the same
 * output element (results do not depend on the thread count).
 *
 * Broadcast operands are walked row by row (b has nb elements, a has n/nb
 * rows of nb) rather than with i % nb per element: a division per element
 * cost more than the arithmetic and kept the loop scalar. The sigmoid of
 * silu/swiglu uses fast_expf so its loops vectorise, and those loops are
 * compiled twice on x86-64, for AVX2+FMA (x86-64-v3) and for the build's
 * baseline, picked per machine at load time (GCC target_clones; helpers
 * forced inline so each copy gets its own vector code). The simple
 * arithmetic loops are memory-bound and stay single-version. */
#include <math.h>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/vec_math.h"


/* Below this many elements an OpenMP region costs more than it saves. */
#define EW_OMP_MIN 16384

void rt_cpu_add(int64_t n, int64_t nb, const float *a, const float *b, float *out) {
    if (nb <= 0 || nb >= n) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= EW_OMP_MIN)
        for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
        return;
    }
#pragma omp parallel for schedule(static) if (n >= EW_OMP_MIN)
    for (int64_t r = 0; r < n / nb; r++)
#pragma omp simd
        for (int64_t c = 0; c < nb; c++) out[r * nb + c] = a[r * nb + c] + b[c];
}

void rt_cpu_mul(int64_t n, int64_t nb, const float *a, const float *b, float *out) {
    if (nb <= 0 || nb >= n) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= EW_OMP_MIN)
        for (int64_t i = 0; i < n; i++) out[i] = a[i] * b[i];
        return;
    }
#pragma omp parallel for schedule(static) if (n >= EW_OMP_MIN)
    for (int64_t r = 0; r < n / nb; r++)
#pragma omp simd
        for (int64_t c = 0; c < nb; c++) out[r * nb + c] = a[r * nb + c] * b[c];
}

void rt_cpu_scale(int64_t n, float alpha, const float *x, float *out) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= EW_OMP_MIN)
    for (int64_t i = 0; i < n; i++) out[i] = alpha * x[i];
}

void rt_cpu_axpy(int64_t n, float alpha, const float *x, float *y) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= EW_OMP_MIN)
    for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

/* Column blocks so every thread owns whole output elements and reads rows
 * contiguously (a plain per-column loop would stride through memory). */
#define SUM_ROWS_BLOCK 64

void rt_cpu_sum_rows(int64_t rows, int64_t cols, const float *x, const float *y, float *out) {
    int64_t nblk = (cols + SUM_ROWS_BLOCK - 1) / SUM_ROWS_BLOCK;
#pragma omp parallel for schedule(static) if (rows * cols >= EW_OMP_MIN)
    for (int64_t blk = 0; blk < nblk; blk++) {
        int64_t c0 = blk * SUM_ROWS_BLOCK;
        int64_t c1 = c0 + SUM_ROWS_BLOCK < cols ? c0 + SUM_ROWS_BLOCK : cols;
        double acc[SUM_ROWS_BLOCK] = {0};
        for (int64_t r = 0; r < rows; r++) {
            const float *xr = x + r * cols + c0;
            if (y) {
                const float *yr = y + r * cols + c0;
#pragma omp simd
                for (int64_t c = 0; c < c1 - c0; c++) acc[c] += (double)(xr[c] * yr[c]);
            } else {
#pragma omp simd
                for (int64_t c = 0; c < c1 - c0; c++) acc[c] += xr[c];
            }
        }
        for (int64_t c = c0; c < c1; c++) out[c] += (float)acc[c - c0];
    }
}

void rt_cpu_mul_acc(int64_t n, int64_t nb, const float *g, const float *b, float *out) {
    if (nb <= 0 || nb >= n) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= EW_OMP_MIN)
        for (int64_t i = 0; i < n; i++) out[i] += g[i] * b[i];
        return;
    }
#pragma omp parallel for schedule(static) if (n >= EW_OMP_MIN)
    for (int64_t r = 0; r < n / nb; r++)
#pragma omp simd
        for (int64_t c = 0; c < nb; c++) out[r * nb + c] += g[r * nb + c] * b[c];
}

/* silu(x) = x * sigmoid(x) (Hendrycks & Gimpel 2016; Elfwing et al. 2017). */
RT_CPU_INLINE float sigmoidf(float x) { return 1.0f / (1.0f + rt_fast_expf(-x)); }

/* d silu / dx = s + x s (1 - s), s = sigmoid(x). */
RT_CPU_INLINE float dsiluf(float x) {
    float s = sigmoidf(x);
    return s * (1.0f + x * (1.0f - s));
}

/* The activations' loops run over spans of EW_SPAN elements: each span is
 * one call of a per-ISA function (see the top of the file). */
#define EW_SPAN 8192

static RT_CPU_CLONES void silu_span(int64_t n, const float *x, float *y) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * sigmoidf(x[i]);
}

static RT_CPU_CLONES void silu_bwd_span(int64_t n, const float *x, const float *dy, float *dx) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * dsiluf(x[i]);
}

static RT_CPU_CLONES void swiglu_span(int64_t n, const float *gate, const float *up, float *y) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] = gate[i] * sigmoidf(gate[i]) * up[i];
}

/* One loop per combination of requested outputs, so no loop tests a
 * pointer per element (which would keep it scalar). */
static RT_CPU_CLONES void swiglu_bwd_span(int64_t n, const float *gate, const float *up,
                                      const float *dy, float *dgate, float *dup) {
    if (dgate && dup) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            const float g = gate[i], s = sigmoidf(g);
            dgate[i] += dy[i] * up[i] * (s * (1.0f + g * (1.0f - s)));
            dup[i] += dy[i] * g * s;
        }
    } else if (dgate) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) dgate[i] += dy[i] * up[i] * dsiluf(gate[i]);
    } else if (dup) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) dup[i] += dy[i] * gate[i] * sigmoidf(gate[i]);
    }
}

void rt_cpu_silu(int64_t n, const float *x, float *y) {
#pragma omp parallel for schedule(static) if (n >= EW_OMP_MIN)
    for (int64_t i0 = 0; i0 < n; i0 += EW_SPAN)
        silu_span(n - i0 < EW_SPAN ? n - i0 : EW_SPAN, x + i0, y + i0);
}

void rt_cpu_silu_bwd(int64_t n, const float *x, const float *dy, float *dx) {
#pragma omp parallel for schedule(static) if (n >= EW_OMP_MIN)
    for (int64_t i0 = 0; i0 < n; i0 += EW_SPAN)
        silu_bwd_span(n - i0 < EW_SPAN ? n - i0 : EW_SPAN, x + i0, dy + i0, dx + i0);
}

void rt_cpu_swiglu(int64_t n, const float *gate, const float *up, float *y) {
#pragma omp parallel for schedule(static) if (n >= EW_OMP_MIN)
    for (int64_t i0 = 0; i0 < n; i0 += EW_SPAN)
        swiglu_span(n - i0 < EW_SPAN ? n - i0 : EW_SPAN, gate + i0, up + i0, y + i0);
}

/* The first contribution: dgate, dup overwritten (uninitialised before). */
static RT_CPU_CLONES void swiglu_bwd_set_span(int64_t n, const float *gate, const float *up,
                                              const float *dy, float *dgate, float *dup) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        const float g = gate[i], s = sigmoidf(g);
        dgate[i] = dy[i] * up[i] * (s * (1.0f + g * (1.0f - s)));
        dup[i] = dy[i] * g * s;
    }
}

void rt_cpu_swiglu_bwd_set(int64_t n, const float *gate, const float *up, const float *dy,
                           float *dgate, float *dup) {
#pragma omp parallel for schedule(static) if (n >= EW_OMP_MIN)
    for (int64_t i0 = 0; i0 < n; i0 += EW_SPAN)
        swiglu_bwd_set_span(n - i0 < EW_SPAN ? n - i0 : EW_SPAN, gate + i0, up + i0, dy + i0,
                            dgate + i0, dup + i0);
}

void rt_cpu_swiglu_bwd(int64_t n, const float *gate, const float *up, const float *dy,
                       float *dgate, float *dup) {
    if (!dgate && !dup) return;
#pragma omp parallel for schedule(static) if (n >= EW_OMP_MIN)
    for (int64_t i0 = 0; i0 < n; i0 += EW_SPAN)
        swiglu_bwd_span(n - i0 < EW_SPAN ? n - i0 : EW_SPAN, gate + i0, up + i0, dy + i0,
                        dgate ? dgate + i0 : NULL, dup ? dup + i0 : NULL);
}

/* splitmix64 (Steele, Lea & Flood 2014, "Fast splittable pseudorandom
 * number generators"; Vigna's splitmix64.c: state += GOLDEN, then this
 * finaliser). Element i of a call with seed s uses output number i
 * (0-based) of a splitmix64 generator seeded with s, i.e. the finaliser of
 * s + (i+1)*GOLDEN; a caller passing s = seed + counter*GOLDEN gets output
 * counter+i of the generator seeded with `seed`: one global stream. */
#define RT_GOLDEN 0x9E3779B97F4A7C15ull

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void rt_cpu_dropout(int64_t n, float p, uint64_t seed, const float *x, float *y) {
    float keep_scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if (n >= EW_OMP_MIN)
    for (int64_t i = 0; i < n; i++) {
        uint64_t h = mix64(seed + (uint64_t)(i + 1) * RT_GOLDEN);
        /* top 24 bits: a uniform float in [0, 1) with every value exact */
        float u = (float)(h >> 40) * (1.0f / 16777216.0f);
        y[i] = u < p ? 0.0f : x[i] * keep_scale;
    }
}

void rt_cpu_permute(int ndim, const int64_t *shape, const int *perm, const float *x, float *out) {
    /* Pad to 4 dims (leading 1s) so one loop nest serves every rank. */
    int64_t in_shape[4] = {1, 1, 1, 1}, in_stride[4], os[4] = {1, 1, 1, 1}, st[4] = {0, 0, 0, 0};
    int pad = 4 - ndim;
    for (int d = 0; d < ndim; d++) in_shape[pad + d] = shape[d];
    in_stride[3] = 1;
    for (int d = 2; d >= 0; d--) in_stride[d] = in_stride[d + 1] * in_shape[d + 1];
    for (int d = 0; d < ndim; d++) {
        os[pad + d] = in_shape[pad + perm[d]];
        st[pad + d] = in_stride[pad + perm[d]];
    }
    int64_t n = os[0] * os[1] * os[2] * os[3];
#pragma omp parallel for collapse(2) schedule(static) if (n >= EW_OMP_MIN)
    for (int64_t a = 0; a < os[0]; a++)
        for (int64_t b = 0; b < os[1]; b++) {
            float *o = out + (a * os[1] + b) * os[2] * os[3];
            const float *xb = x + a * st[0] + b * st[1];
            for (int64_t c = 0; c < os[2]; c++)
                for (int64_t d = 0; d < os[3]; d++) *o++ = xb[c * st[2] + d * st[3]];
        }
}
