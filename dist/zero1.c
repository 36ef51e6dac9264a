/* retort — stage-0 and ZeRO-1 optimizer steps over flat buffers (see zero1.h). */
#include "dist/zero1.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/fault.h"
#include "kernels/kernels.h"
#include "optim/clip.h"

int64_t rt_zero1_pad_multiple(const rt_dist *d) {
    int64_t a = 64, b = d && d->world > 0 ? d->world : 1;
    int64_t x = a, y = b;
    while (y) {
        int64_t r = x % y;
        x = y;
        y = r;
    }
    return a / x * b;
}

static rt_status state_init(rt_zero1 *z, const rt_dist *d, int64_t n, rt_device dev, int stage) {
    const char *who = stage ? "zero1" : "dp";
    if (!z || !d) return rt_errorf(RT_EINTERNAL, "%s: NULL state or rt_dist", who);
    memset(z, 0, sizeof *z);
    const rt_kernels *k = rt_kernels_for(dev);
    if (!k) return rt_errorf(RT_EINPUT, "%s: this build has no %s backend", who, rt_device_name(dev));
    if (dev != RT_CPU && !k->adamw)
        return rt_errorf(RT_EINTERNAL, "%s: no AdamW kernel on %s", who, rt_device_name(dev));
    if (dev != d->device)
        return rt_errorf(RT_EINTERNAL, "%s: buffers on %s but the collectives use %s", who,
                         rt_device_name(dev), rt_device_name(d->device));
    if (n <= 0) return rt_errorf(RT_EINTERNAL, "%s: flat length %lld <= 0", who, (long long)n);
    if (stage == 1 && n % d->world != 0)
        return rt_errorf(RT_EINTERNAL,
                         "zero1: flat buffer of %lld elements does not split evenly over %d "
                         "ranks (finalize rt_params with rt_zero1_pad_multiple)",
                         (long long)n, d->world);
    z->stage = stage;
    z->n = n;
    z->device = dev;
    z->shard_n = stage ? n / d->world : n;
    z->shard_begin = stage ? (int64_t)d->rank * z->shard_n : 0;
    if (dev == RT_CPU) {
        z->m = calloc((size_t)z->shard_n, sizeof(float));
        z->v = calloc((size_t)z->shard_n, sizeof(float));
    } else {
        const size_t bytes = (size_t)z->shard_n * sizeof(float);
        z->m = k->malloc(bytes);
        z->v = z->m ? k->malloc(bytes) : NULL;
        if (z->m && z->v) {
            k->zero(z->m, bytes);
            k->zero(z->v, bytes);
            RT_TRY(rt_fault_status());
        }
    }
    if (!z->m || !z->v) {
        rt_zero1_free(z);
        return rt_errorf(RT_EINTERNAL, "%s: out of memory for 2 x %lld moment elements", who,
                         (long long)n);
    }
    return RT_OK;
}

rt_status rt_zero1_init(rt_zero1 *z, const rt_dist *d, int64_t n, rt_device dev) {
    return state_init(z, d, n, dev, 1);
}

rt_status rt_dp_init(rt_zero1 *z, const rt_dist *d, int64_t n, rt_device dev) {
    return state_init(z, d, n, dev, 0);
}

void rt_zero1_free(rt_zero1 *z) {
    if (!z) return;
    const rt_kernels *k = z->device == RT_CPU ? NULL : rt_kernels_for(z->device);
    if (k) {
        if (z->m) k->free(z->m);
        if (z->v) k->free(z->v);
    } else {
        free(z->m);
        free(z->v);
    }
    memset(z, 0, sizeof *z);
}

/* Everything that can be rejected locally is rejected before the first
 * collective, so a bad argument never leaves the other ranks waiting. Every
 * rank passes the same arguments, so every rank fails alike. */
static rt_status check_step(const rt_zero1 *z, int stage, const float *params,
                            const float *grads, float lr, const rt_adamw_config *cfg,
                            int64_t t, const float *norm) {
    const char *who = stage ? "zero1" : "dp";
    if (!z || z->stage != stage || !z->m || !z->v)
        return rt_errorf(RT_EINTERNAL, "%s: step on a state not made by rt_%s_init", who, who);
    if (!params || !grads || !norm)
        return rt_errorf(RT_EINTERNAL, "%s: NULL params, grads or norm", who);
    RT_TRY(rt_adamw_check(cfg));
    if (!(lr >= 0.0f && isfinite(lr)))
        return rt_errorf(RT_EINPUT, "%s: learning rate must be finite and >= 0, got %g", who,
                         (double)lr);
    if (t < 1)
        return rt_errorf(RT_EINPUT, "%s: step must be >= 1 (1-based), got %lld", who,
                         (long long)t);
    return RT_OK;
}

/* Clip and AdamW on the owned range, given the global norm. */
static rt_status update_range(rt_zero1 *z, float *p, float *g, float lr,
                              const rt_adamw_config *cfg, int64_t t, float max_grad_norm,
                              double norm) {
    if (z->device == RT_CPU) {
        rt_clip_scale(g, z->shard_n, rt_clip_coef(norm, max_grad_norm));
        return rt_adamw_update(p, g, z->m, z->v, z->shard_n, lr, cfg, t);
    }
    /* On the device: one fused clip + AdamW launch over the shard. */
    const rt_adamw_scalars s = rt_adamw_scalars_at(cfg, lr, t);
    rt_kernels_for(z->device)->adamw(z->shard_n, &s, rt_clip_coef(norm, max_grad_norm), p, g,
                                     z->m, z->v);
    return rt_fault_status();
}

/* Sum of squares of a buffer where it lives: a device reduction on a GPU
 * (only the f64 total crosses to the host). */
static rt_status sumsq_on(const rt_zero1 *z, const float *g, int64_t n, double *out) {
    if (z->device == RT_CPU) {
        *out = rt_sumsq(g, n);
        return RT_OK;
    }
    *out = rt_kernels_for(z->device)->sumsq(n, g);
    return rt_fault_status();
}

rt_status rt_zero1_step(rt_zero1 *z, rt_dist *d, float *params, float *grads, float lr,
                        const rt_adamw_config *cfg, int64_t t, float max_grad_norm,
                        float *norm) {
    RT_TRY(check_step(z, 1, params, grads, lr, cfg, t, norm));
    float *g = grads + z->shard_begin, *p = params + z->shard_begin;
    RT_TRY(rt_dist_reduce_scatter_avg(d, grads, g, z->n));
    double sumsq;
    RT_TRY(sumsq_on(z, g, z->shard_n, &sumsq));
    RT_TRY(rt_dist_allreduce_sum_f64(d, &sumsq, 1));
    const double total = sqrt(sumsq);
    *norm = (float)total;
    if (!isfinite(total)) return RT_OK;
    RT_TRY(update_range(z, p, g, lr, cfg, t, max_grad_norm, total));
    return rt_dist_allgather(d, p, params, z->n);
}

rt_status rt_dp_step(rt_zero1 *z, rt_dist *d, float *params, float *grads, float lr,
                     const rt_adamw_config *cfg, int64_t t, float max_grad_norm, float *norm) {
    RT_TRY(check_step(z, 0, params, grads, lr, cfg, t, norm));
    RT_TRY(rt_dist_allreduce_avg(d, grads, z->n));
    double sumsq;
    RT_TRY(sumsq_on(z, grads, z->n, &sumsq));
    const double total = sqrt(sumsq);
    *norm = (float)total;
    if (!isfinite(total)) return RT_OK;
    return update_range(z, params, grads, lr, cfg, t, max_grad_norm, total);
}

rt_status rt_zero1_gather_state(const rt_zero1 *z, rt_dist *d, float *m_full, float *v_full) {
    if (!z || !z->m || !z->v || !m_full || !v_full)
        return rt_errorf(RT_EINTERNAL, "zero1: gather_state: NULL state or buffer");
    const size_t bytes = (size_t)z->n * sizeof(float);
    if (z->device != RT_CPU) {
        /* Gather on the device (the collectives take device buffers), then
         * one download per moment. */
        const rt_kernels *k = rt_kernels_for(z->device);
        float *tmp = k->malloc(bytes);
        if (!tmp) return RT_EINTERNAL;
        rt_status s = RT_OK;
        for (int i = 0; i < 2 && s == RT_OK; i++) {
            const float *mine = i ? z->v : z->m;
            if (z->stage == 0) k->copy(tmp, mine, bytes);
            else s = rt_dist_allgather(d, mine, tmp, z->n);
            if (s == RT_OK) k->download(i ? v_full : m_full, tmp, bytes);
            if (s == RT_OK) s = rt_fault_status();
        }
        k->free(tmp);
        return s;
    }
    if (z->stage == 0) {
        memcpy(m_full, z->m, bytes);
        memcpy(v_full, z->v, bytes);
        return RT_OK;
    }
    RT_TRY(rt_dist_allgather(d, z->m, m_full, z->n));
    return rt_dist_allgather(d, z->v, v_full, z->n);
}

rt_status rt_zero1_load_state(rt_zero1 *z, const float *m_full, const float *v_full) {
    if (!z || !z->m || !z->v || !m_full || !v_full)
        return rt_errorf(RT_EINTERNAL, "zero1: load_state: NULL state or buffer");
    const size_t bytes = (size_t)z->shard_n * sizeof(float);
    if (z->device != RT_CPU) {
        const rt_kernels *k = rt_kernels_for(z->device);
        k->upload(z->m, m_full + z->shard_begin, bytes);
        k->upload(z->v, v_full + z->shard_begin, bytes);
        return rt_fault_status();
    }
    memcpy(z->m, m_full + z->shard_begin, bytes);
    memcpy(z->v, v_full + z->shard_begin, bytes);
    return RT_OK;
}
