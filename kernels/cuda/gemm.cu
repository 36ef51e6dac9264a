// retort — CUDA GEMM through cuBLAS (f32 in, f32 out, f32 accumulation).
// Semantics: the gemm entry of kernels/kernels.h; reference behaviour:
// kernels/cpu/gemm.c.
//
// Row-major to cuBLAS's column-major: a row-major [M,N] matrix with leading
// dimension N is the column-major [N,M] matrix of its transpose, so
//   C = op(A) op(B)   (row-major)   <=>   C^T = op(B)^T op(A)^T   (column-major)
// and the call passes B before A with the dimensions swapped (N, M, K); the
// transpose flags and leading dimensions of the stored matrices carry over
// unchanged (lda = ta ? M : K, ldb = tb ? K : N, ldc = N).
//
// Precision: the handle uses CUBLAS_DEFAULT_MATH, which keeps FP32 GEMMs in
// full FP32 (no TF32 tensor cores), so the result matches the CPU's to f32
// rounding; test_ops compares the two at 1e-4. (NVIDIA_TF32_OVERRIDE=1 in the
// environment would still switch TF32 on behind cuBLAS's back.) TF32/bf16
// tensor-core paths belong to the mixed-precision step.
//
// The handle and a 32 MiB workspace are created on first use and kept for
// the process (cuBLAS handles are expensive to create; a fixed workspace
// keeps cuBLAS from allocating inside calls).
#include <climits>
#include <mutex>

#include "kernels/cuda/cuda_internal.h"

using namespace rt_cuda;

static std::mutex handle_mu;
static cublasHandle_t handle = nullptr;
static void *workspace = nullptr;
static const size_t kWorkspaceBytes = (size_t)32 << 20;

// The process-wide cuBLAS handle; NULL (message set) if cuBLAS cannot start.
static cublasHandle_t get_handle(void) {
    std::lock_guard<std::mutex> lock(handle_mu);
    if (handle) return handle;
    cublasHandle_t h = nullptr;
    cublasStatus_t s = cublasCreate(&h);
    if (s != CUBLAS_STATUS_SUCCESS) {
        rt_fault_record("cuBLAS", "cublasCreate", __FILE__, __LINE__, cublasGetStatusString(s));
        return nullptr;
    }
    if (cudaMalloc(&workspace, kWorkspaceBytes) != cudaSuccess) {
        workspace = nullptr;
        cublasDestroy(h);
        rt_cuda_oom("the cuBLAS workspace", kWorkspaceBytes);
        return nullptr;
    }
    cublasStatus_t s1 = cublasSetWorkspace(h, workspace, kWorkspaceBytes);
    cublasStatus_t s2 = cublasSetMathMode(h, CUBLAS_DEFAULT_MATH);
    cublasStatus_t s3 = cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST);
    if (s1 != CUBLAS_STATUS_SUCCESS || s2 != CUBLAS_STATUS_SUCCESS || s3 != CUBLAS_STATUS_SUCCESS) {
        cublasStatus_t bad = s1 != CUBLAS_STATUS_SUCCESS ? s1 : s2 != CUBLAS_STATUS_SUCCESS ? s2 : s3;
        rt_fault_record("cuBLAS", "handle setup", __FILE__, __LINE__, cublasGetStatusString(bad));
        cublasDestroy(h);
        RT_CUDA_CHECK(cudaFree(workspace));
        workspace = nullptr;
        return nullptr;
    }
    handle = h;
    return handle;
}

// C = beta * C over an [M,N] matrix (the empty-K product, which BLAS may skip
// entirely); beta == 0 writes zeros even over NaN, as the CPU does.
__global__ static void scale_c_kernel(int64_t n, float beta, float *C) {
    RT_GRID_STRIDE(i, n) C[i] = beta == 0.0f ? 0.0f : beta * C[i];
}

void rt_cuda_gemm(int64_t batch, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *A, int64_t strideA, const float *B, int64_t strideB, float beta,
                  float *C, int64_t strideC) {
    if (M <= 0 || N <= 0 || batch <= 0) return;
    if (K <= 0) {
        for (int64_t i = 0; i < batch; i++) {
            scale_c_kernel<<<grid_for(M * N), kThreads>>>(M * N, beta, C + i * strideC);
            RT_CUDA_LAUNCHED();
        }
        return;
    }
    if (M > INT_MAX || N > INT_MAX || K > INT_MAX || batch > INT_MAX) {
        RT_CUDA_FAIL("cuda gemm: [%lld x %lld x %lld] x %lld exceeds cuBLAS's int sizes",
                  (long long)M, (long long)N, (long long)K, (long long)batch);
        return;
    }
    cublasHandle_t h = get_handle();
    if (!h) return;
    const int m = (int)M, n = (int)N, k = (int)K;
    const int lda = ta ? m : k, ldb = tb ? k : n, ldc = n;
    const cublasOperation_t opA = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t opB = tb ? CUBLAS_OP_T : CUBLAS_OP_N;

    if (strideC == 0 && batch > 1) {
        // One C shared by the batch: the products accumulate into it in batch
        // order (what the CPU does); a strided-batched call would race on C.
        for (int64_t i = 0; i < batch; i++) {
            RT_CUBLAS_CHECK(cublasSgemm(h, opB, opA, n, m, k, &alpha, B + i * strideB, ldb,
                                        A + i * strideA, lda, &beta, C, ldc));
        }
        return;
    }
    RT_CUBLAS_CHECK(cublasSgemmStridedBatched(h, opB, opA, n, m, k, &alpha, B, ldb,
                                              (long long)strideB, A, lda, (long long)strideA,
                                              &beta, C, ldc, (long long)strideC, (int)batch));
}
