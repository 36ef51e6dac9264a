/* retort — GGUF writers for llama.cpp: LoRA adapters and models (see gguf_export.h). */
#include "train/model/gguf_export.h"
#include "train/formats/gguf_model.h"
#include "train/formats/fs.h"
#include "train/formats/half.h"
#include "train/model/merge.h"
#include "train/formats/safetensors.h"
#include "train/tokenizer/tokenizer.h"
#include "train/formats/model_file.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Architecture of a base model: "llama" (q/k permuted in GGUF) or "qwen2". */
static rt_status e_base(const char *base, rt_llama_config *cfg, bool *permuted) {
    if (rt_is_gguf(base)) {
        rt_gguf *g;
        RT_TRY(rt_gguf_open(base, &g));
        rt_status s = rt_gguf_llama_config(g, cfg, permuted);
        rt_gguf_close(g);
        return s;
    }
    rt_weights *w;
    RT_TRY(rt_weights_open(base, &w, cfg));
    rt_weights_close(w);
    /* Qwen2 is the biased architecture retort reads; Gemma 3 is unpermuted */
    *permuted = !cfg->attention_bias && cfg->arch != RT_ARCH_GEMMA3;
    return RT_OK;
}

static rt_status e_read_json(const char *path, cJSON **out) {
    char *text;
    size_t len;
    RT_TRY(rt_read_file(path, "adapter config", &text, &len));
    *out = cJSON_ParseWithLength(text, len);
    free(text);
    if (!*out || !cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        return rt_errorf(RT_EINPUT, "%s: invalid JSON", path);
    }
    return RT_OK;
}

/* f32 copy of a tensor (F32/BF16/F16); caller frees. */
static rt_status e_f32(const rt_st_tensor *t, const char *file, float **out) {
    const int64_t n = rt_st_numel(t);
    float *f = malloc(n ? (size_t)n * sizeof *f : 1);
    if (!f) return rt_errorf(RT_EINTERNAL, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        if (t->dtype == RT_ST_F32) memcpy(&f[i], (const char *)t->data + 4 * i, 4);
        else if (t->dtype == RT_ST_BF16) f[i] = rt_bf16_to_f32(((const uint16_t *)t->data)[i]);
        else if (t->dtype == RT_ST_F16) f[i] = rt_f16_to_f32(((const uint16_t *)t->data)[i]);
        else { free(f); return rt_errorf(RT_EINPUT, "%s: tensor %s: dtype %s is not a float type", file, t->name, rt_st_dtype_name(t->dtype)); }
    }
    *out = f;
    return RT_OK;
}

/* Keeps buffers alive until the file is written. */
typedef struct { void **p; size_t n, cap; } e_bufs;
static void *e_keep(e_bufs *b, void *p) {
    if (!p) return NULL;
    if (b->n == b->cap) {
        size_t nc = b->cap ? 2 * b->cap : 64;
        void **q = realloc(b->p, nc * sizeof *q);
        if (!q) { free(p); return NULL; }
        b->p = q;
        b->cap = nc;
    }
    return b->p[b->n++] = p;
}
static void e_free(e_bufs *b) {
    for (size_t i = 0; i < b->n; i++) free(b->p[i]);
    free(b->p);
}

rt_status rt_gguf_export_lora(const char *adapter_dir, const char *base, const char *out_path) {
    char cfg_path[4200], st_path[4200];
    snprintf(cfg_path, sizeof cfg_path, "%s/adapter_config.json", adapter_dir);
    snprintf(st_path, sizeof st_path, "%s/adapter_model.safetensors", adapter_dir);
    cJSON *ac;
    RT_TRY(e_read_json(cfg_path, &ac));
    const cJSON *r_j = cJSON_GetObjectItemCaseSensitive(ac, "r");
    const cJSON *a_j = cJSON_GetObjectItemCaseSensitive(ac, "lora_alpha");
    const cJSON *rs_j = cJSON_GetObjectItemCaseSensitive(ac, "use_rslora");
    const cJSON *b_j = cJSON_GetObjectItemCaseSensitive(ac, "base_model_name_or_path");
    rt_status s = RT_OK;
    if (!cJSON_IsNumber(r_j) || r_j->valueint < 1 || !cJSON_IsNumber(a_j))
        s = rt_errorf(RT_EINPUT, "%s: needs numbers r (>= 1) and lora_alpha", cfg_path);
    if (!s && !base && !(cJSON_IsString(b_j) && b_j->valuestring[0]))
        s = rt_errorf(RT_EINPUT, "%s: no base_model_name_or_path; name the base with --model", cfg_path);
    char *base_path = s ? NULL : strdup(base ? base : b_j->valuestring);
    const int r = s ? 0 : r_j->valueint;
    float alpha = s ? 0 : (float)a_j->valuedouble;
    if (!s && cJSON_IsTrue(rs_j)) alpha *= sqrtf((float)r);
    cJSON_Delete(ac);
    if (s) return s;
    if (!base_path) return rt_errorf(RT_EINTERNAL, "out of memory");

    rt_llama_config cfg;
    bool permuted = false;
    rt_safetensors *st = NULL;
    rt_gguf_writer *w = NULL;
    e_bufs bufs = {0};
    s = e_base(base_path, &cfg, &permuted);
    if (!s) s = rt_st_open(st_path, &st);
    if (!s) s = rt_gguf_writer_new(&w);
    if (!s) s = rt_gguf_set_str(w, "general.architecture", cfg.arch == RT_ARCH_GEMMA3 ? "gemma3"
                                                        : cfg.attention_bias && !permuted ? "qwen2" : "llama");
    if (!s) s = rt_gguf_set_str(w, "general.type", "adapter");
    if (!s) s = rt_gguf_set_str(w, "general.name", "retort LoRA adapter");
    if (!s) s = rt_gguf_set_str(w, "adapter.type", "lora");
    if (!s) s = rt_gguf_set_f32(w, "adapter.lora.alpha", alpha);
    const int hd = rt_llama_head_dim(&cfg);
    static const char prefix[] = "base_model.model.";
    for (size_t i = 0; !s && i < rt_st_count(st); i++) {
        const rt_st_tensor *t = rt_st_get(st, i);
        char hf[512], gg[512], name[600];
        const char *n = t->name, *ab = strstr(n, ".lora_A.weight");
        bool is_a = ab != NULL;
        if (!ab) ab = strstr(n, ".lora_B.weight");
        if (strncmp(n, prefix, sizeof prefix - 1) || !ab || t->ndim != 2 ||
            (size_t)(ab - n) - (sizeof prefix - 1) + 8 >= sizeof hf) {
            s = rt_errorf(RT_EINPUT, "%s: tensor %s is not a PEFT LoRA weight", st_path, n);
            break;
        }
        snprintf(hf, sizeof hf, "%.*s.weight", (int)(ab - n - (sizeof prefix - 1)), n + sizeof prefix - 1);
        if (!rt_gguf_name_from_hf(hf, gg, sizeof gg, cfg.arch)) {
            s = rt_errorf(RT_EINPUT, "%s: tensor %s adapts %s, which has no llama.cpp name", st_path, n, hf);
            break;
        }
        snprintf(name, sizeof name, "%s.%s", gg, is_a ? "lora_a" : "lora_b");
        float *f = NULL;
        if ((s = e_f32(t, st_path, &f))) break;
        if (!e_keep(&bufs, f)) { s = rt_errorf(RT_EINTERNAL, "out of memory"); break; }
        const bool q = strstr(hf, ".q_proj.") != NULL, k = strstr(hf, ".k_proj.") != NULL;
        if (!is_a && permuted && (q || k)) {
            const int heads = q ? cfg.num_attention_heads : cfg.num_key_value_heads;
            if (t->shape[0] != (int64_t)heads * hd) {
                s = rt_errorf(RT_EINPUT, "%s: %s has %lld rows, the base %s has %d", st_path, n,
                              (long long)t->shape[0], base_path, heads * hd);
                break;
            }
            float *p = e_keep(&bufs, malloc((size_t)rt_st_numel(t) * sizeof *p));
            if (!p) { s = rt_errorf(RT_EINTERNAL, "out of memory"); break; }
            rt_gguf_permute_rows(p, f, heads, hd, t->shape[1], true);
            f = p;
        }
        if (t->shape[is_a ? 0 : 1] != r) {
            s = rt_errorf(RT_EINPUT, "%s: %s has rank %lld, adapter_config.json says r = %d", st_path,
                          n, (long long)t->shape[is_a ? 0 : 1], r);
            break;
        }
        const int64_t ne[2] = {t->shape[1], t->shape[0]};
        s = rt_gguf_add_tensor(w, name, RT_GGML_F32, 2, ne, f, (size_t)rt_st_numel(t) * 4);
    }
    if (!s) s = rt_gguf_write(w, out_path);
    rt_gguf_writer_free(w);
    e_free(&bufs);
    rt_st_close(st);
    free(base_path);
    return s;
}

/* ---- models -------------------------------------------------------------- */

static rt_status e_hparams(rt_gguf_writer *w, const rt_llama_config *c, const char *arch,
                           rt_ggml_type type) {
    char k[96];
#define U32(key, v) (snprintf(k, sizeof k, "%s.%s", arch, key), rt_gguf_set_u32(w, k, (uint32_t)(v)))
#define F32(key, v) (snprintf(k, sizeof k, "%s.%s", arch, key), rt_gguf_set_f32(w, k, (float)(v)))
    RT_TRY(rt_gguf_set_str(w, "general.architecture", arch));
    RT_TRY(rt_gguf_set_str(w, "general.type", "model"));
    RT_TRY(rt_gguf_set_str(w, "general.name", "retort export"));
    /* llama_ftype: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7 */
    RT_TRY(rt_gguf_set_u32(w, "general.file_type", type == RT_GGML_F32 ? 0 : type == RT_GGML_F16 ? 1 : 7));
    RT_TRY(U32("block_count", c->num_hidden_layers));
    RT_TRY(U32("context_length", c->max_position_embeddings));
    RT_TRY(U32("embedding_length", c->hidden_size));
    RT_TRY(U32("feed_forward_length", c->intermediate_size));
    RT_TRY(U32("attention.head_count", c->num_attention_heads));
    RT_TRY(U32("attention.head_count_kv", c->num_key_value_heads));
    RT_TRY(F32("rope.freq_base", c->rope_theta));
    RT_TRY(F32("attention.layer_norm_rms_epsilon", c->rms_norm_eps));
    RT_TRY(U32("vocab_size", c->vocab_size));
    RT_TRY(U32("rope.dimension_count", rt_llama_head_dim(c)));
    if (c->arch == RT_ARCH_GEMMA3) { /* llama.cpp fixes the pattern and the local base */
        RT_TRY(U32("attention.key_length", rt_llama_head_dim(c)));
        RT_TRY(U32("attention.value_length", rt_llama_head_dim(c)));
        RT_TRY(U32("attention.sliding_window", c->sliding_window));
    }
#undef U32
#undef F32
    return RT_OK;
}

/* One HF tensor in GGUF form (f32 source -> type), permuted when q/k. */
static rt_status e_tensor(rt_gguf_writer *w, e_bufs *bufs, const rt_st_tensor *t,
                          const rt_llama_config *c, bool permuted, rt_ggml_type type) {
    char gg[256];
    if (!rt_gguf_name_from_hf(t->name, gg, sizeof gg, c->arch)) return RT_OK; /* not part of the model */
    float *f;
    RT_TRY(e_f32(t, t->name, &f));
    if (!e_keep(bufs, f)) return rt_errorf(RT_EINTERNAL, "out of memory");
    const int64_t n = rt_st_numel(t), rows = t->shape[0], cols = t->ndim == 2 ? t->shape[1] : 1;
    if (rt_gguf_is_shifted_norm(t->name, c->arch))
        for (int64_t i = 0; i < n; i++) f[i] += 1.0f;
    const bool q = strstr(t->name, ".q_proj.") != NULL, k = strstr(t->name, ".k_proj.") != NULL;
    if (permuted && (q || k)) {
        const int heads = q ? c->num_attention_heads : c->num_key_value_heads;
        float *p = e_keep(bufs, malloc((size_t)n * sizeof *p));
        if (!p) return rt_errorf(RT_EINTERNAL, "out of memory");
        rt_gguf_permute_rows(p, f, heads, rt_llama_head_dim(c), cols, true);
        f = p;
    }
    int64_t ne[2] = {t->ndim == 2 ? cols : rows, rows};
    rt_ggml_type tt = t->ndim == 2 ? type : RT_GGML_F32;
    if (tt == RT_GGML_Q8_0 && cols % 32) tt = RT_GGML_F16;
    void *data = f;
    if (tt == RT_GGML_F16) {
        uint16_t *h = e_keep(bufs, malloc((size_t)n * sizeof *h));
        if (!h) return rt_errorf(RT_EINTERNAL, "out of memory");
        for (int64_t i = 0; i < n; i++) h[i] = rt_f32_to_f16(f[i]);
        data = h;
    } else if (tt == RT_GGML_Q8_0) {
        size_t nb = rt_ggml_row_size(tt, n);
        void *qd = e_keep(bufs, malloc(nb));
        if (!qd) return rt_errorf(RT_EINTERNAL, "out of memory");
        rt_ggml_quantize_q8_0(f, qd, n);
        data = qd;
    }
    return rt_gguf_add_tensor(w, gg, tt, t->ndim, ne, data, rt_ggml_row_size(tt, n));
}

rt_status rt_gguf_export_model(const char *model, const char *adapter_dir,
                               const char *tokenizer_gguf, rt_ggml_type type, const char *out_path) {
    const char *tok = tokenizer_gguf ? tokenizer_gguf : model;
    char tmp[4200] = "";
    rt_status s = RT_OK;
    const char *src = model;
    if (adapter_dir) { /* merge as `retort merge` does, then read the merged directory */
        snprintf(tmp, sizeof tmp, "%s.merge.tmp", out_path);
        s = rt_merge_write_hf(model, adapter_dir, tmp);
        src = tmp;
    }
    rt_weights *wt = NULL;
    rt_llama_config cfg;
    rt_gguf *tg = NULL;
    rt_gguf_writer *w = NULL;
    e_bufs bufs = {0};
    bool permuted = true;
    if (!s) s = rt_weights_open(src, &wt, &cfg);
    if (!s) s = rt_weights_check_llama(wt, &cfg);
    if (!s && rt_is_gguf(tok)) s = rt_gguf_open(tok, &tg);
    if (!s && rt_is_gguf(model)) { /* keep the source's architecture */
        rt_llama_config c2;
        rt_gguf *mg = NULL;
        s = rt_gguf_open(model, &mg);
        if (!s) s = rt_gguf_llama_config(mg, &c2, &permuted);
        rt_gguf_close(mg);
    } else if (!s) {
        permuted = !cfg.attention_bias && cfg.arch != RT_ARCH_GEMMA3;
    }
    if (!s) s = rt_gguf_writer_new(&w);
    if (!s) s = e_hparams(w, &cfg, cfg.arch == RT_ARCH_GEMMA3 ? "gemma3" : permuted ? "llama" : "qwen2", type);
    if (!s && !tg) { /* a SentencePiece tokenizer file (llama2.c tokenizer.bin) */
        rt_tokenizer *t = NULL;
        s = rt_tokenizer_load(tok, &t);
        if (!s) s = rt_tokenizer_gguf_meta(t, w);
        rt_tokenizer_free(t);
    }
    for (size_t i = 0; !s && tg && i < rt_gguf_kv_count(tg); i++) {
        const rt_gguf_kv *kv = rt_gguf_kv_at(tg, i);
        if (strncmp(kv->key, "tokenizer.", 10)) continue;
        const void *raw;
        size_t nb;
        rt_gguf_kv_raw(kv, &raw, &nb);
        s = rt_gguf_set_raw(w, kv->key, kv->type, raw, nb);
    }
    for (size_t i = 0; !s && i < rt_weights_count(wt); i++)
        s = e_tensor(w, &bufs, rt_weights_get(wt, i), &cfg, permuted, type);
    if (!s) s = rt_gguf_write(w, out_path);
    rt_gguf_writer_free(w);
    e_free(&bufs);
    rt_gguf_close(tg);
    rt_weights_close(wt);
    if (tmp[0]) {
        char p[4300];
        snprintf(p, sizeof p, "%s/model.safetensors", tmp); unlink(p);
        snprintf(p, sizeof p, "%s/config.json", tmp); unlink(p);
        rmdir(tmp);
    }
    return s;
}
