/* retort — writing GGUF for llama.cpp: LoRA adapters and whole models.
 *
 * Adapters follow llama.cpp's convert_lora_to_gguf.py / llama-adapter.cpp:
 * metadata general.architecture (the base's), general.type "adapter",
 * adapter.type "lora", adapter.lora.alpha (f32); per adapted projection two
 * F32 tensors blk.N.<tensor>.weight.lora_a with ne {in, r} (PEFT lora_A
 * [r, in]) and .lora_b with ne {r, out} (lora_B [out, r]). llama.cpp scales
 * B A by alpha / r; for use_rslora (PEFT scale alpha / sqrt(r)) the alpha
 * written is alpha * sqrt(r) so the product is the same. For a "llama"
 * base the rows of q_proj's and k_proj's lora_B get the base converter's
 * RoPE permutation (gguf_model.h), as convert_lora_to_gguf.py does.
 *
 * Models are written as convert_hf_to_gguf.py writes a LlamaForCausalLM:
 * llama.* hyper-parameters, general.file_type, llama.cpp tensor names,
 * q/k permuted, 1-D tensors F32, matrices F16 or Q8_0 (Q8_0 needs rows that
 * are a multiple of 32; others fall back to F16, as llama.cpp's quantizer
 * does), and the tokenizer.* metadata copied from a GGUF base (a model from
 * another format needs a GGUF file to take the tokenizer from).
 */
#ifndef RT_GGUF_EXPORT_H
#define RT_GGUF_EXPORT_H

#include "train/formats/gguf.h"

/* Writes the PEFT adapter in `adapter_dir` (adapter_config.json +
 * adapter_model.safetensors) as a llama.cpp LoRA GGUF at out_path. `base`
 * is the base model (.gguf or HF directory; NULL: the adapter's
 * base_model_name_or_path), read for its architecture and head counts.
 * Errors: RT_EINPUT naming the file for unreadable/mismatched inputs. */
rt_status rt_gguf_export_lora(const char *adapter_dir, const char *base, const char *out_path);

/* Writes model (any form rt_weights_open takes), with adapter_dir (may be
 * NULL) merged into it as `retort merge` does, as a GGUF model file.
 * type: RT_GGML_F16, RT_GGML_Q8_0 or RT_GGML_F32. tokenizer_gguf: the
 * GGUF file whose tokenizer.* metadata is copied, or a llama2.c
 * tokenizer.bin written as a "llama" GGUF vocabulary (NULL: model itself). */
rt_status rt_gguf_export_model(const char *model, const char *adapter_dir,
                               const char *tokenizer_gguf, rt_ggml_type type, const char *out_path);

#endif
