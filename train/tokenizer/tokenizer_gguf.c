/* retort — tokenizers from GGUF metadata (tokenizer.ggml.*), as llama.cpp's
 * llama-vocab.cpp reads them (see train/tokenizer.h, form 4). */
#include "train/tokenizer/tokenizer_internal.h"
#include "train/formats/gguf.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* llama_token_type (llama.h) */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };

/* tokenizer.ggml.pre -> the Hugging Face pre_tokenizer convert_hf_to_gguf.py
 * recognised it from (llama-vocab.cpp's regex lists per pre type). */
static const struct { const char *pre, *json; } g_pre[] = {
    {"gpt-2", "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}"},
    {"default", "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}"},
    {"smollm", "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\",\"individual_digits\":true},"
               "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}]}"},
    {"starcoder", "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\",\"individual_digits\":true},"
                  "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}]}"},
    {"llama-bpe", "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
                  "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?"
                  "[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},"
                  "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\","
                  "\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}]}"},
    {"qwen2", "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
              "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?"
              "[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},"
              "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\","
              "\"add_prefix_space\":false,\"trim_offsets\":false,\"use_regex\":false}]}"},
};

static rt_status g_token_arrays(const rt_gguf *g, const rt_gguf_kv **tokens, const rt_gguf_kv **types) {
    const char *path = rt_gguf_path(g);
    *tokens = rt_gguf_find(g, "tokenizer.ggml.tokens");
    *types = rt_gguf_find(g, "tokenizer.ggml.token_type");
    if (!*tokens || (*tokens)->type != RT_GGUF_ARRAY || (*tokens)->arr_type != RT_GGUF_STRING ||
        (*tokens)->n == 0 || (*tokens)->n > (1u << 24))
        return rt_errorf(RT_EINPUT, "%s: tokenizer.ggml.tokens must be a non-empty array of strings", path);
    if (*types && ((*types)->type != RT_GGUF_ARRAY || (*types)->arr_type == RT_GGUF_STRING ||
                   (*types)->n != (*tokens)->n))
        return rt_errorf(RT_EINPUT, "%s: tokenizer.ggml.token_type must be %llu integers", path,
                         (unsigned long long)(*tokens)->n);
    return RT_OK;
}

static int g_type_of(const rt_gguf_kv *types, uint64_t i) {
    return types ? (int)rt_gguf_arr_int(types, i) : TT_NORMAL;
}

/* Special ids: bos/eos/unk (-1 when absent or out of range). */
static rt_status g_ids(const rt_gguf *g, int n, int *bos, int *eos, int *unk) {
    static const char *const keys[3] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                        "tokenizer.ggml.unknown_token_id"};
    int *out[3] = {bos, eos, unk};
    for (int k = 0; k < 3; k++) {
        int64_t v = -1;
        RT_TRY(rt_gguf_get_int(g, keys[k], false, &v));
        if (v >= n) return rt_errorf(RT_EINPUT, "%s: %s = %lld is not below the vocabulary size %d",
                                     rt_gguf_path(g), keys[k], (long long)v, n);
        *out[k] = v >= 0 ? (int)v : -1;
    }
    return RT_OK;
}

static char *g_strndup(const char *s, size_t n) { return strndup(s, n); }

/* Byte-level BPE ("gpt2"): the tokenizer.json HF would have. */
static rt_status g_load_bpe(rt_tokenizer *t, const rt_gguf *g, const rt_gguf_kv *tokens,
                            const rt_gguf_kv *types) {
    const char *path = rt_gguf_path(g), *pre = "default";
    size_t prel = 7;
    RT_TRY(rt_gguf_get_str(g, "tokenizer.ggml.pre", false, &pre, &prel));
    const char *pre_json = NULL;
    for (size_t i = 0; i < sizeof g_pre / sizeof g_pre[0]; i++)
        if (strlen(g_pre[i].pre) == prel && !memcmp(g_pre[i].pre, pre, prel)) pre_json = g_pre[i].json;
    if (!pre_json)
        return rt_errorf(RT_EINPUT, "%s: tokenizer.ggml.pre '%.*s' is not supported (known: gpt-2, "
                         "default, smollm, starcoder, llama-bpe, qwen2)", path,
                         (int)(prel < 64 ? prel : 64), pre);
    const rt_gguf_kv *merges = rt_gguf_find(g, "tokenizer.ggml.merges");
    if (!merges || merges->type != RT_GGUF_ARRAY || merges->arr_type != RT_GGUF_STRING)
        return rt_errorf(RT_EINPUT, "%s: tokenizer.ggml.merges (array of strings) is required for "
                         "a gpt2 tokenizer", path);
    bool add_bos = false;
    RT_TRY(rt_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", false, &add_bos));
    int bos, eos, unk;
    RT_TRY(g_ids(g, (int)tokens->n, &bos, &eos, &unk));

    rt_status st = RT_OK;
    cJSON *root = cJSON_CreateObject(), *model = NULL, *vocab = NULL, *mj = NULL, *added = NULL;
    if (!root) return rt_tok_oom();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    added = cJSON_AddArrayToObject(root, "added_tokens");
    cJSON_AddNullToObject(root, "normalizer");
    cJSON_AddItemToObject(root, "pre_tokenizer", cJSON_Parse(pre_json));
    model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddBoolToObject(model, "byte_fallback", 0);
    vocab = cJSON_AddObjectToObject(model, "vocab");
    mj = cJSON_AddArrayToObject(model, "merges");
    for (uint64_t i = 0; i < tokens->n && st == RT_OK; i++) {
        const char *s;
        size_t n;
        rt_gguf_arr_str(tokens, i, &s, &n);
        char *z = g_strndup(s, n);
        if (!z || strlen(z) != n) {
            free(z);
            st = z ? rt_errorf(RT_EINPUT, "%s: token %llu contains a NUL byte", path, (unsigned long long)i)
                   : rt_tok_oom();
            break;
        }
        const int tt = g_type_of(types, i);
        if (tt == TT_CONTROL || tt == TT_USER_DEFINED) {
            cJSON *a = cJSON_CreateObject();
            cJSON_AddNumberToObject(a, "id", (double)i);
            cJSON_AddStringToObject(a, "content", z);
            cJSON_AddBoolToObject(a, "single_word", 0);
            cJSON_AddBoolToObject(a, "lstrip", 0);
            cJSON_AddBoolToObject(a, "rstrip", 0);
            cJSON_AddBoolToObject(a, "normalized", tt == TT_USER_DEFINED);
            cJSON_AddBoolToObject(a, "special", tt == TT_CONTROL);
            cJSON_AddItemToArray(added, a);
        }
        if (!cJSON_GetObjectItemCaseSensitive(vocab, z)) cJSON_AddNumberToObject(vocab, z, (double)i);
        free(z);
    }
    for (uint64_t i = 0; i < merges->n && st == RT_OK; i++) {
        const char *s;
        size_t n;
        rt_gguf_arr_str(merges, i, &s, &n);
        char *z = g_strndup(s, n);
        if (!z) { st = rt_tok_oom(); break; }
        cJSON_AddItemToArray(mj, cJSON_CreateString(z));
        free(z);
    }
    if (st == RT_OK && add_bos && bos >= 0) {
        const char *b;
        size_t bl;
        rt_gguf_arr_str(tokens, (uint64_t)bos, &b, &bl);
        char *bz = g_strndup(b, bl);
        cJSON *pp = cJSON_AddObjectToObject(root, "post_processor");
        cJSON_AddStringToObject(pp, "type", "TemplateProcessing");
        cJSON *single = cJSON_AddArrayToObject(pp, "single");
        cJSON *sp = cJSON_CreateObject(), *spi = cJSON_AddObjectToObject(sp, "SpecialToken");
        cJSON_AddStringToObject(spi, "id", bz ? bz : "");
        cJSON_AddNumberToObject(spi, "type_id", 0);
        cJSON_AddItemToArray(single, sp);
        cJSON *sq = cJSON_CreateObject(), *sqi = cJSON_AddObjectToObject(sq, "Sequence");
        cJSON_AddStringToObject(sqi, "id", "A");
        cJSON_AddNumberToObject(sqi, "type_id", 0);
        cJSON_AddItemToArray(single, sq);
        cJSON *spec = cJSON_AddObjectToObject(pp, "special_tokens"), *e = cJSON_AddObjectToObject(spec, bz ? bz : "");
        cJSON_AddStringToObject(e, "id", bz ? bz : "");
        cJSON_AddItemToObject(e, "ids", cJSON_CreateIntArray(&bos, 1));
        cJSON_AddItemToArray(cJSON_AddArrayToObject(e, "tokens"), cJSON_CreateString(bz ? bz : ""));
        free(bz);
    } else {
        cJSON_AddNullToObject(root, "post_processor");
    }
    cJSON *dec = cJSON_AddObjectToObject(root, "decoder");
    cJSON_AddStringToObject(dec, "type", "ByteLevel");
    cJSON_AddBoolToObject(dec, "add_prefix_space", 1);
    cJSON_AddBoolToObject(dec, "trim_offsets", 1);
    cJSON_AddBoolToObject(dec, "use_regex", 1);
    char *text = st == RT_OK ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    RT_TRY(st);
    if (!text) return rt_tok_oom();
    RT_TRY(rt_tok_load_hf_text(t, path, text));
    if (bos >= 0) t->bos = bos;
    if (eos >= 0) t->eos = eos;
    t->unk = unk;
    t->add_bos = add_bos && bos >= 0;
    return RT_OK;
}

/* A USER_DEFINED token (Gemma's runs of spaces, newlines and tabs, HTML tags)
 * is matched whole in the raw text before SentencePiece sees it, as
 * llama.cpp's tokenizer_st_partition does for every user-defined token
 * (control tokens only when parsing specials): here as an added token of the
 * raw phase, longest first at each position (llama.cpp takes the longest
 * token over the whole text first; the two split alike unless user-defined
 * tokens overlap partially). */
static rt_status g_add_user_defined(rt_tokenizer *t, int id, int n) {
    if (!t->added && !(t->added = malloc((size_t)n * sizeof *t->added))) return rt_tok_oom();
    if (!t->added_flags && !(t->added_flags = calloc((size_t)n, 1))) return rt_tok_oom();
    t->added[t->n_added++] = id;
    return RT_OK;
}

/* SentencePiece BPE ("llama"): pieces with U+2581 as spaces, scores. */
static rt_status g_load_spm(rt_tokenizer *t, const rt_gguf *g, const rt_gguf_kv *tokens,
                            const rt_gguf_kv *types) {
    const char *path = rt_gguf_path(g);
    const rt_gguf_kv *scores = rt_gguf_find(g, "tokenizer.ggml.scores");
    if (!scores || scores->type != RT_GGUF_ARRAY || scores->arr_type == RT_GGUF_STRING ||
        scores->n != tokens->n)
        return rt_errorf(RT_EINPUT, "%s: tokenizer.ggml.scores must be %llu numbers for a llama "
                         "(SentencePiece) tokenizer", path, (unsigned long long)tokens->n);
    const int n = (int)tokens->n;
    RT_TRY(rt_tok_alloc_vocab(t, n));
    if (!(t->score = malloc((size_t)n * sizeof *t->score))) return rt_tok_oom();
    rt_tok_buf b = {0};
    rt_status st = RT_OK;
    for (int i = 0; i < n && st == RT_OK; i++) {
        const char *s;
        size_t len;
        rt_gguf_arr_str(tokens, (uint64_t)i, &s, &len);
        b.n = 0;
        for (size_t k = 0; k < len && st == RT_OK; k++) {
            if (k + 3 <= len && !memcmp(s + k, "\xe2\x96\x81", 3)) {
                st = rt_tok_buf_put(&b, " ", 1);
                k += 2;
            } else {
                st = rt_tok_buf_put(&b, s + k, 1);
            }
        }
        if (st == RT_OK) st = rt_tok_set_piece(t, i, b.n ? b.p : "", b.n);
        t->score[i] = (float)rt_gguf_arr_float(scores, (uint64_t)i);
        const int tt = g_type_of(types, (uint64_t)i);
        if (tt == TT_CONTROL || tt == TT_UNKNOWN) t->flags[i] |= RT_TOKF_SPECIAL;
        if (tt == TT_USER_DEFINED && st == RT_OK) st = g_add_user_defined(t, i, n);
    }
    free(b.p);
    RT_TRY(st);
    t->source = RT_TOKSRC_BIN;
    RT_TRY(g_ids(g, n, &t->bos, &t->eos, &t->unk));
    t->add_bos = true;
    RT_TRY(rt_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", false, &t->add_bos));
    t->byte_fallback = t->dec_byte_fallback = true;
    bool space_prefix = true;
    RT_TRY(rt_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", false, &space_prefix));
    t->no_space_prefix = !space_prefix;
    t->strip_lead = space_prefix ? 1 : 0;
    RT_TRY(rt_tok_build_vmap(t));
    return rt_tok_pairs_from_scores(t);
}

rt_status rt_tok_load_gguf(rt_tokenizer *t, const char *path) {
    rt_gguf *g;
    RT_TRY(rt_gguf_open(path, &g));
    const char *model = NULL, *tmpl = NULL;
    size_t ml = 0, tl = 0;
    const rt_gguf_kv *tokens, *types;
    rt_status st = rt_gguf_get_str(g, "tokenizer.ggml.model", true, &model, &ml);
    if (st == RT_OK) st = g_token_arrays(g, &tokens, &types);
    if (st == RT_OK && ml == 4 && !memcmp(model, "gpt2", 4)) st = g_load_bpe(t, g, tokens, types);
    else if (st == RT_OK && ml == 5 && !memcmp(model, "llama", 5)) st = g_load_spm(t, g, tokens, types);
    else if (st == RT_OK)
        st = rt_errorf(RT_EINPUT, "%s: tokenizer.ggml.model '%.*s' is not supported (gpt2, llama)", path,
                       (int)(ml < 64 ? ml : 64), model);
    if (st == RT_OK) st = rt_gguf_get_str(g, "tokenizer.chat_template", false, &tmpl, &tl);
    if (st == RT_OK && tmpl && !(t->chat_template = strndup(tmpl, tl))) st = rt_tok_oom();
    rt_gguf_close(g);
    return st;
}

/* The special ids, add_bos_token and the chat template. */
static rt_status g_meta_ids(const rt_tokenizer *t, rt_gguf_writer *w) {
    rt_status st = RT_OK;
    if (st == RT_OK && t->bos >= 0) st = rt_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)t->bos);
    if (st == RT_OK && t->eos >= 0) st = rt_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)t->eos);
    if (st == RT_OK && t->unk >= 0) st = rt_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)t->unk);
    if (st == RT_OK) st = rt_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", t->add_bos);
    if (st == RT_OK && t->chat_template) st = rt_gguf_set_str(w, "tokenizer.chat_template", t->chat_template);
    return st;
}

/* tokenizer.ggml.pre of a tokenizer.json pre_tokenizer: the g_pre entry
 * whose JSON equals it (key order aside), or NULL. */
static const char *g_pre_name(const cJSON *pre) {
    for (size_t i = 0; pre && i < sizeof g_pre / sizeof g_pre[0]; i++) {
        cJSON *j = cJSON_Parse(g_pre[i].json);
        bool same = j && cJSON_Compare(j, pre, true);
        cJSON_Delete(j);
        if (same) return g_pre[i].pre;
    }
    return NULL;
}

/* Byte-level BPE metadata from the tokenizer.json the tokenizer came from, as
 * llama.cpp's convert_hf_to_gguf.py writes it (_set_vocab_gpt2): the
 * byte-level vocabulary strings by id, added tokens as CONTROL (special) or
 * USER_DEFINED, ids nothing names as "[PAD<id>]" UNUSED, merges as "a b",
 * and the pre-tokenizer as the tokenizer.ggml.pre name g_load_bpe reads back.
 * `strs` collects the strings it allocates (freed by the caller). */
static rt_status g_meta_bpe(const rt_tokenizer *t, const cJSON *root, rt_gguf_writer *w, char **strs) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "BPE") || !cJSON_IsObject(vocab) ||
        !cJSON_IsArray(merges))
        return rt_errorf(RT_EINPUT, "writing this tokenizer as GGUF metadata is not supported (a BPE "
                         "tokenizer.json with vocab and merges, or SentencePiece)");
    const char *pre = g_pre_name(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"));
    if (!pre)
        return rt_errorf(RT_EINPUT, "writing this tokenizer as GGUF metadata is not supported: its "
                         "pre_tokenizer has no tokenizer.ggml.pre name (known: gpt-2, smollm, llama-bpe, qwen2)");
    const int n = t->n_vocab;
    const char **tok = calloc((size_t)n, sizeof *tok);
    int32_t *tt = malloc((size_t)n * sizeof *tt);
    int nm = cJSON_GetArraySize(merges);
    const char **ms = calloc((size_t)nm + 1, sizeof *ms);
    rt_status st = tok && tt && ms ? RT_OK : rt_tok_oom();
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        int id = cJSON_IsNumber(it) ? (int)it->valuedouble : -1;
        if (st == RT_OK && id >= 0 && id < n) tok[id] = it->string, tt[id] = TT_NORMAL;
    }
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(root, "added_tokens")) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "content");
        int i = cJSON_IsNumber(id) ? (int)id->valuedouble : -1;
        if (st != RT_OK || i < 0 || i >= n || !cJSON_IsString(c)) continue;
        tok[i] = c->valuestring;
        tt[i] = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "special")) ? TT_CONTROL : TT_USER_DEFINED;
    }
    int k = 0;
    for (int i = 0; i < n && st == RT_OK; i++) {
        if (tok[i]) continue;
        char pad[32];
        snprintf(pad, sizeof pad, "[PAD%d]", i);
        if (!(strs[k] = strdup(pad))) st = rt_tok_oom();
        else tok[i] = strs[k++], tt[i] = TT_UNUSED;
    }
    int m = 0;
    cJSON_ArrayForEach(it, merges) { /* "a b", or ["a", "b"] (tokenizers >= 0.20) */
        if (st != RT_OK) break;
        const cJSON *a = cJSON_GetArrayItem(it, 0), *b = cJSON_GetArrayItem(it, 1);
        if (cJSON_IsString(it)) {
            ms[m++] = it->valuestring;
        } else if (cJSON_IsString(a) && cJSON_IsString(b)) {
            size_t l = strlen(a->valuestring) + strlen(b->valuestring) + 2;
            if (!(strs[k] = malloc(l))) st = rt_tok_oom();
            else snprintf(strs[k], l, "%s %s", a->valuestring, b->valuestring), ms[m++] = strs[k++];
        } else {
            st = rt_errorf(RT_EINPUT, "tokenizer.json: merge %d is neither \"a b\" nor [a, b]", m);
        }
    }
    if (st == RT_OK) st = rt_gguf_set_str(w, "tokenizer.ggml.model", "gpt2");
    if (st == RT_OK) st = rt_gguf_set_str(w, "tokenizer.ggml.pre", pre);
    if (st == RT_OK) st = rt_gguf_set_arr_str(w, "tokenizer.ggml.tokens", tok, NULL, (uint64_t)n);
    if (st == RT_OK) st = rt_gguf_set_arr(w, "tokenizer.ggml.token_type", RT_GGUF_INT32, tt, (uint64_t)n);
    if (st == RT_OK) st = rt_gguf_set_arr_str(w, "tokenizer.ggml.merges", ms, NULL, (uint64_t)m);
    free(tok), free(tt), free(ms);
    return st;
}

rt_status rt_tokenizer_gguf_meta(const rt_tokenizer *t, rt_gguf_writer *w) {
    if (t->source == RT_TOKSRC_HF && t->hf_json) { /* byte-level BPE from its tokenizer.json */
        cJSON *root = cJSON_Parse(t->hf_json);
        char **strs = calloc((size_t)t->n_vocab + (size_t)cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(
                                 cJSON_GetObjectItemCaseSensitive(root, "model"), "merges")) + 1, sizeof *strs);
        rt_status st = !root ? rt_errorf(RT_EINPUT, "tokenizer.json: malformed JSON") : strs ? RT_OK : rt_tok_oom();
        if (st == RT_OK) st = g_meta_bpe(t, root, w, strs);
        if (st == RT_OK) st = g_meta_ids(t, w);
        for (size_t i = 0; strs && strs[i]; i++) free(strs[i]);
        free(strs);
        cJSON_Delete(root);
        return st;
    }
    if (t->source != RT_TOKSRC_BIN)
        return rt_errorf(RT_EINPUT, "writing this tokenizer as GGUF metadata is not supported "
                         "(SentencePiece vocabularies only; use a .gguf tokenizer)");
    const int n = t->n_vocab;
    char **s = calloc((size_t)n, sizeof *s);
    size_t *len = calloc((size_t)n, sizeof *len);
    float *score = malloc((size_t)n * sizeof *score);
    int32_t *type = malloc((size_t)n * sizeof *type);
    rt_status st = s && len && score && type ? RT_OK : rt_tok_oom();
    for (int i = 0; i < n && st == RT_OK; i++) {
        rt_tok_buf b = {0};
        const char *p = t->piece[i] ? t->piece[i] : "";
        size_t pl = (size_t)t->piece_len[i];
        if (t->flags[i] & RT_TOKF_SPECIAL) { /* llama2.c wraps specials in newlines */
            while (pl && (*p == '\n' || *p == ' ')) p++, pl--;
            while (pl && (p[pl - 1] == '\n' || p[pl - 1] == ' ')) pl--;
        }
        st = rt_tok_buf_put(&b, "", 0);
        for (size_t k = 0; k < pl && st == RT_OK; k++)
            st = (t->flags[i] & RT_TOKF_SPECIAL) || p[k] != ' ' ? rt_tok_buf_put(&b, p + k, 1)
                                                               : rt_tok_buf_put(&b, "\xe2\x96\x81", 3);
        s[i] = b.p;
        len[i] = b.n;
        score[i] = t->score ? t->score[i] : 0.0f;
        type[i] = i == t->unk ? TT_UNKNOWN : (t->flags[i] & RT_TOKF_SPECIAL) ? TT_CONTROL
                : (t->flags[i] & RT_TOKF_BYTE) ? TT_BYTE : TT_NORMAL;
    }
    if (st == RT_OK) st = rt_gguf_set_str(w, "tokenizer.ggml.model", "llama");
    if (st == RT_OK) st = rt_gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)s, len, (uint64_t)n);
    if (st == RT_OK) st = rt_gguf_set_arr(w, "tokenizer.ggml.scores", RT_GGUF_FLOAT32, score, (uint64_t)n);
    if (st == RT_OK) st = rt_gguf_set_arr(w, "tokenizer.ggml.token_type", RT_GGUF_INT32, type, (uint64_t)n);
    if (st == RT_OK && t->bos >= 0) st = rt_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)t->bos);
    if (st == RT_OK && t->eos >= 0) st = rt_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)t->eos);
    if (st == RT_OK && t->unk >= 0) st = rt_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)t->unk);
    if (st == RT_OK) st = rt_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", t->add_bos);
    if (st == RT_OK && t->no_space_prefix) st = rt_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", false);
    if (st == RT_OK && t->chat_template) st = rt_gguf_set_str(w, "tokenizer.chat_template", t->chat_template);
    for (int i = 0; s && i < n; i++) free(s[i]);
    free(s), free(len), free(score), free(type);
    return st;
}
