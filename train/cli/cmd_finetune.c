/* retort finetune RECIPE.yaml [key=value ...]
 *
 * LoRA / QLoRA fine-tuning from an axolotl-style recipe; writes a PEFT
 * adapter, metrics.jsonl and loss.svg into output_dir. Under mpirun every
 * rank runs this; an error on any rank ends the whole job (rt_dist_abort). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "train/model/adapter.h"
#include "train/cli/cli.h"
#include "train/cli/commands.h"
#include "train/finetune.h"
#include "train/trainer.h"

static rt_tensor *ce_loss(rt_ctx *ctx, void *user, rt_llama *m, const rt_batch *b, rt_tensor *ids,
                          rt_tensor *pos, rt_tensor *seg, rt_tensor *labels, float denom) {
    (void)user, (void)b;
    return rt_llama_loss(ctx, m, ids, pos, seg, labels, denom);
}

static rt_status save_adapter(void *user, rt_llama *m, const char *dir) {
    const rt_recipe *r = user;
    return rt_adapter_save(m, dir, r->base_model);
}

static rt_status finetune(rt_recipe *r, rt_dist *d) {
    rt_device dev;
    RT_TRY(rt_finetune_device(r, &dev));
    RT_TRY(rt_dist_use_device(d, dev));
    rt_llama *m = NULL;
    rt_tokenizer *tok = NULL;
    rt_dataset *train = NULL, *val = NULL;
    rt_status s = rt_finetune_model(r, d, dev, &m, &tok);
    if (s == RT_OK) s = rt_data_load(r, tok, &train, &val);
    if (s == RT_OK && d->rank == 0)
        printf("finetune: %s, %lld trainable of %lld parameters (%s, r=%d), %lld train rows, "
               "%lld held-out rows, %d rank%s\n",
               r->base_model, (long long)m->params.numel_used, (long long)rt_llama_n_params(m),
               r->load_in_4bit ? "QLoRA, NF4 base" : "LoRA", r->lora_r,
               (long long)rt_dataset_rows(train), (long long)(val ? rt_dataset_rows(val) : 0),
               d->world, d->world == 1 ? "" : "s");
    rt_train_result res;
    if (s == RT_OK) {
        rt_train_job job = {.recipe = r, .dist = d, .device = dev, .model = m, .train = train,
                            .val = val, .loss = ce_loss, .save = save_adapter, .save_user = r};
        s = rt_train(&job, &res);
    }
    if (s == RT_OK && d->rank == 0) {
        printf("finetune: %lld steps in %.1f s (%.0f tokens/s), final train loss %.4f\n",
               (long long)res.steps, res.seconds, res.tokens_per_s, res.last_loss);
        if (!isnan(res.first_val_loss))
            printf("finetune: held-out perplexity %.3f -> %.3f (%.1f%% lower)\n",
                   exp(res.first_val_loss), exp(res.last_val_loss),
                   100.0 * (1.0 - exp(res.last_val_loss) / exp(res.first_val_loss)));
        printf("finetune: adapter written to %s\n", r->output_dir);
    }
    rt_dataset_free(train);
    rt_dataset_free(val);
    rt_llama_free(m);
    rt_tokenizer_free(tok);
    return s;
}

int rt_recipe_main(int argc, char **argv, rt_status (*job)(rt_recipe *r, rt_dist *d)) {
    rt_dist d;
    rt_status s = rt_dist_init(&d, &argc, &argv);
    if (s != RT_OK) return rt_cmd_fail(s);
    rt_recipe r;
    s = rt_finetune_load_recipe(argc, argv, &r);
    if (s == RT_OK) {
        s = job(&r, &d);
        rt_recipe_free(&r);
    }
    if (s != RT_OK && d.world > 1) rt_dist_abort(&d, s, rt_error_message());
    rt_dist_finalize(&d);
    return s == RT_OK ? 0 : rt_cmd_fail(s);
}

int rt_cmd_finetune(int argc, char **argv) { return rt_recipe_main(argc, argv, finetune); }
