/* retort — merging a LoRA adapter into its base model (`retort merge`). */
#ifndef RT_MERGE_H
#define RT_MERGE_H

#include "kernels/error.h"

/* Folds a PEFT LoRA adapter into its base model and writes an HF
 * directory: every adapted projection becomes W + scaling * B A
 * (rt_lora_merged_weight; W dequantized first when the base is NF4), in
 * the base weight's dtype (the stored dtype, or the quant state's "dtype"
 * for NF4; f32 for a llama2.c .bin), rounded to nearest even once. Every
 * other tensor is copied unchanged; an NF4 base's projections without an
 * adapter are written dequantized. config.json is the base's config
 * without quantization_config (torch_dtype: the projections' dtype). The
 * base directory's tokenizer files are copied as rt_nf4_write_hf does.
 * model_path: HF directory (plain or NF4), .safetensors or .bin;
 * adapter_dir: adapter_config.json + adapter_model.safetensors.
 * Errors: RT_EINPUT for bad inputs (the message names the file),
 * RT_EINTERNAL on OOM. */
rt_status rt_merge_write_hf(const char *model_path, const char *adapter_dir, const char *out_dir);

#endif
