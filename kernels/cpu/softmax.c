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
 */
#include <math.h>

#include "kernels/cpu/cpu.h"

#define SM_BLOCK 256
/* Below this many elements (rows * cols) one thread does it all. */
#define SM_OMP_MIN 32768

/* exp(x) in f32 for SIMD loops: see the full comment in attention.c, which
 * holds the identical first copy (kernels/cpu has no shared private header;
 * keep the copies in step). Range reduction x = n ln2 + r (Cody & Waite),
 * Taylor series of exp(r) to r^7, 2^n in the exponent bits; within 2 ulp;
 * x < -87.33654 (also -inf) gives 0, x > 88.37626 saturates, NaN stays NaN.
 * The range checks use the bit pattern so that gcc if-converts them. */
static inline float fast_expf(float x) {
    const uint32_t lo_bits = 0xC2AEAC4Fu; /* -87.33654f */
    const int32_t hi_bits = 0x42B0C0A5;   /* 88.37626f */
    union { float f; uint32_t u; int32_t i; } v = {.f = x};
    float keep = v.u > lo_bits ? 0.0f : 1.0f;
    keep = (v.u & 0x7FFFFFFFu) > 0x7F800000u ? NAN : keep;
    v.u = v.u > lo_bits ? lo_bits : v.u;
    v.i = v.i > hi_bits ? hi_bits : v.i;
    const float xc = v.f;
    const float shifter = 12582912.0f; /* 1.5 * 2^23: rounds x/ln2 into the low bits */
    const float t = xc * 1.44269504088896341f + shifter;
    const float n = t - shifter;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union { float f; uint32_t u; } tb = {.f = t}, sc;
    sc.u = (tb.u - 0x4B400000u + 127u) << 23;
    return p * sc.f * keep;
}

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* The max m of a*x over a row and sum_j exp(a*x_j - m) (a = 1/T > 0), in one
 * pass: per block, its max, then its exponentials against the running max. */
static void row_max_sumexp(int64_t n, const float *x, float a, float *m_out, double *sum_out) {
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
        for (int64_t j = 0; j < nb; j++) s += fast_expf(a * xb[j] - m);
        sum += s;
    }
    *m_out = m;
    *sum_out = sum;
}

/* logsumexp of a*x over a row, in double. */
static double row_lse(int64_t n, const float *x, float a) {
    float m;
    double sum;
    row_max_sumexp(n, x, a, &m, &sum);
    return (double)m + log(sum);
}

/* sum_j x_j * (y ? y_j : 1): f32 within blocks, double across. */
static double row_dot(int64_t n, const float *x, const float *y) {
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

void rt_cpu_softmax(int64_t rows, int64_t cols, const float *x, float *y) {
#pragma omp parallel for schedule(static) if (rows * cols >= SM_OMP_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols, m;
        double sum;
        row_max_sumexp(cols, xr, 1.0f, &m, &sum);
        const float inv = (float)(1.0 / sum);
#pragma omp simd
        for (int64_t j = 0; j < cols; j++) yr[j] = fast_expf(xr[j] - m) * inv;
    }
}

/* dx = y * (dy - sum_j dy_j y_j): the softmax Jacobian applied to dy. */
void rt_cpu_softmax_bwd(int64_t rows, int64_t cols, const float *y, const float *dy, float *dx) {
#pragma omp parallel for schedule(static) if (rows * cols >= SM_OMP_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *yr = y + r * cols, *gr = dy + r * cols;
        float *dr = dx + r * cols;
        const float dot = (float)row_dot(cols, gr, yr);
#pragma omp simd
        for (int64_t j = 0; j < cols; j++) dr[j] += yr[j] * (gr[j] - dot);
    }
}

void rt_cpu_log_softmax(int64_t rows, int64_t cols, const float *x, float *y) {
#pragma omp parallel for schedule(static) if (rows * cols >= SM_OMP_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols, m;
        double sum;
        row_max_sumexp(cols, xr, 1.0f, &m, &sum);
        /* (x - m) - log(sum): x - m is exact near the max, where it matters */
        const float ls = (float)log(sum);
#pragma omp simd
        for (int64_t j = 0; j < cols; j++) yr[j] = (xr[j] - m) - ls;
    }
}

/* y = x - lse(x), so dx = dy - softmax(x) * sum_j dy_j, softmax = exp(y). */
void rt_cpu_log_softmax_bwd(int64_t rows, int64_t cols, const float *y, const float *dy,
                            float *dx) {
#pragma omp parallel for schedule(static) if (rows * cols >= SM_OMP_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *yr = y + r * cols, *gr = dy + r * cols;
        float *dr = dx + r * cols;
        const float sum = (float)row_dot(cols, gr, NULL);
#pragma omp simd
        for (int64_t j = 0; j < cols; j++) dr[j] += gr[j] - fast_expf(yr[j]) * sum;
    }
}

void rt_cpu_cross_entropy(int64_t N, int64_t V, const float *logits, const int32_t *labels,
                          int32_t ignore_index, float *nll, float *lse) {
#pragma omp parallel for schedule(static) if (N * V >= SM_OMP_MIN)
    for (int64_t i = 0; i < N; i++) {
        const float *xr = logits + i * V;
        const double l = row_lse(V, xr, 1.0f);
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
        const float *xr = logits + i * V;
        float *dr = dlogits + i * V;
        const float l = lse[i];
#pragma omp simd
        for (int64_t j = 0; j < V; j++) dr[j] += g * fast_expf(xr[j] - l);
        dr[y] -= g;
    }
}

/* With a = 1/T: log p_t = a*t - lse_t, log q_s = a*s - lse_s, and
 * KL = sum_v p_t (log p_t - log q_s) (Hinton et al. 2015). The log ratio is
 * formed as a*(t - s) - (lse_t - lse_s), whose rounding error does not grow
 * with the size of the log-probabilities themselves. */
void rt_cpu_kl_div(int64_t N, int64_t V, const float *s, const float *t, float T,
                   const uint8_t *mask, float *kl) {
    const float a = (float)(1.0 / T);
#pragma omp parallel for schedule(static) if (N * V >= SM_OMP_MIN)
    for (int64_t i = 0; i < N; i++) {
        if (mask && !mask[i]) {
            kl[i] = 0.0f;
            continue;
        }
        const float *sr = s + i * V, *tr = t + i * V;
        const double lt = row_lse(V, tr, a), ls = row_lse(V, sr, a);
        const float lt_f = (float)lt, dl = (float)(lt - ls);
        double sum = 0.0;
        for (int64_t j0 = 0; j0 < V; j0 += SM_BLOCK) {
            const int64_t nb = min64(SM_BLOCK, V - j0);
            float bs = 0.0f;
#pragma omp simd reduction(+ : bs)
            for (int64_t j = j0; j < j0 + nb; j++)
                bs += fast_expf(a * tr[j] - lt_f) * (a * (tr[j] - sr[j]) - dl);
            sum += bs;
        }
        kl[i] = (float)sum;
    }
}

void rt_cpu_kl_div_bwd(int64_t N, int64_t V, const float *s, const float *t, float T,
                       const uint8_t *mask, float g, float *ds) {
    const float a = (float)(1.0 / T), ga = g * a;
#pragma omp parallel for schedule(static) if (N * V >= SM_OMP_MIN)
    for (int64_t i = 0; i < N; i++) {
        if (mask && !mask[i]) continue;
        const float *sr = s + i * V, *tr = t + i * V;
        float *dr = ds + i * V;
        const float lt = (float)row_lse(V, tr, a), ls = (float)row_lse(V, sr, a);
#pragma omp simd
        for (int64_t j = 0; j < V; j++)
            dr[j] += ga * (fast_expf(a * sr[j] - ls) - fast_expf(a * tr[j] - lt));
    }
}
