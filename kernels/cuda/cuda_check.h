/* retort — one checking macro per CUDA library. A failed call records a
 * message naming the call, file and line; the kernel returns and the op that
 * called it reports the error. */
#ifndef RT_CUDA_CHECK_H
#define RT_CUDA_CHECK_H

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "kernels/error.h"

#define RT_CUDA_CHECK(call)                                                       \
    do {                                                                          \
        cudaError_t rt_e_ = (call);                                               \
        if (rt_e_ != cudaSuccess)                                                 \
            rt_errorf(RT_EINTERNAL, "%s:%d: %s: %s", __FILE__, __LINE__, #call,     \
                      cudaGetErrorString(rt_e_));                                 \
    } while (0)

#define RT_CUBLAS_CHECK(call)                                                     \
    do {                                                                          \
        cublasStatus_t rt_s_ = (call);                                            \
        if (rt_s_ != CUBLAS_STATUS_SUCCESS)                                       \
            rt_errorf(RT_EINTERNAL, "%s:%d: %s: %s", __FILE__, __LINE__, #call,     \
                      cublasGetStatusString(rt_s_));                              \
    } while (0)

#endif
