// retort — the CUDA kernel table. Memory and dtype conversion are here; the
// op kernels arrive with the CUDA backend issue, and until then their entries
// are NULL, which ops report as "no cuda kernel for <op>".
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "autograd/tensor.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/kernels.h"

static void *cuda_malloc(size_t bytes) {
    void *p = nullptr;
    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        rt_errorf(RT_EINTERNAL, "CUDA out of memory: asked for %zu bytes, %zu of %zu free", bytes,
                  free_b, total_b);
        return nullptr;
    }
    return p;
}
static void cuda_free(void *p) { RT_CUDA_CHECK(cudaFree(p)); }
static void cuda_zero(void *p, size_t bytes) { RT_CUDA_CHECK(cudaMemset(p, 0, bytes)); }
static void cuda_copy(void *dst, const void *src, size_t bytes) {
    RT_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
}
static void cuda_upload(void *dst, const void *host, size_t bytes) {
    RT_CUDA_CHECK(cudaMemcpy(dst, host, bytes, cudaMemcpyHostToDevice));
}
static void cuda_download(void *host, const void *src, size_t bytes) {
    RT_CUDA_CHECK(cudaMemcpy(host, src, bytes, cudaMemcpyDeviceToHost));
}

__device__ static float load_as_f32(const void *p, int dt, int64_t i) {
    if (dt == RT_BF16) return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    if (dt == RT_F16) return __half2float(((const __half *)p)[i]);
    return ((const float *)p)[i];
}

__global__ static void convert_kernel(int64_t n, const void *src, int sdt, void *dst, int ddt) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = load_as_f32(src, sdt, i);
    if (ddt == RT_BF16) ((__nv_bfloat16 *)dst)[i] = __float2bfloat16_rn(v);
    else if (ddt == RT_F16) ((__half *)dst)[i] = __float2half_rn(v);
    else ((float *)dst)[i] = v;
}

static void cuda_convert(int64_t n, const void *src, int sdt, void *dst, int ddt) {
    if (n <= 0) return;
    convert_kernel<<<(unsigned)((n + 255) / 256), 256>>>(n, src, sdt, dst, ddt);
    RT_CUDA_CHECK(cudaGetLastError());
}

extern "C" const rt_kernels rt_kernels_cuda = {
    /* .name = */ "cuda",
    /* .malloc = */ cuda_malloc,
    /* .free = */ cuda_free,
    /* .zero = */ cuda_zero,
    /* .copy = */ cuda_copy,
    /* .upload = */ cuda_upload,
    /* .download = */ cuda_download,
    /* .convert = */ cuda_convert,
};
