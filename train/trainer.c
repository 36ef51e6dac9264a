#include "train/trainer.h"
#include "train/formats/fs.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dist/zero1.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/schedule.h"
#include "optim/sgd.h"
#include "train/checkpoint.h"
#include "train/metrics.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    rt_tensor *ids, *pos, *seg, *labels;
} batch_tensors;

static batch_tensors upload_batch(rt_ctx *ctx, const rt_batch *b) {
    int64_t shape[2] = {b->B, b->T};
    return (batch_tensors){rt_from_i32(ctx, b->ids, 2, shape), rt_from_i32(ctx, b->pos, 2, shape),
                           rt_from_i32(ctx, b->seg, 2, shape), rt_from_i32(ctx, b->labels, 2, shape)};
}

rt_status rt_train_eval(const rt_train_job *job, rt_ctx *ctx, const rt_dataset *ds, double *loss) {
    const rt_recipe *r = job->recipe;
    int64_t rows = rt_dataset_rows(ds);
    rt_batch b = {0};
    RT_TRY(rt_batch_alloc(&b, r->micro_batch_size, r->sequence_len));
    bool no_grad = ctx->no_grad, training = ctx->training;
    ctx->no_grad = true;
    ctx->training = false;
    double sum = 0;
    int64_t count = 0;
    rt_status s = RT_OK;
    for (int64_t row = 0; row < rows && s == RT_OK; row += b.B) {
        rt_ctx_reset(ctx);
        s = rt_data_val_batch(ds, row, &b);
        if (s != RT_OK) break;
        batch_tensors t = upload_batch(ctx, &b);
        rt_tensor *logits = rt_llama_forward(ctx, job->model, t.ids, t.pos, r->sample_packing ? t.seg : NULL);
        rt_tensor *l = rt_cross_entropy(ctx, logits, t.labels, 1.0f);
        if (!l) {
            s = ctx->status ? ctx->status : RT_EINTERNAL;
            break;
        }
        float v;
        rt_to_host(ctx, l, &v);
        sum += v;
        count += b.n_targets;
    }
    rt_ctx_reset(ctx);
    ctx->no_grad = no_grad;
    ctx->training = training;
    rt_batch_free(&b);
    *loss = count ? sum / (double)count : NAN;
    return s;
}

/* ---- optimizer state over the flat buffer (stage 0) or its shard (ZeRO-1) ---- */

typedef struct {
    int kind; /* RT_RECIPE_OPT_* */
    rt_adamw_config adamw;
    rt_sgd_config sgd;
    rt_zero1 z;     /* moments: the whole buffer at stage 0, this rank's shard at stage 1 */
    int zero_stage;
} optimizer;

static rt_status optimizer_init(optimizer *o, const rt_train_job *job) {
    const rt_recipe *r = job->recipe;
    memset(o, 0, sizeof *o);
    o->kind = r->optimizer;
    o->zero_stage = r->zero_stage;
    o->adamw = (rt_adamw_config){r->adam_beta1, r->adam_beta2, r->adam_epsilon, r->weight_decay};
    o->sgd = (rt_sgd_config){r->momentum, 0.0, r->weight_decay, 0};
    if (o->kind == RT_RECIPE_OPT_SGD && o->zero_stage == 1)
        return rt_errorf(RT_EINPUT, "zero_stage 1 shards AdamW moments; use optimizer: adamw");
    RT_TRY(o->kind == RT_RECIPE_OPT_ADAMW ? rt_adamw_check(&o->adamw) : rt_sgd_check(&o->sgd));
    const rt_params *P = &job->model->params;
    if (o->zero_stage == 1) return rt_zero1_init(&o->z, job->dist, P->numel, P->device);
    return rt_dp_init(&o->z, job->dist, P->numel, P->device);
}

/* Averages gradients, clips, and updates. *norm is the pre-clip global norm;
 * a non-finite norm updates nothing (every rank sees the same norm). */
static rt_status optimizer_step(optimizer *o, const rt_train_job *job, float lr, int64_t t,
                                float *norm) {
    rt_params *P = &job->model->params;
    float max_norm = (float)job->recipe->max_grad_norm;
    if (o->zero_stage == 1)
        return rt_zero1_step(&o->z, job->dist, P->data, P->grad, lr, &o->adamw, t, max_norm, norm);
    if (o->kind == RT_RECIPE_OPT_ADAMW)
        return rt_dp_step(&o->z, job->dist, P->data, P->grad, lr, &o->adamw, t, max_norm, norm);
    RT_TRY(rt_dist_allreduce_avg(job->dist, P->grad, P->numel));
    *norm = (float)sqrt(rt_sumsq(P->grad, P->numel));
    if (!isfinite(*norm)) return RT_OK;
    rt_clip_scale(P->grad, P->numel, rt_clip_coef(*norm, max_norm));
    return rt_sgd_update(P->data, P->grad, o->z.m, P->numel, lr, &o->sgd, t);
}

/* ---- checkpoints ---- */

static rt_train_state state_of(const optimizer *o, const rt_train_job *job, rt_ctx *ctx, int64_t step) {
    const rt_params *P = &job->model->params;
    return (rt_train_state){.world = job->dist->world, .rank = job->dist->rank,
                            .zero_stage = o->zero_stage, .optimizer = o->kind, .step = step,
                            .rng_counter = ctx->rng_counter, .n_params = P->numel,
                            .moment_begin = o->z.shard_begin, .moment_n = o->z.shard_n,
                            .params = P->data, .m = o->z.m,
                            .v = o->kind == RT_RECIPE_OPT_ADAMW ? o->z.v : NULL};
}

static rt_status save_checkpoint(const rt_train_job *job, const optimizer *o, rt_ctx *ctx,
                                 int64_t step) {
    const rt_recipe *r = job->recipe;
    rt_dist *d = job->dist;
    char final[4096], tmp[4200], marker[4300];
    snprintf(final, sizeof final, "%s/checkpoint-%lld", r->output_dir, (long long)step);
    snprintf(tmp, sizeof tmp, "%s.tmp", final);
    rt_status s = RT_OK;
    if (d->rank == 0 && mkdir(tmp, 0777) != 0 && errno != EEXIST)
        s = rt_errorf(RT_EINPUT, "%s: cannot create: %s", tmp, strerror(errno));
    RT_TRY(rt_dist_barrier(d));
    RT_TRY(s);
    rt_train_state st = state_of(o, job, ctx, step);
    RT_TRY(rt_checkpoint_write_state(tmp, &st));
    RT_TRY(rt_dist_barrier(d));
    if (d->rank != 0) return RT_OK;
    RT_TRY(job->save(job->save_user, job->model, tmp));
    snprintf(marker, sizeof marker, "%s/COMPLETE", tmp);
    FILE *f = fopen(marker, "w");
    if (!f || fclose(f) != 0) return rt_errorf(RT_EINPUT, "%s: cannot write", marker);
    if (rename(tmp, final) != 0)
        return rt_errorf(RT_EINPUT, "%s: cannot rename to %s: %s", tmp, final, strerror(errno));
    rt_checkpoint_prune(r->output_dir, r->save_total_limit);
    return RT_OK;
}

static rt_status resume(const rt_train_job *job, optimizer *o, rt_ctx *ctx, int64_t *step) {
    const rt_recipe *r = job->recipe;
    char dir[4096];
    if (!strcmp(r->resume_from_checkpoint, "latest"))
        RT_TRY(rt_checkpoint_latest(r->output_dir, dir, sizeof dir));
    else
        snprintf(dir, sizeof dir, "%s", r->resume_from_checkpoint);
    rt_train_state st = state_of(o, job, ctx, 0);
    RT_TRY(rt_checkpoint_read_state(dir, &st));
    *step = st.step;
    ctx->rng_counter = st.rng_counter;
    return RT_OK;
}

/* ---- the loop ---- */

static rt_lr_kind lr_kind(int sched) {
    return sched == RT_RECIPE_SCHED_CONSTANT ? RT_LR_CONSTANT
           : sched == RT_RECIPE_SCHED_LINEAR ? RT_LR_LINEAR : RT_LR_COSINE;
}

static rt_status eval_and_log(const rt_train_job *job, rt_ctx *ctx, rt_metrics *mx, int64_t step,
                              rt_train_result *res) {
    if (!job->val || rt_dataset_rows(job->val) == 0 || job->dist->rank != 0) return RT_OK;
    double vl;
    RT_TRY(rt_train_eval(job, ctx, job->val, &vl));
    if (isnan(res->first_val_loss)) res->first_val_loss = vl;
    res->last_val_loss = vl;
    rt_metrics_eval(mx, step, vl);
    return RT_OK;
}

static rt_status micro_step(const rt_train_job *job, rt_ctx *ctx, rt_batch *b, const rt_data_plan *plan,
                            int64_t step, int micro, float denom, double *loss_sum) {
    rt_ctx_reset(ctx);
    RT_TRY(rt_data_train_batch(job->train, plan, step, micro, b));
    batch_tensors t = upload_batch(ctx, b);
    rt_tensor *loss = job->loss(ctx, job->loss_user, job->model, b, t.ids, t.pos,
                                job->recipe->sample_packing ? t.seg : NULL, t.labels, denom);
    if (!loss) return ctx->status ? ctx->status : RT_EINTERNAL;
    float v;
    rt_to_host(ctx, loss, &v);
    *loss_sum += v;
    return rt_backward(ctx, loss);
}

static rt_status run(const rt_train_job *job, rt_ctx *ctx, optimizer *o, rt_metrics *mx,
                     rt_train_result *res) {
    const rt_recipe *r = job->recipe;
    rt_dist *d = job->dist;
    rt_data_plan plan = rt_data_plan_from_recipe(r, d->world, d->rank);
    int64_t total = rt_data_total_steps(job->train, &plan, r->num_epochs, r->max_steps);
    int64_t warmup = rt_warmup_steps(r->warmup_steps, r->warmup_ratio, total);
    int64_t start = 0;
    if (r->resume_from_checkpoint[0]) {
        RT_TRY(resume(job, o, ctx, &start));
        if (d->rank == 0) rt_metrics_note(mx, "resumed from step %lld", (long long)start);
    }
    /* evals_per_epoch / saves_per_epoch (axolotl): steps between them from the epoch length */
    int64_t per_epoch = rt_data_total_steps(job->train, &plan, 1.0, -1);
    mx->steps_per_epoch = (double)rt_dataset_rows(job->train) / (double)rt_data_global_batch(&plan);
    int64_t eval_every = r->evals_per_epoch > 0 ? per_epoch / r->evals_per_epoch : r->eval_steps;
    int64_t save_every = r->saves_per_epoch > 0 ? per_epoch / r->saves_per_epoch : r->save_steps;
    if (r->evals_per_epoch > 0 && eval_every < 1) eval_every = 1;
    if (r->saves_per_epoch > 0 && save_every < 1) save_every = 1;
    bool final_eval = r->eval_strategy != RT_RECIPE_STRATEGY_NO;
    int watchdog = 0;
    rt_batch b = {0};
    RT_TRY(rt_batch_alloc(&b, r->micro_batch_size, r->sequence_len));
    rt_status s = start == 0 ? eval_and_log(job, ctx, mx, 0, res) : RT_OK;
    double t_run = now_s();
    int64_t tokens_run = 0;
    for (int64_t step = start; step < total && s == RT_OK; step++) {
        double t0 = now_s();
        rt_params_zero_grad(&job->model->params);
        float denom = (float)rt_data_step_targets(job->train, &plan, step) / (float)d->world;
        double loss_sum = 0;
        for (int micro = 0; micro < r->gradient_accumulation_steps && s == RT_OK; micro++)
            s = micro_step(job, ctx, &b, &plan, step, micro, denom, &loss_sum);
        if (s != RT_OK) break;
        double loss = loss_sum / d->world;
        if ((s = rt_dist_allreduce_sum_f64(d, &loss, 1)) != RT_OK) break;
        float lr = rt_lr_at(lr_kind(r->lr_scheduler), (float)r->learning_rate, step, warmup, total);
        float norm = 0;
        if (isfinite(loss)) s = optimizer_step(o, job, lr, step + 1, &norm);
        if (s != RT_OK) break;
        bool skipped = !isfinite(loss) || !isfinite(norm);
        int64_t tokens = (int64_t)b.B * b.T * r->gradient_accumulation_steps * d->world;
        tokens_run += tokens;
        double dt = now_s() - t0, elapsed = now_s() - t_run;
        double eta = elapsed / (double)(step + 1 - start) * (double)(total - step - 1);
        res->last_loss = loss;
        res->steps++;
        if (d->rank == 0) {
            if (skipped)
                rt_metrics_note(mx, "step %lld: non-finite loss or gradient norm, step skipped",
                                (long long)step + 1);
            bool print = r->logging_steps > 0 && ((step + 1) % r->logging_steps == 0 || step + 1 == total);
            rt_metrics_train(mx, step + 1, total, loss, lr, norm, (double)tokens / dt, eta, print);
        }
        /* axolotl's loss watchdog: stop when the loss stays above the threshold */
        watchdog = r->loss_watchdog_threshold > 0 && !(loss <= r->loss_watchdog_threshold) ? watchdog + 1 : 0;
        if (watchdog >= r->loss_watchdog_patience && r->loss_watchdog_threshold > 0) {
            s = rt_errorf(RT_EINPUT, "step %lld: train loss %.4f above loss_watchdog_threshold %g for %d "
                          "steps in a row; stopping", (long long)step + 1, loss, r->loss_watchdog_threshold,
                          watchdog);
            break;
        }
        bool last = step + 1 == total;
        if ((last && final_eval) || (eval_every > 0 && (step + 1) % eval_every == 0))
            s = eval_and_log(job, ctx, mx, step + 1, res);
        if (s == RT_OK && save_every > 0 && (step + 1) % save_every == 0 && !last)
            s = save_checkpoint(job, o, ctx, step + 1);
    }
    res->seconds = now_s() - t_run;
    res->tokens_per_s = res->seconds > 0 ? (double)tokens_run / res->seconds : 0;
    rt_batch_free(&b);
    return s;
}

rt_status rt_train(const rt_train_job *job, rt_train_result *res) {
    const rt_recipe *r = job->recipe;
    memset(res, 0, sizeof *res);
    res->first_val_loss = res->last_val_loss = NAN;
    if (job->model->params.numel == 0) return rt_errorf(RT_EINPUT, "nothing to train: no trainable parameters");
    rt_status s = job->dist->rank == 0 ? rt_mkdir_p(r->output_dir) : RT_OK;
    RT_TRY(rt_dist_barrier(job->dist));
    RT_TRY(s);
    rt_metrics mx = {0};
    if (job->dist->rank == 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/recipe.yaml", r->output_dir);
        RT_TRY(rt_recipe_save(r, path));
        RT_TRY(rt_metrics_open(&mx, r->output_dir, r->resume_from_checkpoint[0] != '\0'));
    }
    rt_ctx *ctx = rt_ctx_new(job->device, 0);
    optimizer o;
    s = ctx ? optimizer_init(&o, job) : RT_EINTERNAL;
    if (s == RT_OK) {
        ctx->training = true;
        /* Each rank its own dropout stream (seed, rank); the data order is shared. */
        ctx->seed = (uint64_t)r->seed * 0x9e3779b97f4a7c15ull + (uint64_t)job->dist->rank;
        s = run(job, ctx, &o, &mx, res);
        rt_zero1_free(&o.z);
    }
    if (s == RT_OK && job->dist->rank == 0) s = job->save(job->save_user, job->model, r->output_dir);
    if (s == RT_OK && job->dist->rank == 0) s = rt_metrics_svg(&mx, r->output_dir);
    if (job->dist->rank == 0) rt_metrics_close(&mx);
    rt_ctx_free(ctx);
    return s;
}
