/* retort — opening a model file of any supported kind into a weight set
 * (HF directories and sharded safetensors here, llama2.c .bin through
 * llama2c.h), and writing a set as an HF directory (see model_file.h). */
#include "train/formats/gguf_model.h"
#include "train/formats/model_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "train/formats/fs.h"
#include "train/formats/llama2c.h"

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
        while (f < rt_weights_file_count(w) && strcmp(rt_st_path(rt_weights_file(w, f)), shard) != 0) f++;
        if (f == rt_weights_file_count(w)) {
            rt_safetensors *st;
            s = rt_st_open(shard, &st);
            if (!s) s = rt_weights_add_file(w, st);
        }
        if (!s) {
            const rt_st_tensor *t = rt_st_find(rt_weights_file(w, f), e->string);
            if (!t) s = rt_errorf(RT_EINPUT, "%s: weight_map puts tensor %s in %s, which does not "
                                  "contain it", index, e->string, shard);
        }
        free(shard);
        if (s) goto out;
    }
    if (rt_weights_file_count(w) == 0) s = rt_errorf(RT_EINPUT, "%s: weight_map is empty", index);
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
    if (S_ISREG(sb.st_mode) && rt_is_gguf(path)) return rt_gguf_weights_open(path, out, cfg);
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
    rt_st_tensor *ts = calloc(rt_weights_count(w) ? rt_weights_count(w) : 1, sizeof *ts);
    void **conv = calloc(rt_weights_count(w) ? rt_weights_count(w) : 1, sizeof *conv);
    char *st_path = NULL, *cfg_path = NULL;
    rt_status s = RT_OK;
    if (!ts || !conv || asprintf(&st_path, "%s/model.safetensors", dir) < 0 ||
        asprintf(&cfg_path, "%s/config.json", dir) < 0) {
        s = rt_errorf(RT_EINTERNAL, "%s: out of memory", dir);
        goto out;
    }
    for (size_t i = 0; i < rt_weights_count(w); i++) {
        const rt_st_tensor *t = rt_weights_get(w, i);
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
    if ((s = rt_st_write(st_path, ts, rt_weights_count(w), meta))) goto out;
    rt_llama_config c = *cfg;
    snprintf(c.torch_dtype, sizeof c.torch_dtype, "float32");
    s = rt_llama_config_save(&c, cfg_path);
out:
    if (conv)
        for (size_t i = 0; i < rt_weights_count(w); i++) free(conv[i]);
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
