// retort — CUDA knowledge-distillation kernels: forward KL, reverse KL and
// generalized JSD between teacher p and student q, over the full vocabulary
// or the teacher's top-k plus a "rest" bucket; their gradients w.r.t. the
// student logits; and the teacher top-k. Semantics: kernels/kernels.h and
// rt_kd_loss in autograd/ops.h. The derivation (h_b, gbar, the rest bucket's
// e_v / R form) is in kernels/cpu/kd.c's header comment; this file does the
// same arithmetic in double, one block per row.
#include <math.h>

#include "kernels/cuda/cuda_internal.h"

using namespace rt_cuda;

enum { KD_FWD = 0, KD_REV = 1, KD_JSD = 2 };

constexpr double kRestEps = 1e-12; // clamp of the rest masses before their logs

struct KdPar {
    int kind;
    double beta, log_beta, log_1mbeta;
};

// JSD at beta 0 / 1 is forward / reverse KL (autograd/ops.h says why).
static KdPar kd_params(int kind, float beta) {
    KdPar k = {kind, (double)beta, 0.0, 0.0};
    if (kind == KD_JSD && beta <= 0.0f) k.kind = KD_FWD;
    if (kind == KD_JSD && beta >= 1.0f) k.kind = KD_REV;
    if (k.kind == KD_JSD) {
        k.log_beta = log(k.beta);
        k.log_1mbeta = log1p(-k.beta);
    }
    return k;
}

__device__ static double logaddexp(double x, double y) {
    double m = x > y ? x : y;
    if (m == -INFINITY) return -INFINITY;
    return m + log1p(exp(-fabs(x - y)));
}

// One bucket's term of D and *h = q_b dD/dq_b (kernels/cpu/kd.c).
__device__ static double kd_term(const KdPar &k, double p, double lp, double q, double lq,
                                 double *h) {
    switch (k.kind) {
    case KD_FWD:
        *h = -p;
        return p > 0 ? p * (lp - lq) : 0.0;
    case KD_REV:
        *h = q > 0 ? q * (lq - lp) : 0.0;
        return *h;
    default: {
        double lm = logaddexp(k.log_beta + lp, k.log_1mbeta + lq);
        *h = q > 0 ? (1.0 - k.beta) * q * (lq - lm) : 0.0;
        return (p > 0 ? k.beta * p * (lp - lm) : 0.0) + *h;
    }
    }
}

// Max of a*x over the row (to *m) and log sum exp(a*x - m): block-collective.
__device__ static double row_lse(int64_t n, const float *x, double a, double *m_out) {
    double m = -INFINITY;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) m = fmax(m, a * x[j]);
    m = block_allreduce(m, Max());
    double s = 0.0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) s += exp(a * x[j] - m);
    s = block_allreduce(s, Sum());
    if (m_out) *m_out = m;
    return m + log(s);
}

static unsigned row_grid(int64_t rows) {
    return (unsigned)(rows < kMaxBlocks ? rows : kMaxBlocks);
}

// ---- full V-way distributions ---------------------------------------------------------

__global__ static void kd_loss_kernel(int64_t N, int64_t V, const float *s, const float *t,
                                      double a, KdPar k, const uint8_t *mask, float *loss) {
    for (int64_t i = blockIdx.x; i < N; i += gridDim.x) {
        if (mask && !mask[i]) {
            if (threadIdx.x == 0) loss[i] = 0.0f;
            continue;
        }
        const float *sr = s + i * V, *tr = t + i * V;
        const double ls = row_lse(V, sr, a, nullptr), lt = row_lse(V, tr, a, nullptr);
        double sum = 0.0, h;
        for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
            const double lp = a * tr[v] - lt, lq = a * sr[v] - ls;
            sum += kd_term(k, exp(lp), lp, exp(lq), lq, &h);
        }
        sum = block_allreduce(sum, Sum());
        if (threadIdx.x == 0) loss[i] = (float)sum;
    }
}

__global__ static void kd_loss_bwd_kernel(int64_t N, int64_t V, const float *s, const float *t,
                                          double a, KdPar k, const uint8_t *mask, double g,
                                          float *ds) {
    for (int64_t i = blockIdx.x; i < N; i += gridDim.x) {
        if (mask && !mask[i]) continue;
        const float *sr = s + i * V, *tr = t + i * V;
        float *dr = ds + i * V;
        const double ls = row_lse(V, sr, a, nullptr), lt = row_lse(V, tr, a, nullptr);
        double gbar = 0.0, h;
        for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
            const double lp = a * tr[v] - lt, lq = a * sr[v] - ls;
            kd_term(k, exp(lp), lp, exp(lq), lq, &h);
            gbar += h;
        }
        gbar = block_allreduce(gbar, Sum());
        for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
            const double lp = a * tr[v] - lt, lq = a * sr[v] - ls, q = exp(lq);
            kd_term(k, exp(lp), lp, q, lq, &h);
            dr[v] += (float)(g * a * (h - q * gbar));
        }
    }
}

void rt_cuda_kd_loss(int64_t N, int64_t V, const float *s, const float *t, float T, int kind,
                     float beta, const uint8_t *mask, float *loss) {
    if (N <= 0 || V <= 0) return;
    kd_loss_kernel<<<row_grid(N), kThreads>>>(N, V, s, t, 1.0 / T, kd_params(kind, beta), mask,
                                              loss);
    RT_CUDA_LAUNCHED();
}

void rt_cuda_kd_loss_bwd(int64_t N, int64_t V, const float *s, const float *t, float T, int kind,
                         float beta, const uint8_t *mask, float g, float *ds) {
    if (N <= 0 || V <= 0) return;
    kd_loss_bwd_kernel<<<row_grid(N), kThreads>>>(N, V, s, t, 1.0 / T, kd_params(kind, beta),
                                                  mask, (double)g, ds);
    RT_CUDA_LAUNCHED();
}

// ---- top-k teacher + rest bucket ---------------------------------------------------------
// Membership of token v in the row's top-k: a bitmap of V bits in dynamic
// shared memory (16 KiB for a 128K vocabulary) when it fits in the default
// 48 KiB (V <= 393216), else a linear search of the row's ids (slow, same
// result).

constexpr size_t kBitmapMaxBytes = 48 * 1024;

struct TopkRow {
    double m, Z, R, ls; // max a*s, sum exp(a*s - m), the same over the rest, logsumexp
};

__device__ static void topk_members(int64_t V, int64_t K, const int32_t *ir, uint32_t *bits) {
    if (!bits) return;
    const int64_t words = (V + 31) / 32;
    for (int64_t w = threadIdx.x; w < words; w += blockDim.x) bits[w] = 0u;
    __syncthreads();
    for (int64_t j = threadIdx.x; j < K; j += blockDim.x)
        atomicOr(&bits[ir[j] >> 5], 1u << (ir[j] & 31));
    __syncthreads();
}

__device__ static bool is_member(int64_t v, int64_t K, const int32_t *ir, const uint32_t *bits) {
    if (bits) return (bits[v >> 5] >> (v & 31)) & 1u;
    for (int64_t j = 0; j < K; j++)
        if (ir[j] == v) return true;
    return false;
}

__device__ static TopkRow topk_scan(int64_t V, int64_t K, const float *sr, const int32_t *ir,
                                    const uint32_t *bits, double a) {
    TopkRow r;
    r.ls = row_lse(V, sr, a, &r.m);
    double Z = 0.0, R = 0.0;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
        const double e = exp(a * sr[v] - r.m);
        Z += e;
        if (!is_member(v, K, ir, bits)) R += e;
    }
    r.Z = block_allreduce(Z, Sum());
    r.R = block_allreduce(R, Sum());
    return r;
}

// The rest bucket's term and *h (both 0 when K == V: the bucket is empty).
// Block-collective (it sums the teacher's top-k mass).
__device__ static double rest_term(const KdPar &k, int64_t V, int64_t K, const float *lpr,
                                   const TopkRow &r, double *h) {
    double P = 0.0;
    for (int64_t j = threadIdx.x; j < K; j += blockDim.x) P += exp((double)lpr[j]);
    P = block_allreduce(P, Sum());
    *h = 0.0;
    if (K >= V) return 0.0;
    const double p_rest = 1.0 - P, q_rest = r.R / r.Z;
    const double lp = log(fmax(p_rest, kRestEps));
    const double lq = r.R > 0 ? fmax(log(r.R) - log(r.Z), log(kRestEps)) : log(kRestEps);
    return kd_term(k, fmax(p_rest, 0.0), lp, q_rest, lq, h);
}

__global__ static void kd_topk_loss_kernel(int64_t N, int64_t V, int64_t K, const float *s,
                                           const int32_t *ids, const float *logp, double a,
                                           KdPar k, const uint8_t *mask, bool use_bitmap,
                                           float *loss) {
    extern __shared__ uint32_t bitmap[];
    uint32_t *bits = use_bitmap ? bitmap : nullptr;
    for (int64_t i = blockIdx.x; i < N; i += gridDim.x) {
        if (mask && !mask[i]) {
            if (threadIdx.x == 0) loss[i] = 0.0f;
            continue;
        }
        const float *sr = s + i * V, *lpr = logp + i * K;
        const int32_t *ir = ids + i * K;
        __syncthreads(); // the previous row's readers are done with the bitmap
        topk_members(V, K, ir, bits);
        const TopkRow r = topk_scan(V, K, sr, ir, bits, a);
        double h;
        const double rest = rest_term(k, V, K, lpr, r, &h);
        double sum = 0.0;
        for (int64_t j = threadIdx.x; j < K; j += blockDim.x) {
            const double lp = lpr[j], lq = a * sr[ir[j]] - r.ls;
            sum += kd_term(k, exp(lp), lp, exp(lq), lq, &h);
        }
        sum = block_allreduce(sum, Sum());
        if (threadIdx.x == 0) loss[i] = (float)(rest + sum);
    }
}

__global__ static void kd_topk_bwd_kernel(int64_t N, int64_t V, int64_t K, const float *s,
                                          const int32_t *ids, const float *logp, double a,
                                          KdPar k, const uint8_t *mask, double g,
                                          bool use_bitmap, float *ds) {
    extern __shared__ uint32_t bitmap[];
    uint32_t *bits = use_bitmap ? bitmap : nullptr;
    for (int64_t i = blockIdx.x; i < N; i += gridDim.x) {
        if (mask && !mask[i]) continue;
        const float *sr = s + i * V, *lpr = logp + i * K;
        const int32_t *ir = ids + i * K;
        float *dr = ds + i * V;
        __syncthreads();
        topk_members(V, K, ir, bits);
        const TopkRow r = topk_scan(V, K, sr, ir, bits, a);
        double h_rest, h;
        rest_term(k, V, K, lpr, r, &h_rest);
        double gsum = 0.0;
        for (int64_t j = threadIdx.x; j < K; j += blockDim.x) {
            const double lp = lpr[j], lq = a * sr[ir[j]] - r.ls;
            kd_term(k, exp(lp), lp, exp(lq), lq, &h);
            gsum += h;
        }
        const double gbar = h_rest + block_allreduce(gsum, Sum());
        // Rest members and top-k members are disjoint elements of dr, and
        // the ids of a row are distinct, so no two threads write one element.
        if (K < V) { // rest members: dz_v = e_v (h_rest / R - gbar / Z)
            const double c = (r.R > 0 ? h_rest / r.R : 0.0) - gbar / r.Z;
            for (int64_t v = threadIdx.x; v < V; v += blockDim.x)
                if (!is_member(v, K, ir, bits)) dr[v] += (float)(g * a * exp(a * sr[v] - r.m) * c);
        }
        for (int64_t j = threadIdx.x; j < K; j += blockDim.x) {
            const double lp = lpr[j], lq = a * sr[ir[j]] - r.ls, q = exp(lq);
            kd_term(k, exp(lp), lp, q, lq, &h);
            dr[ir[j]] += (float)(g * a * (h - q * gbar));
        }
    }
}

// Shared bytes of the membership bitmap, 0 when it is too big (linear search).
static size_t bitmap_bytes(int64_t V) {
    const size_t bytes = (size_t)((V + 31) / 32) * sizeof(uint32_t);
    return bytes <= kBitmapMaxBytes ? bytes : 0;
}

void rt_cuda_kd_topk_loss(int64_t N, int64_t V, int64_t K, const float *s, const int32_t *ids,
                          const float *logp, float T, int kind, float beta, const uint8_t *mask,
                          float *loss) {
    if (N <= 0 || V <= 0) return;
    const size_t smem = bitmap_bytes(V);
    kd_topk_loss_kernel<<<row_grid(N), kThreads, smem>>>(N, V, K, s, ids, logp, 1.0 / T,
                                                         kd_params(kind, beta), mask, smem > 0,
                                                         loss);
    RT_CUDA_LAUNCHED();
}

void rt_cuda_kd_topk_loss_bwd(int64_t N, int64_t V, int64_t K, const float *s,
                              const int32_t *ids, const float *logp, float T, int kind,
                              float beta, const uint8_t *mask, float g, float *ds) {
    if (N <= 0 || V <= 0) return;
    const size_t smem = bitmap_bytes(V);
    kd_topk_bwd_kernel<<<row_grid(N), kThreads, smem>>>(N, V, K, s, ids, logp, 1.0 / T,
                                                        kd_params(kind, beta), mask, (double)g,
                                                        smem > 0, ds);
    RT_CUDA_LAUNCHED();
}

// ---- teacher top-k ---------------------------------------------------------------------
// Order (the CPU's): higher value first, ties by lower id; NaN ranks as -inf
// and -0 ties with +0 (the CPU compares as double). Per row:
//   1. radix select (4 passes of 8 bits over an order-preserving u32 key)
//      finds the K-th best key tau and how many entries equal to tau to take;
//   2. entries above tau, and the lowest-id `need` entries equal to tau (an
//      ordered block scan), go to scratch as packed (key, ~id) u64, so that a
//      larger packed value is a better entry and all are distinct;
//   3. each entry's rank = the number of larger packed values (O(K^2 / threads)
//      per row: meant for K up to a few thousand), and the entry is written at
//      its rank with logp = a*t - logsumexp(a*t).

__device__ static uint32_t topk_key(float x) {
    if (x != x) x = -INFINITY;
    if (x == 0.0f) x = 0.0f;
    const uint32_t u = __float_as_uint(x);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__global__ static void kd_topk_kernel(int64_t N, int64_t V, int64_t K, const float *t, double a,
                                      unsigned long long *scratch, int32_t *ids, float *logp) {
    __shared__ unsigned hist[256];
    __shared__ uint32_t sh_prefix;
    __shared__ int64_t sh_need;
    __shared__ unsigned long long sh_pos;
    __shared__ unsigned warp_count[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;

    for (int64_t i = blockIdx.x; i < N; i += gridDim.x) {
        const float *tr = t + i * V;
        unsigned long long *sel = scratch + i * K;

        // 1. radix select
        uint32_t prefix = 0, mask = 0;
        int64_t need = K; // rank of the wanted key among the keys matching prefix
        for (int shift = 24; shift >= 0; shift -= 8) {
            __syncthreads();
            for (int b = threadIdx.x; b < 256; b += blockDim.x) hist[b] = 0;
            __syncthreads();
            for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
                const uint32_t key = topk_key(tr[v]);
                if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
            }
            __syncthreads();
            if (threadIdx.x == 0) {
                int64_t above = 0;
                for (int b = 255; b >= 0; b--) {
                    if (above + hist[b] >= need) {
                        sh_prefix = prefix | ((uint32_t)b << shift);
                        sh_need = need - above;
                        break;
                    }
                    above += hist[b];
                }
            }
            __syncthreads();
            prefix = sh_prefix;
            need = sh_need;
            mask |= 255u << shift;
        }
        const uint32_t tau = prefix;

        // 2. selection: everything above tau (any order), then the first `need`
        // entries equal to tau in id order.
        if (threadIdx.x == 0) sh_pos = 0;
        __syncthreads();
        for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
            const uint32_t key = topk_key(tr[v]);
            if (key > tau)
                sel[atomicAdd(&sh_pos, 1ull)] = (unsigned long long)key << 32 | (uint32_t)~(uint32_t)v;
        }
        const int64_t n_above = K - need;
        int64_t taken = 0;
        for (int64_t v0 = 0; v0 < V && taken < need; v0 += blockDim.x) {
            const int64_t v = v0 + threadIdx.x;
            const bool eq = v < V && topk_key(tr[v]) == tau;
            const unsigned ballot = __ballot_sync(0xffffffffu, eq);
            __syncthreads(); // the previous chunk's readers are done with warp_count
            if (lane == 0) warp_count[warp] = __popc(ballot);
            __syncthreads();
            int64_t before = 0, total = 0;
            for (int w = 0; w < nwarps; w++) {
                if (w < warp) before += warp_count[w];
                total += warp_count[w];
            }
            before += __popc(ballot & ((1u << lane) - 1u));
            if (eq && taken + before < need)
                sel[n_above + taken + before] = (unsigned long long)tau << 32 | (uint32_t)~(uint32_t)v;
            taken += total;
        }
        const double lse = row_lse(V, tr, a, nullptr); // also a barrier: sel is complete

        // 3. rank and write
        for (int64_t e = threadIdx.x; e < K; e += blockDim.x) {
            const unsigned long long pe = sel[e];
            int64_t rank = 0;
            for (int64_t f = 0; f < K; f++) rank += sel[f] > pe;
            const int32_t id = (int32_t)~(uint32_t)(pe & 0xffffffffull);
            ids[i * K + rank] = id;
            logp[i * K + rank] = (float)(a * tr[id] - lse);
        }
        __syncthreads(); // sel of this row is read before a next row of this block
    }
}

void rt_cuda_kd_topk(int64_t N, int64_t V, int64_t K, const float *t, float T, int32_t *ids,
                     float *logp) {
    if (N <= 0 || V <= 0 || K <= 0) return;
    if (K > V || V > 0x7fffffff) {
        RT_CUDA_FAIL("cuda kd_topk: k %lld, vocabulary %lld", (long long)K,
                  (long long)V);
        return;
    }
    auto *sel = (unsigned long long *)scratch((size_t)(N * K) * sizeof(unsigned long long));
    if (!sel) return;
    kd_topk_kernel<<<row_grid(N), kThreads>>>(N, V, K, t, 1.0 / T, sel, ids, logp);
    RT_CUDA_LAUNCHED();
}
