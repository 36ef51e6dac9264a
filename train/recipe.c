/* retort — YAML recipes: a key table, a libyaml document walker over it,
 * dotted-path overrides, cross-key validation and a YAML writer.
 * Key names and meanings follow axolotl's config reference; see recipe.h. */
#include "train/recipe.h"
#include "train/formats/fs.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>
#include <zlib.h>

const char *const rt_recipe_module_names[RT_RECIPE_N_MODULES] = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

/* ---------------------------------------------------------------- table -- */

typedef enum {
    KT_STR,
    KT_BOOL,
    KT_INT,          /* int */
    KT_I64,          /* long long */
    KT_FLOAT,        /* double */
    KT_ENUM,         /* int index into values[] */
    KT_MODULES,      /* unsigned bitmask of RT_RECIPE_MOD_* */
    KT_DATASETS,     /* rt_recipe_datasets, entries described by sub[] */
    KT_MAP,          /* nested struct described by sub[] */
    KT_PATH_OR_BOOL, /* string: true -> "latest", false -> "" */
    KT_ALIAS,        /* another name for the key def_s */
    KT_FLAGS,        /* unsigned bitmask: a list of values[] names, bit i = values[i] */
    KT_INTS,         /* rt_recipe_ints: a list of integers >= 0 */
} key_type;

enum { KF_MIN = 1, KF_MAX = 2, KF_MIN_EXCL = 4, KF_POW2 = 8 };

typedef struct key_def key_def;
struct key_def {
    const char *name;
    key_type type;
    size_t off;
    long long def_i;  /* BOOL, INT, I64, ENUM, MODULES */
    double def_f;     /* FLOAT */
    const char *def_s; /* STR, PATH_OR_BOOL (NULL = ""); ALIAS: target name */
    unsigned flags;
    double min, max;
    const char *const *values; /* ENUM: NULL-terminated allowed strings */
    const key_def *sub;        /* DATASETS, MAP: NULL-name-terminated */
    const char *help;          /* meaning, for `retort finetune --help` */
};

static const char *const quant_names[] = {"nf4", NULL};
static const char *const adapter_names[] = {"none", "lora", "qlora", NULL};
static const char *const student_init_names[] = {"random", "teacher_layers", NULL};
static const char *const ds_type_names[] = {"text", "jsonl", "alpaca", "teacher_generate", "chat_template",
                                            "sharegpt", "completion", "input_output", NULL};
static const char *const role_names[] = {"system", "user", "assistant", "tool", NULL};
static const char *const eos_names[] = {"turn", "all", "last", "none", NULL};
static const char *const sched_names[] = {"constant", "linear", "cosine", "constant_with_warmup", NULL};
/* axolotl's optimizer names after retort's own: all run retort's AdamW
 * (rt_recipe_validate maps them; the 8-bit and paged ones with a note). */
static const char *const opt_names[] = {"adamw", "sgd", "adamw_torch", "adamw_torch_fused", "adamw_hf",
                                        "adamw_bnb_8bit", "adamw_8bit", "paged_adamw_8bit",
                                        "paged_adamw_32bit", NULL};
static const char *const bf16_names[] = {"false", "true", "auto", NULL};
static const char *const strategy_names[] = {"steps", "epoch", "no", NULL};
static const char *const device_names[] = {"cpu", "cuda", "auto", NULL};
static const char *const kd_loss_names[] = {"forward_kl", "reverse_kl", "jsd", NULL};
static const char *const tlogit_names[] = {"online", "cache", NULL};

#define MM(f) offsetof(rt_recipe_msg_map, f)
static const key_def msg_map_keys[] = {
    {"role", KT_STR, MM(role), .def_s = ""},
    {"content", KT_STR, MM(content), .def_s = ""},
    {.name = NULL},
};

#define DS(f) offsetof(rt_recipe_dataset, f)
static const key_def dataset_keys[] = {
    {"path", KT_STR, DS(path), .def_s = ""},
    {"type", KT_ENUM, DS(type), .def_i = RT_RECIPE_DS_TEXT, .values = ds_type_names},
    {"field", KT_STR, DS(field), .def_s = "text"},
    {"field_messages", KT_STR, DS(field_messages), .def_s = ""},
    {"message_property_mappings", KT_MAP, DS(message_property_mappings), .sub = msg_map_keys},
    {"roles_to_train", KT_FLAGS, DS(roles_to_train), .def_i = RT_RECIPE_ROLE_ASSISTANT, .values = role_names},
    {"train_on_eos", KT_ENUM, DS(train_on_eos), .def_i = RT_RECIPE_EOS_TURN, .values = eos_names},
    {"shards", KT_INT, DS(shards), .def_i = 1, .flags = KF_MIN, .min = 1},
    {"shards_idx", KT_INT, DS(shards_idx), .def_i = 0, .flags = KF_MIN, .min = 0},
    {"num_samples", KT_INT, DS(num_samples), .def_i = 64, .flags = KF_MIN, .min = 1},
    {"max_new_tokens", KT_INT, DS(max_new_tokens), .def_i = 128, .flags = KF_MIN, .min = 1},
    {"temperature", KT_FLOAT, DS(temperature), .def_f = 1.0, .flags = KF_MIN, .min = 0},
    {"top_p", KT_FLOAT, DS(top_p), .def_f = 0.9, .flags = KF_MIN | KF_MIN_EXCL | KF_MAX,
     .min = 0, .max = 1},
    {"seed", KT_I64, DS(seed), .def_i = 0, .flags = KF_MIN, .min = 0},
    {.name = NULL},
};

#define SP(f) offsetof(rt_recipe_special_tokens, f)
static const key_def special_token_keys[] = {
    {"bos_token", KT_STR, SP(bos_token), .def_s = ""},
    {"eos_token", KT_STR, SP(eos_token), .def_s = ""},
    {"unk_token", KT_STR, SP(unk_token), .def_s = ""},
    {"pad_token", KT_STR, SP(pad_token), .def_s = ""},
    {.name = NULL},
};

#define SC(f) offsetof(rt_recipe_student, f)
static const key_def student_keys[] = {
    {"hidden_size", KT_INT, SC(hidden_size), .flags = KF_MIN, .min = 1},
    {"intermediate_size", KT_INT, SC(intermediate_size), .flags = KF_MIN, .min = 1},
    {"num_hidden_layers", KT_INT, SC(num_hidden_layers), .flags = KF_MIN, .min = 1},
    {"num_attention_heads", KT_INT, SC(num_attention_heads), .flags = KF_MIN, .min = 1},
    {"num_key_value_heads", KT_INT, SC(num_key_value_heads), .flags = KF_MIN, .min = 1},
    {"init_std", KT_FLOAT, SC(init_std), .def_f = 0.02, .flags = KF_MIN | KF_MIN_EXCL, .min = 0},
    {.name = NULL},
};

#define R(f) offsetof(rt_recipe, f)
#define INT_MIN1(name, def) {#name, KT_INT, R(name), .def_i = def, .flags = KF_MIN, .min = 1}
#define INT_MIN0(name, def) {#name, KT_INT, R(name), .def_i = def, .flags = KF_MIN, .min = 0}
#define FLT01(name, def) {#name, KT_FLOAT, R(name), .def_f = def, .flags = KF_MIN | KF_MAX, .min = 0, .max = 1}
#define BOOL(name, def) {#name, KT_BOOL, R(name), .def_i = def}
#define STR(name, def) {#name, KT_STR, R(name), .def_s = def}
#define ENUM(name, def, vals) {#name, KT_ENUM, R(name), .def_i = def, .values = vals}
static const key_def main_keys[] = {
    /* model */
    STR(base_model, ""),
    STR(tokenizer, ""),
    BOOL(load_in_4bit, 0),
    ENUM(bnb_4bit_quant_type, RT_RECIPE_QUANT_NF4, quant_names),
    BOOL(bnb_4bit_use_double_quant, 1),
    {"bnb_4bit_blocksize", KT_INT, R(bnb_4bit_blocksize), .def_i = 64,
     .flags = KF_MIN | KF_MAX | KF_POW2, .min = 32, .max = 4096},
    /* adapter */
    ENUM(adapter, RT_RECIPE_ADAPTER_LORA, adapter_names),
    INT_MIN1(lora_r, 8),
    {"lora_alpha", KT_FLOAT, R(lora_alpha), .def_f = 16, .flags = KF_MIN | KF_MIN_EXCL, .min = 0},
    FLT01(lora_dropout, 0.05),
    {"lora_target_modules", KT_MODULES, R(lora_target_modules),
     .def_i = RT_RECIPE_MOD_Q_PROJ | RT_RECIPE_MOD_V_PROJ},
    BOOL(use_rslora, 0),
    BOOL(save_gguf, 0),
    /* data */
    {"datasets", KT_DATASETS, R(datasets), .sub = dataset_keys},
    {"test_datasets", KT_DATASETS, R(test_datasets), .sub = dataset_keys},
    {"val_set_size", KT_FLOAT, R(val_set_size), .def_f = 0.05, .flags = KF_MIN, .min = 0},
    STR(chat_template, ""),
    BOOL(train_on_inputs, 0),
    INT_MIN1(sequence_len, 256),
    BOOL(sample_packing, 0),
    /* schedule */
    INT_MIN1(micro_batch_size, 1),
    INT_MIN1(gradient_accumulation_steps, 1),
    {"num_epochs", KT_FLOAT, R(num_epochs), .def_f = 1, .flags = KF_MIN | KF_MIN_EXCL, .min = 0},
    {"max_steps", KT_INT, R(max_steps), .def_i = -1, .flags = KF_MIN, .min = -1},
    {"learning_rate", KT_FLOAT, R(learning_rate), .def_f = 2e-4, .flags = KF_MIN, .min = 0},
    ENUM(lr_scheduler, RT_RECIPE_SCHED_COSINE, sched_names),
    INT_MIN0(warmup_steps, 0),
    FLT01(warmup_ratio, 0),
    {"weight_decay", KT_FLOAT, R(weight_decay), .def_f = 0, .flags = KF_MIN, .min = 0},
    {"max_grad_norm", KT_FLOAT, R(max_grad_norm), .def_f = 1, .flags = KF_MIN, .min = 0},
    INT_MIN0(max_consecutive_skipped_steps, 10),
    ENUM(optimizer, RT_RECIPE_OPT_ADAMW, opt_names),
    FLT01(adam_beta1, 0.9),
    FLT01(adam_beta2, 0.999),
    {"adam_epsilon", KT_FLOAT, R(adam_epsilon), .def_f = 1e-8, .flags = KF_MIN | KF_MIN_EXCL, .min = 0},
    FLT01(momentum, 0.9),
    {"seed", KT_I64, R(seed), .def_i = 42, .flags = KF_MIN, .min = 0},
    /* output */
    STR(output_dir, "./out"),
    INT_MIN1(logging_steps, 1),
    INT_MIN0(eval_steps, 0),
    INT_MIN0(save_steps, 0),
    INT_MIN0(save_total_limit, 2),
    BOOL(gradient_checkpointing, 0),
    {"resume_from_checkpoint", KT_PATH_OR_BOOL, R(resume_from_checkpoint), .def_s = ""},
    ENUM(device, RT_RECIPE_DEVICE_AUTO, device_names),
    ENUM(bf16, 0, bf16_names),
    {"zero_stage", KT_INT, R(zero_stage), .def_i = 0, .flags = KF_MIN | KF_MAX, .min = 0, .max = 1},
    /* distillation */
    STR(teacher_model, ""),
    STR(teacher_tokenizer, ""),
    BOOL(teacher_load_in_4bit, 0),
    FLT01(kd_ratio, 0.5),
    {"kd_alpha", KT_ALIAS, 0, .def_s = "kd_ratio"},
    ENUM(kd_loss, RT_RECIPE_KD_FORWARD_KL, kd_loss_names),
    FLT01(kd_beta, 0.5),
    {"kd_temperature", KT_FLOAT, R(kd_temperature), .def_f = 1, .flags = KF_MIN | KF_MIN_EXCL, .min = 0},
    INT_MIN0(kd_top_k, 0),
    ENUM(teacher_logits, RT_RECIPE_TEACHER_ONLINE, tlogit_names),
    STR(teacher_cache_dir, ""),
    {"student_config", KT_MAP, R(student_config), .sub = student_keys},
    STR(student_model, ""),
    /* axolotl keys with their meaning here (docs/axolotl-keys.md) */
    BOOL(fp16, 0),
    BOOL(tf32, 0),
    {"bfloat16", KT_ALIAS, 0, .def_s = "bf16"},
    {"float16", KT_ALIAS, 0, .def_s = "fp16"},
    BOOL(lora_target_linear, 0),
    {"peft_use_rslora", KT_ALIAS, 0, .def_s = "use_rslora"},
    {"tokenizer_config", KT_ALIAS, 0, .def_s = "tokenizer"},
    {"special_tokens", KT_MAP, R(special_tokens), .sub = special_token_keys},
    INT_MIN0(evals_per_epoch, 0),
    INT_MIN0(saves_per_epoch, 0),
    ENUM(eval_strategy, RT_RECIPE_STRATEGY_STEPS, strategy_names),
    {"evaluation_strategy", KT_ALIAS, 0, .def_s = "eval_strategy"},
    ENUM(save_strategy, RT_RECIPE_STRATEGY_STEPS, strategy_names),
    BOOL(group_by_length, 0),
    {"loss_watchdog_threshold", KT_FLOAT, R(loss_watchdog_threshold), .def_f = 0, .flags = KF_MIN, .min = 0},
    INT_MIN1(loss_watchdog_patience, 3),
    BOOL(eval_sample_packing, 1),
    BOOL(pad_to_sequence_len, 0),
    BOOL(save_safetensors, 1),
    BOOL(strict, 0),
    ENUM(student_init, RT_RECIPE_STUDENT_RANDOM, student_init_names),
    {"student_layers", KT_INTS, R(student_layers), .def_i = 0},
    {.name = NULL},
};
_Static_assert(sizeof main_keys / sizeof main_keys[0] <= sizeof(((rt_recipe *)0)->set_),
               "rt_recipe.set_ needs one byte per key");

/* Field accessors: the table stores byte offsets into the struct at `base`. */
#define FIELD(type, base, k) ((type *)((char *)(base) + (k)->off))

static const key_def *find_key(const key_def *table, const char *name) {
    for (const key_def *k = table; k->name; k++) {
        if (strcmp(k->name, name) != 0) continue;
        if (k->type == KT_ALIAS) return find_key(table, k->def_s);
        return k;
    }
    return NULL;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

/* ------------------------------------------------- defaults and freeing -- */

static void free_table(const key_def *table, void *base);

static void free_list(rt_recipe_datasets *l, const key_def *sub) {
    for (int i = 0; i < l->count; i++) free_table(sub, &l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

static void free_table(const key_def *table, void *base) {
    for (const key_def *k = table; k->name; k++) {
        switch (k->type) {
        case KT_STR:
        case KT_PATH_OR_BOOL:
            free(*FIELD(char *, base, k));
            *FIELD(char *, base, k) = NULL;
            break;
        case KT_DATASETS: free_list(FIELD(rt_recipe_datasets, base, k), k->sub); break;
        case KT_MAP: free_table(k->sub, FIELD(char, base, k)); break;
        default: break;
        }
    }
}

static rt_status reset_table(const key_def *table, void *base);

/* Sets one field to its default, releasing what it held. */
static rt_status reset_key(const key_def *k, void *base) {
    switch (k->type) {
    case KT_STR:
    case KT_PATH_OR_BOOL: {
        char *s = dup_str(k->def_s ? k->def_s : "");
        if (!s) return rt_errorf(RT_EINTERNAL, "recipe: out of memory");
        free(*FIELD(char *, base, k));
        *FIELD(char *, base, k) = s;
        break;
    }
    case KT_BOOL: *FIELD(bool, base, k) = k->def_i != 0; break;
    case KT_INT:
    case KT_ENUM: *FIELD(int, base, k) = (int)k->def_i; break;
    case KT_I64: *FIELD(long long, base, k) = k->def_i; break;
    case KT_MODULES:
    case KT_FLAGS: *FIELD(unsigned, base, k) = (unsigned)k->def_i; break;
    case KT_FLOAT: *FIELD(double, base, k) = k->def_f; break;
    case KT_DATASETS: free_list(FIELD(rt_recipe_datasets, base, k), k->sub); break;
    case KT_MAP: return reset_table(k->sub, FIELD(char, base, k));
    case KT_INTS: FIELD(rt_recipe_ints, base, k)->count = 0; break;
    case KT_ALIAS: break;
    }
    return RT_OK;
}

static rt_status reset_table(const key_def *table, void *base) {
    for (const key_def *k = table; k->name; k++) RT_TRY(reset_key(k, base));
    return RT_OK;
}

rt_status rt_recipe_init(rt_recipe *r) {
    memset(r, 0, sizeof *r);
    return reset_table(main_keys, r);
}

void rt_recipe_free(rt_recipe *r) {
    if (!r) return;
    free_table(main_keys, r);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------- messages -- */

/* Where values come from, for error prefixes: a file (with line numbers)
 * or one command-line override. */
typedef struct {
    const char *file;
    const char *override;
    yaml_document_t *doc;
} src_ctx;

static rt_status fail(const src_ctx *c, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static rt_status fail(const src_ctx *c, const yaml_node_t *n, const char *fmt, ...) {
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->file && n)
        return rt_errorf(RT_EINPUT, "%s:%lu: %s", c->file, (unsigned long)n->start_mark.line + 1, msg);
    if (c->file) return rt_errorf(RT_EINPUT, "%s: %s", c->file, msg);
    return rt_errorf(RT_EINPUT, "override '%s': %s", c->override, msg);
}

static void append(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t cap, const char *fmt, ...) {
    size_t len = strlen(buf);
    if (len + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, cap - len, fmt, ap);
    va_end(ap);
}

static void key_list(char *buf, size_t cap, const key_def *table) {
    for (const key_def *k = table; k->name; k++)
        if (k->type != KT_ALIAS) append(buf, cap, "%s%s", k == table ? "" : ", ", k->name);
}

/* What a key accepts, as the "expected ..." part of a message. */
static void describe(const key_def *k, char *buf, size_t cap) {
    buf[0] = '\0';
    switch (k->type) {
    case KT_STR: append(buf, cap, "a string"); return;
    case KT_BOOL: append(buf, cap, "true or false"); return;
    case KT_PATH_OR_BOOL: append(buf, cap, "true, false or a checkpoint path"); return;
    case KT_ENUM:
        append(buf, cap, "one of ");
        for (int i = 0; k->values[i]; i++) append(buf, cap, "%s%s", i ? ", " : "", k->values[i]);
        return;
    case KT_MODULES:
        append(buf, cap, "a list of ");
        for (int i = 0; i < RT_RECIPE_N_MODULES; i++)
            append(buf, cap, "%s, ", rt_recipe_module_names[i]);
        append(buf, cap, "or the string all-linear");
        return;
    case KT_FLAGS:
        append(buf, cap, "a list of ");
        for (int i = 0; k->values[i]; i++) append(buf, cap, "%s%s", i ? ", " : "", k->values[i]);
        return;
    case KT_DATASETS:
        append(buf, cap, "a list of maps with keys ");
        key_list(buf, cap, k->sub);
        return;
    case KT_MAP:
        append(buf, cap, "a map with keys ");
        key_list(buf, cap, k->sub);
        return;
    case KT_INT:
    case KT_I64: append(buf, cap, (k->flags & KF_POW2) ? "a power of two" : "an integer"); break;
    case KT_FLOAT: append(buf, cap, "a number"); break;
    case KT_INTS: append(buf, cap, "a list of at most %d integers >= 0", RT_RECIPE_MAX_INTS); return;
    case KT_ALIAS: return;
    }
    if ((k->flags & KF_MIN) && (k->flags & KF_MAX)) {
        if (k->flags & KF_MIN_EXCL)
            append(buf, cap, " > %g and <= %g", k->min, k->max);
        else
            append(buf, cap, " in %g..%g", k->min, k->max);
    } else if (k->flags & KF_MIN) {
        append(buf, cap, " %s %g", (k->flags & KF_MIN_EXCL) ? ">" : ">=", k->min);
    } else if (k->flags & KF_MAX) {
        append(buf, cap, " <= %g", k->max);
    }
}

/* The "got ..." part: the scalar text (clipped), or the node kind. */
static void got_text(const yaml_node_t *n, char *buf, size_t cap) {
    if (!n)
        snprintf(buf, cap, "nothing");
    else if (n->type == YAML_SCALAR_NODE)
        snprintf(buf, cap, "'%.60s%s'", (const char *)n->data.scalar.value,
                 n->data.scalar.length > 60 ? "..." : "");
    else
        snprintf(buf, cap, "%s", n->type == YAML_SEQUENCE_NODE ? "a list" : "a map");
}

static rt_status fail_expected(const src_ctx *c, const yaml_node_t *n, const key_def *k, const char *kp) {
    char want[600], got[80];
    describe(k, want, sizeof want);
    got_text(n, got, sizeof got);
    return fail(c, n, "%s: expected %s, got %s", kp, want, got);
}

/* Levenshtein edit distance (insert/delete/substitute = 1), two rows. */
static size_t edit_distance(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    if (na > 63 || nb > 63) return (size_t)-1;
    size_t prev[64], cur[64];
    for (size_t j = 0; j <= nb; j++) prev[j] = j;
    for (size_t i = 1; i <= na; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, (nb + 1) * sizeof prev[0]);
    }
    return prev[nb];
}

static rt_status fail_unknown(const src_ctx *c, const yaml_node_t *n, const key_def *table,
                              const char *name, const char *parent) {
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (const key_def *k = table; k->name; k++) {
        size_t d = edit_distance(name, k->name);
        if (d < best_d) best_d = d, best = k->name;
    }
    size_t limit = 1 + strlen(name) / 2;
    char hint[96] = "";
    if (best && best_d <= (limit < 3 ? 3 : limit))
        snprintf(hint, sizeof hint, " (did you mean '%s'?)", best);
    if (parent && *parent)
        return fail(c, n, "unknown key '%.80s' in %s%s", name, parent, hint);
    return fail(c, n, "unknown key '%.80s'%s", name, hint);
}

/* ------------------------------------------------------- scalar parsing -- */

static const char *scalar(const yaml_node_t *n) {
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static bool is_plain(const yaml_node_t *n) {
    return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

/* YAML null: an empty value, ~ or null (plain, not quoted). */
static bool is_null(const yaml_node_t *n) {
    if (!n) return true;
    if (!is_plain(n)) return false;
    const char *s = scalar(n);
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* YAML 1.1 and 1.2 booleans. Returns 0/1, or -1 when s is not one. */
static int parse_bool(const char *s) {
    static const char *const t[] = {"true", "yes", "on"}, *const f[] = {"false", "no", "off"};
    for (int i = 0; i < 3; i++) {
        if (!strcasecmp(s, t[i])) return 1;
        if (!strcasecmp(s, f[i])) return 0;
    }
    return -1;
}

static bool parse_ll(const char *s, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno) return false;
    *out = v;
    return true;
}

static bool parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno == ERANGE || !isfinite(v)) return false;
    *out = v;
    return true;
}

static bool in_range(const key_def *k, double v) {
    if (k->flags & KF_MIN) {
        if ((k->flags & KF_MIN_EXCL) ? !(v > k->min) : !(v >= k->min)) return false;
    }
    if ((k->flags & KF_MAX) && !(v <= k->max)) return false;
    if (k->flags & KF_POW2) {
        long long i = (long long)v;
        if (i <= 0 || (i & (i - 1))) return false;
    }
    return true;
}

/* ------------------------------------------------------- node appliers -- */

static rt_status apply_map(const src_ctx *c, const key_def *table, void *base, yaml_node_t *map,
                           const char *kp, unsigned char *set_flags);

static int module_bit(const char *name, size_t len) {
    for (int i = 0; i < RT_RECIPE_N_MODULES; i++)
        if (strlen(rt_recipe_module_names[i]) == len && !strncmp(rt_recipe_module_names[i], name, len))
            return 1 << i;
    if (len == 10 && !strncmp(name, "all-linear", len)) return RT_RECIPE_MOD_ALL_LINEAR;
    return 0;
}

/* A scalar of comma/space separated module names, or one sequence item. */
static bool modules_from_text(const char *s, unsigned *bits) {
    bool any = false;
    while (*s) {
        size_t skip = strspn(s, ", \t");
        s += skip;
        if (!*s) break;
        size_t len = strcspn(s, ", \t");
        int b = module_bit(s, len);
        if (!b) return false;
        *bits |= (unsigned)b;
        any = true;
        s += len;
    }
    return any;
}

static rt_status apply_datasets(const src_ctx *c, const key_def *k, void *base, yaml_node_t *n,
                                const char *kp) {
    if (n->type != YAML_SEQUENCE_NODE) return fail_expected(c, n, k, kp);
    yaml_node_item_t *it = n->data.sequence.items.start;
    int count = (int)(n->data.sequence.items.top - it);
    rt_recipe_datasets fresh = {NULL, 0};
    if (count > 0) {
        fresh.items = calloc((size_t)count, sizeof *fresh.items);
        if (!fresh.items) return rt_errorf(RT_EINTERNAL, "recipe: out of memory");
    }
    rt_status st = RT_OK;
    for (int i = 0; i < count && st == RT_OK; i++) {
        yaml_node_t *item = yaml_document_get_node(c->doc, it[i]);
        char sub_kp[160];
        snprintf(sub_kp, sizeof sub_kp, "%s.%d", kp, i);
        fresh.count = i + 1;
        st = reset_table(k->sub, &fresh.items[i]);
        if (st != RT_OK) break;
        if (!item || item->type != YAML_MAPPING_NODE)
            st = fail_expected(c, item ? item : n, k, sub_kp);
        else
            st = apply_map(c, k->sub, &fresh.items[i], item, sub_kp, NULL);
    }
    if (st != RT_OK) {
        free_list(&fresh, k->sub);
        return st;
    }
    rt_recipe_datasets *dst = FIELD(rt_recipe_datasets, base, k);
    free_list(dst, k->sub);
    *dst = fresh;
    return RT_OK;
}

/* A list of integers >= 0 (a single integer is a list of one). */
static rt_status apply_ints(const src_ctx *c, const key_def *k, void *base, yaml_node_t *n, const char *kp) {
    rt_recipe_ints v = {0};
    yaml_node_item_t *it = n->type == YAML_SEQUENCE_NODE ? n->data.sequence.items.start : NULL;
    yaml_node_item_t *top = n->type == YAML_SEQUENCE_NODE ? n->data.sequence.items.top : NULL;
    int count = it ? (int)(top - it) : 1;
    if (count > RT_RECIPE_MAX_INTS) return fail_expected(c, n, k, kp);
    for (int i = 0; i < count; i++) {
        yaml_node_t *item = it ? yaml_document_get_node(c->doc, it[i]) : n;
        const char *s = scalar(item);
        long long x;
        if (!s || !parse_ll(s, &x) || x < 0 || x > INT_MAX) return fail_expected(c, item, k, kp);
        v.items[v.count++] = (int)x;
    }
    *FIELD(rt_recipe_ints, base, k) = v;
    return RT_OK;
}

/* A copy of s with a leading "~/" replaced by $HOME, as a shell would: the
 * recipes name the model cache as ~/.cache/retort/... . NULL on OOM. */
static char *expand_home(const char *s) {
    const char *home = getenv("HOME");
    if (strncmp(s, "~/", 2) != 0 || !home || !*home) return dup_str(s);
    size_t n = strlen(home) + strlen(s);
    char *v = malloc(n);
    if (v) snprintf(v, n, "%s%s", home, s + 1);
    return v;
}

/* Stores node n (any kind) into key k of the struct at base. kp is the
 * dotted key path for messages. */
static rt_status apply_node(const src_ctx *c, const key_def *k, void *base, yaml_node_t *n,
                            const char *kp) {
    if (is_null(n)) return reset_key(k, base);
    const char *s = scalar(n);
    switch (k->type) {
    case KT_STR:
    case KT_PATH_OR_BOOL: {
        if (!s) return fail_expected(c, n, k, kp);
        int b = k->type == KT_PATH_OR_BOOL && is_plain(n) ? parse_bool(s) : -1;
        char *v = b == 1 ? dup_str("latest") : b == 0 ? dup_str("") : expand_home(s);
        if (!v) return rt_errorf(RT_EINTERNAL, "recipe: out of memory");
        free(*FIELD(char *, base, k));
        *FIELD(char *, base, k) = v;
        return RT_OK;
    }
    case KT_BOOL: {
        int b = s ? parse_bool(s) : -1;
        if (b < 0) return fail_expected(c, n, k, kp);
        *FIELD(bool, base, k) = b;
        return RT_OK;
    }
    case KT_INT:
    case KT_I64: {
        long long v;
        if (!s || !parse_ll(s, &v) || !in_range(k, (double)v)) return fail_expected(c, n, k, kp);
        if (k->type == KT_I64) {
            *FIELD(long long, base, k) = v;
        } else {
            if (v < INT_MIN || v > INT_MAX) return fail_expected(c, n, k, kp);
            *FIELD(int, base, k) = (int)v;
        }
        return RT_OK;
    }
    case KT_FLOAT: {
        double v;
        if (!s || !parse_double(s, &v) || !in_range(k, v)) return fail_expected(c, n, k, kp);
        *FIELD(double, base, k) = v;
        return RT_OK;
    }
    case KT_ENUM:
        if (s)
            for (int i = 0; k->values[i]; i++)
                if (!strcasecmp(s, k->values[i])) {
                    *FIELD(int, base, k) = i;
                    return RT_OK;
                }
        return fail_expected(c, n, k, kp);
    case KT_MODULES: {
        unsigned bits = 0;
        if (s) {
            if (!modules_from_text(s, &bits)) return fail_expected(c, n, k, kp);
        } else if (n->type == YAML_SEQUENCE_NODE) {
            for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
                const char *m = scalar(yaml_document_get_node(c->doc, *it));
                int b = m ? module_bit(m, strlen(m)) : 0;
                if (!b) return fail_expected(c, yaml_document_get_node(c->doc, *it), k, kp);
                bits |= (unsigned)b;
            }
        } else {
            return fail_expected(c, n, k, kp);
        }
        *FIELD(unsigned, base, k) = bits;
        return RT_OK;
    }
    case KT_FLAGS: {
        unsigned bits = 0;
        bool seq = n->type == YAML_SEQUENCE_NODE;
        yaml_node_item_t *it = seq ? n->data.sequence.items.start : NULL;
        for (yaml_node_t *e = seq ? NULL : n;;) {
            if (seq) {
                if (it >= n->data.sequence.items.top) break;
                e = yaml_document_get_node(c->doc, *it++);
            }
            const char *v = scalar(e);
            int b = -1;
            for (int i = 0; v && k->values[i]; i++)
                if (!strcasecmp(v, k->values[i])) b = i;
            if (b < 0) return fail_expected(c, e, k, kp);
            bits |= 1u << b;
            if (!seq) break;
        }
        *FIELD(unsigned, base, k) = bits;
        return RT_OK;
    }
    case KT_DATASETS: return apply_datasets(c, k, base, n, kp);
    case KT_INTS: return apply_ints(c, k, base, n, kp);
    case KT_MAP:
        if (n->type != YAML_MAPPING_NODE) return fail_expected(c, n, k, kp);
        return apply_map(c, k->sub, FIELD(char, base, k), n, kp, NULL);
    case KT_ALIAS: break;
    }
    return rt_errorf(RT_EINTERNAL, "recipe: key '%s' has no applier", k->name);
}

/* --------------------------------------------------------- axolotl keys -- */

typedef enum { RT_AXK_IMPLEMENTED = 0, RT_AXK_INERT, RT_AXK_UNSUPPORTED } axk_class;
typedef struct {
    const char *name;
    axk_class cls;
    const char *unset; /* a value accepted as "not asking for it" besides null/false/empty */
    const char *hint;
} axolotl_key_def;

static const axolotl_key_def axolotl_keys[] = {
#include "train/recipe_axolotl_keys.h"
    {NULL, 0, NULL, NULL},
};

/* Whether node n asks for nothing: null, false, an empty list or map, or
 * the given axolotl default. */
static bool value_unset(const yaml_node_t *n, const char *unset) {
    if (is_null(n)) return true;
    if (n->type == YAML_SEQUENCE_NODE) return n->data.sequence.items.top == n->data.sequence.items.start;
    if (n->type == YAML_MAPPING_NODE) return n->data.mapping.pairs.top == n->data.mapping.pairs.start;
    const char *s = scalar(n);
    return s && (parse_bool(s) == 0 || (unset && !strcasecmp(s, unset)));
}

/* A top-level key that retort does not parse but axolotl defines: inert
 * keys are remembered for the note, unsupported ones are an error unless
 * unset. Returns false when name is not an axolotl key (or is implemented,
 * i.e. in main_keys). */
static bool axolotl_key(const src_ctx *c, rt_recipe *r, const char *name, const yaml_node_t *kn,
                        const yaml_node_t *vn, rt_status *st) {
    *st = RT_OK;
    for (const axolotl_key_def *a = axolotl_keys; a->name; a++) {
        if (strcmp(a->name, name) != 0) continue;
        if (a->cls == RT_AXK_IMPLEMENTED) return false;
        if (value_unset(vn, a->unset)) return true;
        if (a->cls == RT_AXK_UNSUPPORTED) {
            *st = fail(c, kn, "'%s' is an axolotl key retort does not support: %s", name, a->hint);
        } else if (r->n_inert_ < (int)(sizeof r->inert_ / sizeof r->inert_[0])) {
            bool dup = false;
            for (int i = 0; i < r->n_inert_; i++) dup |= r->inert_[i] == (short)(a - axolotl_keys);
            if (!dup) r->inert_[r->n_inert_++] = (short)(a - axolotl_keys);
        }
        return true;
    }
    return false;
}

static rt_status apply_map(const src_ctx *c, const key_def *table, void *base, yaml_node_t *map,
                           const char *kp, unsigned char *set_flags) {
    yaml_node_pair_t *p0 = map->data.mapping.pairs.start, *top = map->data.mapping.pairs.top;
    for (yaml_node_pair_t *p = p0; p < top; p++) {
        yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(c->doc, p->value);
        const char *name = scalar(kn);
        if (!name) return fail(c, kn, "%s%skeys must be plain names", kp, *kp ? ": " : "");
        for (yaml_node_pair_t *q = p0; q < p; q++) {
            const char *prev = scalar(yaml_document_get_node(c->doc, q->key));
            if (prev && !strcmp(prev, name))
                return fail(c, kn, "duplicate key '%.80s' (first at line %lu)", name,
                            (unsigned long)yaml_document_get_node(c->doc, q->key)->start_mark.line + 1);
        }
        const key_def *k = find_key(table, name);
        if (!k && table == main_keys) {
            rt_status as;
            if (axolotl_key(c, (rt_recipe *)base, name, kn, vn, &as)) {
                RT_TRY(as);
                continue;
            }
        }
        if (!k) return fail_unknown(c, kn, table, name, kp);
        char sub_kp[160];
        snprintf(sub_kp, sizeof sub_kp, "%s%s%s", kp, *kp ? "." : "", name);
        RT_TRY(apply_node(c, k, base, vn ? vn : kn, sub_kp));
        if (set_flags) set_flags[k - table] = 1;
    }
    return RT_OK;
}

static rt_status yaml_problem(const src_ctx *c, const yaml_parser_t *p) {
    const char *what = p->problem ? p->problem : "unknown error";
    char ctx_txt[128] = "";
    if (p->context) snprintf(ctx_txt, sizeof ctx_txt, " %s", p->context);
    if (c->file)
        return rt_errorf(RT_EINPUT, "%s:%lu: malformed YAML: %s%s", c->file,
                         (unsigned long)p->problem_mark.line + 1, what, ctx_txt);
    return rt_errorf(RT_EINPUT, "override '%s': malformed YAML value: %s%s", c->override, what, ctx_txt);
}

/* ------------------------------------------------------------ load, set -- */

/* Bounded work for a hostile recipe: the text is read under a size cap, and
 * its nesting is measured with libyaml's event parser before the document
 * is built (the loader and the scanner cost time quadratic in the depth:
 * 100 KB of '[' took 41 s), stopping at the first event past the cap. */
static rt_status check_depth(const char *path, const char *text, size_t len) {
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) return rt_errorf(RT_EINTERNAL, "%s: cannot initialize the YAML parser", path);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    rt_status st = RT_OK;
    for (int depth = 0; st == RT_OK;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) break; /* the loader reports syntax errors */
        yaml_event_type_t t = ev.type;
        unsigned long line = (unsigned long)ev.start_mark.line + 1;
        yaml_event_delete(&ev);
        if (t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT) depth++;
        if (t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT) depth--;
        if (depth > RT_RECIPE_MAX_DEPTH)
            st = rt_errorf(RT_EINPUT, "%s:%lu: nested deeper than %d levels (a recipe needs 3)", path, line,
                           RT_RECIPE_MAX_DEPTH);
        if (t == YAML_STREAM_END_EVENT) break;
    }
    yaml_parser_delete(&p);
    return st;
}

/* A recipe is one YAML document: keys after a '---' would be ignored. */
static rt_status check_one_document(const char *path, yaml_parser_t *parser) {
    yaml_document_t next;
    if (!yaml_parser_load(parser, &next)) return RT_OK; /* the first document was fine */
    yaml_node_t *root = yaml_document_get_root_node(&next);
    unsigned long line = root ? (unsigned long)root->start_mark.line + 1 : 0;
    yaml_document_delete(&next);
    if (!root) return RT_OK;
    return rt_errorf(RT_EINPUT, "%s:%lu: a second YAML document (after '---'); a recipe is one document",
                     path, line);
}

rt_status rt_recipe_load(const char *path, rt_recipe *r) {
    RT_TRY(rt_recipe_init(r));
    char *text = NULL;
    size_t len = 0;
    rt_status st = rt_read_file_max(path, "recipe", RT_CONFIG_FILE_MAX, &text, &len);
    if (st == RT_OK) st = check_depth(path, text, len);
    if (st != RT_OK) {
        free(text);
        rt_recipe_free(r);
        return st;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    src_ctx c = {path, NULL, &doc};
    if (!yaml_parser_initialize(&parser)) {
        free(text);
        rt_recipe_free(r);
        return rt_errorf(RT_EINTERNAL, "%s: cannot initialize the YAML parser", path);
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        st = yaml_problem(&c, &parser);
    } else {
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (!root)
            st = rt_errorf(RT_EINPUT, "%s: empty recipe (expected a mapping of keys)", path);
        else if (root->type != YAML_MAPPING_NODE)
            st = fail(&c, root, "expected a mapping of keys at the top level");
        else
            st = apply_map(&c, main_keys, r, root, "", r->set_);
        yaml_document_delete(&doc);
        if (st == RT_OK) st = check_one_document(path, &parser);
    }
    yaml_parser_delete(&parser);
    free(text);
    if (st != RT_OK) rt_recipe_free(r);
    return st;
}

static rt_status set_path(const src_ctx *c, rt_recipe *r, char *key, yaml_node_t *val) {
    const key_def *table = main_keys;
    void *base = r;
    char kp[160] = "";
    for (char *seg = key, *next; seg; seg = next) {
        next = strchr(seg, '.');
        if (next) *next++ = '\0';
        const key_def *k = find_key(table, seg);
        rt_status as;
        if (!k && table == main_keys && !next && axolotl_key(c, r, seg, NULL, val, &as)) return as;
        if (!k) return fail_unknown(c, NULL, table, seg, kp);
        if (table == main_keys) r->set_[k - main_keys] = 1;
        append(kp, sizeof kp, "%s%s", *kp ? "." : "", seg);
        if (!next) return apply_node(c, k, base, val, kp);
        if (k->type == KT_MAP) {
            table = k->sub;
            base = FIELD(char, base, k);
        } else if (k->type == KT_DATASETS) {
            rt_recipe_datasets *l = FIELD(rt_recipe_datasets, base, k);
            seg = next;
            next = strchr(seg, '.');
            if (next) *next++ = '\0';
            long long idx;
            if (!parse_ll(seg, &idx) || idx < 0 || idx > l->count)
                return fail(c, NULL, "%s: index '%s' out of range (%d entries; %d appends one)", kp,
                            seg, l->count, l->count);
            if (idx == l->count) {
                rt_recipe_dataset *grown = realloc(l->items, (size_t)(l->count + 1) * sizeof *grown);
                if (!grown) return rt_errorf(RT_EINTERNAL, "recipe: out of memory");
                l->items = grown;
                memset(&l->items[l->count], 0, sizeof *grown);
                l->count++;
                RT_TRY(reset_table(k->sub, &l->items[idx]));
            }
            append(kp, sizeof kp, ".%s", seg);
            table = k->sub;
            base = &l->items[idx];
            if (!next) { /* "datasets.0={path: x}" replaces the entry */
                if (is_null(val)) return reset_table(table, base);
                if (val->type != YAML_MAPPING_NODE) return fail_expected(c, val, k, kp);
                free_table(table, base);
                memset(base, 0, sizeof(rt_recipe_dataset));
                RT_TRY(reset_table(table, base));
                return apply_map(c, table, base, val, kp, NULL);
            }
        } else {
            return fail(c, NULL, "%s has no sub-keys (it is not a map or a list)", kp);
        }
    }
    return RT_OK;
}

rt_status rt_recipe_set(rt_recipe *r, const char *key_eq_value) {
    src_ctx c = {NULL, key_eq_value, NULL};
    const char *eq = strchr(key_eq_value, '=');
    if (!eq || eq == key_eq_value) return fail(&c, NULL, "expected key=value");
    size_t klen = (size_t)(eq - key_eq_value);
    char key[160];
    if (klen >= sizeof key) return fail(&c, NULL, "key too long");
    memcpy(key, key_eq_value, klen);
    key[klen] = '\0';
    const char *value = eq + 1;

    yaml_parser_t parser;
    yaml_document_t doc;
    c.doc = &doc;
    if (!yaml_parser_initialize(&parser))
        return rt_errorf(RT_EINTERNAL, "recipe: cannot initialize the YAML parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)value, strlen(value));
    rt_status st;
    if (!yaml_parser_load(&parser, &doc)) {
        st = yaml_problem(&c, &parser);
    } else {
        st = set_path(&c, r, key, yaml_document_get_root_node(&doc));
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    return st;
}

/* ------------------------------------------------------------- validate -- */

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static bool was_set(const rt_recipe *r, const char *name) {
    const key_def *k = find_key(main_keys, name);
    return k && r->set_[k - main_keys];
}

static rt_status validate_datasets(const rt_recipe *r, const rt_recipe_datasets *l, const char *name) {
    for (int i = 0; i < l->count; i++) {
        const rt_recipe_dataset *d = &l->items[i];
        if (!*d->path) return rt_errorf(RT_EINPUT, "%s.%d.path: required (a data file)", name, i);
        if (d->shards_idx >= d->shards)
            return rt_errorf(RT_EINPUT, "%s.%d.shards_idx: %d, but there are only %d shards (0..%d)", name, i,
                             d->shards_idx, d->shards, d->shards - 1);
        if (d->type == RT_RECIPE_DS_TEACHER_GENERATE && !*r->teacher_model)
            return rt_errorf(RT_EINPUT, "%s.%d.type: teacher_generate needs teacher_model", name, i);
        if ((d->type == RT_RECIPE_DS_JSONL || d->type == RT_RECIPE_DS_COMPLETION) && !*d->field)
            return rt_errorf(RT_EINPUT, "%s.%d.field: required for type %s", name, i, ds_type_names[d->type]);
    }
    return RT_OK;
}

static rt_status validate_student(rt_recipe_student *s) {
    if (!s->hidden_size && !s->intermediate_size && !s->num_hidden_layers &&
        !s->num_attention_heads && !s->num_key_value_heads)
        return RT_OK;
    if (!s->hidden_size || !s->intermediate_size || !s->num_hidden_layers || !s->num_attention_heads)
        return rt_errorf(RT_EINPUT, "student_config: needs hidden_size, intermediate_size, "
                                    "num_hidden_layers and num_attention_heads");
    if (!s->num_key_value_heads) s->num_key_value_heads = s->num_attention_heads;
    if (s->hidden_size % s->num_attention_heads)
        return rt_errorf(RT_EINPUT, "student_config: hidden_size %d is not a multiple of num_attention_heads %d",
                         s->hidden_size, s->num_attention_heads);
    if ((s->hidden_size / s->num_attention_heads) % 2)
        return rt_errorf(RT_EINPUT, "student_config: head size %d (hidden_size / num_attention_heads) "
                                    "must be even for RoPE", s->hidden_size / s->num_attention_heads);
    if (s->num_key_value_heads > s->num_attention_heads || s->num_attention_heads % s->num_key_value_heads)
        return rt_errorf(RT_EINPUT, "student_config: num_attention_heads %d is not a multiple of "
                                    "num_key_value_heads %d", s->num_attention_heads, s->num_key_value_heads);
    return RT_OK;
}

/* Values the key table's closed ranges let through but training cannot use:
 * AdamW needs beta < 1 (its bias correction divides by 1 - beta^t), and a
 * dropout of 1 zeroes the adapter's input (torch's Dropout(p=1)). */
static rt_status validate_open_ranges(const rt_recipe *r) {
    if (r->adam_beta1 >= 1)
        return rt_errorf(RT_EINPUT, "adam_beta1: must be < 1 (AdamW divides by 1 - beta1^t), got %g", r->adam_beta1);
    if (r->adam_beta2 >= 1)
        return rt_errorf(RT_EINPUT, "adam_beta2: must be < 1 (AdamW divides by 1 - beta2^t), got %g", r->adam_beta2);
    if (r->lora_dropout >= 1)
        return rt_errorf(RT_EINPUT, "lora_dropout: must be < 1 (1 drops every input), got %g", r->lora_dropout);
    return RT_OK;
}

/* axolotl keys that map onto retort's (docs/axolotl-keys.md). */
static rt_status validate_axolotl(rt_recipe *r) {
    if (r->lora_target_linear) r->lora_target_modules = RT_RECIPE_MOD_ALL_LINEAR;
    if (r->optimizer > RT_RECIPE_OPT_SGD) {
        const char *name = opt_names[r->optimizer];
        r->optimizer_given_ = strstr(name, "8bit") || strstr(name, "paged") ? name : NULL;
        r->optimizer = RT_RECIPE_OPT_ADAMW;
    }
    if (r->lr_scheduler == 3) r->lr_scheduler = RT_RECIPE_SCHED_CONSTANT; /* constant_with_warmup */
    if (r->group_by_length)
        return rt_errorf(RT_EINPUT, "group_by_length: true is not supported (retort batches in a seeded "
                         "shuffle; use sample_packing to fill rows)");
    if (!r->save_safetensors)
        return rt_errorf(RT_EINPUT, "save_safetensors: false is not supported (adapters are safetensors)");
    if (r->eval_strategy == RT_RECIPE_STRATEGY_EPOCH && !r->evals_per_epoch) r->evals_per_epoch = 1;
    if (r->save_strategy == RT_RECIPE_STRATEGY_EPOCH && !r->saves_per_epoch) r->saves_per_epoch = 1;
    if (r->eval_strategy == RT_RECIPE_STRATEGY_NO) r->eval_steps = 0, r->evals_per_epoch = 0;
    if (r->save_strategy == RT_RECIPE_STRATEGY_NO) r->save_steps = 0, r->saves_per_epoch = 0;
    if (r->evals_per_epoch && r->eval_steps)
        return rt_errorf(RT_EINPUT, "eval_steps and evals_per_epoch are both set; use one");
    if (r->saves_per_epoch && r->save_steps)
        return rt_errorf(RT_EINPUT, "save_steps and saves_per_epoch are both set; use one");
    return RT_OK;
}

void rt_recipe_print_notes(const rt_recipe *r, bool on_cpu, FILE *f) {
    if (r->n_inert_ > 0) {
        fprintf(f, "retort: note: accepted, no effect here (docs/axolotl-keys.md):");
        for (int i = 0; i < r->n_inert_; i++) fprintf(f, "%s %s", i ? "," : "", axolotl_keys[r->inert_[i]].name);
        fputc('\n', f);
    }
    if (on_cpu && (r->bf16 || r->fp16 || r->tf32))
        fprintf(f, "retort: note: %s%s%s on the CPU: training runs in f32\n", r->bf16 == 2 ? "bf16: auto" :
                r->bf16 ? "bf16" : "", r->fp16 ? (r->bf16 ? ", fp16" : "fp16") : "",
                r->tf32 ? (r->bf16 || r->fp16 ? ", tf32" : "tf32") : "");
    if (r->optimizer_given_)
        fprintf(f, "retort: note: optimizer %s runs as retort's AdamW (f32 state, no paging)\n",
                r->optimizer_given_);
}

/* Meanings for `retort finetune --help` (keys of main_keys). */
static const struct {
    const char *name, *help;
} key_help[] = {
    {"base_model", "Hugging Face model directory or llama2.c .bin to fine-tune"},
    {"tokenizer", "tokenizer.json/tokenizer.bin path (default: the model directory)"},
    {"load_in_4bit", "quantize the frozen base to 4-bit NF4 (QLoRA)"},
    {"bnb_4bit_quant_type", "4-bit data type (bitsandbytes)"},
    {"bnb_4bit_use_double_quant", "quantize the absmax constants too (bitsandbytes double quant)"},
    {"bnb_4bit_blocksize", "NF4 block size"},
    {"adapter", "none, lora, or qlora (LoRA on a 4-bit base)"},
    {"lora_r", "rank of the LoRA matrices"},
    {"lora_alpha", "LoRA scale numerator (scale = alpha / r)"},
    {"lora_dropout", "dropout on the LoRA input"},
    {"lora_target_modules", "projections that get LoRA adapters"},
    {"use_rslora", "rank-stabilized scale alpha / sqrt(r)"},
    {"datasets", "training data files (type: text, jsonl, alpaca, chat_template, sharegpt, completion, input_output, teacher_generate)"},
    {"test_datasets", "held-out data files (instead of val_set_size)"},
    {"val_set_size", "fraction (< 1) or count of examples held out for evaluation"},
    {"chat_template", "template for chat datasets; empty: the tokenizer's own"},
    {"train_on_inputs", "train prompt tokens too (alpaca, chat datasets)"},
    {"sequence_len", "tokens per row"},
    {"sample_packing", "pack several examples per row"},
    {"micro_batch_size", "rows per micro-batch"},
    {"gradient_accumulation_steps", "micro-batches per optimizer step"},
    {"num_epochs", "passes over the training rows (unless max_steps)"},
    {"max_steps", "optimizer steps; -1: from num_epochs"},
    {"learning_rate", "peak learning rate"},
    {"lr_scheduler", "learning-rate schedule after warmup"},
    {"warmup_steps", "linear warmup steps"},
    {"warmup_ratio", "warmup as a fraction of all steps"},
    {"weight_decay", "decoupled weight decay (AdamW)"},
    {"max_grad_norm", "clip the global gradient norm; 0: no clipping"},
    {"optimizer", "adamw or sgd (axolotl's AdamW names run retort's AdamW)"},
    {"adam_beta1", "AdamW beta1"},
    {"adam_beta2", "AdamW beta2"},
    {"adam_epsilon", "AdamW epsilon"},
    {"momentum", "SGD momentum"},
    {"seed", "seed of the data order, split, dropout and init"},
    {"output_dir", "where the adapter, checkpoints, metrics.jsonl and loss.svg go"},
    {"logging_steps", "print the train loss every N steps"},
    {"eval_steps", "evaluate every N steps (0: first and last only)"},
    {"save_steps", "checkpoint every N steps (0: never)"},
    {"save_total_limit", "checkpoints kept (0: all)"},
    {"gradient_checkpointing", "recompute activations in backward to save memory"},
    {"resume_from_checkpoint", "checkpoint directory to resume from (true: the latest)"},
    {"device", "cpu, cuda or auto"},
    {"bf16", "CUDA: bf16 mixed precision; CPU: f32 (a note)"},
    {"zero_stage", "1: shard the optimizer state across MPI ranks"},
    {"teacher_model", "distillation teacher (model dir or .bin)"},
    {"teacher_tokenizer", "teacher's tokenizer (default: tokenizer)"},
    {"teacher_load_in_4bit", "quantize the teacher to NF4"},
    {"kd_ratio", "weight of the KD loss against CE"},
    {"kd_loss", "distillation divergence"},
    {"kd_beta", "JSD mixture weight"},
    {"kd_temperature", "softmax temperature of both models"},
    {"kd_top_k", "KD on the teacher's top-k logits (0: full vocabulary)"},
    {"teacher_logits", "online (teacher runs each step) or cache (precomputed top-k)"},
    {"teacher_cache_dir", "where the teacher's cached top-k logits go"},
    {"student_config", "a new student's shape (distillation)"},
    {"student_model", "an existing student model (distillation)"},
    {"fp16", "CUDA: fp16 mixed precision; CPU: f32 (a note)"},
    {"tf32", "CUDA: TF32 matmuls; CPU: f32 (a note)"},
    {"lora_target_linear", "true: LoRA on every linear projection (all-linear)"},
    {"special_tokens", "bos/eos: the tokenizer's own BOS/EOS; unk/pad: tokens of it (no tokens are added)"},
    {"evals_per_epoch", "evaluations per epoch (instead of eval_steps)"},
    {"saves_per_epoch", "checkpoints per epoch (instead of save_steps)"},
    {"eval_strategy", "steps, epoch or no"},
    {"save_strategy", "steps, epoch or no"},
    {"group_by_length", "false only"},
    {"loss_watchdog_threshold", "stop when the train loss stays above this (0: off)"},
    {"loss_watchdog_patience", "steps in a row above the threshold before stopping"},
    {"eval_sample_packing", "accepted; the validation rows are packed when sample_packing is"},
    {"pad_to_sequence_len", "accepted; batches are always [micro_batch_size, sequence_len]"},
    {"save_safetensors", "true only (adapters are safetensors)"},
    {"strict", "accepted; every key is always checked"},
    {NULL, NULL},
};

static const char *help_of(const char *name) {
    for (int i = 0; key_help[i].name; i++)
        if (!strcmp(key_help[i].name, name)) return key_help[i].help;
    return NULL;
}

void rt_recipe_print_keys(FILE *f) {
    char buf[512];
    for (const key_def *k = main_keys; k->name; k++) {
        if (k->type == KT_ALIAS) {
            fprintf(f, "  %-28s same as %s\n", k->name, k->def_s);
            continue;
        }
        describe(k, buf, sizeof buf);
        fprintf(f, "  %-28s %s", k->name, buf);
        switch (k->type) {
        case KT_STR: if (k->def_s && *k->def_s) fprintf(f, " [%s]", k->def_s); break;
        case KT_BOOL: fprintf(f, " [%s]", k->def_i ? "true" : "false"); break;
        case KT_INT:
        case KT_I64: fprintf(f, " [%lld]", k->def_i); break;
        case KT_FLOAT: fprintf(f, " [%g]", k->def_f); break;
        case KT_ENUM: fprintf(f, " [%s]", k->values[k->def_i]); break;
        default: break;
        }
        const char *h = k->help ? k->help : help_of(k->name);
        if (h) fprintf(f, "\n  %-28s   %s", "", h);
        fputc('\n', f);
    }
}

rt_status rt_recipe_validate(rt_recipe *r) {
    RT_TRY(validate_open_ranges(r));
    bool distill = *r->teacher_model != '\0';
    bool from_teacher = r->student_init == RT_RECIPE_STUDENT_TEACHER_LAYERS;
    bool has_student = r->student_config.hidden_size || r->student_config.num_hidden_layers || from_teacher;
    if (!*r->base_model && !distill)
        return rt_errorf(RT_EINPUT, "base_model: required (a Hugging Face model directory or a llama2.c .bin)");
    if (!*r->base_model && !has_student && !*r->student_model)
        return rt_errorf(RT_EINPUT, "base_model: required unless student_model or student_config gives the student");
    if (ends_with(r->base_model, ".bin") && !*r->tokenizer)
        return rt_errorf(RT_EINPUT, "tokenizer: required when base_model is a llama2.c .bin (%s)", r->base_model);
    if (ends_with(r->student_model, ".bin") && !*r->tokenizer)
        return rt_errorf(RT_EINPUT, "tokenizer: required when student_model is a llama2.c .bin (%s)", r->student_model);
    if (ends_with(r->teacher_model, ".bin") && !*r->teacher_tokenizer) {
        if (!*r->tokenizer)
            return rt_errorf(RT_EINPUT, "teacher_tokenizer: required when teacher_model is a llama2.c .bin (%s)",
                             r->teacher_model);
        char *t = dup_str(r->tokenizer);
        if (!t) return rt_errorf(RT_EINTERNAL, "recipe: out of memory");
        free(r->teacher_tokenizer);
        r->teacher_tokenizer = t;
    }

    if (r->adapter == RT_RECIPE_ADAPTER_QLORA) {
        if (!r->load_in_4bit && was_set(r, "load_in_4bit"))
            return rt_errorf(RT_EINPUT, "load_in_4bit: adapter qlora needs a 4-bit base (load_in_4bit: true)");
        r->load_in_4bit = true;
    } else if (r->load_in_4bit) {
        if (r->adapter == RT_RECIPE_ADAPTER_NONE)
            return rt_errorf(RT_EINPUT, "load_in_4bit: a 4-bit base is frozen; set adapter: qlora");
        r->adapter = RT_RECIPE_ADAPTER_QLORA; /* LoRA on a 4-bit base is QLoRA */
    }
    RT_TRY(validate_axolotl(r));
    if (r->adapter != RT_RECIPE_ADAPTER_NONE && !r->lora_target_modules)
        return rt_errorf(RT_EINPUT, "lora_target_modules: empty; name at least one projection or all-linear");

    if (r->datasets.count == 0)
        return rt_errorf(RT_EINPUT, "datasets: required (a list of maps with at least a path)");
    RT_TRY(validate_datasets(r, &r->datasets, "datasets"));
    RT_TRY(validate_datasets(r, &r->test_datasets, "test_datasets"));
    if (r->test_datasets.count > 0) {
        if (was_set(r, "val_set_size") && r->val_set_size > 0)
            return rt_errorf(RT_EINPUT, "val_set_size: set to 0 when test_datasets gives the eval set");
        r->val_set_size = 0;
    }
    if (r->val_set_size >= 1 && r->val_set_size != floor(r->val_set_size))
        return rt_errorf(RT_EINPUT, "val_set_size: expected a fraction < 1 or a whole count, got %g", r->val_set_size);

    if (r->max_steps == 0)
        return rt_errorf(RT_EINPUT, "max_steps: expected -1 (from num_epochs) or an integer >= 1, got 0");
    if (r->warmup_steps > 0 && r->warmup_ratio > 0)
        return rt_errorf(RT_EINPUT, "warmup_steps (%d) and warmup_ratio (%g) are both set; use one",
                         r->warmup_steps, r->warmup_ratio);

    if (*r->student_model && (has_student || r->student_config.num_attention_heads))
        return rt_errorf(RT_EINPUT, "student_config and student_model are both set; use one");
    if (from_teacher) {
        const rt_recipe_student *sc = &r->student_config;
        if (!distill) return rt_errorf(RT_EINPUT, "student_init: teacher_layers needs teacher_model");
        if (r->student_layers.count == 0)
            return rt_errorf(RT_EINPUT, "student_layers: student_init teacher_layers needs the list of teacher "
                                        "layers to copy (e.g. [0, 2, 4])");
        if (sc->num_hidden_layers && sc->num_hidden_layers != r->student_layers.count)
            return rt_errorf(RT_EINPUT, "student_config.num_hidden_layers: %d, but student_layers lists %d layers",
                             sc->num_hidden_layers, r->student_layers.count);
        if (r->adapter != RT_RECIPE_ADAPTER_NONE)
            return rt_errorf(RT_EINPUT, "adapter: a student initialised from teacher layers trains every weight; "
                                        "set adapter: none");
    } else {
        if (r->student_layers.count)
            return rt_errorf(RT_EINPUT, "student_layers: only used with student_init: teacher_layers");
        RT_TRY(validate_student(&r->student_config));
    }
    if (r->teacher_logits == RT_RECIPE_TEACHER_CACHE && !*r->teacher_cache_dir)
        return rt_errorf(RT_EINPUT, "teacher_cache_dir: required when teacher_logits is cache");
    return RT_OK;
}

/* ----------------------------------------------------------------- save -- */

static int emit(yaml_emitter_t *e, yaml_event_t *ev) { return yaml_emitter_emit(e, ev); }

static int emit_scalar(yaml_emitter_t *e, const char *s, bool is_string) {
    yaml_event_t ev;
    /* Strings that would read back as null or a boolean are quoted. */
    yaml_scalar_style_t style = YAML_ANY_SCALAR_STYLE;
    if (is_string) {
        const char *t = s;
        if (!*t || parse_bool(t) >= 0 || !strcmp(t, "~") || !strcasecmp(t, "null"))
            style = YAML_SINGLE_QUOTED_SCALAR_STYLE;
    }
    return yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)strlen(s), 1, 1, style) &&
           emit(e, &ev);
}

static int emit_seq_start(yaml_emitter_t *e, bool flow) {
    yaml_event_t ev;
    return yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                                flow ? YAML_FLOW_SEQUENCE_STYLE : YAML_BLOCK_SEQUENCE_STYLE) &&
           emit(e, &ev);
}

static int emit_seq_end(yaml_emitter_t *e) {
    yaml_event_t ev;
    return yaml_sequence_end_event_initialize(&ev) && emit(e, &ev);
}

static int emit_map_start(yaml_emitter_t *e) {
    yaml_event_t ev;
    return yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE) && emit(e, &ev);
}

static int emit_map_end(yaml_emitter_t *e) {
    yaml_event_t ev;
    return yaml_mapping_end_event_initialize(&ev) && emit(e, &ev);
}

/* Shortest "%g" text that reads back as exactly v. */
static void fmt_double(double v, char *buf, size_t cap) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

static int emit_table(yaml_emitter_t *e, const key_def *table, const void *base);

static int emit_value(yaml_emitter_t *e, const key_def *k, const void *base) {
    char buf[64];
    void *b = (void *)base; /* FIELD casts away const; nothing is written */
    switch (k->type) {
    case KT_STR:
    case KT_PATH_OR_BOOL: return emit_scalar(e, *FIELD(char *, b, k), true);
    case KT_BOOL: return emit_scalar(e, *FIELD(bool, b, k) ? "true" : "false", false);
    case KT_INT: snprintf(buf, sizeof buf, "%d", *FIELD(int, b, k)); return emit_scalar(e, buf, false);
    case KT_I64: snprintf(buf, sizeof buf, "%lld", *FIELD(long long, b, k)); return emit_scalar(e, buf, false);
    case KT_FLOAT: fmt_double(*FIELD(double, b, k), buf, sizeof buf); return emit_scalar(e, buf, false);
    case KT_ENUM: return emit_scalar(e, k->values[*FIELD(int, b, k)], false);
    case KT_MODULES: {
        unsigned bits = *FIELD(unsigned, b, k);
        if (bits == RT_RECIPE_MOD_ALL_LINEAR) return emit_scalar(e, "all-linear", false);
        if (!emit_seq_start(e, true)) return 0;
        for (int i = 0; i < RT_RECIPE_N_MODULES; i++)
            if ((bits >> i & 1u) && !emit_scalar(e, rt_recipe_module_names[i], false)) return 0;
        return emit_seq_end(e);
    }
    case KT_DATASETS: {
        const rt_recipe_datasets *l = FIELD(rt_recipe_datasets, b, k);
        if (!emit_seq_start(e, l->count == 0)) return 0;
        for (int i = 0; i < l->count; i++)
            if (!emit_table(e, k->sub, &l->items[i])) return 0;
        return emit_seq_end(e);
    }
    case KT_FLAGS: {
        unsigned bits = *FIELD(unsigned, b, k);
        if (!emit_seq_start(e, true)) return 0;
        for (int i = 0; k->values[i]; i++)
            if ((bits >> i & 1u) && !emit_scalar(e, k->values[i], false)) return 0;
        return emit_seq_end(e);
    }
    case KT_MAP: return emit_table(e, k->sub, FIELD(char, b, k));
    case KT_INTS: {
        const rt_recipe_ints *l = FIELD(rt_recipe_ints, b, k);
        if (!emit_seq_start(e, true)) return 0;
        for (int i = 0; i < l->count; i++) {
            snprintf(buf, sizeof buf, "%d", l->items[i]);
            if (!emit_scalar(e, buf, false)) return 0;
        }
        return emit_seq_end(e);
    }
    case KT_ALIAS: break;
    }
    return 0;
}

static int emit_table(yaml_emitter_t *e, const key_def *table, const void *base) {
    if (!emit_map_start(e)) return 0;
    for (const key_def *k = table; k->name; k++) {
        if (k->type == KT_ALIAS) continue;
        /* a student size not given (0) stays out: 0 is below its minimum */
        if (table == student_keys && k->type == KT_INT && *FIELD(int, (void *)base, k) == 0) continue;
        if (k->type == KT_MAP) { /* an unused student_config is left out */
            const rt_recipe_student *s = (const rt_recipe_student *)((const char *)base + k->off);
            if (k->sub == student_keys && !s->hidden_size && !s->intermediate_size &&
                !s->num_hidden_layers && !s->num_attention_heads && !s->num_key_value_heads)
                continue;
        }
        if (!emit_scalar(e, k->name, false) || !emit_value(e, k, base)) return 0;
    }
    return emit_map_end(e);
}

static rt_status save_stream(const rt_recipe *r, FILE *f, const char *path);

rt_status rt_recipe_save(const rt_recipe *r, const char *path) {
    FILE *f = fopen(path, "wb");
    if (!f) return rt_errorf(RT_EINPUT, "%s: cannot write recipe: %s", path, strerror(errno));
    return save_stream(r, f, path);
}

rt_status rt_recipe_fingerprint(const rt_recipe *r, uint32_t *fp) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return rt_errorf(RT_EINTERNAL, "recipe: out of memory");
    rt_status s = save_stream(r, f, "(recipe fingerprint)");
    if (s == RT_OK) *fp = (uint32_t)crc32(0L, (const Bytef *)text, (uInt)len);
    free(text);
    return s;
}

/* Writes the effective recipe to f and closes it. */
static rt_status save_stream(const rt_recipe *r, FILE *f, const char *path) {
    fputs("# Effective retort recipe (every key, defaults included).\n", f);
    yaml_emitter_t e;
    yaml_event_t ev;
    if (!yaml_emitter_initialize(&e)) {
        fclose(f);
        return rt_errorf(RT_EINTERNAL, "%s: cannot initialize the YAML emitter", path);
    }
    yaml_emitter_set_output_file(&e, f);
    yaml_emitter_set_unicode(&e, 1);
    yaml_emitter_set_width(&e, -1);
    int ok = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) && emit(&e, &ev) &&
             yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) && emit(&e, &ev) &&
             emit_table(&e, main_keys, r) && yaml_document_end_event_initialize(&ev, 1) &&
             emit(&e, &ev) && yaml_stream_end_event_initialize(&ev) && emit(&e, &ev) &&
             yaml_emitter_flush(&e);
    const char *problem = e.problem;
    yaml_emitter_delete(&e);
    int closed = fclose(f) == 0;
    if (!ok) return rt_errorf(RT_EINTERNAL, "%s: YAML emitter: %s", path, problem ? problem : "failed");
    if (!closed) return rt_errorf(RT_EINPUT, "%s: cannot write recipe: %s", path, strerror(errno));
    return RT_OK;
}
