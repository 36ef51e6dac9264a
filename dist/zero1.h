/* retort — data-parallel optimizer steps: stage 0 (replicated AdamW state)
 * and ZeRO stage 1 (sharded AdamW state).
 *
 * ZeRO stage 1 is from Rajbhandari et al., "ZeRO: Memory Optimizations
 * Toward Training Trillion Parameter Models" (SC 2020), section 5.1 (P_os):
 * each of the W ranks keeps the optimizer state of 1/W of the parameters,
 * gradients are reduce-scattered instead of all-reduced, each rank updates
 * its own slice and the updated parameters are all-gathered. Communication
 * volume equals one all-reduce; moment memory drops by W.
 *
 * Both work on the flat buffers of rt_params (autograd/tensor.h): params and
 * grads are f32[n] with n = rt_params.numel, the padded length. Rank r owns
 * the shard [r*n/W, (r+1)*n/W), so n % W == 0 is required: finalize the
 * parameter store with rt_params_finalize(p, rt_zero1_pad_multiple(d)). The
 * padding holds zero parameters and zero gradients, which AdamW leaves at
 * zero, so it never changes the norm or the model.
 *
 * Each step (both stages) is, with g_r the gradient of rank r:
 *   g     = (1/W) sum_r g_r                       (average, as DDP does)
 *   norm  = ||g||_2                               (global, pre-clip)
 *   g    *= min(1, max_norm / (norm + 1e-6))      (torch clip_grad_norm_)
 *   AdamW (optim/adamw.h) with lr at step t.
 * If norm is not finite (a NaN or Inf gradient on any rank), the step is
 * skipped on every rank alike: parameters and moments are left unchanged
 * and the norm is returned, so the trainer can log it and not advance t.
 *
 * The arithmetic runs where the buffers live: on the CPU through optim/
 * (rt_sumsq, rt_clip_scale, rt_adamw_update), on a GPU through the kernel
 * table (sumsq: a device reduction whose f64 total is the only value that
 * reaches the host; adamw: one fused clip + AdamW launch over the shard),
 * so a GPU step copies no buffer to the host.
 */
#ifndef RT_DIST_ZERO1_H
#define RT_DIST_ZERO1_H

#include <stdint.h>

#include "autograd/tensor.h"
#include "dist/dist.h"
#include "kernels/error.h"
#include "optim/adamw.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Optimizer state of one rank. For checkpoints, m and v cover the element
 * range [shard_begin, shard_begin + shard_n) of the flat buffer: save them
 * with the range (a resume needs the same world size), or use
 * rt_zero1_gather_state / rt_zero1_load_state for a world-size-independent
 * full-length copy. */
typedef struct rt_zero1 {
    int stage;           /* 0: rt_dp_init/rt_dp_step, 1: rt_zero1_init/rt_zero1_step */
    int64_t n;           /* padded flat length (a multiple of the world size) */
    int64_t shard_begin; /* stage 1: rank*n/world; stage 0: 0 */
    int64_t shard_n;     /* stage 1: n/world; stage 0: n */
    rt_device device;    /* where params, grads, m and v live */
    float *m, *v;        /* AdamW moments, f32[shard_n] on `device`, zeroed by
                            init; owned (rt_zero1_free) */
} rt_zero1;

/* The pad multiple for rt_params_finalize: lcm(64, world), so shards are
 * equal and each starts on a 256-byte boundary when world divides 64. */
int64_t rt_zero1_pad_multiple(const rt_dist *d);

/* ZeRO-1 state: zeroed moments for this rank's shard.
 *   n:   padded flat length, > 0 and a multiple of d->world.
 *   dev: the device of the params/grads buffers; must equal d->device.
 * Errors: RT_EINPUT for a device the build lacks; RT_EINTERNAL for n <= 0,
 * n % world != 0, a device other than d->device, or out of memory. */
rt_status rt_zero1_init(rt_zero1 *z, const rt_dist *d, int64_t n, rt_device dev);

/* Stage-0 state: zeroed moments over the whole buffer (shard = [0, n)), so
 * the trainer holds one rt_zero1 and calls rt_dp_step or rt_zero1_step.
 * n % world == 0 is not required. Errors as rt_zero1_init. */
rt_status rt_dp_init(rt_zero1 *z, const rt_dist *d, int64_t n, rt_device dev);

/* Frees m and v; z is left zeroed. Safe on a zeroed or already freed z. */
void rt_zero1_free(rt_zero1 *z);

/* One ZeRO-1 optimizer step; collective (every rank calls it with the same
 * lr, cfg, t and max_grad_norm).
 *   params: f32[z->n], identical on every rank before and after.
 *   grads:  f32[z->n], this rank's gradient; CLOBBERED: on return only
 *           [shard_begin, shard_begin+shard_n) holds the averaged, clipped
 *           gradient and the rest is undefined (zero grads before the next
 *           backward, as the trainer does every step anyway).
 *   lr, cfg, t: as rt_adamw_update (t 1-based).
 *   max_grad_norm: clip threshold; <= 0 disables clipping.
 *   norm:   out, the global pre-clip L2 norm of the averaged gradient.
 * Steps: reduce-scatter (average) of grads into this rank's shard, sum of
 * squares of the shard summed across ranks (rt_dist_allreduce_sum_f64),
 * clip, AdamW on this rank's shard of params and moments, in-place
 * all-gather of params. Non-finite norm: returns RT_OK with *norm set and
 * nothing updated.
 * Errors: RT_EINPUT for a bad cfg, lr or t (checked before communicating);
 * RT_EINTERNAL for a state of the wrong stage or a failed collective. */
rt_status rt_zero1_step(rt_zero1 *z, rt_dist *d, float *params, float *grads, float lr,
                        const rt_adamw_config *cfg, int64_t t, float max_grad_norm,
                        float *norm);

/* The stage-0 step with the same contract, except that grads (all of it)
 * holds the averaged, clipped gradient on return: all-reduce (average) of
 * grads, norm of the full averaged gradient (identical on every rank, since
 * every rank then holds the same bits), clip, AdamW over all n elements. */
rt_status rt_dp_step(rt_zero1 *z, rt_dist *d, float *params, float *grads, float lr,
                     const rt_adamw_config *cfg, int64_t t, float max_grad_norm, float *norm);

/* Full-length moments for a checkpoint: m_full, v_full are f32[z->n] (host,
 * caller-owned) and receive every rank's shard in order (all-gather, so
 * every rank gets them; stage 0 copies; device moments are gathered on the
 * device and downloaded). Collective. */
rt_status rt_zero1_gather_state(const rt_zero1 *z, rt_dist *d, float *m_full, float *v_full);

/* Loads this rank's shard of full-length HOST moments f32[z->n] (e.g. read
 * from a checkpoint written by rt_zero1_gather_state under any world size)
 * into z->m, z->v (uploaded when they live on a device). Not collective. */
rt_status rt_zero1_load_state(rt_zero1 *z, const float *m_full, const float *v_full);

#ifdef __cplusplus
}
#endif
#endif
