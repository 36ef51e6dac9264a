/* retort — YAML training recipes (fine-tuning and distillation).
 *
 * A recipe is one YAML file whose keys follow axolotl's config names
 * (https://github.com/axolotl-ai-cloud/axolotl, docs/config-reference), with
 * torchtune's names where axolotl has none. Every key is one row of a table
 * in recipe.c (name, type, field offset, default, range, allowed values), so
 * adding a key means adding a field here and a row there.
 *
 * Ownership: every string field is a NUL-terminated heap string owned by the
 * recipe and is never NULL; "" means "not set". Lists (datasets) are owned
 * arrays. rt_recipe_free releases everything.
 *
 * Paths inside a recipe are used as written: relative paths are relative to
 * the current directory (recipes are meant to be run from the repo root).
 */
#ifndef RT_RECIPE_H
#define RT_RECIPE_H

#include <stdbool.h>
#include <stdio.h>

#include <stdint.h>

#include "kernels/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { RT_RECIPE_QUANT_NF4 = 0 } rt_recipe_quant;

typedef enum {
    RT_RECIPE_ADAPTER_NONE = 0, /* full fine-tuning */
    RT_RECIPE_ADAPTER_LORA,
    RT_RECIPE_ADAPTER_QLORA, /* LoRA on a 4-bit base (Dettmers et al. 2023) */
} rt_recipe_adapter;

/* Bits of rt_recipe.lora_target_modules (Llama/HF projection names). */
enum {
    RT_RECIPE_MOD_Q_PROJ = 1 << 0,
    RT_RECIPE_MOD_K_PROJ = 1 << 1,
    RT_RECIPE_MOD_V_PROJ = 1 << 2,
    RT_RECIPE_MOD_O_PROJ = 1 << 3,
    RT_RECIPE_MOD_GATE_PROJ = 1 << 4,
    RT_RECIPE_MOD_UP_PROJ = 1 << 5,
    RT_RECIPE_MOD_DOWN_PROJ = 1 << 6,
    RT_RECIPE_MOD_ALL_LINEAR = (1 << 7) - 1, /* PEFT's "all-linear" */
};
#define RT_RECIPE_N_MODULES 7
/* rt_recipe_module_names[i] is the name of bit (1 << i): "q_proj", ... */
extern const char *const rt_recipe_module_names[RT_RECIPE_N_MODULES];

typedef enum {
    RT_RECIPE_DS_TEXT = 0,         /* plain text file, tokenized as one stream */
    RT_RECIPE_DS_JSONL,            /* one JSON object a line, text in `field` */
    RT_RECIPE_DS_ALPACA,           /* {instruction, input, output} a line */
    RT_RECIPE_DS_TEACHER_GENERATE, /* prompts file; the teacher writes samples */
    RT_RECIPE_DS_CHAT_TEMPLATE,    /* axolotl chat_template: a message list a line */
    RT_RECIPE_DS_SHAREGPT,         /* axolotl sharegpt: conversations of {from, value} */
    RT_RECIPE_DS_COMPLETION,       /* axolotl completion: text in `field`, all trained */
    RT_RECIPE_DS_INPUT_OUTPUT,     /* axolotl input_output: segments [{text, label}] */
} rt_recipe_dataset_type;

/* roles_to_train bits (the same as train/tokenizer/chat_template.h RT_ROLE_*). */
enum { RT_RECIPE_ROLE_SYSTEM = 1, RT_RECIPE_ROLE_USER = 2, RT_RECIPE_ROLE_ASSISTANT = 4,
       RT_RECIPE_ROLE_TOOL = 8 };
typedef enum { RT_RECIPE_EOS_TURN = 0, RT_RECIPE_EOS_ALL, RT_RECIPE_EOS_LAST, RT_RECIPE_EOS_NONE }
    rt_recipe_train_on_eos;

/* message_property_mappings: which keys of a message hold its role and content. */
typedef struct {
    char *role;    /* [""]: "role" (chat_template) or "from" (sharegpt) */
    char *content; /* [""]: "content" (chat_template) or "value" (sharegpt) */
} rt_recipe_msg_map;

typedef enum {
    RT_RECIPE_SCHED_CONSTANT = 0,
    RT_RECIPE_SCHED_LINEAR,
    RT_RECIPE_SCHED_COSINE,
} rt_recipe_scheduler;

typedef enum { RT_RECIPE_OPT_ADAMW = 0, RT_RECIPE_OPT_SGD } rt_recipe_optimizer;

typedef enum {
    RT_RECIPE_DEVICE_CPU = 0,
    RT_RECIPE_DEVICE_CUDA,
    RT_RECIPE_DEVICE_AUTO, /* cuda when built with CUDA and a GPU is present */
} rt_recipe_device;

typedef enum {
    RT_RECIPE_KD_FORWARD_KL = 0, /* KL(teacher || student) */
    RT_RECIPE_KD_REVERSE_KL,     /* KL(student || teacher) */
    RT_RECIPE_KD_JSD,            /* generalized JSD with weight kd_beta (Agarwal et al. 2024, GKD) */
} rt_recipe_kd_loss;

typedef enum { RT_RECIPE_TEACHER_ONLINE = 0, RT_RECIPE_TEACHER_CACHE } rt_recipe_teacher_logits;

typedef enum { RT_RECIPE_STRATEGY_STEPS = 0, RT_RECIPE_STRATEGY_EPOCH, RT_RECIPE_STRATEGY_NO } rt_recipe_strategy;

/* axolotl's special_tokens (strings; "" = not given). */
typedef struct {
    char *bos_token, *eos_token, *unk_token, *pad_token;
} rt_recipe_special_tokens;
typedef enum { RT_RECIPE_STUDENT_RANDOM = 0, RT_RECIPE_STUDENT_TEACHER_LAYERS } rt_recipe_student_init;

/* A list of small non-negative integers (student_layers). */
#define RT_RECIPE_MAX_INTS 256
typedef struct {
    int count;
    int items[RT_RECIPE_MAX_INTS];
} rt_recipe_ints;

/* One entry of `datasets:` / `test_datasets:`. */
typedef struct {
    char *path;    /* required */
    int type;      /* rt_recipe_dataset_type [text] */
    char *field;   /* jsonl, completion: the key holding the text [text] */
    /* chat_template / sharegpt (axolotl's keys): */
    char *field_messages;      /* key of the message list [""]: messages / conversations */
    rt_recipe_msg_map message_property_mappings;
    unsigned roles_to_train;   /* RT_RECIPE_ROLE_* bits [assistant] */
    int train_on_eos;          /* rt_recipe_train_on_eos [turn] */
    /* axolotl's shards / shards_idx: keep only shard shards_idx of `shards`
     * contiguous pieces of this entry's examples (after windowing), as
     * datasets' Dataset.shard(num_shards, index, contiguous=True) */
    int shards;     /* [1] */
    int shards_idx; /* [0], < shards */
    /* teacher_generate only: */
    int num_samples;      /* [64] */
    int max_new_tokens;   /* [128] */
    double temperature;   /* [1.0], 0 = greedy */
    double top_p;         /* [0.9] */
    long long seed;       /* [0] */
} rt_recipe_dataset;

typedef struct {
    rt_recipe_dataset *items; /* owned array of `count` entries */
    int count;
} rt_recipe_datasets;

/* A student built from scratch (distillation). All sizes 0 = not given. */
typedef struct {
    int hidden_size;
    int intermediate_size;
    int num_hidden_layers;
    int num_attention_heads;
    int num_key_value_heads; /* 0 = num_attention_heads (filled by validate) */
    double init_std;         /* [0.02], normal init std of all weights */
} rt_recipe_student;

typedef struct {
    /* model */
    char *base_model; /* HF model dir or llama2.c .bin; required (see validate) */
    char *tokenizer;  /* required when base_model is a .bin */
    bool load_in_4bit;
    int bnb_4bit_quant_type; /* rt_recipe_quant [nf4] */
    bool bnb_4bit_use_double_quant; /* [true] */
    int bnb_4bit_blocksize;         /* power of two in 32..4096 [64] */
    /* adapter */
    int adapter; /* rt_recipe_adapter [lora] */
    int lora_r;  /* [8] */
    double lora_alpha;   /* [16] */
    double lora_dropout; /* [0.05] */
    unsigned lora_target_modules; /* RT_RECIPE_MOD_* bits [q_proj|v_proj] */
    bool use_rslora; /* scale alpha/sqrt(r) instead of alpha/r (Kalajdzievski 2023) */
    bool save_gguf;  /* also write adapter_model.gguf (llama.cpp LoRA) next to the PEFT files (model.gguf for adapter: none) */
    /* data */
    rt_recipe_datasets datasets;
    rt_recipe_datasets test_datasets; /* optional held-out set */
    double val_set_size; /* < 1: fraction of datasets, >= 1: count [0.05] */
    char *chat_template;  /* chat datasets: a template name, "" = the tokenizer's own [""] */
    bool train_on_inputs; /* alpaca/chat: train the prompt tokens too [false] */
    int sequence_len;    /* tokens [256] */
    bool sample_packing;
    /* schedule */
    int micro_batch_size;            /* [1] */
    int gradient_accumulation_steps; /* [1] */
    double num_epochs;               /* [1] */
    int max_steps;                   /* optimizer steps; -1 = from num_epochs */
    double learning_rate;            /* [2e-4] */
    int lr_scheduler;                /* rt_recipe_scheduler [cosine] */
    int warmup_steps;                /* [0] */
    double warmup_ratio;             /* fraction of total steps [0] */
    double weight_decay;             /* [0] */
    double max_grad_norm;            /* [1.0], 0 = no clipping */
    int max_consecutive_skipped_steps; /* steps with a non-finite loss or gradient
                                          norm are skipped; after this many in a
                                          row the run stops [10], 0 = never */
    int optimizer;                   /* rt_recipe_optimizer [adamw] */
    double adam_beta1, adam_beta2, adam_epsilon; /* [0.9, 0.999, 1e-8] */
    double momentum;                 /* sgd [0.9] */
    long long seed;                  /* [42] */
    /* output */
    char *output_dir;       /* [./out] */
    int logging_steps;      /* [1] */
    int eval_steps;         /* 0 = only at the first and last step */
    int save_steps;         /* 0 = never (the final adapter is always written) */
    int save_total_limit;   /* checkpoints kept [2], 0 = all */
    bool gradient_checkpointing;
    char *resume_from_checkpoint; /* "" none, "latest" (YAML true) or a path */
    int device;             /* rt_recipe_device [auto] */
    int bf16;               /* 0 false, 1 true, 2 auto (axolotl's bf16: auto) [false] */
    int zero_stage;         /* 0, or 1 = shard optimizer state across ranks */
    /* distillation */
    char *teacher_model;
    char *teacher_tokenizer; /* defaults to tokenizer for a .bin teacher */
    bool teacher_load_in_4bit;
    double kd_ratio;       /* weight of the KD loss vs. the CE loss [0.5]; alias kd_alpha */
    int kd_loss;           /* rt_recipe_kd_loss [forward_kl] */
    double kd_beta;        /* JSD mixture weight [0.5] */
    double kd_temperature; /* softmax temperature of both models [1.0] */
    int kd_top_k;          /* 0 = full vocabulary, else teacher's top-k logits */
    int teacher_logits;    /* rt_recipe_teacher_logits [online] */
    char *teacher_cache_dir;
    rt_recipe_student student_config;
    char *student_model; /* a pretrained student instead of student_config */
    /* student_init: random (student_config, N(0, init_std^2)) or
     * teacher_layers: the teacher's embeddings, norms and the layers listed
     * in student_layers (rt_llama_new_from); student_config is then
     * optional and may only narrow intermediate_size */
    int student_init;              /* rt_recipe_student_init [random] */
    rt_recipe_ints student_layers; /* teacher layer indices, in student order */

    /* private: which top-level keys the file/overrides set (for validate) */
    /* axolotl keys (docs/axolotl-keys.md) */
    bool fp16, tf32;        /* CPU: a note that training runs in f32 */
    bool lora_target_linear; /* true: lora_target_modules = all-linear */
    rt_recipe_special_tokens special_tokens; /* each must be a token of the tokenizer */
    int evals_per_epoch, saves_per_epoch;    /* > 0: eval_steps/save_steps from the epoch length */
    int eval_strategy, save_strategy;        /* rt_recipe_strategy [steps] */
    bool group_by_length;   /* false only */
    double loss_watchdog_threshold;          /* > 0: stop when the loss stays above it */
    int loss_watchdog_patience;              /* consecutive steps [3] */
    bool eval_sample_packing, pad_to_sequence_len, save_safetensors, strict; /* accepted */
    const char *optimizer_given_; /* axolotl optimizer name mapped to adamw (static), or NULL */
    short inert_[64];       /* indices into the axolotl key table of inert keys given */
    int n_inert_;
    unsigned char set_[160];
} rt_recipe;

/* Fills r with every default (strings allocated). On RT_EINTERNAL (OOM) r
 * is left freeable. The caller frees with rt_recipe_free. */
rt_status rt_recipe_init(rt_recipe *r);

/* rt_recipe_init, then the YAML file `path` on top. Errors (RT_EINPUT, one
 * line naming "path:line:" and the key): missing/unreadable file, malformed
 * YAML (libyaml's problem text and line), top level not a mapping, unknown
 * key (with the closest valid key by Levenshtein distance), duplicate key,
 * wrong type, out of range, value not among the allowed ones (all listed).
 * Does not run rt_recipe_validate. On error r is freed and zeroed (calling
 * rt_recipe_free on it again is harmless); on success the caller frees.
 * Caps on hostile input: the file is at most RT_CONFIG_FILE_MAX (16 MiB,
 * train/formats/fs.h), nested at most RT_RECIPE_MAX_DEPTH levels, and one
 * YAML document (keys after a '---' separator are an error). */
#define RT_RECIPE_MAX_DEPTH 32
rt_status rt_recipe_load(const char *path, rt_recipe *r);

/* Applies one command-line override "key=value". key is a dotted path for
 * nested keys ("student_config.hidden_size", "datasets.0.path"; index
 * == count appends a dataset); value is parsed as a YAML scalar or flow node
 * ("lora_target_modules=[q_proj,v_proj]", "datasets=[{path: a.txt}]"). An
 * empty value or null resets the key to its default. Errors as for
 * rt_recipe_load, prefixed "override 'key=value':". On error r stays valid
 * (freeable) but may be partly updated. */
rt_status rt_recipe_set(rt_recipe *r, const char *key_eq_value);

/* Cross-key checks, run once after load and overrides. Fills derived
 * values: adapter qlora sets load_in_4bit (error if the recipe set it
 * false); lora on a 4-bit base becomes qlora; num_key_value_heads 0 becomes
 * num_attention_heads; teacher_tokenizer defaults to tokenizer for a .bin
 * teacher; val_set_size defaults to 0 when test_datasets are given.
 * Errors (RT_EINPUT): base_model missing (it may be omitted only when
 * teacher_model is set: the student then comes from student_model or
 * student_config), tokenizer missing for a .bin model, no datasets or a
 * dataset without path, teacher_generate without teacher_model, warmup_steps
 * and warmup_ratio both non-zero, a fractional val_set_size >= 1,
 * test_datasets with an explicit val_set_size, no LoRA target with an
 * adapter, load_in_4bit without an adapter, student_config and
 * student_model both given, inconsistent student_config shapes,
 * teacher_logits cache without teacher_cache_dir. */
rt_status rt_recipe_validate(rt_recipe *r);

/* Prints the one-line notes a validated recipe calls for to f, each
 * "retort: note: ...": the inert axolotl keys it sets (one line), bf16/fp16/
 * tf32 on the CPU (training runs in f32), an 8-bit/paged optimizer name run
 * as retort's AdamW. on_cpu: whether training runs on the CPU. */
void rt_recipe_print_notes(const rt_recipe *r, bool on_cpu, FILE *f);

/* Prints every recipe key with its type, default and meaning (from the
 * parser's table) to f: the body of `retort finetune --help`. */
void rt_recipe_print_keys(FILE *f);

/* Releases every owned string/array and zeroes r. NULL-safe. */
void rt_recipe_free(rt_recipe *r);

/* Writes the effective recipe (every key, defaults included) as YAML to
 * `path` (for reproducibility: output_dir/recipe.yaml). Loading the file
 * again gives an equal recipe. Errors: RT_EINPUT when the file cannot be
 * written, RT_EINTERNAL on an emitter failure. */
rt_status rt_recipe_save(const rt_recipe *r, const char *path);

/* CRC-32 of the effective recipe as rt_recipe_save writes it (every key,
 * after overrides): equal on ranks that run the same job. */
rt_status rt_recipe_fingerprint(const rt_recipe *r, uint32_t *fp);

#ifdef __cplusplus
}
#endif
#endif
