/* retort distill RECIPE.yaml [key=value ...]
 *
 * Knowledge distillation from a recipe (train/distill.h): a frozen teacher,
 * a new or pretrained (LoRA) student, CE mixed with a KD loss, online or
 * cached teacher logits, optional teacher-generated data. Writes the
 * student (HF directory or PEFT adapter), metrics.jsonl and loss.svg into
 * output_dir and prints a summary. Under mpirun every rank runs this. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "train/cli/commands.h"
#include "train/distill.h"
#include "train/finetune.h"

static const char *kd_names[] = {"forward_kl", "reverse_kl", "jsd"};

static void print_setup(const rt_distill *s) {
    const rt_recipe *r = s->recipe;
    int64_t np_s = rt_llama_n_params(s->student), np_t = rt_llama_n_params(s->teacher);
    char from[1100] = "new";
    if (s->student_path) snprintf(from, sizeof from, "%s", s->student_path);
    if (r->student_init == RT_RECIPE_STUDENT_TEACHER_LAYERS) {
        snprintf(from, sizeof from, "from teacher layers [");
        for (int i = 0; i < r->student_layers.count && strlen(from) < sizeof from - 16; i++)
            snprintf(from + strlen(from), sizeof from - strlen(from), "%s%d", i ? ", " : "",
                     r->student_layers.items[i]);
        strcat(from, "]");
    }
    const rt_llama_config *c = &s->student->cfg;
    printf("distill: teacher %s (%lld parameters%s), student %s (%lld parameters, %.1f%% of the "
           "teacher; %lld trainable; hidden %d, MLP %d, %d layers, %d/%d heads, %s embeddings)\n",
           r->teacher_model, (long long)np_t, r->teacher_load_in_4bit ? ", NF4" : "", from, (long long)np_s,
           100.0 * (double)np_s / (double)np_t, (long long)s->student->params.numel_used, c->hidden_size,
           c->intermediate_size, c->num_hidden_layers, c->num_attention_heads, c->num_key_value_heads,
           c->tie_word_embeddings ? "tied" : "untied");
    printf("distill: loss = %.2f CE + %.2f KD (%s, T=%g, %s%s)\n", 1.0 - r->kd_ratio, r->kd_ratio,
           kd_names[r->kd_loss], r->kd_temperature, r->kd_top_k ? "top-k " : "full vocabulary",
           r->kd_top_k ? (r->teacher_logits == RT_RECIPE_TEACHER_CACHE ? "cached" : "online") : "");
    if (s->gen.samples)
        printf("distill: teacher generated %lld samples (%lld tokens) in %.1f s: %lld train, %lld held out\n",
               (long long)s->gen.samples, (long long)s->gen.tokens, s->gen.seconds,
               (long long)s->gen.train_samples, (long long)s->gen.val_samples);
    printf("distill: %lld train rows, %lld held-out rows, %d rank%s\n", (long long)rt_dataset_rows(s->train),
           (long long)(s->val ? rt_dataset_rows(s->val) : 0), s->dist->world, s->dist->world == 1 ? "" : "s");
    if (!isnan(s->teacher_val_loss))
        printf("distill: teacher held-out perplexity %.3f\n", exp(s->teacher_val_loss));
    if (s->cache) {
        const rt_teacher_cache_stats *c = &s->cache_stats;
        if (c->rebuilt_reason[0]) printf("distill: teacher cache rebuilt: %s\n", c->rebuilt_reason);
        printf("distill: teacher cache %s %s in %.2f s: %lld tokens, top-%d, %.1f bytes/token, "
               "compression %.2fx (%llu -> %llu bytes)\n",
               r->teacher_cache_dir, c->built ? "built" : "read", c->seconds, (long long)c->tokens,
               r->kd_top_k, c->bytes_per_token, c->ratio, (unsigned long long)c->raw_bytes,
               (unsigned long long)c->file_bytes);
    }
}

static rt_status distill(rt_recipe *r, rt_dist *d) {
    rt_distill s;
    rt_status st = rt_distill_setup(r, d, &s);
    if (st == RT_OK && d->rank == 0) print_setup(&s);
    rt_train_result res;
    if (st == RT_OK) st = rt_distill_train(&s, &res);
    if (st == RT_OK && d->rank == 0) {
        printf("distill: %lld steps in %.1f s (%.0f tokens/s), final train loss %.4f, teacher ran on %lld "
               "micro-batches\n",
               (long long)res.steps, res.seconds, res.tokens_per_s, res.last_loss,
               (long long)s.loss.teacher_forwards);
        if (!isnan(res.first_val_loss))
            printf("distill: held-out perplexity %.3f -> %.3f (teacher %.3f)\n", exp(res.first_val_loss),
                   exp(res.last_val_loss), exp(s.teacher_val_loss));
        printf("distill: student written to %s (%s)\n", r->output_dir,
               rt_llama_is_full(s.student) ? "Hugging Face model directory" : "PEFT adapter");
    }
    rt_distill_free(&s);
    return st;
}

int rt_cmd_distill(int argc, char **argv) { return rt_recipe_main(argc, argv, distill); }
