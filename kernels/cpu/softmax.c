/* retort — CPU softmax family: softmax, log-softmax, cross-entropy and the
 * distillation KL divergence, all over the last dim of a [rows, cols] block.
 * Semantics: the matching entries of kernels/kernels.h.
 *
 * Every row subtracts its max before exponentiating, so no exp overflows.
 * Rows are independent, so OpenMP splits them across threads (one thread
 * for small blocks, where starting the team costs more than the work).
 *
 * Speed and precision: exponentials use fast_expf (f32, within 2 ulp,
 * vectorised) instead of libm's double exp, which made a [1024, 32000]
 * cross-entropy 20x slower than memory bandwidth. A row is read in blocks of
 * SM_BLOCK floats (1 KB, stays in L1): the block's max and then its sum of
 * exponentials, rescaling the running sum when the max grows (online
 * softmax, Milakov & Gimelshein 2018), so the logsumexp costs one pass over
 * memory and the gradient one more. Sums are f32 within a block (a few
 * dozen terms per SIMD lane) and double across blocks, so a 32000-term row
 * sum keeps ~1e-7 relative accuracy.
 *
 * Each kernel's per-row work is a function compiled twice on x86-64, for
 * AVX2+FMA (x86-64-v3) and for the build's baseline, picked per machine at
 * load time (GCC target_clones); its helpers are forced inline so that each
 * copy gets its own vector code.
 */
#include <math.h>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/vec_math.h"


#define SM_BLOCK 256
/* Below this many elements (rows * cols) one thread does it all. */
#define SM_OMP_MIN 32768

RT_CPU_INLINE int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* The max m of a*x over a row and sum_j exp(a*x_j - m) (a = 1/T > 0), in one
 * pass: per block, its max, then its exponentials against the running max. */
RT_CPU_INLINE void row_max_sumexp(int64_t n, const float *x, float a, float *m_out, double *sum_out) {
    float m = -INFINITY;
    double sum = 0.0;
    for (int64_t j0 = 0; j0 < n; j0 += SM_BLOCK) {
        const int64_t nb = min64(SM_BLOCK, n - j0);
        const float *xb = x + j0;
        float bm = -INFINITY;
#pragma omp simd reduction(max : bm)
        for (int64_t j = 0; j < nb; j++) bm = bm > xb[j] ? bm : xb[j];
        bm *= a; /* a > 0, so max(a*x) = a*max(x) exactly */
        if (bm == -INFINITY) continue; /* all -inf: adds exp(-inf) = 0 */
        if (bm > m) {
            sum *= exp((double)m - (double)bm); /* 0 for the first block */
            m = bm;
        }
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < nb; j++) s += rt_fast_expf(a * xb[j] - m);
        sum += s;
    }
    *m_out = m;
    *sum_out = sum;
}

/* logsumexp of a*x over a row, in double. */
RT_CPU_INLINE double row_lse(int64_t n, const float *x, float a) {
    float m;
    double sum;
    row_max_sumexp(n, x, a, &m, &sum);
    return (double)m + log(sum);
}

/* sum_j x_j * (y ? y_j : 1): f32 within blocks, double across. */
RT_CPU_INLINE double row_dot(int64_t n, const float *x, const float *y) {
    double total = 0.0;
    for (int64_t j0 = 0; j0 < n; j0 += SM_BLOCK) {
        const int64_t nb = min64(SM_BLOCK, n - j0);
        float s = 0.0f;
        if (y) {
#pragma omp simd reduction(+ : s)
            for (int64_t j = j0; j < j0 + nb; j++) s += x[j] * y[j];
        } else {
#pragma omp simd reduction(+ : s)
            for (int64_t j = j0; j < j0 + nb; j++) s += x[j];
        }
        total += s;
    }
    return total;
}

/* ---- one row of each kernel ---- */

static RT_CPU_CLONES void softmax_row(int64_t cols, const float *x, float *y) {
    float m;
    double sum;
    row_max_sumexp(cols, x, 1.0f, &m, &sum);
    const float inv = (float)(1.0 / sum);
#pragma omp simd
    for (int64_t j = 0; j < cols; j++) y[j] = rt_fast_expf(x[j] - m) * inv;
}

/* dx = y * (dy - sum_j dy_j y_j): the softmax Jacobian applied to dy. */
static RT_CPU_CLONES void softmax_bwd_row(int64_t cols, const float *y, const float *dy, float *dx) {
    const float dot = (float)row_dot(cols, dy, y);
#pragma omp simd
    for (int64_t j = 0; j < cols; j++) dx[j] += y[j] * (dy[j] - dot);
}

static RT_CPU_CLONES void log_softmax_row(int64_t cols, const float *x, float *y) {
    float m;
    double sum;
    row_max_sumexp(cols, x, 1.0f, &m, &sum);
    /* (x - m) - log(sum): x - m is exact near the max, where it matters */
    const float ls = (float)log(sum);
#pragma omp simd
    for (int64_t j = 0; j < cols; j++) y[j] = (x[j] - m) - ls;
}

/* y = x - lse(x), so dx = dy - softmax(x) * sum_j dy_j, softmax = exp(y). */
static RT_CPU_CLONES void log_softmax_bwd_row(int64_t cols, const float *y, const float *dy,
                                          float *dx) {
    const float sum = (float)row_dot(cols, dy, NULL);
#pragma omp simd
    for (int64_t j = 0; j < cols; j++) dx[j] += dy[j] - rt_fast_expf(y[j]) * sum;
}

static RT_CPU_CLONES double lse_row(int64_t cols, const float *x, float a) {
    return row_lse(cols, x, a);
}

/* dx += g * softmax(x), given the row's lse */
static RT_CPU_CLONES void softmax_scaled_acc_row(int64_t cols, const float *x, float lse, float g,
                                             float *dx) {
#pragma omp simd
    for (int64_t j = 0; j < cols; j++) dx[j] += g * rt_fast_expf(x[j] - lse);
}

/* With a = 1/T: log p_t = a*t - lse_t, log q_s = a*s - lse_s, and
 * KL = sum_v p_t (log p_t - log q_s) (Hinton et al. 2015). The log ratio is
 * formed as a*(t - s) - (lse_t - lse_s), whose rounding error does not grow
 * with the size of the log-probabilities themselves. */
static RT_CPU_CLONES float kl_row(int64_t V, const float *s, const float *t, float a) {
    const double lt = row_lse(V, t, a), ls = row_lse(V, s, a);
    const float lt_f = (float)lt, dl = (float)(lt - ls);
    double sum = 0.0;
    for (int64_t j0 = 0; j0 < V; j0 += SM_BLOCK) {
        const int64_t nb = min64(SM_BLOCK, V - j0);
        float bs = 0.0f;
#pragma omp simd reduction(+ : bs)
        for (int64_t j = j0; j < j0 + nb; j++)
            bs += rt_fast_expf(a * t[j] - lt_f) * (a * (t[j] - s[j]) - dl);
        sum += bs;
    }
    return (float)sum;
}

/* ds += g * a * (q_s - p_t) */
static RT_CPU_CLONES void kl_bwd_row(int64_t V, const float *s, const float *t, float a, float g,
                                 float *ds) {
    const float lt = (float)row_lse(V, t, a), ls = (float)row_lse(V, s, a), ga = g * a;
#pragma omp simd
    for (int64_t j = 0; j < V; j++)
        ds[j] += ga * (rt_fast_expf(a * s[j] - ls) - rt_fast_expf(a * t[j] - lt));
}

/* ---- the kernels: rows split across threads ---- */

void rt_cpu_softmax(int64_t rows, int64_t cols, const float *x, float *y) {
#pragma omp parallel for schedule(static) if (rows * cols >= SM_OMP_MIN)
    for (int64_t r = 0; r < rows; r++) softmax_row(cols, x + r * cols, y + r * cols);
}

void rt_cpu_softmax_bwd(int64_t rows, int64_t cols, const float *y, const float *dy, float *dx) {
#pragma omp parallel for schedule(static) if (rows * cols >= SM_OMP_MIN)
    for (int64_t r = 0; r < rows; r++)
        softmax_bwd_row(cols, y + r * cols, dy + r * cols, dx + r * cols);
}

void rt_cpu_log_softmax(int64_t rows, int64_t cols, const float *x, float *y) {
#pragma omp parallel for schedule(static) if (rows * cols >= SM_OMP_MIN)
    for (int64_t r = 0; r < rows; r++) log_softmax_row(cols, x + r * cols, y + r * cols);
}

void rt_cpu_log_softmax_bwd(int64_t rows, int64_t cols, const float *y, const float *dy,
                            float *dx) {
#pragma omp parallel for schedule(static) if (rows * cols >= SM_OMP_MIN)
    for (int64_t r = 0; r < rows; r++)
        log_softmax_bwd_row(cols, y + r * cols, dy + r * cols, dx + r * cols);
}

void rt_cpu_cross_entropy(int64_t N, int64_t V, const float *logits, const int32_t *labels,
                          int32_t ignore_index, float *nll, float *lse) {
#pragma omp parallel for schedule(static) if (N * V >= SM_OMP_MIN)
    for (int64_t i = 0; i < N; i++) {
        const float *xr = logits + i * V;
        const double l = lse_row(V, xr, 1.0f);
        lse[i] = (float)l;
        int32_t y = labels[i];
        /* The op validates labels; a stray one here contributes nothing
         * rather than reading outside the row. */
        nll[i] = (y == ignore_index || y < 0 || y >= V) ? 0.0f : (float)(l - xr[y]);
    }
}

void rt_cpu_cross_entropy_bwd(int64_t N, int64_t V, const float *logits, const int32_t *labels,
                              int32_t ignore_index, const float *lse, float g, float *dlogits) {
#pragma omp parallel for schedule(static) if (N * V >= SM_OMP_MIN)
    for (int64_t i = 0; i < N; i++) {
        int32_t y = labels[i];
        if (y == ignore_index || y < 0 || y >= V) continue;
        softmax_scaled_acc_row(V, logits + i * V, lse[i], g, dlogits + i * V);
        dlogits[i * V + y] -= g;
    }
}

void rt_cpu_kl_div(int64_t N, int64_t V, const float *s, const float *t, float T,
                   const uint8_t *mask, float *kl) {
    const float a = (float)(1.0 / T);
#pragma omp parallel for schedule(static) if (N * V >= SM_OMP_MIN)
    for (int64_t i = 0; i < N; i++)
        kl[i] = mask && !mask[i] ? 0.0f : kl_row(V, s + i * V, t + i * V, a);
}

void rt_cpu_kl_div_bwd(int64_t N, int64_t V, const float *s, const float *t, float T,
                       const uint8_t *mask, float g, float *ds) {
    const float a = (float)(1.0 / T);
#pragma omp parallel for schedule(static) if (N * V >= SM_OMP_MIN)
    for (int64_t i = 0; i < N; i++)
        if (!mask || mask[i]) kl_bwd_row(V, s + i * V, t + i * V, a, g, ds + i * V);
}
