/* retort — the pieces of a recipe job that finetune and distill share
 * (see finetune.h). */
#include "train/finetune.h"

#include <stdio.h>
#include <string.h>

#include "train/device.h"

rt_status rt_finetune_load_recipe(int argc, char **argv, rt_recipe *r) {
    if (argc < 2) return rt_errorf(RT_EINPUT, "usage: retort %s RECIPE.yaml [key=value ...]", argv[0]);
    RT_TRY(rt_recipe_load(argv[1], r));
    for (int i = 2; i < argc; i++) {
        /* --device D (as eval and generate take it) is the recipe key device=D. */
        char kv[64];
        const char *arg = argv[i];
        if (!strcmp(arg, "--device") || !strncmp(arg, "--device=", 9)) {
            const char *v = arg[8] == '=' ? arg + 9 : i + 1 < argc ? argv[++i] : NULL;
            if (!v) {
                rt_recipe_free(r);
                return rt_errorf(RT_EINPUT, "%s: option --device needs a value (cpu, cuda or auto)",
                                 argv[0]);
            }
            snprintf(kv, sizeof kv, "device=%s", v);
            arg = kv;
        }
        rt_status s = rt_recipe_set(r, arg);
        if (s != RT_OK) {
            rt_recipe_free(r);
            return s;
        }
    }
    rt_status s = rt_recipe_validate(r);
    if (s != RT_OK) {
        rt_recipe_free(r);
        /* The message names the key; the file is where to look for it. */
        return rt_errorf(s, "%s: %s", argv[1], rt_error_message());
    }
    return s;
}

rt_status rt_finetune_check_context(const rt_recipe *r, const rt_llama *m, const char *model_path) {
    if (r->sequence_len > m->cfg.max_position_embeddings)
        return rt_errorf(RT_EINPUT, "sequence_len: %d is longer than the context of %s "
                         "(max_position_embeddings %d; retort has no RoPE scaling)",
                         r->sequence_len, model_path, m->cfg.max_position_embeddings);
    return RT_OK;
}

rt_status rt_finetune_check_special_tokens(const rt_recipe *r, const rt_tokenizer *tok, const char *tpath) {
    const char *names[4] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    const char *vals[4] = {r->special_tokens.bos_token, r->special_tokens.eos_token,
                           r->special_tokens.unk_token, r->special_tokens.pad_token};
    int own[2] = {rt_tokenizer_bos(tok), rt_tokenizer_eos(tok)};
    for (int k = 0; k < 4; k++) {
        if (!vals[k] || !*vals[k]) continue;
        int id = rt_tokenizer_special_id(tok, vals[k]);
        if (id < 0)
            return rt_errorf(RT_EINPUT, "special_tokens.%s: \"%s\" is not a token of %s (retort does not add "
                             "tokens to a vocabulary)", names[k], vals[k], tpath);
        /* axolotl would make it the tokenizer's BOS/EOS; retort keeps the tokenizer's own */
        if (k < 2 && id != own[k])
            return rt_errorf(RT_EINPUT, "special_tokens.%s: \"%s\" (id %d) is not the %s of %s (id %d); retort "
                             "uses the tokenizer's own BOS/EOS (changing them is not implemented)", names[k],
                             vals[k], id, k ? "EOS" : "BOS", tpath, own[k]);
    }
    return RT_OK;
}

rt_status rt_finetune_device(const rt_recipe *r, rt_device *dev) {
    const char *names[] = {"cpu", "cuda", "auto"};
    return rt_device_select(names[r->device], dev);
}

rt_status rt_finetune_model(const rt_recipe *r, const rt_dist *d, rt_device dev, rt_llama **m,
                            rt_tokenizer **tok) {
    *m = NULL;
    const char *tpath = r->tokenizer[0] ? r->tokenizer : r->base_model;
    RT_TRY(rt_tokenizer_load(tpath, tok));
    RT_TRY(rt_finetune_check_special_tokens(r, *tok, tpath));
    rt_llama_opts o = {
        .device = dev,
        .load_in_4bit = r->load_in_4bit,
        .nf4_blocksize = r->bnb_4bit_blocksize,
        .double_quant = r->bnb_4bit_use_double_quant,
        .lora_r = r->adapter == RT_RECIPE_ADAPTER_NONE ? 0 : r->lora_r,
        .lora_alpha = (float)r->lora_alpha,
        .lora_dropout = (float)r->lora_dropout,
        .use_rslora = r->use_rslora,
        .lora_targets = r->lora_target_modules,
        .seed = (uint64_t)r->seed,
        .pad_multiple = rt_zero1_pad_multiple(d),
    };
    RT_TRY(rt_llama_load(r->base_model, &o, m));
    if (r->adapter == RT_RECIPE_ADAPTER_NONE) { /* full fine-tuning: every weight into the flat store */
        rt_llama *loaded = *m;
        *m = NULL;
        rt_status s = rt_llama_new_from(loaded, NULL, 0, 0, &o, m);
        rt_llama_free(loaded);
        RT_TRY(s);
    }
    RT_TRY(rt_finetune_check_context(r, *m, r->base_model));
    (*m)->gradient_checkpointing = r->gradient_checkpointing;
    if ((*m)->cfg.vocab_size < rt_tokenizer_vocab_size(*tok))
        return rt_errorf(RT_EINPUT, "%s: tokenizer has %d tokens but the model only %d", tpath,
                         rt_tokenizer_vocab_size(*tok), (*m)->cfg.vocab_size);
    return RT_OK;
}
