/* retort — the training loop shared by finetune and distill.
 *
 * One optimizer step: for each of gradient_accumulation_steps micro-batches,
 * build the loss with the job's loss function and backpropagate into the flat
 * gradient buffer; average gradients across ranks (dist/), clip by global
 * norm, step the learning-rate schedule and the optimizer. The loss of a
 * micro-batch is its summed token loss divided by the number of target
 * tokens of the whole global step (so the step loss is the mean over all its
 * tokens), times world size (the cross-rank gradient average divides it back).
 * Eval on the held-out rows before the first step, every eval_steps and after
 * the last; checkpoints every save_steps; rank 0 alone writes.
 */
#ifndef RT_TRAINER_H
#define RT_TRAINER_H

#include "dist/dist.h"
#include "train/data/data.h"
#include "train/metrics.h"
#include "train/model/llama.h"
#include "train/recipe.h"

/* The scalar loss of one micro-batch: sum over its target tokens / denom.
 * (Finetune: cross-entropy; distill: CE mixed with a KD loss.) */
typedef rt_tensor *(*rt_loss_fn)(rt_ctx *ctx, void *user, rt_llama *m, const rt_batch *b,
                                 rt_tensor *ids, rt_tensor *pos, rt_tensor *seg, rt_tensor *labels,
                                 float denom);

/* Saves the trained weights into a directory (adapter or full model). */
typedef rt_status (*rt_save_fn)(void *user, rt_llama *m, const char *dir);

typedef struct {
    const rt_recipe *recipe;
    rt_dist *dist;
    rt_device device;
    rt_llama *model;               /* trainable parameters in model->params */
    const rt_dataset *train, *val; /* val may be NULL or empty: no eval */
    rt_loss_fn loss;
    void *loss_user;
    rt_save_fn save;
    void *save_user;
    rt_loss_parts *parts;          /* NULL, or parts the loss function adds into (metrics.h) */
} rt_train_job;

typedef struct {
    int64_t steps;                 /* optimizer steps taken in this run */
    double first_val_loss, last_val_loss; /* NAN without a validation set */
    double seconds, tokens_per_s;
    double last_loss;
} rt_train_result;

/* Runs the whole schedule (resuming when the recipe says so) and writes
 * output_dir/{metrics.jsonl, loss.svg, recipe.yaml} and the final weights via
 * job->save. */
rt_status rt_train(const rt_train_job *job, rt_train_result *res);

/* Mean target-token cross-entropy (nats) of `ds` in no-grad mode,
 * micro_batch_size rows at a time. */
rt_status rt_train_eval(const rt_train_job *job, rt_ctx *ctx, const rt_dataset *ds, double *loss);

#endif
