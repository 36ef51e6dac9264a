/* retort — the Llama-architecture decoder, built from autograd ops (one path
 * for training, evaluation and generation).
 *
 * Covers Llama 2/3, TinyLlama, SmolLM, Mistral (no sliding window) and Qwen2
 * (q/k/v biases): token embedding, per layer RMSNorm -> grouped-query
 * attention with RoPE (HF rotate-half layout: every model is held in HF
 * layout, llama2.c checkpoints are permuted at load) -> residual -> RMSNorm
 * -> SwiGLU MLP -> residual, final RMSNorm, tied or untied output head.
 * Every projection is an rt_lora_linear (train/lora.h).
 */
#ifndef RT_LLAMA_H
#define RT_LLAMA_H

#include "autograd/ops.h"
#include "train/formats/llama_config.h"
#include "train/model/lora.h"

/* rt_proj (the projection names and shapes) is in train/formats/llama_config.h. */

typedef struct {
    rt_device device;
    bool load_in_4bit;       /* frozen projections as NF4 (bitsandbytes layout) */
    int nf4_blocksize;       /* 64 */
    bool double_quant;       /* bnb_4bit_use_double_quant */
    /* LoRA: r == 0 means no adapters. targets: bit (1 << rt_proj) per module. */
    int lora_r;
    float lora_alpha, lora_dropout;
    bool use_rslora;
    unsigned lora_targets;
    uint64_t seed;           /* LoRA A init */
    int64_t pad_multiple;    /* flat parameter buffer padding (ZeRO-1 shards); 0: 64 */
} rt_llama_opts;

typedef struct {
    rt_tensor *input_layernorm, *post_attention_layernorm;  /* [D] */
    /* Gemma 3 only (NULL otherwise): RMSNorm of q and k [head_dim], and the
     * norms before and after the MLP [D] (post_attention_layernorm is then
     * the norm after attention). Norm weights are HF's w; Gemma multiplies
     * by 1 + w. */
    rt_tensor *q_norm, *k_norm, *pre_feedforward_layernorm, *post_feedforward_layernorm;
    rt_lora_linear proj[RT_PROJ_COUNT];
} rt_llama_layer;

typedef struct rt_llama {
    rt_llama_config cfg;
    rt_llama_opts opts;
    rt_tensor *embed_tokens;   /* [V, D] */
    rt_tensor *norm;           /* [D] */
    rt_tensor *lm_head;        /* [V, D]; == embed_tokens when tied */
    rt_llama_layer *layers;    /* [L] */
    rt_params params;          /* trainable parameters (LoRA A/B), flat */
    bool gradient_checkpointing;
    bool full;                 /* every weight in params (rt_llama_new, rt_llama_new_from) */
    float *norm_ones;          /* Gemma: max(D, head_dim) ones for the (1 + w) norms; made by the first forward */
} rt_llama;

/* Loads an HF directory or a llama2.c .bin (train/weights.h), converting
 * weights to f32 on opts->device (NF4 for the projections with
 * load_in_4bit), and creates LoRA adapters as opts says. *out owned by the
 * caller (rt_llama_free). RT_EINPUT for a bad path/file/config. */
rt_status rt_llama_load(const char *path, const rt_llama_opts *opts, rt_llama **out);
void rt_llama_free(rt_llama *m);

/* Adds LoRA adapters to a model loaded without them (declares A and B for
 * every layer's projection in `targets`, bit (1 << rt_proj), finalizes the
 * flat parameter buffer and initializes A/B as PEFT does). */
rt_status rt_llama_add_lora(rt_llama *m, int r, float alpha, float dropout, bool use_rslora,
                            unsigned targets, uint64_t seed);

/* A new model of the given shape with EVERY weight trainable (in
 * m->params, under its HF name), for distilling into a fresh student:
 * matrices and embeddings ~ N(0, init_std^2), norms 1, biases 0 (as HF's
 * LlamaPreTrainedModel._init_weights), from a generator seeded with
 * opts->seed. opts' LoRA fields must be zero. */
rt_status rt_llama_new(const rt_llama_config *cfg, const rt_llama_opts *opts, float init_std,
                       rt_llama **out);

/* The shape of rt_llama_new with every weight 0 (the caller fills
 * m->params); opts' LoRA and 4-bit fields must be zero. */
rt_status rt_llama_alloc_full(const rt_llama_config *cfg, const rt_llama_opts *opts, rt_llama **out);

/* A fully trainable model (every weight in m->params, as rt_llama_new) with
 * src's weights: full fine-tuning of a pretrained model, and a distillation
 * student initialised from its teacher (student_init: teacher_layers, as
 * DistilBERT took every other layer of BERT: Sanh et al. 2019, sec. 3).
 * Embeddings, final norm and output head are copied as they are; layer i of
 * the new model is src's layer layers[i] (n_layers entries, each in
 * [0, src layers), repeats allowed; layers NULL: all of src's, in order).
 * Projections are copied as W + scaling * B A (LoRA merged, NF4
 * dequantized), so the new model computes what src computes on those layers.
 * intermediate_size 0 (or src's) keeps the MLP; a smaller one keeps, in each
 * layer, the intermediate_size SwiGLU neurons j with the largest
 *     ||gate_proj[j,:]|| * ||up_proj[j,:]|| * ||down_proj[:,j]||
 * (weight-magnitude pruning of hidden units, kept in their original order:
 * a kept neuron computes exactly what it did in src, the others are gone).
 * opts: device, seed, pad_multiple; LoRA/4-bit fields must be zero. *out
 * owned by the caller. RT_EINPUT: a layer out of range, n_layers < 1,
 * intermediate_size larger than src's; RT_EINTERNAL: out of memory. */
rt_status rt_llama_new_from(const rt_llama *src, const int *layers, int n_layers, int intermediate_size,
                            const rt_llama_opts *opts, rt_llama **out);

/* True when every weight is trainable (rt_llama_new): the model is saved as
 * a full HF model rather than as an adapter. */
bool rt_llama_is_full(const rt_llama *m);

/* ids, pos i32 [B, T]; seg i32 [B, T] or NULL (sample packing: attention
 * stays within a segment, positions restart per sample) -> logits [B, T, V]. */
rt_tensor *rt_llama_forward(rt_ctx *ctx, rt_llama *m, rt_tensor *ids, rt_tensor *pos,
                            rt_tensor *seg);

/* rt_cross_entropy(rt_llama_forward(...), labels, denom) through
 * rt_linear_cross_entropy: the same loss without the [B, T, V] logits. */
rt_tensor *rt_llama_loss(rt_ctx *ctx, rt_llama *m, rt_tensor *ids, rt_tensor *pos,
                         rt_tensor *seg, rt_tensor *labels, float denom);

/* ---- generation with a KV cache (no-grad, batch 1) ---- */
typedef struct rt_kv_cache {
    int n_layers;
    int max_len, len;          /* capacity and tokens cached */
    rt_tensor **k, **v;        /* per layer [1, max_len, Hkv, Dh], persistent */
} rt_kv_cache;

rt_status rt_kv_cache_init(rt_kv_cache *c, const rt_llama *m, int max_len);
void rt_kv_cache_free(rt_kv_cache *c);
/* Feeds n tokens after the cached ones; returns the logits of the last,
 * [V] f32 copied to host memory `logits_out`. ctx must be in no-grad mode. */
rt_status rt_llama_decode(rt_ctx *ctx, rt_llama *m, rt_kv_cache *c, const int32_t *ids, int n,
                          float *logits_out);

/* Number of frozen and trainable parameters. */
int64_t rt_llama_n_params(const rt_llama *m);

/* ---- saving (train/llama_save.c) ---- */
typedef struct rt_tokenizer rt_tokenizer; /* train/tokenizer.h */

/* Writes m as a Hugging Face model directory `dir` (created with parents if
 * missing): config.json (rt_llama_config_save; torch_dtype float32),
 * model.safetensors with every weight in f32 under its transformers
 * LlamaForCausalLM name (model.embed_tokens.weight, model.layers.N.
 * self_attn.q_proj.weight, ..., model.norm.weight, lm_head.weight unless
 * tie_word_embeddings), and, when tok is not NULL, tokenizer.json +
 * tokenizer_config.json (rt_tokenizer_save_hf). Projections are written as
 * W + scaling * B A (LoRA merged; NF4 weights dequantized), so any model
 * retort holds can be saved; a full model (rt_llama_new) is written as is.
 * Errors: RT_EINPUT when dir or a file cannot be written, RT_EINTERNAL on
 * OOM or NF4 weights held on a GPU. */
rt_status rt_llama_save_hf(const rt_llama *m, const rt_tokenizer *tok, const char *dir);

#endif
