/* retort — the pieces of a recipe job that finetune and distill share
 * (see finetune.h). */
#include "train/finetune.h"

#include "train/device.h"

rt_status rt_finetune_load_recipe(int argc, char **argv, rt_recipe *r) {
    if (argc < 2) return rt_errorf(RT_EINPUT, "usage: retort %s RECIPE.yaml [key=value ...]", argv[0]);
    RT_TRY(rt_recipe_load(argv[1], r));
    for (int i = 2; i < argc; i++) {
        rt_status s = rt_recipe_set(r, argv[i]);
        if (s != RT_OK) {
            rt_recipe_free(r);
            return s;
        }
    }
    rt_status s = rt_recipe_validate(r);
    if (s != RT_OK) rt_recipe_free(r);
    return s;
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
    (*m)->gradient_checkpointing = r->gradient_checkpointing;
    if ((*m)->cfg.vocab_size < rt_tokenizer_vocab_size(*tok))
        return rt_errorf(RT_EINPUT, "%s: tokenizer has %d tokens but the model only %d", tpath,
                         rt_tokenizer_vocab_size(*tok), (*m)->cfg.vocab_size);
    return RT_OK;
}
