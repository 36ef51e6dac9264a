/* Chat templates: Llama 3's rendering and ids against
 * ../shared/tokenizers/expected/llama3.chat.json (transformers.js
 * apply_chat_template), every label of a multi-turn conversation, the
 * roles_to_train / train_on_eos variants, recognition and its errors. */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "tests/cli_util.h"
#include "train/tokenizer/chat_template.h"
#include "train/tokenizer/tokenizer.h"

static rt_tokenizer *load(const char *rel) {
    rt_tokenizer *t = NULL;
    rt_status st = rt_tokenizer_load(rt_test_shared(rel), &t);
    CHECK(st == RT_OK && t, "load %s: %s", rel, rt_error_message());
    return st == RT_OK ? t : NULL;
}

/* Appends encode(s) (no BOS) to ids/lab with label v. */
static void add_piece(const rt_tokenizer *t, const char *s, uint8_t v, int32_t *ids, uint8_t *lab, size_t *n) {
    int32_t *p = NULL;
    size_t k = 0;
    rt_tokenizer_encode(t, s, strlen(s), false, &p, &k);
    for (size_t i = 0; i < k; i++) ids[*n] = p[i], lab[(*n)++] = v;
    free(p);
}

static void test_llama3_reference(const rt_tokenizer *t) {
    size_t len = 0;
    char *js = rt_slurp(rt_test_shared("tokenizers/expected/llama3.chat.json"), &len);
    cJSON *j = js ? cJSON_Parse(js) : NULL;
    CHECK(j != NULL, "llama3.chat.json readable");
    if (!j) return;
    rt_chat_template ct;
    CHECK(rt_chat_template_get(NULL, t, &ct) == RT_OK && ct.family == RT_CHAT_LLAMA3 && ct.gen_prompt_always,
          "llama3 template recognised (appends the assistant header always): %s", rt_error_message());
    const cJSON *convs = cJSON_GetObjectItemCaseSensitive(j, "conversations");
    const cJSON *rend = cJSON_GetObjectItemCaseSensitive(j, "rendered");
    const cJSON *idss = cJSON_GetObjectItemCaseSensitive(j, "ids");
    for (int c = 0; c < cJSON_GetArraySize(convs); c++) {
        rt_chat_msg *m = NULL;
        int nm = 0;
        CHECK(rt_chat_msgs_from_json(cJSON_GetArrayItem(convs, c), NULL, NULL, &m, &nm) == RT_OK, "msgs");
        char *text = NULL;
        size_t tl = 0;
        rt_status st = rt_chat_render(&ct, t, m, nm, false, &text, &tl);
        const char *want = cJSON_GetArrayItem(rend, c)->valuestring;
        CHECK(st == RT_OK && tl == strlen(want) && memcmp(text, want, tl) == 0, "conversation %d renders exactly", c);
        int32_t *ids = NULL;
        uint8_t *tr = NULL;
        size_t n = 0;
        st = rt_chat_encode(&ct, t, m, nm, RT_ROLE_ASSISTANT, RT_EOS_TURN, &ids, &tr, &n);
        const cJSON *wi = cJSON_GetArrayItem(idss, c);
        bool same = st == RT_OK && (int)n == cJSON_GetArraySize(wi);
        for (size_t i = 0; same && i < n; i++) same = ids[i] == cJSON_GetArrayItem(wi, (int)i)->valueint;
        CHECK(same, "conversation %d: %zu ids equal the reference", c, n);

        /* Every label, built independently: each part encoded alone (the
         * concatenation must equal the whole encoding), assistant content
         * and its <|eot_id|> trained, everything else not. */
        int32_t *eid = malloc((n + 64) * 2 * sizeof *eid);
        uint8_t *elab = malloc((n + 64) * 2);
        size_t ne = 0;
        add_piece(t, "<|begin_of_text|>", 0, eid, elab, &ne);
        for (int i = 0; i < nm; i++) {
            bool a = strcmp(m[i].role, "assistant") == 0;
            char hdr[64];
            snprintf(hdr, sizeof hdr, "<|start_header_id|>%s<|end_header_id|>\n\n", m[i].role);
            add_piece(t, hdr, 0, eid, elab, &ne);
            add_piece(t, m[i].content, a, eid, elab, &ne);
            add_piece(t, "<|eot_id|>", a, eid, elab, &ne);
        }
        add_piece(t, "<|start_header_id|>assistant<|end_header_id|>\n\n", 0, eid, elab, &ne);
        bool ok = ne == n;
        size_t bad = 0;
        for (size_t i = 0; ok && i < n; i++)
            if (eid[i] != ids[i] || elab[i] != tr[i]) ok = false, bad = i;
        int n_on = 0;
        for (size_t i = 0; i < n; i++) n_on += tr[i];
        CHECK(ok && n_on > 50, "conversation %d: every one of %zu labels as expected (%d trained; first "
              "mismatch %zu)", c, n, n_on, bad);
        free(eid), free(elab), free(ids), free(tr), free(text), free(m);
    }
    rt_chat_template_clear(&ct);
    cJSON_Delete(j);
    free(js);
}

static int count_on(const rt_chat_template *ct, const rt_tokenizer *t, const rt_chat_msg *m, int n,
                    unsigned roles, rt_chat_eos eos, size_t *n_ids) {
    int32_t *ids = NULL;
    uint8_t *tr = NULL;
    rt_status st = rt_chat_encode(ct, t, m, n, roles, eos, &ids, &tr, n_ids);
    int on = 0;
    for (size_t i = 0; st == RT_OK && i < *n_ids; i++) on += tr[i];
    free(ids), free(tr);
    return st == RT_OK ? on : -1;
}

/* Multi-turn masking variants on ChatML (Qwen3's vocabulary: "<|im_end|>" is
 * one token; "Hi"/"Yes"/"No" are single tokens). */
static void test_masking_variants(const rt_tokenizer *q) {
    rt_chat_template ct;
    CHECK(rt_chat_template_get("chatml", q, &ct) == RT_OK && ct.family == RT_CHAT_CHATML, "named chatml");
    rt_chat_msg m[] = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Yes"},
                       {"user", "Hi"}, {"assistant", "No"}};
    size_t n = 0;
    int content_a = 2, eot = 1; /* "Yes", "No" and <|im_end|> after each */
    int all_on = count_on(&ct, q, m, 5, RT_ROLE_ASSISTANT, RT_EOS_TURN, &n);
    CHECK(all_on == content_a + 2 * eot, "assistant turns: 2 contents + 2 end-of-turn tokens (got %d)", all_on);
    CHECK(count_on(&ct, q, m, 5, RT_ROLE_ASSISTANT, RT_EOS_NONE, &n) == 2, "train_on_eos none");
    CHECK(count_on(&ct, q, m, 5, RT_ROLE_ASSISTANT, RT_EOS_LAST, &n) == 3, "train_on_eos last");
    CHECK(count_on(&ct, q, m, 5, RT_ROLE_ASSISTANT, RT_EOS_ALL, &n) == 2 + 5, "train_on_eos all");
    int users = count_on(&ct, q, m, 5, RT_ROLE_ASSISTANT | RT_ROLE_USER, RT_EOS_TURN, &n);
    CHECK(users == 4 + 4, "roles_to_train user+assistant: 4 contents + 4 eot (got %d)", users);
    char *text = NULL;
    size_t tl = 0;
    rt_chat_render(&ct, q, m, 2, true, &text, &tl);
    CHECK(text && strcmp(text, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                               "<|im_start|>assistant\n") == 0, "chatml generation prompt");
    free(text);
    rt_chat_template_clear(&ct);
    /* Qwen3's own template: the final assistant turn gets an empty think block. */
    CHECK(rt_chat_template_get(NULL, q, &ct) == RT_OK && ct.family == RT_CHAT_QWEN3, "qwen3 recognised");
    rt_chat_render(&ct, q, m + 1, 2, false, &text, &tl);
    CHECK(text && strcmp(text, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
                               "Yes<|im_end|>\n") == 0, "qwen3 think block: %s", text ? text : "");
    free(text);
    rt_chat_template_clear(&ct);
}

static void test_errors(void) {
    rt_tokenizer *mi = load("tokenizers/mistral");
    rt_chat_template ct;
    rt_error_clear();
    CHECK(mi && rt_chat_template_get(NULL, mi, &ct) == RT_EINPUT && strstr(rt_error_message(), "no chat_template") &&
              strstr(rt_error_message(), "llama3, chatml"),
          "no template: error lists the names: %s", rt_error_message());
    CHECK(rt_chat_template_get("vicuna", mi, &ct) == RT_EINPUT && strstr(rt_error_message(), "vicuna") &&
              strstr(rt_error_message(), "gemma"),
          "unknown name: %s", rt_error_message());
    CHECK(rt_chat_template_get("tokenizer_default_fallback_mistral", mi, &ct) == RT_OK &&
              ct.family == RT_CHAT_MISTRAL, "fallback name");
    rt_chat_msg m[] = {{"user", "Hi"}, {"assistant", "Yo"}};
    char *text = NULL;
    size_t tl = 0;
    rt_chat_render(&ct, mi, m, 2, false, &text, &tl);
    CHECK(text && strcmp(text, "<s>[INST] Hi [/INST]Yo</s>") == 0, "mistral rendering: %s", text ? text : "");
    free(text);
    rt_chat_msg bad[] = {{"narrator", "x"}};
    CHECK(rt_chat_render(&ct, mi, bad, 1, false, &text, &tl) == RT_EINPUT && strstr(rt_error_message(), "narrator"),
          "unknown role named");
    rt_chat_template_clear(&ct);
    rt_tokenizer_free(mi);
}

int main(void) {
    rt_tokenizer *l3 = load("tokenizers/llama3"), *q = load("tokenizers/qwen3");
    if (l3) test_llama3_reference(l3);
    if (q) test_masking_variants(q);
    test_errors();
    rt_tokenizer_free(l3), rt_tokenizer_free(q);
    return rt_test_summary();
}
