/* retort — model files in, HF directories out.
 *
 * rt_weights_open picks the reader from what `path` is (an HF directory, a
 * .safetensors file, a llama2.c .bin) and returns one weight set in HF
 * naming and layout (weights.h). New readers (e.g. GGUF) register here.
 */
#ifndef RT_MODEL_FILE_H
#define RT_MODEL_FILE_H

#include "train/formats/weights.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opens a model. `path` is
 *  - an HF model directory: config.json plus model.safetensors, or plus a
 *    sharded model.safetensors.index.json ({"weight_map": {name: shard}});
 *  - a .safetensors file, with config.json beside it;
 *  - a llama2.c .bin checkpoint (legacy or version 1; see rt_llama2c_open);
 *  - a .gguf file (gguf_model.h: dequantized to F32, HF names and layout).
 * Fills *cfg. safetensors data is mmapped (zero copy). Errors: RT_EINPUT
 * naming the file and the problem; RT_EINTERNAL on OOM. On success *out is
 * the caller's: free with rt_weights_close (tensor pointers die with it). */
rt_status rt_weights_open(const char *path, rt_weights **out, rt_llama_config *cfg);

/* Writes cfg + all tensors as an HF model directory `dir` (created with its
 * parents if missing): config.json (torch_dtype "float32") and
 * model.safetensors with metadata {"format": "pt"}; BF16/F16/F64 tensors are
 * converted to F32, integer tensors are written as they are. Checks the set
 * against cfg first (rt_weights_check_llama). Used by `retort convert`.
 * Errors: RT_EINPUT (bad set, unwritable dir), RT_EINTERNAL (OOM). */
rt_status rt_weights_save_hf(const rt_weights *w, const rt_llama_config *cfg, const char *dir);

/* open(src) + save_hf(dir): the whole of `retort convert llama2c <bin> <dir>`
 * apart from the tokenizer. */
rt_status rt_weights_convert_hf(const char *src, const char *dir);

#ifdef __cplusplus
}
#endif
#endif
