// retort — what the CUDA kernel files share: launch helpers, warp/block
// reductions, a scratch buffer, and the entries of rt_kernels_cuda (each
// defined in the .cu file named beside it; table.cu puts them in the table).
//
// Conventions of every file here:
//   - Everything runs on the legacy default stream, so kernels, cuBLAS calls
//     and the cudaMemcpy of k->upload / k->download are ordered with each
//     other and a download sees every earlier kernel's result.
//   - Kernels cannot return a status (kernels.h entries are void): a failed
//     launch, a failed library call or a refused shape records the process's
//     device fault (kernels/fault.h, via cuda_check.h), which the ctx turns
//     into an error at the next op; the kernel returns without writing.
//   - Loops are grid-stride loops over int64_t indices, so any n works with
//     a capped grid.
//   - Sums that the CPU accumulates in double are accumulated in double here
//     too, and every reduction adds its partial sums in a fixed order, so a
//     run is reproducible (the exceptions, which use atomicAdd, say so).
#ifndef RT_CUDA_INTERNAL_H
#define RT_CUDA_INTERNAL_H

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/kernels.h"

namespace rt_cuda {

constexpr int kThreads = 256;          // default block size
constexpr int64_t kMaxBlocks = 65536;  // grid cap for grid-stride loops

inline unsigned grid_for(int64_t n, int threads = kThreads) {
    int64_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    return (unsigned)(b < kMaxBlocks ? b : kMaxBlocks);
}

// Records a failed launch (bad configuration, too much shared memory).
#define RT_CUDA_LAUNCHED() rt_cuda_after_launch(__func__, __FILE__, __LINE__)

#define RT_GRID_STRIDE(i, n)                                                        \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);       \
         i += (int64_t)gridDim.x * blockDim.x)

struct Sum {
    template <typename T> __device__ T operator()(T a, T b) const { return a + b; }
};
// fmax ignores a NaN operand, as the CPU's fmax-based row maxima do.
struct Max {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
    __device__ double operator()(double a, double b) const { return fmax(a, b); }
};

template <typename T, typename Op> __device__ T warp_allreduce(T v, Op op) {
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Reduces v over the whole block (blockDim.x a multiple of 32, <= 1024) and
// returns the result to every thread. The warps' partials are combined in
// warp order, so the result does not depend on scheduling. Every thread of
// the block must call it (it synchronises); back-to-back calls are safe.
template <typename T, typename Op> __device__ T block_allreduce(T v, Op op) {
    __shared__ T part[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_allreduce(v, op);
    __syncthreads(); // an earlier call's readers are done with part[]
    if (lane == 0) part[warp] = v;
    __syncthreads();
    T r = part[0];
    for (int w = 1; w < nwarps; w++) r = op(r, part[w]);
    return r;
}

// A device buffer of at least `bytes`, grown on demand and kept for the
// process (one buffer: callers use it only between their own launches, which
// the default stream orders). NULL (message set) when out of memory.
void *scratch(size_t bytes);

// Sets a kernel's dynamic shared memory limit when it needs more than the
// default 48 KiB; false (message set) if the device cannot give it.
bool allow_smem(const void *kernel, size_t bytes);

} // namespace rt_cuda

// ---- the table's entries (kernels/kernels.h has their semantics) ----------

// elementwise.cu
void rt_cuda_add(int64_t n, int64_t nb, const float *a, const float *b, float *out);
void rt_cuda_mul(int64_t n, int64_t nb, const float *a, const float *b, float *out);
void rt_cuda_scale(int64_t n, float alpha, const float *x, float *out);
void rt_cuda_axpy(int64_t n, float alpha, const float *x, float *y);
void rt_cuda_sum_rows(int64_t rows, int64_t cols, const float *x, const float *y, float *out);
void rt_cuda_mul_acc(int64_t n, int64_t nb, const float *g, const float *b, float *out);
void rt_cuda_silu(int64_t n, const float *x, float *y);
void rt_cuda_silu_bwd(int64_t n, const float *x, const float *dy, float *dx);
void rt_cuda_swiglu(int64_t n, const float *gate, const float *up, float *y);
void rt_cuda_swiglu_bwd(int64_t n, const float *gate, const float *up, const float *dy,
                        float *dgate, float *dup);
void rt_cuda_dropout(int64_t n, float p, uint64_t seed, const float *x, float *y);
void rt_cuda_permute(int ndim, const int64_t *shape, const int *perm, const float *x, float *out);
double rt_cuda_sumsq(int64_t n, const float *x);
bool rt_cuda_all_finite(int64_t n, const float *x);
// RMSNorm's weight gradient dw[c] += sum_r dy[r,c] x[r,c] rstd[r]: the same
// column reduction as sum_rows, so it lives beside it (rmsnorm_bwd calls it).
void rt_cuda_rmsnorm_dw(int64_t rows, int64_t dim, const float *x, const float *rstd,
                        const float *dy, float *dw);

// optim.cu
void rt_cuda_adamw(int64_t n, const struct rt_adamw_scalars *s, float clip_coef, float *p,
                   float *g, float *m, float *v);

// gemm.cu
void rt_cuda_gemm(int64_t batch, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *A, int64_t strideA, const float *B, int64_t strideB, float beta,
                  float *C, int64_t strideC);

// transformer.cu
void rt_cuda_embedding(int64_t n, int64_t dim, int64_t V, const int32_t *ids, const float *W, float *out);
void rt_cuda_embedding_bwd(int64_t n, int64_t dim, int64_t V, const int32_t *ids, const float *dout,
                           float *dW);
void rt_cuda_rmsnorm(int64_t rows, int64_t dim, const float *x, const float *w, float eps,
                     float *y, float *rstd);
void rt_cuda_rmsnorm_bwd(int64_t rows, int64_t dim, const float *x, const float *w,
                         const float *rstd, const float *dy, float *dx, float *dw);
void rt_cuda_rope(int64_t B, int64_t T, int64_t H, int64_t Dh, const float *x, const int32_t *pos,
                  float theta, int layout, bool inverse, float *out);

// softmax.cu
void rt_cuda_softmax(int64_t rows, int64_t cols, const float *x, float *y);
void rt_cuda_softmax_bwd(int64_t rows, int64_t cols, const float *y, const float *dy, float *dx);
void rt_cuda_log_softmax(int64_t rows, int64_t cols, const float *x, float *y);
void rt_cuda_log_softmax_bwd(int64_t rows, int64_t cols, const float *y, const float *dy,
                             float *dx);
void rt_cuda_cross_entropy(int64_t N, int64_t V, const float *logits, const int32_t *labels,
                           int32_t ignore_index, float *nll, float *lse);
void rt_cuda_cross_entropy_bwd(int64_t N, int64_t V, const float *logits, const int32_t *labels,
                               int32_t ignore_index, const float *lse, float g, float *dlogits);
void rt_cuda_kl_div(int64_t N, int64_t V, const float *s, const float *t, float T,
                    const uint8_t *mask, float *kl);
void rt_cuda_kl_div_bwd(int64_t N, int64_t V, const float *s, const float *t, float T,
                        const uint8_t *mask, float g, float *ds);

// kd.cu
void rt_cuda_kd_loss(int64_t N, int64_t V, const float *s, const float *t, float T, int kind,
                     float beta, const uint8_t *mask, float *loss);
void rt_cuda_kd_loss_bwd(int64_t N, int64_t V, const float *s, const float *t, float T, int kind,
                         float beta, const uint8_t *mask, float g, float *ds);
void rt_cuda_kd_topk_loss(int64_t N, int64_t V, int64_t K, const float *s, const int32_t *ids,
                          const float *logp, float T, int kind, float beta, const uint8_t *mask,
                          float *loss);
void rt_cuda_kd_topk_loss_bwd(int64_t N, int64_t V, int64_t K, const float *s,
                              const int32_t *ids, const float *logp, float T, int kind,
                              float beta, const uint8_t *mask, float g, float *ds);
void rt_cuda_kd_topk(int64_t N, int64_t V, int64_t K, const float *t, float T, int32_t *ids,
                     float *logp);

// geglu.cu
void rt_cuda_geglu(int64_t n, const float *gate, const float *up, float *y);
void rt_cuda_geglu_bwd(int64_t n, const float *gate, const float *up, const float *dy,
                       float *dgate, float *dup);

// attention.cu
void rt_cuda_attention(int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t Hkv, int64_t Dh,
                       const float *q, const float *k, const float *v, const int32_t *seg,
                       int64_t window, float *out, float *lse);
void rt_cuda_attention_bwd(int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t Dh,
                           const float *q, const float *k, const float *v, const int32_t *seg,
                           int64_t window, const float *out, const float *lse, const float *dout, float *dq,
                           float *dk, float *dv);

// nf4.cu
void rt_cuda_nf4_dequant_rows(const uint8_t *packed, const struct rt_nf4_state *st, int64_t cols,
                              int64_t r0, int64_t r1, float *out);

#endif
