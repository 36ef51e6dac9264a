// retort — the optimizer step on the device: AdamW over the flat parameter,
// gradient and moment buffers (the adamw entry of kernels/kernels.h), one
// launch per step, the gradient clip fused in.
//
// The per-element arithmetic is rt_adamw_elem from optim/adamw.h, the same
// inline function the CPU loop runs. This file is compiled with
// -fmad=false (CMakeLists.txt) so nvcc does not contract its multiply-adds
// into FMAs, which would round differently from the CPU.
#include "kernels/cuda/cuda_internal.h"
#include "optim/adamw.h"

using namespace rt_cuda;

__global__ static void adamw_kernel(int64_t n, rt_adamw_scalars s, float coef, float *p, float *g,
                                    float *m, float *v) {
    RT_GRID_STRIDE(i, n) {
        float gi = g[i];
        if (coef != 1.0f) { // rt_clip_scale leaves g untouched at exactly 1
            gi *= coef;
            g[i] = gi;
        }
        rt_adamw_elem(&p[i], gi, &m[i], &v[i], &s);
    }
}

void rt_cuda_adamw(int64_t n, const struct rt_adamw_scalars *s, float clip_coef, float *p,
                   float *g, float *m, float *v) {
    if (n <= 0) return;
    adamw_kernel<<<grid_for(n), kThreads>>>(n, *s, clip_coef, p, g, m, v);
    RT_CUDA_LAUNCHED();
}
