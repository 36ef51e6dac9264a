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

/* The decoder variant. RT_ARCH_LLAMA (0, what a zeroed config means) is the
 * architecture above. RT_ARCH_GEMMA3 is transformers' Gemma3ForCausalLM
 * (model_type "gemma3_text"; Gemma Team 2025, "Gemma 3 Technical Report"):
 * embeddings scaled by sqrt(D), RMSNorm multiplying by (1 + w) (HF stores w;
 * GGUF stores 1 + w, converted at that format's boundary), RMSNorm of q and
 * k over head_dim, a norm after attention and after the MLP as well as before
 * each (sandwich norms), GELU-tanh gated MLP, head_dim independent of D / H,
 * attention scale query_pre_attn_scalar^-0.5, and local layers attending to
 * the last sliding_window keys with RoPE base rope_local_base_freq; every
 * sliding_window_pattern-th layer (i + 1) % pattern == 0 is global
 * (full causal attention, RoPE base rope_theta). */
typedef enum { RT_ARCH_LLAMA = 0, RT_ARCH_GEMMA3 = 1 } rt_arch;

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
    /* RT_ARCH_GEMMA3 only (0 for Llama): */
    rt_arch arch;
    int head_dim;                /* 0: hidden_size / num_attention_heads */
    int sliding_window;          /* keys a local layer's query sees (itself included) */
    int sliding_window_pattern;  /* layer i is global iff (i + 1) % pattern == 0 */
    float rope_local_base_freq;  /* RoPE base of the local layers */
    float query_pre_attn_scalar; /* attention scale = query_pre_attn_scalar^-0.5 */
} rt_llama_config;

/* head_dim, or hidden_size / num_attention_heads when it is 0. */
int rt_llama_head_dim(const rt_llama_config *c);
/* Gemma 3: layer li attends through a sliding window (false for Llama). */
bool rt_llama_layer_is_local(const rt_llama_config *c, int li);

/* Reads config.json. model_type (or, without it, architectures[0]) must be
 * llama / LlamaForCausalLM, gemma3_text / Gemma3ForCausalLM (RT_ARCH_GEMMA3,
 * defaults as transformers' Gemma3TextConfig: head_dim 256,
 * query_pre_attn_scalar 256, sliding_window 4096, layer_types from
 * sliding_window_pattern 6 (an explicit layer_types must follow that
 * pattern), rope_theta 1e6 and rope_local_base_freq 10000 (or
 * rope_parameters.full_attention / .sliding_attention .rope_theta),
 * hidden_activation gelu_pytorch_tanh, no logit soft-capping, bos 2, eos 1,
 * tied embeddings), mistral / MistralForCausalLM (sliding_window
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
 * above, rope_scaling null) or, for RT_ARCH_GEMMA3, a Gemma3TextConfig
 * (Gemma3ForCausalLM, gemma3_text, layer_types, rope_parameters), atomically via "<path>.tmp" + rename.
 * Errors: RT_EINPUT if the path can't be written, RT_EINTERNAL on OOM. */
rt_status rt_llama_config_save(const rt_llama_config *cfg, const char *config_json_path);

/* Checks the sizes are usable (all positive, D % H == 0 unless head_dim is
 * given, head_dim even, H % Hkv == 0; Gemma 3: window and pattern >= 1). `what` names the source in the message (a path). */
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
