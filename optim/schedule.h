/* retort — learning-rate schedules, as Hugging Face transformers.
 *
 * Multipliers follow transformers/optimization.py (lr = base_lr * lambda):
 *   warmup (all kinds), step < W:  lambda = step / max(1, W)
 *   constant (get_constant_schedule_with_warmup):  lambda = 1
 *   linear   (get_linear_schedule_with_warmup):
 *            lambda = max(0, (T - step) / max(1, T - W))
 *   cosine   (get_cosine_schedule_with_warmup, num_cycles = 0.5):
 *            progress = (step - W) / max(1, T - W)
 *            lambda = max(0, 0.5 * (1 + cos(pi * 2 * 0.5 * progress)))
 * with W = warmup steps and T = total optimizer steps. As in transformers,
 * cosine is not clamped past T (it would rise again); the trainer stops at T.
 *
 * Step indexing: `step` is 0-based, as HF's LambdaLR. HF's Trainer creates
 * the scheduler (lr = lambda(0)) and calls scheduler.step() after each
 * optimizer.step(), so the k-th optimizer update (k = 1, 2, ...; AdamW's
 * t = k) uses rt_lr_at(kind, lr, k - 1, W, T). With W > 0 the first update
 * therefore runs at lr 0, exactly as in HF.
 */
#ifndef RT_OPTIM_SCHEDULE_H
#define RT_OPTIM_SCHEDULE_H

#include <stdint.h>

#include "kernels/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { RT_LR_CONSTANT, RT_LR_LINEAR, RT_LR_COSINE } rt_lr_kind;

/* Parses a schedule name: "constant", "linear" or "cosine"; HF's
 * "constant_with_warmup" is accepted as an alias of "constant" (retort's
 * constant schedule always honours warmup; give 0 warmup steps for HF's
 * plain "constant"). Errors: RT_EINPUT naming the bad value. */
rt_status rt_lr_kind_parse(const char *name, rt_lr_kind *out);

/* The canonical name of a kind ("constant", "linear", "cosine"); static string. */
const char *rt_lr_kind_name(rt_lr_kind kind);

/* Learning rate at 0-based scheduler step `step` (see the indexing note
 * above): base_lr * lambda(step), lambda computed in double. total_steps is
 * unused by RT_LR_CONSTANT. Negative warmup_steps count as 0. */
float rt_lr_at(rt_lr_kind kind, float base_lr, int64_t step, int64_t warmup_steps,
               int64_t total_steps);

/* Warmup length as transformers' TrainingArguments.get_warmup_steps:
 * warmup_steps if > 0, else ceil(total_steps * warmup_ratio) computed in
 * double (so 100 * 0.07 = 7.000000000000001 gives 8, like Python). A ratio
 * <= 0 gives 0. */
int64_t rt_warmup_steps(int64_t warmup_steps, double warmup_ratio, int64_t total_steps);

#ifdef __cplusplus
}
#endif
#endif
