/* retort — a fully trainable model made from a loaded one: full fine-tuning
 * of a pretrained model, and a distillation student initialised from a
 * subset of its teacher's layers (llama.h, rt_llama_new_from). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/model/llama.h"

/* dst (a parameter, device memory) <- host. */
static void put(const rt_tensor *dst, const float *host) {
    rt_kernels_for(dst->device)->upload(dst->data, host, (size_t)rt_numel(dst) * sizeof *host);
}

/* A dense f32 tensor (norm, embedding, bias) of src -> dst. */
static rt_status copy_dense(const rt_tensor *src, const rt_tensor *dst, float *buf) {
    if (src->dtype != RT_F32 || rt_numel(src) != rt_numel(dst))
        return rt_errorf(RT_EINTERNAL, "rt_llama_new_from: %s is %s with %lld elements, expected f32 with %lld",
                         dst->name, rt_dtype_name(src->dtype), (long long)rt_numel(src), (long long)rt_numel(dst));
    rt_kernels_for(src->device)->download(buf, src->data, rt_nbytes(src));
    put(dst, buf);
    return RT_OK;
}

/* Indices of the n <= I largest scores of the I MLP neurons, ascending;
 * taken: I zeroed bytes of scratch. */
static void top_neurons(const float *score, int I, int n, char *taken, int *keep) {
    for (int k = 0; k < n; k++) { /* O(n I): run once per layer at setup */
        int best = -1;
        for (int j = 0; j < I; j++)
            if (!taken[j] && (best < 0 || score[j] > score[best])) best = j;
        if (best < 0) break; /* n > I: every neuron is kept */
        taken[best] = 1;
    }
    for (int j = 0, k = 0; j < I; j++)
        if (taken[j]) keep[k++] = j;
}

static double row_norm(const float *w, int64_t n, int64_t stride) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)w[i * stride] * w[i * stride];
    return sqrt(s);
}

/* The MLP of src layer S into dst layer L, keeping dst's intermediate size
 * (the neurons with the largest magnitude score when it is smaller). */
static rt_status copy_mlp(const rt_llama_layer *S, const rt_llama_layer *L, int64_t D, int64_t I, int64_t Id,
                          float *gate, float *up, float *down, float *out) {
    RT_TRY(rt_lora_merged_weight(&S->proj[RT_PROJ_GATE], gate)); /* [I, D] */
    RT_TRY(rt_lora_merged_weight(&S->proj[RT_PROJ_UP], up));     /* [I, D] */
    RT_TRY(rt_lora_merged_weight(&S->proj[RT_PROJ_DOWN], down)); /* [D, I] */
    if (Id == I) {
        put(L->proj[RT_PROJ_GATE].weight, gate);
        put(L->proj[RT_PROJ_UP].weight, up);
        put(L->proj[RT_PROJ_DOWN].weight, down);
        return RT_OK;
    }
    float *score = malloc((size_t)I * sizeof *score);
    int *keep = malloc((size_t)Id * sizeof *keep);
    char *taken = calloc((size_t)I, 1);
    if (!score || !keep || !taken) {
        free(score);
        free(keep);
        free(taken);
        return rt_errorf(RT_EINTERNAL, "out of memory");
    }
    for (int64_t j = 0; j < I; j++)
        score[j] = (float)(row_norm(gate + j * D, D, 1) * row_norm(up + j * D, D, 1) * row_norm(down + j, D, I));
    top_neurons(score, (int)I, (int)Id, taken, keep);
    free(taken);
    for (int64_t k = 0; k < Id; k++) memcpy(out + k * D, gate + (int64_t)keep[k] * D, (size_t)D * sizeof *out);
    put(L->proj[RT_PROJ_GATE].weight, out);
    for (int64_t k = 0; k < Id; k++) memcpy(out + k * D, up + (int64_t)keep[k] * D, (size_t)D * sizeof *out);
    put(L->proj[RT_PROJ_UP].weight, out);
    for (int64_t d = 0; d < D; d++)
        for (int64_t k = 0; k < Id; k++) out[d * Id + k] = down[d * I + keep[k]];
    put(L->proj[RT_PROJ_DOWN].weight, out);
    free(score);
    free(keep);
    return RT_OK;
}

static rt_status copy_layer(const rt_llama *src, int si, rt_llama *m, int li, float **buf) {
    const rt_llama_layer *S = &src->layers[si];
    rt_llama_layer *L = &m->layers[li];
    RT_TRY(copy_dense(S->input_layernorm, L->input_layernorm, buf[0]));
    RT_TRY(copy_dense(S->post_attention_layernorm, L->post_attention_layernorm, buf[0]));
    if (L->q_norm) { /* Gemma 3 */
        RT_TRY(copy_dense(S->q_norm, L->q_norm, buf[0]));
        RT_TRY(copy_dense(S->k_norm, L->k_norm, buf[0]));
        RT_TRY(copy_dense(S->pre_feedforward_layernorm, L->pre_feedforward_layernorm, buf[0]));
        RT_TRY(copy_dense(S->post_feedforward_layernorm, L->post_feedforward_layernorm, buf[0]));
    }
    for (int p = RT_PROJ_Q; p <= RT_PROJ_O; p++) {
        RT_TRY(rt_lora_merged_weight(&S->proj[p], buf[0]));
        put(L->proj[p].weight, buf[0]);
        if (L->proj[p].bias) RT_TRY(copy_dense(S->proj[p].bias, L->proj[p].bias, buf[0]));
    }
    return copy_mlp(S, L, src->cfg.hidden_size, src->cfg.intermediate_size, m->cfg.intermediate_size,
                    buf[0], buf[1], buf[2], buf[3]);
}

rt_status rt_llama_new_from(const rt_llama *src, const int *layers, int n_layers, int intermediate_size,
                            const rt_llama_opts *opts, rt_llama **out) {
    *out = NULL;
    const rt_llama_config *sc = &src->cfg;
    if (!layers) n_layers = sc->num_hidden_layers;
    if (n_layers < 1) return rt_errorf(RT_EINPUT, "student_layers: needs at least one layer");
    for (int i = 0; layers && i < n_layers; i++)
        if (layers[i] < 0 || layers[i] >= sc->num_hidden_layers)
            return rt_errorf(RT_EINPUT, "student_layers: layer %d is out of range; the model has layers 0..%d",
                             layers[i], sc->num_hidden_layers - 1);
    if (intermediate_size > sc->intermediate_size)
        return rt_errorf(RT_EINPUT, "student_config.intermediate_size: %d is larger than the teacher's %d; "
                         "a student initialised from the teacher's layers can only keep fewer MLP neurons",
                         intermediate_size, sc->intermediate_size);
    rt_llama_config cfg = *sc;
    cfg.num_hidden_layers = n_layers;
    if (intermediate_size > 0) cfg.intermediate_size = intermediate_size;
    rt_llama *m;
    RT_TRY(rt_llama_alloc_full(&cfg, opts, &m));
    /* host staging: the largest tensor, and the three MLP matrices + one output */
    int64_t D = sc->hidden_size, emb = (int64_t)sc->vocab_size * D, mlp = (int64_t)sc->intermediate_size * D;
    int64_t big = emb > D * D ? emb : D * D;
    float *buf[4] = {malloc((size_t)(big > mlp ? big : mlp) * sizeof(float)), malloc((size_t)mlp * sizeof(float)),
                     malloc((size_t)mlp * sizeof(float)), malloc((size_t)mlp * sizeof(float))};
    rt_status s = buf[0] && buf[1] && buf[2] && buf[3] ? RT_OK : rt_errorf(RT_EINTERNAL, "out of memory");
    if (s == RT_OK) s = copy_dense(src->embed_tokens, m->embed_tokens, buf[0]);
    if (s == RT_OK && !cfg.tie_word_embeddings) s = copy_dense(src->lm_head, m->lm_head, buf[0]);
    if (s == RT_OK) s = copy_dense(src->norm, m->norm, buf[0]);
    for (int li = 0; s == RT_OK && li < n_layers; li++) s = copy_layer(src, layers ? layers[li] : li, m, li, buf);
    for (int i = 0; i < 4; i++) free(buf[i]);
    if (s != RT_OK) {
        rt_llama_free(m);
        return s;
    }
    *out = m;
    return RT_OK;
}
