/* retort — GGUF reader, dequantization and writer (see gguf.h). */
#include "train/formats/gguf.h"
#include "train/formats/half.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- types --------------------------------------------------------------- */

typedef struct { const char *name; int blck; size_t size; } g_tinfo;

static g_tinfo g_type(rt_ggml_type t) {
    switch (t) {
    case RT_GGML_F32:  return (g_tinfo){"F32", 1, 4};
    case RT_GGML_F16:  return (g_tinfo){"F16", 1, 2};
    case RT_GGML_BF16: return (g_tinfo){"BF16", 1, 2};
    case RT_GGML_Q4_0: return (g_tinfo){"Q4_0", 32, 18};
    case RT_GGML_Q4_1: return (g_tinfo){"Q4_1", 32, 20};
    case RT_GGML_Q5_0: return (g_tinfo){"Q5_0", 32, 22};
    case RT_GGML_Q5_1: return (g_tinfo){"Q5_1", 32, 24};
    case RT_GGML_Q8_0: return (g_tinfo){"Q8_0", 32, 34};
    case RT_GGML_Q4_K: return (g_tinfo){"Q4_K", 256, 144};
    case RT_GGML_Q5_K: return (g_tinfo){"Q5_K", 256, 176};
    case RT_GGML_Q6_K: return (g_tinfo){"Q6_K", 256, 210};
    case RT_GGML_Q8_1: return (g_tinfo){"Q8_1", 0, 0};
    case RT_GGML_Q2_K: return (g_tinfo){"Q2_K", 0, 0};
    case RT_GGML_Q3_K: return (g_tinfo){"Q3_K", 0, 0};
    case RT_GGML_Q8_K: return (g_tinfo){"Q8_K", 0, 0};
    }
    return (g_tinfo){"?", 0, 0};
}

int rt_ggml_block_size(rt_ggml_type t) { return g_type(t).blck; }
size_t rt_ggml_type_size(rt_ggml_type t) { return g_type(t).size; }
const char *rt_ggml_type_name(rt_ggml_type t) { return g_type(t).name; }
size_t rt_ggml_row_size(rt_ggml_type t, int64_t n) {
    g_tinfo ti = g_type(t);
    return ti.blck ? (size_t)(n / ti.blck) * ti.size : 0;
}

static const char *const g_kv_names[RT_GGUF_TYPE_COUNT] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
    "bool", "string", "array", "uint64", "int64", "float64"};

const char *rt_gguf_type_name(rt_gguf_type t) {
    return (unsigned)t < RT_GGUF_TYPE_COUNT ? g_kv_names[t] : "?";
}

size_t rt_gguf_type_size(rt_gguf_type t) {
    static const size_t sz[RT_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return (unsigned)t < RT_GGUF_TYPE_COUNT ? sz[t] : 0;
}

/* ---- dequantization (ggml-quants.c dequantize_row_*) --------------------- */

static float g_f16(const uint8_t *p) { return rt_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* 6-bit scale and min of sub-block j from the 12 packed bytes of a Q4_K/Q5_K
 * block: j < 4 in the low 6 bits of bytes j and j+4; j >= 4 split between
 * the nibbles of byte j+4 and the top 2 bits of bytes j-4 and j. */
static void g_scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *mn = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void g_deq_q4_0(const uint8_t *b, float *y) {
    const float d = g_f16(b);
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((b[2 + j] & 0xF) - 8) * d;
        y[j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
    }
}

static void g_deq_q4_1(const uint8_t *b, float *y) {
    const float d = g_f16(b), m = g_f16(b + 2);
    for (int j = 0; j < 16; j++) {
        y[j] = (float)(b[4 + j] & 0xF) * d + m;
        y[j + 16] = (float)(b[4 + j] >> 4) * d + m;
    }
}

static uint32_t g_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void g_deq_q5(const uint8_t *b, float *y, bool has_min) {
    const float d = g_f16(b), m = has_min ? g_f16(b + 2) : 0.0f;
    const uint8_t *p = b + (has_min ? 4 : 2);
    const uint32_t qh = g_u32(p);
    const uint8_t *qs = p + 4;
    const int off = has_min ? 0 : 16;
    for (int j = 0; j < 16; j++) {
        int q0 = (int)((qs[j] & 0xF) | (((qh >> j) & 1u) << 4)) - off;
        int q1 = (int)((qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4)) - off;
        if (has_min) {
            y[j] = (float)q0 * d + m;
            y[j + 16] = (float)q1 * d + m;
        } else {
            y[j] = (float)q0 * d;
            y[j + 16] = (float)q1 * d;
        }
    }
}

static void g_deq_q8_0(const uint8_t *b, float *y) {
    const float d = g_f16(b);
    for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
}

static void g_deq_q4_k(const uint8_t *b, float *y) {
    const float d = g_f16(b), dmin = g_f16(b + 2);
    const uint8_t *scales = b + 4, *q = b + 16;
    for (int is = 0; is < 8; is += 2, q += 32, y += 64) {
        uint8_t sc, mn;
        g_scale_min_k4(is, scales, &sc, &mn);
        const float d1 = d * sc, m1 = dmin * mn;
        g_scale_min_k4(is + 1, scales, &sc, &mn);
        const float d2 = d * sc, m2 = dmin * mn;
        for (int l = 0; l < 32; l++) y[l] = d1 * (float)(q[l] & 0xF) - m1;
        for (int l = 0; l < 32; l++) y[32 + l] = d2 * (float)(q[l] >> 4) - m2;
    }
}

static void g_deq_q5_k(const uint8_t *b, float *y) {
    const float d = g_f16(b), dmin = g_f16(b + 2);
    const uint8_t *scales = b + 4, *qh = b + 16, *ql = b + 48;
    unsigned u1 = 1, u2 = 2;
    for (int is = 0; is < 8; is += 2, ql += 32, y += 64, u1 <<= 2, u2 <<= 2) {
        uint8_t sc, mn;
        g_scale_min_k4(is, scales, &sc, &mn);
        const float d1 = d * sc, m1 = dmin * mn;
        g_scale_min_k4(is + 1, scales, &sc, &mn);
        const float d2 = d * sc, m2 = dmin * mn;
        for (int l = 0; l < 32; l++) y[l] = d1 * (float)((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++) y[32 + l] = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
    }
}

static void g_deq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    const float d = g_f16(b + 208);
    for (int n = 0; n < 2; n++, y += 128, ql += 64, qh += 32, sc += 8) {
        for (int l = 0; l < 32; l++) {
            const int is = l / 16;
            const int q1 = (int)((ql[l] & 0xF) | ((qh[l] >> 0 & 3) << 4)) - 32;
            const int q2 = (int)((ql[l + 32] & 0xF) | ((qh[l] >> 2 & 3) << 4)) - 32;
            const int q3 = (int)((ql[l] >> 4) | ((qh[l] >> 4 & 3) << 4)) - 32;
            const int q4 = (int)((ql[l + 32] >> 4) | ((qh[l] >> 6 & 3) << 4)) - 32;
            y[l] = d * (float)sc[is] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
    }
}

rt_status rt_ggml_dequantize(rt_ggml_type t, const void *src, float *dst, int64_t n) {
    const g_tinfo ti = g_type(t);
    if (!ti.blck || n % ti.blck)
        return rt_errorf(RT_EINPUT, "cannot dequantize %" PRId64 " elements of ggml type %s (%d)",
                         n, ti.name, (int)t);
    const uint8_t *b = src;
    const int64_t nb = n / ti.blck;
    #pragma omp parallel for schedule(static) if (nb > 4096)
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *blk = b + (size_t)i * ti.size;
        float *y = dst + i * ti.blck;
        switch (t) {
        case RT_GGML_F32: memcpy(y, blk, 4); break;
        case RT_GGML_F16: *y = g_f16(blk); break;
        case RT_GGML_BF16: *y = rt_bf16_to_f32((uint16_t)(blk[0] | blk[1] << 8)); break;
        case RT_GGML_Q4_0: g_deq_q4_0(blk, y); break;
        case RT_GGML_Q4_1: g_deq_q4_1(blk, y); break;
        case RT_GGML_Q5_0: g_deq_q5(blk, y, false); break;
        case RT_GGML_Q5_1: g_deq_q5(blk, y, true); break;
        case RT_GGML_Q8_0: g_deq_q8_0(blk, y); break;
        case RT_GGML_Q4_K: g_deq_q4_k(blk, y); break;
        case RT_GGML_Q5_K: g_deq_q5_k(blk, y); break;
        case RT_GGML_Q6_K: g_deq_q6_k(blk, y); break;
        default: break;
        }
    }
    return RT_OK;
}

void rt_ggml_quantize_q8_0(const float *x, void *dst, int64_t n) {
    uint8_t *out = dst;
    for (int64_t i = 0; i < n / 32; i++, x += 32, out += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        const uint16_t h = rt_f32_to_f16(d);
        out[0] = (uint8_t)(h & 0xFF);
        out[1] = (uint8_t)(h >> 8);
        for (int j = 0; j < 32; j++) out[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
    }
}

/* ---- reader -------------------------------------------------------------- */

struct rt_gguf {
    char *path;
    uint8_t *map;
    size_t size;
    uint32_t version;
    size_t alignment;
    rt_gguf_kv *kv;
    size_t n_kv;
    rt_gguf_tensor *t;
    size_t n_t;
    int32_t *kv_index, *t_index; /* sorted by name for lookup */
};

/* A bounds-checked cursor over the mapping. */
typedef struct {
    const rt_gguf *g;
    size_t pos;
} g_cur;

static rt_status g_need(g_cur *c, uint64_t n, const char *what) {
    if (n > c->g->size - c->pos)
        return rt_errorf(RT_EINPUT, "%s: truncated file: %s at byte %zu needs %llu bytes, %zu left",
                         c->g->path, what, c->pos, (unsigned long long)n, c->g->size - c->pos);
    return RT_OK;
}

static uint64_t g_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static rt_status g_u32r(g_cur *c, uint32_t *v, const char *what) {
    RT_TRY(g_need(c, 4, what));
    *v = (uint32_t)g_le(c->g->map + c->pos, 4);
    c->pos += 4;
    return RT_OK;
}

static rt_status g_u64r(g_cur *c, uint64_t *v, const char *what) {
    RT_TRY(g_need(c, 8, what));
    *v = g_le(c->g->map + c->pos, 8);
    c->pos += 8;
    return RT_OK;
}

/* A string: checks its length against the file and the cap when `cap`. */
static rt_status g_str(g_cur *c, const char **s, uint64_t *len, uint64_t cap, const char *what) {
    RT_TRY(g_u64r(c, len, what));
    if (cap && *len > cap)
        return rt_errorf(RT_EINPUT, "%s: %s at byte %zu is %llu bytes long (limit %llu)",
                         c->g->path, what, c->pos - 8, (unsigned long long)*len,
                         (unsigned long long)cap);
    RT_TRY(g_need(c, *len, what));
    *s = (const char *)c->g->map + c->pos;
    c->pos += *len;
    return RT_OK;
}

static rt_status g_name(g_cur *c, char **out, const char *what) {
    const char *s = NULL;
    uint64_t len;
    RT_TRY(g_str(c, &s, &len, RT_GGUF_MAX_NAME, what));
    if (memchr(s, 0, len))
        return rt_errorf(RT_EINPUT, "%s: %s at byte %zu contains a NUL byte", c->g->path, what,
                         c->pos - len);
    if (!(*out = strndup(s, len))) return rt_errorf(RT_EINTERNAL, "%s: out of memory", c->g->path);
    return RT_OK;
}

static rt_status g_value(g_cur *c, rt_gguf_kv *kv) {
    const char *path = c->g->path;
    if (kv->type == RT_GGUF_STRING) {
        const char *s;
        RT_TRY(g_str(c, &s, &kv->n, 0, kv->key));
        kv->data = (const uint8_t *)s;
        return RT_OK;
    }
    if (kv->type != RT_GGUF_ARRAY) {
        size_t sz = rt_gguf_type_size(kv->type);
        if (!sz) return rt_errorf(RT_EINPUT, "%s: key %s has unknown value type %u", path, kv->key,
                                  (unsigned)kv->type);
        RT_TRY(g_need(c, sz, kv->key));
        kv->data = c->g->map + c->pos;
        kv->n = 1;
        c->pos += sz;
        return RT_OK;
    }
    uint32_t at;
    RT_TRY(g_u32r(c, &at, kv->key));
    RT_TRY(g_u64r(c, &kv->n, kv->key));
    kv->arr_type = (rt_gguf_type)at;
    kv->data = c->g->map + c->pos;
    if (at == RT_GGUF_ARRAY)
        return rt_errorf(RT_EINPUT, "%s: key %s is an array of arrays (not supported)", path, kv->key);
    if (at == RT_GGUF_STRING) {
        /* each element takes at least its 8-byte length */
        if (kv->n > (c->g->size - c->pos) / 8)
            return rt_errorf(RT_EINPUT, "%s: key %s: array of %llu strings does not fit in the file",
                             path, kv->key, (unsigned long long)kv->n);
        uint64_t *off = malloc((kv->n ? kv->n : 1) * sizeof *off);
        if (!off) return rt_errorf(RT_EINTERNAL, "%s: out of memory", path);
        kv->str_off = off;
        const size_t start = c->pos;
        for (uint64_t i = 0; i < kv->n; i++) {
            const char *s;
            uint64_t len;
            off[i] = c->pos - start;
            RT_TRY(g_str(c, &s, &len, 0, kv->key));
        }
        return RT_OK;
    }
    size_t sz = rt_gguf_type_size(kv->arr_type);
    if (!sz) return rt_errorf(RT_EINPUT, "%s: key %s: array of unknown type %u", path, kv->key, at);
    if (kv->n > (c->g->size - c->pos) / sz)
        return rt_errorf(RT_EINPUT, "%s: key %s: array of %llu %s does not fit in the file", path,
                         kv->key, (unsigned long long)kv->n, rt_gguf_type_name(kv->arr_type));
    c->pos += kv->n * sz;
    return RT_OK;
}

static int g_cmp_kv(const void *a, const void *b, void *g) {
    const rt_gguf_kv *kv = ((rt_gguf *)g)->kv;
    return strcmp(kv[*(const int32_t *)a].key, kv[*(const int32_t *)b].key);
}
static int g_cmp_t(const void *a, const void *b, void *g) {
    const rt_gguf_tensor *t = ((rt_gguf *)g)->t;
    return strcmp(t[*(const int32_t *)a].name, t[*(const int32_t *)b].name);
}

/* Builds a name-sorted index and refuses duplicates. */
static rt_status g_index(rt_gguf *g, bool tensors) {
    size_t n = tensors ? g->n_t : g->n_kv;
    int32_t *ix = malloc((n ? n : 1) * sizeof *ix);
    if (!ix) return rt_errorf(RT_EINTERNAL, "%s: out of memory", g->path);
    for (size_t i = 0; i < n; i++) ix[i] = (int32_t)i;
    qsort_r(ix, n, sizeof *ix, tensors ? g_cmp_t : g_cmp_kv, g);
    if (tensors) g->t_index = ix; else g->kv_index = ix;
    for (size_t i = 1; i < n; i++) {
        const char *a = tensors ? g->t[ix[i - 1]].name : g->kv[ix[i - 1]].key;
        const char *b = tensors ? g->t[ix[i]].name : g->kv[ix[i]].key;
        if (!strcmp(a, b))
            return rt_errorf(RT_EINPUT, "%s: duplicate %s %s", g->path, tensors ? "tensor" : "key", a);
    }
    return RT_OK;
}

static rt_status g_tensor_info(g_cur *c, rt_gguf_tensor *t) {
    const char *path = c->g->path;
    RT_TRY(g_name(c, &t->name, "tensor name"));
    uint32_t nd, type;
    RT_TRY(g_u32r(c, &nd, t->name));
    if (nd < 1 || nd > RT_GGUF_MAX_DIMS)
        return rt_errorf(RT_EINPUT, "%s: tensor %s has %u dimensions (1..%d allowed)", path,
                         t->name, nd, RT_GGUF_MAX_DIMS);
    t->n_dims = (int)nd;
    uint64_t numel = 1;
    for (int d = 0; d < RT_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t ne;
        RT_TRY(g_u64r(c, &ne, t->name));
        if (ne >= (1ull << 62) || __builtin_mul_overflow(numel, ne, &numel) || numel >= (1ull << 62))
            return rt_errorf(RT_EINPUT, "%s: tensor %s: dimension %u (%llu) is too large", path,
                             t->name, d, (unsigned long long)ne);
        t->ne[d] = (int64_t)ne;
    }
    RT_TRY(g_u32r(c, &type, t->name));
    t->type = (rt_ggml_type)type;
    const g_tinfo ti = g_type(t->type);
    if (!ti.blck)
        return rt_errorf(RT_EINPUT, "%s: tensor %s has ggml type %s (%u), which retort cannot read "
                         "(supported: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K)",
                         path, t->name, ti.name, type);
    if (t->ne[0] % ti.blck)
        return rt_errorf(RT_EINPUT, "%s: tensor %s: row length %lld is not a multiple of the %s "
                         "block size %d", path, t->name, (long long)t->ne[0], ti.name, ti.blck);
    t->nbytes = (size_t)(numel / (uint64_t)ti.blck) * ti.size;
    RT_TRY(g_u64r(c, &t->offset, t->name));
    return RT_OK;
}

static int g_cmp_off(const void *a, const void *b) {
    const rt_gguf_tensor *x = *(rt_gguf_tensor *const *)a, *y = *(rt_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Data section: alignment, bounds and overlap of every tensor. */
static rt_status g_check_data(rt_gguf *g, size_t header_end) {
    int64_t al = RT_GGUF_DEFAULT_ALIGNMENT;
    RT_TRY(rt_gguf_get_int(g, "general.alignment", false, &al));
    if (al < 1 || al > (1 << 16) || (al & (al - 1)))
        return rt_errorf(RT_EINPUT, "%s: general.alignment %lld is not a power of two in [1, 65536]",
                         g->path, (long long)al);
    g->alignment = (size_t)al;
    size_t data = (header_end + g->alignment - 1) / g->alignment * g->alignment;
    if (g->n_t && data > g->size)
        return rt_errorf(RT_EINPUT, "%s: truncated file: tensor data would start at byte %zu, "
                         "file has %zu", g->path, data, g->size);
    const size_t avail = data <= g->size ? g->size - data : 0;
    rt_gguf_tensor **by = malloc((g->n_t ? g->n_t : 1) * sizeof *by);
    if (!by) return rt_errorf(RT_EINTERNAL, "%s: out of memory", g->path);
    rt_status s = RT_OK;
    for (size_t i = 0; i < g->n_t && !s; i++) {
        rt_gguf_tensor *t = &g->t[i];
        by[i] = t;
        if (t->offset % g->alignment)
            s = rt_errorf(RT_EINPUT, "%s: tensor %s: offset %llu is not a multiple of the alignment "
                          "%zu", g->path, t->name, (unsigned long long)t->offset, g->alignment);
        else if (t->offset > avail || t->nbytes > avail - t->offset)
            s = rt_errorf(RT_EINPUT, "%s: truncated file: tensor %s needs bytes [%llu, %llu) of the "
                          "data section, which has %zu", g->path, t->name,
                          (unsigned long long)t->offset,
                          (unsigned long long)(t->offset + t->nbytes), avail);
        else
            t->data = g->map + data + t->offset;
    }
    if (!s) {
        qsort(by, g->n_t, sizeof *by, g_cmp_off);
        for (size_t i = 1; i < g->n_t && !s; i++)
            if (by[i - 1]->offset + by[i - 1]->nbytes > by[i]->offset)
                s = rt_errorf(RT_EINPUT, "%s: tensors %s and %s overlap", g->path, by[i - 1]->name,
                              by[i]->name);
    }
    free(by);
    return s;
}

static rt_status g_parse(rt_gguf *g) {
    g_cur c = {g, 0};
    uint32_t magic;
    RT_TRY(g_u32r(&c, &magic, "magic"));
    if (memcmp(g->map, "GGUF", 4))
        return rt_errorf(RT_EINPUT, "%s: not a GGUF file (bad magic)", g->path);
    RT_TRY(g_u32r(&c, &g->version, "version"));
    if (g->version != 2 && g->version != 3)
        return rt_errorf(RT_EINPUT, "%s: GGUF version %u is not supported (2 or 3)", g->path,
                         g->version);
    uint64_t nt, nkv;
    RT_TRY(g_u64r(&c, &nt, "tensor count"));
    RT_TRY(g_u64r(&c, &nkv, "metadata count"));
    /* a kv takes >= 12 bytes (key length + type), a tensor info >= 24 */
    if (nt > RT_GGUF_MAX_ITEMS || nkv > RT_GGUF_MAX_ITEMS || nkv > g->size / 12 || nt > g->size / 24)
        return rt_errorf(RT_EINPUT, "%s: %llu tensors and %llu metadata entries do not fit in a "
                         "%zu-byte file (limit %u each)", g->path, (unsigned long long)nt,
                         (unsigned long long)nkv, g->size, RT_GGUF_MAX_ITEMS);
    g->kv = calloc(nkv ? nkv : 1, sizeof *g->kv);
    g->t = calloc(nt ? nt : 1, sizeof *g->t);
    if (!g->kv || !g->t) return rt_errorf(RT_EINTERNAL, "%s: out of memory", g->path);
    for (; g->n_kv < nkv; ) {
        rt_gguf_kv *kv = &g->kv[g->n_kv++];
        RT_TRY(g_name(&c, &kv->key, "metadata key"));
        uint32_t type;
        RT_TRY(g_u32r(&c, &type, kv->key));
        kv->type = (rt_gguf_type)type;
        RT_TRY(g_value(&c, kv));
    }
    RT_TRY(g_index(g, false));
    for (; g->n_t < nt; ) RT_TRY(g_tensor_info(&c, &g->t[g->n_t++]));
    RT_TRY(g_index(g, true));
    return g_check_data(g, c.pos);
}

rt_status rt_gguf_open(const char *path, rt_gguf **out) {
    *out = NULL;
    rt_gguf *g = calloc(1, sizeof *g);
    if (!g || !(g->path = strdup(path))) {
        free(g);
        return rt_errorf(RT_EINTERNAL, "%s: out of memory", path);
    }
    rt_status s = RT_OK;
    int fd = open(path, O_RDONLY);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        s = rt_errorf(RT_EINPUT, "%s: cannot open: %s", path, strerror(errno));
    } else if (!S_ISREG(sb.st_mode) || sb.st_size < 24) {
        s = rt_errorf(RT_EINPUT, "%s: not a GGUF file (%s)", path,
                      S_ISREG(sb.st_mode) ? "shorter than its 24-byte header" : "not a regular file");
    } else {
        g->size = (size_t)sb.st_size;
        void *m = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) s = rt_errorf(RT_EINPUT, "%s: cannot mmap: %s", path, strerror(errno));
        else g->map = m;
    }
    if (fd >= 0) close(fd);
    if (!s) s = g_parse(g);
    if (s) { rt_gguf_close(g); return s; }
    *out = g;
    return RT_OK;
}

void rt_gguf_close(rt_gguf *g) {
    if (!g) return;
    for (size_t i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        free((void *)g->kv[i].str_off);
    }
    for (size_t i = 0; i < g->n_t; i++) free(g->t[i].name);
    free(g->kv);
    free(g->t);
    free(g->kv_index);
    free(g->t_index);
    if (g->map) munmap(g->map, g->size);
    free(g->path);
    free(g);
}

const char *rt_gguf_path(const rt_gguf *g) { return g->path; }
uint32_t rt_gguf_version(const rt_gguf *g) { return g->version; }
size_t rt_gguf_alignment(const rt_gguf *g) { return g->alignment; }
size_t rt_gguf_kv_count(const rt_gguf *g) { return g->n_kv; }
const rt_gguf_kv *rt_gguf_kv_at(const rt_gguf *g, size_t i) { return i < g->n_kv ? &g->kv[i] : NULL; }
size_t rt_gguf_tensor_count(const rt_gguf *g) { return g->n_t; }
const rt_gguf_tensor *rt_gguf_tensor_at(const rt_gguf *g, size_t i) {
    return i < g->n_t ? &g->t[i] : NULL;
}

const rt_gguf_kv *rt_gguf_find(const rt_gguf *g, const char *key) {
    if (!g->kv_index) return NULL;
    size_t lo = 0, hi = g->n_kv;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key, g->kv[g->kv_index[mid]].key);
        if (!c) return &g->kv[g->kv_index[mid]];
        if (c < 0) hi = mid; else lo = mid + 1;
    }
    return NULL;
}

const rt_gguf_tensor *rt_gguf_find_tensor(const rt_gguf *g, const char *name) {
    if (!g->t_index) return NULL;
    size_t lo = 0, hi = g->n_t;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, g->t[g->t_index[mid]].name);
        if (!c) return &g->t[g->t_index[mid]];
        if (c < 0) hi = mid; else lo = mid + 1;
    }
    return NULL;
}

int64_t rt_gguf_tensor_numel(const rt_gguf_tensor *t) {
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

/* Integer value of a scalar of integer/bool type at p; false if not one. */
static bool g_int_at(rt_gguf_type t, const uint8_t *p, int64_t *v, bool *fits) {
    *fits = true;
    switch (t) {
    case RT_GGUF_UINT8: case RT_GGUF_BOOL: *v = p[0]; return true;
    case RT_GGUF_INT8: *v = (int8_t)p[0]; return true;
    case RT_GGUF_UINT16: *v = (int64_t)g_le(p, 2); return true;
    case RT_GGUF_INT16: *v = (int16_t)g_le(p, 2); return true;
    case RT_GGUF_UINT32: *v = (int64_t)g_le(p, 4); return true;
    case RT_GGUF_INT32: *v = (int32_t)g_le(p, 4); return true;
    case RT_GGUF_INT64: *v = (int64_t)g_le(p, 8); return true;
    case RT_GGUF_UINT64: { uint64_t u = g_le(p, 8); *fits = u <= INT64_MAX; *v = (int64_t)u; return true; }
    default: return false;
    }
}

static bool g_float_at(rt_gguf_type t, const uint8_t *p, double *v) {
    if (t == RT_GGUF_FLOAT32) {
        uint32_t u = (uint32_t)g_le(p, 4);
        float f;
        memcpy(&f, &u, 4);
        *v = f;
        return true;
    }
    if (t == RT_GGUF_FLOAT64) {
        uint64_t u = g_le(p, 8);
        memcpy(v, &u, 8);
        return true;
    }
    return false;
}

static rt_status g_get(const rt_gguf *g, const char *key, bool required, const rt_gguf_kv **kv) {
    *kv = rt_gguf_find(g, key);
    if (!*kv && required) return rt_errorf(RT_EINPUT, "%s: missing key %s", g->path, key);
    return RT_OK;
}

static rt_status g_badtype(const rt_gguf *g, const rt_gguf_kv *kv, const char *want) {
    return rt_errorf(RT_EINPUT, "%s: key %s has type %s, expected %s", g->path, kv->key,
                     rt_gguf_type_name(kv->type), want);
}

rt_status rt_gguf_get_int(const rt_gguf *g, const char *key, bool required, int64_t *out) {
    const rt_gguf_kv *kv;
    RT_TRY(g_get(g, key, required, &kv));
    if (!kv) return RT_OK;
    int64_t v;
    bool fits;
    if (kv->type == RT_GGUF_BOOL || !g_int_at(kv->type, kv->data, &v, &fits))
        return g_badtype(g, kv, "an integer");
    if (!fits) return rt_errorf(RT_EINPUT, "%s: key %s: value too large", g->path, key);
    *out = v;
    return RT_OK;
}

rt_status rt_gguf_get_float(const rt_gguf *g, const char *key, bool required, double *out) {
    const rt_gguf_kv *kv;
    RT_TRY(g_get(g, key, required, &kv));
    if (!kv) return RT_OK;
    if (!g_float_at(kv->type, kv->data, out)) return g_badtype(g, kv, "float32 or float64");
    return RT_OK;
}

rt_status rt_gguf_get_bool(const rt_gguf *g, const char *key, bool required, bool *out) {
    const rt_gguf_kv *kv;
    RT_TRY(g_get(g, key, required, &kv));
    if (!kv) return RT_OK;
    if (kv->type != RT_GGUF_BOOL) return g_badtype(g, kv, "bool");
    *out = kv->data[0] != 0;
    return RT_OK;
}

rt_status rt_gguf_get_str(const rt_gguf *g, const char *key, bool required, const char **out,
                          size_t *len) {
    const rt_gguf_kv *kv;
    RT_TRY(g_get(g, key, required, &kv));
    if (!kv) return RT_OK;
    if (kv->type != RT_GGUF_STRING) return g_badtype(g, kv, "string");
    *out = (const char *)kv->data;
    *len = (size_t)kv->n;
    return RT_OK;
}

void rt_gguf_arr_str(const rt_gguf_kv *kv, uint64_t i, const char **s, size_t *len) {
    const uint8_t *p = kv->data + kv->str_off[i];
    *len = (size_t)g_le(p, 8);
    *s = (const char *)p + 8;
}

int64_t rt_gguf_arr_int(const rt_gguf_kv *kv, uint64_t i) {
    const uint8_t *p = kv->data + i * rt_gguf_type_size(kv->arr_type);
    int64_t v = 0;
    double f;
    bool fits;
    if (g_int_at(kv->arr_type, p, &v, &fits)) return v;
    return g_float_at(kv->arr_type, p, &f) ? (int64_t)f : 0;
}

double rt_gguf_arr_float(const rt_gguf_kv *kv, uint64_t i) {
    const uint8_t *p = kv->data + i * rt_gguf_type_size(kv->arr_type);
    double f;
    int64_t v;
    bool fits;
    if (g_float_at(kv->arr_type, p, &f)) return f;
    return g_int_at(kv->arr_type, p, &v, &fits) ? (double)v : 0.0;
}

void rt_gguf_kv_raw(const rt_gguf_kv *kv, const void **bytes, size_t *nbytes) {
    if (kv->type == RT_GGUF_STRING) {
        *bytes = kv->data - 8;
        *nbytes = 8 + (size_t)kv->n;
    } else if (kv->type == RT_GGUF_ARRAY) {
        *bytes = kv->data - 12;
        size_t body = kv->arr_type == RT_GGUF_STRING
            ? (kv->n ? (size_t)kv->str_off[kv->n - 1] + 8 + (size_t)g_le(kv->data + kv->str_off[kv->n - 1], 8) : 0)
            : (size_t)kv->n * rt_gguf_type_size(kv->arr_type);
        *nbytes = 12 + body;
    } else {
        *bytes = kv->data;
        *nbytes = rt_gguf_type_size(kv->type);
    }
}

/* ---- writer -------------------------------------------------------------- */

typedef struct { uint8_t *p; size_t n, cap; bool oom; } g_buf;

static void g_put(g_buf *b, const void *s, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < b->n + n) nc *= 2;
        uint8_t *p = realloc(b->p, nc);
        if (!p) { b->oom = true; return; }
        b->p = p;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void g_put_le(g_buf *b, uint64_t v, int n) {
    uint8_t t[8];
    for (int i = 0; i < n; i++) t[i] = (uint8_t)(v >> (8 * i));
    g_put(b, t, (size_t)n);
}

static void g_put_str(g_buf *b, const char *s, size_t n) {
    g_put_le(b, n, 8);
    g_put(b, s, n);
}

typedef struct {
    char *name;
    rt_ggml_type type;
    int n_dims;
    int64_t ne[RT_GGUF_MAX_DIMS];
    const void *data;
    size_t nbytes;
} g_wtensor;

struct rt_gguf_writer {
    g_buf kv;       /* encoded key/value pairs */
    uint64_t n_kv;
    g_wtensor *t;
    size_t n_t, cap_t;
    uint32_t alignment;
};

rt_status rt_gguf_writer_new(rt_gguf_writer **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return rt_errorf(RT_EINTERNAL, "out of memory");
    (*out)->alignment = RT_GGUF_DEFAULT_ALIGNMENT;
    return RT_OK;
}

void rt_gguf_writer_free(rt_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->t);
    free(w->kv.p);
    free(w);
}

static rt_status g_key(rt_gguf_writer *w, const char *key, rt_gguf_type type) {
    g_put_str(&w->kv, key, strlen(key));
    g_put_le(&w->kv, (uint64_t)type, 4);
    w->n_kv++;
    return w->kv.oom ? rt_errorf(RT_EINTERNAL, "out of memory") : RT_OK;
}

static rt_status g_done(rt_gguf_writer *w) {
    return w->kv.oom ? rt_errorf(RT_EINTERNAL, "out of memory") : RT_OK;
}

rt_status rt_gguf_set_str(rt_gguf_writer *w, const char *key, const char *val) {
    RT_TRY(g_key(w, key, RT_GGUF_STRING));
    g_put_str(&w->kv, val, strlen(val));
    return g_done(w);
}

rt_status rt_gguf_set_u32(rt_gguf_writer *w, const char *key, uint32_t val) {
    if (!strcmp(key, "general.alignment")) w->alignment = val;
    RT_TRY(g_key(w, key, RT_GGUF_UINT32));
    g_put_le(&w->kv, val, 4);
    return g_done(w);
}

rt_status rt_gguf_set_i32(rt_gguf_writer *w, const char *key, int32_t val) {
    RT_TRY(g_key(w, key, RT_GGUF_INT32));
    g_put_le(&w->kv, (uint32_t)val, 4);
    return g_done(w);
}

rt_status rt_gguf_set_f32(rt_gguf_writer *w, const char *key, float val) {
    uint32_t u;
    memcpy(&u, &val, 4);
    RT_TRY(g_key(w, key, RT_GGUF_FLOAT32));
    g_put_le(&w->kv, u, 4);
    return g_done(w);
}

rt_status rt_gguf_set_bool(rt_gguf_writer *w, const char *key, bool val) {
    RT_TRY(g_key(w, key, RT_GGUF_BOOL));
    g_put_le(&w->kv, val ? 1 : 0, 1);
    return g_done(w);
}

rt_status rt_gguf_set_arr(rt_gguf_writer *w, const char *key, rt_gguf_type t, const void *data,
                          uint64_t n) {
    const size_t sz = rt_gguf_type_size(t);
    if (!sz) return rt_errorf(RT_EINTERNAL, "rt_gguf_set_arr: %s: bad element type", key);
    RT_TRY(g_key(w, key, RT_GGUF_ARRAY));
    g_put_le(&w->kv, (uint64_t)t, 4);
    g_put_le(&w->kv, n, 8);
    /* values are little-endian on every host retort runs on (x86-64, arm64) */
    g_put(&w->kv, data, (size_t)n * sz);
    return g_done(w);
}

rt_status rt_gguf_set_arr_str(rt_gguf_writer *w, const char *key, const char *const *s,
                              const size_t *lens, uint64_t n) {
    RT_TRY(g_key(w, key, RT_GGUF_ARRAY));
    g_put_le(&w->kv, RT_GGUF_STRING, 4);
    g_put_le(&w->kv, n, 8);
    for (uint64_t i = 0; i < n; i++) g_put_str(&w->kv, s[i], lens ? lens[i] : strlen(s[i]));
    return g_done(w);
}

rt_status rt_gguf_set_raw(rt_gguf_writer *w, const char *key, rt_gguf_type type,
                          const void *bytes, size_t nbytes) {
    if (!strcmp(key, "general.alignment") && type == RT_GGUF_UINT32 && nbytes == 4)
        w->alignment = (uint32_t)g_le(bytes, 4);
    RT_TRY(g_key(w, key, type));
    g_put(&w->kv, bytes, nbytes);
    return g_done(w);
}

rt_status rt_gguf_add_tensor(rt_gguf_writer *w, const char *name, rt_ggml_type type, int n_dims,
                             const int64_t *ne, const void *data, size_t nbytes) {
    if (n_dims < 1 || n_dims > RT_GGUF_MAX_DIMS)
        return rt_errorf(RT_EINTERNAL, "rt_gguf_add_tensor: %s: %d dims", name, n_dims);
    int64_t numel = 1;
    for (int d = 0; d < n_dims; d++) numel *= ne[d];
    if (!rt_ggml_block_size(type) || ne[0] % rt_ggml_block_size(type) ||
        rt_ggml_row_size(type, numel) != nbytes)
        return rt_errorf(RT_EINTERNAL, "rt_gguf_add_tensor: %s: %zu bytes do not match type %s "
                         "and shape", name, nbytes, rt_ggml_type_name(type));
    if (w->n_t == w->cap_t) {
        size_t nc = w->cap_t ? 2 * w->cap_t : 64;
        g_wtensor *p = realloc(w->t, nc * sizeof *p);
        if (!p) return rt_errorf(RT_EINTERNAL, "out of memory");
        w->t = p;
        w->cap_t = nc;
    }
    g_wtensor *t = &w->t[w->n_t];
    *t = (g_wtensor){.type = type, .n_dims = n_dims, .data = data, .nbytes = nbytes,
                     .ne = {1, 1, 1, 1}};
    for (int d = 0; d < n_dims; d++) t->ne[d] = ne[d];
    if (!(t->name = strdup(name))) return rt_errorf(RT_EINTERNAL, "out of memory");
    w->n_t++;
    return RT_OK;
}

static size_t g_pad(size_t n, size_t a) { return (n + a - 1) / a * a; }

rt_status rt_gguf_write(rt_gguf_writer *w, const char *path) {
    const size_t al = w->alignment ? w->alignment : RT_GGUF_DEFAULT_ALIGNMENT;
    g_buf h = {0};
    g_put(&h, "GGUF", 4);
    g_put_le(&h, 3, 4);
    g_put_le(&h, w->n_t, 8);
    g_put_le(&h, w->n_kv, 8);
    g_put(&h, w->kv.p, w->kv.n);
    size_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const g_wtensor *t = &w->t[i];
        g_put_str(&h, t->name, strlen(t->name));
        g_put_le(&h, (uint64_t)t->n_dims, 4);
        for (int d = 0; d < t->n_dims; d++) g_put_le(&h, (uint64_t)t->ne[d], 8);
        g_put_le(&h, (uint64_t)t->type, 4);
        g_put_le(&h, off, 8);
        off = g_pad(off + t->nbytes, al);
    }
    static const uint8_t zeros[64] = {0};
    while (h.n % al) g_put(&h, zeros, al - h.n % al < 64 ? al - h.n % al : 64);
    if (h.oom) { free(h.p); return rt_errorf(RT_EINTERNAL, "%s: out of memory", path); }

    char *tmp;
    if (asprintf(&tmp, "%s.tmp", path) < 0) { free(h.p); return rt_errorf(RT_EINTERNAL, "out of memory"); }
    FILE *f = fopen(tmp, "wb");
    rt_status s = RT_OK;
    if (!f) {
        s = rt_errorf(RT_EINPUT, "%s: cannot write: %s", tmp, strerror(errno));
    } else {
        bool ok = fwrite(h.p, 1, h.n, f) == h.n;
        for (size_t i = 0; ok && i < w->n_t; i++) {
            const g_wtensor *t = &w->t[i];
            ok = fwrite(t->data, 1, t->nbytes, f) == t->nbytes;
            for (size_t pad = g_pad(t->nbytes, al) - t->nbytes; ok && pad;) {
                size_t k = pad < sizeof zeros ? pad : sizeof zeros;
                ok = fwrite(zeros, 1, k, f) == k;
                pad -= k;
            }
        }
        if (fclose(f) != 0) ok = false;
        if (!ok || rename(tmp, path) != 0) {
            s = rt_errorf(RT_EINPUT, "%s: cannot write: %s", path, strerror(errno));
            unlink(tmp);
        }
    }
    free(tmp);
    free(h.p);
    return s;
}
