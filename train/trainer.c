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
#include "kernels/fault.h"
#include "kernels/kernels.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/schedule.h"
#include "optim/sgd.h"
#include "train/checkpoint.h"
#include "train/metrics.h"
#include "train/teacher_cache.h"

#include <zlib.h>

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
        rt_tensor *l = rt_llama_loss(ctx, job->model, t.ids, t.pos, r->sample_packing ? t.seg : NULL,
                                     t.labels, 1.0f);
        if (!l) {
            s = ctx->status ? ctx->status : RT_EINTERNAL;
            break;
        }
        float v;
        if ((s = rt_to_host(ctx, l, &v)) != RT_OK) break;
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
    int64_t updates; /* updates applied: AdamW's t, which a skipped step does not advance */
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
    if (o->kind == RT_RECIPE_OPT_SGD && P->device != RT_CPU)
        return rt_errorf(RT_EINPUT, "optimizer: sgd runs on the CPU only; use optimizer: adamw "
                                    "with device %s", rt_device_name(P->device));
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
                            .updates = o->updates,
                            .rng_counter = ctx->rng_counter, .n_params = P->numel,
                            .moment_begin = o->z.shard_begin, .moment_n = o->z.shard_n,
                            .params = P->data, .m = o->z.m,
                            .v = o->kind == RT_RECIPE_OPT_ADAMW ? o->z.v : NULL};
}

/* A state whose buffers live on a device is written and read through host
 * copies: mirror_begin swaps each non-NULL buffer pointer of st for a host
 * allocation (the device pointers go to dev[]), mirror_end frees them. */
static rt_status mirror_begin(rt_train_state *st, float *dev[3]) {
    float **p[3] = {&st->params, &st->m, &st->v};
    const int64_t n[3] = {st->n_params, st->moment_n, st->moment_n};
    rt_status s = RT_OK;
    for (int i = 0; i < 3; i++) {
        dev[i] = *p[i];
        if (*p[i] && !(*p[i] = malloc((size_t)n[i] * sizeof(float))))
            s = rt_errorf(RT_EINTERNAL, "checkpoint: out of memory for a host copy of %lld floats",
                          (long long)n[i]);
    }
    return s;
}

static void mirror_end(rt_train_state *st, float *dev[3]) {
    float **p[3] = {&st->params, &st->m, &st->v};
    for (int i = 0; i < 3; i++) {
        if (dev[i]) free(*p[i]);
        *p[i] = dev[i];
    }
}

/* Copies between the device buffers dev[] and st's host copies. */
static rt_status mirror_copy(rt_train_state *st, float *dev[3], rt_device device, bool to_host) {
    const rt_kernels *k = rt_kernels_for(device);
    float *host[3] = {st->params, st->m, st->v};
    const int64_t n[3] = {st->n_params, st->moment_n, st->moment_n};
    for (int i = 0; i < 3; i++) {
        if (!dev[i]) continue;
        if (to_host) k->download(host[i], dev[i], (size_t)n[i] * sizeof(float));
        else k->upload(dev[i], host[i], (size_t)n[i] * sizeof(float));
    }
    return rt_fault_status();
}

static rt_status write_state(const char *dir, rt_train_state st, rt_device device) {
    if (device == RT_CPU) return rt_checkpoint_write_state(dir, &st);
    float *dev[3];
    rt_status s = mirror_begin(&st, dev);
    if (s == RT_OK) s = mirror_copy(&st, dev, device, true);
    if (s == RT_OK) s = rt_checkpoint_write_state(dir, &st);
    mirror_end(&st, dev);
    return s;
}

static rt_status read_state(const char *dir, rt_train_state *st, rt_device device) {
    if (device == RT_CPU) return rt_checkpoint_read_state(dir, st);
    float *dev[3];
    rt_status s = mirror_begin(st, dev);
    if (s == RT_OK) s = rt_checkpoint_read_state(dir, st);
    if (s == RT_OK) s = mirror_copy(st, dev, device, false);
    mirror_end(st, dev);
    return s;
}

static rt_status save_checkpoint(const rt_train_job *job, const optimizer *o, rt_ctx *ctx,
                                 int64_t step) {
    const rt_recipe *r = job->recipe;
    rt_dist *d = job->dist;
    char final[4096], tmp[4200];
    snprintf(final, sizeof final, "%s/checkpoint-%lld", r->output_dir, (long long)step);
    snprintf(tmp, sizeof tmp, "%s.tmp", final);
    rt_status s = RT_OK;
    if (d->rank == 0 && mkdir(tmp, 0777) != 0 && errno != EEXIST)
        s = rt_errorf(RT_EINPUT, "%s: cannot create: %s", tmp, strerror(errno));
    RT_TRY(rt_dist_barrier(d));
    RT_TRY(s);
    RT_TRY(write_state(tmp, state_of(o, job, ctx, step), job->model->params.device));
    RT_TRY(rt_dist_barrier(d));
    if (d->rank != 0) return RT_OK;
    RT_TRY(job->save(job->save_user, job->model, tmp));
    RT_TRY(rt_checkpoint_seal(tmp));
    /* A checkpoint of this step from an abandoned run (resumed from an
     * older checkpoint) is replaced. */
    struct stat sb;
    if (stat(final, &sb) == 0) rt_checkpoint_remove(final);
    if (rename(tmp, final) != 0)
        return rt_errorf(RT_EINPUT, "%s: cannot rename to %s: %s", tmp, final, strerror(errno));
    rt_checkpoint_prune(r->output_dir, r->save_total_limit);
    return RT_OK;
}

/* Reads one checkpoint after verifying every file its manifest lists. */
static rt_status resume_from(const rt_train_job *job, optimizer *o, rt_ctx *ctx, const char *dir,
                             int64_t total, int64_t *step) {
    RT_TRY(rt_checkpoint_verify(dir));
    rt_train_state st = state_of(o, job, ctx, 0);
    RT_TRY(read_state(dir, &st, job->model->params.device));
    if (st.step > total)
        return rt_errorf(RT_EINPUT, "%s: step %lld is past this run's %lld steps", dir, (long long)st.step,
                         (long long)total);
    *step = st.step;
    o->updates = st.updates;
    ctx->rng_counter = st.rng_counter;
    return RT_OK;
}

/* resume_from_checkpoint: a path is used or refused; "latest" takes the
 * newest checkpoint that verifies, saying which ones it passed over. Every
 * rank checks the same files, so all pick the same one. */
static rt_status resume(const rt_train_job *job, optimizer *o, rt_ctx *ctx, rt_metrics *mx, int64_t total,
                        int64_t *step) {
    const rt_recipe *r = job->recipe;
    bool talk = job->dist->rank == 0;
    if (strcmp(r->resume_from_checkpoint, "latest") != 0)
        return resume_from(job, o, ctx, r->resume_from_checkpoint, total, step);
    long steps[RT_CHECKPOINT_MAX_LIST];
    int n = rt_checkpoint_list(r->output_dir, steps, RT_CHECKPOINT_MAX_LIST);
    if (n == 0) return rt_errorf(RT_EINPUT, "%s: no complete checkpoint to resume from", r->output_dir);
    char dir[4096];
    for (int i = 0; i < n; i++) {
        snprintf(dir, sizeof dir, "%s/checkpoint-%ld", r->output_dir, steps[i]);
        if (resume_from(job, o, ctx, dir, total, step) == RT_OK) {
            if (i > 0 && talk) rt_metrics_note(mx, "resuming from %s, the newest checkpoint that verifies", dir);
            return RT_OK;
        }
        if (talk) rt_metrics_note(mx, "skipping checkpoint %s: %s", dir, rt_error_message());
    }
    return rt_errorf(RT_EINPUT, "%s: none of its %d complete checkpoints verifies (the newest: see above)",
                     r->output_dir, n);
}

/* ---- ranks agree or stop ----
 * One all-gather of what must be equal on every rank before the first
 * collective of the loop: ranks started with different recipes (an MPMD
 * launch, nodes whose files differ) would otherwise all-reduce buffers of
 * different sizes (a different lora_r crashed in glibc) or wait forever in
 * a collective the others never reach (a different max_steps). */
typedef struct {
    uint32_t recipe;    /* rt_recipe_fingerprint: the effective recipe after overrides */
    uint32_t model;     /* CRC-32 of the model config and the initial trainable values */
    uint64_t data;      /* hash of every train row (rt_teacher_cache_key_for) */
    int64_t trainable;  /* trainable parameters */
    int64_t start;      /* the step this rank resumes at (0: fresh) */
    int64_t total;      /* optimizer steps in the schedule */
    int32_t world;      /* world size this rank sees */
    int32_t pad;
} agreement;

static rt_status agreement_of(const rt_train_job *job, int64_t start, int64_t total, agreement *a) {
    memset(a, 0, sizeof *a);
    RT_TRY(rt_recipe_fingerprint(job->recipe, &a->recipe));
    const rt_params *P = &job->model->params;
    /* Field by field: the struct's padding and the bytes after torch_dtype's
     * NUL differ between processes (the sanitizer build showed it). */
    const rt_llama_config *c = &job->model->cfg;
    const int32_t ints[] = {c->hidden_size, c->intermediate_size, c->num_hidden_layers,
                            c->num_attention_heads, c->num_key_value_heads, c->vocab_size,
                            c->max_position_embeddings, c->bos_token_id, c->eos_token_id,
                            c->tie_word_embeddings, c->attention_bias};
    const float floats[] = {c->rms_norm_eps, c->rope_theta};
    uint32_t crc = (uint32_t)crc32(0L, (const Bytef *)ints, sizeof ints);
    crc = (uint32_t)crc32(crc, (const Bytef *)floats, sizeof floats);
    float *host = malloc((size_t)P->numel * sizeof *host);
    if (!host) return rt_errorf(RT_EINTERNAL, "out of memory");
    rt_kernels_for(P->device)->download(host, P->data, (size_t)P->numel * sizeof *host);
    a->model = (uint32_t)crc32(crc, (const Bytef *)host, (uInt)((size_t)P->numel * sizeof *host));
    free(host);
    rt_teacher_cache_key key;
    RT_TRY(rt_teacher_cache_key_for(job->train, 0, 1, 1.0f, &key));
    a->data = key.data;
    a->trainable = P->numel_used;
    a->start = start;
    a->total = total;
    a->world = job->dist->world;
    return RT_OK;
}

static rt_status ranks_agree(const rt_train_job *job, int64_t start, int64_t total) {
    rt_dist *d = job->dist;
    if (d->world == 1) return RT_OK;
    agreement mine, *all = calloc((size_t)d->world, sizeof *all);
    if (!all) return rt_errorf(RT_EINTERNAL, "out of memory");
    rt_status s = agreement_of(job, start, total, &mine);
    /* A rank that failed locally still takes part, with a record that
     * cannot match, so no rank waits; its own error wins below. */
    if (s != RT_OK) memset(&mine, 0xff, sizeof mine);
    rt_status g = rt_dist_allgather_bytes(d, &mine, all, sizeof mine);
    if (s == RT_OK) s = g;
    for (int r = 1; r < d->world && s == RT_OK; r++) {
        const agreement *x = &all[0], *y = &all[r];
        const char *what = x->recipe != y->recipe         ? "the effective recipe (after overrides)"
                           : x->model != y->model         ? "the model (config or initial adapter)"
                           : x->data != y->data           ? "the training data"
                           : x->trainable != y->trainable ? "the trainable-parameter count"
                           : x->start != y->start         ? "the checkpoint step resumed from"
                           : x->total != y->total         ? "the number of steps"
                           : x->world != y->world         ? "the world size"
                                                          : NULL;
        if (what)
            s = rt_errorf(RT_EINPUT, "ranks 0 and %d disagree on %s; every rank must run the same job", r, what);
    }
    free(all);
    return s;
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

/* ---- gradient accumulation in a fixed order ----
 * Every micro-batch's gradient is computed into a zeroed P->grad on its own,
 * and the step's gradient is the left-to-right sum g0 + g1 + ... of those
 * rounded gradients. Backpropagating micro-batch m on top of the earlier ones
 * (GEMMs with beta = 1, embedding scatter-adds) would fuse the addition into
 * each kernel's own rounding instead, which depends on the BLAS kernel the
 * CPU gets; then 1 process with accumulation 2 and 2 ranks (whose all-reduce
 * adds the two separately rounded gradients, and a + b == b + a exactly)
 * differed by 0.4% after AdamW on some CPUs. With this order they are
 * bitwise equal (tests/test_dist_finetune.c). Costs one extra f32[numel]
 * buffer, only when gradient_accumulation_steps > 1. */
typedef struct {
    float *sum; /* device memory: g0 + ... + g(m-1) while micro-batch m runs */
    const rt_kernels *k;
} grad_accum;

static rt_status accum_init(grad_accum *a, const rt_params *P, int steps) {
    a->k = rt_kernels_for(P->device);
    a->sum = NULL;
    if (steps <= 1) return RT_OK;
    a->sum = a->k->malloc((size_t)P->numel * sizeof(float));
    if (!a->sum)
        return rt_errorf(RT_EINPUT, "out of %s memory for the gradient accumulation buffer (%lld floats)",
                         rt_device_name(P->device), (long long)P->numel);
    return RT_OK;
}

/* Before micro-batch m: keep the running sum aside and zero P->grad. */
static void accum_begin(grad_accum *a, rt_params *P, int micro) {
    if (micro > 0) a->k->copy(a->sum, P->grad, (size_t)P->numel * sizeof(float));
    rt_params_zero_grad(P);
}

/* After micro-batch m: P->grad <- (g0 + ... + g(m-1)) + g(m). */
static void accum_end(grad_accum *a, rt_params *P, int micro) {
    if (micro > 0) a->k->add(P->numel, P->numel, a->sum, P->grad, P->grad);
}

static void accum_free(grad_accum *a) {
    if (a->sum) a->k->free(a->sum);
    a->sum = NULL;
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
    RT_TRY(rt_to_host(ctx, loss, &v));
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
        RT_TRY(resume(job, o, ctx, mx, total, &start));
        if (d->rank == 0) rt_metrics_note(mx, "resumed from step %lld", (long long)start);
    }
    RT_TRY(ranks_agree(job, start, total));
    grad_accum acc = {0};
    RT_TRY(accum_init(&acc, &job->model->params, r->gradient_accumulation_steps));
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
    rt_status s = rt_batch_alloc(&b, r->micro_batch_size, r->sequence_len);
    if (s != RT_OK) {
        accum_free(&acc);
        return s;
    }
    s = start == 0 ? eval_and_log(job, ctx, mx, 0, res) : RT_OK;
    double t_run = now_s();
    int64_t tokens_run = 0, skipped_total = 0;
    int skipped_run = 0;
    for (int64_t step = start; step < total && s == RT_OK; step++) {
        double t0 = now_s();
        float denom = (float)rt_data_step_targets(job->train, &plan, step) / (float)d->world;
        double loss_sum = 0;
        if (job->parts) memset(job->parts->sum, 0, sizeof job->parts->sum);
        for (int micro = 0; micro < r->gradient_accumulation_steps && s == RT_OK; micro++) {
            accum_begin(&acc, &job->model->params, micro);
            s = micro_step(job, ctx, &b, &plan, step, micro, denom, &loss_sum);
            if (s == RT_OK) accum_end(&acc, &job->model->params, micro);
        }
        if (s != RT_OK) break;
        double loss = loss_sum / d->world;
        if ((s = rt_dist_allreduce_sum_f64(d, &loss, 1)) != RT_OK) break;
        if (job->parts) { /* averaged over ranks like the loss */
            for (int i = 0; i < RT_LOSS_PARTS; i++) job->parts->sum[i] /= d->world;
            if ((s = rt_dist_allreduce_sum_f64(d, job->parts->sum, RT_LOSS_PARTS)) != RT_OK) break;
        }
        float lr = rt_lr_at(lr_kind(r->lr_scheduler), (float)r->learning_rate, step, warmup, total);
        float norm = NAN;
        if (isfinite(loss)) s = optimizer_step(o, job, lr, o->updates + 1, &norm);
        if (s == RT_OK) s = rt_ctx_check(ctx); /* a device fault in the step */
        if (s != RT_OK) break;
        /* loss and norm are all-reduced, so every rank skips alike. */
        bool skipped = !isfinite(loss) || !isfinite(norm);
        if (skipped) {
            skipped_total++;
            skipped_run++;
        } else {
            o->updates++;
            skipped_run = 0;
        }
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
            rt_metrics_train(mx, step + 1, total, loss, lr, norm, (double)tokens / dt, eta, print, skipped,
                             skipped_total);
        }
        if (r->max_consecutive_skipped_steps > 0 && skipped_run >= r->max_consecutive_skipped_steps) {
            s = rt_errorf(RT_EINPUT, "%d steps in a row had a non-finite loss or gradient norm (last: step "
                          "%lld, learning_rate %g); stopping (max_consecutive_skipped_steps)",
                          skipped_run, (long long)step + 1, r->learning_rate);
            break;
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
    accum_free(&acc);
    return s;
}

/* The final weights are written only when finite, so a diverged run never
 * replaces a good adapter (and exits non-zero). */
static rt_status check_finite_weights(const rt_train_job *job) {
    const rt_params *P = &job->model->params;
    const rt_kernels *k = rt_kernels_for(P->device);
    if (k && k->all_finite && !k->all_finite(P->numel, P->data))
        return rt_errorf(RT_EINPUT, "the trained weights hold non-finite values (diverged: lower learning_rate?); "
                         "%s was not written", job->recipe->output_dir);
    return RT_OK;
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
        mx.parts = job->parts;
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
        if (job->dist->rank == 0 && s == RT_OK)
            fprintf(stderr, "finetune: activation arena peak %.0f MiB (%.0f MiB reserved)\n",
                    (double)rt_arena_peak(ctx->arena) / 1048576.0,
                    (double)rt_arena_reserved(ctx->arena) / 1048576.0);
    }
    if (s == RT_OK) s = check_finite_weights(job);
    if (s == RT_OK && job->dist->rank == 0) s = job->save(job->save_user, job->model, r->output_dir);
    if (s == RT_OK && job->dist->rank == 0) s = rt_metrics_svg(&mx, r->output_dir);
    if (job->dist->rank == 0) rt_metrics_close(&mx);
    rt_ctx_free(ctx);
    return s;
}
