// retort — the CUDA kernel table. Memory and dtype conversion are here; the op
// kernels are in the other files of kernels/cuda (cuda_internal.h lists which
// file has which). Every entry of rt_kernels is filled.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/dtype.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_internal.h"
#include "kernels/kernels.h"

// 0 when there is no GPU or no usable driver (the error is cleared, so a
// CPU run of a CUDA build never trips over it later).
static int cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

static void *cuda_malloc(size_t bytes) {
    void *p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e == cudaErrorMemoryAllocation) {
        // Not a fault: the caller (arena, tensor, optimizer) reports it and
        // may recover; CUDA does not keep this error.
        (void)cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
            (void)cudaGetLastError();
            free_b = total_b = 0;
        }
        char msg[512];
        rt_errorf(RT_EINTERNAL, "%s",
                  rt_oom_message(msg, sizeof msg, "device memory", bytes, free_b, total_b));
        return nullptr;
    }
    if (e != cudaSuccess) { // a broken context, not a lack of memory
        rt_fault_record("CUDA", "cudaMalloc", __FILE__, __LINE__, cudaGetErrorString(e));
        return nullptr;
    }
    return p;
}
static void cuda_free(void *p) { RT_CUDA_CHECK(cudaFree(p)); }
static void cuda_synchronize(void) { RT_CUDA_CHECK(cudaDeviceSynchronize()); }
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
    RT_CUDA_LAUNCHED();
}

// Filled by name, not by position: several entries share a signature
// (softmax / log_softmax, silu / ...), and a positional list would let two of
// them swap silently.
static rt_kernels make_table(void) {
    rt_kernels k = {};
    k.name = "cuda";
    k.device_count = cuda_device_count;
    k.malloc = cuda_malloc;
    k.free = cuda_free;
    k.zero = cuda_zero;
    k.synchronize = cuda_synchronize;
    k.copy = cuda_copy;
    k.upload = cuda_upload;
    k.download = cuda_download;
    k.convert = cuda_convert;
    k.add = rt_cuda_add;
    k.mul = rt_cuda_mul;
    k.scale = rt_cuda_scale;
    k.axpy = rt_cuda_axpy;
    k.sum_rows = rt_cuda_sum_rows;
    k.mul_acc = rt_cuda_mul_acc;
    k.gemm = rt_cuda_gemm;
    k.embedding = rt_cuda_embedding;
    k.embedding_bwd = rt_cuda_embedding_bwd;
    k.rmsnorm = rt_cuda_rmsnorm;
    k.rmsnorm_bwd = rt_cuda_rmsnorm_bwd;
    k.rope = rt_cuda_rope;
    k.silu = rt_cuda_silu;
    k.silu_bwd = rt_cuda_silu_bwd;
    k.swiglu = rt_cuda_swiglu;
    k.swiglu_bwd = rt_cuda_swiglu_bwd;
    k.geglu = rt_cuda_geglu;
    k.geglu_bwd = rt_cuda_geglu_bwd;
    k.softmax = rt_cuda_softmax;
    k.softmax_bwd = rt_cuda_softmax_bwd;
    k.log_softmax = rt_cuda_log_softmax;
    k.log_softmax_bwd = rt_cuda_log_softmax_bwd;
    k.attention = rt_cuda_attention;
    k.attention_bwd = rt_cuda_attention_bwd;
    k.dropout = rt_cuda_dropout;
    k.cross_entropy = rt_cuda_cross_entropy;
    k.cross_entropy_bwd = rt_cuda_cross_entropy_bwd;
    k.kl_div = rt_cuda_kl_div;
    k.kl_div_bwd = rt_cuda_kl_div_bwd;
    k.permute = rt_cuda_permute;
    k.nf4_dequant_rows = rt_cuda_nf4_dequant_rows;
    k.kd_loss = rt_cuda_kd_loss;
    k.kd_loss_bwd = rt_cuda_kd_loss_bwd;
    k.kd_topk_loss = rt_cuda_kd_topk_loss;
    k.kd_topk_loss_bwd = rt_cuda_kd_topk_loss_bwd;
    k.kd_topk = rt_cuda_kd_topk;
    k.adamw = rt_cuda_adamw;
    k.sumsq = rt_cuda_sumsq;
    k.all_finite = rt_cuda_all_finite;
    return k;
}

// Dynamic initialisation before main(); C code only reads it after that.
extern "C" const rt_kernels rt_kernels_cuda = make_table();
