/* retort — the pieces of `retort finetune` that `retort distill` reuses. */
#ifndef RT_FINETUNE_H
#define RT_FINETUNE_H

#include "dist/zero1.h"
#include "train/model/llama.h"
#include "train/recipe.h"
#include "train/tokenizer/tokenizer.h"

/* argv[1] is the recipe path, argv[2..] key=value overrides; validated. On
 * error r is freed. */
rt_status rt_finetune_load_recipe(int argc, char **argv, rt_recipe *r);
/* RT_EINPUT when the recipe's sequence_len exceeds the model's
 * max_position_embeddings (positions past it were never trained, and a huge
 * sequence_len would size every activation by it). */
rt_status rt_finetune_check_context(const rt_recipe *r, const rt_llama *m, const char *model_path);
/* The recipe's device (auto: cuda when the build and the machine have it). */
rt_status rt_finetune_device(const rt_recipe *r, rt_device *dev);
/* Tokenizer and base model (NF4 when load_in_4bit) with the recipe's LoRA
 * adapters, or, with adapter: none, the base model with every weight
 * trainable (rt_llama_new_from: full fine-tuning, saved with
 * rt_llama_save_hf); the caller frees both (also on error). */
rt_status rt_finetune_model(const rt_recipe *r, const rt_dist *d, rt_device dev, rt_llama **m,
                            rt_tokenizer **tok);

/* axolotl's special_tokens: each given one must be a token of tok (an
 * added/special token, or a llama2.c special such as "<s>"), and bos_token /
 * eos_token must be tok's own BOS / EOS (axolotl would switch the tokenizer
 * to them; retort does not). Errors: RT_EINPUT naming the key, the string
 * and the tokenizer path. */
rt_status rt_finetune_check_special_tokens(const rt_recipe *r, const rt_tokenizer *tok, const char *tpath);

#endif
