/* retort — named weight sets: the container, the builder API and shape
 * checks (see weights.h). The readers that fill a set live in
 * model_file.c (HF directories, dispatch) and llama2c.c. */
#include "train/formats/weights.h"
#include "train/formats/fs.h"

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
size_t rt_weights_file_count(const rt_weights *w) { return w->nfiles; }
rt_safetensors *rt_weights_file(const rt_weights *w, size_t i) { return w->files[i]; }
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
    const int64_t Dh = rt_llama_head_dim(c), Q = Dh * c->num_attention_heads,
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
        if (c->arch != RT_ARCH_GEMMA3) continue;
        const struct { const char *s; int64_t a; } gs[] = {
            {"self_attn.q_norm.weight", Dh}, {"self_attn.k_norm.weight", Dh},
            {"pre_feedforward_layernorm.weight", D}, {"post_feedforward_layernorm.weight", D},
        };
        for (size_t k = 0; k < sizeof gs / sizeof gs[0]; k++) {
            snprintf(n, sizeof n, "model.layers.%d.%s", l, gs[k].s);
            RT_TRY(w_expect_float(w, n, 1, gs[k].a, 0));
        }
    }
    return rt_weights_check_layers(w, c);
}

rt_status rt_weights_check_layers(const rt_weights *w, const rt_llama_config *c) {
    /* The config must describe the whole file: a layer past
     * num_hidden_layers means config.json and the weights disagree. */
    for (size_t i = 0; i < rt_weights_count(w); i++) {
        const char *name = rt_weights_get(w, i)->name;
        int layer = -1;
        if (sscanf(name, "model.layers.%d.", &layer) == 1 && (layer < 0 || layer >= c->num_hidden_layers))
            return rt_errorf(RT_EINPUT, "%s: holds tensor %s, but the config says num_hidden_layers %d",
                             w->source, name, c->num_hidden_layers);
    }
    return RT_OK;
}
