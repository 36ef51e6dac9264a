/* retort — reading tokenizer files: llama2.c tokenizer.bin, Hugging Face
 * tokenizer.json (+ tokenizer_config.json), GPT-2 encoder.json + vocab.bpe.
 * Formats are described in train/tokenizer.h. */
#include "train/tokenizer/tokenizer_internal.h"
#include "train/formats/fs.h"
#include "train/formats/gguf_model.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uninorm.h>

static bool is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static rt_status parse_json(const char *path, const char *data, size_t len, cJSON **out) {
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(data, len, &end, 0);
    if (!*out) {
        size_t off = end && end >= data ? (size_t)(end - data) : 0;
        return rt_errorf(RT_EINPUT, "%s: invalid JSON near byte %zu", path, off);
    }
    return RT_OK;
}

static rt_status load_json_file(const char *path, cJSON **out, char **text) {
    char *data;
    size_t len;
    RT_TRY(rt_read_file_max(path, "tokenizer file", RT_TOKENIZER_FILE_MAX, &data, &len));
    rt_status st = parse_json(path, data, len, out);
    if (text && st == RT_OK) *text = data;
    else free(data);
    return st;
}

/* Builds the pair table of a scores vocabulary: (l, r) merges into the piece
 * l+r, for every split of every piece into two pieces (run.c merges any
 * adjacent pair whose concatenation is in the vocabulary). */
rt_status rt_tok_pairs_from_scores(rt_tokenizer *t) {
    for (int id = 0; id < t->n_vocab; id++) {
        const char *p = t->piece[id];
        int len = t->piece_len[id];
        for (int k = 1; k < len; k++) {
            int l = rt_tok_lookup(t, p, (size_t)k);
            if (l < 0) continue;
            int r = rt_tok_lookup(t, p + k, (size_t)(len - k));
            if (r < 0) continue;
            RT_TRY(rt_tok_pair_add(t, l, r, id, -(double)t->score[id], (size_t)t->n_vocab * 2));
        }
    }
    return RT_OK;
}

/* llama2.c tokenizer.bin: int32 max_token_length, then per token float32
 * score, int32 len, len bytes (run.c build_tokenizer). */
static rt_status load_bin(rt_tokenizer *t, const char *path) {
    char *d;
    size_t n;
    RT_TRY(rt_read_file_max(path, "tokenizer file", RT_TOKENIZER_FILE_MAX, &d, &n));
    rt_status st = RT_OK;
    int count = 0;
    size_t off = 4;
    if (n < 4) st = rt_errorf(RT_EINPUT, "%s: truncated tokenizer.bin (%zu bytes)", path, n);
    while (st == RT_OK && off < n) {
        int32_t l;
        if (n - off < 8) {
            st = rt_errorf(RT_EINPUT, "%s: truncated tokenizer.bin: token %d header at byte %zu",
                           path, count, off);
            break;
        }
        memcpy(&l, d + off + 4, 4);
        if (l < 0 || (size_t)l > n - off - 8) {
            st = rt_errorf(RT_EINPUT, "%s: token %d at byte %zu has length %d past the end of the file",
                           path, count, off, (int)l);
            break;
        }
        off += 8 + (size_t)l;
        count++;
    }
    if (st == RT_OK && count < 3)
        st = rt_errorf(RT_EINPUT, "%s: tokenizer.bin holds %d tokens (need <unk>, BOS, EOS)", path, count);
    if (st == RT_OK) st = rt_tok_alloc_vocab(t, count);
    if (st == RT_OK && !(t->score = malloc((size_t)count * sizeof *t->score))) st = rt_tok_oom();
    off = 4;
    for (int id = 0; st == RT_OK && id < count; id++) {
        int32_t l;
        memcpy(&t->score[id], d + off, 4);
        memcpy(&l, d + off + 4, 4);
        st = rt_tok_set_piece(t, id, d + off + 8, (size_t)l);
        off += 8 + (size_t)l;
    }
    free(d);
    RT_TRY(st);
    t->source = RT_TOKSRC_BIN;
    t->unk = 0, t->bos = 1, t->eos = 2;
    t->flags[0] = t->flags[1] = t->flags[2] = RT_TOKF_SPECIAL;
    t->add_bos = true;
    t->byte_fallback = t->dec_byte_fallback = true;
    t->strip_lead = 1;
    RT_TRY(rt_tok_build_vmap(t));
    return rt_tok_pairs_from_scores(t);
}

/* GPT-2: encoder.json {piece: id} and vocab.bpe ("#version" line, then one
 * merge "a b" per line, by rank) from openai/gpt-2 src/encoder.py. */
static rt_status load_gpt2(rt_tokenizer *t, const char *enc_path, const char *bpe_path) {
    cJSON *j;
    RT_TRY(load_json_file(enc_path, &j, NULL));
    rt_status st = RT_OK;
    int n = 0;
    if (!cJSON_IsObject(j)) st = rt_errorf(RT_EINPUT, "%s: expected a JSON object {piece: id}", enc_path);
    /* Ids are dense (every id below the largest has a piece), so none may
     * reach the number of entries: the tables are sized by the file. */
    const int entries = st == RT_OK ? cJSON_GetArraySize(j) : 0;
    for (cJSON *c = j->child; st == RT_OK && c; c = c->next) {
        if (!cJSON_IsNumber(c) || c->valuedouble < 0 || c->valuedouble > 1e8 ||
            c->valuedouble != (double)(int)c->valuedouble)
            st = rt_errorf(RT_EINPUT, "%s: piece \"%s\" has a non-integer id", enc_path, c->string);
        else if (c->valueint >= entries)
            st = rt_errorf(RT_EINPUT, "%s: piece \"%s\" has id %d, but the file holds %d pieces "
                           "(ids must be 0..%d)", enc_path, c->string, c->valueint, entries, entries - 1);
        else if (c->valueint + 1 > n)
            n = c->valueint + 1;
    }
    if (st == RT_OK) st = rt_tok_alloc_vocab(t, n);
    for (cJSON *c = j->child; st == RT_OK && c; c = c->next)
        st = rt_tok_set_piece(t, c->valueint, c->string, strlen(c->string));
    cJSON_Delete(j);
    for (int id = 0; st == RT_OK && id < n; id++)
        if (!t->piece[id]) st = rt_errorf(RT_EINPUT, "%s: no piece has id %d", enc_path, id);
    if (st == RT_OK) st = rt_tok_build_vmap(t);
    RT_TRY(st);

    char *d;
    size_t len;
    RT_TRY(rt_read_file_max(bpe_path, "tokenizer file", RT_TOKENIZER_FILE_MAX, &d, &len));
    rt_tok_buf cat = {0};
    int rank = 0, line = 0;
    for (char *p = d; st == RT_OK && p < d + len;) {
        char *e = memchr(p, '\n', (size_t)(d + len - p));
        if (!e) e = d + len;
        line++;
        size_t ll = (size_t)(e - p);
        if (ll && p[ll - 1] == '\r') ll--;
        if (ll && !(line == 1 && p[0] == '#')) {
            char *sp = memchr(p, ' ', ll);
            int l = sp ? rt_tok_lookup(t, p, (size_t)(sp - p)) : -1;
            int r = sp ? rt_tok_lookup(t, sp + 1, ll - (size_t)(sp + 1 - p)) : -1;
            cat.n = 0;
            if (l >= 0 && r >= 0) st = rt_tok_buf_put(&cat, p, (size_t)(sp - p));
            if (l >= 0 && r >= 0 && st == RT_OK) st = rt_tok_buf_put(&cat, sp + 1, ll - (size_t)(sp + 1 - p));
            int m = l >= 0 && r >= 0 && st == RT_OK ? rt_tok_lookup(t, cat.p, cat.n) : -1;
            if (st == RT_OK && m < 0)
                st = rt_errorf(RT_EINPUT, "%s:%d: merge \"%.*s\" is not two pieces of encoder.json "
                               "joining into a third", bpe_path, line, (int)ll, p);
            if (st == RT_OK) st = rt_tok_pair_add(t, l, r, m, rank++, 65536);
        }
        p = e + 1;
    }
    free(d), free(cat.p);
    RT_TRY(st);
    t->source = RT_TOKSRC_GPT2;
    t->unk = -1;
    t->bos = t->eos = rt_tok_lookup(t, "<|endoftext|>", 13);
    t->add_bos = false;
    t->pretok = RT_PRE_BYTELEVEL;
    t->dec_bytelevel = true;
    t->pstep[0] = (rt_tok_pstep){RT_PSTEP_BYTELEVEL, rt_tok_regex_compile(enc_path, RT_GPT2_PATTERN, false),
                                 RT_SPLIT_ISOLATED, false};
    if (!t->pstep[0].re) return RT_EINPUT;
    t->n_pstep = 1;
    if (t->bos >= 0) {
        t->flags[t->bos] |= RT_TOKF_SPECIAL;
        if (!(t->added = malloc(sizeof *t->added))) return rt_tok_oom();
        t->added[0] = t->bos;
        t->n_added = 1;
    }
    return RT_OK;
}

/* --- tokenizer.json ------------------------------------------------------ */

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool jbool(const cJSON *o, const char *key, bool dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static rt_status add_step(const char *path, rt_tok_step *steps, int *n, int op, const char *a,
                          const char *b) {
    if (*n == RT_TOK_MAX_STEPS) return rt_errorf(RT_EINPUT, "%s: too many normalizer/decoder steps", path);
    rt_tok_step *s = &steps[*n];
    s->op = op;
    s->a = strdup(a);
    s->b = strdup(b ? b : "");
    if (!s->a || !s->b) {
        free(s->a), free(s->b);
        return rt_tok_oom();
    }
    s->alen = strlen(a), s->blen = strlen(s->b);
    ++*n;
    return RT_OK;
}

/* Replace's pattern must be {"String": s}; regex patterns are unsupported. */
static rt_status replace_args(const char *path, const char *what, const cJSON *o, const char **a,
                              const char **b) {
    *a = jstr(cJSON_GetObjectItemCaseSensitive(o, "pattern"), "String");
    *b = jstr(o, "content");
    if (!*a || !*b)
        return rt_errorf(RT_EINPUT, "%s: %s Replace needs {\"pattern\": {\"String\": ...}, \"content\"} "
                         "(regex patterns are not supported)", path, what);
    return RT_OK;
}

static rt_status parse_normalizer(rt_tokenizer *t, const char *path, const cJSON *n) {
    if (!n || cJSON_IsNull(n)) return RT_OK;
    const char *type = jstr(n, "type");
    if (type && strcmp(type, "Sequence") == 0) {
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(n, "normalizers"))
            RT_TRY(parse_normalizer(t, path, c));
        return RT_OK;
    }
    static const char *const forms[4] = {"NFC", "NFD", "NFKC", "NFKD"};
    for (int k = 0; type && k < 4; k++) {
        if (strcmp(type, forms[k]) != 0) continue;
        RT_TRY(add_step(path, t->norm, &t->n_norm, RT_NORM_UNICODE, "", NULL));
        t->norm[t->n_norm - 1].form = k == 0 ? UNINORM_NFC : k == 1 ? UNINORM_NFD : k == 2 ? UNINORM_NFKC
                                                                                         : UNINORM_NFKD;
        return RT_OK;
    }
    if (type && strcmp(type, "Prepend") == 0 && jstr(n, "prepend"))
        return add_step(path, t->norm, &t->n_norm, RT_NORM_PREPEND, jstr(n, "prepend"), NULL);
    if (type && strcmp(type, "Replace") == 0) {
        const char *a, *b;
        RT_TRY(replace_args(path, "normalizer", n, &a, &b));
        return add_step(path, t->norm, &t->n_norm, RT_NORM_REPLACE, a, b);
    }
    return rt_errorf(RT_EINPUT, "%s: normalizer \"%s\" is not supported (retort handles Sequence, "
                     "Prepend, Replace, NFC, NFD, NFKC, NFKD)", path, type ? type : "?");
}

/* Metaspace's prepend_scheme ("always"/"first"/"never"), or the older
 * add_prefix_space boolean. */
static int ms_scheme(const cJSON *o) {
    const char *s = jstr(o, "prepend_scheme");
    if (s && strcmp(s, "first") == 0) return RT_MS_FIRST;
    if (s && strcmp(s, "never") == 0) return RT_MS_NEVER;
    if (s) return RT_MS_ALWAYS;
    return jbool(o, "add_prefix_space", true) ? RT_MS_ALWAYS : RT_MS_NEVER;
}

static rt_status add_pstep(rt_tokenizer *t, const char *path, rt_tok_pstep ps) {
    if (t->n_pstep == RT_TOK_MAX_STEPS) {
        rt_tok_regex_free(ps.re);
        return rt_errorf(RT_EINPUT, "%s: too many pre_tokenizer steps", path);
    }
    t->pstep[t->n_pstep++] = ps;
    return RT_OK;
}

static rt_status parse_split(rt_tokenizer *t, const char *path, const cJSON *p) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
    const char *re = jstr(pat, "Regex"), *lit = jstr(pat, "String");
    const char *beh = jstr(p, "behavior");
    static const char *const names[4] = {"Isolated", "Removed", "MergedWithPrevious", "MergedWithNext"};
    int b = -1;
    for (int k = 0; k < 4 && beh; k++)
        if (strcmp(beh, names[k]) == 0) b = k;
    if (!re && !lit) return rt_errorf(RT_EINPUT, "%s: pre_tokenizer Split needs a pattern {Regex|String}", path);
    if (b < 0)
        return rt_errorf(RT_EINPUT, "%s: pre_tokenizer Split behavior \"%s\" is not supported (retort handles "
                         "Isolated, Removed, MergedWithPrevious, MergedWithNext)", path, beh ? beh : "?");
    if (jbool(p, "invert", false))
        return rt_errorf(RT_EINPUT, "%s: pre_tokenizer Split with invert=true is not supported", path);
    void *rx = rt_tok_regex_compile(path, re ? re : lit, !re);
    if (!rx) return RT_EINPUT;
    return add_pstep(t, path, (rt_tok_pstep){RT_PSTEP_SPLIT, rx, b, false});
}

static rt_status parse_pretok(rt_tokenizer *t, const char *path, const cJSON *p) {
    if (!p || cJSON_IsNull(p)) return RT_OK;
    const char *type = jstr(p, "type");
    if (type && strcmp(type, "Sequence") == 0) {
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(p, "pretokenizers"))
            RT_TRY(parse_pretok(t, path, c));
        return RT_OK;
    }
    if (type && strcmp(type, "ByteLevel") == 0) {
        void *rx = NULL;
        if (jbool(p, "use_regex", true) && !(rx = rt_tok_regex_compile(path, RT_GPT2_PATTERN, false)))
            return RT_EINPUT;
        t->pretok = RT_PRE_BYTELEVEL;
        return add_pstep(t, path, (rt_tok_pstep){RT_PSTEP_BYTELEVEL, rx, RT_SPLIT_ISOLATED,
                                                 jbool(p, "add_prefix_space", false)});
    }
    if (type && strcmp(type, "Digits") == 0) { /* tokenizers' Digits: Split \p{N}(+), Isolated */
        void *rx = rt_tok_regex_compile(path, jbool(p, "individual_digits", false) ? "\\p{N}" : "\\p{N}+",
                                        false);
        if (!rx) return RT_EINPUT;
        return add_pstep(t, path, (rt_tok_pstep){RT_PSTEP_SPLIT, rx, RT_SPLIT_ISOLATED, false});
    }
    if (type && strcmp(type, "Metaspace") == 0) {
        const char *r = jstr(p, "replacement");
        if (!r) r = "\xe2\x96\x81";
        if (strlen(r) >= sizeof t->ms_repl || !*r)
            return rt_errorf(RT_EINPUT, "%s: Metaspace replacement \"%s\" is not one character", path, r);
        strcpy(t->ms_repl, r);
        t->pretok = RT_PRE_METASPACE;
        t->ms_scheme = ms_scheme(p);
        t->ms_split = jbool(p, "split", true);
        return RT_OK;
    }
    if (type && strcmp(type, "Split") == 0) return parse_split(t, path, p);
    return rt_errorf(RT_EINPUT, "%s: pre_tokenizer \"%s\" is not supported (retort handles Sequence, "
                     "ByteLevel, Metaspace, Digits, Split)", path, type ? type : "?");
}

static rt_status parse_decoder(rt_tokenizer *t, const char *path, const cJSON *d) {
    if (!d || cJSON_IsNull(d)) return RT_OK;
    const char *type = jstr(d, "type");
    if (!type) type = "?";
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(d, "decoders"))
            RT_TRY(parse_decoder(t, path, c));
        return RT_OK;
    }
    if (strcmp(type, "Replace") == 0) {
        const char *a, *b;
        RT_TRY(replace_args(path, "decoder", d, &a, &b));
        return add_step(path, t->dec_replace, &t->n_dec_replace, RT_NORM_REPLACE, a, b);
    }
    if (strcmp(type, "ByteFallback") == 0) { t->dec_byte_fallback = true; return RT_OK; }
    if (strcmp(type, "Fuse") == 0) return RT_OK;
    if (strcmp(type, "ByteLevel") == 0) { t->dec_bytelevel = true; return RT_OK; }
    if (strcmp(type, "Strip") == 0) {
        const char *c = jstr(d, "content");
        const cJSON *start = cJSON_GetObjectItemCaseSensitive(d, "start");
        if (!c || strcmp(c, " ") != 0 || !cJSON_IsNumber(start))
            return rt_errorf(RT_EINPUT, "%s: decoder Strip is supported only for content \" \"", path);
        t->strip_lead = start->valueint;
        return RT_OK;
    }
    if (strcmp(type, "Metaspace") == 0) {
        const char *r = jstr(d, "replacement");
        RT_TRY(add_step(path, t->dec_replace, &t->n_dec_replace, RT_NORM_REPLACE,
                        r ? r : "\xe2\x96\x81", " "));
        if (ms_scheme(d) != RT_MS_NEVER) t->strip_lead = 1;
        return RT_OK;
    }
    return rt_errorf(RT_EINPUT, "%s: decoder \"%s\" is not supported (retort handles Sequence, Replace, "
                     "ByteFallback, Fuse, Strip, ByteLevel, Metaspace)", path, type);
}

/* bos_token / eos_token in tokenizer_config.json: a string, an AddedToken
 * object {"content": ...}, or null. Returns -2 when absent/null. */
static rt_status config_token(rt_tokenizer *t, const char *path, const cJSON *cfg, const char *key,
                              int *id) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    const char *s = cJSON_IsString(v) ? v->valuestring : jstr(v, "content");
    *id = -2;
    if (!s) return RT_OK;
    *id = rt_tok_lookup(t, s, strlen(s));
    if (*id < 0) return rt_errorf(RT_EINPUT, "%s: %s \"%s\" is not in the vocabulary", path, key, s);
    return RT_OK;
}

static rt_status hf_model(rt_tokenizer *t, const char *path, const cJSON *root) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const char *type = jstr(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (type && strcmp(type, "BPE") != 0)
        return rt_errorf(RT_EINPUT, "%s: model type \"%s\" is not supported (only BPE)", path, type);
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges))
        return rt_errorf(RT_EINPUT, "%s: model needs a \"vocab\" object and a \"merges\" array", path);
    const char *csp = jstr(model, "continuing_subword_prefix"), *eow = jstr(model, "end_of_word_suffix");
    if ((csp && *csp) || (eow && *eow))
        return rt_errorf(RT_EINPUT, "%s: BPE continuing_subword_prefix/end_of_word_suffix are not supported",
                         path);
    int n = 0;
    const cJSON *c;
    /* Every id names a distinct token of the file, so ids below the number
     * of vocab plus added entries suffice; a larger one would size the
     * tables by a number the file does not back. */
    const int entries = cJSON_GetArraySize(vocab) + cJSON_GetArraySize(added);
    for (c = vocab->child; c; c = c->next) {
        if (!cJSON_IsNumber(c) || c->valuedouble < 0 || c->valuedouble > 1e8 ||
            c->valuedouble != (double)(int)c->valuedouble)
            return rt_errorf(RT_EINPUT, "%s: vocab entry \"%s\" has a bad id", path, c->string);
        if (c->valueint >= entries)
            return rt_errorf(RT_EINPUT, "%s: vocab entry \"%s\" has id %d, but the file holds %d "
                             "tokens", path, c->string, c->valueint, entries);
        if (c->valueint + 1 > n) n = c->valueint + 1;
    }
    cJSON_ArrayForEach(c, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "id");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > 1e8 || !jstr(c, "content"))
            return rt_errorf(RT_EINPUT, "%s: added_tokens entry without a valid id/content", path);
        if (id->valueint >= entries)
            return rt_errorf(RT_EINPUT, "%s: added token \"%s\" has id %d, but the file holds %d "
                             "tokens", path, jstr(c, "content"), id->valueint, entries);
        if (id->valueint + 1 > n) n = id->valueint + 1;
    }
    RT_TRY(rt_tok_alloc_vocab(t, n));
    for (c = vocab->child; c; c = c->next)
        RT_TRY(rt_tok_set_piece(t, c->valueint, c->string, strlen(c->string)));
    int n_added = cJSON_GetArraySize(added);
    if (n_added > 0 && !(t->added = malloc((size_t)n_added * sizeof *t->added))) return rt_tok_oom();
    if (!(t->added_flags = calloc((size_t)n, 1))) return rt_tok_oom();
    cJSON_ArrayForEach(c, added) {
        int id = cJSON_GetObjectItemCaseSensitive(c, "id")->valueint;
        const char *s = jstr(c, "content");
        bool special = jbool(c, "special", false);
        if (!t->piece[id] || strcmp(t->piece[id], s) != 0) RT_TRY(rt_tok_set_piece(t, id, s, strlen(s)));
        if (special) t->flags[id] |= RT_TOKF_SPECIAL;
        t->added_flags[id] = (uint8_t)((jbool(c, "lstrip", false) ? RT_ADD_LSTRIP : 0) |
                                       (jbool(c, "rstrip", false) ? RT_ADD_RSTRIP : 0) |
                                       (jbool(c, "single_word", false) ? RT_ADD_SINGLE_WORD : 0) |
                                       (jbool(c, "normalized", !special) ? RT_ADD_NORMALIZED : 0));
        t->added[t->n_added++] = id;
    }
    RT_TRY(rt_tok_build_vmap(t));

    rt_tok_buf cat = {0};
    int rank = 0;
    size_t n_merges = (size_t)cJSON_GetArraySize(merges);
    rt_status st = RT_OK;
    cJSON_ArrayForEach(c, merges) {
        /* "a b" (tokenizers < 0.20) or ["a", "b"] */
        const char *a = NULL, *b = NULL;
        size_t al = 0, bl = 0;
        if (cJSON_IsString(c)) {
            const char *sp = strchr(c->valuestring, ' ');
            if (sp) a = c->valuestring, al = (size_t)(sp - a), b = sp + 1, bl = strlen(b);
        } else if (cJSON_GetArraySize(c) == 2 && cJSON_IsString(c->child) && cJSON_IsString(c->child->next)) {
            a = c->child->valuestring, al = strlen(a);
            b = c->child->next->valuestring, bl = strlen(b);
        }
        int l = a ? rt_tok_lookup(t, a, al) : -1, r = b ? rt_tok_lookup(t, b, bl) : -1;
        cat.n = 0;
        if (l >= 0 && r >= 0) st = rt_tok_buf_put(&cat, a, al);
        if (l >= 0 && r >= 0 && st == RT_OK) st = rt_tok_buf_put(&cat, b, bl);
        int m = l >= 0 && r >= 0 && st == RT_OK ? rt_tok_lookup(t, cat.p, cat.n) : -1;
        if (st == RT_OK && m < 0)
            st = rt_errorf(RT_EINPUT, "%s: merge %d is not two vocab pieces joining into a third", path, rank);
        if (st == RT_OK) st = rt_tok_pair_add(t, l, r, m, rank++, n_merges);
        if (st != RT_OK) break;
    }
    free(cat.p);
    RT_TRY(st);

    const char *unk = jstr(model, "unk_token");
    t->unk = unk ? rt_tok_lookup(t, unk, strlen(unk)) : -1;
    if (unk && t->unk < 0) return rt_errorf(RT_EINPUT, "%s: unk_token \"%s\" is not in the vocabulary", path, unk);
    t->byte_fallback = jbool(model, "byte_fallback", false);
    t->fuse_unk = jbool(model, "fuse_unk", false);
    t->ignore_merges = jbool(model, "ignore_merges", false);
    return RT_OK;
}

/* Ids of one template item {"SpecialToken": {"id": name}} via the
 * processor's "special_tokens" map (or the vocabulary), appended to ids. */
static rt_status post_special(rt_tokenizer *t, const char *path, const cJSON *pp, const char *name,
                              int32_t *ids, int *n) {
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(pp, "special_tokens"), name);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(spec, "ids"), *c;
    int one = rt_tok_lookup(t, name, strlen(name));
    if (!cJSON_IsArray(arr) && one < 0)
        return rt_errorf(RT_EINPUT, "%s: TemplateProcessing special token \"%s\" is unknown", path, name);
    if (!cJSON_IsArray(arr)) {
        if (*n == RT_TOK_MAX_POST) return rt_errorf(RT_EINPUT, "%s: TemplateProcessing too long", path);
        ids[(*n)++] = one;
        return RT_OK;
    }
    cJSON_ArrayForEach(c, arr) {
        if (!cJSON_IsNumber(c) || c->valueint < 0 || c->valueint >= t->n_vocab)
            return rt_errorf(RT_EINPUT, "%s: TemplateProcessing token \"%s\" has a bad id", path, name);
        if (*n == RT_TOK_MAX_POST) return rt_errorf(RT_EINPUT, "%s: TemplateProcessing too long", path);
        ids[(*n)++] = c->valueint;
    }
    return RT_OK;
}

/* The post_processor: TemplateProcessing's "single" template gives the ids
 * added before and after the text (BOS and EOS); ByteLevel changes only
 * offsets; Sequence holds either. */
static rt_status hf_post(rt_tokenizer *t, const char *path, const cJSON *pp) {
    if (!pp || cJSON_IsNull(pp)) return RT_OK;
    const char *type = jstr(pp, "type");
    if (!type) type = "?";
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(pp, "processors"))
            RT_TRY(hf_post(t, path, c));
        return RT_OK;
    }
    if (strcmp(type, "ByteLevel") == 0) return RT_OK;
    if (strcmp(type, "TemplateProcessing") != 0)
        return rt_errorf(RT_EINPUT, "%s: post_processor \"%s\" is not supported (retort handles "
                         "TemplateProcessing, ByteLevel, Sequence)", path, type);
    const cJSON *item;
    bool seen_a = false;
    t->n_post_pre = t->n_post_suf = 0;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(pp, "single")) {
        const char *name = jstr(cJSON_GetObjectItemCaseSensitive(item, "SpecialToken"), "id");
        if (cJSON_GetObjectItemCaseSensitive(item, "Sequence")) { seen_a = true; continue; }
        if (!name) return rt_errorf(RT_EINPUT, "%s: TemplateProcessing item is neither SpecialToken nor Sequence", path);
        RT_TRY(post_special(t, path, pp, name, seen_a ? t->post_suf : t->post_pre,
                            seen_a ? &t->n_post_suf : &t->n_post_pre));
    }
    if (t->n_post_pre > 0) t->bos = t->post_pre[0], t->add_bos = true;
    if (t->n_post_suf > 0) t->eos = t->post_suf[t->n_post_suf - 1], t->add_eos = true;
    return RT_OK;
}

/* tokenizer_config.json's chat_template: a string, or a list of
 * {"name", "template"} where the one named "default" is used. */
static rt_status config_chat_template(rt_tokenizer *t, const cJSON *cfg) {
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template"), *c;
    const char *s = cJSON_IsString(ct) ? ct->valuestring : NULL;
    const cJSON *list = cJSON_IsArray(ct) ? ct : NULL;
    cJSON_ArrayForEach(c, list) {
        const char *name = jstr(c, "name");
        if (name && strcmp(name, "default") == 0) s = jstr(c, "template");
    }
    if (s && !(t->chat_template = strdup(s))) return rt_tok_oom();
    return RT_OK;
}

static rt_status load_hf_root(rt_tokenizer *t, const char *path, cJSON *root);
static rt_status load_hf_config(rt_tokenizer *t, const char *cfg_path);

rt_status rt_tok_load_hf_text(rt_tokenizer *t, const char *path, char *text) {
    t->hf_json = text;
    cJSON *root;
    RT_TRY(parse_json(path, text, strlen(text), &root));
    return load_hf_root(t, path, root);
}

static rt_status load_hf(rt_tokenizer *t, const char *path, const char *cfg_path) {
    cJSON *root;
    RT_TRY(load_json_file(path, &root, &t->hf_json));
    RT_TRY(load_hf_root(t, path, root));
    return load_hf_config(t, cfg_path);
}

/* Takes ownership of root. */
static rt_status load_hf_root(rt_tokenizer *t, const char *path, cJSON *root) {
    t->source = RT_TOKSRC_HF;
    t->bos = t->eos = t->unk = -1;
    rt_status st = hf_model(t, path, root);
    if (st == RT_OK) st = parse_normalizer(t, path, cJSON_GetObjectItemCaseSensitive(root, "normalizer"));
    if (st == RT_OK) st = parse_pretok(t, path, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"));
    if (st == RT_OK && t->n_pstep > 0 && t->pretok == RT_PRE_METASPACE)
        st = rt_errorf(RT_EINPUT, "%s: pre_tokenizer Split together with Metaspace is not supported", path);
    if (st == RT_OK) st = parse_decoder(t, path, cJSON_GetObjectItemCaseSensitive(root, "decoder"));
    if (st == RT_OK) st = hf_post(t, path, cJSON_GetObjectItemCaseSensitive(root, "post_processor"));
    cJSON_Delete(root);
    RT_TRY(st);
    /* Conventional names when nothing declares BOS/EOS. */
    static const char *const bos_names[] = {"<s>", "<|begin_of_text|>", "<|endoftext|>"};
    static const char *const eos_names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>"};
    for (int k = 0; k < 3 && t->bos < 0; k++) t->bos = rt_tok_lookup(t, bos_names[k], strlen(bos_names[k]));
    for (int k = 0; k < 3 && t->eos < 0; k++) t->eos = rt_tok_lookup(t, eos_names[k], strlen(eos_names[k]));
    return RT_OK;
}

static rt_status load_hf_config(rt_tokenizer *t, const char *cfg_path) {
    rt_status st;
    if (!cfg_path || !is_file(cfg_path)) return RT_OK;
    cJSON *cfg;
    RT_TRY(load_json_file(cfg_path, &cfg, &t->hf_config));
    int b, e;
    st = config_token(t, cfg_path, cfg, "bos_token", &b);
    if (st == RT_OK) st = config_token(t, cfg_path, cfg, "eos_token", &e);
    if (st == RT_OK) {
        if (b != -2) t->bos = b;
        if (e != -2) t->eos = e;
        t->add_bos = jbool(cfg, "add_bos_token", t->add_bos);
        t->add_eos = jbool(cfg, "add_eos_token", t->add_eos);
        st = config_chat_template(t, cfg);
    }
    cJSON_Delete(cfg);
    return st;
}

/* Path of `name` in the directory of `file` (or in `file` itself if `is_dir`). */
static rt_status sibling(const char *file, bool is_dir, const char *name, char **out) {
    const char *slash = strrchr(file, '/');
    size_t dl = is_dir ? strlen(file) : slash ? (size_t)(slash - file) : 0;
    const char *dir = dl ? file : ".";
    if (!dl) dl = 1;
    if (asprintf(out, "%.*s/%s", (int)dl, dir, name) < 0) { *out = NULL; return rt_tok_oom(); }
    return RT_OK;
}

/* First non-blank byte of the file, to tell JSON from tokenizer.bin. */
static int first_byte(const char *path) {
    FILE *f = fopen(path, "rb");
    int c = EOF;
    if (!f) return EOF;
    while ((c = fgetc(f)) == ' ' || c == '\n' || c == '\r' || c == '\t') {}
    fclose(f);
    return c;
}

static rt_status load_any(rt_tokenizer *t, const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0)
        return rt_errorf(RT_EINPUT, "%s: cannot open tokenizer (%s)", path, strerror(errno));
    char *a = NULL, *b = NULL;
    rt_status st = RT_OK;
    if (S_ISDIR(sb.st_mode)) {
        st = sibling(path, true, "tokenizer.json", &a);
        if (st == RT_OK && is_file(a)) {
            st = sibling(path, true, "tokenizer_config.json", &b);
            if (st == RT_OK) st = load_hf(t, a, b);
            goto done;
        }
        free(a), a = NULL;
        if (st == RT_OK) st = sibling(path, true, "encoder.json", &a);
        if (st == RT_OK && is_file(a)) {
            st = sibling(path, true, "vocab.bpe", &b);
            if (st == RT_OK) st = load_gpt2(t, a, b);
            goto done;
        }
        free(a), a = NULL;
        if (st == RT_OK) st = sibling(path, true, "tokenizer.bin", &a);
        if (st == RT_OK && is_file(a)) {
            st = load_bin(t, a);
            goto done;
        }
        if (st == RT_OK)
            st = rt_errorf(RT_EINPUT, "%s: directory has no tokenizer.json, encoder.json or tokenizer.bin",
                           path);
        goto done;
    }
    if (rt_is_gguf(path)) return rt_tok_load_gguf(t, path);
    size_t pl = strlen(path);
    if (pl >= 6 && strcmp(path + pl - 6, ".model") == 0)
        return rt_errorf(RT_EINPUT, "%s: SentencePiece .model files are not supported; use tokenizer.json "
                         "or a llama2.c tokenizer.bin", path);
    if (first_byte(path) != '{') return load_bin(t, path);
    /* A JSON file: tokenizer.json has a "model" object; GPT-2's encoder.json
     * is a flat map of numbers (in which "model" is a token). */
    cJSON *j;
    RT_TRY(load_json_file(path, &j, NULL));
    bool hf = cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "model"));
    cJSON_Delete(j);
    if (hf) {
        st = sibling(path, false, "tokenizer_config.json", &b);
        if (st == RT_OK) st = load_hf(t, path, b);
    } else {
        st = sibling(path, false, "vocab.bpe", &b);
        if (st == RT_OK) st = load_gpt2(t, path, b);
    }
done:
    free(a), free(b);
    return st;
}

rt_status rt_tokenizer_load(const char *path, rt_tokenizer **out) {
    *out = NULL;
    rt_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return rt_tok_oom();
    t->bos = t->eos = t->unk = -1;
    rt_status st = load_any(t, path);
    if (st == RT_OK && !(t->path = strdup(path))) st = rt_tok_oom();
    if (st == RT_OK) st = rt_tok_finish(t);
    if (st != RT_OK) { rt_tokenizer_free(t); return st; }
    *out = t;
    return RT_OK;
}
