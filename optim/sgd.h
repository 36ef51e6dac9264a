/* retort — SGD with momentum on flat f32 buffers.
 *
 * Same flat-buffer contract as adamw.h: one contiguous f32 buffer each for
 * parameters, gradients and the momentum buffer; ZeRO-1 calls this on a
 * sub-range, so nothing assumes it sees the whole model.
 *
 * The arithmetic is torch.optim.SGD (single-tensor path, maximize=False),
 * i.e. Sutskever et al., "On the importance of initialization and momentum
 * in deep learning" (ICML 2013) in torch's formulation:
 *
 *   d <- g + wd*p                                 (coupled weight decay)
 *   if momentum != 0:
 *       buf <- d                       at the first step (t == 1)
 *       buf <- momentum*buf + (1-dampening)*d      afterwards
 *       d   <- nesterov ? d + momentum*buf : buf
 *   p <- p - lr*d
 */
#ifndef RT_OPTIM_SGD_H
#define RT_OPTIM_SGD_H

#include <stdint.h>

#include "kernels/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef RT_HD
#ifdef __CUDACC__
#define RT_HD __host__ __device__
#else
#define RT_HD
#endif
#endif

typedef struct {
    /* double, like torch's Python-float hyperparameters (1 - dampening is
     * formed in double before rounding to f32). */
    double momentum;     /* >= 0; 0 disables the momentum buffer */
    double dampening;    /* scales the new gradient into buf (not at t == 1) */
    double weight_decay; /* L2 penalty added to the gradient, >= 0 */
    int nesterov;        /* nonzero: Nesterov momentum (needs momentum > 0, dampening 0) */
} rt_sgd_config;

/* torch.optim.SGD defaults: momentum 0, dampening 0, weight_decay 0, no nesterov. */
rt_sgd_config rt_sgd_default(void);

/* Validates a config with torch's rules (momentum, dampening, weight_decay
 * finite and >= 0; nesterov needs momentum > 0 and dampening == 0). Returns
 * RT_EINPUT with a message naming the field. */
rt_status rt_sgd_check(const rt_sgd_config *cfg);

/* Per-step scalars, rounded to f32 as torch's f32 tensor ops round them. */
typedef struct {
    float lr, momentum, one_m_damp, weight_decay;
    int use_momentum; /* momentum != 0 */
    int nesterov;
    int first; /* t == 1: the buffer is initialised to the gradient */
} rt_sgd_scalars;

/* Fills the per-step scalars for learning rate `lr` at 1-based step `t`. */
rt_sgd_scalars rt_sgd_scalars_at(const rt_sgd_config *cfg, float lr, int64_t t);

/* One element of the update, shared with the CUDA kernel. `buf` is only
 * touched when s->use_momentum. */
static inline RT_HD void rt_sgd_elem(float *p, float g, float *buf, const rt_sgd_scalars *s) {
    float d = g + s->weight_decay * *p;
    if (s->use_momentum) {
        float b = s->first ? d : s->momentum * *buf + s->one_m_damp * d;
        *buf = b;
        d = s->nesterov ? d + s->momentum * b : b;
    }
    *p = *p - s->lr * d;
}

/* One SGD step over n elements, in place.
 *   param: f32[n], updated in place.
 *   grad:  f32[n], read only.
 *   buf:   f32[n] momentum buffer, updated in place; its contents are ignored
 *          (overwritten) at t == 1. May be NULL when momentum == 0. The
 *          caller allocates, checkpoints and frees it.
 *   lr:    learning rate for this step.
 *   t:     1-based step count owned by the trainer (only t == 1 matters).
 * Buffers must not overlap. n == 0 is a no-op. Errors: RT_EINPUT for a bad
 * config, lr < 0 or t < 1; RT_EINTERNAL for n < 0 or a NULL buffer. */
rt_status rt_sgd_update(float *param, const float *grad, float *buf, int64_t n, float lr,
                        const rt_sgd_config *cfg, int64_t t);

#ifdef __cplusplus
}
#endif
#endif
