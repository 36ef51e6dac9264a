/* retort — distillation: loss, teacher/student setup, the run (distill.h). */
#include "train/distill.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/model/adapter.h"
#include "train/finetune.h"

/* ---- loss -------------------------------------------------------------------- */

static rt_kd_kind kd_kind(int recipe_kind) {
    return recipe_kind == RT_RECIPE_KD_REVERSE_KL ? RT_KD_REVERSE_KL
           : recipe_kind == RT_RECIPE_KD_JSD      ? RT_KD_JSD
                                                  : RT_KD_FORWARD_KL;
}

/* The cached top-k of batch b as [B, T, k] tensors. */
static rt_tensor *cached_teacher(rt_ctx *ctx, rt_distill_loss *L, const rt_batch *b, rt_tensor **tid) {
    int k = rt_teacher_cache_k(L->cache);
    int64_t n = (int64_t)b->B * b->T * k;
    if (n > L->host_cap) {
        free(L->host_ids);
        free(L->host_logp);
        L->host_ids = malloc((size_t)n * sizeof *L->host_ids);
        L->host_logp = malloc((size_t)n * sizeof *L->host_logp);
        L->host_cap = L->host_ids && L->host_logp ? n : 0;
        if (!L->host_cap) return rt_ctx_fail(ctx, RT_EINTERNAL, "distill: out of memory");
    }
    rt_status s = rt_teacher_cache_lookup(L->cache, b, L->host_ids, L->host_logp);
    if (s != RT_OK) return rt_ctx_fail(ctx, s, "%s", rt_error_message());
    int64_t shape[3] = {b->B, b->T, k};
    *tid = rt_from_i32(ctx, L->host_ids, 3, shape);
    return rt_from_f32(ctx, L->host_logp, 3, shape);
}

/* The teacher's logits (full) or top-k log-probs (+ ids), no-grad. */
static rt_tensor *online_teacher(rt_ctx *ctx, rt_distill_loss *L, rt_tensor *ids, rt_tensor *pos,
                                 rt_tensor *seg, rt_tensor **tid) {
    bool no_grad = ctx->no_grad;
    ctx->no_grad = true;
    rt_tensor *t = rt_llama_forward(ctx, L->teacher, ids, pos, seg);
    L->teacher_forwards++;
    if (t && L->top_k > 0) {
        rt_tensor *logp = NULL;
        rt_status s = rt_kd_topk(ctx, t, L->top_k, L->temperature, tid, &logp);
        t = s == RT_OK ? logp : rt_ctx_fail(ctx, s, "%s", rt_error_message());
    }
    ctx->no_grad = no_grad;
    return t;
}

/* Adds a scalar loss term's value into the reported part i. */
static rt_tensor *report(rt_ctx *ctx, rt_distill_loss *L, int i, rt_tensor *t) {
    float v;
    if (t && rt_to_host(ctx, t, &v) == RT_OK) L->parts.sum[i] += v;
    return t;
}

rt_tensor *rt_distill_loss_fn(rt_ctx *ctx, void *user, rt_llama *m, const rt_batch *b,
                              rt_tensor *ids, rt_tensor *pos, rt_tensor *seg, rt_tensor *labels,
                              float denom) {
    rt_distill_loss *L = user;
    rt_tensor *logits = rt_llama_forward(ctx, m, ids, pos, seg);
    /* kd_ratio 0 is plain fine-tuning: the same graph, no teacher */
    if (L->kd_ratio == 0.0f) return report(ctx, L, 0, rt_cross_entropy(ctx, logits, labels, denom));
    if (!logits) return NULL;
    rt_tensor *tid = NULL;
    rt_tensor *t = L->cache ? cached_teacher(ctx, L, b, &tid) : online_teacher(ctx, L, ids, pos, seg, &tid);
    rt_tensor *kd = report(ctx, L, 1, rt_kd_loss(ctx, logits, t, tid, labels, L->kind, L->beta, L->temperature, denom));
    if (L->kd_ratio == 1.0f) return kd;
    rt_tensor *ce = report(ctx, L, 0, rt_cross_entropy(ctx, logits, labels, denom));
    return rt_add(ctx, rt_scale(ctx, ce, 1.0f - L->kd_ratio), rt_scale(ctx, kd, L->kd_ratio));
}

/* ---- setup pieces ------------------------------------------------------------ */

rt_status rt_distill_same_vocab(const rt_tokenizer *a, const char *a_name, const rt_tokenizer *b,
                                const char *b_name) {
    int na = rt_tokenizer_vocab_size(a), nb = rt_tokenizer_vocab_size(b);
    if (na != nb)
        return rt_errorf(RT_EINPUT, "teacher and student vocabularies differ: %s has %d tokens, %s has %d; "
                         "distillation needs one shared tokenizer", a_name, na, b_name, nb);
    for (int id = 0; id < na; id++) {
        char ba[8], bb[8];
        const char *pa = rt_tokenizer_piece(a, -1, id, ba), *pb = rt_tokenizer_piece(b, -1, id, bb);
        if (strcmp(pa, pb) != 0)
            return rt_errorf(RT_EINPUT, "teacher and student vocabularies differ: token %d is \"%s\" in %s "
                             "but \"%s\" in %s; distillation needs one shared tokenizer",
                             id, pa, a_name, pb, b_name);
    }
    if (rt_tokenizer_bos(a) != rt_tokenizer_bos(b) || rt_tokenizer_eos(a) != rt_tokenizer_eos(b))
        return rt_errorf(RT_EINPUT, "teacher and student vocabularies differ: BOS/EOS %d/%d in %s, %d/%d in %s",
                         rt_tokenizer_bos(a), rt_tokenizer_eos(a), a_name, rt_tokenizer_bos(b),
                         rt_tokenizer_eos(b), b_name);
    return RT_OK;
}

static rt_status load_teacher(const rt_recipe *r, rt_device dev, rt_distill *s) {
    const char *tpath = r->teacher_tokenizer[0] ? r->teacher_tokenizer : r->teacher_model;
    RT_TRY(rt_tokenizer_load(tpath, &s->tok));
    rt_llama_opts o = {.device = dev, .load_in_4bit = r->teacher_load_in_4bit,
                       .nf4_blocksize = r->bnb_4bit_blocksize,
                       .double_quant = r->bnb_4bit_use_double_quant};
    RT_TRY(rt_llama_load(r->teacher_model, &o, &s->teacher));
    RT_TRY(rt_finetune_check_context(r, s->teacher, r->teacher_model));
    if (s->teacher->cfg.vocab_size < rt_tokenizer_vocab_size(s->tok))
        return rt_errorf(RT_EINPUT, "%s: tokenizer has %d tokens but the teacher only %d", tpath,
                         rt_tokenizer_vocab_size(s->tok), s->teacher->cfg.vocab_size);
    return RT_OK;
}

static rt_status new_student(const rt_recipe *r, const rt_dist *d, rt_device dev, rt_distill *s) {
    const rt_recipe_student *sc = &r->student_config;
    rt_llama_config cfg = s->teacher->cfg;
    cfg.hidden_size = sc->hidden_size;
    cfg.intermediate_size = sc->intermediate_size;
    cfg.num_hidden_layers = sc->num_hidden_layers;
    cfg.num_attention_heads = sc->num_attention_heads;
    cfg.num_key_value_heads = sc->num_key_value_heads ? sc->num_key_value_heads : sc->num_attention_heads;
    cfg.tie_word_embeddings = true;
    cfg.attention_bias = false;
    snprintf(cfg.torch_dtype, sizeof cfg.torch_dtype, "float32");
    rt_llama_opts o = {.device = dev, .seed = (uint64_t)r->seed, .pad_multiple = rt_zero1_pad_multiple(d)};
    RT_TRY(rt_llama_new(&cfg, &o, (float)sc->init_std, &s->student));
    s->student->gradient_checkpointing = r->gradient_checkpointing;
    return RT_OK;
}

/* student_init: teacher_layers (rt_llama_new_from): the teacher's shape,
 * student_layers of its layers, optionally fewer MLP neurons. */
static rt_status teacher_layers_student(const rt_recipe *r, const rt_dist *d, rt_device dev, rt_distill *s) {
    const rt_recipe_student *sc = &r->student_config;
    const rt_llama_config *tc = &s->teacher->cfg;
    struct { const char *key; int want, got; } same[] = {
        {"hidden_size", tc->hidden_size, sc->hidden_size},
        {"num_attention_heads", tc->num_attention_heads, sc->num_attention_heads},
        {"num_key_value_heads", tc->num_key_value_heads, sc->num_key_value_heads},
    };
    for (int i = 0; i < 3; i++)
        if (same[i].got && same[i].got != same[i].want)
            return rt_errorf(RT_EINPUT, "student_config.%s: %d, but a student initialised from the teacher's "
                             "layers keeps the teacher's %d", same[i].key, same[i].got, same[i].want);
    rt_llama_opts o = {.device = dev, .seed = (uint64_t)r->seed, .pad_multiple = rt_zero1_pad_multiple(d)};
    RT_TRY(rt_llama_new_from(s->teacher, r->student_layers.items, r->student_layers.count, sc->intermediate_size,
                             &o, &s->student));
    s->student->gradient_checkpointing = r->gradient_checkpointing;
    return RT_OK;
}

static rt_status pretrained_student(const rt_recipe *r, const rt_dist *d, rt_device dev, rt_distill *s) {
    s->student_path = r->student_model[0] ? r->student_model : r->base_model;
    rt_recipe tmp = *r; /* shallow: rt_finetune_model reads base_model/tokenizer only */
    tmp.base_model = (char *)s->student_path;
    rt_tokenizer *stok = NULL;
    rt_status st = rt_finetune_model(&tmp, d, dev, &s->student, &stok);
    if (st == RT_OK) {
        const char *tp = r->tokenizer[0] ? r->tokenizer : s->student_path;
        const char *tt = r->teacher_tokenizer[0] ? r->teacher_tokenizer : r->teacher_model;
        st = rt_distill_same_vocab(s->tok, tt, stok, tp);
    }
    rt_tokenizer_free(stok);
    return st;
}

static rt_status make_student(const rt_recipe *r, const rt_dist *d, rt_device dev, rt_distill *s) {
    bool from_teacher = r->student_init == RT_RECIPE_STUDENT_TEACHER_LAYERS;
    if (from_teacher || r->student_config.hidden_size) {
        if (r->tokenizer[0]) { /* a tokenizer named for the student must be the teacher's */
            rt_tokenizer *stok = NULL;
            const char *tt = r->teacher_tokenizer[0] ? r->teacher_tokenizer : r->teacher_model;
            rt_status st = rt_tokenizer_load(r->tokenizer, &stok);
            if (st == RT_OK) st = rt_distill_same_vocab(s->tok, tt, stok, r->tokenizer);
            rt_tokenizer_free(stok);
            RT_TRY(st);
        }
        RT_TRY(from_teacher ? teacher_layers_student(r, d, dev, s) : new_student(r, d, dev, s));
    } else {
        RT_TRY(pretrained_student(r, d, dev, s));
    }
    if (s->student->cfg.vocab_size != s->teacher->cfg.vocab_size)
        return rt_errorf(RT_EINPUT, "teacher and student vocabularies differ: the teacher's logits have %d "
                         "entries, the student's %d", s->teacher->cfg.vocab_size, s->student->cfg.vocab_size);
    return RT_OK;
}

static rt_status teacher_eval(rt_distill *s) {
    s->teacher_val_loss = NAN;
    if (!s->val || rt_dataset_rows(s->val) == 0) return RT_OK;
    rt_train_job tj = {.recipe = s->recipe, .dist = s->dist, .device = s->device, .model = s->teacher};
    rt_ctx *ctx = rt_ctx_new(s->device, 0);
    if (!ctx) return RT_EINTERNAL;
    rt_status st = rt_train_eval(&tj, ctx, s->val, &s->teacher_val_loss);
    rt_ctx_free(ctx);
    return st;
}

static rt_status open_cache(rt_distill *s) {
    const rt_recipe *r = s->recipe;
    rt_ctx *ctx = rt_ctx_new(s->device, 0);
    if (!ctx) return RT_EINTERNAL;
    uint64_t fp = 0;
    rt_status st = rt_teacher_fingerprint(ctx, s->teacher, &fp);
    rt_ctx_free(ctx);
    rt_teacher_cache_key key;
    if (st == RT_OK) st = rt_teacher_cache_key_for(s->train, fp, r->kd_top_k, (float)r->kd_temperature, &key);
    /* rank 0 builds (writes) it; the others read what it wrote */
    if (st == RT_OK && s->dist->rank == 0)
        st = rt_teacher_cache_open(r->teacher_cache_dir, &key, s->teacher, s->train, r->micro_batch_size,
                                   r->sample_packing, s->device, &s->cache, &s->cache_stats);
    rt_status b = rt_dist_barrier(s->dist);
    if (st == RT_OK) st = b;
    if (st == RT_OK && s->dist->rank != 0)
        st = rt_teacher_cache_open(r->teacher_cache_dir, &key, NULL, s->train, r->micro_batch_size,
                                   r->sample_packing, s->device, &s->cache, &s->cache_stats);
    return st;
}

rt_status rt_distill_setup(const rt_recipe *r, rt_dist *d, rt_distill *s) {
    memset(s, 0, sizeof *s);
    s->recipe = r;
    s->dist = d;
    s->teacher_val_loss = NAN;
    if (!r->teacher_model[0])
        return rt_errorf(RT_EINPUT, "teacher_model: required for distillation (an HF directory or a llama2.c .bin)");
    if (r->teacher_logits == RT_RECIPE_TEACHER_CACHE && r->kd_top_k <= 0)
        return rt_errorf(RT_EINPUT, "kd_top_k: teacher_logits cache stores the teacher's top-k; set kd_top_k > 0");
    RT_TRY(rt_finetune_device(r, &s->device));
    RT_TRY(rt_dist_use_device(d, s->device));
    RT_TRY(load_teacher(r, s->device, s));
    RT_TRY(make_student(r, d, s->device, s));
    RT_TRY(rt_data_load(r, s->tok, &s->train, &s->val));
    RT_TRY(rt_distill_generate(r, s->device, s->teacher, s->tok, d->rank == 0, s->train, s->val, &s->gen));
    if (rt_dataset_rows(s->train) == 0)
        return rt_errorf(RT_EINPUT, "datasets: no training rows (every example went to the held-out set?)");
    if (d->rank == 0) RT_TRY(teacher_eval(s));
    s->loss = (rt_distill_loss){.teacher = s->teacher, .kd_ratio = (float)r->kd_ratio,
                                .beta = (float)r->kd_beta, .temperature = (float)r->kd_temperature,
                                .kind = kd_kind(r->kd_loss), .top_k = r->kd_top_k,
                                .parts.name = {r->kd_ratio < 1 ? "loss_ce" : NULL, r->kd_ratio > 0 ? "loss_kd" : NULL}};
    if (r->teacher_logits == RT_RECIPE_TEACHER_CACHE && r->kd_ratio > 0) {
        RT_TRY(open_cache(s));
        s->loss.cache = s->cache;
    }
    return RT_OK;
}

static rt_status save_student(void *user, rt_llama *m, const char *dir) {
    const rt_distill *s = user;
    if (rt_llama_is_full(m)) return rt_llama_save_hf(m, s->tok, dir);
    return rt_adapter_save(m, dir, s->student_path);
}

rt_status rt_distill_train(rt_distill *s, rt_train_result *res) {
    rt_train_job job = {.recipe = s->recipe, .dist = s->dist, .device = s->device, .model = s->student,
                        .train = s->train, .val = s->val, .loss = rt_distill_loss_fn,
                        .loss_user = &s->loss, .save = save_student, .save_user = s,
                        .parts = &s->loss.parts};
    return rt_train(&job, res);
}

void rt_distill_free(rt_distill *s) {
    if (!s) return;
    rt_teacher_cache_free(s->cache);
    free(s->loss.host_ids);
    free(s->loss.host_logp);
    rt_dataset_free(s->train);
    rt_dataset_free(s->val);
    rt_llama_free(s->student);
    rt_llama_free(s->teacher);
    rt_tokenizer_free(s->tok);
    memset(s, 0, sizeof *s);
}
