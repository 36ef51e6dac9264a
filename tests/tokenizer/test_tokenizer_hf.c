/* Byte-level tokenizers with Split regexes (Llama 3, Qwen3) against the
 * reference ids in ../shared/tokenizers/expected (made with transformers.js,
 * see ../shared/README.md); added-token flags and TemplateProcessing on a
 * small hand-made tokenizer.json (ids worked out by hand and confirmed with HF
 * tokenizers 0.21.1, which gives the same ids for that file); the files
 * save_hf writes beside tokenizer.json. */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "tests/cli_util.h"
#include "train/tokenizer/tokenizer.h"

static rt_tokenizer *load(const char *path) {
    rt_tokenizer *t = NULL;
    rt_status st = rt_tokenizer_load(path, &t);
    CHECK(st == RT_OK && t, "load %s: %s", path, rt_error_message());
    return st == RT_OK ? t : NULL;
}

/* A JSON array of ints as a malloc'd vector. */
static int32_t *json_ids(const cJSON *arr, size_t *n) {
    *n = (size_t)cJSON_GetArraySize(arr);
    int32_t *v = malloc((*n ? *n : 1) * sizeof *v);
    size_t i = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, arr) v[i++] = (int32_t)c->valueint;
    return v;
}

static void check_enc(const rt_tokenizer *t, const char *s, bool bos, const int32_t *want, size_t nw,
                      const char *what) {
    int32_t *ids = NULL;
    size_t n = 0;
    rt_status st = rt_tokenizer_encode(t, s, strlen(s), bos, &ids, &n);
    CHECK(st == RT_OK && rt_same_ids(ids, n, want, nw, what), "%s", what);
    free(ids);
}

/* Reference ids for each text, and decode(encode(x)) == x. */
static void check_reference(const char *model) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s", rt_test_shared("tokenizers"));
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, model);
    rt_tokenizer *t = load(path);
    if (!t) return;
    static const char *const texts[2] = {"moby_ch1", "sotu_2021"};
    for (int k = 0; k < 2; k++) {
        size_t tl = 0, el = 0;
        snprintf(path, sizeof path, "%s/expected/%s.txt", dir, texts[k]);
        char *text = rt_slurp(path, &tl);
        snprintf(path, sizeof path, "%s/expected/%s.%s.ids.json", dir, model, texts[k]);
        char *ej = rt_slurp(path, &el);
        cJSON *arr = ej ? cJSON_Parse(ej) : NULL;
        CHECK(text && cJSON_IsArray(arr), "%s: reference files readable", path);
        if (text && arr) {
            size_t nw = 0, n = 0;
            int32_t *want = json_ids(arr, &nw), *ids = NULL;
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            rt_status st = rt_tokenizer_encode(t, text, tl, false, &ids, &n);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
            CHECK(st == RT_OK && nw > 1000 && rt_same_ids(ids, n, want, nw, path), "%s %s: %zu ids as the reference "
                  "(%.1f ms for %zu bytes)", model, texts[k], nw, ms, tl);
            char *back = NULL;
            st = ids ? rt_tokenizer_decode(t, ids, n, &back) : RT_EINTERNAL;
            CHECK(st == RT_OK && strlen(back) == tl && memcmp(back, text, tl) == 0,
                  "%s %s: decode(encode(x)) == x", model, texts[k]);
            free(want), free(ids), free(back);
        }
        cJSON_Delete(arr);
        free(text), free(ej);
    }
    /* Text with non-Latin scripts, digits and newlines round-trips. */
    const char *intl = "naïve café — 東京 🐳 it's  x\n\n\t12345 Ελληνικά Ѐ\r\n";
    int32_t *ids = NULL;
    size_t n = 0;
    char *back = NULL;
    rt_status st = rt_tokenizer_encode(t, intl, strlen(intl), false, &ids, &n);
    if (st == RT_OK) st = rt_tokenizer_decode(t, ids, n, &back);
    CHECK(st == RT_OK && strcmp(back, intl) == 0, "%s: non-ASCII round trip", model);
    free(ids), free(back);
    rt_tokenizer_free(t);
}

static void test_llama3_specials(void) {
    rt_tokenizer *t = load(rt_test_shared("tokenizers/llama3"));
    if (!t) return;
    CHECK(rt_tokenizer_vocab_size(t) == 128256, "llama3 vocab 128256 (got %d)", rt_tokenizer_vocab_size(t));
    CHECK(rt_tokenizer_token_id(t, "<|eot_id|>") == 128009 && rt_tokenizer_bos(t) == 128000,
          "llama3 <|eot_id|> and BOS ids");
    CHECK(rt_tokenizer_chat_template(t) && strstr(rt_tokenizer_chat_template(t), "<|start_header_id|>"),
          "llama3 chat_template read from tokenizer_config.json");
    /* Special tokens in the text are matched whole, before the regex split:
     * "Hi" = 13347 and "!" = 0 in Llama 3's vocabulary. */
    static const int32_t want[] = {128000, 13347, 0, 128009};
    check_enc(t, "<|begin_of_text|>Hi!<|eot_id|>", false, want, 4, "llama3 special tokens in text");
    /* Case-insensitive contractions: "'LL" is a piece of its own as "'ll" is
     * (ids from HF tokenizers 0.21.1 on this tokenizer.json). */
    static const int32_t up[] = {20670, 6, 4178, 3105}, lo[] = {20670, 3358, 3105};
    check_enc(t, "they'LLama", false, up, 4, "llama3 (?i:'ll) contraction, upper case");
    check_enc(t, "they'llama", false, lo, 3, "llama3 'll contraction");
    rt_tokenizer_free(t);
}

/* A hand-made tokenizer: no merges, single-character pieces, so each id can
 * be read off directly. */
static void test_added_flags(void) {
    const char *path = rt_tmp("flags.json");
    const char *json =
        "{\"added_tokens\":["
        "{\"id\":4,\"content\":\"<x>\",\"lstrip\":true,\"rstrip\":false,\"single_word\":false,"
        "\"normalized\":false,\"special\":true},"
        "{\"id\":5,\"content\":\"<y>\",\"lstrip\":false,\"rstrip\":true,\"single_word\":false,"
        "\"normalized\":false,\"special\":true},"
        "{\"id\":6,\"content\":\"ab\",\"lstrip\":false,\"rstrip\":false,\"single_word\":true,"
        "\"normalized\":false,\"special\":false},"
        "{\"id\":7,\"content\":\"[N]\",\"lstrip\":false,\"rstrip\":false,\"single_word\":false,"
        "\"normalized\":true,\"special\":false}],"
        "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},"
        "{\"type\":\"Replace\",\"pattern\":{\"String\":\"q\"},\"content\":\"[N]\"}]},"
        "\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\" \"},\"behavior\":\"Removed\","
        "\"invert\":false},"
        "\"post_processor\":{\"type\":\"TemplateProcessing\","
        "\"single\":[{\"SpecialToken\":{\"id\":\"<x>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},"
        "{\"SpecialToken\":{\"id\":\"<y>\",\"type_id\":0}}],"
        "\"pair\":[{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"Sequence\":{\"id\":\"B\",\"type_id\":1}}],"
        "\"special_tokens\":{\"<x>\":{\"id\":\"<x>\",\"ids\":[4],\"tokens\":[\"<x>\"]},"
        "\"<y>\":{\"id\":\"<y>\",\"ids\":[5],\"tokens\":[\"<y>\"]}}},"
        "\"decoder\":null,"
        "\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"vocab\":{\"a\":0,\"b\":1,\"c\":2,"
        "\"\xc3\xa9\":3,\"<x>\":4,\"<y>\":5,\"ab\":6,\"[N]\":7,\"<unk>\":8},\"merges\":[]}}";
    rt_spit(path, json, strlen(json));
    rt_tokenizer *t = load(path);
    if (!t) return;
    CHECK(rt_tokenizer_bos(t) == 4 && rt_tokenizer_eos(t) == 5 && rt_tokenizer_adds_bos(t),
          "TemplateProcessing: <x> before $A is BOS, <y> after is EOS");
    static const int32_t w1[] = {2, 4, 2};          /* lstrip swallows "  " */
    check_enc(t, "c  <x>c", false, w1, 3, "lstrip");
    static const int32_t w2[] = {2, 5, 2};          /* rstrip swallows " " */
    check_enc(t, "c<y> c", false, w2, 3, "rstrip");
    static const int32_t w3[] = {6, 2, 0, 1, 0, 1, 2}; /* "ab" alone; not inside "cab"/"abc" */
    check_enc(t, "ab cab abc", false, w3, 7, "single_word");
    static const int32_t w4[] = {0, 7, 1};          /* q -> [N] by the normalizer, then matched */
    check_enc(t, "aqb", false, w4, 3, "normalized added token");
    static const int32_t w6[] = {4, 3};             /* e + U+0301 -> é by NFC; BOS from the template */
    check_enc(t, "e\xcc\x81", true, w6, 2, "NFC normalizer and template BOS");
    rt_tokenizer_free(t);

    const char *bad = rt_tmp("bad.json");
    const char *bj = "{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":"
                     "\"Isolated\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}";
    rt_spit(bad, bj, strlen(bj));
    rt_tokenizer *tb = NULL;
    rt_status st = rt_tokenizer_load(bad, &tb);
    CHECK(st == RT_EINPUT && !tb && strstr(rt_error_message(), bad) && strstr(rt_error_message(), "compile"),
          "a bad Split regex is an error naming the file: %s", rt_error_message());
}

/* save_hf writes tokenizer.json with a complete TemplateProcessing (single and
 * pair), special_tokens_map.json and generation_config.json. */
static void test_save(void) {
    rt_tokenizer *t = load(rt_test_shared("models/stories260K/tok512.bin"));
    if (!t) return;
    char dir[600];
    snprintf(dir, sizeof dir, "%s", rt_tmp("saved"));
    CHECK(rt_tokenizer_save_hf(t, dir) == RT_OK, "save_hf: %s", rt_error_message());
    char p[700];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    char *s = rt_slurp(p, NULL);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(j, "post_processor");
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(pp, "single")) == 2 &&
              cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(pp, "pair")) == 4,
          "TemplateProcessing has single and pair");
    cJSON_Delete(j), free(s);
    snprintf(p, sizeof p, "%s/special_tokens_map.json", dir);
    s = rt_slurp(p, NULL);
    j = s ? cJSON_Parse(s) : NULL;
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "bos_token");
    CHECK(cJSON_IsString(b) && strcmp(b->valuestring, "<s>") == 0, "special_tokens_map.json bos_token");
    cJSON_Delete(j), free(s);
    snprintf(p, sizeof p, "%s/generation_config.json", dir);
    s = rt_slurp(p, NULL);
    j = s ? cJSON_Parse(s) : NULL;
    CHECK(cJSON_GetObjectItemCaseSensitive(j, "bos_token_id") &&
              cJSON_GetObjectItemCaseSensitive(j, "eos_token_id")->valueint == 2,
          "generation_config.json ids");
    cJSON_Delete(j), free(s);
    rt_tokenizer_free(t);

    /* A loaded tokenizer.json keeps its tokenizer_config.json (chat_template). */
    t = load(rt_test_shared("tokenizers/qwen3"));
    if (!t) return;
    snprintf(dir, sizeof dir, "%s", rt_tmp("saved-qwen"));
    CHECK(rt_tokenizer_save_hf(t, dir) == RT_OK, "save_hf qwen3");
    rt_tokenizer *t2 = load(dir);
    CHECK(t2 && rt_tokenizer_chat_template(t2) &&
              strcmp(rt_tokenizer_chat_template(t2), rt_tokenizer_chat_template(t)) == 0,
          "saved qwen3 keeps its chat_template");
    rt_tokenizer_free(t2), rt_tokenizer_free(t);
}

int main(void) {
    check_reference("llama3");
    check_reference("qwen3");
    test_llama3_specials();
    test_added_flags();
    test_save();
    return rt_test_summary();
}
