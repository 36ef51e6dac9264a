/* retort — named weight sets in Hugging Face naming and layout.
 *
 * Whatever the checkpoint format, the model loader sees one set of tensors
 * named and laid out as transformers' LlamaForCausalLM state dict
 * (modeling_llama.py), all [out, in] row-major like nn.Linear.weight:
 *   model.embed_tokens.weight                      [V, D]
 *   model.layers.N.input_layernorm.weight          [D]
 *   model.layers.N.self_attn.q_proj.weight         [H*Dh, D]   (+ .bias [H*Dh] if attention_bias)
 *   model.layers.N.self_attn.k_proj.weight         [Hkv*Dh, D] (+ .bias)
 *   model.layers.N.self_attn.v_proj.weight         [Hkv*Dh, D] (+ .bias)
 *   model.layers.N.self_attn.o_proj.weight         [D, H*Dh]
 *   model.layers.N.post_attention_layernorm.weight [D]
 *   model.layers.N.mlp.gate_proj.weight            [F, D]
 *   model.layers.N.mlp.up_proj.weight              [F, D]
 *   model.layers.N.mlp.down_proj.weight            [D, F]
 *   model.norm.weight                              [D]
 *   lm_head.weight                                 [V, D] (absent when tied)
 * q_proj/k_proj rows are in HF's rotate-half RoPE order (pairs (i, i+Dh/2)
 * of each head rotate together), whatever the source stored.
 * Tensors keep the dtype of the file (F32/BF16/F16...); convert on load.
 */
#ifndef RT_WEIGHTS_H
#define RT_WEIGHTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/error.h"
#include "train/formats/llama_config.h"
#include "train/formats/safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rt_weights rt_weights;

/* Number of tensors; rt_weights_get(i) for i < count, sorted by name. */
size_t rt_weights_count(const rt_weights *w);
const rt_st_tensor *rt_weights_get(const rt_weights *w, size_t i);

/* The tensor with this HF name, or NULL if absent. */
const rt_st_tensor *rt_weights_find(const rt_weights *w, const char *hf_name);

/* Finds `name` and checks its shape (ndim, shape[0..ndim)). On success *out
 * (if out is non-NULL) is the tensor. Errors (RT_EINPUT): "<source>: missing
 * tensor <name>" or "<file>: tensor <name> has shape [a,b], expected [c,d]". */
rt_status rt_weights_expect(const rt_weights *w, const char *name, int ndim,
                            const int64_t *shape, const rt_st_tensor **out);

/* rt_weights_expect for every tensor the config calls for (the list in the
 * header comment, with biases iff attention_bias and lm_head iff untied).
 * Extra tensors are allowed. Also checks they are floating point. */
rt_status rt_weights_check_llama(const rt_weights *w, const rt_llama_config *cfg);

/* RT_EINPUT naming the file and tensor when the file holds a
 * model.layers.N.* tensor with N >= num_hidden_layers (a config that
 * describes fewer layers than the weights hold). Part of
 * rt_weights_check_llama; rt_llama_load runs it too. */
rt_status rt_weights_check_layers(const rt_weights *w, const rt_llama_config *cfg);

/* Where the set came from (directory or file path), for messages. */
const char *rt_weights_source(const rt_weights *w);

/* Frees everything (and unmaps files); NULL is a no-op. */
void rt_weights_close(rt_weights *w);

/* ---- building a set (format readers, merge) ------------------------------ */

/* An empty set; `source` (copied) names it in messages. */
rt_status rt_weights_new(const char *source, rt_weights **out);

/* Adds a tensor (name and shape are copied; nbytes follows from them).
 * `data` must stay valid until rt_weights_close; if `take` is true the set
 * owns it and free()s it at close, or immediately if the add fails. Errors:
 * RT_EINPUT if the name is already present or the shape is bad. */
rt_status rt_weights_add(rt_weights *w, const char *name, rt_st_dtype dtype, int ndim,
                         const int64_t *shape, const void *data, bool take);

/* Adds every tensor of an open safetensors file (zero copy). Takes
 * ownership of `st` in every case: it is closed by rt_weights_close (or at
 * once if it could not be recorded). Errors: RT_EINPUT on a name already
 * present (names the file); the set then holds the tensors added so far. */
rt_status rt_weights_add_file(rt_weights *w, rt_safetensors *st);

/* The safetensors files added with rt_weights_add_file, in the order added
 * (owned by the set). */
size_t rt_weights_file_count(const rt_weights *w);
rt_safetensors *rt_weights_file(const rt_weights *w, size_t i);

/* Hands a read-only mmap region to the set, munmapped at close. */
rt_status rt_weights_keep_map(rt_weights *w, void *addr, size_t len);

#ifdef __cplusplus
}
#endif
#endif
