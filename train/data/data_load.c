/* retort — loading training data: files (text, jsonl, alpaca) into
 * examples, the validation split, and texts added by the distillation code.
 * Semantics are documented in train/data.h. */
#include "train/data/data_internal.h"
#include "train/formats/fs.h"
#include "train/tokenizer/chat_template.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char ALPACA_NO_INPUT[] =
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n%s\n\n### Response:\n";
static const char ALPACA_INPUT[] =
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n%s\n\n### Input:\n%s\n\n### Response:\n";

rt_status rt_data_alpaca_prompt(const char *instruction, const char *input, char **out) {
    int n = (input && *input) ? asprintf(out, ALPACA_INPUT, instruction, input)
                              : asprintf(out, ALPACA_NO_INPUT, instruction);
    if (n < 0) {
        *out = NULL;
        return rt_errorf(RT_EINTERNAL, "data: out of memory");
    }
    return RT_OK;
}

/* Re-raises the current message with a prefix ("path:" or "path:line:"). */
static rt_status prefixed(rt_status st, const char *path, long line) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", rt_error_message());
    if (line > 0) return rt_errorf(st, "%s:%ld: %s", path, line, msg);
    return rt_errorf(st, "%s: %s", path, msg);
}

/* Offset of the first byte that is not well-formed UTF-8 (RFC 3629: no
 * overlongs, no surrogates, nothing above U+10FFFF), or len if all is. */
static size_t utf8_bad_offset(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int n;
        unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
        if (c >= 0xc2 && c <= 0xdf) n = 1;
        else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
        } else
            return i;
        if (i + (size_t)n >= len) return i; /* truncated sequence */
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (int k = 2; k <= n; k++)
            if ((s[i + k] & 0xc0) != 0x80) return i;
        i += (size_t)n + 1;
    }
    return len;
}

static long line_of(const char *buf, size_t off) {
    long line = 1;
    for (size_t i = 0; i < off; i++) line += buf[i] == '\n';
    return line;
}

/* Growable token list. */
typedef struct {
    int32_t *v;
    uint8_t *tg;
    int64_t n, cap;
} seq;

static rt_status seq_append(seq *s, const int32_t *ids, int64_t n, uint8_t target) {
    if (s->n + n > s->cap) {
        int64_t cap = s->cap ? s->cap : 256;
        while (cap < s->n + n) cap *= 2;
        int32_t *v = realloc(s->v, (size_t)cap * sizeof *v);
        if (!v) return rt_errorf(RT_EINTERNAL, "data: out of memory");
        s->v = v;
        uint8_t *tg = realloc(s->tg, (size_t)cap);
        if (!tg) return rt_errorf(RT_EINTERNAL, "data: out of memory");
        s->tg = tg;
        s->cap = cap;
    }
    memcpy(s->v + s->n, ids, (size_t)n * sizeof *ids);
    memset(s->tg + s->n, target, (size_t)n);
    s->n += n;
    return RT_OK;
}

static void seq_free(seq *s) {
    free(s->v);
    free(s->tg);
    memset(s, 0, sizeof *s);
}

/* Tokenizes text into s: BOS (if the tokenizer adds one) + text [+ EOS],
 * every token a target (the first is cleared when the example is pushed). */
static rt_status encode_into(const rt_tokenizer *tok, const char *text, size_t len, bool eos,
                             uint8_t target, bool bos, seq *s) {
    int32_t *ids = NULL;
    size_t n = 0;
    RT_TRY(rt_tokenizer_encode(tok, text, len, bos && rt_tokenizer_adds_bos(tok), &ids, &n));
    rt_status st = seq_append(s, ids, (int64_t)n, target);
    free(ids);
    if (st == RT_OK && eos && rt_tokenizer_eos(tok) >= 0) {
        int32_t e = rt_tokenizer_eos(tok);
        st = seq_append(s, &e, 1, target);
    }
    return st;
}

/* Cuts s into windows of T + 1 tokens overlapping by one (see data.h). */
static rt_status push_windows(rt_dataset *d, const seq *s) {
    int64_t T = d->seq_len;
    for (int64_t start = 0; start + 1 < s->n; start += T) {
        int64_t len = s->n - start < T + 1 ? s->n - start : T + 1;
        RT_TRY(rt_data_push_example(d, s->v + start, s->tg + start, len));
    }
    return RT_OK;
}

static rt_status load_text(rt_dataset *d, const rt_tokenizer *tok, const char *path,
                           const char *buf, size_t len) {
    seq s = {0};
    rt_status st = encode_into(tok, buf, len, false, 1, true, &s);
    if (st != RT_OK) st = prefixed(st, path, 0);
    if (st == RT_OK) st = push_windows(d, &s);
    seq_free(&s);
    return st;
}

static const char *json_string(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Pushes s truncated to T + 1 tokens unless no target is left in it. */
static rt_status push_truncated(rt_dataset *d, const seq *s) {
    int64_t n = s->n < (int64_t)d->seq_len + 1 ? s->n : (int64_t)d->seq_len + 1;
    bool any = false;
    for (int64_t i = 1; i < n && !any; i++) any = s->tg[i] != 0;
    if (!any || n < 2) return RT_OK;
    return rt_data_push_example(d, s->v, s->tg, n);
}

/* One alpaca record (see data.h): BOS + prompt (targets off unless
 * train_on_inputs) + output + EOS (targets on), truncated to T + 1; dropped
 * if no target is left. */
static rt_status push_alpaca(rt_dataset *d, const rt_tokenizer *tok, const char *instruction,
                             const char *input, const char *output, bool train_on_inputs) {
    char *prompt = NULL;
    RT_TRY(rt_data_alpaca_prompt(instruction, input, &prompt));
    seq s = {0};
    rt_status st = encode_into(tok, prompt, strlen(prompt), false, train_on_inputs, true, &s);
    free(prompt);
    int64_t n_prompt = s.n;
    if (st == RT_OK) st = encode_into(tok, output, strlen(output), true, 1, false, &s);
    int64_t n = s.n < (int64_t)d->seq_len + 1 ? s.n : (int64_t)d->seq_len + 1;
    if (st == RT_OK && n > n_prompt && n >= 2) st = rt_data_push_example(d, s.v, s.tg, n);
    seq_free(&s);
    return st;
}

/* input_output: BOS (untrained, where the tokenizer adds one) then each
 * segment encoded on its own, trained when its "label" is true. */
static rt_status push_segments(rt_dataset *d, const rt_tokenizer *tok, const cJSON *segs, const char *path,
                               long line) {
    if (!cJSON_IsArray(segs))
        return rt_errorf(RT_EINPUT, "%s:%ld: no list field \"segments\" (input_output needs "
                         "[{\"text\", \"label\"}])", path, line);
    seq s = {0};
    rt_status st = RT_OK;
    if (rt_tokenizer_adds_bos(tok)) {
        int32_t b = rt_tokenizer_bos(tok);
        st = seq_append(&s, &b, 1, 0);
    }
    const cJSON *g;
    int k = 0;
    cJSON_ArrayForEach(g, segs) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(g, "text");
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(g, "label");
        if (st != RT_OK) break;
        if (!cJSON_IsString(t) || (l && !cJSON_IsBool(l)))
            st = rt_errorf(RT_EINPUT, "%s:%ld: segment %d needs a string \"text\" and a boolean \"label\"",
                           path, line, k);
        else if ((st = encode_into(tok, t->valuestring, strlen(t->valuestring), false,
                                   !l || cJSON_IsTrue(l), false, &s)) != RT_OK)
            st = prefixed(st, path, line);
        k++;
    }
    if (st == RT_OK) st = push_truncated(d, &s);
    seq_free(&s);
    return st;
}

/* chat_template / sharegpt: the message list rendered with the template,
 * labels per roles_to_train / train_on_eos (every token with
 * train_on_inputs). */
static rt_status push_chat(rt_dataset *d, const rt_tokenizer *tok, const rt_chat_template *ct,
                           const rt_recipe_dataset *ds, bool train_on_inputs, const cJSON *obj, long line) {
    bool sg = ds->type == RT_RECIPE_DS_SHAREGPT;
    const char *fm = *ds->field_messages ? ds->field_messages : sg ? "conversations" : "messages";
    const char *rk = *ds->message_property_mappings.role ? ds->message_property_mappings.role : sg ? "from" : "role";
    const char *ck = *ds->message_property_mappings.content ? ds->message_property_mappings.content
                     : sg ? "value" : "content";
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, fm);
    const char *ins = json_string(obj, "instruction"), *out = json_string(obj, "output");
    const char *in = json_string(obj, "input");
    if (!cJSON_IsArray(arr) && !(ins && out && !sg))
        return rt_errorf(RT_EINPUT, "%s:%ld: no list field \"%s\" (field_messages; or an alpaca record with "
                         "instruction and output)", ds->path, line, fm);
    rt_chat_msg *m = NULL;
    int nm = 0;
    char *user = NULL;
    rt_status st = RT_OK;
    if (cJSON_IsArray(arr)) {
        st = rt_chat_msgs_from_json(arr, rk, ck, &m, &nm);
    } else { /* alpaca record as a conversation: user = instruction [+ "\n\n" + input] */
        if (asprintf(&user, in && *in ? "%s\n\n%s" : "%s", ins, in) < 0) user = NULL;
        m = malloc(2 * sizeof *m);
        if (!user || !m) st = rt_errorf(RT_EINTERNAL, "data: out of memory");
        else m[0] = (rt_chat_msg){"user", user}, m[1] = (rt_chat_msg){"assistant", out}, nm = 2;
    }
    int32_t *ids = NULL;
    uint8_t *tr = NULL;
    size_t n = 0;
    if (st == RT_OK)
        st = rt_chat_encode(ct, tok, m, nm, train_on_inputs ? 0xfu : ds->roles_to_train,
                            train_on_inputs ? RT_EOS_ALL : (rt_chat_eos)ds->train_on_eos, &ids, &tr, &n);
    if (st == RT_OK && train_on_inputs) memset(tr, 1, n);
    seq s = {0};
    for (size_t i = 0; st == RT_OK && i < n; i++) st = seq_append(&s, &ids[i], 1, tr[i]);
    if (st == RT_OK) st = push_truncated(d, &s);
    else st = prefixed(st, ds->path, line);
    seq_free(&s);
    free(ids), free(tr), free(m), free(user);
    return st;
}

static rt_status load_jsonl(rt_dataset *d, const rt_tokenizer *tok, const rt_recipe *r,
                            const rt_recipe_dataset *ds, const char *buf, size_t len) {
    bool alpaca = ds->type == RT_RECIPE_DS_ALPACA;
    bool chat = ds->type == RT_RECIPE_DS_CHAT_TEMPLATE || ds->type == RT_RECIPE_DS_SHAREGPT;
    const char *path = ds->path;
    rt_chat_template ct = {0};
    if (chat) {
        rt_status st = rt_chat_template_get(r->chat_template, tok, &ct);
        if (st != RT_OK) return prefixed(st, path, 0);
    }
    rt_status st = RT_OK;
    long line = 0;
    for (size_t at = 0; at < len;) {
        line++;
        const char *p = buf + at, *nl = memchr(p, '\n', len - at);
        size_t n = nl ? (size_t)(nl - p) : len - at;
        at += n + 1;
        size_t k = 0;
        while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r')) k++;
        if (k == n) continue; /* blank line */
        cJSON *obj = cJSON_ParseWithLength(p, n);
        if (!cJSON_IsObject(obj)) {
            cJSON_Delete(obj);
            st = rt_errorf(RT_EINPUT, "%s:%ld: malformed JSON (expected one object a line)", path, line);
            break;
        }
        if (chat) {
            st = push_chat(d, tok, &ct, ds, r->train_on_inputs, obj, line);
        } else if (ds->type == RT_RECIPE_DS_INPUT_OUTPUT) {
            st = push_segments(d, tok, cJSON_GetObjectItemCaseSensitive(obj, "segments"), path, line);
        } else if (alpaca) {
            const char *ins = json_string(obj, "instruction"), *out = json_string(obj, "output");
            const cJSON *in = cJSON_GetObjectItemCaseSensitive(obj, "input");
            if (!ins || !out)
                st = rt_errorf(RT_EINPUT, "%s:%ld: no string field \"%s\" (alpaca needs instruction, output)",
                               path, line, ins ? "output" : "instruction");
            else if (in && !cJSON_IsString(in) && !cJSON_IsNull(in))
                st = rt_errorf(RT_EINPUT, "%s:%ld: field \"input\" is not a string", path, line);
            else if ((st = push_alpaca(d, tok, ins, in && cJSON_IsString(in) ? in->valuestring : "",
                                       out, r->train_on_inputs)) != RT_OK)
                st = prefixed(st, path, line);
        } else {
            const char *text = json_string(obj, ds->field);
            if (!text) {
                st = rt_errorf(RT_EINPUT, "%s:%ld: no string field \"%s\"", path, line, ds->field);
            } else if (*text) {
                seq s = {0};
                st = encode_into(tok, text, strlen(text), true, 1, true, &s);
                if (st != RT_OK) st = prefixed(st, path, line);
                if (st == RT_OK) st = push_windows(d, &s);
                seq_free(&s);
            }
        }
        cJSON_Delete(obj);
        if (st != RT_OK) break;
    }
    rt_chat_template_clear(&ct);
    return st;
}

/* Appends the examples of one recipe dataset entry to d. */
static rt_status load_file(rt_dataset *d, const rt_tokenizer *tok, const rt_recipe *r,
                           const rt_recipe_dataset *ds) {
    char *buf;
    size_t len;
    RT_TRY(rt_read_file(ds->path, "data file", &buf, &len));
    size_t bad = utf8_bad_offset((const unsigned char *)buf, len);
    rt_status st = RT_OK;
    int64_t before = d->n_ex;
    if (bad < len)
        st = rt_errorf(RT_EINPUT, "%s: invalid UTF-8 at byte offset %zu (line %ld)", ds->path, bad,
                       line_of(buf, bad));
    else if (ds->type == RT_RECIPE_DS_TEXT)
        st = load_text(d, tok, ds->path, buf, len);
    else
        st = load_jsonl(d, tok, r, ds, buf, len);
    free(buf);
    if (st == RT_OK && d->n_ex == before) {
        const char *why = ds->type == RT_RECIPE_DS_TEXT ? "the file is empty"
                          : ds->type == RT_RECIPE_DS_ALPACA || ds->type == RT_RECIPE_DS_CHAT_TEMPLATE ||
                                    ds->type == RT_RECIPE_DS_SHAREGPT || ds->type == RT_RECIPE_DS_INPUT_OUTPUT
                              ? "the file has no records, or no record has a trained token within sequence_len"
                              : "the file has no records with a non-empty text";
        st = rt_errorf(RT_EINPUT, "%s: no examples (%s)", ds->path, why);
    }
    return st;
}

_Static_assert((int)RT_RECIPE_ROLE_ASSISTANT == (int)RT_ROLE_ASSISTANT && (int)RT_RECIPE_ROLE_TOOL == (int)RT_ROLE_TOOL &&
                   RT_RECIPE_EOS_NONE == (int)RT_EOS_NONE && RT_RECIPE_EOS_LAST == (int)RT_EOS_LAST,
               "recipe role/eos values match the chat template's");

static rt_status copy_example(rt_dataset *dst, const rt_dataset *src, int64_t e) {
    const int32_t *t;
    const uint8_t *g;
    int64_t n;
    rt_dataset_example(src, e, &t, &g, &n);
    return rt_data_push_example(dst, t, g, n);
}

/* Keeps shard `idx` of `shards` contiguous pieces of examples [from, n_ex)
 * of d, as datasets' Dataset.shard(contiguous=True): the first n % shards
 * shards get one example more. */
static rt_status keep_shard(rt_dataset *d, int64_t from, int shards, int idx, const char *path) {
    int64_t n = d->n_ex - from, div = n / shards, mod = n % shards;
    int64_t start = from + div * idx + (idx < mod ? idx : mod), len = div + (idx < mod);
    if (len == 0)
        return rt_errorf(RT_EINPUT, "%s: shard %d of %d is empty (%lld examples)", path, idx, shards, (long long)n);
    rt_dataset *tmp = NULL;
    rt_status st = rt_dataset_new(d->seq_len, d->packing, d->seed, &tmp);
    for (int64_t e = start; st == RT_OK && e < start + len; e++) st = copy_example(tmp, d, e);
    if (st == RT_OK) rt_data_truncate(d, from);
    for (int64_t e = 0; st == RT_OK && e < len; e++) st = copy_example(d, tmp, e);
    rt_dataset_free(tmp);
    return st;
}

static rt_status load_list(rt_dataset *d, const rt_tokenizer *tok, const rt_recipe *r,
                           const rt_recipe_datasets *l) {
    for (int i = 0; i < l->count; i++) {
        const rt_recipe_dataset *ds = &l->items[i];
        if (ds->type == RT_RECIPE_DS_TEACHER_GENERATE) continue;
        if (ds->type < RT_RECIPE_DS_TEXT || ds->type > RT_RECIPE_DS_INPUT_OUTPUT)
            return rt_errorf(RT_EINPUT, "%s: unknown dataset type %d", ds->path, ds->type);
        int64_t before = d->n_ex;
        RT_TRY(load_file(d, tok, r, ds));
        if (ds->shards > 1) RT_TRY(keep_shard(d, before, ds->shards, ds->shards_idx, ds->path));
    }
    return RT_OK;
}

/* Moves the held-out examples of *all into *val (see VALIDATION SPLIT). */
static rt_status split(const rt_recipe *r, rt_dataset **all, rt_dataset *val) {
    int64_t n = (*all)->n_ex, n_val;
    if (r->val_set_size < 0)
        return rt_errorf(RT_EINPUT, "val_set_size must be >= 0 (got %g)", r->val_set_size);
    if (r->val_set_size >= 1) {
        n_val = (int64_t)floor(r->val_set_size);
        if (n_val >= n)
            return rt_errorf(RT_EINPUT,
                             "val_set_size %g holds out every one of the %lld training examples",
                             r->val_set_size, (long long)n);
    } else {
        n_val = (int64_t)ceil(r->val_set_size * (double)n);
        if (n_val > n - 1) n_val = n - 1;
    }
    if (n_val <= 0) return RT_OK;
    uint8_t *held = calloc((size_t)n, 1);
    rt_dataset *train = NULL;
    rt_status st = held ? rt_dataset_new((*all)->seq_len, (*all)->packing, (*all)->seed, &train)
                        : rt_errorf(RT_EINTERNAL, "data: out of memory");
    if (st == RT_OK) {
        uint64_t key = rt_data_perm_key((uint64_t)r->seed, RT_DATA_STREAM_SPLIT, 0);
        for (int64_t j = 0; j < n_val; j++) held[rt_data_perm((uint64_t)n, key, (uint64_t)j)] = 1;
        for (int64_t e = 0; e < n && st == RT_OK; e++)
            st = copy_example(held[e] ? val : train, *all, e);
    }
    free(held);
    if (st != RT_OK) {
        rt_dataset_free(train);
        return st;
    }
    rt_dataset_free(*all);
    *all = train;
    return RT_OK;
}

rt_status rt_data_load(const rt_recipe *r, const rt_tokenizer *tok, rt_dataset **train,
                       rt_dataset **val) {
    *train = *val = NULL;
    rt_dataset *tr = NULL, *va = NULL;
    uint64_t seed = (uint64_t)r->seed;
    rt_status st = rt_dataset_new(r->sequence_len, r->sample_packing, seed, &tr);
    if (st == RT_OK) st = rt_dataset_new(r->sequence_len, r->sample_packing, seed, &va);
    if (st == RT_OK) {
        va->shuffle_pack = false; /* evaluation reads the rows in file order */
        st = load_list(tr, tok, r, &r->datasets);
    }
    if (st == RT_OK) {
        if (r->test_datasets.count > 0)
            st = load_list(va, tok, r, &r->test_datasets);
        else if (tr->n_ex > 0)
            st = split(r, &tr, va);
    }
    if (st == RT_OK) st = rt_data_build_rows(tr);
    if (st == RT_OK) st = rt_data_build_rows(va);
    if (st != RT_OK) {
        rt_dataset_free(tr);
        rt_dataset_free(va);
        return st;
    }
    *train = tr;
    *val = va;
    return RT_OK;
}

rt_status rt_dataset_add_text(rt_dataset *d, const rt_tokenizer *tok, const char *text,
                              size_t len, int seq_len) {
    if (seq_len != d->seq_len)
        return rt_errorf(RT_EINTERNAL, "data: add_text with sequence_len %d to a dataset of %d",
                         seq_len, d->seq_len);
    if (len == 0) return RT_OK;
    int64_t before = d->n_ex;
    seq s = {0};
    rt_status st = encode_into(tok, text, len, true, 1, true, &s);
    if (st == RT_OK) st = push_windows(d, &s);
    seq_free(&s);
    if (st == RT_OK) st = rt_data_build_rows(d);
    if (st != RT_OK) rt_data_truncate(d, before);
    return st;
}
