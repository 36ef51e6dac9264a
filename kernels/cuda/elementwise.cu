// retort — CUDA elementwise kernels, activations, dropout, permute, the
// column reductions (sum_rows, RMSNorm's dw) and the optimizer's reductions
// (sumsq, all_finite). Semantics: kernels/kernels.h; reference behaviour:
// kernels/cpu/elementwise.c, transformer.c and memory.c.
#include <mutex>

#include "kernels/cuda/cuda_internal.h"

using namespace rt_cuda;

// ---- shared helpers (declared in cuda_internal.h) ----------------------------

namespace rt_cuda {

static std::mutex scratch_mu;
static void *scratch_buf = nullptr;
static size_t scratch_bytes = 0;

void *scratch(size_t bytes) {
    std::lock_guard<std::mutex> lock(scratch_mu);
    if (bytes <= scratch_bytes) return scratch_buf;
    // cudaFree waits for the kernels still reading the old buffer.
    if (scratch_buf) RT_CUDA_CHECK(cudaFree(scratch_buf));
    scratch_buf = nullptr;
    scratch_bytes = 0;
    size_t want = bytes < ((size_t)1 << 20) ? ((size_t)1 << 20) : bytes + bytes / 4;
    if (cudaMalloc(&scratch_buf, want) != cudaSuccess) {
        scratch_buf = nullptr;
        rt_cuda_oom("kernel scratch", want);
        return nullptr;
    }
    scratch_bytes = want;
    return scratch_buf;
}

bool allow_smem(const void *kernel, size_t bytes) {
    if (bytes <= 48 * 1024) return true;
    cudaError_t e =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        RT_CUDA_FAIL("CUDA kernel needs %zu bytes of shared memory: %s", bytes,
                  cudaGetErrorString(e));
        return false;
    }
    return true;
}

} // namespace rt_cuda

// ---- broadcasting arithmetic ---------------------------------------------------

__global__ static void add_kernel(int64_t n, int64_t nb, const float *a, const float *b,
                                  float *out) {
    RT_GRID_STRIDE(i, n) out[i] = a[i] + b[nb == n ? i : i % nb];
}
__global__ static void mul_kernel(int64_t n, int64_t nb, const float *a, const float *b,
                                  float *out) {
    RT_GRID_STRIDE(i, n) out[i] = a[i] * b[nb == n ? i : i % nb];
}
__global__ static void scale_kernel(int64_t n, float alpha, const float *x, float *out) {
    RT_GRID_STRIDE(i, n) out[i] = alpha * x[i];
}
__global__ static void axpy_kernel(int64_t n, float alpha, const float *x, float *y) {
    RT_GRID_STRIDE(i, n) y[i] += alpha * x[i];
}
__global__ static void mul_acc_kernel(int64_t n, int64_t nb, const float *g, const float *b,
                                      float *out) {
    RT_GRID_STRIDE(i, n) out[i] += g[i] * b[nb == n ? i : i % nb];
}

void rt_cuda_add(int64_t n, int64_t nb, const float *a, const float *b, float *out) {
    if (n <= 0) return;
    add_kernel<<<grid_for(n), kThreads>>>(n, nb, a, b, out);
    RT_CUDA_LAUNCHED();
}
void rt_cuda_mul(int64_t n, int64_t nb, const float *a, const float *b, float *out) {
    if (n <= 0) return;
    mul_kernel<<<grid_for(n), kThreads>>>(n, nb, a, b, out);
    RT_CUDA_LAUNCHED();
}
void rt_cuda_scale(int64_t n, float alpha, const float *x, float *out) {
    if (n <= 0) return;
    scale_kernel<<<grid_for(n), kThreads>>>(n, alpha, x, out);
    RT_CUDA_LAUNCHED();
}
void rt_cuda_axpy(int64_t n, float alpha, const float *x, float *y) {
    if (n <= 0) return;
    axpy_kernel<<<grid_for(n), kThreads>>>(n, alpha, x, y);
    RT_CUDA_LAUNCHED();
}
void rt_cuda_mul_acc(int64_t n, int64_t nb, const float *g, const float *b, float *out) {
    if (n <= 0) return;
    mul_acc_kernel<<<grid_for(n), kThreads>>>(n, nb, g, b, out);
    RT_CUDA_LAUNCHED();
}

// ---- column reductions -------------------------------------------------------
// out[c] += sum_r f(r, c) in double, deterministically: pass 1 gives each
// (chunk of rows, 32 columns) tile to one block of 32 x 8 threads (threads of
// a warp read 32 consecutive columns of a row: coalesced) and stores the
// tile's partial sums; pass 2 adds a column's partials in chunk order.

constexpr int kColTile = 32, kColRowsPerPass = 8;

struct SumRowsTerm { // x[r,c] * (y ? y[r,c] : 1)
    const float *x, *y;
    __device__ double operator()(int64_t r, int64_t c, int64_t cols) const {
        int64_t i = r * cols + c;
        return y ? (double)x[i] * y[i] : (double)x[i];
    }
};
struct RmsDwTerm { // dy[r,c] * x[r,c] * rstd[r]
    const float *dy, *x, *rstd;
    __device__ double operator()(int64_t r, int64_t c, int64_t cols) const {
        int64_t i = r * cols + c;
        return (double)dy[i] * x[i] * rstd[r];
    }
};

template <typename Term>
__global__ static void colsum_partial(int64_t rows, int64_t cols, int64_t chunk, Term f,
                                      double *partial) {
    __shared__ double acc[kColRowsPerPass][kColTile + 1];
    const int64_t c = (int64_t)blockIdx.x * kColTile + threadIdx.x;
    const int64_t r0 = (int64_t)blockIdx.y * chunk;
    const int64_t r1 = r0 + chunk < rows ? r0 + chunk : rows;
    double s = 0.0;
    if (c < cols)
        for (int64_t r = r0 + threadIdx.y; r < r1; r += kColRowsPerPass) s += f(r, c, cols);
    acc[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        double t = 0.0;
        for (int k = 0; k < kColRowsPerPass; k++) t += acc[k][threadIdx.x];
        partial[(int64_t)blockIdx.y * cols + c] = t;
    }
}

__global__ static void colsum_finish(int64_t cols, int64_t nchunks, const double *partial,
                                     float *out) {
    RT_GRID_STRIDE(c, cols) {
        double t = 0.0;
        for (int64_t k = 0; k < nchunks; k++) t += partial[k * cols + c];
        out[c] += (float)t;
    }
}

template <typename Term>
static void colsum(int64_t rows, int64_t cols, Term f, float *out) {
    if (rows <= 0 || cols <= 0) return;
    int64_t chunk = 256;
    if ((rows + chunk - 1) / chunk > 65535) chunk = (rows + 65534) / 65535; // gridDim.y limit
    const int64_t nchunks = (rows + chunk - 1) / chunk;
    const int64_t ctiles = (cols + kColTile - 1) / kColTile;
    if (ctiles > 0x7fffffff) {
        RT_CUDA_FAIL("cuda column sum: %lld columns is too many", (long long)cols);
        return;
    }
    double *partial = (double *)scratch((size_t)(nchunks * cols) * sizeof(double));
    if (!partial) return;
    colsum_partial<<<dim3((unsigned)ctiles, (unsigned)nchunks), dim3(kColTile, kColRowsPerPass)>>>(
        rows, cols, chunk, f, partial);
    RT_CUDA_LAUNCHED();
    colsum_finish<<<grid_for(cols), kThreads>>>(cols, nchunks, partial, out);
    RT_CUDA_LAUNCHED();
}

void rt_cuda_sum_rows(int64_t rows, int64_t cols, const float *x, const float *y, float *out) {
    colsum(rows, cols, SumRowsTerm{x, y}, out);
}

void rt_cuda_rmsnorm_dw(int64_t rows, int64_t dim, const float *x, const float *rstd,
                        const float *dy, float *dw) {
    colsum(rows, dim, RmsDwTerm{dy, x, rstd}, dw);
}

// ---- activations ---------------------------------------------------------------
// silu(x) = x sigmoid(x), d silu/dx = s (1 + x (1 - s)) (kernels/cpu/elementwise.c).
// expf, not __expf: the accurate one, within 2 ulp like glibc's.

__device__ static inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ static inline float dsilu(float x) {
    float s = sigmoid(x);
    return s * (1.0f + x * (1.0f - s));
}

__global__ static void silu_kernel(int64_t n, const float *x, float *y) {
    RT_GRID_STRIDE(i, n) y[i] = x[i] * sigmoid(x[i]);
}
__global__ static void silu_bwd_kernel(int64_t n, const float *x, const float *dy, float *dx) {
    RT_GRID_STRIDE(i, n) dx[i] += dy[i] * dsilu(x[i]);
}
__global__ static void swiglu_kernel(int64_t n, const float *gate, const float *up, float *y) {
    RT_GRID_STRIDE(i, n) y[i] = gate[i] * sigmoid(gate[i]) * up[i];
}
__global__ static void swiglu_bwd_kernel(int64_t n, const float *gate, const float *up,
                                         const float *dy, float *dgate, float *dup) {
    RT_GRID_STRIDE(i, n) {
        float g = gate[i];
        if (dgate) dgate[i] += dy[i] * up[i] * dsilu(g);
        if (dup) dup[i] += dy[i] * g * sigmoid(g);
    }
}

void rt_cuda_silu(int64_t n, const float *x, float *y) {
    if (n <= 0) return;
    silu_kernel<<<grid_for(n), kThreads>>>(n, x, y);
    RT_CUDA_LAUNCHED();
}
void rt_cuda_silu_bwd(int64_t n, const float *x, const float *dy, float *dx) {
    if (n <= 0) return;
    silu_bwd_kernel<<<grid_for(n), kThreads>>>(n, x, dy, dx);
    RT_CUDA_LAUNCHED();
}
void rt_cuda_swiglu(int64_t n, const float *gate, const float *up, float *y) {
    if (n <= 0) return;
    swiglu_kernel<<<grid_for(n), kThreads>>>(n, gate, up, y);
    RT_CUDA_LAUNCHED();
}
void rt_cuda_swiglu_bwd(int64_t n, const float *gate, const float *up, const float *dy,
                        float *dgate, float *dup) {
    if (n <= 0 || (!dgate && !dup)) return;
    swiglu_bwd_kernel<<<grid_for(n), kThreads>>>(n, gate, up, dy, dgate, dup);
    RT_CUDA_LAUNCHED();
}

// ---- dropout -------------------------------------------------------------------
// Bit-for-bit the CPU's mask (kernels/cpu/elementwise.c): element i keeps its
// value iff u >= p, u = top 24 bits of splitmix64's finaliser of
// seed + (i+1) * golden, as a float in [0, 1). Same mask on either device for
// the same (seed, i), so a run can switch devices and replay a step.

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

__device__ static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

__global__ static void dropout_kernel(int64_t n, float p, float keep_scale, uint64_t seed,
                                      const float *x, float *y) {
    RT_GRID_STRIDE(i, n) {
        uint64_t h = mix64(seed + (uint64_t)(i + 1) * kGolden);
        float u = (float)(h >> 40) * (1.0f / 16777216.0f); // exact: 24-bit integer * 2^-24
        y[i] = u < p ? 0.0f : x[i] * keep_scale;
    }
}

void rt_cuda_dropout(int64_t n, float p, uint64_t seed, const float *x, float *y) {
    if (n <= 0) return;
    const float keep_scale = 1.0f / (1.0f - p); // computed on the host, as the CPU does
    dropout_kernel<<<grid_for(n), kThreads>>>(n, p, keep_scale, seed, x, y);
    RT_CUDA_LAUNCHED();
}

// ---- permute -------------------------------------------------------------------
// Padded to 4 dims (leading 1s) as on the CPU; the output is walked linearly
// (coalesced writes) and each element gathered through the permuted strides.

struct Perm4 {
    int64_t os[4]; // output shape
    int64_t st[4]; // input stride of each output dim
};

__global__ static void permute_kernel(int64_t n, Perm4 p, const float *x, float *out) {
    RT_GRID_STRIDE(i, n) {
        int64_t r = i, src = 0;
        for (int d = 3; d >= 0; d--) {
            int64_t c = r % p.os[d];
            r /= p.os[d];
            src += c * p.st[d];
        }
        out[i] = x[src];
    }
}

void rt_cuda_permute(int ndim, const int64_t *shape, const int *perm, const float *x, float *out) {
    if (ndim < 1 || ndim > 4) {
        RT_CUDA_FAIL("cuda permute: %d dims (1 to 4 supported)", ndim);
        return;
    }
    // shape and perm are host arrays (the tensor structs live on the host).
    int64_t in_shape[4] = {1, 1, 1, 1}, in_stride[4];
    Perm4 p = {{1, 1, 1, 1}, {0, 0, 0, 0}};
    const int pad = 4 - ndim;
    for (int d = 0; d < ndim; d++) in_shape[pad + d] = shape[d];
    in_stride[3] = 1;
    for (int d = 2; d >= 0; d--) in_stride[d] = in_stride[d + 1] * in_shape[d + 1];
    for (int d = 0; d < ndim; d++) {
        p.os[pad + d] = in_shape[pad + perm[d]];
        p.st[pad + d] = in_stride[pad + perm[d]];
    }
    const int64_t n = p.os[0] * p.os[1] * p.os[2] * p.os[3];
    if (n <= 0) return;
    permute_kernel<<<grid_for(n), kThreads>>>(n, p, x, out);
    RT_CUDA_LAUNCHED();
}

// ---- reductions for the optimizer ------------------------------------------------
// sumsq: a fixed grid of blocks writes one double partial each, then one block
// adds them; with the grid fixed by n the order of every addition is fixed.

constexpr int kSumsqBlocks = 1024;

__global__ static void sumsq_partial(int64_t n, const float *x, double *partial) {
    double s = 0.0;
    RT_GRID_STRIDE(i, n) s += (double)x[i] * x[i];
    s = block_allreduce(s, Sum());
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ static void sumsq_finish(int nparts, double *partial) {
    double s = 0.0;
    for (int i = threadIdx.x; i < nparts; i += blockDim.x) s += partial[i];
    s = block_allreduce(s, Sum());
    if (threadIdx.x == 0) partial[0] = s;
}

double rt_cuda_sumsq(int64_t n, const float *x) {
    if (n <= 0) return 0.0;
    const unsigned blocks = grid_for(n) < kSumsqBlocks ? grid_for(n) : kSumsqBlocks;
    double *partial = (double *)scratch(kSumsqBlocks * sizeof(double));
    if (!partial) return 0.0;
    sumsq_partial<<<blocks, kThreads>>>(n, x, partial);
    RT_CUDA_LAUNCHED();
    sumsq_finish<<<1, kThreads>>>((int)blocks, partial);
    RT_CUDA_LAUNCHED();
    double s = 0.0;
    RT_CUDA_CHECK(cudaMemcpy(&s, partial, sizeof s, cudaMemcpyDeviceToHost));
    return s;
}

__global__ static void finite_kernel(int64_t n, const float *x, int *bad) {
    RT_GRID_STRIDE(i, n) {
        if (!isfinite(x[i])) *bad = 1; // every writer stores the same value
    }
}

bool rt_cuda_all_finite(int64_t n, const float *x) {
    if (n <= 0) return true;
    int *bad = (int *)scratch(sizeof(int));
    if (!bad) return false;
    RT_CUDA_CHECK(cudaMemset(bad, 0, sizeof(int)));
    finite_kernel<<<grid_for(n), kThreads>>>(n, x, bad);
    RT_CUDA_LAUNCHED();
    int h = 1;
    RT_CUDA_CHECK(cudaMemcpy(&h, bad, sizeof h, cudaMemcpyDeviceToHost));
    return h == 0;
}
