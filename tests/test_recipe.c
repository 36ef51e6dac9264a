/* Tests for train/recipe.c: the shipped recipes, every default, overrides,
 * error messages (exact text where the brief fixes it), validation and a
 * save/load round trip. Expected values are the documented defaults and the
 * literal contents of the test YAML written here. */
#include "train/recipe.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

#include "tests/testutil.h"

static char files[32][512];
static int n_files;

/* Writes text to <tmpdir>/name and returns the path (static per call slot). */
static const char *write_tmp(const char *name, const char *text) {
    char *p = files[n_files++ % 32];
    snprintf(p, 512, "%s/%s", rt_test_tmpdir(), name);
    FILE *f = fopen(p, "wb");
    if (!f) { perror(p); exit(1); }
    fputs(text, f);
    fclose(f);
    return p;
}

static bool contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

/* Loads `text` as a recipe file; returns the status, message in rt_error_message(). */
static rt_status load_text(const char *text, rt_recipe *r) {
    rt_error_clear();
    return rt_recipe_load(write_tmp("t.yaml", text), r);
}

static void test_defaults(void) {
    rt_recipe r;
    CHECK(rt_recipe_init(&r) == RT_OK, "%s", rt_error_message());
    CHECK(!strcmp(r.base_model, "") && !strcmp(r.tokenizer, ""), "model paths empty");
    CHECK(r.load_in_4bit == false, "load_in_4bit");
    CHECK(r.bnb_4bit_quant_type == RT_RECIPE_QUANT_NF4, "quant type");
    CHECK(r.bnb_4bit_use_double_quant == true, "double quant");
    CHECK(r.bnb_4bit_blocksize == 64, "blocksize %d", r.bnb_4bit_blocksize);
    CHECK(r.adapter == RT_RECIPE_ADAPTER_LORA, "adapter");
    CHECK(r.lora_r == 8 && r.lora_alpha == 16 && r.lora_dropout == 0.05, "lora r/alpha/dropout");
    CHECK(r.lora_target_modules == (RT_RECIPE_MOD_Q_PROJ | RT_RECIPE_MOD_V_PROJ), "targets %#x",
          r.lora_target_modules);
    CHECK(r.use_rslora == false, "rslora");
    CHECK(r.datasets.count == 0 && r.datasets.items == NULL, "datasets empty");
    CHECK(r.test_datasets.count == 0, "test_datasets empty");
    CHECK(r.val_set_size == 0.05 && r.sequence_len == 256 && !r.sample_packing, "data");
    CHECK(r.micro_batch_size == 1 && r.gradient_accumulation_steps == 1, "batch");
    CHECK(r.num_epochs == 1 && r.max_steps == -1, "epochs/steps");
    CHECK(r.learning_rate == 2e-4 && r.lr_scheduler == RT_RECIPE_SCHED_COSINE, "lr");
    CHECK(r.warmup_steps == 0 && r.warmup_ratio == 0, "warmup");
    CHECK(r.weight_decay == 0 && r.max_grad_norm == 1.0, "wd/clip");
    CHECK(r.optimizer == RT_RECIPE_OPT_ADAMW, "optimizer");
    CHECK(r.adam_beta1 == 0.9 && r.adam_beta2 == 0.999 && r.adam_epsilon == 1e-8, "adam");
    CHECK(r.momentum == 0.9 && r.seed == 42, "momentum/seed");
    CHECK(!strcmp(r.output_dir, "./out"), "output_dir '%s'", r.output_dir);
    CHECK(r.logging_steps == 1 && r.eval_steps == 0 && r.save_steps == 0 && r.save_total_limit == 2,
          "steps");
    CHECK(!r.gradient_checkpointing && !strcmp(r.resume_from_checkpoint, ""), "ckpt");
    CHECK(r.device == RT_RECIPE_DEVICE_AUTO && !r.bf16 && r.zero_stage == 0, "device");
    CHECK(!strcmp(r.teacher_model, "") && !strcmp(r.teacher_tokenizer, "") && !r.teacher_load_in_4bit,
          "teacher");
    CHECK(r.kd_ratio == 0.5 && r.kd_loss == RT_RECIPE_KD_FORWARD_KL && r.kd_beta == 0.5, "kd");
    CHECK(r.kd_temperature == 1.0 && r.kd_top_k == 0 && r.teacher_logits == RT_RECIPE_TEACHER_ONLINE,
          "kd2");
    CHECK(!strcmp(r.teacher_cache_dir, "") && !strcmp(r.student_model, ""), "kd paths");
    CHECK(r.student_config.hidden_size == 0 && r.student_config.num_key_value_heads == 0 &&
              r.student_config.init_std == 0.02, "student_config");
    /* A dataset entry's defaults, through an append override. */
    CHECK(rt_recipe_set(&r, "datasets.0.path=a.txt") == RT_OK, "%s", rt_error_message());
    CHECK(r.datasets.count == 1, "appended");
    if (r.datasets.count == 1) {
        rt_recipe_dataset *d = &r.datasets.items[0];
        CHECK(!strcmp(d->path, "a.txt") && d->type == RT_RECIPE_DS_TEXT && !strcmp(d->field, "text"),
              "dataset basics");
        CHECK(d->num_samples == 64 && d->max_new_tokens == 128 && d->temperature == 1.0 &&
                  d->top_p == 0.9 && d->seed == 0, "dataset teacher_generate defaults");
    }
    rt_recipe_free(&r);
    printf("defaults: done\n");
}

static void check_shared_file(const char *rel_to_repo) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", RETORT_SOURCE_DIR, rel_to_repo);
    if (access(p, R_OK) != 0)
        SKIP("%s not present (shared material missing)", p);
    else
        CHECK(1, "exists");
}

static void test_shipped_recipes(void) {
    rt_recipe r;
    char p[1024];
    snprintf(p, sizeof p, "%s/recipes/stories260k-qlora-mobydick.yaml", RETORT_SOURCE_DIR);
    rt_status st = rt_recipe_load(p, &r);
    CHECK(st == RT_OK, "%s", rt_error_message());
    if (st == RT_OK) {
        CHECK(rt_recipe_validate(&r) == RT_OK, "%s", rt_error_message());
        CHECK(!strcmp(r.base_model, "../shared/models/stories260K/stories260K.bin"), "base %s", r.base_model);
        CHECK(!strcmp(r.tokenizer, "../shared/models/stories260K/tok512.bin"), "tok %s", r.tokenizer);
        CHECK(r.adapter == RT_RECIPE_ADAPTER_QLORA && r.load_in_4bit && r.bnb_4bit_use_double_quant,
              "qlora");
        CHECK(r.lora_r == 8 && r.lora_alpha == 16 && r.lora_dropout == 0.05, "lora");
        CHECK(r.lora_target_modules == RT_RECIPE_MOD_ALL_LINEAR, "all-linear");
        CHECK(r.datasets.count == 1, "1 dataset");
        if (r.datasets.count == 1) {
            CHECK(!strcmp(r.datasets.items[0].path, "../shared/data/moby-dick.txt"), "ds path");
            CHECK(r.datasets.items[0].type == RT_RECIPE_DS_TEXT, "ds type");
            check_shared_file(r.datasets.items[0].path);
        }
        check_shared_file(r.base_model);
        check_shared_file(r.tokenizer);
        CHECK(r.val_set_size == 0.05 && r.sequence_len == 256 && r.micro_batch_size == 8, "data");
        CHECK(r.gradient_accumulation_steps == 1 && r.max_steps == 300, "steps");
        CHECK(r.learning_rate == 3e-3 && r.lr_scheduler == RT_RECIPE_SCHED_COSINE && r.warmup_steps == 10,
              "lr");
        CHECK(r.eval_steps == 50 && r.logging_steps == 10 && r.seed == 42, "logging");
        CHECK(!strcmp(r.output_dir, "out/stories260k-qlora-mobydick"), "out %s", r.output_dir);
    }
    rt_recipe_free(&r);

    snprintf(p, sizeof p, "%s/recipes/stories260k-qlora-sotu-alpaca.yaml", RETORT_SOURCE_DIR);
    st = rt_recipe_load(p, &r);
    CHECK(st == RT_OK, "%s", rt_error_message());
    if (st == RT_OK) {
        CHECK(rt_recipe_validate(&r) == RT_OK, "%s", rt_error_message());
        CHECK(r.datasets.count == 1 && r.datasets.items[0].type == RT_RECIPE_DS_ALPACA, "alpaca");
        if (r.datasets.count == 1) {
            CHECK(!strcmp(r.datasets.items[0].path, "../shared/data/sotu-openings.alpaca.jsonl"), "path");
            check_shared_file(r.datasets.items[0].path);
        }
        CHECK(r.max_steps == 60 && r.adapter == RT_RECIPE_ADAPTER_QLORA, "steps/adapter");
        CHECK(!strcmp(r.output_dir, "out/stories260k-qlora-sotu-alpaca"), "out %s", r.output_dir);
    }
    rt_recipe_free(&r);

    /* the SmolLM2 distillation: a student from teacher layers, a shard of Moby-Dick; the
     * effective recipe (recipe.yaml in output_dir) loads back the same */
    snprintf(p, sizeof p, "%s/recipes/smollm2-135m-distill.yaml", RETORT_SOURCE_DIR);
    st = rt_recipe_load(p, &r);
    CHECK(st == RT_OK, "%s", rt_error_message());
    if (st == RT_OK) {
        CHECK(rt_recipe_validate(&r) == RT_OK, "%s", rt_error_message());
        CHECK(r.student_init == RT_RECIPE_STUDENT_TEACHER_LAYERS && r.student_layers.count == 3 &&
                  r.student_layers.items[0] == 0 && r.student_layers.items[1] == 14 && r.student_layers.items[2] == 28,
              "student_layers");
        CHECK(r.student_config.intermediate_size == 512 && r.adapter == RT_RECIPE_ADAPTER_NONE, "student");
        CHECK(r.datasets.count == 1 && r.datasets.items[0].shards == 16 && r.datasets.items[0].shards_idx == 0,
              "shards");
        if (r.datasets.count == 1) check_shared_file(r.datasets.items[0].path);
        CHECK(r.teacher_logits == RT_RECIPE_TEACHER_CACHE && r.kd_top_k == 32, "cache");
        char out[700];
        snprintf(out, sizeof out, "%s/smollm2-effective.yaml", rt_test_tmpdir());
        rt_recipe back;
        st = rt_recipe_save(&r, out);
        if (st == RT_OK) st = rt_recipe_load(out, &back);
        CHECK(st == RT_OK, "effective recipe: %s", rt_error_message());
        if (st == RT_OK) {
            CHECK(back.student_layers.count == 3 && back.student_layers.items[2] == 28 &&
                      back.student_init == RT_RECIPE_STUDENT_TEACHER_LAYERS && back.datasets.count == 1 &&
                      back.datasets.items[0].shards == 16,
                  "effective recipe lost student_layers/shards");
            rt_recipe_free(&back);
        }
    }
    rt_recipe_free(&r);

    /* its LoRA second stage: the first stage's student with adapters, the same data and cache */
    snprintf(p, sizeof p, "%s/recipes/smollm2-135m-distill-lora.yaml", RETORT_SOURCE_DIR);
    st = rt_recipe_load(p, &r);
    CHECK(st == RT_OK, "%s", rt_error_message());
    if (st == RT_OK) {
        CHECK(rt_recipe_validate(&r) == RT_OK, "%s", rt_error_message());
        CHECK(r.adapter == RT_RECIPE_ADAPTER_LORA && !strcmp(r.student_model, "out/smollm2-135m-distill") &&
                  r.student_init == RT_RECIPE_STUDENT_RANDOM && r.student_config.hidden_size == 0,
              "LoRA student");
        CHECK(!strcmp(r.teacher_cache_dir, "out/smollm2-135m-distill/teacher-cache") && r.seed == 42 &&
                  r.val_set_size == 8 && r.datasets.count == 1 && r.datasets.items[0].shards == 16,
              "the first stage's data, split and cache");
    }
    rt_recipe_free(&r);
    printf("shipped recipes: done\n");
}

static void test_overrides(void) {
    rt_recipe r;
    rt_status st = load_text("base_model: m.bin\ntokenizer: t.bin\ndatasets:\n  - path: a.txt\n", &r);
    CHECK(st == RT_OK, "%s", rt_error_message());
    if (st != RT_OK) return;
    CHECK(rt_recipe_set(&r, "lora_r=16") == RT_OK && r.lora_r == 16, "scalar int");
    CHECK(rt_recipe_set(&r, "learning_rate=1e-3") == RT_OK && r.learning_rate == 1e-3, "scalar float");
    CHECK(rt_recipe_set(&r, "output_dir=out/x y") == RT_OK && !strcmp(r.output_dir, "out/x y"), "string");
    CHECK(rt_recipe_set(&r, "bf16=true") == RT_OK && r.bf16, "bool");
    {
        char want[600];
        snprintf(want, sizeof want, "%s/.cache/m.gguf", getenv("HOME") ? getenv("HOME") : "");
        CHECK(rt_recipe_set(&r, "base_model=~/.cache/m.gguf") == RT_OK &&
                  (!getenv("HOME") || !strcmp(r.base_model, want)),
              "a leading ~/ is $HOME (%s)", r.base_model);
        CHECK(rt_recipe_set(&r, "output_dir=a~/b") == RT_OK && !strcmp(r.output_dir, "a~/b"), "~ elsewhere kept");
    }
    CHECK(rt_recipe_set(&r, "lr_scheduler=linear") == RT_OK && r.lr_scheduler == RT_RECIPE_SCHED_LINEAR,
          "enum");
    CHECK(rt_recipe_set(&r, "student_config.hidden_size=32") == RT_OK && r.student_config.hidden_size == 32,
          "nested map key");
    CHECK(rt_recipe_set(&r, "datasets.0.path=x.txt") == RT_OK && !strcmp(r.datasets.items[0].path, "x.txt"),
          "nested list key");
    CHECK(rt_recipe_set(&r, "datasets.0.type=jsonl") == RT_OK && r.datasets.items[0].type == RT_RECIPE_DS_JSONL,
          "nested list enum");
    CHECK(rt_recipe_set(&r, "datasets.1.path=y.txt") == RT_OK && r.datasets.count == 2 &&
              !strcmp(r.datasets.items[1].path, "y.txt") && r.datasets.items[1].type == RT_RECIPE_DS_TEXT,
          "append");
    CHECK(rt_recipe_set(&r, "lora_target_modules=[q_proj, k_proj]") == RT_OK &&
              r.lora_target_modules == (RT_RECIPE_MOD_Q_PROJ | RT_RECIPE_MOD_K_PROJ), "flow list");
    CHECK(rt_recipe_set(&r, "lora_target_modules=o_proj,down_proj") == RT_OK &&
              r.lora_target_modules == (RT_RECIPE_MOD_O_PROJ | RT_RECIPE_MOD_DOWN_PROJ), "comma list");
    CHECK(rt_recipe_set(&r, "lora_target_modules=all-linear") == RT_OK && r.lora_target_modules == 0x7f,
          "all-linear");
    CHECK(rt_recipe_set(&r, "datasets=[{path: b.jsonl, type: jsonl, field: body}]") == RT_OK &&
              r.datasets.count == 1 && !strcmp(r.datasets.items[0].path, "b.jsonl") &&
              !strcmp(r.datasets.items[0].field, "body"), "whole list");
    CHECK(rt_recipe_set(&r, "resume_from_checkpoint=true") == RT_OK &&
              !strcmp(r.resume_from_checkpoint, "latest"), "resume true");
    CHECK(rt_recipe_set(&r, "resume_from_checkpoint=out/ck/step-100") == RT_OK &&
              !strcmp(r.resume_from_checkpoint, "out/ck/step-100"), "resume path");
    CHECK(rt_recipe_set(&r, "resume_from_checkpoint=false") == RT_OK && !strcmp(r.resume_from_checkpoint, ""),
          "resume false");
    CHECK(rt_recipe_set(&r, "lora_r=") == RT_OK && r.lora_r == 8, "empty resets to default");
    CHECK(rt_recipe_set(&r, "kd_alpha=0.25") == RT_OK && r.kd_ratio == 0.25, "alias override");

    rt_error_clear();
    CHECK(rt_recipe_set(&r, "lora_r=eight") == RT_EINPUT, "bad override");
    CHECK(!strcmp(rt_error_message(), "override 'lora_r=eight': lora_r: expected an integer >= 1, got 'eight'"),
          "msg: %s", rt_error_message());
    CHECK(rt_recipe_set(&r, "lora_rank=4") == RT_EINPUT &&
              contains(rt_error_message(), "unknown key 'lora_rank' (did you mean 'lora_r'?)"),
          "msg: %s", rt_error_message());
    CHECK(rt_recipe_set(&r, "student_config.hiden_size=4") == RT_EINPUT &&
              contains(rt_error_message(), "unknown key 'hiden_size' in student_config (did you mean 'hidden_size'?)"),
          "msg: %s", rt_error_message());
    CHECK(rt_recipe_set(&r, "datasets.5.path=z") == RT_EINPUT && contains(rt_error_message(), "out of range"),
          "msg: %s", rt_error_message());
    CHECK(rt_recipe_set(&r, "lora_r.x=1") == RT_EINPUT && contains(rt_error_message(), "no sub-keys"),
          "msg: %s", rt_error_message());
    CHECK(rt_recipe_set(&r, "lora_r") == RT_EINPUT && contains(rt_error_message(), "expected key=value"),
          "msg: %s", rt_error_message());
    CHECK(rt_recipe_set(&r, "lora_target_modules=[q_proj") == RT_EINPUT &&
              contains(rt_error_message(), "malformed YAML value"), "msg: %s", rt_error_message());
    CHECK(rt_recipe_set(&r, "lora_target_modules=[q_proj, qproj]") == RT_EINPUT &&
              contains(rt_error_message(), "got 'qproj'"), "msg: %s", rt_error_message());
    CHECK(r.lora_target_modules == 0x7f, "failed override leaves the value");
    rt_recipe_free(&r);
    printf("overrides: done\n");
}

static void test_errors(void) {
    rt_recipe r;
    char want[1024];
    /* Unknown key: the exact message of the brief, line 7. */
    const char *p = write_tmp("unknown.yaml",
                              "# comment\nbase_model: m.bin\ntokenizer: t.bin\n\nadapter: lora\n"
                              "lora_alpha: 16\nlora_rank: 8\n");
    rt_error_clear();
    CHECK(rt_recipe_load(p, &r) == RT_EINPUT, "unknown key fails");
    snprintf(want, sizeof want, "%s:7: unknown key 'lora_rank' (did you mean 'lora_r'?)", p);
    CHECK(!strcmp(rt_error_message(), want), "msg: %s", rt_error_message());
    CHECK(r.base_model == NULL, "failed load leaves r zeroed");
    rt_recipe_free(&r); /* harmless */

    /* No suggestion when nothing is close. */
    CHECK(load_text("zzzzzzzzzzzz: 1\n", &r) == RT_EINPUT && contains(rt_error_message(), ":1: unknown key 'zzzzzzzzzzzz'") &&
              !contains(rt_error_message(), "did you mean"), "msg: %s", rt_error_message());

    /* Wrong type. */
    CHECK(load_text("base_model: m\nlora_r: eight\n", &r) == RT_EINPUT &&
              contains(rt_error_message(), "t.yaml:2: lora_r: expected an integer >= 1, got 'eight'"),
          "msg: %s", rt_error_message());
    CHECK(load_text("bf16: maybe\n", &r) == RT_EINPUT &&
              contains(rt_error_message(), ":1: bf16: expected one of false, true, auto, got 'maybe'"), "msg: %s",
          rt_error_message());
    CHECK(load_text("lora_r: 2.5\n", &r) == RT_EINPUT, "fractional int");
    CHECK(load_text("lora_alpha: [1, 2]\n", &r) == RT_EINPUT &&
              contains(rt_error_message(), "lora_alpha: expected a number > 0, got a list"), "msg: %s",
          rt_error_message());
    CHECK(load_text("datasets: a.txt\n", &r) == RT_EINPUT &&
              contains(rt_error_message(), "datasets: expected a list of maps with keys path, type"),
          "msg: %s", rt_error_message());

    /* Out of range. */
    CHECK(load_text("lora_dropout: 1.5\n", &r) == RT_EINPUT &&
              contains(rt_error_message(), ":1: lora_dropout: expected a number in 0..1, got '1.5'"),
          "msg: %s", rt_error_message());
    CHECK(load_text("lora_r: 0\n", &r) == RT_EINPUT, "lora_r 0");
    CHECK(load_text("bnb_4bit_blocksize: 48\n", &r) == RT_EINPUT &&
              contains(rt_error_message(), "bnb_4bit_blocksize: expected a power of two in 32..4096, got '48'"),
          "msg: %s", rt_error_message());
    CHECK(load_text("bnb_4bit_blocksize: 8192\n", &r) == RT_EINPUT, "blocksize 8192");
    CHECK(load_text("bnb_4bit_blocksize: 4096\n", &r) == RT_OK && r.bnb_4bit_blocksize == 4096, "blocksize 4096");
    rt_recipe_free(&r);
    CHECK(load_text("kd_temperature: 0\n", &r) == RT_EINPUT &&
              contains(rt_error_message(), "kd_temperature: expected a number > 0, got '0'"), "msg: %s",
          rt_error_message());
    CHECK(load_text("zero_stage: 2\n", &r) == RT_EINPUT && contains(rt_error_message(), "in 0..1"), "zero 2");

    /* Bad enum: all allowed values listed. */
    CHECK(load_text("base_model: m\nadapter: dora\n", &r) == RT_EINPUT &&
              contains(rt_error_message(), ":2: adapter: expected one of none, lora, qlora, got 'dora'"),
          "msg: %s", rt_error_message());
    CHECK(load_text("datasets:\n  - path: a\n    type: csv\n", &r) == RT_EINPUT &&
              contains(rt_error_message(),
                       ":3: datasets.0.type: expected one of text, jsonl, alpaca, teacher_generate, chat_template, sharegpt, completion, input_output, got 'csv'"),
          "msg: %s", rt_error_message());
    CHECK(load_text("datasets:\n  - path: a\n    typ: text\n", &r) == RT_EINPUT &&
              contains(rt_error_message(), ":3: unknown key 'typ' in datasets.0 (did you mean 'type'?)"),
          "msg: %s", rt_error_message());

    /* Duplicate key. */
    CHECK(load_text("lora_r: 4\nseed: 1\nlora_r: 8\n", &r) == RT_EINPUT &&
              contains(rt_error_message(), ":3: duplicate key 'lora_r' (first at line 1)"), "msg: %s",
          rt_error_message());

    /* Malformed YAML: libyaml's problem and its line. */
    CHECK(load_text("base_model: m\nlora_r: 8\nlora_alpha: 16: 3\n", &r) == RT_EINPUT &&
              contains(rt_error_message(), "t.yaml:3: malformed YAML: mapping values are not allowed"),
          "msg: %s", rt_error_message());
    CHECK(load_text("a: 1\nb: [1, 2\nc: 3\n", &r) == RT_EINPUT && contains(rt_error_message(), "malformed YAML"),
          "msg: %s", rt_error_message());
    CHECK(load_text("- just\n- a list\n", &r) == RT_EINPUT &&
              contains(rt_error_message(), ":1: expected a mapping of keys at the top level"), "msg: %s",
          rt_error_message());
    CHECK(load_text("", &r) == RT_EINPUT && contains(rt_error_message(), "empty recipe"), "msg: %s",
          rt_error_message());

    /* Missing file. */
    snprintf(want, sizeof want, "%s/no-such-recipe.yaml", rt_test_tmpdir());
    rt_error_clear();
    CHECK(rt_recipe_load(want, &r) == RT_EINPUT && contains(rt_error_message(), want) &&
              contains(rt_error_message(), "cannot open recipe: No such file"), "msg: %s", rt_error_message());

    /* kd_alpha is axolotl's name for kd_ratio; null resets to the default. */
    CHECK(load_text("kd_alpha: 0.3\n", &r) == RT_OK && r.kd_ratio == 0.3, "kd_alpha %g", r.kd_ratio);
    rt_recipe_free(&r);
    CHECK(load_text("kd_ratio: 0.7\n", &r) == RT_OK && r.kd_ratio == 0.7, "kd_ratio");
    rt_recipe_free(&r);
    CHECK(load_text("tokenizer:\nlora_r: ~\nseed: null\n", &r) == RT_OK && !strcmp(r.tokenizer, "") &&
              r.lora_r == 8 && r.seed == 42, "nulls are defaults");
    rt_recipe_free(&r);
    printf("errors: done\n");
}

/* Loads text and validates; returns the validate status. */
static rt_status validate_text(const char *text) {
    rt_recipe r;
    rt_status st = load_text(text, &r);
    if (st == RT_OK) st = rt_recipe_validate(&r);
    rt_recipe_free(&r);
    return st;
}

#define BASE "base_model: m.bin\ntokenizer: t.bin\ndatasets: [{path: a.txt}]\n"

static void test_validate(void) {
    CHECK(validate_text(BASE) == RT_OK, "%s", rt_error_message());
    CHECK(validate_text("datasets: [{path: a.txt}]\n") == RT_EINPUT &&
              contains(rt_error_message(), "base_model: required"), "msg: %s", rt_error_message());
    CHECK(validate_text("base_model: m.bin\ndatasets: [{path: a.txt}]\n") == RT_EINPUT &&
              contains(rt_error_message(), "tokenizer: required"), "msg: %s", rt_error_message());
    CHECK(validate_text("base_model: hf/dir\ndatasets: [{path: a.txt}]\n") == RT_OK, "HF dir needs no tokenizer");
    CHECK(validate_text("base_model: m.bin\ntokenizer: t.bin\n") == RT_EINPUT &&
              contains(rt_error_message(), "datasets: required"), "msg: %s", rt_error_message());
    CHECK(validate_text(BASE "datasets.x: 1\n") == RT_EINPUT, "dotted key in a file is unknown");
    CHECK(validate_text(BASE "warmup_steps: 10\nwarmup_ratio: 0.1\n") == RT_EINPUT &&
              contains(rt_error_message(), "warmup_steps (10) and warmup_ratio (0.1) are both set"),
          "msg: %s", rt_error_message());
    CHECK(validate_text(BASE "adapter: qlora\nload_in_4bit: false\n") == RT_EINPUT &&
              contains(rt_error_message(), "load_in_4bit"), "msg: %s", rt_error_message());
    CHECK(validate_text(BASE "adapter: none\nload_in_4bit: true\n") == RT_EINPUT, "4bit without adapter");
    CHECK(validate_text(BASE "val_set_size: 2.5\n") == RT_EINPUT, "fractional count");
    CHECK(validate_text(BASE "max_steps: 0\n") == RT_EINPUT, "max_steps 0");
    CHECK(validate_text(BASE "test_datasets: [{path: b.txt}]\nval_set_size: 0.1\n") == RT_EINPUT,
          "test_datasets with val_set_size");
    CHECK(validate_text(BASE "teacher_logits: cache\n") == RT_EINPUT &&
              contains(rt_error_message(), "teacher_cache_dir"), "msg: %s", rt_error_message());
    CHECK(validate_text(BASE "datasets: [{path: p.txt, type: teacher_generate}]\n") == RT_EINPUT,
          "teacher_generate without teacher");
    CHECK(validate_text(BASE "student_config: {hidden_size: 36, intermediate_size: 64, num_hidden_layers: 2, "
                        "num_attention_heads: 4}\n") == RT_EINPUT &&
              contains(rt_error_message(), "head size"), "msg: %s", rt_error_message());
    CHECK(validate_text(BASE "student_config: {hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, "
                        "num_attention_heads: 4, num_key_value_heads: 3}\n") == RT_EINPUT, "kv heads");
    CHECK(validate_text(BASE "student_model: s.bin\nstudent_config: {hidden_size: 32, intermediate_size: 64, "
                        "num_hidden_layers: 2, num_attention_heads: 4}\n") == RT_EINPUT &&
              contains(rt_error_message(), "both set"), "msg: %s", rt_error_message());

    /* Derived values. */
    rt_recipe r;
    rt_status st = load_text(BASE "adapter: qlora\nteacher_model: big.bin\ntest_datasets: [{path: b.txt}]\n"
                             "student_config:\n  hidden_size: 32\n  intermediate_size: 64\n"
                             "  num_hidden_layers: 2\n  num_attention_heads: 4\n",
                             &r);
    CHECK(st == RT_OK, "%s", rt_error_message());
    if (st == RT_OK) {
        CHECK(rt_recipe_validate(&r) == RT_OK, "%s", rt_error_message());
        CHECK(r.load_in_4bit, "qlora implies load_in_4bit");
        CHECK(r.student_config.num_key_value_heads == 4, "kv heads default");
        CHECK(!strcmp(r.teacher_tokenizer, "t.bin"), "teacher_tokenizer from tokenizer");
        CHECK(r.val_set_size == 0, "val_set_size 0 with test_datasets");
    }
    rt_recipe_free(&r);
    st = load_text(BASE "adapter: lora\nload_in_4bit: true\n", &r);
    CHECK(st == RT_OK && rt_recipe_validate(&r) == RT_OK && r.adapter == RT_RECIPE_ADAPTER_QLORA,
          "lora + 4bit is qlora");
    rt_recipe_free(&r);
    printf("validate: done\n");
}

static bool same_list(const rt_recipe_datasets *a, const rt_recipe_datasets *b) {
    if (a->count != b->count) return false;
    for (int i = 0; i < a->count; i++) {
        const rt_recipe_dataset *x = &a->items[i], *y = &b->items[i];
        if (strcmp(x->path, y->path) || x->type != y->type || strcmp(x->field, y->field) ||
            x->num_samples != y->num_samples || x->max_new_tokens != y->max_new_tokens ||
            x->temperature != y->temperature || x->top_p != y->top_p || x->seed != y->seed)
            return false;
    }
    return true;
}

static void test_save_roundtrip(void) {
    rt_recipe a, b;
    rt_status st = load_text(
        "base_model: \"models/with: colon.bin\"\ntokenizer: 'true'\nadapter: qlora\n"
        "lora_target_modules: [k_proj, gate_proj]\nlearning_rate: 3.0e-3\nadam_epsilon: 1e-7\n"
        "datasets:\n  - {path: a.txt}\n  - {path: p.txt, type: teacher_generate, temperature: 0.7, seed: 9}\n"
        "teacher_model: t.bin\nkd_loss: jsd\nkd_top_k: 20\nresume_from_checkpoint: true\n"
        "student_config: {hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4}\n"
        "seed: 1234567890123\nnum_epochs: 2.5\ndevice: cpu\n",
        &a);
    CHECK(st == RT_OK, "%s", rt_error_message());
    if (st != RT_OK) return;
    CHECK(!strcmp(a.tokenizer, "true"), "quoted 'true' is a string");
    CHECK(rt_recipe_validate(&a) == RT_OK, "%s", rt_error_message());
    char p[512];
    snprintf(p, sizeof p, "%s/saved.yaml", rt_test_tmpdir());
    CHECK(rt_recipe_save(&a, p) == RT_OK, "%s", rt_error_message());
    st = rt_recipe_load(p, &b);
    CHECK(st == RT_OK, "reload: %s", rt_error_message());
    if (st == RT_OK) {
        CHECK(!strcmp(a.base_model, b.base_model) && !strcmp(b.tokenizer, "true"), "strings '%s' '%s'",
              b.base_model, b.tokenizer);
        CHECK(b.lora_target_modules == (RT_RECIPE_MOD_K_PROJ | RT_RECIPE_MOD_GATE_PROJ), "modules");
        CHECK(b.learning_rate == 3e-3 && b.adam_epsilon == 1e-7 && b.num_epochs == 2.5, "floats");
        CHECK(b.lora_dropout == a.lora_dropout && b.adam_beta2 == 0.999, "default floats exact");
        CHECK(b.seed == 1234567890123LL && b.device == RT_RECIPE_DEVICE_CPU, "seed/device");
        CHECK(same_list(&a.datasets, &b.datasets) && same_list(&a.test_datasets, &b.test_datasets), "datasets");
        CHECK(b.kd_loss == RT_RECIPE_KD_JSD && b.kd_top_k == 20 && !strcmp(b.teacher_tokenizer, "true"), "kd");
        CHECK(!strcmp(b.resume_from_checkpoint, "latest"), "resume");
        CHECK(b.adapter == RT_RECIPE_ADAPTER_QLORA && b.load_in_4bit, "adapter");
        CHECK(!memcmp(&a.student_config, &b.student_config, sizeof a.student_config), "student");
        CHECK(rt_recipe_validate(&b) == RT_OK, "%s", rt_error_message());
        rt_recipe_free(&b);
    }
    rt_recipe_free(&a);
    /* Defaults round-trip too (student_config left out, empty lists). */
    CHECK(rt_recipe_init(&a) == RT_OK, "init");
    CHECK(rt_recipe_save(&a, p) == RT_OK, "%s", rt_error_message());
    st = rt_recipe_load(p, &b);
    CHECK(st == RT_OK && b.datasets.count == 0 && b.student_config.hidden_size == 0 &&
              b.student_config.init_std == 0.02 && !strcmp(b.output_dir, "./out"), "defaults: %s",
          rt_error_message());
    rt_recipe_free(&a);
    rt_recipe_free(&b);
    snprintf(p, sizeof p, "%s/no-such-dir/x.yaml", rt_test_tmpdir());
    CHECK(rt_recipe_init(&a) == RT_OK && rt_recipe_save(&a, p) == RT_EINPUT, "unwritable path");
    rt_recipe_free(&a);
    printf("save: done\n");
}

int main(void) {
    test_defaults();
    test_shipped_recipes();
    test_overrides();
    test_errors();
    test_validate();
    test_save_roundtrip();
    char p[512];
    const char *names[] = {"t.yaml", "unknown.yaml", "saved.yaml"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", rt_test_tmpdir(), names[i]);
        if (!getenv("KEEP")) remove(p);
    }
    if (!getenv("KEEP")) rmdir(rt_test_tmpdir());
    return rt_test_summary();
}
