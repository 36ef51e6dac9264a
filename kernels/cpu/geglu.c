/* retort — CPU GELU-tanh gated linear unit (GeGLU), forward and backward.
 *
 * y = gelu_tanh(gate) * up (Shazeer 2020, "GLU Variants Improve
 * Transformer"; Gemma's MLP, transformers' "gelu_pytorch_tanh"):
 *   gelu_tanh(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
 * (Hendrycks & Gimpel 2016). Since 0.5 (1 + tanh(u)) = sigmoid(2u), this is
 * computed as x * sigmoid(2u) with rt_fast_expf, so the loops vectorise like
 * silu's; the derivative is
 *   gelu'(x) = s + x s (1 - s) 2 u',  s = sigmoid(2u),
 *   u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
 * Semantics as swiglu's (kernels/kernels.h); backward accumulates. */
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/vec_math.h"

#define GG_OMP_MIN 16384
#define GG_SPAN 8192
#define GG_C 0.7978845608028654f /* sqrt(2/pi) */
#define GG_A 0.044715f

RT_CPU_INLINE float gelu_sig(float x) { /* sigmoid(2u) */
    const float u2 = 2.0f * GG_C * (x + GG_A * x * x * x);
    return 1.0f / (1.0f + rt_fast_expf(-u2));
}

RT_CPU_INLINE float dgeluf(float x) {
    const float s = gelu_sig(x);
    return s + x * s * (1.0f - s) * 2.0f * GG_C * (1.0f + 3.0f * GG_A * x * x);
}

static RT_CPU_CLONES void geglu_span(int64_t n, const float *gate, const float *up, float *y) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] = gate[i] * gelu_sig(gate[i]) * up[i];
}

static RT_CPU_CLONES void geglu_bwd_span(int64_t n, const float *gate, const float *up,
                                         const float *dy, float *dgate, float *dup) {
    if (dgate) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) dgate[i] += dy[i] * up[i] * dgeluf(gate[i]);
    }
    if (dup) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) dup[i] += dy[i] * gate[i] * gelu_sig(gate[i]);
    }
}

void rt_cpu_geglu(int64_t n, const float *gate, const float *up, float *y) {
#pragma omp parallel for schedule(static) if (n >= GG_OMP_MIN)
    for (int64_t i0 = 0; i0 < n; i0 += GG_SPAN)
        geglu_span(n - i0 < GG_SPAN ? n - i0 : GG_SPAN, gate + i0, up + i0, y + i0);
}

void rt_cpu_geglu_bwd(int64_t n, const float *gate, const float *up, const float *dy,
                      float *dgate, float *dup) {
    if (!dgate && !dup) return;
#pragma omp parallel for schedule(static) if (n >= GG_OMP_MIN)
    for (int64_t i0 = 0; i0 < n; i0 += GG_SPAN)
        geglu_bwd_span(n - i0 < GG_SPAN ? n - i0 : GG_SPAN, gate + i0, up + i0, dy + i0,
                       dgate ? dgate + i0 : NULL, dup ? dup + i0 : NULL);
}
