/* retort — Llama-family models in GGUF files (llama.cpp's naming).
 *
 * llama.cpp's convert_hf_to_gguf.py stores a transformers LlamaForCausalLM
 * (or Qwen2ForCausalLM) under these names, each nn.Linear weight [out, in]
 * as ne = {in, out}:
 *   token_embd.weight          model.embed_tokens.weight
 *   output_norm.weight         model.norm.weight
 *   output.weight              lm_head.weight (absent: tied embeddings)
 *   blk.N.attn_norm.weight     model.layers.N.input_layernorm.weight
 *   blk.N.attn_q.weight/.bias  model.layers.N.self_attn.q_proj.weight/.bias
 *   blk.N.attn_k, attn_v       k_proj, v_proj;  blk.N.attn_output  o_proj
 *   blk.N.ffn_norm.weight      model.layers.N.post_attention_layernorm.weight
 *   blk.N.ffn_gate, ffn_up, ffn_down   mlp.gate_proj, up_proj, down_proj
 * For architecture "llama" the converter permutes the rows of q_proj and
 * k_proj (and their biases) from HF's rotate-half RoPE order to ggml's
 * interleaved order (LlamaModel.permute: row h*Dh + 2i + j holds HF row
 * h*Dh + j*Dh/2 + i); retort undoes it on load and redoes it on export.
 * "qwen2" files are stored unpermuted. Config keys (<arch>.*):
 * embedding_length, feed_forward_length, block_count, attention.head_count,
 * attention.head_count_kv (default head_count), attention.layer_norm_rms_epsilon,
 * rope.freq_base (default 10000), context_length, vocab_size (default: rows
 * of token_embd); rope.dimension_count and attention.key_length /
 * value_length, if present, must equal head_dim; rope scaling must be absent
 * or "none". bos/eos ids come from tokenizer.ggml.bos_token_id/eos_token_id.
 * "gemma3" (RT_ARCH_GEMMA3): unpermuted; head_dim from attention.key_length,
 * attention.sliding_window required; the norms are named
 *   blk.N.post_attention_norm  post_attention_layernorm (after attention)
 *   blk.N.ffn_norm             pre_feedforward_layernorm
 *   blk.N.post_ffw_norm        post_feedforward_layernorm
 *   blk.N.attn_q_norm / attn_k_norm   self_attn.q_norm / k_norm
 * and every norm weight is stored as 1 + w (rt_gguf_is_shifted_norm).
 */
#ifndef RT_GGUF_MODEL_H
#define RT_GGUF_MODEL_H

#include <stdbool.h>

#include "train/formats/gguf.h"
#include "train/formats/llama_config.h"
#include "train/formats/weights.h"

/* True if path names a GGUF file (ends in ".gguf"). */
bool rt_is_gguf(const char *path);

/* Reads cfg from an open file's metadata. RT_EINPUT naming the file and key
 * for an unsupported architecture or a missing/mistyped key. */
rt_status rt_gguf_llama_config(const rt_gguf *g, rt_llama_config *cfg, bool *permuted);

/* Opens a GGUF model as an HF-named, HF-layout weight set: every tensor
 * dequantized to F32 (rt_ggml_dequantize) and owned by the set, q/k rows
 * un-permuted for "llama". Tensors that map to no HF name are RT_EINPUT.
 * Memory: 4 bytes per parameter. */
rt_status rt_gguf_weights_open(const char *path, rt_weights **out, rt_llama_config *cfg);

/* Permutes the rows of a [n_heads*head_dim, cols] matrix between HF's
 * rotate-half order and ggml's interleaved order: to_gguf true applies
 * convert_hf_to_gguf.py's permute(), false undoes it. dst != src. */
void rt_gguf_permute_rows(float *dst, const float *src, int n_heads, int head_dim, int64_t cols,
                          bool to_gguf);

/* The GGUF name of an HF tensor name ("model.layers.3.self_attn.q_proj.weight"
 * -> "blk.3.attn_q.weight") into buf under architecture arch (the norms'
 * names differ); false if it has none. */
bool rt_gguf_name_from_hf(const char *hf, char *buf, size_t cap, rt_arch arch);

/* True for an HF tensor whose GGUF copy holds 1 + w instead of w: every
 * "*norm.weight" of a Gemma 3 model (convert_hf_to_gguf.py adds 1). */
bool rt_gguf_is_shifted_norm(const char *hf, rt_arch arch);

#endif
