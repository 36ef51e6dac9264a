/* retort — LoRA adapters in Hugging Face PEFT's on-disk format:
 * adapter_config.json (peft_type "LORA", task_type "CAUSAL_LM", r,
 * lora_alpha, lora_dropout, target_modules, use_rslora, bias "none",
 * base_model_name_or_path, revision null, peft_version "0.21.2": the keys and
 * value forms PEFT 0.21.2 writes, checked by tests/interop/test_peft.py) and
 * adapter_model.safetensors with keys
 * base_model.model.model.layers.N.<module>.lora_A.weight [r, in] and
 * ...lora_B.weight [out, r] (f32). Keys always refer to the HF layout of
 * the base model (llama2.c bases are held in HF layout), so an adapter
 * trained on a .bin applies unchanged to its converted directory. */
#ifndef RT_ADAPTER_H
#define RT_ADAPTER_H

#include "train/model/llama.h"

/* Writes adapter_config.json + adapter_model.safetensors into dir (created
 * if missing; files replaced atomically). base_model_name_or_path is the
 * absolute path of base_model when it exists, else base_model as given (a
 * hub id); lora_alpha/lora_dropout are written as the shortest decimals that
 * read back as the same float (0.05, not 0.05000000074505806). */
rt_status rt_adapter_save(const rt_llama *m, const char *dir, const char *base_model);

/* Reads a PEFT adapter directory and adds its adapters to m (which must have
 * none). Unknown target modules, a rank or shape mismatch, or a missing
 * tensor are RT_EINPUT naming the file; so is a LoRA feature retort lacks
 * (use_dora, rank_pattern, alpha_pattern, layers_to_transform,
 * layers_pattern, modules_to_save, bias other than "none", fan_in_fan_out,
 * lora_bias, target_parameters), named in the message. */
rt_status rt_adapter_apply(rt_llama *m, const char *dir);

/* Parses target_modules: a JSON/YAML list of names or "all-linear" into a
 * bitmask; RT_EINPUT for an unknown module. */
rt_status rt_lora_targets_parse(const char *const *names, int n, unsigned *out);

#endif
