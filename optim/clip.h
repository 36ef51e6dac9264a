/* retort — gradient clipping by global L2 norm on flat f32 buffers.
 *
 * Mirrors torch.nn.utils.clip_grad_norm_ (norm_type 2, error_if_nonfinite
 * False): total_norm = ||g||_2 over every gradient, coef = max_norm /
 * (total_norm + 1e-6) clamped to at most 1, g <- g * coef.
 *
 * Sharded use (ZeRO-1 / data parallel): each rank calls rt_sumsq on its
 * shard, the caller all-reduces the sums, takes sqrt, then calls
 * rt_clip_coef and rt_clip_scale. Single-buffer use: rt_clip_grad_norm.
 */
#ifndef RT_OPTIM_CLIP_H
#define RT_OPTIM_CLIP_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Sum of squares of g[0..n) accumulated in double. The partition into
 * blocks depends only on n, never on the thread count, so the result is
 * bitwise reproducible across OMP_NUM_THREADS for a given build. Returns 0
 * for n <= 0 or g == NULL. NaN/Inf in g propagate to the result. */
double rt_sumsq(const float *g, int64_t n);

/* Clip coefficient min(1, max_norm / (total_norm + 1e-6)), as torch. Returns
 * 1 when max_norm <= 0 (clipping off). A NaN total_norm gives NaN and an
 * infinite one gives 0, exactly as torch; callers that want to skip
 * non-finite steps must test total_norm themselves first. */
float rt_clip_coef(double total_norm, float max_norm);

/* g[0..n) *= coef, in place. A coef of exactly 1 is a no-op (torch multiplies
 * by 1.0, which leaves every finite value unchanged). */
void rt_clip_scale(float *g, int64_t n, float coef);

/* Convenience for one buffer holding every gradient: computes the global L2
 * norm, scales g in place by rt_clip_coef(norm, max_norm) (no scaling when
 * max_norm <= 0) and returns the pre-clip norm, for logging. */
float rt_clip_grad_norm(float *g, int64_t n, float max_norm);

#ifdef __cplusplus
}
#endif
#endif
