/* retort — Llama-family models from GGUF files (see gguf_model.h). */
#include "train/formats/gguf_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool rt_is_gguf(const char *path) {
    size_t n = strlen(path);
    return n >= 5 && strcmp(path + n - 5, ".gguf") == 0;
}

/* GGUF suffix <-> HF suffix of the per-layer tensors, common to both
 * architectures, then the norms of each (llama.cpp's tensor map,
 * gguf-py/gguf/tensor_mapping.py: for Gemma 2/3, ffn_norm is the
 * pre-feedforward norm and attn_post_norm / ffn_post_norm the sandwich
 * norms). */
typedef struct { const char *gguf, *hf; } g_name;
static const g_name g_layer_names[] = {
    {"attn_q.weight", "self_attn.q_proj.weight"},     {"attn_k.weight", "self_attn.k_proj.weight"},
    {"attn_v.weight", "self_attn.v_proj.weight"},     {"attn_output.weight", "self_attn.o_proj.weight"},
    {"attn_q.bias", "self_attn.q_proj.bias"},         {"attn_k.bias", "self_attn.k_proj.bias"},
    {"attn_v.bias", "self_attn.v_proj.bias"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"},      {"ffn_up.weight", "mlp.up_proj.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight"},      {NULL, NULL},
};
static const g_name g_llama_norms[] = {
    {"attn_norm.weight", "input_layernorm.weight"},
    {"ffn_norm.weight", "post_attention_layernorm.weight"}, {NULL, NULL},
};
static const g_name g_gemma3_norms[] = {
    {"attn_norm.weight", "input_layernorm.weight"},
    {"post_attention_norm.weight", "post_attention_layernorm.weight"},
    {"ffn_norm.weight", "pre_feedforward_layernorm.weight"},
    {"post_ffw_norm.weight", "post_feedforward_layernorm.weight"},
    {"attn_q_norm.weight", "self_attn.q_norm.weight"},
    {"attn_k_norm.weight", "self_attn.k_norm.weight"}, {NULL, NULL},
};
static const g_name g_top_names[] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"}, {NULL, NULL},
};

static const g_name *g_find(const g_name *t, const char *name, bool to_hf) {
    for (; t->gguf; t++)
        if (!strcmp(name, to_hf ? t->gguf : t->hf)) return t;
    return NULL;
}

/* Maps a tensor name between the two namings (to_hf: GGUF -> HF) into buf;
 * false if it has no counterpart. */
static bool g_map_name(const char *name, char *buf, size_t cap, bool to_hf, rt_arch arch) {
    const g_name *e = g_find(g_top_names, name, to_hf);
    if (e) {
        snprintf(buf, cap, "%s", to_hf ? e->hf : e->gguf);
        return true;
    }
    int layer, n = 0;
    if (sscanf(name, to_hf ? "blk.%d.%n" : "model.layers.%d.%n", &layer, &n) != 1 || n == 0 || layer < 0)
        return false;
    e = g_find(g_layer_names, name + n, to_hf);
    if (!e) e = g_find(arch == RT_ARCH_GEMMA3 ? g_gemma3_norms : g_llama_norms, name + n, to_hf);
    if (!e) return false;
    snprintf(buf, cap, to_hf ? "model.layers.%d.%s" : "blk.%d.%s", layer, to_hf ? e->hf : e->gguf);
    return true;
}

bool rt_gguf_name_from_hf(const char *hf, char *buf, size_t cap, rt_arch arch) {
    return g_map_name(hf, buf, cap, false, arch);
}

bool rt_gguf_is_shifted_norm(const char *hf, rt_arch arch) {
    size_t n = strlen(hf);
    return arch == RT_ARCH_GEMMA3 && n >= 11 && !strcmp(hf + n - 11, "norm.weight");
}

void rt_gguf_permute_rows(float *dst, const float *src, int n_heads, int head_dim, int64_t cols,
                          bool to_gguf) {
    const int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < half; i++)
            for (int j = 0; j < 2; j++) {
                const int64_t hf = (int64_t)h * head_dim + j * half + i;
                const int64_t gg = (int64_t)h * head_dim + 2 * i + j;
                memcpy(dst + (to_gguf ? gg : hf) * cols, src + (to_gguf ? hf : gg) * cols,
                       (size_t)cols * sizeof *dst);
            }
}

static rt_status g_int_key(const rt_gguf *g, const char *arch, const char *key, bool req,
                           int64_t lo, int64_t hi, int *out) {
    char k[160];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    int64_t v = *out;
    RT_TRY(rt_gguf_get_int(g, k, req, &v));
    if (v < lo || v > hi)
        return rt_errorf(RT_EINPUT, "%s: %s = %lld is out of range [%lld, %lld]", rt_gguf_path(g),
                         k, (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return RT_OK;
}

rt_status rt_gguf_llama_config(const rt_gguf *g, rt_llama_config *cfg, bool *permuted) {
    const char *path = rt_gguf_path(g), *a;
    size_t alen;
    RT_TRY(rt_gguf_get_str(g, "general.architecture", true, &a, &alen));
    char arch[32];
    if (alen >= sizeof arch || !((alen == 5 && !memcmp(a, "llama", 5)) || (alen == 5 && !memcmp(a, "qwen2", 5)) ||
                                 (alen == 6 && !memcmp(a, "gemma3", 6))))
        return rt_errorf(RT_EINPUT, "%s: general.architecture '%.*s' is not supported (llama, qwen2, gemma3)",
                         path, (int)(alen < 64 ? alen : 64), a);
    memcpy(arch, a, alen);
    arch[alen] = 0;
    const bool qwen = !strcmp(arch, "qwen2"), gemma = !strcmp(arch, "gemma3");
    rt_llama_config c = {.rope_theta = 10000.0f, .rms_norm_eps = 1e-5f, .bos_token_id = -1,
                         .eos_token_id = -1, .max_position_embeddings = 2048,
                         .attention_bias = qwen};
    const int BIG = 1 << 30;
    RT_TRY(g_int_key(g, arch, "embedding_length", true, 1, BIG, &c.hidden_size));
    RT_TRY(g_int_key(g, arch, "feed_forward_length", true, 1, BIG, &c.intermediate_size));
    RT_TRY(g_int_key(g, arch, "block_count", true, 1, 1 << 16, &c.num_hidden_layers));
    RT_TRY(g_int_key(g, arch, "attention.head_count", true, 1, 1 << 16, &c.num_attention_heads));
    c.num_key_value_heads = c.num_attention_heads;
    RT_TRY(g_int_key(g, arch, "attention.head_count_kv", false, 1, 1 << 16, &c.num_key_value_heads));
    RT_TRY(g_int_key(g, arch, "context_length", false, 1, BIG, &c.max_position_embeddings));
    const rt_gguf_tensor *emb = rt_gguf_find_tensor(g, "token_embd.weight");
    if (!emb) return rt_errorf(RT_EINPUT, "%s: missing tensor token_embd.weight", path);
    c.vocab_size = emb->ne[1] < BIG ? (int)emb->ne[1] : 0;
    RT_TRY(g_int_key(g, arch, "vocab_size", false, 1, BIG, &c.vocab_size));
    char k[160];
    double f;
    snprintf(k, sizeof k, "%s.attention.layer_norm_rms_epsilon", arch);
    f = c.rms_norm_eps;
    RT_TRY(rt_gguf_get_float(g, k, true, &f));
    c.rms_norm_eps = (float)f;
    snprintf(k, sizeof k, "%s.rope.freq_base", arch);
    f = c.rope_theta;
    RT_TRY(rt_gguf_get_float(g, k, false, &f));
    c.rope_theta = (float)f;
    int head_dim = c.hidden_size / c.num_attention_heads;
    if (gemma) {
        /* llama.cpp's gemma3 hparams: key_length is the head size, every
         * 6th layer global, local layers' RoPE base 10000 (llama-model.cpp,
         * LLM_ARCH_GEMMA3: set_swa_pattern(6), rope_freq_base_train_swa),
         * attention scale 1/sqrt(key_length) (the 27B's differs: refused). */
        RT_TRY(g_int_key(g, arch, "attention.key_length", true, 2, 1 << 16, &head_dim));
        RT_TRY(g_int_key(g, arch, "attention.sliding_window", true, 1, BIG, &c.sliding_window));
        c.arch = RT_ARCH_GEMMA3;
        c.head_dim = head_dim;
        c.sliding_window_pattern = 6;
        c.rope_local_base_freq = 10000.0f;
        c.query_pre_attn_scalar = (float)head_dim;
        if (c.num_hidden_layers == 62)
            return rt_errorf(RT_EINPUT, "%s: Gemma 3 27B scales attention by hidden/heads, not supported", path);
        snprintf(k, sizeof k, "%s.final_logit_softcapping", arch);
        f = 0;
        RT_TRY(rt_gguf_get_float(g, k, false, &f));
        if (f != 0)
            return rt_errorf(RT_EINPUT, "%s: %s = %g is not supported", path, k, f);
    }
    static const char *const dims[] = {"rope.dimension_count", "attention.key_length",
                                       "attention.value_length"};
    for (int i = 0; i < 3; i++) {
        int d = head_dim;
        RT_TRY(g_int_key(g, arch, dims[i], false, 0, BIG, &d));
        if (d != head_dim)
            return rt_errorf(RT_EINPUT, "%s: %s.%s = %d, but retort needs head_dim %d "
                             "(embedding_length / head_count, or key_length)", path, arch, dims[i], d, head_dim);
    }
    const char *st;
    size_t stl = 0;
    snprintf(k, sizeof k, "%s.rope.scaling.type", arch);
    RT_TRY(rt_gguf_get_str(g, k, false, &st, &stl));
    if (stl && !(stl == 4 && !memcmp(st, "none", 4)))
        return rt_errorf(RT_EINPUT, "%s: %s '%.*s' is not supported (RoPE without scaling only)",
                         path, k, (int)(stl < 32 ? stl : 32), st);
    if (rt_gguf_find_tensor(g, "rope_freqs.weight"))
        return rt_errorf(RT_EINPUT, "%s: rope_freqs.weight (Llama 3 RoPE scaling) is not supported", path);
    int64_t id = -1;
    RT_TRY(rt_gguf_get_int(g, "tokenizer.ggml.bos_token_id", false, &id));
    c.bos_token_id = id >= 0 && id < c.vocab_size ? (int)id : -1;
    id = -1;
    RT_TRY(rt_gguf_get_int(g, "tokenizer.ggml.eos_token_id", false, &id));
    c.eos_token_id = id >= 0 && id < c.vocab_size ? (int)id : -1;
    c.tie_word_embeddings = rt_gguf_find_tensor(g, "output.weight") == NULL;
    snprintf(c.torch_dtype, sizeof c.torch_dtype, "float32");
    RT_TRY(rt_llama_config_check(&c, path));
    *cfg = c;
    /* convert_hf_to_gguf.py permutes q/k for LlamaModel only; Gemma 3 keeps
     * HF's rotate-half order (llama.cpp runs it with NEOX RoPE). */
    *permuted = !qwen && !gemma;
    return RT_OK;
}

/* Dequantizes one tensor into the set under its HF name. */
static rt_status g_add(rt_weights *w, const rt_gguf *g, const rt_gguf_tensor *t,
                       const rt_llama_config *c, bool permuted) {
    char hf[256];
    if (!g_map_name(t->name, hf, sizeof hf, true, c->arch))
        return rt_errorf(RT_EINPUT, "%s: tensor %s has no Llama/HF counterpart (unsupported)",
                         rt_gguf_path(g), t->name);
    const int64_t n = rt_gguf_tensor_numel(t);
    float *f = malloc(n ? (size_t)n * sizeof *f : 1);
    if (!f) return rt_errorf(RT_EINTERNAL, "%s: out of memory", rt_gguf_path(g));
    rt_status s = rt_ggml_dequantize(t->type, t->data, f, n);
    if (s) { free(f); return rt_errorf(RT_EINPUT, "%s: tensor %s: %s", rt_gguf_path(g), t->name, rt_error_message()); }
    /* Gemma's converter stores norm weights w + 1 (Gemma2Model.modify_tensors
     * adds 1; transformers' Gemma2TensorProcessor subtracts it on load); the
     * weight set holds HF's w. */
    if (rt_gguf_is_shifted_norm(hf, c->arch))
        for (int64_t i = 0; i < n; i++) f[i] -= 1.0f;
    const bool q = strstr(hf, "q_proj") != NULL, k = strstr(hf, "k_proj") != NULL;
    if (permuted && (q || k)) {
        const int heads = q ? c->num_attention_heads : c->num_key_value_heads;
        const int hd = rt_llama_head_dim(c);
        const int64_t rows = t->n_dims == 1 ? t->ne[0] : t->ne[1], cols = t->n_dims == 1 ? 1 : t->ne[0];
        if (rows != (int64_t)heads * hd) {
            free(f);
            return rt_errorf(RT_EINPUT, "%s: tensor %s has %lld rows, expected %d heads x %d",
                             rt_gguf_path(g), t->name, (long long)rows, heads, hd);
        }
        float *p = malloc((size_t)n * sizeof *p);
        if (!p) { free(f); return rt_errorf(RT_EINTERNAL, "%s: out of memory", rt_gguf_path(g)); }
        rt_gguf_permute_rows(p, f, heads, hd, cols, false);
        free(f);
        f = p;
    }
    int64_t shape[RT_GGUF_MAX_DIMS];
    for (int d = 0; d < t->n_dims; d++) shape[d] = t->ne[t->n_dims - 1 - d];
    return rt_weights_add(w, hf, RT_ST_F32, t->n_dims, shape, f, true);
}

rt_status rt_gguf_weights_open(const char *path, rt_weights **out, rt_llama_config *cfg) {
    *out = NULL;
    rt_gguf *g;
    RT_TRY(rt_gguf_open(path, &g));
    rt_llama_config c;
    bool permuted;
    rt_weights *w = NULL;
    rt_status s = rt_gguf_llama_config(g, &c, &permuted);
    if (!s) s = rt_weights_new(path, &w);
    for (size_t i = 0; !s && i < rt_gguf_tensor_count(g); i++)
        s = g_add(w, g, rt_gguf_tensor_at(g, i), &c, permuted);
    if (!s) s = rt_weights_check_llama(w, &c);
    rt_gguf_close(g);
    if (s) { rt_weights_close(w); return s; }
    *cfg = c;
    *out = w;
    return RT_OK;
}
