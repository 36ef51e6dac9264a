/* retort — knowledge distillation: a frozen teacher trains a student.
 *
 * TEACHER. Any model retort loads (HF directory or llama2.c .bin;
 * teacher_tokenizer for a .bin), frozen, NF4 with teacher_load_in_4bit, run
 * in no-grad mode (nothing recorded on the tape, no gradient memory).
 *
 * STUDENT. One of
 *   - student_config: a new model (rt_llama_new) with the teacher's
 *     vocabulary, RoPE base, norm eps, context length and BOS/EOS, the
 *     recipe's sizes, tied input/output embeddings (the parameter budget
 *     of a small student is dominated by V x D), weights ~ N(0, init_std^2);
 *     saved as an HF model directory (config.json, model.safetensors,
 *     tokenizer) in output_dir;
 *   - student_init: teacher_layers: the teacher's config with the layers
 *     listed in student_layers (layer i of the student = teacher layer
 *     student_layers[i]), every weight copied from the teacher (embeddings,
 *     final norm, output head, the chosen layers; NF4 dequantized) and
 *     trainable, as DistilBERT was initialised from every other layer of
 *     BERT (rt_llama_new_from); student_config may narrow intermediate_size
 *     (the largest-magnitude MLP neurons are kept) and must otherwise agree
 *     with the teacher; saved as an HF directory;
 *   - student_model (or base_model when neither is given): a pretrained
 *     model with LoRA/QLoRA adapters as in finetune, saved as a PEFT
 *     adapter; with adapter: none every weight is trained
 *     (rt_llama_new_from) and it is saved as an HF directory.
 * Teacher and student must share the tokenizer: the same number of tokens
 * and the same piece for every id, else RT_EINPUT naming both.
 *
 * LOSS (torchtune's KDRecipeSingleDevice mixing):
 *     loss = (1 - kd_ratio) * CE(student, labels) + kd_ratio * KD
 * with KD = rt_kd_loss (forward_kl | reverse_kl | jsd with kd_beta, at
 * kd_temperature, scaled by T^2), over the full vocabulary or the teacher's
 * kd_top_k (rt_kd_topk + the rest bucket), masked like the CE (labels ==
 * -100 contribute nothing) and divided by the same denom (the step's target
 * tokens). kd_ratio 0 is exactly the CE graph (the teacher is not run);
 * kd_ratio 1 exactly the KD graph.
 *
 * TEACHER LOGITS. online: the teacher runs on every micro-batch. cache
 * (needs kd_top_k > 0 and teacher_cache_dir): the teacher's top-k of every
 * train row is computed once and stored (train/teacher_cache.h); training
 * reads it, giving the same numbers as the online top-k path.
 *
 * SEQUENCE-LEVEL KD. Datasets of type teacher_generate are made by the
 * teacher (rt_distill_generate) and added to the train/held-out sets.
 */
#ifndef RT_DISTILL_H
#define RT_DISTILL_H

#include "train/teacher_cache.h"
#include "train/tokenizer/tokenizer.h"
#include "train/trainer.h"

/* ---- loss ---- */

typedef struct {
    rt_llama *teacher;          /* frozen; unused when cache != NULL or kd_ratio == 0 */
    rt_teacher_cache *cache;    /* NULL: online teacher */
    float kd_ratio, beta, temperature;
    rt_kd_kind kind;
    int top_k;                  /* 0: full vocabulary (online only) */
    int64_t teacher_forwards;   /* micro-batches the teacher ran on */
    int32_t *host_ids;          /* scratch for cache lookups [B*T*k]; owned */
    float *host_logp;
    int64_t host_cap;
    rt_loss_parts parts;        /* "loss_ce", "loss_kd": the unmixed terms, for metrics.jsonl */
} rt_distill_loss;

/* An rt_loss_fn (train/trainer.h): user is an rt_distill_loss. Adds the
 * unmixed CE and KD values of the micro-batch into user->parts (sum[0]: CE,
 * sum[1]: KD; only the terms the graph computes: kd_ratio 0 has no KD,
 * kd_ratio 1 no CE), so loss = (1 - kd_ratio) * loss_ce + kd_ratio * loss_kd. */
rt_tensor *rt_distill_loss_fn(rt_ctx *ctx, void *user, rt_llama *m, const rt_batch *b,
                              rt_tensor *ids, rt_tensor *pos, rt_tensor *seg, rt_tensor *labels,
                              float denom);

/* ---- setup pieces ---- */

/* RT_OK when both tokenizers have the same size and the same piece for
 * every id; otherwise RT_EINPUT naming a_name, b_name and the first
 * difference. */
rt_status rt_distill_same_vocab(const rt_tokenizer *a, const char *a_name, const rt_tokenizer *b,
                                const char *b_name);

/* Sequence-level KD data (Kim & Rush 2016, "Sequence-Level Knowledge
 * Distillation"): for each datasets entry of type teacher_generate, the
 * teacher writes num_samples texts, each from BOS with a KV cache and the
 * run.c sampler (temperature, top_p; one xorshift stream per entry seeded
 * with its seed, 0 meaning 0x5eed), stopping at max_new_tokens, EOS or BOS
 * (llama2.c models end a story with BOS). The texts are written to
 * output_dir/<basename of the entry's path> as JSONL ({"text": ...} a
 * line; only when write_files) and added with rt_dataset_add_text. Held-out
 * split: of all generated texts (entries in order), the LAST n_val go to
 * `val` with n_val from val_set_size as rt_data_load computes it (fraction:
 * ceil(f * n) capped at n - 1; count: floor(c), < n), none when
 * test_datasets are given. */
typedef struct {
    int64_t samples, train_samples, val_samples, tokens; /* tokens generated */
    double seconds;
} rt_distill_gen_stats;

rt_status rt_distill_generate(const rt_recipe *r, rt_device dev, rt_llama *teacher,
                              const rt_tokenizer *tok, bool write_files, rt_dataset *train,
                              rt_dataset *val, rt_distill_gen_stats *st);

/* ---- a whole run ---- */

typedef struct {
    const rt_recipe *recipe;
    rt_dist *dist;
    rt_device device;
    rt_llama *teacher, *student;
    rt_tokenizer *tok;                 /* the (shared) tokenizer */
    const char *student_path;          /* pretrained student; NULL for a new one */
    rt_dataset *train, *val;
    rt_distill_loss loss;
    rt_teacher_cache *cache;
    rt_teacher_cache_stats cache_stats; /* when cache */
    rt_distill_gen_stats gen;
    double teacher_val_loss;           /* mean held-out CE of the teacher; NAN without val */
} rt_distill;

/* Loads the teacher and tokenizer, makes the student, loads and generates
 * the data, evaluates the teacher on the held-out set and opens (or builds)
 * the teacher cache. s is zeroed first and always freeable with
 * rt_distill_free. Errors (RT_EINPUT): bad paths, different vocabularies,
 * teacher_logits cache without kd_top_k, anything the pieces report. */
rt_status rt_distill_setup(const rt_recipe *r, rt_dist *d, rt_distill *s);

/* Runs rt_train with the distillation loss and saves the student (HF
 * directory or PEFT adapter) into output_dir (+ checkpoints). */
rt_status rt_distill_train(rt_distill *s, rt_train_result *res);

void rt_distill_free(rt_distill *s);

#endif
