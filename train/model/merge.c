/* retort — folding a PEFT LoRA adapter into its base model (rt_merge_write_hf,
 * train/model/merge.h), as PEFT's merge_and_unload() + save_pretrained do.
 *
 * The adapter is attached to a shape-only skeleton of the model (the
 * projection tensors carry shapes, no data), so only one projection is
 * materialised in f32 at a time; the merged set is held in the base dtype. */
#include "train/formats/model_file.h"
#include "train/model/merge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "train/formats/fs.h"
#include "train/formats/half.h"
#include "train/formats/nf4_io.h"
#include "train/model/adapter.h"

/* Adds a tensor described by src with data in dtype dt; `owned` (may be
 * NULL) is freed with the list, even on failure. */
static rt_status set_add(rt_st_list *o, const rt_st_tensor *src, rt_st_dtype dt, const void *data,
                         void *owned) {
    if (owned) RT_TRY(rt_st_list_own(o, owned));
    return rt_st_list_add(o, src->name, dt, src->ndim, src->shape, data);
}

/* True for the bitsandbytes side tensors of a projection (X.weight.absmax, ...). */
static bool is_quant_aux(const char *name) {
    static const char *const sfx[] = {".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map",
                                      ".quant_state.bitsandbytes__nf4"};
    size_t len = strlen(name);
    for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
        size_t k = strlen(sfx[i]);
        if (len <= k || strcmp(name + len - k, sfx[i]) != 0 || len - k >= 256) continue;
        char base[256];
        memcpy(base, name, len - k);
        base[len - k] = 0;
        int layer;
        if (rt_nf4_proj_of(base, &layer) >= 0) return true;
    }
    return false;
}

/* A model with the config and shape-only projection weights: enough for
 * rt_adapter_apply, which reads shapes only. rt_llama_free releases it. */
static rt_status skeleton(const rt_llama_config *cfg, rt_llama **out) {
    rt_llama *m = calloc(1, sizeof *m);
    if (!m) return rt_errorf(RT_EINTERNAL, "out of memory");
    m->cfg = *cfg;
    m->opts.device = RT_CPU;
    rt_params_init(&m->params, RT_CPU);
    m->layers = calloc((size_t)cfg->num_hidden_layers, sizeof *m->layers);
    bool ok = m->layers != NULL;
    for (int li = 0; ok && li < cfg->num_hidden_layers; li++)
        for (int p = 0; ok && p < RT_PROJ_COUNT; p++) {
            rt_tensor *t = calloc(1, sizeof *t);
            if (!(ok = t != NULL)) break;
            t->dtype = RT_F32;
            t->device = RT_CPU;
            t->ndim = 2;
            rt_proj_shape(cfg, p, t->shape);
            m->layers[li].proj[p].weight = t;
        }
    if (!ok) {
        rt_llama_free(m);
        return rt_errorf(RT_EINTERNAL, "out of memory");
    }
    *out = m;
    return RT_OK;
}

/* W + scaling * B A for one projection, in its base dtype, added to o. */
static rt_status merge_proj(const rt_weights *w, const rt_lora_linear *lin, const char *name,
                            const int64_t shape[2], rt_st_list *o, rt_st_dtype *dt_out) {
    uint8_t *packed;
    rt_nf4_state st;
    bool found;
    RT_TRY(rt_nf4_from_weights(w, name, shape, &packed, &st, &found));
    int64_t n = shape[0] * shape[1];
    rt_tensor W = {.dtype = RT_F32, .device = RT_CPU, .ndim = 2, .shape = {shape[0], shape[1]}};
    float *dense = NULL, *merged = malloc((size_t)n * sizeof *merged);
    const rt_st_tensor *src = NULL;
    rt_st_dtype dt = RT_ST_F32;
    rt_status s = merged ? RT_OK : rt_errorf(RT_EINTERNAL, "out of memory merging %s", name);
    if (s == RT_OK && found) {
        W.dtype = RT_NF4;
        W.data = packed;
        W.nf4 = &st;
        s = rt_nf4_weight_dtype(w, name, &dt);
    } else if (s == RT_OK) {
        s = rt_weights_expect(w, name, 2, shape, &src);
        if (s == RT_OK && !(dense = malloc((size_t)n * sizeof *dense)))
            s = rt_errorf(RT_EINTERNAL, "out of memory merging %s", name);
        if (s == RT_OK) {
            dt = src->dtype == RT_ST_F64 ? RT_ST_F32 : src->dtype;
            if (src->dtype == RT_ST_F64)
                for (int64_t i = 0; i < n; i++) dense[i] = (float)((const double *)src->data)[i];
            else if (src->dtype == RT_ST_F32 || src->dtype == RT_ST_BF16 || src->dtype == RT_ST_F16)
                rt_kernels_cpu.convert(n, src->data,
                                       src->dtype == RT_ST_F32 ? RT_F32 : src->dtype == RT_ST_BF16 ? RT_BF16 : RT_F16,
                                       dense, RT_F32);
            else
                s = rt_errorf(RT_EINPUT, "%s: tensor %s has dtype %s, expected a floating-point type",
                              rt_weights_source(w), name, rt_st_dtype_name(src->dtype));
            W.data = dense;
        }
    }
    rt_lora_linear l = *lin;
    l.weight = &W;
    if (s == RT_OK) s = rt_lora_merged_weight(&l, merged);
    free(dense);
    free(packed);
    rt_nf4_state_free(&st);
    if (s != RT_OK) {
        free(merged);
        return s;
    }
    void *outbuf = merged;
    if (dt != RT_ST_F32) {
        uint16_t *h = malloc((size_t)n * sizeof *h);
        if (!h) {
            free(merged);
            return rt_errorf(RT_EINTERNAL, "out of memory merging %s", name);
        }
        for (int64_t i = 0; i < n; i++)
            h[i] = dt == RT_ST_BF16 ? rt_f32_to_bf16(merged[i]) : rt_f32_to_f16(merged[i]);
        free(merged);
        outbuf = h;
    }
    rt_st_tensor desc = {.name = NULL, .ndim = 2, .shape = {shape[0], shape[1]}};
    const rt_st_tensor *orig = rt_weights_find(w, name);
    desc.name = orig->name; /* lives as long as w */
    *dt_out = dt;
    return set_add(o, &desc, dt, outbuf, outbuf);
}

rt_status rt_merge_write_hf(const char *model_path, const char *adapter_dir, const char *out_dir) {
    rt_weights *w;
    rt_llama_config cfg;
    RT_TRY(rt_weights_open(model_path, &w, &cfg));
    rt_llama *m = NULL;
    rt_st_list o = {0};
    char path[4200];
    rt_status s = RT_OK;
    bool nf4 = false;
    for (size_t i = 0; i < rt_weights_count(w) && !nf4; i++)
        nf4 = strstr(rt_weights_get(w, i)->name, ".quant_state.bitsandbytes__") != NULL;
    if (!nf4) {
        s = rt_weights_check_llama(w, &cfg);
    } else {
        int64_t emb[2] = {cfg.vocab_size, cfg.hidden_size}, D = cfg.hidden_size;
        s = rt_weights_expect(w, "model.embed_tokens.weight", 2, emb, NULL);
        if (s == RT_OK) s = rt_weights_expect(w, "model.norm.weight", 1, &D, NULL);
        if (s == RT_OK && !cfg.tie_word_embeddings)
            s = rt_weights_expect(w, "lm_head.weight", 2, emb, NULL);
    }
    if (s == RT_OK) s = skeleton(&cfg, &m);
    if (s == RT_OK) s = rt_adapter_apply(m, adapter_dir);
    if (s == RT_OK) s = rt_mkdir_p(out_dir);
    bool have_dt = false;
    rt_st_dtype proj_dt = RT_ST_F32;
    for (size_t i = 0; s == RT_OK && i < rt_weights_count(w); i++) {
        const rt_st_tensor *t = rt_weights_get(w, i);
        int layer, p = rt_nf4_proj_of(t->name, &layer);
        if (p >= 0 && layer < cfg.num_hidden_layers) {
            int64_t shape[2];
            rt_proj_shape(&cfg, p, shape);
            rt_st_dtype dt = RT_ST_F32;
            s = merge_proj(w, &m->layers[layer].proj[p], t->name, shape, &o, &dt);
            if (s == RT_OK && !have_dt) proj_dt = dt;
            have_dt = true;
        } else if (!(nf4 && is_quant_aux(t->name))) {
            s = set_add(&o, t, t->dtype, t->data, NULL);
        }
    }
    static const char *const meta[] = {"format", "pt", NULL};
    if (s == RT_OK) {
        snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
        s = rt_st_write(path, o.t, o.n, meta);
    }
    if (s == RT_OK) {
        snprintf(cfg.torch_dtype, sizeof cfg.torch_dtype, "%s",
                 proj_dt == RT_ST_BF16 ? "bfloat16" : proj_dt == RT_ST_F16 ? "float16" : "float32");
        snprintf(path, sizeof path, "%s/config.json", out_dir);
        s = rt_llama_config_save(&cfg, path);
    }
    if (s == RT_OK) s = rt_nf4_copy_side_files(model_path, out_dir);
    rt_st_list_free(&o);
    rt_llama_free(m);
    rt_weights_close(w);
    return s;
}
