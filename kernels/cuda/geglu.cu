// retort — CUDA GELU-tanh gated linear unit (GeGLU): y = gelu_tanh(gate) * up,
// gelu_tanh(x) = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3); formulas
// and semantics as kernels/cpu/geglu.c (backward accumulates).
#include "kernels/cuda/cuda_internal.h"

using namespace rt_cuda;

namespace {

__device__ inline float gelu_sig(float x) {
    const float u2 = 2.0f * 0.7978845608028654f * (x + 0.044715f * x * x * x);
    return 1.0f / (1.0f + expf(-u2));
}

__global__ void geglu_kernel(int64_t n, const float *gate, const float *up, float *y) {
    RT_GRID_STRIDE(i, n) y[i] = gate[i] * gelu_sig(gate[i]) * up[i];
}

__global__ void geglu_bwd_kernel(int64_t n, const float *gate, const float *up, const float *dy,
                                 float *dgate, float *dup) {
    RT_GRID_STRIDE(i, n) {
        const float x = gate[i], s = gelu_sig(x);
        if (dgate)
            dgate[i] += dy[i] * up[i] *
                        (s + x * s * (1.0f - s) * 2.0f * 0.7978845608028654f *
                                 (1.0f + 3.0f * 0.044715f * x * x));
        if (dup) dup[i] += dy[i] * x * s;
    }
}

} // namespace

void rt_cuda_geglu(int64_t n, const float *gate, const float *up, float *y) {
    if (n <= 0) return;
    geglu_kernel<<<grid_for(n), kThreads>>>(n, gate, up, y);
    RT_CUDA_LAUNCHED();
}

void rt_cuda_geglu_bwd(int64_t n, const float *gate, const float *up, const float *dy,
                       float *dgate, float *dup) {
    if (n <= 0 || (!dgate && !dup)) return;
    geglu_bwd_kernel<<<grid_for(n), kThreads>>>(n, gate, up, dy, dgate, dup);
    RT_CUDA_LAUNCHED();
}
