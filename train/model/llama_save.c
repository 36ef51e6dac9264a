/* retort — writing a model as a Hugging Face directory (config.json,
 * model.safetensors, tokenizer). Used for distilled students; the names are
 * transformers' LlamaForCausalLM state-dict keys, the layout HF's (rotate-half
 * RoPE), so the directory loads back in retort and in transformers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/formats/fs.h"
#include "train/model/llama.h"
#include "train/formats/safetensors.h"
#include "train/tokenizer/tokenizer.h"

typedef struct {
    rt_st_tensor *t;
    char (*names)[96];
    float **bufs;
    size_t n, cap;
} tensor_list;

static rt_status list_push(tensor_list *l, const char *name, int ndim, const int64_t *shape,
                           float **buf) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        rt_st_tensor *t = realloc(l->t, cap * sizeof *t);
        if (t) l->t = t;
        char(*names)[96] = realloc(l->names, cap * sizeof *names);
        if (names) l->names = names;
        float **bufs = realloc(l->bufs, cap * sizeof *bufs);
        if (bufs) l->bufs = bufs;
        if (!t || !names || !bufs) return rt_errorf(RT_EINTERNAL, "out of memory saving the model");
        l->cap = cap;
    }
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= shape[i];
    float *b = malloc((size_t)numel * sizeof *b);
    if (!b) return rt_errorf(RT_EINTERNAL, "out of memory saving %s", name);
    snprintf(l->names[l->n], sizeof l->names[l->n], "%s", name);
    rt_st_tensor *t = &l->t[l->n];
    memset(t, 0, sizeof *t);
    t->dtype = RT_ST_F32;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->data = b;
    t->nbytes = (size_t)numel * sizeof *b;
    l->bufs[l->n++] = b;
    *buf = b;
    return RT_OK;
}

/* A dense f32 tensor (norms, embeddings, biases) copied to host memory. */
static rt_status add_dense(tensor_list *l, const char *name, const rt_tensor *src) {
    if (src->dtype != RT_F32)
        return rt_errorf(RT_EINTERNAL, "save: %s is %s, expected f32", name, rt_dtype_name(src->dtype));
    float *b;
    RT_TRY(list_push(l, name, src->ndim, src->shape, &b));
    rt_kernels_for(src->device)->download(b, src->data, rt_nbytes(src));
    return RT_OK;
}

static void list_free(tensor_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->bufs[i]);
    free(l->t);
    free(l->names);
    free(l->bufs);
}

static rt_status collect(const rt_llama *m, tensor_list *l) {
    char name[96];
    RT_TRY(add_dense(l, "model.embed_tokens.weight", m->embed_tokens));
    for (int li = 0; li < m->cfg.num_hidden_layers; li++) {
        const rt_llama_layer *L = &m->layers[li];
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", li);
        RT_TRY(add_dense(l, name, L->input_layernorm));
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", li);
        RT_TRY(add_dense(l, name, L->post_attention_layernorm));
        const struct { const char *fmt; const rt_tensor *t; } gemma[] = {
            {"model.layers.%d.self_attn.q_norm.weight", L->q_norm},
            {"model.layers.%d.self_attn.k_norm.weight", L->k_norm},
            {"model.layers.%d.pre_feedforward_layernorm.weight", L->pre_feedforward_layernorm},
            {"model.layers.%d.post_feedforward_layernorm.weight", L->post_feedforward_layernorm},
        };
        for (size_t g = 0; g < sizeof gemma / sizeof gemma[0]; g++)
            if (gemma[g].t) {
                snprintf(name, sizeof name, gemma[g].fmt, li);
                RT_TRY(add_dense(l, name, gemma[g].t));
            }
        for (int p = 0; p < RT_PROJ_COUNT; p++) {
            const rt_lora_linear *pj = &L->proj[p];
            float *b;
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", li, rt_proj_path(p));
            RT_TRY(list_push(l, name, 2, pj->weight->shape, &b));
            RT_TRY(rt_lora_merged_weight(pj, b));
            if (pj->bias) {
                snprintf(name, sizeof name, "model.layers.%d.%s.bias", li, rt_proj_path(p));
                RT_TRY(add_dense(l, name, pj->bias));
            }
        }
    }
    RT_TRY(add_dense(l, "model.norm.weight", m->norm));
    if (!m->cfg.tie_word_embeddings) RT_TRY(add_dense(l, "lm_head.weight", m->lm_head));
    return RT_OK;
}

rt_status rt_llama_save_hf(const rt_llama *m, const rt_tokenizer *tok, const char *dir) {
    RT_TRY(rt_mkdir_p(dir));
    char path[4200];
    rt_llama_config cfg = m->cfg;
    snprintf(cfg.torch_dtype, sizeof cfg.torch_dtype, "float32");
    snprintf(path, sizeof path, "%s/config.json", dir);
    RT_TRY(rt_llama_config_save(&cfg, path));
    tensor_list l = {0};
    rt_status s = collect(m, &l);
    for (size_t i = 0; i < l.n; i++) l.t[i].name = l.names[i];
    static const char *const meta[] = {"format", "pt", NULL};
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (s == RT_OK) s = rt_st_write(path, l.t, l.n, meta);
    list_free(&l);
    if (s == RT_OK && tok) s = rt_tokenizer_save_hf(tok, dir);
    return s;
}
