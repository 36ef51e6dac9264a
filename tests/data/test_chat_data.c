/* axolotl's dataset types: chat_template (field_messages,
 * message_property_mappings, roles_to_train, train_on_eos), sharegpt,
 * completion, input_output, and train_on_inputs for alpaca. Targets are
 * checked against counts derived from encoding the pieces on their own. */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "tests/cli_util.h"
#include "train/data/data.h"
#include "train/recipe.h"
#include "train/tokenizer/tokenizer.h"

static rt_tokenizer *load_tok(const char *rel) {
    rt_tokenizer *t = NULL;
    rt_status st = rt_tokenizer_load(rt_test_shared(rel), &t);
    CHECK(st == RT_OK, "load %s: %s", rel, rt_error_message());
    return t;
}

static const char *write_str(const char *name, const char *s) {
    const char *p = rt_tmp(name);
    rt_spit(p, s, strlen(s));
    return p;
}

/* Loads one dataset given as YAML flow text (plus extra overrides). */
static rt_status load(const rt_tokenizer *tok, const char *ds_yaml, const char *extra, int T, rt_dataset **tr) {
    rt_recipe r;
    rt_recipe_init(&r);
    char buf[2048];
    snprintf(buf, sizeof buf, "datasets=[%s]", ds_yaml);
    rt_status st = rt_recipe_set(&r, buf);
    if (st == RT_OK && extra) st = rt_recipe_set(&r, extra);
    r.sequence_len = T;
    r.val_set_size = 0;
    rt_dataset *va = NULL;
    *tr = NULL;
    if (st == RT_OK) st = rt_data_load(&r, tok, tr, &va);
    rt_dataset_free(va);
    rt_recipe_free(&r);
    return st;
}

static int n_tokens(const rt_tokenizer *t, const char *s) {
    int32_t *ids = NULL;
    size_t n = 0;
    rt_tokenizer_encode(t, s, strlen(s), false, &ids, &n);
    free(ids);
    return (int)n;
}

/* Targets of example e, and whether the trained tokens decode to want. */
static int64_t targets_of(const rt_tokenizer *t, const rt_dataset *d, int64_t e, const char *want, bool *same) {
    const int32_t *tk;
    const uint8_t *tg;
    int64_t n, c = 0;
    rt_dataset_example(d, e, &tk, &tg, &n);
    int32_t *sel = malloc((size_t)n * sizeof *sel);
    for (int64_t i = 0; i < n; i++)
        if (tg[i]) sel[c++] = tk[i];
    char *s = NULL;
    rt_tokenizer_decode(t, sel, (size_t)c, &s);
    if (same) *same = want && s && strcmp(s, want) == 0;
    if (same && !*same) fprintf(stderr, "trained text: '%s'\n", s ? s : "");
    free(sel), free(s);
    return c;
}

static void test_chat_template(const rt_tokenizer *l3) {
    const char *p = write_str("chat.jsonl",
        "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": "
        "\"Say hi.\"}, {\"role\": \"assistant\", \"content\": \"Hi there.\"}, {\"role\": \"user\", \"content\": "
        "\"Again.\"}, {\"role\": \"assistant\", \"content\": \"Hello again.\"}]}\n");
    char ds[800];
    rt_dataset *d = NULL;
    snprintf(ds, sizeof ds, "{path: '%s', type: chat_template}", p);
    CHECK(load(l3, ds, NULL, 512, &d) == RT_OK, "chat_template dataset: %s", rt_error_message());
    bool same = false;
    /* assistant contents and their <|eot_id|> (which decodes to nothing) */
    int64_t c = d ? targets_of(l3, d, 0, "Hi there.Hello again.", &same) : 0;
    int want = n_tokens(l3, "Hi there.") + 1 + n_tokens(l3, "Hello again.") + 1;
    CHECK(same && c == want, "only assistant turns + eot trained: %lld targets (want %d)", (long long)c, want);
    rt_dataset_free(d);

    snprintf(ds, sizeof ds, "{path: '%s', type: chat_template, roles_to_train: [user, assistant], "
             "train_on_eos: none}", p);
    CHECK(load(l3, ds, NULL, 512, &d) == RT_OK, "roles_to_train: %s", rt_error_message());
    c = d ? targets_of(l3, d, 0, "Say hi.Hi there.Again.Hello again.", &same) : 0;
    CHECK(same && c == n_tokens(l3, "Say hi.") + n_tokens(l3, "Hi there.") + n_tokens(l3, "Again.") +
                           n_tokens(l3, "Hello again."),
          "user+assistant, no eot: %lld targets", (long long)c);
    rt_dataset_free(d);

    /* Other keys through message_property_mappings and field_messages. */
    const char *q = write_str("chat2.jsonl",
        "{\"turns\": [{\"who\": \"user\", \"text\": \"Say hi.\"}, {\"who\": \"assistant\", \"text\": \"Hi.\"}]}\n");
    snprintf(ds, sizeof ds, "{path: '%s', type: chat_template, field_messages: turns, "
             "message_property_mappings: {role: who, content: text}}", q);
    CHECK(load(l3, ds, NULL, 512, &d) == RT_OK, "mapped keys: %s", rt_error_message());
    c = d ? targets_of(l3, d, 0, "Hi.", &same) : 0;
    CHECK(same && c == n_tokens(l3, "Hi.") + 1, "mapped keys: %lld targets", (long long)c);
    rt_dataset_free(d);

    /* train_on_inputs: every token after the first. */
    snprintf(ds, sizeof ds, "{path: '%s', type: chat_template}", p);
    CHECK(load(l3, ds, "train_on_inputs=true", 512, &d) == RT_OK, "train_on_inputs chat");
    if (d) {
        const int32_t *tk;
        const uint8_t *tg;
        int64_t n;
        rt_dataset_example(d, 0, &tk, &tg, &n);
        CHECK(rt_dataset_targets(d) == n - 1, "train_on_inputs trains all %lld tokens after the first",
              (long long)n - 1);
    }
    rt_dataset_free(d);

    /* Errors: a missing message list, an unknown template name. */
    snprintf(ds, sizeof ds, "{path: '%s', type: chat_template, field_messages: nope}", p);
    CHECK(load(l3, ds, NULL, 512, &d) == RT_EINPUT && strstr(rt_error_message(), p) &&
              strstr(rt_error_message(), "nope"), "missing field_messages: %s", rt_error_message());
    snprintf(ds, sizeof ds, "{path: '%s', type: chat_template}", p);
    CHECK(load(l3, ds, "chat_template=vicuna", 512, &d) == RT_EINPUT && strstr(rt_error_message(), "vicuna") &&
              strstr(rt_error_message(), "chatml"), "unknown template: %s", rt_error_message());
}

static void test_sharegpt(const rt_tokenizer *q) {
    const char *p = write_str("sg.jsonl",
        "{\"conversations\": [{\"from\": \"human\", \"value\": \"Hi\"}, {\"from\": \"gpt\", \"value\": \"Yes\"}, "
        "{\"from\": \"human\", \"value\": \"Hi\"}, {\"from\": \"gpt\", \"value\": \"No\"}]}\n");
    char ds[600];
    snprintf(ds, sizeof ds, "{path: '%s', type: sharegpt}", p);
    rt_dataset *d = NULL;
    CHECK(load(q, ds, "chat_template=chatml", 512, &d) == RT_OK, "sharegpt: %s", rt_error_message());
    bool same = false;
    int64_t c = d ? targets_of(q, d, 0, "YesNo", &same) : 0;
    CHECK(same && c == 4, "sharegpt with chatml: Yes <|im_end|> No <|im_end|> trained (%lld)", (long long)c);
    rt_dataset_free(d);
}

static void test_plain_types(const rt_tokenizer *t5) {
    const char *p = write_str("io.jsonl",
        "{\"segments\": [{\"text\": \"Question: why?\\n\", \"label\": false}, {\"text\": \"Because.\", \"label\": true}]}\n");
    char ds[600];
    snprintf(ds, sizeof ds, "{path: '%s', type: input_output}", p);
    rt_dataset *d = NULL;
    CHECK(load(t5, ds, NULL, 256, &d) == RT_OK, "input_output: %s", rt_error_message());
    bool same = false;
    int64_t c = d ? targets_of(t5, d, 0, "Because.", &same) : 0;
    CHECK(same && c == n_tokens(t5, "Because."), "input_output: only the labelled segment (%lld)", (long long)c);
    rt_dataset_free(d);

    p = write_str("c.jsonl", "{\"text\": \"Once upon a time.\"}\n");
    snprintf(ds, sizeof ds, "{path: '%s', type: completion}", p);
    CHECK(load(t5, ds, NULL, 256, &d) == RT_OK, "completion: %s", rt_error_message());
    if (d) {
        const int32_t *tk;
        const uint8_t *tg;
        int64_t n;
        rt_dataset_example(d, 0, &tk, &tg, &n);
        CHECK(n == n_tokens(t5, "Once upon a time.") + 2 && rt_dataset_targets(d) == n - 1,
              "completion: BOS + text + EOS, all trained");
    }
    rt_dataset_free(d);

    p = write_str("a.jsonl", "{\"instruction\": \"Say hi.\", \"output\": \"Hi.\"}\n");
    snprintf(ds, sizeof ds, "{path: '%s', type: alpaca}", p);
    CHECK(load(t5, ds, NULL, 256, &d) == RT_OK, "alpaca");
    int64_t masked = d ? rt_dataset_targets(d) : 0;
    rt_dataset_free(d);
    CHECK(load(t5, ds, "train_on_inputs=true", 256, &d) == RT_OK, "alpaca train_on_inputs");
    if (d) {
        const int32_t *tk;
        const uint8_t *tg;
        int64_t n;
        rt_dataset_example(d, 0, &tk, &tg, &n);
        CHECK(rt_dataset_targets(d) == n - 1 && masked == n_tokens(t5, "Hi.") + 1 && masked < n - 1,
              "train_on_inputs: %lld of %lld trained (masked: %lld)", (long long)rt_dataset_targets(d),
              (long long)n, (long long)masked);
    }
    rt_dataset_free(d);
}

/* SmolLM2-135M-Instruct's GGUF (scripts/get-models.sh), or "" when absent. */
static const char *smollm2_path(void) {
    static char path[1024];
    const char *cache = getenv("RETORT_CACHE"), *home = getenv("HOME");
    if (cache && *cache) snprintf(path, sizeof path, "%s/SmolLM2-135M-Instruct.Q4_1.gguf", cache);
    else snprintf(path, sizeof path, "%s/.cache/retort/SmolLM2-135M-Instruct.Q4_1.gguf", home ? home : "");
    FILE *f = fopen(path, "rb");
    if (!f) return "";
    fclose(f);
    return path;
}

/* A named template whose markers the tokenizer lacks is an error naming the
 * marker and the tokenizer (stories260K's tok512.bin has no <|im_start|>,
 * and as a llama2.c tokenizer matches no "<s>" in text). */
static void test_missing_markers(void) {
    char tok[600], bin[600], data[600], err[700];
    snprintf(tok, sizeof tok, "%s", rt_test_shared("models/stories260K/tok512.bin"));
    snprintf(bin, sizeof bin, "%s", rt_test_shared("models/stories260K/stories260K.bin"));
    snprintf(data, sizeof data, "%s", rt_test_shared("data/sotu-openings.alpaca.jsonl"));
    snprintf(err, sizeof err, "%s", rt_tmp("markers.err"));
    const char *conv = write_str("conv.jsonl", "[{\"role\":\"user\",\"content\":\"Hi\"}]\n");
    const char *want[][2] = {{"chatml", "<|im_start|>"}, {"qwen3", "<|im_start|>"}, {"llama3", "<|start_header_id|>"},
                             {"gemma", "<start_of_turn>"}, {"phi_3", "<|system|>"}, {"mistral", "<s>"}, {"llama2", "<s>"}};
    for (int i = 0; i < 7; i++) {
        int rc = rt_run(NULL, err, "tokenize --tokenizer %s --chat --chat-template %s <%s", tok, want[i][0], conv);
        char *e = rt_slurp(err, NULL);
        char marker[64];
        snprintf(marker, sizeof marker, "\"%s\"", want[i][1]);
        CHECK(rc == 2 && e && strstr(e, marker) && strstr(e, "tok512.bin") && strstr(e, want[i][0]),
              "%s on tok512.bin: exit %d: %s", want[i][0], rc, e ? e : "");
        free(e);
    }
    /* ... also through a recipe's chat dataset */
    char recipe[600];
    snprintf(recipe, sizeof recipe, "%s/recipes/smollm2-135m-qlora-sotu-chat.yaml", RETORT_SOURCE_DIR);
    int rc = rt_run(NULL, err, "finetune %s base_model=%s tokenizer=%s chat_template=chatml datasets.0.path=%s "
                    "max_steps=1 output_dir=%s", recipe, bin, tok, data, rt_tmp("markers-run"));
    char *e = rt_slurp(err, NULL);
    CHECK(rc == 2 && e && strstr(e, "\"<|im_start|>\"") && strstr(e, "tok512.bin"), "finetune: exit %d: %s", rc,
          e ? e : "");
    free(e);
}

/* The chat recipe: alpaca records as conversations through SmolLM2's own
 * ChatML template; every example trains exactly its output and the
 * <|im_end|> token after it, and a short finetune runs. */
static void test_recipe(void) {
    const char *gguf = smollm2_path();
    if (!*gguf) {
        SKIP("SmolLM2-135M-Instruct GGUF not cached (scripts/get-models.sh): chat recipe not run");
        return;
    }
    char model[1024];
    snprintf(model, sizeof model, "%s", gguf);
    rt_tokenizer *tok = NULL;
    CHECK(rt_tokenizer_load(model, &tok) == RT_OK, "load %s: %s", model, rt_error_message());
    if (!tok) return;
    int im_end = rt_tokenizer_token_id(tok, "<|im_end|>");
    CHECK(im_end >= 0, "SmolLM2 has <|im_end|>");
    char path[600];
    snprintf(path, sizeof path, "%s/recipes/smollm2-135m-qlora-sotu-chat.yaml", RETORT_SOURCE_DIR);
    rt_recipe r;
    rt_status st = rt_recipe_load(path, &r);
    CHECK(st == RT_OK, "load %s: %s", path, rt_error_message());
    if (st != RT_OK) {
        rt_tokenizer_free(tok);
        return;
    }
    char ov[1200];
    snprintf(ov, sizeof ov, "datasets.0.path=%s", rt_test_shared("data/sotu-openings.alpaca.jsonl"));
    rt_recipe_set(&r, ov);
    r.val_set_size = 0;
    r.sequence_len = 1024; /* every example whole */
    rt_dataset *tr = NULL, *va = NULL;
    st = rt_data_load(&r, tok, &tr, &va);
    CHECK(st == RT_OK && rt_dataset_examples(tr) > 200, "chat recipe data: %s", rt_error_message());
    size_t n = 0;
    char *all = rt_slurp(rt_test_shared("data/sotu-openings.alpaca.jsonl"), &n);
    int ok = 0, checked = 0;
    for (char *line = all; tr && line && *line && checked < 20; checked++) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        cJSON *j = cJSON_Parse(line);
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(j, "output");
        bool same = false;
        targets_of(tok, tr, checked, cJSON_IsString(o) ? o->valuestring : "", &same);
        const int32_t *tk;
        const uint8_t *tg;
        int64_t m, last = -1;
        rt_dataset_example(tr, checked, &tk, &tg, &m);
        for (int64_t i = 0; i < m; i++)
            if (tg[i]) last = i;
        ok += same && last >= 0 && tk[last] == im_end; /* <|im_end|> decodes to nothing: checked by id */
        cJSON_Delete(j);
        line = nl ? nl + 1 : NULL;
    }
    CHECK(ok == checked && checked == 20, "chat recipe: the trained tokens of examples 0..19 are exactly output + "
          "<|im_end|> (%d of %d)", ok, checked);
    free(all);
    rt_dataset_free(tr), rt_dataset_free(va);
    rt_recipe_free(&r);
    rt_tokenizer_free(tok);
    char data[600];
    snprintf(data, sizeof data, "%s", rt_test_shared("data/sotu-openings.alpaca.jsonl"));
    int rc = rt_run(NULL, rt_tmp("chat-run.err"), "finetune %s base_model=%s datasets.0.path=%s max_steps=2 "
                    "micro_batch_size=1 sequence_len=128 eval_steps=0 val_set_size=0 output_dir=%s", path, model,
                    data, rt_tmp("chat-run"));
    char *e = rt_slurp(rt_tmp("chat-run.err"), NULL);
    CHECK(rc == 0, "chat recipe finetune runs (exit %d): %s", rc, e ? e : "");
    free(e);
    char mp[700];
    snprintf(mp, sizeof mp, "%s/metrics.jsonl", rt_tmp("chat-run"));
    char *mx = rt_slurp(mp, NULL);
    CHECK(mx && strstr(mx, "\"epoch\":") && strstr(mx, "\"peak_mem_mb\":"), "metrics.jsonl has epoch and peak_mem_mb");
    free(mx);
}

int main(void) {
    rt_tokenizer *l3 = load_tok("tokenizers/llama3"), *q = load_tok("tokenizers/qwen3");
    rt_tokenizer *t5 = load_tok("models/stories260K/tok512.bin");
    if (l3) test_chat_template(l3);
    if (q) test_sharegpt(q);
    if (t5) test_plain_types(t5);
    test_missing_markers();
    test_recipe();
    rt_tokenizer_free(l3), rt_tokenizer_free(q), rt_tokenizer_free(t5);
    return rt_test_summary();
}
