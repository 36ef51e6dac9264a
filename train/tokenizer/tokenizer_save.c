/* retort — writing a tokenizer as a Hugging Face tokenizer.json directory.
 *
 * A llama2.c vocabulary becomes the Llama-2 layout (the shape of
 * transformers' LlamaConverter output); its merges come from the scores as
 * transformers' SentencePieceExtractor.extract() derives them: every split of
 * every piece into two vocabulary pieces, ordered by the merged piece's score
 * (descending), ties by piece id, then left id, then right id. */
#include "train/tokenizer/tokenizer_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SPACE_MARK "\xe2\x96\x81" /* U+2581 '▁' */

typedef struct { double prio; int merged, l, r; } merge_rec;

static int cmp_merge(const void *a, const void *b) {
    const merge_rec *x = a, *y = b;
    if (x->prio != y->prio) return x->prio < y->prio ? -1 : 1;
    if (x->merged != y->merged) return x->merged < y->merged ? -1 : 1;
    if (x->l != y->l) return x->l < y->l ? -1 : 1;
    return (x->r > y->r) - (x->r < y->r);
}

/* A SentencePiece-from-GGUF user-defined token (t->added of a BIN-source
 * tokenizer): matched whole in the raw text, written as it is. */
static bool user_token(const rt_tokenizer *t, int id) {
    if (t->source != RT_TOKSRC_BIN || (t->flags[id] & RT_TOKF_SPECIAL)) return false;
    for (int k = 0; k < t->n_added; k++)
        if (t->added[k] == id) return true;
    return false;
}

/* The piece as written to tokenizer.json (malloc'd): llama2.c specials lose
 * their "\n" wrapping ("\n<s>\n" -> "<s>"), spaces become '▁' (not in
 * user-defined tokens, which the raw text matches before normalization). */
static char *hf_piece(const rt_tokenizer *t, int id) {
    const char *p = t->piece[id] ? t->piece[id] : "";
    size_t n = (size_t)t->piece_len[id];
    if (t->source != RT_TOKSRC_BIN || user_token(t, id)) return strdup(p);
    if (t->flags[id] & RT_TOKF_SPECIAL) {
        while (n && (*p == '\n' || *p == ' ')) p++, n--;
        while (n && (p[n - 1] == '\n' || p[n - 1] == ' ')) n--;
        return strndup(p, n);
    }
    rt_tok_buf b = {0};
    if (rt_tok_buf_put(&b, "", 0) != RT_OK) return NULL;
    for (size_t i = 0; i < n; i++)
        if (rt_tok_buf_put(&b, p[i] == ' ' ? SPACE_MARK : p + i, p[i] == ' ' ? 3 : 1) != RT_OK) {
            free(b.p);
            return NULL;
        }
    return b.p;
}

static cJSON *obj_type(const char *type) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    return o;
}

static cJSON *replace_obj(const char *from, const char *to) {
    cJSON *o = obj_type("Replace"), *pat = cJSON_AddObjectToObject(o, "pattern");
    cJSON_AddStringToObject(pat, "String", from);
    cJSON_AddStringToObject(o, "content", to);
    return o;
}

/* {"SpecialToken"|"Sequence": {"id": id, "type_id": type_id}} */
static cJSON *template_item(const char *kind, const char *id, int type_id) {
    cJSON *o = cJSON_CreateObject(), *i = cJSON_AddObjectToObject(o, kind);
    cJSON_AddStringToObject(i, "id", id);
    cJSON_AddNumberToObject(i, "type_id", type_id);
    return o;
}

static cJSON *build_json(const rt_tokenizer *t, char **names) {
    bool sp = t->source == RT_TOKSRC_BIN;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    for (int id = 0; id < t->n_vocab; id++) {
        /* SentencePiece from GGUF: its user-defined tokens are matched whole
         * in the raw text, as non-special added tokens. */
        const bool user = user_token(t, id);
        if (!(t->flags[id] & RT_TOKF_SPECIAL) && !user) continue;
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "id", id);
        cJSON_AddStringToObject(a, "content", names[id]);
        cJSON_AddBoolToObject(a, "single_word", 0);
        cJSON_AddBoolToObject(a, "lstrip", 0);
        cJSON_AddBoolToObject(a, "rstrip", 0);
        cJSON_AddBoolToObject(a, "normalized", 0);
        cJSON_AddBoolToObject(a, "special", !user);
        cJSON_AddItemToArray(added, a);
    }
    if (sp) {
        cJSON *norm = obj_type("Sequence"), *ns = cJSON_AddArrayToObject(norm, "normalizers");
        if (!t->no_space_prefix) {
            cJSON *pre = obj_type("Prepend");
            cJSON_AddStringToObject(pre, "prepend", SPACE_MARK);
            cJSON_AddItemToArray(ns, pre);
        }
        cJSON_AddItemToArray(ns, replace_obj(" ", SPACE_MARK));
        cJSON_AddItemToObject(root, "normalizer", norm);
        cJSON_AddNullToObject(root, "pre_tokenizer");
    } else {
        cJSON_AddNullToObject(root, "normalizer");
        cJSON *pre = obj_type("ByteLevel");
        cJSON_AddBoolToObject(pre, "add_prefix_space", 0);
        cJSON_AddBoolToObject(pre, "trim_offsets", 1);
        cJSON_AddBoolToObject(pre, "use_regex", 1);
        cJSON_AddItemToObject(root, "pre_tokenizer", pre);
    }
    if (sp && t->add_bos && t->bos >= 0) {
        /* transformers' LlamaConverter: single "<s> $A", pair "<s> $A <s> $B"
         * (tokenizers refuses a TemplateProcessing without "pair"). */
        cJSON *pp = obj_type("TemplateProcessing");
        cJSON *single = cJSON_AddArrayToObject(pp, "single"), *pair = cJSON_AddArrayToObject(pp, "pair");
        cJSON_AddItemToArray(single, template_item("SpecialToken", names[t->bos], 0));
        cJSON_AddItemToArray(single, template_item("Sequence", "A", 0));
        cJSON_AddItemToArray(pair, template_item("SpecialToken", names[t->bos], 0));
        cJSON_AddItemToArray(pair, template_item("Sequence", "A", 0));
        cJSON_AddItemToArray(pair, template_item("SpecialToken", names[t->bos], 1));
        cJSON_AddItemToArray(pair, template_item("Sequence", "B", 1));
        cJSON *spec = cJSON_AddObjectToObject(pp, "special_tokens");
        cJSON *b = cJSON_AddObjectToObject(spec, names[t->bos]);
        cJSON_AddStringToObject(b, "id", names[t->bos]);
        cJSON_AddItemToObject(b, "ids", cJSON_CreateIntArray(&t->bos, 1));
        cJSON *toks = cJSON_AddArrayToObject(b, "tokens");
        cJSON_AddItemToArray(toks, cJSON_CreateString(names[t->bos]));
        cJSON_AddItemToObject(root, "post_processor", pp);
    } else {
        cJSON_AddNullToObject(root, "post_processor");
    }
    if (sp) {
        cJSON *dec = obj_type("Sequence"), *ds = cJSON_AddArrayToObject(dec, "decoders");
        cJSON_AddItemToArray(ds, replace_obj(SPACE_MARK, " "));
        cJSON_AddItemToArray(ds, obj_type("ByteFallback"));
        cJSON_AddItemToArray(ds, obj_type("Fuse"));
        if (!t->no_space_prefix) {
            cJSON *strip = obj_type("Strip");
            cJSON_AddStringToObject(strip, "content", " ");
            cJSON_AddNumberToObject(strip, "start", 1);
            cJSON_AddNumberToObject(strip, "stop", 0);
            cJSON_AddItemToArray(ds, strip);
        }
        cJSON_AddItemToObject(root, "decoder", dec);
    } else {
        cJSON *dec = obj_type("ByteLevel");
        cJSON_AddBoolToObject(dec, "add_prefix_space", 1);
        cJSON_AddBoolToObject(dec, "trim_offsets", 1);
        cJSON_AddBoolToObject(dec, "use_regex", 1);
        cJSON_AddItemToObject(root, "decoder", dec);
    }
    cJSON *model = obj_type("BPE");
    cJSON_AddNullToObject(model, "dropout");
    if (t->unk >= 0) cJSON_AddStringToObject(model, "unk_token", names[t->unk]);
    else cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddBoolToObject(model, "fuse_unk", sp);
    cJSON_AddBoolToObject(model, "byte_fallback", sp);
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    for (int id = 0; id < t->n_vocab; id++) cJSON_AddNumberToObject(vocab, names[id], id);
    cJSON_AddItemToObject(root, "model", model);
    return root;
}

static rt_status add_merges(const rt_tokenizer *t, char **names, cJSON *model) {
    merge_rec *m = malloc((t->n_pairs ? t->n_pairs : 1) * sizeof *m);
    if (!m) return rt_tok_oom();
    size_t n = 0;
    for (uint32_t i = 0; t->pkey && i <= t->pmask; i++) {
        if (t->pkey[i] == ~0ull) continue;
        /* user-defined tokens are never merged into (matched whole first) */
        const int l = (int)(t->pkey[i] >> 32), r = (int)(uint32_t)t->pkey[i];
        if (user_token(t, (int)t->pmerged[i]) || user_token(t, l) || user_token(t, r)) continue;
        m[n++] = (merge_rec){t->pprio[i], t->pmerged[i], (int)(t->pkey[i] >> 32),
                             (int)(uint32_t)t->pkey[i]};
    }
    qsort(m, n, sizeof *m, cmp_merge);
    cJSON *arr = cJSON_AddArrayToObject(model, "merges");
    rt_status st = RT_OK;
    for (size_t i = 0; i < n && st == RT_OK; i++) {
        char *s = NULL;
        if (asprintf(&s, "%s %s", names[m[i].l], names[m[i].r]) < 0) st = rt_tok_oom();
        else cJSON_AddItemToArray(arr, cJSON_CreateString(s));
        free(s);
    }
    free(m);
    return st;
}

static rt_status write_text(const char *dir, const char *name, const char *text) {
    char *path = NULL;
    if (asprintf(&path, "%s/%s", dir, name) < 0) return rt_tok_oom();
    FILE *f = fopen(path, "wb");
    rt_status st = RT_OK;
    if (!f) {
        st = rt_errorf(RT_EINPUT, "%s: cannot write (%s)", path, strerror(errno));
    } else {
        size_t n = strlen(text);
        bool ok = fwrite(text, 1, n, f) == n;
        if (fclose(f) != 0 || !ok) st = rt_errorf(RT_EINPUT, "%s: write failed", path);
    }
    free(path);
    return st;
}

static rt_status write_json(const char *dir, const char *name, cJSON *c) {
    char *text = c ? cJSON_Print(c) : NULL;
    cJSON_Delete(c);
    if (!text) return rt_tok_oom();
    rt_status st = write_text(dir, name, text);
    free(text);
    return st;
}

/* Adds "bos_token"/"eos_token"/"unk_token" (null when absent unless skip_null). */
static void add_token_names(const rt_tokenizer *t, cJSON *c, bool skip_null) {
    static const char *const keys[3] = {"bos_token", "eos_token", "unk_token"};
    int ids[3] = {t->bos, t->eos, t->unk};
    for (int k = 0; k < 3; k++) {
        char *name = ids[k] >= 0 ? hf_piece(t, ids[k]) : NULL;
        if (name) cJSON_AddStringToObject(c, keys[k], name);
        else if (!skip_null) cJSON_AddNullToObject(c, keys[k]);
        free(name);
    }
}

/* tokenizer_config.json: the loaded one verbatim (it carries chat_template
 * and added_tokens_decoder), else the fields transformers needs. */
static rt_status write_config(const rt_tokenizer *t, const char *dir) {
    if (t->hf_config) return write_text(dir, "tokenizer_config.json", t->hf_config);
    cJSON *c = cJSON_CreateObject();
    cJSON_AddBoolToObject(c, "add_bos_token", t->add_bos);
    cJSON_AddBoolToObject(c, "add_eos_token", t->add_eos);
    add_token_names(t, c, false);
    cJSON_AddBoolToObject(c, "clean_up_tokenization_spaces", 0);
    cJSON_AddStringToObject(c, "tokenizer_class",
                            t->source == RT_TOKSRC_GPT2 ? "GPT2Tokenizer" : "LlamaTokenizer");
    if (t->chat_template) cJSON_AddStringToObject(c, "chat_template", t->chat_template);
    return write_json(dir, "tokenizer_config.json", c);
}

/* special_tokens_map.json and generation_config.json, as transformers'
 * save_pretrained writes them beside a model. */
static rt_status write_side_files(const rt_tokenizer *t, const char *dir) {
    cJSON *m = cJSON_CreateObject();
    add_token_names(t, m, true);
    RT_TRY(write_json(dir, "special_tokens_map.json", m));
    cJSON *g = cJSON_CreateObject();
    if (t->bos >= 0) cJSON_AddNumberToObject(g, "bos_token_id", t->bos);
    if (t->eos >= 0) cJSON_AddNumberToObject(g, "eos_token_id", t->eos);
    cJSON_AddBoolToObject(g, "_from_model_config", 1);
    return write_json(dir, "generation_config.json", g);
}

rt_status rt_tokenizer_save_hf(const rt_tokenizer *t, const char *dir) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return rt_errorf(RT_EINPUT, "%s: cannot create directory (%s)", dir, strerror(errno));
    if (t->source == RT_TOKSRC_HF) {
        RT_TRY(write_text(dir, "tokenizer.json", t->hf_json));
        RT_TRY(write_config(t, dir));
        return write_side_files(t, dir);
    }
    char **names = calloc((size_t)t->n_vocab, sizeof *names);
    if (!names) return rt_tok_oom();
    rt_status st = RT_OK;
    for (int id = 0; id < t->n_vocab && st == RT_OK; id++)
        if (!(names[id] = hf_piece(t, id))) st = rt_tok_oom();
    cJSON *root = st == RT_OK ? build_json(t, names) : NULL;
    if (st == RT_OK) st = add_merges(t, names, cJSON_GetObjectItemCaseSensitive(root, "model"));
    char *text = st == RT_OK ? cJSON_PrintUnformatted(root) : NULL;
    if (st == RT_OK && !text) st = rt_tok_oom();
    if (st == RT_OK) st = write_text(dir, "tokenizer.json", text);
    if (st == RT_OK) st = write_config(t, dir);
    if (st == RT_OK) st = write_side_files(t, dir);
    free(text);
    cJSON_Delete(root);
    for (int id = 0; id < t->n_vocab; id++) free(names[id]);
    free(names);
    return st;
}
