/* retort — NF4 checkpoints in bitsandbytes' serialization, and LoRA merges.
 *
 * On-disk layout (what transformers writes for a model loaded with
 * BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4") and
 * saved with save_pretrained: bitsandbytes nn.Linear4bit._save_to_state_dict
 * + QuantState.as_dict(packed=True); loaded back by QuantState.from_dict).
 * For each quantized projection weight X.weight ([out, in], n = out * in
 * elements, packed as kernels/nf4.h describes), model.safetensors holds
 *   X.weight                               U8  [ceil(n/2), 1]  packed codes
 *   X.weight.absmax                        U8  [n_blocks]      (double quant)
 *                                          F32 [n_blocks]      (otherwise)
 *   X.weight.quant_map                     F32 [16]            the NF4 table
 *   X.weight.nested_absmax                 F32 [ceil(n_blocks/256)]  (double quant)
 *   X.weight.nested_quant_map              F32 [256]           (double quant)
 *   X.weight.quant_state.bitsandbytes__nf4 U8  [len]  UTF-8 JSON (json.dumps):
 *     {"quant_type": "nf4", "blocksize": 64, "dtype": "float32",
 *      "shape": [out, in], "nested_blocksize": 256, "nested_dtype": "float32",
 *      "nested_offset": <float>}          (nested_* only with double quant)
 * "dtype" is the dtype the weight had before quantization (the dtype
 * dequantize_4bit returns). Only the 7 projections of every layer are
 * quantized; embeddings, norms, biases and lm_head keep their stored dtype,
 * as transformers leaves them. config.json gains "quantization_config", the
 * BitsAndBytesConfig.to_dict() transformers writes (quant_method
 * "bitsandbytes", load_in_4bit true, bnb_4bit_quant_type "nf4",
 * bnb_4bit_use_double_quant, bnb_4bit_compute_dtype, bnb_4bit_quant_storage
 * "uint8", ...).
 */
#ifndef RT_NF4_IO_H
#define RT_NF4_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/tensor.h"
#include "kernels/error.h"
#include "kernels/nf4.h"
#include "train/formats/weights.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What rt_nf4_write_hf_stats did, for `retort quantize` to report. */
typedef struct {
    int n_quantized;         /* projection weights quantized */
    int64_t quantized_params;/* their elements */
    size_t quantized_bytes;  /* their exact storage (rt_nf4_storage_bytes, summed) */
    double nominal_bits;     /* rt_nf4_bits_per_param: the QLoRA paper's figure */
    size_t bytes_before;     /* tensor data of the input model, as stored */
    size_t bytes_after;      /* tensor data written to model.safetensors */
} rt_nf4_stats;

/* Quantizes a model to NF4 and writes it as a Hugging Face directory in
 * bitsandbytes' layout (header comment): out_dir/config.json (the source's
 * config + quantization_config) and out_dir/model.safetensors. model_path
 * is anything rt_weights_open takes (HF directory, .safetensors, llama2.c
 * .bin; a .bin's q/k rows are already in HF order there). blocksize: power
 * of two in 32..4096 (QLoRA: 64); double_quant: quantize the scales too
 * (QLoRA default). Projections stored as BF16/F16 are widened to f32 before
 * quantizing (exact; bitsandbytes' kernel computes in fp32 too) and keep
 * their dtype as the quant state's "dtype"; F64 ones are rounded to f32 and
 * recorded as "float32".
 * When model_path is a directory, its tokenizer files (tokenizer.json,
 * tokenizer_config.json, special_tokens_map.json, tokenizer.model) and
 * generation_config.json are copied; a .bin's tokenizer is the caller's
 * job (rt_tokenizer_save_hf). out_dir is created with its parents.
 * Errors: RT_EINPUT for an unreadable/invalid model, a model that is
 * already quantized, a non-finite weight, a bad blocksize or an unwritable
 * out_dir (messages name the path and tensor); RT_EINTERNAL on OOM. */
rt_status rt_nf4_write_hf(const char *model_path, const char *out_dir, int blocksize,
                          bool double_quant);

/* rt_nf4_write_hf that also fills *stats (may be NULL). */
rt_status rt_nf4_write_hf_stats(const char *model_path, const char *out_dir, int blocksize,
                                bool double_quant, rt_nf4_stats *stats);

/* Reads the bitsandbytes NF4 serialization of `weight_name` (e.g.
 * "model.layers.0.self_attn.q_proj.weight") from an open weight set.
 * When `weight_name`.quant_state.bitsandbytes__nf4 is absent (a plain
 * weight) *found = false, *packed = NULL, *st is zeroed, and RT_OK is
 * returned. Otherwise *found = true and, on success, *packed is a malloc'd
 * copy of the ceil(n/2) packed bytes (caller frees) and *st a state whose
 * arrays are malloc'd (caller frees with rt_nf4_state_free). expect_shape
 * is the [out, in] the model needs, or NULL to accept any 2-D shape.
 * Errors (RT_EINPUT, naming the source and the tensor): an fp4 quant state,
 * malformed quant_state JSON, a shape other than expect_shape, a blocksize
 * that is not a power of two in 32..4096, a missing or mis-sized packed,
 * absmax, quant_map, nested_absmax or nested_quant_map tensor, a double
 * quantization that is half present. On error *packed is NULL and *st
 * zeroed. The stored quant_map and nested_quant_map are used as they are
 * (for bitsandbytes files they equal rt_nf4_code and the dynamic map). */
rt_status rt_nf4_from_weights(const rt_weights *w, const char *weight_name,
                              const int64_t expect_shape[2], uint8_t **packed, rt_nf4_state *st,
                              bool *found);

/* The "dtype" recorded in weight_name's quant state (the dtype before
 * quantization): RT_ST_F32 ("float32"), RT_ST_BF16 ("bfloat16") or
 * RT_ST_F16 ("float16"). RT_EINPUT if the quant state is absent, malformed
 * or names another dtype. */
rt_status rt_nf4_weight_dtype(const rt_weights *w, const char *weight_name, rt_st_dtype *dt);

/* For the model loader (train/llama.c load_proj): if `name` is stored as
 * NF4, makes *out a new frozen [shape[0], shape[1]] tensor — RT_NF4 on the
 * CPU holding the checkpoint's own codes and state (t->nf4 malloc'd; free
 * the state with rt_nf4_state_free + free, then rt_tensor_free) when
 * keep_nf4, else the dequantized f32 weight on `dev` — and sets *found.
 * When the weight is plain, *found = false and *out is untouched. With
 * keep_nf4 on another device the codes are uploaded (rt_nf4_tensor_to).
 * Errors: those of rt_nf4_from_weights; RT_EINTERNAL on OOM. */
rt_status rt_nf4_load_tensor(const rt_weights *w, const char *name, const int64_t shape[2],
                             bool keep_nf4, rt_device dev, rt_tensor **out, bool *found);

/* Moves an RT_NF4 tensor built on the CPU (packed codes + its host
 * rt_nf4_state in t->nf4, e.g. quantized there) to `dev`: the packed codes
 * are uploaded and the state stays in host memory, attached to the new
 * tensor; the device kernel derives each block's fp32 scale from it (double
 * quantization included, rt_nf4_absmax) and caches them on the device
 * (kernels/cuda/nf4.cu). *t is replaced by the device tensor and the host
 * codes are freed; a no-op for dev == RT_CPU. On error *t is unchanged.
 * Errors: RT_EINTERNAL on OOM or a device fault during the upload. */
rt_status rt_nf4_tensor_to(rt_tensor **t, rt_device dev);

/* ---- helpers shared by nf4_io.c and train/model/merge.c ------------------ */

/* Copies the tokenizer / generation config files present in model_path (a
 * directory, or the directory of a .safetensors file; nothing for a .bin)
 * into out_dir. A file that is already the destination is skipped. */
rt_status rt_nf4_copy_side_files(const char *model_path, const char *out_dir);

/* 0..6 for "model.layers.N.<rt_proj_path>.weight" exactly (N >= 0, written
 * in decimal) with *layer = N; -1 for any other name. */
int rt_nf4_proj_of(const char *name, int *layer);

#ifdef __cplusplus
}
#endif
#endif
