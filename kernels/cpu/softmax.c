/* retort — CPU softmax family: softmax, log-softmax, cross-entropy and the
 * distillation KL divergence, all over the last dim of a [rows, cols] block.
 *
 * Every row subtracts its max before exponentiating (so no exp overflows)
 * and accumulates its sums in double; values are stored as f32. Rows are
 * independent, so OpenMP splits them across threads. Semantics: the
 * matching entries of kernels/kernels.h.
 */
#include <math.h>

#include "kernels/cpu/cpu.h"

/* max_j x[j] and log(sum_j exp(x[j] * a)) for a = 1/T, i.e. the logsumexp of
 * the scaled row (T = 1 for plain softmax). */
static double row_lse(int64_t cols, const float *x, double a) {
    double m = -INFINITY;
    for (int64_t j = 0; j < cols; j++) m = fmax(m, a * x[j]);
    double s = 0.0;
    for (int64_t j = 0; j < cols; j++) s += exp(a * x[j] - m);
    return m + log(s);
}

void rt_cpu_softmax(int64_t rows, int64_t cols, const float *x, float *y) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        double lse = row_lse(cols, xr, 1.0);
        for (int64_t j = 0; j < cols; j++) yr[j] = (float)exp(xr[j] - lse);
    }
}

/* dx = y * (dy - sum_j dy_j y_j): the softmax Jacobian applied to dy. */
void rt_cpu_softmax_bwd(int64_t rows, int64_t cols, const float *y, const float *dy, float *dx) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *yr = y + r * cols, *gr = dy + r * cols;
        float *dr = dx + r * cols;
        double dot = 0.0;
        for (int64_t j = 0; j < cols; j++) dot += (double)gr[j] * yr[j];
        for (int64_t j = 0; j < cols; j++) dr[j] += (float)(yr[j] * (gr[j] - dot));
    }
}

void rt_cpu_log_softmax(int64_t rows, int64_t cols, const float *x, float *y) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        double lse = row_lse(cols, xr, 1.0);
        for (int64_t j = 0; j < cols; j++) yr[j] = (float)(xr[j] - lse);
    }
}

/* y = x - lse(x), so dx = dy - softmax(x) * sum_j dy_j, softmax = exp(y). */
void rt_cpu_log_softmax_bwd(int64_t rows, int64_t cols, const float *y, const float *dy,
                            float *dx) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *yr = y + r * cols, *gr = dy + r * cols;
        float *dr = dx + r * cols;
        double sum = 0.0;
        for (int64_t j = 0; j < cols; j++) sum += gr[j];
        for (int64_t j = 0; j < cols; j++) dr[j] += (float)(gr[j] - exp(yr[j]) * sum);
    }
}

void rt_cpu_cross_entropy(int64_t N, int64_t V, const float *logits, const int32_t *labels,
                          int32_t ignore_index, float *nll, float *lse) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) {
        const float *xr = logits + i * V;
        double l = row_lse(V, xr, 1.0);
        lse[i] = (float)l;
        int32_t y = labels[i];
        /* The op validates labels; a stray one here contributes nothing
         * rather than reading outside the row. */
        nll[i] = (y == ignore_index || y < 0 || y >= V) ? 0.0f : (float)(l - xr[y]);
    }
}

void rt_cpu_cross_entropy_bwd(int64_t N, int64_t V, const float *logits, const int32_t *labels,
                              int32_t ignore_index, const float *lse, float g, float *dlogits) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) {
        int32_t y = labels[i];
        if (y == ignore_index || y < 0 || y >= V) continue;
        const float *xr = logits + i * V;
        float *dr = dlogits + i * V;
        double l = lse[i];
        for (int64_t j = 0; j < V; j++) dr[j] += (float)(g * exp(xr[j] - l));
        dr[y] -= g;
    }
}

/* With a = 1/T: log p_t = a*t - lse_t, log q_s = a*s - lse_s, and
 * KL = sum_v p_t (log p_t - log q_s) (Hinton et al. 2015). */
void rt_cpu_kl_div(int64_t N, int64_t V, const float *s, const float *t, float T,
                   const uint8_t *mask, float *kl) {
    const double a = 1.0 / T;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) {
        if (mask && !mask[i]) {
            kl[i] = 0.0f;
            continue;
        }
        const float *sr = s + i * V, *tr = t + i * V;
        double lt = row_lse(V, tr, a), ls = row_lse(V, sr, a);
        double sum = 0.0;
        for (int64_t j = 0; j < V; j++) {
            double logp = a * tr[j] - lt, logq = a * sr[j] - ls;
            sum += exp(logp) * (logp - logq);
        }
        kl[i] = (float)sum;
    }
}

void rt_cpu_kl_div_bwd(int64_t N, int64_t V, const float *s, const float *t, float T,
                       const uint8_t *mask, float g, float *ds) {
    const double a = 1.0 / T;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) {
        if (mask && !mask[i]) continue;
        const float *sr = s + i * V, *tr = t + i * V;
        float *dr = ds + i * V;
        double lt = row_lse(V, tr, a), ls = row_lse(V, sr, a);
        for (int64_t j = 0; j < V; j++) {
            double q = exp(a * sr[j] - ls), p = exp(a * tr[j] - lt);
            dr[j] += (float)(g * a * (q - p));
        }
    }
}
