// retort — CUDA softmax family over the last dim of a [rows, cols] block:
// softmax, log-softmax, cross-entropy and the distillation KL divergence.
// Semantics: kernels/kernels.h; reference behaviour: kernels/cpu/softmax.c,
// whose arithmetic this follows: every row subtracts its max before
// exponentiating, and the exponentials, their sums and the logs are double.
//
// One block per row (grid-stride over rows). Row-level values come from
// block reductions, which every thread of the block joins, so the branches
// that skip a row (ignored label, masked row) are block-uniform.
#include <math.h>

#include "kernels/cuda/cuda_internal.h"

using namespace rt_cuda;

static unsigned row_grid(int64_t rows) {
    return (unsigned)(rows < kMaxBlocks ? rows : kMaxBlocks);
}

// log sum_j exp(a * x[j]) over one row, max-shifted: the CPU's row_lse.
__device__ static double row_lse(int64_t cols, const float *x, double a) {
    double m = -INFINITY;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) m = fmax(m, a * x[j]);
    m = block_allreduce(m, Max());
    double s = 0.0;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += exp(a * x[j] - m);
    s = block_allreduce(s, Sum());
    return m + log(s);
}

// ---- softmax / log-softmax ---------------------------------------------------------

__global__ static void softmax_kernel(int64_t rows, int64_t cols, const float *x, float *y,
                                      bool log_out) {
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        const double lse = row_lse(cols, xr, 1.0);
        for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
            yr[j] = log_out ? (float)(xr[j] - lse) : (float)exp(xr[j] - lse);
    }
}

// softmax:     dx += y * (dy - sum_j dy_j y_j)
// log-softmax: dx += dy - exp(y) * sum_j dy_j
__global__ static void softmax_bwd_kernel(int64_t rows, int64_t cols, const float *y,
                                          const float *dy, float *dx, bool log_in) {
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *yr = y + r * cols, *gr = dy + r * cols;
        float *dr = dx + r * cols;
        double s = 0.0;
        for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
            s += log_in ? (double)gr[j] : (double)gr[j] * yr[j];
        s = block_allreduce(s, Sum());
        for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
            dr[j] += log_in ? (float)(gr[j] - exp((double)yr[j]) * s)
                            : (float)(yr[j] * (gr[j] - s));
    }
}

void rt_cuda_softmax(int64_t rows, int64_t cols, const float *x, float *y) {
    if (rows <= 0 || cols <= 0) return;
    softmax_kernel<<<row_grid(rows), kThreads>>>(rows, cols, x, y, false);
    RT_CUDA_LAUNCHED();
}
void rt_cuda_log_softmax(int64_t rows, int64_t cols, const float *x, float *y) {
    if (rows <= 0 || cols <= 0) return;
    softmax_kernel<<<row_grid(rows), kThreads>>>(rows, cols, x, y, true);
    RT_CUDA_LAUNCHED();
}
void rt_cuda_softmax_bwd(int64_t rows, int64_t cols, const float *y, const float *dy, float *dx) {
    if (rows <= 0 || cols <= 0) return;
    softmax_bwd_kernel<<<row_grid(rows), kThreads>>>(rows, cols, y, dy, dx, false);
    RT_CUDA_LAUNCHED();
}
void rt_cuda_log_softmax_bwd(int64_t rows, int64_t cols, const float *y, const float *dy,
                             float *dx) {
    if (rows <= 0 || cols <= 0) return;
    softmax_bwd_kernel<<<row_grid(rows), kThreads>>>(rows, cols, y, dy, dx, true);
    RT_CUDA_LAUNCHED();
}

// ---- cross-entropy -------------------------------------------------------------------
// A label outside [0, V) (the op validates them) is treated as ignored rather
// than read out of the row, as on the CPU.

__device__ static bool label_used(int32_t y, int32_t ignore_index, int64_t V) {
    return y != ignore_index && y >= 0 && y < V;
}

__global__ static void cross_entropy_kernel(int64_t N, int64_t V, const float *logits,
                                            const int32_t *labels, int32_t ignore_index,
                                            float *nll, float *lse) {
    for (int64_t i = blockIdx.x; i < N; i += gridDim.x) {
        const float *xr = logits + i * V;
        const double l = row_lse(V, xr, 1.0);
        if (threadIdx.x == 0) {
            const int32_t y = labels[i];
            lse[i] = (float)l;
            nll[i] = label_used(y, ignore_index, V) ? (float)(l - xr[y]) : 0.0f;
        }
    }
}

// dx[i,:] += g * (softmax(x_i) - onehot(y_i)); the label's element gets both
// terms from one thread, in the CPU's order (add the softmax, then subtract g).
__global__ static void cross_entropy_bwd_kernel(int64_t N, int64_t V, const float *logits,
                                                const int32_t *labels, int32_t ignore_index,
                                                const float *lse, float g, float *dlogits) {
    for (int64_t i = blockIdx.x; i < N; i += gridDim.x) {
        const int32_t y = labels[i];
        if (!label_used(y, ignore_index, V)) continue; // uniform over the block
        const float *xr = logits + i * V;
        float *dr = dlogits + i * V;
        const double l = lse[i];
        for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
            float v = dr[j] + (float)(g * exp(xr[j] - l));
            if (j == y) v -= g;
            dr[j] = v;
        }
    }
}

void rt_cuda_cross_entropy(int64_t N, int64_t V, const float *logits, const int32_t *labels,
                           int32_t ignore_index, float *nll, float *lse) {
    if (N <= 0 || V <= 0) return;
    cross_entropy_kernel<<<row_grid(N), kThreads>>>(N, V, logits, labels, ignore_index, nll, lse);
    RT_CUDA_LAUNCHED();
}

void rt_cuda_cross_entropy_bwd(int64_t N, int64_t V, const float *logits, const int32_t *labels,
                               int32_t ignore_index, const float *lse, float g, float *dlogits) {
    if (N <= 0 || V <= 0) return;
    cross_entropy_bwd_kernel<<<row_grid(N), kThreads>>>(N, V, logits, labels, ignore_index, lse,
                                                        g, dlogits);
    RT_CUDA_LAUNCHED();
}

// ---- KL(p_t || q_s) at temperature T (Hinton et al. 2015) -------------------------------
// With a = 1/T: log p = a*t - lse_t, log q = a*s - lse_s, all in double.

__global__ static void kl_div_kernel(int64_t N, int64_t V, const float *s, const float *t,
                                     double a, const uint8_t *mask, float *kl) {
    for (int64_t i = blockIdx.x; i < N; i += gridDim.x) {
        if (mask && !mask[i]) {
            if (threadIdx.x == 0) kl[i] = 0.0f;
            continue;
        }
        const float *sr = s + i * V, *tr = t + i * V;
        const double lt = row_lse(V, tr, a), ls = row_lse(V, sr, a);
        double sum = 0.0;
        for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
            const double logp = a * tr[j] - lt, logq = a * sr[j] - ls;
            sum += exp(logp) * (logp - logq);
        }
        sum = block_allreduce(sum, Sum());
        if (threadIdx.x == 0) kl[i] = (float)sum;
    }
}

__global__ static void kl_div_bwd_kernel(int64_t N, int64_t V, const float *s, const float *t,
                                         double a, const uint8_t *mask, float g, float *ds) {
    for (int64_t i = blockIdx.x; i < N; i += gridDim.x) {
        if (mask && !mask[i]) continue;
        const float *sr = s + i * V, *tr = t + i * V;
        float *dr = ds + i * V;
        const double lt = row_lse(V, tr, a), ls = row_lse(V, sr, a);
        for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
            const double q = exp(a * sr[j] - ls), p = exp(a * tr[j] - lt);
            dr[j] += (float)(g * a * (q - p));
        }
    }
}

void rt_cuda_kl_div(int64_t N, int64_t V, const float *s, const float *t, float T,
                    const uint8_t *mask, float *kl) {
    if (N <= 0 || V <= 0) return;
    kl_div_kernel<<<row_grid(N), kThreads>>>(N, V, s, t, 1.0 / T, mask, kl);
    RT_CUDA_LAUNCHED();
}

void rt_cuda_kl_div_bwd(int64_t N, int64_t V, const float *s, const float *t, float T,
                        const uint8_t *mask, float g, float *ds) {
    if (N <= 0 || V <= 0) return;
    kl_div_bwd_kernel<<<row_grid(N), kThreads>>>(N, V, s, t, 1.0 / T, mask, g, ds);
    RT_CUDA_LAUNCHED();
}
