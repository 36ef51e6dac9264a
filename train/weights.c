/* retort — named weight sets: HF directories / sharded safetensors, the
 * builder API, shape checks and the HF writer (see weights.h). The llama2.c
 * reader lives in llama2c.c. */
#include "train/weights.h"
#include "train/fs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

typedef struct {
    rt_st_tensor t;   /* t.name == name */
    char *name;       /* owned */
    const char *file; /* the file it came from (owned by the set), for messages */
    void *owned;      /* data to free at close, or NULL */
} w_entry;

struct rt_weights {
    char *source;
    w_entry *e; /* sorted by name */
    size_t n, cap;
    rt_safetensors **files;
    size_t nfiles, capfiles;
    struct { void *addr; size_t len; } *maps;
    size_t nmaps, capmaps;
};

/* Makes room for one more element in a growable array. */
static int w_grow(void **arr, size_t *cap, size_t n, size_t elem) {
    if (n < *cap) return 1;
    size_t nc = *cap ? *cap * 2 : 16;
    void *p = realloc(*arr, nc * elem);
    if (!p) return 0;
    *arr = p;
    *cap = nc;
    return 1;
}

/* Index of `name`, or where it would be inserted (with *found = 0). */
static size_t w_search(const rt_weights *w, const char *name, int *found) {
    size_t lo = 0, hi = w->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, w->e[mid].name);
        if (c == 0) { *found = 1; return mid; }
        if (c < 0) hi = mid; else lo = mid + 1;
    }
    *found = 0;
    return lo;
}

/* Inserts a tensor; ownership of `owned` passes to the set even on failure. */
static rt_status w_insert(rt_weights *w, const rt_st_tensor *t, const char *file, void *owned) {
    int found;
    size_t at = w_search(w, t->name, &found);
    if (found) {
        free(owned);
        return rt_errorf(RT_EINPUT, "%s: tensor %s appears twice", file, t->name);
    }
    char *name = strdup(t->name);
    if (!name || !w_grow((void **)&w->e, &w->cap, w->n, sizeof *w->e)) {
        free(name);
        free(owned);
        return rt_errorf(RT_EINTERNAL, "%s: out of memory", file);
    }
    memmove(&w->e[at + 1], &w->e[at], (w->n - at) * sizeof *w->e);
    w->e[at] = (w_entry){.t = *t, .name = name, .file = file, .owned = owned};
    w->e[at].t.name = name;
    w->n++;
    return RT_OK;
}

rt_status rt_weights_new(const char *source, rt_weights **out) {
    *out = NULL;
    rt_weights *w = calloc(1, sizeof *w);
    if (!w || !(w->source = strdup(source))) {
        free(w);
        return rt_errorf(RT_EINTERNAL, "%s: out of memory", source);
    }
    *out = w;
    return RT_OK;
}

rt_status rt_weights_add(rt_weights *w, const char *name, rt_st_dtype dtype, int ndim,
                         const int64_t *shape, const void *data, bool take) {
    void *owned = take ? (void *)data : NULL;
    rt_st_tensor t = {.name = name, .dtype = dtype, .ndim = ndim, .data = data};
    if (ndim < 0 || ndim > RT_ST_MAX_DIMS || rt_st_dtype_size(dtype) == 0) {
        free(owned);
        return rt_errorf(RT_EINPUT, "%s: tensor %s: bad dtype or ndim %d", w->source, name, ndim);
    }
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || __builtin_mul_overflow(numel, (uint64_t)shape[i], &numel)) {
            free(owned);
            return rt_errorf(RT_EINPUT, "%s: tensor %s: bad shape", w->source, name);
        }
        t.shape[i] = shape[i];
    }
    t.nbytes = (size_t)numel * rt_st_dtype_size(dtype);
    return w_insert(w, &t, w->source, owned);
}

rt_status rt_weights_add_file(rt_weights *w, rt_safetensors *st) {
    if (!w_grow((void **)&w->files, &w->capfiles, w->nfiles, sizeof *w->files)) {
        rt_st_close(st);
        return rt_errorf(RT_EINTERNAL, "%s: out of memory", w->source);
    }
    w->files[w->nfiles++] = st;
    for (size_t i = 0; i < rt_st_count(st); i++)
        RT_TRY(w_insert(w, rt_st_get(st, i), rt_st_path(st), NULL));
    return RT_OK;
}

rt_status rt_weights_keep_map(rt_weights *w, void *addr, size_t len) {
    if (!w_grow((void **)&w->maps, &w->capmaps, w->nmaps, sizeof *w->maps)) {
        munmap(addr, len);
        return rt_errorf(RT_EINTERNAL, "%s: out of memory", w->source);
    }
    w->maps[w->nmaps].addr = addr;
    w->maps[w->nmaps++].len = len;
    return RT_OK;
}

size_t rt_weights_count(const rt_weights *w) { return w->n; }
const char *rt_weights_source(const rt_weights *w) { return w->source; }

const rt_st_tensor *rt_weights_get(const rt_weights *w, size_t i) {
    return i < w->n ? &w->e[i].t : NULL;
}

const rt_st_tensor *rt_weights_find(const rt_weights *w, const char *hf_name) {
    int found;
    size_t i = w_search(w, hf_name, &found);
    return found ? &w->e[i].t : NULL;
}

void rt_weights_close(rt_weights *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) {
        free(w->e[i].name);
        free(w->e[i].owned);
    }
    free(w->e);
    for (size_t i = 0; i < w->nfiles; i++) rt_st_close(w->files[i]);
    free(w->files);
    for (size_t i = 0; i < w->nmaps; i++) munmap(w->maps[i].addr, w->maps[i].len);
    free(w->maps);
    free(w->source);
    free(w);
}

/* ---- shape checks -------------------------------------------------------- */

static void w_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%" PRId64, i ? "," : "", shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

rt_status rt_weights_expect(const rt_weights *w, const char *name, int ndim,
                            const int64_t *shape, const rt_st_tensor **out) {
    int found;
    size_t i = w_search(w, name, &found);
    if (!found) return rt_errorf(RT_EINPUT, "%s: missing tensor %s", w->source, name);
    const rt_st_tensor *t = &w->e[i].t;
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    if (!same) {
        char have[160], want[160];
        w_shape_str(have, sizeof have, t->ndim, t->shape);
        w_shape_str(want, sizeof want, ndim, shape);
        return rt_errorf(RT_EINPUT, "%s: tensor %s has shape %s, expected %s", w->e[i].file,
                         name, have, want);
    }
    if (out) *out = t;
    return RT_OK;
}

static rt_status w_expect_float(const rt_weights *w, const char *name, int ndim, int64_t a, int64_t b) {
    const int64_t shape[2] = {a, b};
    const rt_st_tensor *t;
    RT_TRY(rt_weights_expect(w, name, ndim, shape, &t));
    if (t->dtype != RT_ST_F32 && t->dtype != RT_ST_BF16 && t->dtype != RT_ST_F16 && t->dtype != RT_ST_F64) {
        int found;
        return rt_errorf(RT_EINPUT, "%s: tensor %s has dtype %s, expected a floating-point type",
                         w->e[w_search(w, name, &found)].file, name, rt_st_dtype_name(t->dtype));
    }
    return RT_OK;
}

rt_status rt_weights_check_llama(const rt_weights *w, const rt_llama_config *c) {
    RT_TRY(rt_llama_config_check(c, w->source));
    const int64_t D = c->hidden_size, F = c->intermediate_size, V = c->vocab_size;
    const int64_t Dh = D / c->num_attention_heads, Q = Dh * c->num_attention_heads,
                  KV = Dh * c->num_key_value_heads;
    char n[128];
    RT_TRY(w_expect_float(w, "model.embed_tokens.weight", 2, V, D));
    RT_TRY(w_expect_float(w, "model.norm.weight", 1, D, 0));
    if (!c->tie_word_embeddings) RT_TRY(w_expect_float(w, "lm_head.weight", 2, V, D));
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const struct { const char *s; int nd; int64_t a, b; } ts[] = {
            {"input_layernorm.weight", 1, D, 0},       {"post_attention_layernorm.weight", 1, D, 0},
            {"self_attn.q_proj.weight", 2, Q, D},      {"self_attn.k_proj.weight", 2, KV, D},
            {"self_attn.v_proj.weight", 2, KV, D},     {"self_attn.o_proj.weight", 2, D, Q},
            {"mlp.gate_proj.weight", 2, F, D},         {"mlp.up_proj.weight", 2, F, D},
            {"mlp.down_proj.weight", 2, D, F},         {"self_attn.q_proj.bias", 1, Q, 0},
            {"self_attn.k_proj.bias", 1, KV, 0},       {"self_attn.v_proj.bias", 1, KV, 0},
        };
        size_t nt = c->attention_bias ? 12 : 9;
        for (size_t k = 0; k < nt; k++) {
            snprintf(n, sizeof n, "model.layers.%d.%s", l, ts[k].s);
            RT_TRY(w_expect_float(w, n, ts[k].nd, ts[k].a, ts[k].b));
        }
    }
    return RT_OK;
}

/* ---- HF directories ------------------------------------------------------ */

static rt_status w_read_text(const char *path, char **out) {
    FILE *f = fopen(path, "rb");
    if (!f) return rt_errorf(RT_EINPUT, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1 || cap >= (256u << 20)) break;
        char *nb = realloc(buf, cap * 2);
        if (!nb) { free(buf); buf = NULL; break; }
        buf = nb;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf) return rt_errorf(RT_EINTERNAL, "%s: out of memory", path);
    if (bad) { free(buf); return rt_errorf(RT_EINPUT, "%s: read error", path); }
    buf[n] = 0;
    *out = buf;
    return RT_OK;
}

/* Opens every shard named in a model.safetensors.index.json and checks that
 * each weight_map entry is in the shard it names. */
static rt_status w_open_index(rt_weights *w, const char *dir, const char *index) {
    char *text = NULL;
    RT_TRY(w_read_text(index, &text));
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) return rt_errorf(RT_EINPUT, "%s: invalid JSON", index);
    rt_status s = RT_OK;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map"), *e;
    if (!cJSON_IsObject(map)) {
        s = rt_errorf(RT_EINPUT, "%s: missing object \"weight_map\"", index);
        goto out;
    }
    cJSON_ArrayForEach(e, map) {
        if (!cJSON_IsString(e) || !e->valuestring[0] || strchr(e->valuestring, '/')) {
            s = rt_errorf(RT_EINPUT, "%s: weight_map entry %s must name a shard file in %s",
                          index, e->string, dir);
            goto out;
        }
        char *shard;
        if (asprintf(&shard, "%s/%s", dir, e->valuestring) < 0) {
            s = rt_errorf(RT_EINTERNAL, "%s: out of memory", index);
            goto out;
        }
        size_t f = 0;
        while (f < w->nfiles && strcmp(rt_st_path(w->files[f]), shard) != 0) f++;
        if (f == w->nfiles) {
            rt_safetensors *st;
            s = rt_st_open(shard, &st);
            if (!s) s = rt_weights_add_file(w, st);
        }
        if (!s) {
            const rt_st_tensor *t = rt_st_find(w->files[f], e->string);
            if (!t) s = rt_errorf(RT_EINPUT, "%s: weight_map puts tensor %s in %s, which does not "
                                  "contain it", index, e->string, shard);
        }
        free(shard);
        if (s) goto out;
    }
    if (w->nfiles == 0) s = rt_errorf(RT_EINPUT, "%s: weight_map is empty", index);
out:
    cJSON_Delete(root);
    return s;
}

static int w_is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* dir: config.json + model.safetensors (preferred, as transformers does) or
 * model.safetensors.index.json. file: a single .safetensors (or NULL). */
static rt_status w_open_hf(const char *dir, const char *file, rt_weights *w, rt_llama_config *cfg) {
    char *cfgp = NULL, *st_path = NULL, *index = NULL;
    rt_status s = RT_OK;
    if (asprintf(&cfgp, "%s/config.json", dir) < 0 ||
        asprintf(&st_path, "%s/model.safetensors", dir) < 0 ||
        asprintf(&index, "%s/model.safetensors.index.json", dir) < 0) {
        s = rt_errorf(RT_EINTERNAL, "%s: out of memory", dir);
        goto out;
    }
    if ((s = rt_llama_config_load(cfgp, cfg))) goto out;
    if (file || w_is_file(st_path)) {
        rt_safetensors *st;
        s = rt_st_open(file ? file : st_path, &st);
        if (!s) s = rt_weights_add_file(w, st);
    } else if (w_is_file(index)) {
        s = w_open_index(w, dir, index);
    } else {
        s = rt_errorf(RT_EINPUT, "%s: no model.safetensors or model.safetensors.index.json", dir);
    }
out:
    free(cfgp);
    free(st_path);
    free(index);
    return s;
}

rt_status rt_weights_open(const char *path, rt_weights **out, rt_llama_config *cfg) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return rt_errorf(RT_EINPUT, "%s: cannot open: %s", path, strerror(errno));
    size_t len = strlen(path);
    bool is_st = S_ISREG(sb.st_mode) && len >= 12 && strcmp(path + len - 12, ".safetensors") == 0;
    if (S_ISREG(sb.st_mode) && !is_st) return rt_llama2c_open(path, out, cfg);
    if (!S_ISDIR(sb.st_mode) && !is_st)
        return rt_errorf(RT_EINPUT, "%s: not a model directory or checkpoint file", path);

    rt_weights *w;
    RT_TRY(rt_weights_new(path, &w));
    rt_llama_config c;
    rt_status s;
    if (is_st) {
        char *dir = strdup(path), *slash = dir ? strrchr(dir, '/') : NULL;
        if (!dir) { rt_weights_close(w); return rt_errorf(RT_EINTERNAL, "out of memory"); }
        if (slash) *slash = 0;
        s = w_open_hf(slash ? (dir[0] ? dir : "/") : ".", path, w, &c);
        free(dir);
    } else {
        s = w_open_hf(path, NULL, w, &c);
    }
    if (s) { rt_weights_close(w); return s; }
    *cfg = c;
    *out = w;
    return RT_OK;
}

/* ---- HF writer ----------------------------------------------------------- */

rt_status rt_weights_save_hf(const rt_weights *w, const rt_llama_config *cfg, const char *dir) {
    RT_TRY(rt_weights_check_llama(w, cfg));
    RT_TRY(rt_mkdir_p(dir));
    rt_st_tensor *ts = calloc(w->n ? w->n : 1, sizeof *ts);
    void **conv = calloc(w->n ? w->n : 1, sizeof *conv);
    char *st_path = NULL, *cfg_path = NULL;
    rt_status s = RT_OK;
    if (!ts || !conv || asprintf(&st_path, "%s/model.safetensors", dir) < 0 ||
        asprintf(&cfg_path, "%s/config.json", dir) < 0) {
        s = rt_errorf(RT_EINTERNAL, "%s: out of memory", dir);
        goto out;
    }
    for (size_t i = 0; i < w->n; i++) {
        const rt_st_tensor *t = &w->e[i].t;
        ts[i] = *t;
        if (t->dtype != RT_ST_BF16 && t->dtype != RT_ST_F16 && t->dtype != RT_ST_F64) continue;
        size_t n = (size_t)rt_st_numel(t);
        float *f = malloc(n ? n * sizeof *f : 1);
        if (!f) { s = rt_errorf(RT_EINTERNAL, "%s: out of memory", dir); goto out; }
        for (size_t k = 0; k < n; k++)
            f[k] = t->dtype == RT_ST_BF16 ? rt_bf16_to_f32(((const uint16_t *)t->data)[k])
                 : t->dtype == RT_ST_F16  ? rt_f16_to_f32(((const uint16_t *)t->data)[k])
                                          : (float)((const double *)t->data)[k];
        conv[i] = f;
        ts[i].dtype = RT_ST_F32;
        ts[i].data = f;
        ts[i].nbytes = n * sizeof *f;
    }
    static const char *const meta[] = {"format", "pt", NULL};
    if ((s = rt_st_write(st_path, ts, w->n, meta))) goto out;
    rt_llama_config c = *cfg;
    snprintf(c.torch_dtype, sizeof c.torch_dtype, "float32");
    s = rt_llama_config_save(&c, cfg_path);
out:
    if (conv)
        for (size_t i = 0; i < w->n; i++) free(conv[i]);
    free(conv);
    free(ts);
    free(st_path);
    free(cfg_path);
    return s;
}

rt_status rt_weights_convert_hf(const char *src, const char *dir) {
    rt_weights *w;
    rt_llama_config cfg;
    RT_TRY(rt_weights_open(src, &w, &cfg));
    rt_status s = rt_weights_save_hf(w, &cfg, dir);
    rt_weights_close(w);
    return s;
}
