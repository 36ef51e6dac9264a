/* retort — safetensors reader (mmap + cJSON) and atomic writer.
 * Format: https://github.com/huggingface/safetensors (README "Format"); the
 * writer follows the reference serializer's layout (space-padded header,
 * contiguous buffer sorted by alignment then name). */
#include "train/formats/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

/* The reference implementation refuses headers over 100 MB; so do we, so a
 * corrupt length can't make us parse gigabytes as JSON. */
#define ST_MAX_HEADER (100u * 1000u * 1000u)
/* Integers in the header are parsed as doubles: exact below 2^53. */
#define ST_MAX_INT 9007199254740992.0

struct rt_safetensors {
    char *path;
    void *map;
    size_t map_len;
    cJSON *header;        /* kept alive: tensor names and metadata point into it */
    rt_st_tensor *t;      /* header order */
    size_t n;
    size_t *by_name;      /* indices into t sorted by name, for rt_st_find */
    void **copies;        /* per-tensor aligned copies (NULL where not needed) */
    const cJSON *meta;    /* "__metadata__" object or NULL */
};

static const struct { const char *name; size_t size; } st_dtypes[] = {
    [RT_ST_F32] = {"F32", 4}, [RT_ST_BF16] = {"BF16", 2}, [RT_ST_F16] = {"F16", 2},
    [RT_ST_U8] = {"U8", 1},   [RT_ST_I32] = {"I32", 4},   [RT_ST_I64] = {"I64", 8},
    [RT_ST_F64] = {"F64", 8},
};
#define ST_NDTYPES (sizeof st_dtypes / sizeof st_dtypes[0])

size_t rt_st_dtype_size(rt_st_dtype dt) {
    return (unsigned)dt < ST_NDTYPES ? st_dtypes[dt].size : 0;
}

const char *rt_st_dtype_name(rt_st_dtype dt) {
    return (unsigned)dt < ST_NDTYPES ? st_dtypes[dt].name : "?";
}

int64_t rt_st_numel(const rt_st_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

static int st_dtype_parse(const char *s, rt_st_dtype *out) {
    for (size_t i = 0; i < ST_NDTYPES; i++)
        if (strcmp(s, st_dtypes[i].name) == 0) { *out = (rt_st_dtype)i; return 1; }
    return 0;
}

/* A JSON number that is a non-negative integer below 2^53. */
static int st_json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0 && d < ST_MAX_INT) || d != (double)(uint64_t)d) return 0;
    *out = (uint64_t)d;
    return 1;
}

/* Renders a shape as "[a,b,c]" into buf (for messages). */
static const char *st_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, cap - k, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%" PRId64, i ? "," : "", shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
    return buf;
}

/* qsort comparators need context: a thread-local pointer set just before
 * each qsort call (qsort_r is not C11). */
static _Thread_local const rt_st_tensor *st_sort_base;

static int st_cmp_name(const void *a, const void *b) {
    return strcmp(st_sort_base[*(const size_t *)a].name, st_sort_base[*(const size_t *)b].name);
}

static _Thread_local const uint64_t *st_sort_begin;

static int st_cmp_begin(const void *a, const void *b) {
    uint64_t x = st_sort_begin[*(const size_t *)a], y = st_sort_begin[*(const size_t *)b];
    return x < y ? -1 : x > y;
}

/* Parses one tensor entry; `begin` receives its data offset. */
static rt_status st_parse_entry(const char *path, const cJSON *e, rt_st_tensor *t,
                                uint64_t *begin, uint64_t data_len) {
    const char *name = e->string;
    if (!cJSON_IsObject(e))
        return rt_errorf(RT_EINPUT, "%s: corrupt header: entry '%s' is not an object", path, name);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(jd) || !cJSON_IsArray(js) || !cJSON_IsArray(jo))
        return rt_errorf(RT_EINPUT, "%s: corrupt header: tensor '%s' needs string \"dtype\", "
                         "array \"shape\" and array \"data_offsets\"", path, name);
    t->name = name;
    if (!st_dtype_parse(jd->valuestring, &t->dtype))
        return rt_errorf(RT_EINPUT, "%s: tensor '%s' has unsupported dtype '%s' (retort reads "
                         "F32, BF16, F16, U8, I32, I64, F64)", path, name, jd->valuestring);
    int ndim = cJSON_GetArraySize(js);
    if (ndim > RT_ST_MAX_DIMS)
        return rt_errorf(RT_EINPUT, "%s: tensor '%s' has %d dimensions (at most %d supported)",
                         path, name, ndim, RT_ST_MAX_DIMS);
    t->ndim = ndim;
    uint64_t numel = 1;
    int i = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, js) {
        uint64_t v;
        if (!st_json_uint(d, &v))
            return rt_errorf(RT_EINPUT, "%s: corrupt header: tensor '%s' shape[%d] is not a "
                             "non-negative integer", path, name, i);
        if (__builtin_mul_overflow(numel, v, &numel) || numel > (uint64_t)INT64_MAX)
            return rt_errorf(RT_EINPUT, "%s: corrupt header: tensor '%s' shape overflows", path, name);
        t->shape[i++] = (int64_t)v;
    }
    uint64_t nbytes;
    if (__builtin_mul_overflow(numel, (uint64_t)rt_st_dtype_size(t->dtype), &nbytes))
        return rt_errorf(RT_EINPUT, "%s: corrupt header: tensor '%s' shape overflows", path, name);
    uint64_t b, en;
    if (cJSON_GetArraySize(jo) != 2 || !st_json_uint(cJSON_GetArrayItem(jo, 0), &b) ||
        !st_json_uint(cJSON_GetArrayItem(jo, 1), &en))
        return rt_errorf(RT_EINPUT, "%s: corrupt header: tensor '%s' data_offsets must be two "
                         "non-negative integers", path, name);
    if (en < b)
        return rt_errorf(RT_EINPUT, "%s: corrupt header: tensor '%s' data_offsets [%" PRIu64
                         ",%" PRIu64 "] end before begin", path, name, b, en);
    if (en > data_len)
        return rt_errorf(RT_EINPUT, "%s: truncated or corrupt: tensor '%s' data_offsets end %"
                         PRIu64 " is past the end of the data (%" PRIu64 " bytes)",
                         path, name, en, data_len);
    if (en - b != nbytes) {
        char sb[160];
        return rt_errorf(RT_EINPUT, "%s: corrupt header: tensor '%s' has shape %s %s (%" PRIu64
                         " bytes) but data_offsets [%" PRIu64 ",%" PRIu64 "] span %" PRIu64
                         " bytes", path, name, st_shape_str(sb, sizeof sb, ndim, t->shape),
                         jd->valuestring, nbytes, b, en, en - b);
    }
    t->nbytes = (size_t)nbytes;
    *begin = b;
    return RT_OK;
}

/* Parses and checks the header of an mmapped file of `size` bytes. */
static rt_status st_parse(rt_safetensors *st, const unsigned char *base, size_t size) {
    const char *path = st->path;
    if (size < 8)
        return rt_errorf(RT_EINPUT, "%s: truncated: file is %zu bytes, shorter than the 8-byte "
                         "header length", path, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | base[i];
    if (hlen > size - 8)
        return rt_errorf(RT_EINPUT, "%s: truncated header (file is %zu bytes, header says %"
                         PRIu64 ")", path, size, hlen);
    if (hlen > ST_MAX_HEADER)
        return rt_errorf(RT_EINPUT, "%s: corrupt header: length %" PRIu64 " exceeds %u bytes",
                         path, hlen, ST_MAX_HEADER);
    const char *json = (const char *)base + 8, *end = NULL;
    st->header = cJSON_ParseWithLengthOpts(json, (size_t)hlen, &end, 0);
    if (!st->header) {
        size_t at = end && end >= json ? (size_t)(end - json) : 0;
        return rt_errorf(RT_EINPUT, "%s: corrupt header: invalid JSON near byte %zu of %" PRIu64,
                         path, at + 8, hlen);
    }
    for (const char *p = end; p < json + hlen; p++)
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t' && *p != '\0')
            return rt_errorf(RT_EINPUT, "%s: corrupt header: garbage after the JSON object at "
                             "byte %zu", path, (size_t)(p - json) + 8);
    if (!cJSON_IsObject(st->header))
        return rt_errorf(RT_EINPUT, "%s: corrupt header: not a JSON object", path);

    uint64_t data_len = size - 8 - hlen;
    size_t count = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, st->header) count++;
    st->t = calloc(count ? count : 1, sizeof *st->t);
    st->by_name = calloc(count ? count : 1, sizeof *st->by_name);
    st->copies = calloc(count ? count : 1, sizeof *st->copies);
    uint64_t *begin = calloc(count ? count : 1, sizeof *begin);
    size_t *order = calloc(count ? count : 1, sizeof *order);
    rt_status s = RT_OK;
    if (!st->t || !st->by_name || !st->copies || !begin || !order) {
        s = rt_errorf(RT_EINTERNAL, "%s: out of memory reading the header", path);
        goto done;
    }
    cJSON_ArrayForEach(e, st->header) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (cJSON_IsNull(e)) continue;
            if (!cJSON_IsObject(e) || st->meta) {
                s = rt_errorf(RT_EINPUT, "%s: corrupt header: __metadata__ must be one object", path);
                goto done;
            }
            const cJSON *kv;
            cJSON_ArrayForEach(kv, e) if (!cJSON_IsString(kv)) {
                s = rt_errorf(RT_EINPUT, "%s: corrupt header: __metadata__ value '%s' is not a "
                              "string", path, kv->string);
                goto done;
            }
            st->meta = e;
            continue;
        }
        s = st_parse_entry(path, e, &st->t[st->n], &begin[st->n], data_len);
        if (s) goto done;
        st->n++;
    }
    for (size_t i = 0; i < st->n; i++) st->by_name[i] = order[i] = i;
    st_sort_base = st->t;
    qsort(st->by_name, st->n, sizeof *st->by_name, st_cmp_name);
    for (size_t i = 1; i < st->n; i++)
        if (strcmp(st->t[st->by_name[i]].name, st->t[st->by_name[i - 1]].name) == 0) {
            s = rt_errorf(RT_EINPUT, "%s: corrupt header: tensor '%s' appears twice", path,
                          st->t[st->by_name[i]].name);
            goto done;
        }
    st_sort_begin = begin;
    qsort(order, st->n, sizeof *order, st_cmp_begin);
    /* Sorted by begin, a tensor overlaps an earlier one iff it starts before
     * the furthest end seen so far (empty tensors occupy no bytes). */
    uint64_t far = 0;
    size_t far_i = 0;
    for (size_t k = 0; k < st->n; k++) {
        size_t i = order[k];
        if (!st->t[i].nbytes) continue;
        if (begin[i] < far) {
            s = rt_errorf(RT_EINPUT, "%s: corrupt header: data of tensors '%s' and '%s' overlap",
                          path, st->t[far_i].name, st->t[i].name);
            goto done;
        }
        far = begin[i] + st->t[i].nbytes;
        far_i = i;
    }
    /* Point at the data; a tensor not aligned to its element size (a writer
     * that did not pad the header) gets an aligned copy so that consumers
     * can read it as float/int64 without undefined behaviour. */
    const unsigned char *data = base + 8 + hlen;
    for (size_t i = 0; i < st->n; i++) {
        const unsigned char *p = data + begin[i];
        size_t es = rt_st_dtype_size(st->t[i].dtype);
        if ((uintptr_t)p % es == 0) { st->t[i].data = p; continue; }
        st->copies[i] = malloc(st->t[i].nbytes);
        if (!st->copies[i]) {
            s = rt_errorf(RT_EINTERNAL, "%s: out of memory copying tensor '%s'", path, st->t[i].name);
            goto done;
        }
        memcpy(st->copies[i], p, st->t[i].nbytes);
        st->t[i].data = st->copies[i];
    }
done:
    free(begin);
    free(order);
    return s;
}

rt_status rt_st_open(const char *path, rt_safetensors **out) {
    *out = NULL;
    rt_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        free(st);
        return rt_errorf(RT_EINTERNAL, "%s: out of memory", path);
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rt_status s = rt_errorf(RT_EINPUT, "%s: cannot open: %s", path, strerror(errno));
        rt_st_close(st);
        return s;
    }
    struct stat sb;
    rt_status s = RT_OK;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        s = rt_errorf(RT_EINPUT, "%s: not a regular file", path);
    } else if (sb.st_size > 0) {
        st->map_len = (size_t)sb.st_size;
        st->map = mmap(NULL, st->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (st->map == MAP_FAILED) {
            st->map = NULL;
            s = rt_errorf(RT_EINPUT, "%s: cannot mmap: %s", path, strerror(errno));
        }
    }
    close(fd);
    if (!s) s = st_parse(st, st->map ? st->map : (const void *)"", st->map_len);
    if (s) {
        rt_st_close(st);
        return s;
    }
    *out = st;
    return RT_OK;
}

const char *rt_st_path(const rt_safetensors *st) { return st->path; }
size_t rt_st_count(const rt_safetensors *st) { return st->n; }

const rt_st_tensor *rt_st_get(const rt_safetensors *st, size_t i) {
    return i < st->n ? &st->t[i] : NULL;
}

const rt_st_tensor *rt_st_find(const rt_safetensors *st, const char *name) {
    size_t lo = 0, hi = st->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, st->t[st->by_name[mid]].name);
        if (c == 0) return &st->t[st->by_name[mid]];
        if (c < 0) hi = mid; else lo = mid + 1;
    }
    return NULL;
}

const char *rt_st_metadata(const rt_safetensors *st, const char *key) {
    if (!st->meta) return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(st->meta, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

void rt_st_close(rt_safetensors *st) {
    if (!st) return;
    if (st->copies)
        for (size_t i = 0; i < st->n; i++) free(st->copies[i]);
    free(st->copies);
    free(st->by_name);
    free(st->t);
    cJSON_Delete(st->header);
    if (st->map) munmap(st->map, st->map_len);
    free(st->path);
    free(st);
}

/* ---- writer ---------------------------------------------------------- */

static int st_cmp_layout(const void *a, const void *b) {
    const rt_st_tensor *x = &st_sort_base[*(const size_t *)a], *y = &st_sort_base[*(const size_t *)b];
    size_t sx = rt_st_dtype_size(x->dtype), sy = rt_st_dtype_size(y->dtype);
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

static rt_status st_check_args(const char *path, const rt_st_tensor *t, size_t n, size_t *order) {
    for (size_t i = 0; i < n; i++) {
        order[i] = i;
        if (!t[i].name || !t[i].name[0] || strcmp(t[i].name, "__metadata__") == 0)
            return rt_errorf(RT_EINPUT, "%s: tensor %zu has an empty or reserved name", path, i);
        if ((unsigned)t[i].dtype >= ST_NDTYPES || t[i].ndim < 0 || t[i].ndim > RT_ST_MAX_DIMS)
            return rt_errorf(RT_EINPUT, "%s: tensor '%s' has a bad dtype or ndim %d", path,
                             t[i].name, t[i].ndim);
        uint64_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) {
            if (t[i].shape[d] < 0 ||
                __builtin_mul_overflow(numel, (uint64_t)t[i].shape[d], &numel))
                return rt_errorf(RT_EINPUT, "%s: tensor '%s' has a bad shape", path, t[i].name);
        }
        if (numel * rt_st_dtype_size(t[i].dtype) != t[i].nbytes || (t[i].nbytes && !t[i].data))
            return rt_errorf(RT_EINPUT, "%s: tensor '%s': nbytes %zu does not match its shape and "
                             "dtype (%" PRIu64 " bytes)", path, t[i].name, t[i].nbytes,
                             numel * rt_st_dtype_size(t[i].dtype));
    }
    st_sort_base = t;
    qsort(order, n, sizeof *order, st_cmp_name);
    for (size_t i = 1; i < n; i++)
        if (strcmp(t[order[i]].name, t[order[i - 1]].name) == 0)
            return rt_errorf(RT_EINPUT, "%s: tensor name '%s' given twice", path, t[order[i]].name);
    qsort(order, n, sizeof *order, st_cmp_layout);
    return RT_OK;
}

/* Builds the header JSON (tensors in `order`, offsets contiguous). */
static char *st_header_json(const rt_st_tensor *t, size_t n, const size_t *order,
                            const char *const *meta_kv) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    bool ok = true;
    if (meta_kv && meta_kv[0]) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        ok = m != NULL;
        for (size_t i = 0; ok && meta_kv[i] && meta_kv[i + 1]; i += 2)
            ok = cJSON_AddStringToObject(m, meta_kv[i], meta_kv[i + 1]) != NULL;
    }
    uint64_t off = 0;
    for (size_t k = 0; ok && k < n; k++) {
        const rt_st_tensor *x = &t[order[k]];
        double shape[RT_ST_MAX_DIMS], offs[2] = {(double)off, (double)(off + x->nbytes)};
        for (int d = 0; d < x->ndim; d++) shape[d] = (double)x->shape[d];
        cJSON *e = cJSON_AddObjectToObject(root, x->name);
        ok = e && cJSON_AddStringToObject(e, "dtype", rt_st_dtype_name(x->dtype)) &&
             cJSON_AddItemToObject(e, "shape", cJSON_CreateDoubleArray(shape, x->ndim)) &&
             cJSON_AddItemToObject(e, "data_offsets", cJSON_CreateDoubleArray(offs, 2));
        off += x->nbytes;
    }
    char *s = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return s;
}

rt_status rt_st_write(const char *path, const rt_st_tensor *tensors, size_t n,
                      const char *const *meta_kv) {
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    if (!order) return rt_errorf(RT_EINTERNAL, "%s: out of memory", path);
    rt_status s = st_check_args(path, tensors, n, order);
    if (s) { free(order); return s; }
    char *json = st_header_json(tensors, n, order, meta_kv);
    if (!json) { free(order); return rt_errorf(RT_EINTERNAL, "%s: out of memory building the header", path); }
    size_t jlen = strlen(json), hlen = (jlen + 7) & ~(size_t)7;

    char *tmp = malloc(strlen(path) + 5);
    if (!tmp) { free(json); free(order); return rt_errorf(RT_EINTERNAL, "%s: out of memory", path); }
    sprintf(tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        s = rt_errorf(RT_EINPUT, "%s: cannot create: %s", tmp, strerror(errno));
        goto out;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    static const char spaces[8] = "        ";
    bool ok = fwrite(len8, 1, 8, f) == 8 && fwrite(json, 1, jlen, f) == jlen &&
              fwrite(spaces, 1, hlen - jlen, f) == hlen - jlen;
    for (size_t k = 0; ok && k < n; k++) {
        const rt_st_tensor *x = &tensors[order[k]];
        ok = fwrite(x->data, 1, x->nbytes, f) == x->nbytes;
    }
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int err = errno;
    if (fclose(f) != 0 && ok) { ok = false; err = errno; }
    if (!ok) {
        s = rt_errorf(RT_EINPUT, "%s: write failed: %s", tmp, strerror(err));
        unlink(tmp);
    } else if (rename(tmp, path) != 0) {
        s = rt_errorf(RT_EINPUT, "%s: cannot rename from %s: %s", path, tmp, strerror(errno));
        unlink(tmp);
    }
out:
    free(tmp);
    free(json);
    free(order);
    return s;
}

/* ---- rt_st_list ---------------------------------------------------------- */

static bool list_grow(void **arr, size_t *cap, size_t n, size_t elem) {
    if (n < *cap) return true;
    size_t nc = *cap ? *cap * 2 : 64;
    void *p = realloc(*arr, nc * elem);
    if (!p) return false;
    *arr = p;
    *cap = nc;
    return true;
}

rt_status rt_st_list_own(rt_st_list *l, void *p) {
    if (!p || !list_grow((void **)&l->own, &l->capown, l->nown, sizeof *l->own)) {
        free(p);
        return rt_errorf(RT_EINTERNAL, "out of memory assembling tensors to write");
    }
    l->own[l->nown++] = p;
    return RT_OK;
}

rt_status rt_st_list_add(rt_st_list *l, const char *name, rt_st_dtype dtype, int ndim,
                         const int64_t *shape, const void *data) {
    if (!list_grow((void **)&l->t, &l->cap, l->n, sizeof *l->t))
        return rt_errorf(RT_EINTERNAL, "out of memory assembling tensors to write");
    rt_st_tensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    t->name = name;
    t->dtype = dtype;
    t->ndim = ndim;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (t->shape[i] = shape[i]);
    t->data = data;
    t->nbytes = (size_t)n * rt_st_dtype_size(dtype);
    return RT_OK;
}

void rt_st_list_free(rt_st_list *l) {
    for (size_t i = 0; i < l->nown; i++) free(l->own[i]);
    free(l->own);
    free(l->t);
    memset(l, 0, sizeof *l);
}
