/* retort — AdamW on flat f32 buffers (see adamw.h for the formula). */
#include "optim/adamw.h"

#include <math.h>

/* Below this many elements, waking the OpenMP team costs more than the loop. */
#define RT_ADAMW_PAR_MIN 32768

rt_adamw_config rt_adamw_default(void) {
    rt_adamw_config c = {0.9, 0.999, 1e-8, 0.01};
    return c;
}

rt_status rt_adamw_check(const rt_adamw_config *cfg) {
    if (!cfg) return rt_errorf(RT_EINTERNAL, "adamw: config is NULL");
    /* Written as !(ok) so that NaN fails too. */
    if (!(cfg->beta1 >= 0.0 && cfg->beta1 < 1.0))
        return rt_errorf(RT_EINPUT, "adamw: beta1 must be in [0, 1), got %g", cfg->beta1);
    if (!(cfg->beta2 >= 0.0 && cfg->beta2 < 1.0))
        return rt_errorf(RT_EINPUT, "adamw: beta2 must be in [0, 1), got %g", cfg->beta2);
    if (!(cfg->eps >= 0.0 && isfinite(cfg->eps)))
        return rt_errorf(RT_EINPUT, "adamw: eps must be finite and >= 0, got %g", cfg->eps);
    if (!(cfg->weight_decay >= 0.0 && isfinite(cfg->weight_decay)))
        return rt_errorf(RT_EINPUT, "adamw: weight_decay must be finite and >= 0, got %g",
                         cfg->weight_decay);
    return RT_OK;
}

rt_adamw_scalars rt_adamw_scalars_at(const rt_adamw_config *cfg, float lr, int64_t t) {
    /* torch computes these in Python floats (double) and the f32 ops round them. */
    double b1 = cfg->beta1, b2 = cfg->beta2;
    double bc1 = 1.0 - pow(b1, (double)t);
    double bc2 = 1.0 - pow(b2, (double)t);
    rt_adamw_scalars s;
    s.decay = (float)(1.0 - (double)lr * cfg->weight_decay);
    s.step_size = (float)((double)lr / bc1);
    s.bc2_sqrt = (float)sqrt(bc2);
    s.one_m_b1 = (float)(1.0 - b1);
    s.one_m_b2 = (float)(1.0 - b2);
    s.beta1 = (float)b1;
    s.beta2 = (float)b2;
    s.eps = (float)cfg->eps;
    return s;
}

rt_status rt_adamw_update(float *param, const float *grad, float *m, float *v, int64_t n,
                          float lr, const rt_adamw_config *cfg, int64_t t) {
    RT_TRY(rt_adamw_check(cfg));
    if (!(lr >= 0.0f && isfinite(lr)))
        return rt_errorf(RT_EINPUT, "adamw: learning rate must be finite and >= 0, got %g",
                         (double)lr);
    if (t < 1) return rt_errorf(RT_EINPUT, "adamw: step must be >= 1 (1-based), got %lld",
                                (long long)t);
    if (n < 0) return rt_errorf(RT_EINTERNAL, "adamw: negative element count %lld", (long long)n);
    if (n == 0) return RT_OK;
    if (!param || !grad || !m || !v)
        return rt_errorf(RT_EINTERNAL, "adamw: NULL buffer for %lld elements", (long long)n);

    const rt_adamw_scalars s = rt_adamw_scalars_at(cfg, lr, t);
#pragma omp parallel for simd if (n >= RT_ADAMW_PAR_MIN)
    for (int64_t i = 0; i < n; i++) rt_adamw_elem(&param[i], grad[i], &m[i], &v[i], &s);
    return RT_OK;
}
