// retort — CUDA kernels of the transformer-specific ops: embedding lookup,
// RMSNorm and rotary position embedding. Semantics: kernels/kernels.h;
// reference behaviour: kernels/cpu/transformer.c (same formulas, same
// precision choices: RMSNorm's sums in double, RoPE's angle in f32).
#include "kernels/cuda/cuda_internal.h"

using namespace rt_cuda;

// ---- embedding -----------------------------------------------------------------

// The first out-of-range id (position and value packed in one word) seen by
// a launch; ~0 when none. Checked (one small synchronous read) after each
// launch, so a bad id is a fault naming itself instead of a wild read or an
// atomicAdd outside dW.
__device__ static unsigned long long emb_bad = ~0ull;

__device__ static bool emb_ok(int64_t i, int32_t id, int64_t V) {
    if (id >= 0 && id < V) return true;
    const unsigned long long w = ((unsigned long long)(uint32_t)id << 32) | (uint32_t)i;
    atomicCAS(&emb_bad, ~0ull, w);
    return false;
}

__global__ static void embedding_kernel(int64_t n, int64_t dim, int64_t V, const int32_t *ids,
                                        const float *W, float *out) {
    RT_GRID_STRIDE(e, n * dim) {
        int64_t i = e / dim, c = e % dim;
        const int32_t id = ids[i];
        out[e] = emb_ok(i, id, V) ? W[(int64_t)id * dim + c] : __int_as_float(0x7fc00000);
    }
}

// A token id can repeat within a batch, so rows of dW are shared: atomicAdd.
// The order of those additions varies between runs (f32 rounding only).
__global__ static void embedding_bwd_kernel(int64_t n, int64_t dim, int64_t V, const int32_t *ids,
                                            const float *dout, float *dW) {
    RT_GRID_STRIDE(e, n * dim) {
        int64_t i = e / dim, c = e % dim;
        const int32_t id = ids[i];
        if (emb_ok(i, id, V)) atomicAdd(dW + (int64_t)id * dim + c, dout[e]);
    }
}

static void check_ids(const char *what, int64_t V) {
    unsigned long long bad = ~0ull;
    if (cudaMemcpyFromSymbol(&bad, emb_bad, sizeof bad) != cudaSuccess) {
        RT_CUDA_LAUNCHED(); // records whatever broke
        return;
    }
    if (bad == ~0ull) return;
    const unsigned long long none = ~0ull;
    RT_CUDA_CHECK(cudaMemcpyToSymbol(emb_bad, &none, sizeof none));
    RT_CUDA_FAIL("cuda %s: token id %d at position %u is outside the vocabulary [0, %lld)", what,
                 (int)(int32_t)(bad >> 32), (unsigned)(bad & 0xffffffffu), (long long)V);
}

void rt_cuda_embedding(int64_t n, int64_t dim, int64_t V, const int32_t *ids, const float *W,
                       float *out) {
    if (n <= 0 || dim <= 0) return;
    embedding_kernel<<<grid_for(n * dim), kThreads>>>(n, dim, V, ids, W, out);
    RT_CUDA_LAUNCHED();
    check_ids("embedding", V);
}

void rt_cuda_embedding_bwd(int64_t n, int64_t dim, int64_t V, const int32_t *ids,
                           const float *dout, float *dW) {
    if (n <= 0 || dim <= 0) return;
    embedding_bwd_kernel<<<grid_for(n * dim), kThreads>>>(n, dim, V, ids, dout, dW);
    RT_CUDA_LAUNCHED();
    check_ids("embedding backward", V);
}

// ---- RMSNorm (Zhang & Sennrich 2019; HF LlamaRMSNorm) ------------------------------
// One block per row (grid-stride over rows); the row's sums are block
// reductions in double, so the block-uniform loop bounds keep every thread
// in step with the reductions' barriers.

__global__ static void rmsnorm_kernel(int64_t rows, int64_t dim, const float *x, const float *w,
                                      float eps, float *y, float *rstd) {
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = x + r * dim;
        float *yr = y + r * dim;
        double ss = 0.0;
        for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) ss += (double)xr[c] * xr[c];
        ss = block_allreduce(ss, Sum());
        const float rs = 1.0f / sqrtf((float)(ss / (double)dim) + eps);
        for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) yr[c] = (xr[c] * rs) * w[c];
        if (rstd && threadIdx.x == 0) rstd[r] = rs;
    }
}

// With n = x*rstd: dx = rstd * (w*dy - n * mean(w*dy*n)) (as on the CPU).
__global__ static void rmsnorm_dx_kernel(int64_t rows, int64_t dim, const float *x,
                                         const float *w, const float *rstd, const float *dy,
                                         float *dx) {
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = x + r * dim, *gr = dy + r * dim;
        float *dr = dx + r * dim;
        const float rs = rstd[r];
        double dot = 0.0;
        for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) dot += (double)gr[c] * w[c] * xr[c];
        dot = block_allreduce(dot, Sum());
        const float m = (float)(dot / (double)dim) * rs * rs;
        for (int64_t c = threadIdx.x; c < dim; c += blockDim.x)
            dr[c] += rs * (gr[c] * w[c] - xr[c] * m);
    }
}

static unsigned row_grid(int64_t rows) {
    return (unsigned)(rows < kMaxBlocks ? rows : kMaxBlocks);
}

void rt_cuda_rmsnorm(int64_t rows, int64_t dim, const float *x, const float *w, float eps,
                     float *y, float *rstd) {
    if (rows <= 0 || dim <= 0) return;
    rmsnorm_kernel<<<row_grid(rows), kThreads>>>(rows, dim, x, w, eps, y, rstd);
    RT_CUDA_LAUNCHED();
}

void rt_cuda_rmsnorm_bwd(int64_t rows, int64_t dim, const float *x, const float *w,
                         const float *rstd, const float *dy, float *dx, float *dw) {
    if (rows <= 0 || dim <= 0) return;
    if (dx) {
        rmsnorm_dx_kernel<<<row_grid(rows), kThreads>>>(rows, dim, x, w, rstd, dy, dx);
        RT_CUDA_LAUNCHED();
    }
    if (dw) rt_cuda_rmsnorm_dw(rows, dim, x, rstd, dy, dw);
}

// ---- RoPE (Su et al. 2021) -------------------------------------------------------
// One thread per rotated pair (t, h, i); the angle exactly as the CPU forms
// it: f32 inverse frequency 1/theta^(2i/Dh) times the f32 position, then
// cosf/sinf (CUDA's accurate versions, not the __sinf intrinsics). Each
// thread reads both elements of its pair before writing, so out may be x.
// For odd Dh the unpaired last element passes through (index i == half).

__global__ static void rope_kernel(int64_t bt, int64_t H, int64_t Dh, const float *x,
                                   const int32_t *pos, float theta, int layout, bool inverse,
                                   float *out) {
    const int64_t half = Dh / 2, slots = half + (Dh & 1);
    RT_GRID_STRIDE(e, bt * H * slots) {
        const int64_t i = e % slots, th = e / slots, t = th / H;
        const int64_t base = th * Dh;
        if (i == half) { // odd Dh: no partner
            if (out != x) out[base + Dh - 1] = x[base + Dh - 1];
            continue;
        }
        const float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)Dh);
        const float ang = (float)pos[t] * inv_freq;
        const float c = cosf(ang);
        float s = sinf(ang);
        if (inverse) s = -s;
        const int64_t i0 = layout == RT_ROPE_INTERLEAVED ? 2 * i : i;
        const int64_t i1 = layout == RT_ROPE_INTERLEAVED ? 2 * i + 1 : i + half;
        const float a = x[base + i0], b = x[base + i1];
        out[base + i0] = a * c - b * s;
        out[base + i1] = b * c + a * s;
    }
}

void rt_cuda_rope(int64_t B, int64_t T, int64_t H, int64_t Dh, const float *x, const int32_t *pos,
                  float theta, int layout, bool inverse, float *out) {
    const int64_t n = B * T * H * (Dh / 2 + (Dh & 1));
    if (n <= 0) return;
    rope_kernel<<<grid_for(n), kThreads>>>(B * T, H, Dh, x, pos, theta, layout, inverse, out);
    RT_CUDA_LAUNCHED();
}
