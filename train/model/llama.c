#include "train/model/llama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/nf4.h"
#include "train/formats/nf4_io.h"
#include "train/formats/model_file.h"

/* ---- LoRA adapters -------------------------------------------------------- */

rt_status rt_llama_add_lora(rt_llama *m, int r, float alpha, float dropout, bool use_rslora,
                            unsigned targets, uint64_t seed) {
    if (m->params.count > 0) return rt_errorf(RT_EINTERNAL, "the model already has adapters");
    if (r < 1) return rt_errorf(RT_EINPUT, "lora_r must be >= 1, got %d", r);
    if (!(isfinite(alpha) && alpha > 0))
        return rt_errorf(RT_EINPUT, "lora_alpha must be finite and > 0, got %g", (double)alpha);
    /* A rank above both sides of every layer adds nothing and could only
     * make the allocator the one to refuse it. */
    int64_t widest = 0;
    for (int li = 0; li < m->cfg.num_hidden_layers; li++)
        for (int p = 0; p < RT_PROJ_COUNT; p++)
            if ((targets & (1u << p)) && m->layers[li].proj[p].weight) {
                const rt_tensor *W = m->layers[li].proj[p].weight;
                widest = W->shape[0] > widest ? W->shape[0] : widest;
                widest = W->shape[1] > widest ? W->shape[1] : widest;
            }
    if (widest > 0 && r > widest)
        return rt_errorf(RT_EINPUT, "lora_r %d is larger than every targeted layer (the widest side is %lld)",
                         r, (long long)widest);
    rt_params_free(&m->params);
    rt_params_init(&m->params, m->opts.device);
    m->opts.lora_r = r;
    m->opts.lora_alpha = alpha;
    m->opts.lora_dropout = dropout;
    m->opts.use_rslora = use_rslora;
    m->opts.lora_targets = targets;
    m->opts.seed = seed;
    for (int li = 0; li < m->cfg.num_hidden_layers; li++) {
        for (int p = 0; p < RT_PROJ_COUNT; p++) {
            if (!(targets & (1u << p))) continue;
            rt_lora_linear *l = &m->layers[li].proj[p];
            const rt_tensor *W = l->weight;
            int64_t a[2] = {r, W->shape[1]}, b[2] = {W->shape[0], r};
            char name[160];
            snprintf(name, sizeof name, "base_model.model.model.layers.%d.%s.lora_A.weight", li,
                     rt_proj_path(p));
            l->lora_A = rt_params_add(&m->params, name, 2, a);
            snprintf(name, sizeof name, "base_model.model.model.layers.%d.%s.lora_B.weight", li,
                     rt_proj_path(p));
            l->lora_B = rt_params_add(&m->params, name, 2, b);
            if (!l->lora_A || !l->lora_B) return rt_errorf(RT_EINTERNAL, "out of memory");
            l->scaling = rt_lora_scaling(alpha, r, use_rslora);
            l->dropout = dropout;
        }
    }
    /* Padded so ZeRO-1 shards (dist/zero1.h) split evenly. */
    RT_TRY(rt_params_finalize(&m->params, m->opts.pad_multiple > 0 ? m->opts.pad_multiple : 64));
    for (int li = 0; li < m->cfg.num_hidden_layers; li++)
        for (int p = 0; p < RT_PROJ_COUNT; p++)
            if (m->layers[li].proj[p].lora_A)
                rt_lora_init(&m->layers[li].proj[p],
                             seed * 1000003u + (uint64_t)(li * RT_PROJ_COUNT + p));
    return RT_OK;
}

/* ---- loading ---------------------------------------------------------------- */

static int st_to_rt_dtype(rt_st_dtype d) {
    return d == RT_ST_BF16 ? RT_BF16 : d == RT_ST_F16 ? RT_F16 : d == RT_ST_F32 ? RT_F32 : -1;
}

/* A frozen f32 tensor on the device, from a stored f32/bf16/f16 tensor. */
static rt_status load_dense(const rt_weights *w, const char *name, int ndim, const int64_t *shape,
                            rt_device dev, rt_tensor **out) {
    const rt_st_tensor *st;
    RT_TRY(rt_weights_expect(w, name, ndim, shape, &st));
    int dt = st_to_rt_dtype(st->dtype);
    if (dt < 0)
        return rt_errorf(RT_EINPUT, "%s: tensor %s has dtype %d; expected F32, BF16 or F16",
                         rt_weights_source(w), name, (int)st->dtype);
    rt_tensor *t = rt_tensor_new(dev, RT_F32, ndim, shape);
    if (!t) return RT_EINTERNAL;
    int64_t n = rt_numel(t);
    bool finite;
    if (dev == RT_CPU) {
        rt_kernels_cpu.convert(n, st->data, dt, t->data, RT_F32);
        finite = rt_kernels_cpu.all_finite(n, t->data);
    } else {
        float *tmp = malloc((size_t)n * sizeof *tmp);
        if (!tmp) return rt_errorf(RT_EINTERNAL, "out of memory loading %s", name);
        rt_kernels_cpu.convert(n, st->data, dt, tmp, RT_F32);
        finite = rt_kernels_cpu.all_finite(n, tmp);
        rt_kernels_for(dev)->upload(t->data, tmp, (size_t)n * sizeof *tmp);
        free(tmp);
    }
    if (!finite) {
        rt_tensor_free(t);
        return rt_errorf(RT_EINPUT, "%s: tensor %s holds non-finite values (NaN or Inf)", rt_weights_source(w),
                         name);
    }
    t->name = name;
    *out = t;
    return RT_OK;
}

static void free_frozen(rt_tensor *t);

/* A frozen projection weight, quantized to NF4 when asked. */
static rt_status load_proj(const rt_weights *w, const char *name, const int64_t *shape,
                           const rt_llama_opts *o, rt_tensor **out) {
    /* Stored as NF4 (bitsandbytes layout, train/nf4_io.h): keep the
     * checkpoint's own codes when load_in_4bit, else dequantize to f32. */
    bool nf4;
    RT_TRY(rt_nf4_load_tensor(w, name, shape, o->load_in_4bit, o->device, out, &nf4));
    if (nf4) return RT_OK;
    if (!o->load_in_4bit) return load_dense(w, name, 2, shape, o->device, out);
    /* Quantized on the host (bitsandbytes' arithmetic, kernels/cpu/nf4.c),
     * then the packed codes uploaded (rt_nf4_tensor_to). */
    rt_tensor *f;
    RT_TRY(load_dense(w, name, 2, shape, RT_CPU, &f));
    rt_tensor *q = rt_tensor_new(RT_CPU, RT_NF4, 2, shape);
    rt_nf4_state *st = calloc(1, sizeof *st);
    rt_status s = q && st ? rt_nf4_quantize(f->data, rt_numel(f), o->nf4_blocksize, o->double_quant,
                                            q->data, st)
                          : rt_errorf(RT_EINTERNAL, "out of memory quantizing %s", name);
    rt_tensor_free(f);
    if (s != RT_OK) {
        free(st);
        rt_tensor_free(q);
        return s;
    }
    q->nf4 = st;
    if ((s = rt_nf4_tensor_to(&q, o->device)) != RT_OK) {
        free_frozen(q);
        return s;
    }
    *out = q;
    return RT_OK;
}

static void free_frozen(rt_tensor *t) {
    if (!t) return;
    if (t->nf4) {
        rt_nf4_state_free(t->nf4);
        free(t->nf4);
    }
    rt_tensor_free(t);
}

static rt_status load_layer(const rt_weights *w, rt_llama *m, int li) {
    const rt_llama_config *c = &m->cfg;
    rt_llama_layer *L = &m->layers[li];
    char name[128];
    int64_t D = c->hidden_size;
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", li);
    RT_TRY(load_dense(w, name, 1, &D, m->opts.device, &L->input_layernorm));
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", li);
    RT_TRY(load_dense(w, name, 1, &D, m->opts.device, &L->post_attention_layernorm));
    if (c->arch == RT_ARCH_GEMMA3) {
        int64_t Dh = rt_llama_head_dim(c);
        snprintf(name, sizeof name, "model.layers.%d.self_attn.q_norm.weight", li);
        RT_TRY(load_dense(w, name, 1, &Dh, m->opts.device, &L->q_norm));
        snprintf(name, sizeof name, "model.layers.%d.self_attn.k_norm.weight", li);
        RT_TRY(load_dense(w, name, 1, &Dh, m->opts.device, &L->k_norm));
        snprintf(name, sizeof name, "model.layers.%d.pre_feedforward_layernorm.weight", li);
        RT_TRY(load_dense(w, name, 1, &D, m->opts.device, &L->pre_feedforward_layernorm));
        snprintf(name, sizeof name, "model.layers.%d.post_feedforward_layernorm.weight", li);
        RT_TRY(load_dense(w, name, 1, &D, m->opts.device, &L->post_feedforward_layernorm));
    }
    for (int p = 0; p < RT_PROJ_COUNT; p++) {
        int64_t shape[2];
        rt_proj_shape(c, p, shape);
        snprintf(name, sizeof name, "model.layers.%d.%s.weight", li, rt_proj_path(p));
        RT_TRY(load_proj(w, name, shape, &m->opts, &L->proj[p].weight));
        if (c->attention_bias && p <= RT_PROJ_V) {
            snprintf(name, sizeof name, "model.layers.%d.%s.bias", li, rt_proj_path(p));
            RT_TRY(load_dense(w, name, 1, shape, m->opts.device, &L->proj[p].bias));
        }
    }
    return RT_OK;
}

rt_status rt_llama_load(const char *path, const rt_llama_opts *opts, rt_llama **out) {
    rt_weights *w;
    rt_llama_config cfg;
    RT_TRY(rt_weights_open(path, &w, &cfg));
    rt_status cs = rt_weights_check_layers(w, &cfg);
    if (cs != RT_OK) {
        rt_weights_close(w);
        return cs;
    }
    rt_llama *m = calloc(1, sizeof *m);
    rt_status s = RT_OK;
    if (!m) {
        rt_weights_close(w);
        return rt_errorf(RT_EINTERNAL, "out of memory");
    }
    m->cfg = cfg;
    m->opts = *opts;
    if (m->opts.nf4_blocksize == 0) m->opts.nf4_blocksize = 64;
    rt_params_init(&m->params, opts->device);
    m->layers = calloc((size_t)cfg.num_hidden_layers, sizeof *m->layers);
    if (!m->layers) s = rt_errorf(RT_EINTERNAL, "out of memory");
    int64_t emb[2] = {cfg.vocab_size, cfg.hidden_size}, D = cfg.hidden_size;
    if (s == RT_OK) s = load_dense(w, "model.embed_tokens.weight", 2, emb, opts->device, &m->embed_tokens);
    if (s == RT_OK) s = load_dense(w, "model.norm.weight", 1, &D, opts->device, &m->norm);
    if (s == RT_OK) {
        if (cfg.tie_word_embeddings) m->lm_head = m->embed_tokens;
        else s = load_dense(w, "lm_head.weight", 2, emb, opts->device, &m->lm_head);
    }
    for (int li = 0; s == RT_OK && li < cfg.num_hidden_layers; li++) s = load_layer(w, m, li);
    if (s == RT_OK && opts->lora_r > 0)
        s = rt_llama_add_lora(m, opts->lora_r, opts->lora_alpha, opts->lora_dropout,
                              opts->use_rslora, opts->lora_targets, opts->seed);
    rt_weights_close(w);
    if (s != RT_OK) {
        rt_llama_free(m);
        return s;
    }
    *out = m;
    return RT_OK;
}

/* ---- a fresh, fully trainable model ---------------------------------------- */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Box-Muller on two uniforms in (0, 1]. */
static float normal(uint64_t *s) {
    double u1 = ((double)(splitmix64(s) >> 11) + 1.0) * 0x1.0p-53;
    double u2 = (double)(splitmix64(s) >> 11) * 0x1.0p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static rt_tensor *declare(rt_llama *m, int ndim, const int64_t *shape, const char *fmt, int layer) {
    char name[128];
    snprintf(name, sizeof name, fmt, layer);
    return rt_params_add(&m->params, name, ndim, shape);
}

rt_status rt_llama_alloc_full(const rt_llama_config *cfg, const rt_llama_opts *opts, rt_llama **out) {
    RT_TRY(rt_llama_config_check(cfg, "student_config"));
    if (opts->lora_r != 0 || opts->load_in_4bit)
        return rt_errorf(RT_EINTERNAL, "a fully trainable model has no adapters and no NF4 weights");
    rt_llama *m = calloc(1, sizeof *m);
    if (!m) return rt_errorf(RT_EINTERNAL, "out of memory");
    m->cfg = *cfg;
    m->opts = *opts;
    m->full = true;
    rt_params_init(&m->params, opts->device);
    m->layers = calloc((size_t)cfg->num_hidden_layers, sizeof *m->layers);
    if (!m->layers) {
        free(m);
        return rt_errorf(RT_EINTERNAL, "out of memory");
    }
    int64_t emb[2] = {cfg->vocab_size, cfg->hidden_size}, D = cfg->hidden_size;
    bool ok = (m->embed_tokens = declare(m, 2, emb, "model.embed_tokens.weight", 0)) != NULL;
    for (int li = 0; ok && li < cfg->num_hidden_layers; li++) {
        rt_llama_layer *L = &m->layers[li];
        ok &= (L->input_layernorm = declare(m, 1, &D, "model.layers.%d.input_layernorm.weight", li)) != NULL;
        ok &= (L->post_attention_layernorm =
                   declare(m, 1, &D, "model.layers.%d.post_attention_layernorm.weight", li)) != NULL;
        if (cfg->arch == RT_ARCH_GEMMA3) {
            int64_t Dh = rt_llama_head_dim(cfg);
            ok = ok && (L->q_norm = declare(m, 1, &Dh, "model.layers.%d.self_attn.q_norm.weight", li)) &&
                 (L->k_norm = declare(m, 1, &Dh, "model.layers.%d.self_attn.k_norm.weight", li)) &&
                 (L->pre_feedforward_layernorm =
                      declare(m, 1, &D, "model.layers.%d.pre_feedforward_layernorm.weight", li)) &&
                 (L->post_feedforward_layernorm =
                      declare(m, 1, &D, "model.layers.%d.post_feedforward_layernorm.weight", li));
        }
        for (int p = 0; ok && p < RT_PROJ_COUNT; p++) {
            int64_t shape[2];
            char fmt[96];
            rt_proj_shape(cfg, p, shape);
            snprintf(fmt, sizeof fmt, "model.layers.%%d.%s.weight", rt_proj_path(p));
            ok &= (L->proj[p].weight = declare(m, 2, shape, fmt, li)) != NULL;
            if (cfg->attention_bias && p <= RT_PROJ_V) {
                snprintf(fmt, sizeof fmt, "model.layers.%%d.%s.bias", rt_proj_path(p));
                ok &= (L->proj[p].bias = declare(m, 1, shape, fmt, li)) != NULL;
            }
        }
    }
    ok = ok && (m->norm = declare(m, 1, &D, "model.norm.weight", 0)) != NULL;
    if (ok) m->lm_head = cfg->tie_word_embeddings ? m->embed_tokens
                                                   : declare(m, 2, emb, "lm_head.weight", 0);
    rt_status s = ok && m->lm_head ? rt_params_finalize(&m->params, opts->pad_multiple > 0 ? opts->pad_multiple : 64)
                                   : rt_errorf(RT_EINTERNAL, "out of memory");
    if (s != RT_OK) {
        rt_llama_free(m);
        return s;
    }
    *out = m;
    return RT_OK;
}

rt_status rt_llama_new(const rt_llama_config *cfg, const rt_llama_opts *opts, float init_std,
                       rt_llama **out) {
    if (opts->lora_r != 0) return rt_errorf(RT_EINTERNAL, "rt_llama_new: a new model has no adapters");
    rt_llama *m;
    RT_TRY(rt_llama_alloc_full(cfg, opts, &m));
    float *host = malloc((size_t)m->params.numel * sizeof *host);
    if (!host) {
        rt_llama_free(m);
        return rt_errorf(RT_EINTERNAL, "out of memory");
    }
    uint64_t seed = opts->seed;
    for (int i = 0; i < m->params.count; i++) {
        const rt_tensor *t = m->params.tensors[i];
        float *dst = host + m->params.offsets[i];
        bool norm = strstr(t->name, "norm.weight") != NULL, bias = strstr(t->name, ".bias") != NULL;
        for (int64_t j = 0; j < rt_numel(t); j++)
            /* Gemma's norms multiply by 1 + w: identity at w = 0 */
            dst[j] = norm ? (cfg->arch == RT_ARCH_GEMMA3 ? 0.0f : 1.0f) : bias ? 0.0f : init_std * normal(&seed);
    }
    for (int64_t j = m->params.numel_used; j < m->params.numel; j++) host[j] = 0.0f;
    rt_kernels_for(opts->device)->upload(m->params.data, host, (size_t)m->params.numel * sizeof *host);
    free(host);
    *out = m;
    return RT_OK;
}

bool rt_llama_is_full(const rt_llama *m) { return m->full; }

void rt_llama_free(rt_llama *m) {
    if (!m) return;
    if (m->layers && !m->full) { /* a full model's weights live in m->params */
        for (int li = 0; li < m->cfg.num_hidden_layers; li++) {
            rt_llama_layer *L = &m->layers[li];
            free_frozen(L->input_layernorm);
            free_frozen(L->post_attention_layernorm);
            free_frozen(L->q_norm);
            free_frozen(L->k_norm);
            free_frozen(L->pre_feedforward_layernorm);
            free_frozen(L->post_feedforward_layernorm);
            for (int p = 0; p < RT_PROJ_COUNT; p++) {
                free_frozen(L->proj[p].weight);
                free_frozen(L->proj[p].bias);
            }
        }
    }
    free(m->layers);
    if (!m->full) {
        if (m->lm_head != m->embed_tokens) free_frozen(m->lm_head);
        free_frozen(m->embed_tokens);
        free_frozen(m->norm);
    }
    rt_params_free(&m->params);
    free(m->norm_ones);
    free(m);
}

int64_t rt_llama_n_params(const rt_llama *m) {
    const rt_llama_config *c = &m->cfg;
    int64_t n = (int64_t)c->vocab_size * c->hidden_size * (c->tie_word_embeddings ? 1 : 2) + c->hidden_size;
    for (int p = 0; p < RT_PROJ_COUNT; p++) {
        int64_t s[2];
        rt_proj_shape(c, p, s);
        n += (int64_t)c->num_hidden_layers * s[0] * s[1];
        if (c->attention_bias && p <= RT_PROJ_V) n += (int64_t)c->num_hidden_layers * s[0];
    }
    n += (int64_t)c->num_hidden_layers * 2 * c->hidden_size;
    if (c->arch == RT_ARCH_GEMMA3)
        n += (int64_t)c->num_hidden_layers * 2 * (c->hidden_size + rt_llama_head_dim(c));
    return m->full ? m->params.numel_used : n + m->params.numel_used;
}

/* ---- forward ----------------------------------------------------------------- */

typedef struct {
    rt_llama *m;
    int layer;
    rt_tensor *pos, *seg;
    rt_kv_cache *cache; /* generation only */
} block_args;

/* k, v [1, T, Hkv, Dh] appended to the cache; returns views of all cached
 * keys/values [1, len + T, Hkv, Dh]. */
static void cache_append(rt_ctx *ctx, rt_kv_cache *c, int layer, rt_tensor **k, rt_tensor **v) {
    int64_t T = (*k)->shape[1], Hkv = (*k)->shape[2], Dh = (*k)->shape[3];
    size_t off = (size_t)(c->len * Hkv * Dh) * sizeof(float), bytes = (size_t)(T * Hkv * Dh) * sizeof(float);
    ctx->k->copy((char *)c->k[layer]->data + off, (*k)->data, bytes);
    ctx->k->copy((char *)c->v[layer]->data + off, (*v)->data, bytes);
    int64_t rows[3] = {c->max_len, Hkv, Dh}, shape[4] = {1, c->len + T, Hkv, Dh};
    *k = rt_reshape(ctx, rt_slice(ctx, rt_view(ctx, c->k[layer], 3, rows), 0, c->len + T), 4, shape);
    *v = rt_reshape(ctx, rt_slice(ctx, rt_view(ctx, c->v[layer], 3, rows), 0, c->len + T), 4, shape);
}

/* Gemma's RMSNorm, x / rms(x) * (1 + w) (transformers' Gemma3RMSNorm: 1 + w
 * formed in f32, as here), built from rmsnorm and add so both keep their
 * tested backward; w may be trainable (full fine-tuning). The ones come from
 * m->norm_ones, made once (hidden() below). */
static rt_tensor *rmsnorm_1p(rt_ctx *ctx, const rt_llama *m, rt_tensor *x, rt_tensor *w, float eps) {
    if (!x || !w) return NULL;
    int64_t n = rt_numel(w);
    return rt_rmsnorm(ctx, x, rt_add(ctx, rt_from_f32(ctx, m->norm_ones, 1, &n), w), eps);
}

/* A Gemma 3 layer (rt_arch in llama_config.h): sandwich norms, q/k norms,
 * per-layer RoPE base and sliding window, GeGLU MLP. */
static rt_tensor *block_gemma3(rt_ctx *ctx, block_args *a, rt_tensor *x) {
    const rt_llama_config *c = &a->m->cfg;
    rt_llama_layer *L = &a->m->layers[a->layer];
    const float eps = c->rms_norm_eps;
    const bool local = rt_llama_layer_is_local(c, a->layer);
    int64_t B = x->shape[0], T = x->shape[1], H = c->num_attention_heads,
            Hkv = c->num_key_value_heads, Dh = rt_llama_head_dim(c);
    int64_t qs[4] = {B, T, H, Dh}, ks[4] = {B, T, Hkv, Dh}, xs[3] = {B, T, H * Dh};

    rt_tensor *h = rmsnorm_1p(ctx, a->m, x, L->input_layernorm, eps);
    rt_tensor *q = rt_reshape(ctx, rt_lora_forward(ctx, &L->proj[RT_PROJ_Q], h), 4, qs);
    rt_tensor *k = rt_reshape(ctx, rt_lora_forward(ctx, &L->proj[RT_PROJ_K], h), 4, ks);
    rt_tensor *v = rt_reshape(ctx, rt_lora_forward(ctx, &L->proj[RT_PROJ_V], h), 4, ks);
    q = rmsnorm_1p(ctx, a->m, q, L->q_norm, eps);
    k = rmsnorm_1p(ctx, a->m, k, L->k_norm, eps);
    const float theta = local ? c->rope_local_base_freq : c->rope_theta;
    q = rt_rope(ctx, q, a->pos, theta, RT_ROPE_HF);
    k = rt_rope(ctx, k, a->pos, theta, RT_ROPE_HF);
    /* The kernel scales by 1/sqrt(Dh); Gemma by query_pre_attn_scalar^-1/2. */
    if (c->query_pre_attn_scalar != (float)Dh)
        q = rt_scale(ctx, q, sqrtf((float)Dh / c->query_pre_attn_scalar));
    if (a->cache && k && v) cache_append(ctx, a->cache, a->layer, &k, &v);
    rt_tensor *att = rt_attention_window(ctx, q, k, v, a->seg, local ? c->sliding_window : 0);
    rt_tensor *o = rt_lora_forward(ctx, &L->proj[RT_PROJ_O], rt_reshape(ctx, att, 3, xs));
    x = rt_add(ctx, x, rmsnorm_1p(ctx, a->m, o, L->post_attention_layernorm, eps));

    h = rmsnorm_1p(ctx, a->m, x, L->pre_feedforward_layernorm, eps);
    rt_tensor *g = rt_lora_forward(ctx, &L->proj[RT_PROJ_GATE], h);
    rt_tensor *u = rt_lora_forward(ctx, &L->proj[RT_PROJ_UP], h);
    rt_tensor *mlp = rt_lora_forward(ctx, &L->proj[RT_PROJ_DOWN], rt_geglu(ctx, g, u));
    return rt_add(ctx, x, rmsnorm_1p(ctx, a->m, mlp, L->post_feedforward_layernorm, eps));
}

static rt_tensor *block(rt_ctx *ctx, void *user, rt_tensor *x) {
    block_args *a = user;
    const rt_llama_config *c = &a->m->cfg;
    if (c->arch == RT_ARCH_GEMMA3) return block_gemma3(ctx, a, x);
    rt_llama_layer *L = &a->m->layers[a->layer];
    int64_t B = x->shape[0], T = x->shape[1], H = c->num_attention_heads,
            Hkv = c->num_key_value_heads, Dh = c->hidden_size / H;
    int64_t qs[4] = {B, T, H, Dh}, ks[4] = {B, T, Hkv, Dh}, xs[3] = {B, T, H * Dh};

    rt_tensor *h = rt_rmsnorm(ctx, x, L->input_layernorm, c->rms_norm_eps);
    rt_tensor *q = rt_reshape(ctx, rt_lora_forward(ctx, &L->proj[RT_PROJ_Q], h), 4, qs);
    rt_tensor *k = rt_reshape(ctx, rt_lora_forward(ctx, &L->proj[RT_PROJ_K], h), 4, ks);
    rt_tensor *v = rt_reshape(ctx, rt_lora_forward(ctx, &L->proj[RT_PROJ_V], h), 4, ks);
    q = rt_rope_qk(ctx, q, k, a->pos, c->rope_theta, RT_ROPE_HF, &k);
    if (a->cache && k && v) cache_append(ctx, a->cache, a->layer, &k, &v);
    rt_tensor *att = rt_reshape(ctx, rt_attention(ctx, q, k, v, a->seg), 3, xs);
    h = rt_add_rmsnorm(ctx, x, rt_lora_forward(ctx, &L->proj[RT_PROJ_O], att),
                       L->post_attention_layernorm, c->rms_norm_eps, &x);
    rt_tensor *g = rt_lora_forward(ctx, &L->proj[RT_PROJ_GATE], h);
    rt_tensor *u = rt_lora_forward(ctx, &L->proj[RT_PROJ_UP], h);
    return rt_add(ctx, x, rt_lora_forward(ctx, &L->proj[RT_PROJ_DOWN], rt_swiglu(ctx, g, u)));
}

/* The final RMSNorm's output [B, T, D]: the lm_head's input. */
static rt_tensor *hidden(rt_ctx *ctx, rt_llama *m, rt_tensor *ids, rt_tensor *pos,
                         rt_tensor *seg, rt_kv_cache *cache) {
    const bool gemma = m->cfg.arch == RT_ARCH_GEMMA3;
    if (gemma && !m->norm_ones) {
        int64_t n = rt_llama_head_dim(&m->cfg) > m->cfg.hidden_size ? rt_llama_head_dim(&m->cfg) : m->cfg.hidden_size;
        if (!(m->norm_ones = malloc((size_t)n * sizeof *m->norm_ones)))
            return rt_ctx_fail(ctx, RT_EINTERNAL, "out of memory");
        for (int64_t i = 0; i < n; i++) m->norm_ones[i] = 1.0f;
    }
    rt_tensor *x = rt_embedding(ctx, m->embed_tokens, ids);
    if (gemma) x = rt_scale(ctx, x, sqrtf((float)m->cfg.hidden_size)); /* Gemma3TextScaledWordEmbedding */
    for (int li = 0; li < m->cfg.num_hidden_layers && x; li++) {
        block_args a = {m, li, pos, seg, cache};
        if (m->gradient_checkpointing && !ctx->no_grad) {
            /* the args must outlive the forward: backward recomputes */
            block_args *pa = rt_arena_alloc_host(ctx->arena, sizeof *pa);
            if (!pa) return rt_ctx_fail(ctx, RT_EINTERNAL, "%s", rt_error_message());
            *pa = a;
            x = rt_checkpoint(ctx, block, pa, x);
        } else {
            x = block(ctx, &a, x);
        }
    }
    return gemma ? rmsnorm_1p(ctx, m, x, m->norm, m->cfg.rms_norm_eps)
                 : rt_rmsnorm(ctx, x, m->norm, m->cfg.rms_norm_eps);
}

static rt_tensor *forward(rt_ctx *ctx, rt_llama *m, rt_tensor *ids, rt_tensor *pos,
                          rt_tensor *seg, rt_kv_cache *cache) {
    return rt_linear(ctx, hidden(ctx, m, ids, pos, seg, cache), m->lm_head, NULL);
}

rt_tensor *rt_llama_loss(rt_ctx *ctx, rt_llama *m, rt_tensor *ids, rt_tensor *pos,
                         rt_tensor *seg, rt_tensor *labels, float denom) {
    return rt_linear_cross_entropy(ctx, hidden(ctx, m, ids, pos, seg, NULL), m->lm_head, labels,
                                   denom);
}

rt_tensor *rt_llama_forward(rt_ctx *ctx, rt_llama *m, rt_tensor *ids, rt_tensor *pos,
                            rt_tensor *seg) {
    return forward(ctx, m, ids, pos, seg, NULL);
}

/* ---- generation ----------------------------------------------------------------- */

rt_status rt_kv_cache_init(rt_kv_cache *c, const rt_llama *m, int max_len) {
    memset(c, 0, sizeof *c);
    int L = m->cfg.num_hidden_layers;
    int64_t shape[4] = {1, max_len, m->cfg.num_key_value_heads, rt_llama_head_dim(&m->cfg)};
    c->max_len = max_len;
    c->n_layers = L;
    c->k = calloc((size_t)L, sizeof *c->k);
    c->v = calloc((size_t)L, sizeof *c->v);
    if (!c->k || !c->v) return rt_errorf(RT_EINTERNAL, "out of memory for the KV cache");
    for (int i = 0; i < L; i++) {
        c->k[i] = rt_tensor_new(m->opts.device, RT_F32, 4, shape);
        c->v[i] = rt_tensor_new(m->opts.device, RT_F32, 4, shape);
        if (!c->k[i] || !c->v[i]) return RT_EINTERNAL;
    }
    return RT_OK;
}

void rt_kv_cache_free(rt_kv_cache *c) {
    for (int i = 0; i < c->n_layers; i++) {
        if (c->k) rt_tensor_free(c->k[i]);
        if (c->v) rt_tensor_free(c->v[i]);
    }
    free(c->k);
    free(c->v);
    memset(c, 0, sizeof *c);
}

rt_status rt_llama_decode(rt_ctx *ctx, rt_llama *m, rt_kv_cache *c, const int32_t *ids, int n,
                          float *logits_out) {
    if (c->len + n > c->max_len)
        return rt_errorf(RT_EINPUT, "generation: %d tokens exceed the context of %d", c->len + n,
                         c->max_len);
    rt_arena_mark mark = rt_arena_get_mark(ctx->arena);
    int32_t *posv = malloc((size_t)n * sizeof *posv);
    if (!posv) return rt_errorf(RT_EINTERNAL, "out of memory");
    for (int i = 0; i < n; i++) posv[i] = c->len + i;
    int64_t shape[2] = {1, n};
    rt_tensor *tid = rt_from_i32(ctx, ids, 2, shape), *tpos = rt_from_i32(ctx, posv, 2, shape);
    free(posv);
    rt_tensor *logits = forward(ctx, m, tid, tpos, NULL, c);
    if (!logits) return ctx->status ? ctx->status : RT_EINTERNAL;
    int64_t V = m->cfg.vocab_size;
    ctx->k->download(logits_out, (float *)logits->data + (int64_t)(n - 1) * V, (size_t)V * sizeof(float));
    c->len += n;
    rt_arena_release(ctx->arena, mark);
    return RT_OK;
}
