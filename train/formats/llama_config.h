/* retort — Llama-family model configuration (Hugging Face config.json).
 *
 * Field names and defaults follow transformers' LlamaConfig / MistralConfig /
 * Qwen2Config (configuration_llama.py etc.). retort implements one
 * architecture: pre-norm decoder, RMSNorm, SwiGLU MLP (hidden_act "silu"),
 * rotate-half RoPE with base rope_theta and no scaling, grouped-query
 * attention, optional q/k/v biases (Qwen2). Mistral and Qwen2 checkpoints are
 * that architecture when sliding-window attention is off.
 */
#ifndef RT_LLAMA_CONFIG_H
#define RT_LLAMA_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int hidden_size;             /* D */
    int intermediate_size;       /* F (MLP width) */
    int num_hidden_layers;       /* L */
    int num_attention_heads;     /* H; head_dim = D / H */
    int num_key_value_heads;     /* Hkv; H % Hkv == 0 */
    int vocab_size;              /* V */
    int max_position_embeddings; /* longest sequence the model was trained for */
    int bos_token_id;            /* -1 when config.json has null */
    int eos_token_id;            /* the first one when config.json lists several; -1 if null */
    float rms_norm_eps;
    float rope_theta;            /* RoPE base */
    bool tie_word_embeddings;    /* lm_head shares model.embed_tokens.weight */
    bool attention_bias;         /* q/k/v_proj carry biases */
    char torch_dtype[16];        /* "float32", "bfloat16", "float16" (informative) */
} rt_llama_config;

/* Reads config.json. model_type (or, without it, architectures[0]) must be
 * llama / LlamaForCausalLM, mistral / MistralForCausalLM (sliding_window
 * null or >= max_position_embeddings) or qwen2 / Qwen2ForCausalLM
 * (use_sliding_window false; attention_bias always true, as transformers). Required:
 * hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
 * vocab_size. Defaults as transformers: num_key_value_heads =
 * num_attention_heads, rms_norm_eps 1e-6, rope_theta 10000 (also read from
 * rope_parameters.rope_theta), max_position_embeddings 2048 (mistral 131072,
 * qwen2 32768), bos 1, eos 2, tie_word_embeddings false, torch_dtype (or
 * dtype) "float32". Errors (RT_EINPUT, naming the file and the key):
 * unreadable file, invalid JSON, a missing or mistyped required key, an
 * unsupported architecture, rope_scaling other than null / rope_type
 * "default", hidden_act other than silu, head_dim != hidden_size /
 * num_attention_heads, inconsistent sizes. *cfg is written only on success. */
rt_status rt_llama_config_load(const char *config_json_path, rt_llama_config *cfg);

/* Writes cfg as a transformers LlamaConfig config.json (architectures
 * ["LlamaForCausalLM"], model_type "llama", hidden_act "silu", every field
 * above, rope_scaling null), atomically via "<path>.tmp" + rename.
 * Errors: RT_EINPUT if the path can't be written, RT_EINTERNAL on OOM. */
rt_status rt_llama_config_save(const rt_llama_config *cfg, const char *config_json_path);

/* Checks the sizes are usable (all positive, D % H == 0, head_dim even,
 * H % Hkv == 0). `what` names the source in the message (a path). */
rt_status rt_llama_config_check(const rt_llama_config *cfg, const char *what);

/* The seven projections of a Llama layer, in HF's state-dict naming (the
 * model owns the modules; their names and shapes are this format's). */
typedef enum {
    RT_PROJ_Q, RT_PROJ_K, RT_PROJ_V, RT_PROJ_O, RT_PROJ_GATE, RT_PROJ_UP, RT_PROJ_DOWN,
    RT_PROJ_COUNT
} rt_proj;

/* "q_proj", ... and the HF module path "self_attn.q_proj", "mlp.gate_proj". */
const char *rt_proj_name(rt_proj p);
const char *rt_proj_path(rt_proj p);
/* Parses a PEFT target_modules entry; -1 if unknown. */
int rt_proj_parse(const char *name);
/* [out, in] of projection p's weight under config c. */
void rt_proj_shape(const rt_llama_config *c, rt_proj p, int64_t shape[2]);

#ifdef __cplusplus
}
#endif
#endif
