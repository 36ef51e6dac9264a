/* retort — llama2.c checkpoints (.bin) as a weight set in HF naming. */
#ifndef RT_LLAMA2C_H
#define RT_LLAMA2C_H

#include "train/formats/weights.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reads a llama2.c checkpoint (https://github.com/karpathy/llama2.c, run.c
 * and export.py). Legacy format: 7 int32 (dim, hidden_dim, n_layers,
 * n_heads, n_kv_heads, vocab_size (negative: unshared classifier), seq_len),
 * then fp32 token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3,
 * rms_final, freq_cis_real, freq_cis_imag [, wcls]. Version 1
 * (export.py version1_export): u32 magic 0x616b3432, int32 version 1, the
 * 7 int32, u8 shared_classifier, zeros to 256 bytes, then fp32 rms_att,
 * rms_ffn, rms_final, tok_embeddings, wq, wk, wv, wo, w1, w2, w3 [, wcls].
 * Mapped to HF names (w1 gate, w3 up, w2 down); wq/wk rows are permuted
 * from llama2.c's interleaved RoPE layout to HF's rotate-half layout like
 * transformers' convert_llama_weights_to_hf.py permute(): new row
 * h*Dh + j*Dh/2 + i = old row h*Dh + 2*i + j. Config: rms_norm_eps 1e-5,
 * rope_theta 10000, max_position_embeddings seq_len, tied iff shared,
 * bos 1, eos 2. The file size must match the header exactly; a mismatch
 * is RT_EINPUT naming the file. */
rt_status rt_llama2c_open(const char *path, rt_weights **out, rt_llama_config *cfg);

#ifdef __cplusplus
}
#endif
#endif
