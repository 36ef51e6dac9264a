/* retort — AdamW on flat f32 buffers.
 *
 * All trainable parameters, their gradients and each moment live in one
 * contiguous f32 buffer each, so one call updates every parameter. ZeRO-1
 * calls the same function on a sub-range [off, off+n) of each buffer, so
 * nothing here assumes it sees the whole model.
 *
 * The arithmetic is torch.optim.AdamW (single-tensor path, amsgrad=False,
 * maximize=False), i.e. Loshchilov & Hutter, "Decoupled Weight Decay
 * Regularization" (ICLR 2019), Algorithm 2, with torch's placement of eps:
 *
 *   p   <- p * (1 - lr*wd)                      (decoupled weight decay, first)
 *   m   <- b1*m + (1-b1)*g
 *   v   <- b2*v + (1-b2)*g^2
 *   bc1 =  1 - b1^t,  bc2 = 1 - b2^t            (t = 1-based step)
 *   p   <- p - (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps)
 */
#ifndef RT_OPTIM_ADAMW_H
#define RT_OPTIM_ADAMW_H

#include <math.h>
#include <stdint.h>

#include "kernels/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Lets the CUDA kernel compile the same per-element arithmetic. */
#ifndef RT_HD
#ifdef __CUDACC__
#define RT_HD __host__ __device__
#else
#define RT_HD
#endif
#endif

typedef struct {
    /* double, like torch's Python-float hyperparameters: 1 - beta and the
     * bias corrections are formed in double before rounding to f32. */
    double beta1;        /* first-moment decay, [0, 1) */
    double beta2;        /* second-moment decay, [0, 1) */
    double eps;          /* added to sqrt(v_hat), >= 0 */
    double weight_decay; /* decoupled (multiplies p by 1 - lr*wd), >= 0 */
} rt_adamw_config;

/* torch.optim.AdamW defaults: betas (0.9, 0.999), eps 1e-8, weight_decay 0.01.
 * (HF TrainingArguments defaults weight_decay to 0.0; recipes override.) */
rt_adamw_config rt_adamw_default(void);

/* Validates a config with torch's rules (0 <= beta < 1, eps >= 0, wd >= 0,
 * all finite). Returns RT_EINPUT with a message naming the field. */
rt_status rt_adamw_check(const rt_adamw_config *cfg);

/* Per-step scalars, computed once per call in double and rounded to f32,
 * as torch does when it hands Python floats to its f32 tensor ops. */
typedef struct rt_adamw_scalars {
    float decay;     /* 1 - lr*wd */
    float step_size; /* lr / bc1 */
    float bc2_sqrt;  /* sqrt(1 - b2^t) */
    float one_m_b1, one_m_b2;
    float beta1, beta2, eps;
} rt_adamw_scalars;

/* One element of the update; the CPU loop and the CUDA kernel both call it
 * so the two backends round identically. */
static inline RT_HD void rt_adamw_elem(float *p, float g, float *m, float *v,
                                       const rt_adamw_scalars *s) {
    float pp = *p * s->decay;
    float mm = s->beta1 * *m + s->one_m_b1 * g;
    float vv = s->beta2 * *v + s->one_m_b2 * g * g;
    float denom = sqrtf(vv) / s->bc2_sqrt + s->eps;
    *m = mm;
    *v = vv;
    *p = pp - s->step_size * (mm / denom);
}

/* Fills the per-step scalars for learning rate `lr` at 1-based step `t`. */
rt_adamw_scalars rt_adamw_scalars_at(const rt_adamw_config *cfg, float lr, int64_t t);

/* One AdamW step over n elements, in place.
 *   param, m, v: f32[n], updated in place (m and v start zeroed at t = 1;
 *                the caller allocates, zeroes, checkpoints and frees them).
 *   grad:        f32[n], read only.
 *   lr:          learning rate for this step (e.g. rt_lr_at(..., t-1, ...)).
 *   t:           1-based step count, owned and checkpointed by the trainer;
 *                the same t for every shard of one step.
 * Buffers must not overlap each other. n == 0 is a no-op (pointers may then
 * be NULL). Errors: RT_EINPUT for a bad config, lr < 0 or t < 1; RT_EINTERNAL
 * for n < 0 or a NULL buffer. */
rt_status rt_adamw_update(float *param, const float *grad, float *m, float *v, int64_t n,
                          float lr, const rt_adamw_config *cfg, int64_t t);

#ifdef __cplusplus
}
#endif
#endif
