/* retort — sequence-level KD data: the teacher's own generations
 * (rt_distill_generate in distill.h). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "train/distill.h"
#include "train/formats/fs.h"
#include "train/model/sampler.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    char **text;
    int64_t n, cap;
} texts;

static rt_status texts_push(texts *t, char *s) {
    if (t->n == t->cap) {
        int64_t cap = t->cap ? 2 * t->cap : 64;
        char **p = realloc(t->text, (size_t)cap * sizeof *p);
        if (!p) {
            free(s);
            return rt_errorf(RT_EINTERNAL, "out of memory");
        }
        t->text = p;
        t->cap = cap;
    }
    t->text[t->n++] = s;
    return RT_OK;
}

static void texts_free(texts *t) {
    for (int64_t i = 0; i < t->n; i++) free(t->text[i]);
    free(t->text);
}

/* One sample from BOS: tokens after BOS up to (excluding) BOS/EOS. */
static rt_status sample_one(rt_ctx *ctx, rt_llama *m, rt_kv_cache *cache, rt_sampler *smp, int bos,
                            int eos, int max_new, int32_t *out, int *n_out, float *logits) {
    cache->len = 0;
    int32_t tok = bos >= 0 ? bos : 0;
    int n = 0;
    rt_status s = rt_llama_decode(ctx, m, cache, &tok, 1, logits);
    while (s == RT_OK && n < max_new) {
        int next = rt_sampler_sample(smp, logits);
        if (next == bos || next == eos) break;
        out[n++] = next;
        if (cache->len >= cache->max_len) break;
        tok = next;
        s = rt_llama_decode(ctx, m, cache, &tok, 1, logits);
    }
    *n_out = n;
    return s;
}

static rt_status generate_entry(const rt_recipe_dataset *ds, rt_device dev, rt_llama *teacher,
                                const rt_tokenizer *tok, texts *out, int64_t *tokens) {
    int V = teacher->cfg.vocab_size;
    int ctx_len = 1 + ds->max_new_tokens;
    if (ctx_len > teacher->cfg.max_position_embeddings) ctx_len = teacher->cfg.max_position_embeddings;
    rt_kv_cache cache = {0};
    rt_ctx *ctx = rt_ctx_new(dev, (size_t)4 << 20);
    /* run.c's xorshift stays at 0 forever from state 0 */
    rt_sampler *smp = rt_sampler_new(V, (float)ds->temperature, (float)ds->top_p,
                                     ds->seed ? (uint64_t)ds->seed : 0x5eedull);
    float *logits = malloc((size_t)V * sizeof *logits);
    int32_t *ids = malloc((size_t)(ds->max_new_tokens + 1) * sizeof *ids);
    rt_status s = ctx && smp && logits && ids ? rt_kv_cache_init(&cache, teacher, ctx_len)
                                              : rt_errorf(RT_EINTERNAL, "out of memory");
    if (ctx) ctx->no_grad = true;
    for (int i = 0; s == RT_OK && i < ds->num_samples; i++) {
        int n = 0;
        s = sample_one(ctx, teacher, &cache, smp, rt_tokenizer_bos(tok), rt_tokenizer_eos(tok),
                       ds->max_new_tokens, ids, &n, logits);
        char *text = NULL;
        if (s == RT_OK) s = rt_tokenizer_decode(tok, ids, (size_t)n, &text);
        if (s == RT_OK) s = texts_push(out, text);
        *tokens += n;
    }
    rt_kv_cache_free(&cache);
    rt_sampler_free(smp);
    rt_ctx_free(ctx);
    free(logits);
    free(ids);
    return s;
}

/* output_dir/<basename(path)> as JSONL, one {"text": ...} a line. */
static rt_status write_jsonl(const rt_recipe *r, const rt_recipe_dataset *ds, char *const *t, int64_t n) {
    const char *base = strrchr(ds->path, '/');
    base = base ? base + 1 : ds->path;
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", r->output_dir, base);
    RT_TRY(rt_mkdir_p(r->output_dir));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    rt_status s = buf ? RT_OK : rt_errorf(RT_EINTERNAL, "out of memory");
    for (int64_t i = 0; s == RT_OK && i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        char *line = o && cJSON_AddStringToObject(o, "text", t[i]) ? cJSON_PrintUnformatted(o) : NULL;
        cJSON_Delete(o);
        if (!line) {
            s = rt_errorf(RT_EINTERNAL, "out of memory");
            break;
        }
        size_t l = strlen(line);
        if (len + l + 2 > cap) {
            while (len + l + 2 > cap) cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) s = rt_errorf(RT_EINTERNAL, "out of memory");
            else buf = nb;
        }
        if (s == RT_OK) {
            memcpy(buf + len, line, l);
            len += l;
            buf[len++] = '\n';
        }
        free(line);
    }
    if (s == RT_OK) s = rt_write_file_atomic(path, buf, len);
    free(buf);
    return s;
}

/* Held-out count of n generated texts (the rule of rt_data_load). */
static int64_t n_held_out(const rt_recipe *r, int64_t n) {
    if (r->test_datasets.count > 0 || n <= 1 || r->val_set_size <= 0) return 0;
    int64_t v = r->val_set_size >= 1 ? (int64_t)floor(r->val_set_size)
                                     : (int64_t)ceil(r->val_set_size * (double)n);
    return v > n - 1 ? n - 1 : v;
}

rt_status rt_distill_generate(const rt_recipe *r, rt_device dev, rt_llama *teacher,
                              const rt_tokenizer *tok, bool write_files, rt_dataset *train,
                              rt_dataset *val, rt_distill_gen_stats *st) {
    memset(st, 0, sizeof *st);
    double t0 = now_s();
    texts all = {0};
    rt_status s = RT_OK;
    for (int i = 0; s == RT_OK && i < r->datasets.count; i++) {
        const rt_recipe_dataset *ds = &r->datasets.items[i];
        if (ds->type != RT_RECIPE_DS_TEACHER_GENERATE) continue;
        int64_t first = all.n;
        s = generate_entry(ds, dev, teacher, tok, &all, &st->tokens);
        if (s == RT_OK && write_files) s = write_jsonl(r, ds, all.text + first, all.n - first);
    }
    int64_t n_val = n_held_out(r, all.n);
    for (int64_t i = 0; s == RT_OK && i < all.n; i++) {
        rt_dataset *d = i >= all.n - n_val ? val : train;
        s = rt_dataset_add_text(d, tok, all.text[i], strlen(all.text[i]), r->sequence_len);
    }
    st->samples = all.n;
    st->val_samples = n_val;
    st->train_samples = all.n - n_val;
    st->seconds = now_s() - t0;
    texts_free(&all);
    return s;
}
