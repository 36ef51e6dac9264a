#!/usr/bin/env python3
# Usage: python3 scripts/axolotl_keys.py train/recipe_axolotl_keys.h docs/axolotl-keys.md
# Generates train/recipe_axolotl_keys.h: axolotl's config keys with retort's class.
I,N,U='RT_AXK_IMPLEMENTED','RT_AXK_INERT','RT_AXK_UNSUPPORTED'
rows=[]
def add(cls, names, hint, dflt=None):
    for n in names.split():
        rows.append((n,cls,dflt,hint))
# implemented: recipe keys of retort with axolotl's meaning
add(I,"base_model datasets test_datasets val_set_size sequence_len sample_packing micro_batch_size gradient_accumulation_steps num_epochs max_steps learning_rate lr_scheduler warmup_steps warmup_ratio weight_decay max_grad_norm optimizer adam_beta1 adam_beta2 adam_epsilon seed output_dir logging_steps eval_steps save_steps save_total_limit gradient_checkpointing resume_from_checkpoint adapter lora_r lora_alpha lora_dropout lora_target_modules load_in_4bit device","the recipe key of the same name")
add(I,"lora_target_linear","true: lora_target_modules all-linear")
add(I,"peft_use_rslora","same as use_rslora")
add(I,"tokenizer_config","same as tokenizer (the tokenizer's path)")
add(I,"train_on_inputs","alpaca/chat datasets: prompt tokens trained too")
add(I,"chat_template","chat datasets' template: tokenizer_default, llama3, chatml, qwen3, mistral, llama2, gemma, phi_3, qwen_25, mistral_v1, tokenizer_default_fallback_*")
add(I,"special_tokens","bos/eos must be the tokenizer's own BOS/EOS, unk/pad tokens of it (retort neither adds tokens nor changes BOS/EOS)")
add(I,"bf16 fp16 tf32","CUDA: mixed precision (CUDA backend); CPU: one note, training runs in f32")
add(I,"bfloat16 float16","as bf16/fp16")
add(N,"float32","retort trains in f32 already")
add(I,"evals_per_epoch saves_per_epoch","eval_steps/save_steps = steps per epoch / N")
add(I,"eval_strategy save_strategy","steps (default), epoch, no")
add(I,"evaluation_strategy","same as eval_strategy")
add(I,"group_by_length","false only (true: error)")
add(I,"loss_watchdog_threshold loss_watchdog_patience","stop when the train loss stays above the threshold for patience steps")
add(I,"eval_sample_packing","the validation rows are packed when sample_packing is on")
add(I,"pad_to_sequence_len","batches are always [micro_batch_size, sequence_len]")
add(I,"save_safetensors","true only: adapters are safetensors", "true")
add(I,"strict","accepted (retort always checks every key)")
# inert: logging services, hub, caches, kernel/attention switches, launcher settings
add(N,"wandb_project wandb_entity wandb_watch wandb_name wandb_log_model wandb_mode wandb_run_id use_wandb","logging service")
add(N,"mlflow_experiment_name mlflow_run_name mlflow_tracking_uri hf_mlflow_log_artifacts use_mlflow","logging service")
add(N,"comet_api_key comet_experiment_config comet_experiment_key comet_mode comet_online comet_project_name comet_workspace use_comet","logging service")
add(N,"use_tensorboard include_tokens_per_second profiler_steps debug","logging/profiling (metrics.jsonl and loss.svg are always written)")
add(N,"hub_model_id hub_strategy hf_use_auth_token push_dataset_to_hub","Hugging Face hub (no network here)")
add(N,"dataset_prepared_path dataset_processes dataset_keep_in_memory skip_prepare_dataset is_preprocess preprocess_iterable remove_unused_columns","dataset cache/preprocessing (retort tokenizes in memory)")
add(N,"dataloader_drop_last dataloader_num_workers dataloader_pin_memory dataloader_prefetch_factor","PyTorch data loader")
add(N,"flash_attention flash_attn_cross_entropy flash_attn_fuse_mlp flash_attn_fuse_qkv flash_attn_rms_norm flash_optimum xformers_attention sdp_attention eager_attention flex_attention flex_attn_compile_kwargs attn_implementation","attention kernel switch (retort has its own kernels)")
add(N,"unsloth_cross_entropy_loss unsloth_lora_mlp unsloth_lora_o unsloth_lora_qkv unsloth_rms_norm unsloth_rope lora_mlp_kernel lora_o_kernel lora_qkv_kernel","kernel switch (retort has its own kernels)")
add(N,"torch_compile torch_compile_backend torch_compile_mode torchdistx_path","PyTorch compiler")
add(N,"model_type tokenizer_type tokenizer_use_fast tokenizer_legacy trust_remote_code base_model_config processor_type","transformers class selection (retort reads config.json)")
add(N,"is_falcon_derived_model is_llama_derived_model is_mistral_derived_model is_qwen_derived_model","axolotl internal")
add(N,"low_cpu_mem_usage gpu_memory_limit max_memory device_map gc_steps embeddings_skip_upcast","memory placement (retort's own)")
add(N,"local_rank world_size ddp ddp_bucket_cap_mb ddp_timeout ddp_broadcast_buffers ddp_find_unused_parameters accelerator_config","launcher settings (retort: mpirun)")
add(N,"ray_num_workers ray_run_name resources_per_worker use_ray","Ray launcher")
add(N,"gradio_max_new_tokens gradio_server_name gradio_server_port gradio_share gradio_temperature gradio_title","Gradio UI")
add(N,"axolotl_config_path total_num_tokens total_supervised_tokens","axolotl internal")
add(N,"sample_packing_bin_size sample_packing_group_size sample_packing_eff_est sample_packing_sequentially multipack_real_batches","packing tuning (retort packs next-fit)")
add(N,"gradient_checkpointing_kwargs","gradient checkpointing options")
add(N,"max_prompt_len","RL only")
# unsupported when set
U_=lambda names,hint,dflt=None: add(U,names,hint,dflt)
U_("deepspeed fsdp fsdp_config fsdp_final_state_dict_type","use retort's MPI data parallelism (mpirun -np N retort finetune ..., zero_stage: 0|1)")
U_("load_in_8bit","use load_in_4bit: true (NF4)")
U_("gptq gptq_groupsize gptq_model_v1","GPTQ models: use an fp16/bf16 base with load_in_4bit")
U_("fp8","use bf16 on CUDA")
U_("peft_use_dora","DoRA is not implemented; use LoRA")
U_("lora_modules_to_save","modules_to_save is not implemented")
U_("lora_fan_in_fan_out","fan_in_fan_out layouts are not implemented")
U_("lora_model_dir","continuing from an existing adapter is not implemented; use resume_from_checkpoint")
U_("peft_layers_to_transform peft_layers_pattern peft_layer_replication","LoRA on every layer only")
U_("peft peft_init_lora_weights","retort's LoRA init is PEFT's default")
U_("lora_on_cpu","retort chooses the device with device:")
U_("loraplus_lr_ratio loraplus_lr_embedding","LoRA+ is not implemented", None)
U_("relora_steps relora_warmup_steps relora_anneal_steps relora_prune_ratio relora_cpu_offload","ReLoRA is not implemented")
U_("lisa_n_layers lisa_step_interval lisa_layers_attribute","LISA is not implemented")
U_("rl rl_beta dpo_beta dpo_use_weighting dpo_use_logits_to_keep kto_desirable_weight kto_undesirable_weight orpo_alpha simpo_gamma cpo_alpha rpo_alpha trl vllm reward_model process_reward_model","RL / preference training is not implemented; retort does SFT and distillation")
U_("neftune_noise_alpha noisy_embedding_alpha","NEFTune is not implemented")
U_("sequence_parallel_degree heads_k_stride ring_attn_func","sequence parallelism is not implemented")
U_("rope_scaling","rope scaling comes from the model's config.json")
U_("tokens added_tokens_overrides resize_token_embeddings_to_32x mean_resizing_embeddings shrink_embeddings","adding tokens (resizing the embeddings) is not implemented")
U_("fix_untrained_tokens","not implemented")
U_("early_stopping_patience load_best_model_at_end metric_for_best_model greater_is_better","early stopping / best-model selection is not implemented")
U_("auto_find_batch_size batch_size","set micro_batch_size and gradient_accumulation_steps")
U_("eval_batch_size","evaluation uses micro_batch_size")
U_("lr_groups embedding_lr embedding_lr_scale lr_div_factor lr_quadratic_warmup lr_scheduler_kwargs cosine_min_lr_ratio cosine_constant_lr_ratio optim_args optim_target_modules","per-group or custom learning-rate schedules are not implemented")
U_("unfrozen_parameters","full or partial fine-tuning of base weights is not implemented; use LoRA")
U_("max_packed_sequence_len","use sequence_len with sample_packing")
U_("pretraining_dataset pretrain_multipack_attn pretrain_multipack_buffer_size pretraining_sample_concatenation","streaming pretraining datasets: use a local text dataset")
U_("curriculum_sampling","the train order is a seeded shuffle")
U_("shuffle_merged_datasets","the train order is a seeded shuffle","true")
U_("dataset_exact_deduplication min_sample_len dataset_shard_idx dataset_shard_num","dataset filtering is not implemented")
U_("chat_template_jinja","custom Jinja templates: retort recognises the families named under chat_template")
U_("default_system_message eot_tokens","not implemented (chat templates use their own markers)")
U_("image_size image_resize_algorithm","multimodal models are not supported")
U_("num_labels cls_model_config","classification heads are not supported")
U_("model_config model_kwargs model_revision bnb_config_kwargs llama4_linearized_experts","model loading options: retort reads config.json as is")
U_("qlora_sharded_model_loading","FSDP loading is not implemented")
U_("merge_lora","use retort merge")
U_("use_pose pose_max_context_len pose_num_chunks pose_split_on_token_ids","PoSE is not implemented")
U_("s2_attention","shifted sparse attention is not implemented")
U_("plugins","axolotl plugins are Python")
U_("do_bench_eval bench_dataset bench_split do_causal_lm_eval eval_causal_lm_metrics eval_max_new_tokens eval_table_size","use retort eval")
U_("save_only_model","checkpoints hold the optimizer state (resumable)")
U_("batch_flattening","use sample_packing")
U_("save_first_step","not implemented")
U_("adam_beta3 adam_epsilon2","CAME optimizer parameters: retort's optimizers are adamw and sgd")
U_("auto_resume_from_checkpoints","name the checkpoint with resume_from_checkpoint (true = the latest)")
seen=set()
for r in rows: assert r[0] not in seen, r[0]; seen.add(r[0])
import re, sys, os
# every implemented key must be a key of the parser's table (train/recipe.c main_keys)
src=open(os.path.join(os.path.dirname(__file__),'..','train','recipe.c')).read()
ms=src[src.index('static const key_def main_keys[]'):src.index('_Static_assert(sizeof main_keys')]
parsed=set(re.findall(r'\{"(\w+)"',ms))|set(re.findall(r'(?:INT_MIN1|INT_MIN0|FLT01|BOOL|STR|ENUM)\((\w+)',ms))
missing=[r[0] for r in rows if r[1]==I and r[0] not in parsed]
assert not missing, 'implemented but not parsed: %s'%missing
clash=[r[0] for r in rows if r[1]!=I and r[0] in parsed]
assert not clash, 'parsed but classed inert/unsupported: %s'%clash
out=['/* retort — axolotl config keys (axolotl-ai-cloud/axolotl docs/config-reference.qmd and the',
' * keys of examples/llama-3/qlora-1b.yml and examples/openllama-3b/qlora.yml) with retort\'s',
' * class. Generated by scripts/axolotl_keys.py; docs/axolotl-keys.md is the same table. */',
'/* name, class, value accepted as unset besides null/false/empty, meaning here */']
for n,c,d,h in rows:
    out.append('{"%s", %s, %s, "%s"},'%(n,c,'"%s"'%d if d else 'NULL',h.replace('"','\\"')))
open(sys.argv[1],'w').write('\n'.join(out)+'\n')
cnt={I:0,N:0,U:0}
for r in rows: cnt[r[1]]+=1
md=['# axolotl config keys in retort','',
'Every key of axolotl\'s config reference (`docs/config-reference.qmd`) plus the keys of its',
'`examples/llama-3/qlora-1b.yml` and `examples/openllama-3b/qlora.yml`, in one of three classes:','',
'- **implemented**: honoured with axolotl\'s meaning;',
'- **inert**: accepted, no effect here; all inert keys a recipe sets are listed once in one `note:` line;',
'- **unsupported**: meaningful but not available; a value other than null/false/empty (or the listed',
'  axolotl default) is an error saying so and what to use instead.','',
'Counts: **%d implemented, %d inert, %d unsupported** (%d keys). Generated by'%(cnt[I],cnt[N],cnt[U],len(rows)),
'`scripts/axolotl_keys.py` with the table in `train/recipe_axolotl_keys.h`.','',
'| key | class | here |','|---|---|---|']
nm={I:'implemented',N:'inert',U:'unsupported'}
for n,c,d,h in sorted(rows):
    md.append('| `%s` | %s | %s%s |'%(n,nm[c],h.replace('|','\\|'),' (accepted: `%s`)'%d if d else ''))
md+=['','## Dataset entries (`datasets:` / `test_datasets:`)','',
'`path`, `type` (text, jsonl, alpaca, chat_template, sharegpt, completion, input_output,',
'teacher_generate), `field`, `field_messages`, `message_property_mappings` (`role`, `content`),',
'`roles_to_train` (system, user, assistant, tool), `train_on_eos` (turn, all, last, none):',
'see train/data/data.h. Other axolotl dataset keys are unknown-key errors.']
open(sys.argv[2],'w').write('\n'.join(md)+'\n')
print(cnt, len(rows))
