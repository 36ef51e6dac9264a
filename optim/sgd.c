/* retort — SGD with momentum on flat f32 buffers (see sgd.h for the formula). */
#include "optim/sgd.h"

#include <math.h>
#include <stddef.h>

/* Below this many elements, waking the OpenMP team costs more than the loop. */
#define RT_SGD_PAR_MIN 32768

rt_sgd_config rt_sgd_default(void) {
    rt_sgd_config c = {0.0, 0.0, 0.0, 0};
    return c;
}

rt_status rt_sgd_check(const rt_sgd_config *cfg) {
    if (!cfg) return rt_errorf(RT_EINTERNAL, "sgd: config is NULL");
    /* Written as !(ok) so that NaN fails too. */
    if (!(cfg->momentum >= 0.0 && isfinite(cfg->momentum)))
        return rt_errorf(RT_EINPUT, "sgd: momentum must be finite and >= 0, got %g",
                         cfg->momentum);
    if (!(cfg->dampening >= 0.0 && isfinite(cfg->dampening)))
        return rt_errorf(RT_EINPUT, "sgd: dampening must be finite and >= 0, got %g",
                         cfg->dampening);
    if (!(cfg->weight_decay >= 0.0 && isfinite(cfg->weight_decay)))
        return rt_errorf(RT_EINPUT, "sgd: weight_decay must be finite and >= 0, got %g",
                         cfg->weight_decay);
    if (cfg->nesterov && !(cfg->momentum > 0.0 && cfg->dampening == 0.0))
        return rt_errorf(RT_EINPUT,
                         "sgd: nesterov needs momentum > 0 and dampening 0 (got %g and %g)",
                         cfg->momentum, cfg->dampening);
    return RT_OK;
}

rt_sgd_scalars rt_sgd_scalars_at(const rt_sgd_config *cfg, float lr, int64_t t) {
    rt_sgd_scalars s;
    s.lr = lr;
    s.momentum = (float)cfg->momentum;
    s.one_m_damp = (float)(1.0 - cfg->dampening);
    s.weight_decay = (float)cfg->weight_decay;
    s.use_momentum = cfg->momentum != 0.0;
    s.nesterov = cfg->nesterov != 0;
    s.first = t == 1;
    return s;
}

rt_status rt_sgd_update(float *param, const float *grad, float *buf, int64_t n, float lr,
                        const rt_sgd_config *cfg, int64_t t) {
    RT_TRY(rt_sgd_check(cfg));
    if (!(lr >= 0.0f && isfinite(lr)))
        return rt_errorf(RT_EINPUT, "sgd: learning rate must be finite and >= 0, got %g",
                         (double)lr);
    if (t < 1) return rt_errorf(RT_EINPUT, "sgd: step must be >= 1 (1-based), got %lld",
                                (long long)t);
    if (n < 0) return rt_errorf(RT_EINTERNAL, "sgd: negative element count %lld", (long long)n);
    if (n == 0) return RT_OK;
    if (!param || !grad || (cfg->momentum != 0.0 && !buf))
        return rt_errorf(RT_EINTERNAL, "sgd: NULL buffer for %lld elements", (long long)n);

    const rt_sgd_scalars s = rt_sgd_scalars_at(cfg, lr, t);
    if (!s.use_momentum) buf = NULL; /* never read; keeps &buf[i] off NULL */
#pragma omp parallel for simd if (n >= RT_SGD_PAR_MIN)
    for (int64_t i = 0; i < n; i++) rt_sgd_elem(&param[i], grad[i], buf ? &buf[i] : NULL, &s);
    return RT_OK;
}
