/* retort — one checking macro per CUDA library. A failed call becomes the
 * process's device fault (kernels/fault.h): the first one is kept, naming
 * the call, file and line, and every later op, rt_backward, rt_to_host and
 * the trainer report it. Kernels are void, so this is how they fail. */
#ifndef RT_CUDA_CHECK_H
#define RT_CUDA_CHECK_H

#include <cstdarg>
#include <cstdio>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "kernels/error.h"
#include "kernels/fault.h"

#define RT_CUDA_CHECK(call)                                                       \
    do {                                                                          \
        cudaError_t rt_e_ = (call);                                               \
        if (rt_e_ != cudaSuccess)                                                 \
            rt_fault_record("CUDA", #call, __FILE__, __LINE__,                    \
                            cudaGetErrorString(rt_e_));                           \
    } while (0)

#define RT_CUBLAS_CHECK(call)                                                     \
    do {                                                                          \
        cublasStatus_t rt_s_ = (call);                                            \
        if (rt_s_ != CUBLAS_STATUS_SUCCESS)                                       \
            rt_fault_record("cuBLAS", #call, __FILE__, __LINE__,                  \
                            cublasGetStatusString(rt_s_));                        \
        else                                                                      \
            rt_cuda_after_launch(#call, __FILE__, __LINE__);                      \
    } while (0)

/* After a kernel launch (or a library call that launches): a failed launch
 * is a fault; with RETORT_CUDA_SYNC=1 the device is also synchronised, so an
 * illegal address or a trap is charged to the kernel that caused it instead
 * of to whatever call happens to notice it later. */
inline void rt_cuda_after_launch(const char *what, const char *file, int line) {
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess && rt_fault_sync_mode()) e = cudaDeviceSynchronize();
    if (e != cudaSuccess) rt_fault_record("CUDA", what, file, line, cudaGetErrorString(e));
}

/* A refused shape or another condition a void kernel cannot return. */
inline void rt_cuda_failf(const char *file, int line, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rt_fault_record("CUDA", nullptr, file, line, msg);
}
#define RT_CUDA_FAIL(...) rt_cuda_failf(__FILE__, __LINE__, __VA_ARGS__)

/* An allocation a kernel needs for itself failed: a fault with the OOM text
 * (asked, free, total, and the recipe knobs that help). */
inline void rt_cuda_oom(const char *what, size_t asked) {
    (void)cudaGetLastError(); /* cudaMalloc's OOM is not sticky: clear it */
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
        (void)cudaGetLastError();
        free_b = total_b = 0;
    }
    rt_fault_record_oom(what, asked, free_b, total_b);
}

#endif
