#include "train/model/adapter.h"
#include "train/formats/fs.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "train/formats/safetensors.h"

/* The shortest decimal that reads back as the same float: what a recipe's
 * "0.05" was, not 0.05000000074505806 (the float widened to double). */
static void float_text(float v, char *buf, size_t cap) {
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, cap, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v) return;
    }
}

rt_status rt_lora_targets_parse(const char *const *names, int n, unsigned *out) {
    unsigned mask = 0;
    for (int i = 0; i < n; i++) {
        if (!strcmp(names[i], "all-linear")) {
            mask |= (1u << RT_PROJ_COUNT) - 1;
            continue;
        }
        int p = rt_proj_parse(names[i]);
        if (p < 0)
            return rt_errorf(RT_EINPUT,
                             "unknown LoRA target module '%s' (expected q_proj, k_proj, v_proj, "
                             "o_proj, gate_proj, up_proj, down_proj or all-linear)",
                             names[i]);
        mask |= 1u << p;
    }
    *out = mask;
    return RT_OK;
}

rt_status rt_adapter_save(const rt_llama *m, const char *dir, const char *base_model) {
    RT_TRY(rt_mkdir_p(dir));
    const rt_params *P = &m->params;
    if (P->count == 0) return rt_errorf(RT_EINTERNAL, "the model has no LoRA adapters to save");

    /* Tensors: copied to host (the parameters may live on a GPU). */
    rt_st_tensor *ts = calloc((size_t)P->count, sizeof *ts);
    float *host = malloc((size_t)P->numel_used * sizeof *host);
    if (!ts || !host) {
        free(ts);
        free(host);
        return rt_errorf(RT_EINTERNAL, "out of memory saving the adapter");
    }
    rt_kernels_for(P->device)->download(host, P->data, (size_t)P->numel_used * sizeof *host);
    for (int i = 0; i < P->count; i++) {
        const rt_tensor *t = P->tensors[i];
        ts[i].name = t->name;
        ts[i].dtype = RT_ST_F32;
        ts[i].ndim = t->ndim;
        for (int d = 0; d < t->ndim; d++) ts[i].shape[d] = t->shape[d];
        ts[i].data = host + P->offsets[i];
        ts[i].nbytes = (size_t)rt_numel(t) * sizeof(float);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    const char *meta[] = {"format", "pt", NULL};
    rt_status s = rt_st_write(path, ts, (size_t)P->count, meta);
    free(ts);
    free(host);
    RT_TRY(s);

    cJSON *c = cJSON_CreateObject();
    cJSON *mods = cJSON_CreateArray();
    for (int p = 0; p < RT_PROJ_COUNT; p++)
        if (m->opts.lora_targets & (1u << p)) cJSON_AddItemToArray(mods, cJSON_CreateString(rt_proj_name(p)));
    cJSON_AddStringToObject(c, "peft_type", "LORA");
    cJSON_AddStringToObject(c, "task_type", "CAUSAL_LM");
    /* PEFT resolves base_model_name_or_path as a local directory or a hub id:
     * an existing path is written absolute, anything else as given. */
    char *abs = base_model ? realpath(base_model, NULL) : NULL;
    cJSON_AddStringToObject(c, "base_model_name_or_path", abs ? abs : base_model ? base_model : "");
    free(abs);
    cJSON_AddNullToObject(c, "revision");
    cJSON_AddNumberToObject(c, "r", m->opts.lora_r);
    char num[32];
    float_text(m->opts.lora_alpha, num, sizeof num);
    cJSON_AddRawToObject(c, "lora_alpha", num);
    float_text(m->opts.lora_dropout, num, sizeof num);
    cJSON_AddRawToObject(c, "lora_dropout", num);
    cJSON_AddItemToObject(c, "target_modules", mods);
    cJSON_AddBoolToObject(c, "use_rslora", m->opts.use_rslora);
    cJSON_AddStringToObject(c, "bias", "none");
    cJSON_AddBoolToObject(c, "fan_in_fan_out", false);
    cJSON_AddBoolToObject(c, "inference_mode", true);
    cJSON_AddBoolToObject(c, "init_lora_weights", true);
    cJSON_AddNullToObject(c, "modules_to_save");
    cJSON_AddBoolToObject(c, "use_dora", false);
    cJSON_AddNullToObject(c, "layers_to_transform");
    cJSON_AddObjectToObject(c, "rank_pattern");
    cJSON_AddObjectToObject(c, "alpha_pattern");
    cJSON_AddBoolToObject(c, "lora_bias", false);
    cJSON_AddNullToObject(c, "layers_pattern");
    cJSON_AddNullToObject(c, "exclude_modules");
    cJSON_AddNullToObject(c, "target_parameters");
    /* The PEFT release whose adapter_config.json keys and value forms these
     * are (LoraConfig of peft 0.21.2, the pin of tests/interop, whose
     * test_peft.py compares them with a config PEFT saves); PEFT writes its
     * __version__ here and keeps a loaded file's value as it is. */
    cJSON_AddStringToObject(c, "peft_version", "0.21.2");
    char *text = cJSON_Print(c);
    cJSON_Delete(c);
    if (!text) return rt_errorf(RT_EINTERNAL, "out of memory");
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    s = rt_write_file_atomic(path, text, strlen(text));
    free(text);
    return s;
}

static bool nonempty(const cJSON *v) {
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v)) return false;
    if (cJSON_IsArray(v) || cJSON_IsObject(v)) return v->child != NULL;
    if (cJSON_IsString(v)) return v->valuestring[0] != '\0';
    return true;
}

/* The first PEFT LoRA feature in the config that retort lacks, or NULL. */
static const char *unsupported_feature(const cJSON *c) {
    const cJSON *bias = cJSON_GetObjectItem(c, "bias");
    if (nonempty(cJSON_GetObjectItem(c, "use_dora"))) return "DoRA (use_dora)";
    if (nonempty(cJSON_GetObjectItem(c, "rank_pattern"))) return "per-module ranks (rank_pattern)";
    if (nonempty(cJSON_GetObjectItem(c, "alpha_pattern"))) return "per-module alphas (alpha_pattern)";
    if (nonempty(cJSON_GetObjectItem(c, "layers_to_transform")))
        return "LoRA on some layers only (layers_to_transform)";
    if (nonempty(cJSON_GetObjectItem(c, "layers_pattern"))) return "layers_pattern";
    if (nonempty(cJSON_GetObjectItem(c, "modules_to_save"))) return "fully trained modules (modules_to_save)";
    if (cJSON_IsString(bias) && strcmp(bias->valuestring, "none") != 0) return "trained biases (bias)";
    if (nonempty(cJSON_GetObjectItem(c, "fan_in_fan_out"))) return "transposed weights (fan_in_fan_out)";
    if (nonempty(cJSON_GetObjectItem(c, "lora_bias"))) return "a LoRA bias (lora_bias)";
    if (nonempty(cJSON_GetObjectItem(c, "target_parameters"))) return "target_parameters";
    return NULL;
}

static rt_status parse_config(const char *path, int *r, float *alpha, bool *rslora, unsigned *targets) {
    char *text;
    RT_TRY(rt_read_file_max(path, "adapter config", RT_CONFIG_FILE_MAX, &text, NULL));
    cJSON *c = cJSON_Parse(text);
    free(text);
    if (!c) return rt_errorf(RT_EINPUT, "%s: not valid JSON", path);
    rt_status s = RT_OK;
    const cJSON *jr = cJSON_GetObjectItem(c, "r"), *ja = cJSON_GetObjectItem(c, "lora_alpha");
    const cJSON *jt = cJSON_GetObjectItem(c, "target_modules"), *jp = cJSON_GetObjectItem(c, "peft_type");
    const cJSON *js = cJSON_GetObjectItem(c, "use_rslora");
    const char *feature = unsupported_feature(c);
    if (jp && (!cJSON_IsString(jp) || strcmp(jp->valuestring, "LORA")))
        s = rt_errorf(RT_EINPUT, "%s: peft_type must be \"LORA\"", path);
    else if (feature)
        s = rt_errorf(RT_EINPUT, "%s: the adapter uses %s, which retort does not implement (loading it "
                      "without would give a different model)", path, feature);
    else if (!cJSON_IsNumber(jr) || !(jr->valuedouble >= 1 && jr->valuedouble <= RT_LORA_MAX_R) ||
             jr->valuedouble != (double)(int)jr->valuedouble)
        s = rt_errorf(RT_EINPUT, "%s: missing or invalid \"r\" (an integer 1..%d)", path, RT_LORA_MAX_R);
    else if (!cJSON_IsNumber(ja) || !isfinite(ja->valuedouble) || !(ja->valuedouble > 0) ||
             !isfinite((float)ja->valuedouble))
        s = rt_errorf(RT_EINPUT, "%s: missing or invalid \"lora_alpha\" (a finite number > 0)", path);
    else if (!cJSON_IsArray(jt) && !cJSON_IsString(jt))
        s = rt_errorf(RT_EINPUT, "%s: missing \"target_modules\"", path);
    if (s == RT_OK) {
        *r = jr->valueint;
        *alpha = (float)ja->valuedouble;
        *rslora = cJSON_IsTrue(js);
        const char *names[64];
        int n = 0;
        if (cJSON_IsString(jt)) names[n++] = jt->valuestring;
        const cJSON *list = cJSON_IsArray(jt) ? jt : NULL, *e;
        cJSON_ArrayForEach(e, list) {
            if (n < 64 && cJSON_IsString(e)) names[n++] = e->valuestring;
        }
        s = rt_lora_targets_parse(names, n, targets);
        if (s != RT_OK) s = rt_errorf(RT_EINPUT, "%s: %s", path, rt_error_message());
    }
    cJSON_Delete(c);
    return s;
}

rt_status rt_adapter_apply(rt_llama *m, const char *dir) {
    char path[4096];
    int r = 0;
    float alpha = 0;
    bool rslora = false;
    unsigned targets = 0;
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    RT_TRY(parse_config(path, &r, &alpha, &rslora, &targets));
    if (rt_llama_add_lora(m, r, alpha, 0.0f, rslora, targets, 0) != RT_OK)
        return rt_errorf(RT_EINPUT, "%s: %s", path, rt_error_message());

    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    rt_safetensors *st;
    RT_TRY(rt_st_open(path, &st));
    rt_status s = RT_OK;
    const rt_kernels *k = rt_kernels_for(m->params.device);
    for (int i = 0; i < m->params.count && s == RT_OK; i++) {
        rt_tensor *t = m->params.tensors[i];
        const rt_st_tensor *x = rt_st_find(st, t->name);
        if (!x) {
            s = rt_errorf(RT_EINPUT, "%s: missing tensor %s", path, t->name);
            break;
        }
        bool shape_ok = x->ndim == t->ndim;
        for (int d = 0; shape_ok && d < t->ndim; d++) shape_ok = x->shape[d] == t->shape[d];
        int dt = x->dtype == RT_ST_F32 ? RT_F32 : x->dtype == RT_ST_BF16 ? RT_BF16
                 : x->dtype == RT_ST_F16 ? RT_F16 : -1;
        if (!shape_ok || dt < 0) {
            s = rt_errorf(RT_EINPUT, "%s: tensor %s has the wrong shape or dtype for this model",
                          path, t->name);
            break;
        }
        int64_t n = rt_numel(t);
        float *tmp = malloc((size_t)n * sizeof *tmp);
        if (!tmp) {
            s = rt_errorf(RT_EINTERNAL, "out of memory");
            break;
        }
        rt_kernels_cpu.convert(n, x->data, dt, tmp, RT_F32);
        if (!rt_kernels_cpu.all_finite(n, tmp)) {
            free(tmp);
            s = rt_errorf(RT_EINPUT, "%s: tensor %s holds non-finite values (NaN or Inf)", path, t->name);
            break;
        }
        k->upload(t->data, tmp, (size_t)n * sizeof *tmp);
        free(tmp);
    }
    rt_st_close(st);
    return s;
}
