/* retort — NF4 checkpoints in bitsandbytes' serialization (see nf4_io.h):
 * the writer behind `retort quantize`, the reader the model loader uses,
 * and small directory helpers shared with train/model/merge.c. */
#include "train/formats/nf4_io.h"
#include "train/formats/fs.h"
#include "train/formats/model_file.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "kernels/fault.h"
#include "kernels/kernels.h"
#include "train/formats/half.h"
#include "train/formats/llama_config.h"

#define QS_SUFFIX ".quant_state.bitsandbytes__nf4"

/* ---- shared helpers ------------------------------------------------------ */

static rt_status copy_file(const char *src, const char *dst) {
    struct stat a, b;
    if (stat(src, &a) == 0 && stat(dst, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
        return RT_OK; /* writing into the source directory */
    FILE *in = fopen(src, "rb");
    if (!in) return rt_errorf(RT_EINPUT, "%s: cannot open: %s", src, strerror(errno));
    char *tmp;
    if (asprintf(&tmp, "%s.tmp", dst) < 0) {
        fclose(in);
        return rt_errorf(RT_EINTERNAL, "out of memory");
    }
    FILE *out = fopen(tmp, "wb");
    if (!out) {
        rt_status s = rt_errorf(RT_EINPUT, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        fclose(in);
        return s;
    }
    char buf[1 << 16];
    size_t n;
    bool ok = true;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, n, out) == n;
    ok = ok && !ferror(in);
    fclose(in);
    if (fclose(out) != 0) ok = false;
    if (!ok || rename(tmp, dst) != 0) {
        rt_status s = rt_errorf(RT_EINPUT, "%s: cannot write: %s", dst, strerror(errno));
        unlink(tmp);
        free(tmp);
        return s;
    }
    free(tmp);
    return RT_OK;
}

rt_status rt_nf4_copy_side_files(const char *model_path, const char *out_dir) {
    static const char *const files[] = {"tokenizer.json", "tokenizer_config.json",
                                        "special_tokens_map.json", "tokenizer.model",
                                        "generation_config.json"};
    struct stat sb;
    if (stat(model_path, &sb) != 0) return RT_OK;
    char dir[4096];
    if (S_ISDIR(sb.st_mode)) {
        snprintf(dir, sizeof dir, "%s", model_path);
    } else {
        size_t len = strlen(model_path);
        if (len < 12 || strcmp(model_path + len - 12, ".safetensors") != 0) return RT_OK;
        snprintf(dir, sizeof dir, "%s", model_path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
    }
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char src[4200], dst[4200];
        snprintf(src, sizeof src, "%s/%s", dir, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", out_dir, files[i]);
        if (stat(src, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        RT_TRY(copy_file(src, dst));
    }
    return RT_OK;
}

int rt_nf4_proj_of(const char *name, int *layer) {
    static const char prefix[] = "model.layers.";
    if (strncmp(name, prefix, sizeof prefix - 1) != 0) return -1;
    const char *s = name + sizeof prefix - 1;
    if (!isdigit((unsigned char)*s)) return -1;
    long v = 0;
    while (isdigit((unsigned char)*s)) {
        v = v * 10 + (*s++ - '0');
        if (v > INT_MAX) return -1;
    }
    if (*s++ != '.') return -1;
    for (int p = 0; p < RT_PROJ_COUNT; p++) {
        size_t n = strlen(rt_proj_path(p));
        if (strncmp(s, rt_proj_path(p), n) == 0 && strcmp(s + n, ".weight") == 0) {
            *layer = (int)v;
            return p;
        }
    }
    return -1;
}

/* ---- writer -------------------------------------------------------------- */

/* Adds `base``suffix` -> data (taken: freed with o). */
static rt_status out_add_owned(rt_st_list *o, const char *base, const char *suffix, rt_st_dtype dt,
                               int ndim, const int64_t *shape, void *data) {
    RT_TRY(rt_st_list_own(o, data));
    char *name;
    if (asprintf(&name, "%s%s", base, suffix) < 0) return rt_errorf(RT_EINTERNAL, "out of memory");
    RT_TRY(rt_st_list_own(o, name));
    return rt_st_list_add(o, name, dt, ndim, shape, data);
}

/* Python's repr() of a float (shortest round-trip digits; fixed notation
 * for exponents -4..15, else d.ddde+XX), so the quant_state JSON reads as
 * json.dumps would write it. */
static void py_float_repr(double v, char *buf, size_t cap) {
    if (v == 0.0) {
        snprintf(buf, cap, "%s", signbit(v) ? "-0.0" : "0.0");
        return;
    }
    char e[48];
    for (int p = 1; p <= 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, v);
        if (strtod(e, NULL) == v) break;
    }
    bool neg = e[0] == '-';
    char dig[24];
    int nd = 0;
    const char *q = e + neg;
    for (; *q && *q != 'e'; q++)
        if (isdigit((unsigned char)*q)) dig[nd++] = *q;
    while (nd > 1 && dig[nd - 1] == '0') nd--;
    dig[nd] = 0;
    int ex = atoi(q + 1);
    size_t k = (size_t)snprintf(buf, cap, "%s", neg ? "-" : "");
    if (ex >= 16 || ex < -4) {
        k += (size_t)snprintf(buf + k, cap - k, "%c", dig[0]);
        if (nd > 1) k += (size_t)snprintf(buf + k, cap - k, ".%s", dig + 1);
        snprintf(buf + k, cap - k, "e%c%02d", ex < 0 ? '-' : '+', abs(ex));
    } else if (ex < 0) {
        k += (size_t)snprintf(buf + k, cap - k, "0.");
        for (int i = 0; i < -ex - 1; i++) k += (size_t)snprintf(buf + k, cap - k, "0");
        snprintf(buf + k, cap - k, "%s", dig);
    } else {
        for (int i = 0; i <= ex; i++) k += (size_t)snprintf(buf + k, cap - k, "%c", i < nd ? dig[i] : '0');
        snprintf(buf + k, cap - k, ".%s", nd > ex + 1 ? dig + ex + 1 : "0");
    }
}

static const char *torch_dtype_of(rt_st_dtype dt) {
    return dt == RT_ST_BF16 ? "bfloat16" : dt == RT_ST_F16 ? "float16" : "float32";
}

/* A stored floating-point tensor widened to a malloc'd f32 array. */
static rt_status to_f32(const rt_st_tensor *t, const char *src, float **out) {
    int64_t n = rt_st_numel(t);
    float *f = malloc((size_t)(n ? n : 1) * sizeof *f);
    if (!f) return rt_errorf(RT_EINTERNAL, "%s: out of memory converting %s", src, t->name);
    for (int64_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case RT_ST_F32: f[i] = ((const float *)t->data)[i]; break;
        case RT_ST_BF16: f[i] = rt_bf16_to_f32(((const uint16_t *)t->data)[i]); break;
        case RT_ST_F16: f[i] = rt_f16_to_f32(((const uint16_t *)t->data)[i]); break;
        case RT_ST_F64: f[i] = (float)((const double *)t->data)[i]; break;
        default:
            free(f);
            return rt_errorf(RT_EINPUT, "%s: tensor %s has dtype %s, expected a floating-point type",
                             src, t->name, rt_st_dtype_name(t->dtype));
        }
    }
    *out = f;
    return RT_OK;
}

/* Quantizes one projection and adds its six (or four) bitsandbytes tensors. */
static rt_status quantize_one(rt_st_list *o, const rt_st_tensor *t, const char *src, int blocksize,
                              bool dq, rt_nf4_stats *stats) {
    if (t->ndim != 2)
        return rt_errorf(RT_EINPUT, "%s: tensor %s is not 2-D", src, t->name);
    float *f = NULL;
    RT_TRY(to_f32(t, src, &f));
    int64_t n = rt_st_numel(t);
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(f[i])) {
            free(f);
            return rt_errorf(RT_EINPUT, "%s: tensor %s has a non-finite value at element %lld",
                             src, t->name, (long long)i);
        }
    }
    int64_t nbytes = rt_nf4_packed_bytes(n);
    uint8_t *packed = malloc((size_t)nbytes);
    rt_nf4_state st;
    memset(&st, 0, sizeof st);
    rt_status s = packed ? rt_nf4_quantize(f, n, blocksize, dq, packed, &st)
                         : rt_errorf(RT_EINTERNAL, "%s: out of memory quantizing %s", src, t->name);
    free(f);
    if (s != RT_OK) {
        free(packed);
        return s;
    }
    stats->n_quantized++;
    stats->quantized_params += n;
    stats->quantized_bytes += rt_nf4_storage_bytes(&st);
    stats->nominal_bits = rt_nf4_bits_per_param(&st);

    const int64_t pshape[2] = {nbytes, 1}, nb = st.n_blocks, n16 = 16, n256 = 256;
    s = out_add_owned(o, t->name, "", RT_ST_U8, 2, pshape, packed);
    if (s == RT_OK) {
        /* the state's arrays move into the output set */
        void *absmax = dq ? (void *)st.absmax_q : (void *)st.absmax;
        st.absmax_q = NULL;
        st.absmax = NULL;
        s = out_add_owned(o, t->name, ".absmax", dq ? RT_ST_U8 : RT_ST_F32, 1, &nb, absmax);
    }
    float *qmap = malloc(sizeof st.code);
    if (qmap) memcpy(qmap, st.code, sizeof st.code);
    if (s == RT_OK) s = out_add_owned(o, t->name, ".quant_map", RT_ST_F32, 1, &n16, qmap);
    else free(qmap);
    char json[512], off[40];
    int len;
    if (dq) {
        int64_t nn = (nb + st.nested_blocksize - 1) / st.nested_blocksize;
        float *nmap = malloc(sizeof st.nested_code);
        if (nmap) memcpy(nmap, st.nested_code, sizeof st.nested_code);
        void *nabs = st.nested_absmax;
        st.nested_absmax = NULL;
        if (s == RT_OK) s = out_add_owned(o, t->name, ".nested_absmax", RT_ST_F32, 1, &nn, nabs);
        else free(nabs);
        if (s == RT_OK) s = out_add_owned(o, t->name, ".nested_quant_map", RT_ST_F32, 1, &n256, nmap);
        else free(nmap);
        py_float_repr((double)st.nested_offset, off, sizeof off);
        len = snprintf(json, sizeof json,
                       "{\"quant_type\": \"nf4\", \"blocksize\": %d, \"dtype\": \"%s\", "
                       "\"shape\": [%lld, %lld], \"nested_blocksize\": %d, "
                       "\"nested_dtype\": \"float32\", \"nested_offset\": %s}",
                       blocksize, torch_dtype_of(t->dtype), (long long)t->shape[0],
                       (long long)t->shape[1], st.nested_blocksize, off);
    } else {
        len = snprintf(json, sizeof json,
                       "{\"quant_type\": \"nf4\", \"blocksize\": %d, \"dtype\": \"%s\", "
                       "\"shape\": [%lld, %lld]}",
                       blocksize, torch_dtype_of(t->dtype), (long long)t->shape[0],
                       (long long)t->shape[1]);
    }
    rt_nf4_state_free(&st);
    if (s != RT_OK) return s;
    const int64_t jlen = len;
    char *jb = malloc((size_t)len);
    if (jb) memcpy(jb, json, (size_t)len); /* raw bytes, no NUL, as pack_dict_to_tensor */
    return out_add_owned(o, t->name, QS_SUFFIX, RT_ST_U8, 1, &jlen, jb);
}

static rt_status write_text_atomic(const char *path, const char *text) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return rt_errorf(RT_EINPUT, "%s: cannot create: %s", tmp, strerror(errno));
    size_t n = strlen(text);
    bool ok = fwrite(text, 1, n, f) == n && fputc('\n', f) != EOF;
    if (fclose(f) != 0) ok = false;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return rt_errorf(RT_EINPUT, "%s: cannot write: %s", path, strerror(errno));
    }
    return RT_OK;
}

/* config.json as rt_llama_config_save writes it, plus quantization_config
 * (transformers' BitsAndBytesConfig.to_dict() for 4-bit NF4). */
static rt_status write_config(const rt_llama_config *cfg, const char *path, bool dq) {
    RT_TRY(rt_llama_config_save(cfg, path));
    FILE *f = fopen(path, "rb");
    if (!f) return rt_errorf(RT_EINPUT, "%s: cannot reopen: %s", path, strerror(errno));
    char *text = NULL;
    size_t cap = 0;
    ssize_t n = getdelim(&text, &cap, '\0', f);
    fclose(f);
    cJSON *root = n > 0 ? cJSON_ParseWithLength(text, (size_t)n) : NULL;
    free(text);
    if (!root) return rt_errorf(RT_EINTERNAL, "%s: cannot re-read the config just written", path);
    cJSON *q = cJSON_AddObjectToObject(root, "quantization_config");
    bool ok = q && cJSON_AddBoolToObject(q, "_load_in_4bit", true) &&
              cJSON_AddBoolToObject(q, "_load_in_8bit", false) &&
              cJSON_AddStringToObject(q, "bnb_4bit_compute_dtype", "float32") &&
              cJSON_AddStringToObject(q, "bnb_4bit_quant_storage", "uint8") &&
              cJSON_AddStringToObject(q, "bnb_4bit_quant_type", "nf4") &&
              cJSON_AddBoolToObject(q, "bnb_4bit_use_double_quant", dq) &&
              cJSON_AddBoolToObject(q, "llm_int8_enable_fp32_cpu_offload", false) &&
              cJSON_AddBoolToObject(q, "llm_int8_has_fp16_weight", false) &&
              cJSON_AddNullToObject(q, "llm_int8_skip_modules") &&
              /* raw "6.0": cJSON prints 6.0 as 6, and transformers'
               * BitsAndBytesConfig rejects an int threshold */
              cJSON_AddRawToObject(q, "llm_int8_threshold", "6.0") &&
              cJSON_AddBoolToObject(q, "load_in_4bit", true) &&
              cJSON_AddBoolToObject(q, "load_in_8bit", false) &&
              cJSON_AddStringToObject(q, "quant_method", "bitsandbytes");
    char *out = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!out) return rt_errorf(RT_EINTERNAL, "%s: out of memory", path);
    rt_status s = write_text_atomic(path, out);
    free(out);
    return s;
}

rt_status rt_nf4_write_hf_stats(const char *model_path, const char *out_dir, int blocksize,
                                bool double_quant, rt_nf4_stats *stats_out) {
    if (blocksize < 32 || blocksize > 4096 || (blocksize & (blocksize - 1)) != 0)
        return rt_errorf(RT_EINPUT, "quantize: blocksize %d is not a power of two in 32..4096",
                         blocksize);
    rt_weights *w;
    rt_llama_config cfg;
    RT_TRY(rt_weights_open(model_path, &w, &cfg));
    rt_nf4_stats stats = {0};
    rt_st_list o = {0};
    char *st_path = NULL, *cfg_path = NULL;
    rt_status s = RT_OK;
    for (size_t i = 0; i < rt_weights_count(w); i++) {
        const char *nm = rt_weights_get(w, i)->name;
        size_t len = strlen(nm), sl = strlen(".quant_state.bitsandbytes__");
        if (len > sl && strstr(nm, ".quant_state.bitsandbytes__")) {
            s = rt_errorf(RT_EINPUT, "%s: already quantized (tensor %s)", model_path, nm);
            goto out;
        }
    }
    if ((s = rt_weights_check_llama(w, &cfg))) goto out;
    if ((s = rt_mkdir_p(out_dir))) goto out;
    if (asprintf(&st_path, "%s/model.safetensors", out_dir) < 0 ||
        asprintf(&cfg_path, "%s/config.json", out_dir) < 0) {
        st_path = cfg_path = NULL;
        s = rt_errorf(RT_EINTERNAL, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < rt_weights_count(w) && s == RT_OK; i++) {
        const rt_st_tensor *t = rt_weights_get(w, i);
        stats.bytes_before += t->nbytes;
        int layer;
        if (rt_nf4_proj_of(t->name, &layer) >= 0 && layer < cfg.num_hidden_layers)
            s = quantize_one(&o, t, model_path, blocksize, double_quant, &stats);
        else
            s = rt_st_list_add(&o, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
    if (s != RT_OK) goto out;
    for (size_t i = 0; i < o.n; i++) stats.bytes_after += o.t[i].nbytes;
    static const char *const meta[] = {"format", "pt", NULL};
    if ((s = rt_st_write(st_path, o.t, o.n, meta))) goto out;
    if ((s = write_config(&cfg, cfg_path, double_quant))) goto out;
    s = rt_nf4_copy_side_files(model_path, out_dir);
out:
    rt_st_list_free(&o);
    free(st_path);
    free(cfg_path);
    rt_weights_close(w);
    if (s == RT_OK && stats_out) *stats_out = stats;
    return s;
}

rt_status rt_nf4_write_hf(const char *model_path, const char *out_dir, int blocksize,
                          bool double_quant) {
    return rt_nf4_write_hf_stats(model_path, out_dir, blocksize, double_quant, NULL);
}

/* ---- reader -------------------------------------------------------------- */

typedef struct {
    int blocksize;
    int64_t shape[2];
    rt_st_dtype dtype;
    bool nested;
    int nested_blocksize;
    float nested_offset;
} qs_info;

static bool json_int(const cJSON *j, double lo, double hi, int64_t *out) {
    if (!cJSON_IsNumber(j)) return false;
    double v = j->valuedouble;
    if (!(v >= lo && v <= hi) || v != floor(v)) return false;
    *out = (int64_t)v;
    return true;
}

/* Parses the JSON of weight_name's quant state `qs` (a U8 tensor). */
static rt_status parse_qs(const rt_weights *w, const char *name, const rt_st_tensor *qs, qs_info *q) {
    const char *src = rt_weights_source(w);
    if (qs->dtype != RT_ST_U8 || qs->ndim != 1)
        return rt_errorf(RT_EINPUT, "%s: tensor %s" QS_SUFFIX " must be 1-D U8 (JSON bytes)", src, name);
    cJSON *root = cJSON_ParseWithLength(qs->data, qs->nbytes);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return rt_errorf(RT_EINPUT, "%s: tensor %s" QS_SUFFIX " is not a JSON object", src, name);
    }
    rt_status s = RT_OK;
    const cJSON *qt = cJSON_GetObjectItemCaseSensitive(root, "quant_type");
    const cJSON *bs = cJSON_GetObjectItemCaseSensitive(root, "blocksize");
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(root, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(root, "shape");
    const cJSON *nbs = cJSON_GetObjectItemCaseSensitive(root, "nested_blocksize");
    const cJSON *noff = cJSON_GetObjectItemCaseSensitive(root, "nested_offset");
    int64_t v;
    memset(q, 0, sizeof *q);
#define QS_FAIL(...)                                                                               \
    do {                                                                                           \
        s = rt_errorf(RT_EINPUT, __VA_ARGS__);                                                     \
        goto out;                                                                                  \
    } while (0)
    if (!cJSON_IsString(qt) || strcmp(qt->valuestring, "nf4") != 0)
        QS_FAIL("%s: tensor %s" QS_SUFFIX ": quant_type must be \"nf4\"", src, name);
    if (!json_int(bs, 32, 4096, &v) || (v & (v - 1)) != 0)
        QS_FAIL("%s: tensor %s" QS_SUFFIX ": blocksize must be a power of two in 32..4096", src, name);
    q->blocksize = (int)v;
    if (!cJSON_IsString(dt)) QS_FAIL("%s: tensor %s" QS_SUFFIX ": missing \"dtype\"", src, name);
    if (!strcmp(dt->valuestring, "float32")) q->dtype = RT_ST_F32;
    else if (!strcmp(dt->valuestring, "bfloat16")) q->dtype = RT_ST_BF16;
    else if (!strcmp(dt->valuestring, "float16")) q->dtype = RT_ST_F16;
    else QS_FAIL("%s: tensor %s" QS_SUFFIX ": dtype \"%s\" is not float32, bfloat16 or float16",
                 src, name, dt->valuestring);
    if (!cJSON_IsArray(sh) || cJSON_GetArraySize(sh) != 2 ||
        !json_int(cJSON_GetArrayItem(sh, 0), 1, 9.0e15, &q->shape[0]) ||
        !json_int(cJSON_GetArrayItem(sh, 1), 1, 9.0e15, &q->shape[1]) ||
        q->shape[0] > INT64_MAX / q->shape[1])
        QS_FAIL("%s: tensor %s" QS_SUFFIX ": shape must be [out, in] (positive integers)", src, name);
    q->nested = nbs || noff;
    if (q->nested) {
        if (!json_int(nbs, 1, 1 << 20, &v))
            QS_FAIL("%s: tensor %s" QS_SUFFIX ": nested_blocksize must be a positive integer", src, name);
        q->nested_blocksize = (int)v;
        if (!cJSON_IsNumber(noff) || !isfinite(noff->valuedouble))
            QS_FAIL("%s: tensor %s" QS_SUFFIX ": nested_offset must be a finite number", src, name);
        q->nested_offset = (float)noff->valuedouble;
    }
#undef QS_FAIL
out:
    cJSON_Delete(root);
    return s;
}

static const rt_st_tensor *find_qs(const rt_weights *w, const char *name, rt_status *s) {
    char key[512];
    *s = RT_OK;
    snprintf(key, sizeof key, "%s" QS_SUFFIX, name);
    const rt_st_tensor *qs = rt_weights_find(w, key);
    if (qs) return qs;
    snprintf(key, sizeof key, "%s.quant_state.bitsandbytes__fp4", name);
    if (rt_weights_find(w, key))
        *s = rt_errorf(RT_EINPUT, "%s: tensor %s is FP4-quantized; retort reads NF4 only",
                       rt_weights_source(w), name);
    return NULL;
}

rt_status rt_nf4_weight_dtype(const rt_weights *w, const char *weight_name, rt_st_dtype *dt) {
    rt_status s;
    const rt_st_tensor *qs = find_qs(w, weight_name, &s);
    RT_TRY(s);
    if (!qs)
        return rt_errorf(RT_EINPUT, "%s: tensor %s has no NF4 quant state", rt_weights_source(w),
                         weight_name);
    qs_info q;
    RT_TRY(parse_qs(w, weight_name, qs, &q));
    *dt = q.dtype;
    return RT_OK;
}

/* The tensor `name``suffix` with this dtype and 1-D length (or NULL + error). */
static const rt_st_tensor *need(const rt_weights *w, const char *name, const char *suffix,
                                rt_st_dtype dt, int64_t len, rt_status *s) {
    char key[512];
    snprintf(key, sizeof key, "%s%s", name, suffix);
    const rt_st_tensor *t = rt_weights_find(w, key);
    if (!t) {
        *s = rt_errorf(RT_EINPUT, "%s: missing tensor %s (NF4 quant state of %s)",
                       rt_weights_source(w), key, name);
        return NULL;
    }
    if (t->dtype != dt || t->ndim != 1 || t->shape[0] != len) {
        *s = rt_errorf(RT_EINPUT, "%s: tensor %s must be %s [%lld] for this quant state",
                       rt_weights_source(w), key, rt_st_dtype_name(dt), (long long)len);
        return NULL;
    }
    return t;
}

static void *dup_bytes(const void *p, size_t n) {
    void *d = malloc(n ? n : 1);
    if (d && n) memcpy(d, p, n);
    return d;
}

rt_status rt_nf4_from_weights(const rt_weights *w, const char *weight_name,
                              const int64_t expect_shape[2], uint8_t **packed, rt_nf4_state *st,
                              bool *found) {
    *packed = NULL;
    memset(st, 0, sizeof *st);
    *found = false;
    const char *src = rt_weights_source(w);
    rt_status s;
    const rt_st_tensor *qs = find_qs(w, weight_name, &s);
    RT_TRY(s);
    if (!qs) return RT_OK;
    *found = true;
    qs_info q;
    RT_TRY(parse_qs(w, weight_name, qs, &q));
    if (expect_shape && (q.shape[0] != expect_shape[0] || q.shape[1] != expect_shape[1]))
        return rt_errorf(RT_EINPUT, "%s: tensor %s: quant_state shape is [%lld,%lld], expected [%lld,%lld]",
                         src, weight_name, (long long)q.shape[0], (long long)q.shape[1],
                         (long long)expect_shape[0], (long long)expect_shape[1]);
    int64_t n = q.shape[0] * q.shape[1], nb = (n + q.blocksize - 1) / q.blocksize;
    int64_t nbytes = rt_nf4_packed_bytes(n);
    const rt_st_tensor *pk = rt_weights_find(w, weight_name);
    if (!pk) return rt_errorf(RT_EINPUT, "%s: missing tensor %s (NF4 packed codes)", src, weight_name);
    if (pk->dtype != RT_ST_U8 || rt_st_numel(pk) != nbytes || pk->ndim < 1 || pk->ndim > 2 ||
        (pk->ndim == 2 && pk->shape[1] != 1))
        return rt_errorf(RT_EINPUT, "%s: tensor %s must be U8 [%lld, 1] (packed NF4 of shape [%lld,%lld])",
                         src, weight_name, (long long)nbytes, (long long)q.shape[0],
                         (long long)q.shape[1]);
    char key[512];
    snprintf(key, sizeof key, "%s.nested_absmax", weight_name);
    if ((rt_weights_find(w, key) != NULL) != q.nested)
        return rt_errorf(RT_EINPUT, "%s: tensor %s: double quantization is half present (%s the "
                         "nested_* quant_state fields but %s %s)", src, weight_name,
                         q.nested ? "has" : "lacks", q.nested ? "no" : "a", key);
    const rt_st_tensor *absmax = need(w, weight_name, ".absmax", q.nested ? RT_ST_U8 : RT_ST_F32, nb, &s);
    const rt_st_tensor *qmap = absmax ? need(w, weight_name, ".quant_map", RT_ST_F32, 16, &s) : NULL;
    if (!qmap) return s;
    const rt_st_tensor *nabs = NULL, *nmap = NULL;
    int64_t nn = q.nested ? (nb + q.nested_blocksize - 1) / q.nested_blocksize : 0;
    if (q.nested) {
        nabs = need(w, weight_name, ".nested_absmax", RT_ST_F32, nn, &s);
        nmap = nabs ? need(w, weight_name, ".nested_quant_map", RT_ST_F32, 256, &s) : NULL;
        if (!nmap) return s;
    }
    st->n = n;
    st->blocksize = q.blocksize;
    st->n_blocks = nb;
    st->double_quant = q.nested;
    memcpy(st->code, qmap->data, sizeof st->code);
    bool ok;
    if (q.nested) {
        st->absmax_q = dup_bytes(absmax->data, (size_t)nb);
        st->nested_absmax = dup_bytes(nabs->data, (size_t)nn * sizeof(float));
        st->nested_offset = q.nested_offset;
        st->nested_blocksize = q.nested_blocksize;
        memcpy(st->nested_code, nmap->data, sizeof st->nested_code);
        ok = st->absmax_q && st->nested_absmax;
    } else {
        st->absmax = dup_bytes(absmax->data, (size_t)nb * sizeof(float));
        ok = st->absmax != NULL;
    }
    *packed = ok ? dup_bytes(pk->data, (size_t)nbytes) : NULL;
    if (!*packed) {
        rt_nf4_state_free(st);
        return rt_errorf(RT_EINTERNAL, "%s: out of memory reading %s", src, weight_name);
    }
    return RT_OK;
}

rt_status rt_nf4_load_tensor(const rt_weights *w, const char *name, const int64_t shape[2],
                             bool keep_nf4, rt_device dev, rt_tensor **out, bool *found) {
    uint8_t *packed;
    rt_nf4_state st;
    RT_TRY(rt_nf4_from_weights(w, name, shape, &packed, &st, found));
    if (!*found) return RT_OK;
    rt_status s = RT_OK;
    rt_tensor *t = NULL;
    if (keep_nf4) {
        rt_nf4_state *hs = malloc(sizeof *hs);
        if (!hs || !(t = rt_tensor_new(RT_CPU, RT_NF4, 2, shape)))
            s = rt_errorf(RT_EINTERNAL, "out of memory loading %s", name);
        if (s == RT_OK) {
            memcpy(t->data, packed, (size_t)rt_nf4_packed_bytes(st.n));
            *hs = st; /* the tensor takes the state's arrays */
            memset(&st, 0, sizeof st);
            t->nf4 = hs;
            s = rt_nf4_tensor_to(&t, dev);
            if (s != RT_OK) {
                rt_nf4_state_free(t->nf4);
                free(t->nf4);
            }
        } else {
            free(hs);
        }
    } else {
        t = rt_tensor_new(dev, RT_F32, 2, shape);
        float *host = t && dev != RT_CPU ? malloc((size_t)st.n * sizeof *host) : NULL;
        if (!t || (dev != RT_CPU && !host)) {
            s = rt_errorf(RT_EINTERNAL, "out of memory loading %s", name);
        } else {
            rt_nf4_dequantize(packed, &st, dev == RT_CPU ? t->data : host);
            if (dev != RT_CPU) rt_kernels_for(dev)->upload(t->data, host, (size_t)st.n * sizeof *host);
        }
        free(host);
    }
    free(packed);
    rt_nf4_state_free(&st);
    if (s != RT_OK) {
        rt_tensor_free(t);
        return s;
    }
    *out = t;
    return RT_OK;
}

rt_status rt_nf4_tensor_to(rt_tensor **t, rt_device dev) {
    rt_tensor *h = *t;
    if (dev == h->device) return RT_OK;
    if (h->device != RT_CPU || h->dtype != RT_NF4 || !h->nf4)
        return rt_errorf(RT_EINTERNAL, "rt_nf4_tensor_to: not an NF4 tensor on the CPU");
    rt_tensor *d = rt_tensor_new(dev, RT_NF4, h->ndim, h->shape);
    if (!d) return RT_EINTERNAL;
    rt_kernels_for(dev)->upload(d->data, h->data, rt_nbytes(h));
    if (rt_fault_status() != RT_OK) {
        rt_tensor_free(d);
        return rt_errorf(RT_EINTERNAL, "%s", rt_fault_message());
    }
    d->nf4 = h->nf4;
    d->name = h->name;
    rt_tensor_free(h); /* the codes only: the state now belongs to d */
    *t = d;
    return RT_OK;
}
