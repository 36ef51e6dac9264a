/* retort — gradient clipping by global L2 norm (see clip.h). */
#include "optim/clip.h"

#include <math.h>

/* A fixed number of blocks makes the summation order a function of n alone. */
#define RT_SUMSQ_BLOCKS 64
/* Below this many elements one thread is faster than waking the team. */
#define RT_CLIP_PAR_MIN 32768

double rt_sumsq(const float *g, int64_t n) {
    if (n <= 0 || !g) return 0.0;
    double part[RT_SUMSQ_BLOCKS];
    const int64_t bs = (n + RT_SUMSQ_BLOCKS - 1) / RT_SUMSQ_BLOCKS;
#pragma omp parallel for if (n >= RT_CLIP_PAR_MIN)
    for (int b = 0; b < RT_SUMSQ_BLOCKS; b++) {
        int64_t lo = (int64_t)b * bs, hi = lo + bs;
        if (lo > n) lo = n;
        if (hi > n) hi = n;
        double acc = 0.0;
#pragma omp simd reduction(+ : acc)
        for (int64_t i = lo; i < hi; i++) acc += (double)g[i] * (double)g[i];
        part[b] = acc;
    }
    double total = 0.0;
    for (int b = 0; b < RT_SUMSQ_BLOCKS; b++) total += part[b];
    return total;
}

float rt_clip_coef(double total_norm, float max_norm) {
    if (!(max_norm > 0.0f)) return 1.0f;
    double coef = (double)max_norm / (total_norm + 1e-6);
    /* Not fmin: torch's clamp keeps a NaN coefficient NaN. */
    if (coef > 1.0) coef = 1.0;
    return (float)coef;
}

void rt_clip_scale(float *g, int64_t n, float coef) {
    if (n <= 0 || !g || coef == 1.0f) return;
#pragma omp parallel for simd if (n >= RT_CLIP_PAR_MIN)
    for (int64_t i = 0; i < n; i++) g[i] *= coef;
}

float rt_clip_grad_norm(float *g, int64_t n, float max_norm) {
    double norm = sqrt(rt_sumsq(g, n));
    rt_clip_scale(g, n, rt_clip_coef(norm, max_norm));
    return (float)norm;
}
