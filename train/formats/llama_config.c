/* retort — HF config.json for Llama-family models (see llama_config.h). */
#include "train/formats/llama_config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "train/formats/fs.h"

/* An integer-valued JSON number within int range. */
static int cfg_as_int(const cJSON *j, int *out) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= -2147483648.0 && d <= 2147483647.0) || d != floor(d)) return 0;
    *out = (int)d;
    return 1;
}

static rt_status cfg_int(const char *path, const cJSON *root, const char *key, int required,
                         int def, int *out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!j || (cJSON_IsNull(j) && !required)) {
        if (required) return rt_errorf(RT_EINPUT, "%s: missing required key \"%s\"", path, key);
        *out = def;
        return RT_OK;
    }
    if (!cfg_as_int(j, out))
        return rt_errorf(RT_EINPUT, "%s: key \"%s\" must be an integer", path, key);
    return RT_OK;
}

static rt_status cfg_float(const char *path, const cJSON *root, const char *key, float def,
                           float *out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!j || cJSON_IsNull(j)) { *out = def; return RT_OK; }
    if (!cJSON_IsNumber(j) || !(j->valuedouble > 0))
        return rt_errorf(RT_EINPUT, "%s: key \"%s\" must be a positive number", path, key);
    *out = (float)j->valuedouble;
    return RT_OK;
}

static rt_status cfg_bool(const char *path, const cJSON *root, const char *key, bool def,
                          bool *out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!j || cJSON_IsNull(j)) { *out = def; return RT_OK; }
    if (!cJSON_IsBool(j)) return rt_errorf(RT_EINPUT, "%s: key \"%s\" must be true or false", path, key);
    *out = cJSON_IsTrue(j);
    return RT_OK;
}

/* bos/eos: an integer, null (-1) or a list of integers (the first). */
static rt_status cfg_token(const char *path, const cJSON *root, const char *key, int def, int *out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!j) { *out = def; return RT_OK; }
    if (cJSON_IsNull(j)) { *out = -1; return RT_OK; }
    if (cJSON_IsArray(j)) j = cJSON_GetArrayItem(j, 0);
    if (!cfg_as_int(j, out))
        return rt_errorf(RT_EINPUT, "%s: key \"%s\" must be a token id or a list of them", path, key);
    return RT_OK;
}

typedef enum { ARCH_LLAMA, ARCH_MISTRAL, ARCH_QWEN2, ARCH_GEMMA3 } cfg_arch;

static rt_status cfg_arch_of(const char *path, const cJSON *root, cfg_arch *arch) {
    static const struct { const char *type, *cls; cfg_arch a; } known[] = {
        {"llama", "LlamaForCausalLM", ARCH_LLAMA},
        {"mistral", "MistralForCausalLM", ARCH_MISTRAL},
        {"qwen2", "Qwen2ForCausalLM", ARCH_QWEN2},
        {"gemma3_text", "Gemma3ForCausalLM", ARCH_GEMMA3},
    };
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    const cJSON *ar = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const char *name = NULL;
    int by_type = 0;
    if (cJSON_IsString(mt)) {
        name = mt->valuestring;
        by_type = 1;
    } else if (cJSON_IsArray(ar) && cJSON_IsString(cJSON_GetArrayItem(ar, 0))) {
        name = cJSON_GetArrayItem(ar, 0)->valuestring;
    } else {
        return rt_errorf(RT_EINPUT, "%s: missing required key \"model_type\" (or \"architectures\")", path);
    }
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(name, by_type ? known[i].type : known[i].cls) == 0) {
            *arch = known[i].a;
            return RT_OK;
        }
    return rt_errorf(RT_EINPUT, "%s: unsupported %s \"%s\" (retort supports llama, mistral, qwen2, gemma3_text)",
                     path, by_type ? "model_type" : "architecture", name);
}

/* rope_scaling / rope_parameters may only describe plain RoPE. */
static rt_status cfg_rope(const char *path, const cJSON *root, float *theta) {
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
    const char *keys[2] = {"rope_scaling", "rope_parameters"};
    const cJSON *objs[2] = {rs, rp};
    for (int k = 0; k < 2; k++) {
        const cJSON *o = objs[k];
        if (!o || cJSON_IsNull(o)) continue;
        const cJSON *t = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, "rope_type") : NULL;
        if (!t && cJSON_IsObject(o)) t = cJSON_GetObjectItemCaseSensitive(o, "type");
        if (!cJSON_IsString(t) || strcmp(t->valuestring, "default") != 0)
            return rt_errorf(RT_EINPUT, "%s: \"%s\" of type \"%s\" is not supported (retort "
                             "implements plain RoPE only; %s must be null)", path, keys[k],
                             cJSON_IsString(t) ? t->valuestring : "?", keys[k]);
        const cJSON *th = cJSON_GetObjectItemCaseSensitive(o, "rope_theta");
        if (th) RT_TRY(cfg_float(path, o, "rope_theta", *theta, theta));
    }
    return RT_OK;
}

rt_status rt_llama_config_check(const rt_llama_config *c, const char *what) {
    const struct { const char *k; int v; } pos[] = {
        {"hidden_size", c->hidden_size}, {"intermediate_size", c->intermediate_size},
        {"num_hidden_layers", c->num_hidden_layers}, {"num_attention_heads", c->num_attention_heads},
        {"num_key_value_heads", c->num_key_value_heads}, {"vocab_size", c->vocab_size},
        {"max_position_embeddings", c->max_position_embeddings},
    };
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v <= 0)
            return rt_errorf(RT_EINPUT, "%s: %s must be positive (got %d)", what, pos[i].k, pos[i].v);
    if (c->head_dim < 0 || (c->head_dim == 0 && c->hidden_size % c->num_attention_heads) ||
        rt_llama_head_dim(c) % 2)
        return rt_errorf(RT_EINPUT, "%s: hidden_size %d is not num_attention_heads %d times an even "
                         "head_dim (or head_dim %d is odd)", what, c->hidden_size,
                         c->num_attention_heads, c->head_dim);
    if (c->arch == RT_ARCH_GEMMA3 &&
        (c->sliding_window < 1 || c->sliding_window_pattern < 1 || !(c->rope_local_base_freq > 0) ||
         !(c->query_pre_attn_scalar > 0)))
        return rt_errorf(RT_EINPUT, "%s: gemma3 needs sliding_window >= 1, a layer pattern >= 1 and "
                         "positive rope_local_base_freq and query_pre_attn_scalar", what);
    if (c->num_attention_heads % c->num_key_value_heads)
        return rt_errorf(RT_EINPUT, "%s: num_attention_heads %d is not a multiple of "
                         "num_key_value_heads %d", what, c->num_attention_heads, c->num_key_value_heads);
    if (!(c->rms_norm_eps > 0) || !(c->rope_theta > 0))
        return rt_errorf(RT_EINPUT, "%s: rms_norm_eps and rope_theta must be positive", what);
    return RT_OK;
}

int rt_llama_head_dim(const rt_llama_config *c) {
    return c->head_dim > 0 ? c->head_dim : c->hidden_size / c->num_attention_heads;
}

bool rt_llama_layer_is_local(const rt_llama_config *c, int li) {
    return c->arch == RT_ARCH_GEMMA3 && (li + 1) % c->sliding_window_pattern != 0;
}

/* A key that must be absent or null (a feature retort does not implement). */
static rt_status cfg_null(const char *path, const cJSON *root, const char *key) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (j && !cJSON_IsNull(j) && !cJSON_IsFalse(j))
        return rt_errorf(RT_EINPUT, "%s: \"%s\" is not supported (must be null)", path, key);
    return RT_OK;
}

/* Gemma3TextConfig's keys (transformers/models/gemma3/configuration_gemma3.py). */
static rt_status cfg_gemma3(const char *path, const cJSON *root, rt_llama_config *c) {
    c->arch = RT_ARCH_GEMMA3;
    RT_TRY(cfg_int(path, root, "max_position_embeddings", 0, 131072, &c->max_position_embeddings));
    RT_TRY(cfg_token(path, root, "bos_token_id", 2, &c->bos_token_id));
    RT_TRY(cfg_token(path, root, "eos_token_id", 1, &c->eos_token_id));
    RT_TRY(cfg_float(path, root, "rms_norm_eps", 1e-6f, &c->rms_norm_eps));
    RT_TRY(cfg_bool(path, root, "tie_word_embeddings", true, &c->tie_word_embeddings));
    RT_TRY(cfg_bool(path, root, "attention_bias", false, &c->attention_bias));
    RT_TRY(cfg_int(path, root, "head_dim", 0, 256, &c->head_dim));
    int qpas = 256;
    RT_TRY(cfg_int(path, root, "query_pre_attn_scalar", 0, 256, &qpas));
    c->query_pre_attn_scalar = (float)qpas;
    RT_TRY(cfg_int(path, root, "sliding_window", 0, 4096, &c->sliding_window));
    RT_TRY(cfg_int(path, root, "sliding_window_pattern", 0, 6, &c->sliding_window_pattern));
    RT_TRY(cfg_float(path, root, "rope_theta", 1e6f, &c->rope_theta));
    RT_TRY(cfg_float(path, root, "rope_local_base_freq", 10000.0f, &c->rope_local_base_freq));
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
    if (rp && !cJSON_IsNull(rp)) {
        const char *kinds[2] = {"full_attention", "sliding_attention"};
        float *theta[2] = {&c->rope_theta, &c->rope_local_base_freq};
        for (int i = 0; i < 2; i++) {
            const cJSON *o = cJSON_GetObjectItemCaseSensitive(rp, kinds[i]);
            if (!o || cJSON_IsNull(o)) continue;
            const cJSON *t = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, "rope_type") : NULL;
            if (!cJSON_IsObject(o) || (t && !(cJSON_IsString(t) && !strcmp(t->valuestring, "default"))))
                return rt_errorf(RT_EINPUT, "%s: rope_parameters.%s must be plain RoPE (rope_type "
                                 "\"default\")", path, kinds[i]);
            RT_TRY(cfg_float(path, o, "rope_theta", *theta[i], theta[i]));
        }
    }
    RT_TRY(cfg_null(path, root, "rope_scaling"));
    RT_TRY(cfg_null(path, root, "final_logit_softcapping"));
    RT_TRY(cfg_null(path, root, "attn_logit_softcapping"));
    RT_TRY(cfg_null(path, root, "use_bidirectional_attention"));
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_activation");
    if (act && !(cJSON_IsString(act) && strcmp(act->valuestring, "gelu_pytorch_tanh") == 0))
        return rt_errorf(RT_EINPUT, "%s: hidden_activation \"%s\" is not supported (only "
                         "gelu_pytorch_tanh)", path, cJSON_IsString(act) ? act->valuestring : "?");
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(root, "layer_types");
    if (lt && !cJSON_IsNull(lt)) {
        if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != c->num_hidden_layers)
            return rt_errorf(RT_EINPUT, "%s: \"layer_types\" must list num_hidden_layers %d entries",
                             path, c->num_hidden_layers);
        /* The pattern is the position of the first global layer (none: all local). */
        c->sliding_window_pattern = c->num_hidden_layers + 1;
        for (int i = c->num_hidden_layers - 1; i >= 0; i--) {
            const cJSON *e = cJSON_GetArrayItem(lt, i);
            if (cJSON_IsString(e) && !strcmp(e->valuestring, "full_attention")) c->sliding_window_pattern = i + 1;
        }
        for (int i = 0; i < c->num_hidden_layers; i++) {
            const cJSON *e = cJSON_GetArrayItem(lt, i);
            const char *want = rt_llama_layer_is_local(c, i) ? "sliding_attention" : "full_attention";
            if (!cJSON_IsString(e) || strcmp(e->valuestring, want) != 0)
                return rt_errorf(RT_EINPUT, "%s: layer_types[%d] must be \"%s\" (retort implements "
                                 "every n-th layer global, here n = %d)", path, i, want, c->sliding_window_pattern);
        }
    }
    return RT_OK;
}

/* torch_dtype (or transformers 5's dtype), informative; float32 if absent. */
static void cfg_dtype(const cJSON *root, rt_llama_config *c) {
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(root, "torch_dtype");
    if (!dt) dt = cJSON_GetObjectItemCaseSensitive(root, "dtype");
    snprintf(c->torch_dtype, sizeof c->torch_dtype, "%s",
             cJSON_IsString(dt) ? dt->valuestring : "float32");
}

static rt_status cfg_parse(const char *path, const cJSON *root, rt_llama_config *c) {
    if (!cJSON_IsObject(root)) return rt_errorf(RT_EINPUT, "%s: not a JSON object", path);
    cfg_arch arch = ARCH_LLAMA;
    RT_TRY(cfg_arch_of(path, root, &arch));
    RT_TRY(cfg_int(path, root, "hidden_size", 1, 0, &c->hidden_size));
    RT_TRY(cfg_int(path, root, "intermediate_size", 1, 0, &c->intermediate_size));
    RT_TRY(cfg_int(path, root, "num_hidden_layers", 1, 0, &c->num_hidden_layers));
    RT_TRY(cfg_int(path, root, "num_attention_heads", 1, 0, &c->num_attention_heads));
    RT_TRY(cfg_int(path, root, "vocab_size", 1, 0, &c->vocab_size));
    RT_TRY(cfg_int(path, root, "num_key_value_heads", 0, c->num_attention_heads,
                   &c->num_key_value_heads));
    cfg_dtype(root, c);
    if (arch == ARCH_GEMMA3) {
        RT_TRY(cfg_gemma3(path, root, c));
        return rt_llama_config_check(c, path);
    }
    int def_pos = arch == ARCH_LLAMA ? 2048 : arch == ARCH_MISTRAL ? 131072 : 32768;
    RT_TRY(cfg_int(path, root, "max_position_embeddings", 0, def_pos, &c->max_position_embeddings));
    RT_TRY(cfg_token(path, root, "bos_token_id", 1, &c->bos_token_id));
    RT_TRY(cfg_token(path, root, "eos_token_id", 2, &c->eos_token_id));
    RT_TRY(cfg_float(path, root, "rms_norm_eps", 1e-6f, &c->rms_norm_eps));
    RT_TRY(cfg_float(path, root, "rope_theta", 10000.0f, &c->rope_theta));
    RT_TRY(cfg_rope(path, root, &c->rope_theta));
    RT_TRY(cfg_bool(path, root, "tie_word_embeddings", false, &c->tie_word_embeddings));
    /* transformers' Qwen2Attention always builds q/k/v biases and ignores
     * the key, so do the same. */
    RT_TRY(cfg_bool(path, root, "attention_bias", false, &c->attention_bias));
    if (arch == ARCH_QWEN2) c->attention_bias = true;

    /* Sliding-window attention is not implemented: accept it only where the
     * window covers every position (then it is plain causal attention). */
    bool swa = arch == ARCH_MISTRAL;
    if (arch == ARCH_QWEN2) RT_TRY(cfg_bool(path, root, "use_sliding_window", false, &swa));
    if (swa) {
        const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
        int w = 4096; /* transformers' default when the key is absent */
        if (sw && !cJSON_IsNull(sw) && !cfg_as_int(sw, &w))
            return rt_errorf(RT_EINPUT, "%s: key \"sliding_window\" must be an integer or null", path);
        if (!(sw && cJSON_IsNull(sw)) && w < c->max_position_embeddings)
            return rt_errorf(RT_EINPUT, "%s: sliding_window %d < max_position_embeddings %d: "
                             "sliding-window attention is not supported", path, w,
                             c->max_position_embeddings);
    }
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (act && !(cJSON_IsString(act) && strcmp(act->valuestring, "silu") == 0))
        return rt_errorf(RT_EINPUT, "%s: hidden_act \"%s\" is not supported (only silu)", path,
                         cJSON_IsString(act) ? act->valuestring : "?");
    const cJSON *hd = cJSON_GetObjectItemCaseSensitive(root, "head_dim");
    int head_dim;
    if (hd && !cJSON_IsNull(hd) && c->num_attention_heads > 0 &&
        (!cfg_as_int(hd, &head_dim) || head_dim * c->num_attention_heads != c->hidden_size))
        return rt_errorf(RT_EINPUT, "%s: head_dim must equal hidden_size / num_attention_heads (%d)",
                         path, c->hidden_size / c->num_attention_heads);
    return rt_llama_config_check(c, path);
}

rt_status rt_llama_config_load(const char *path, rt_llama_config *cfg) {
    char *text = NULL;
    size_t len = 0;
    RT_TRY(rt_read_file_max(path, "config", RT_CONFIG_FILE_MAX, &text, &len));
    /* Anything but whitespace after the object is an error: cJSON's
     * require_null_terminated checks for the NUL that rt_read_file appends
     * (hence len + 1), and end must be that NUL (no data after a NUL). */
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len + 1, &end, 1);
    size_t at = end && end >= text ? (size_t)(end - text) : 0;
    free(text);
    if (root && at != len) cJSON_Delete(root), root = NULL;
    if (!root) return rt_errorf(RT_EINPUT, "%s: invalid JSON (or data after it) near byte %zu", path, at);
    rt_llama_config c;
    memset(&c, 0, sizeof c);
    rt_status s = cfg_parse(path, root, &c);
    cJSON_Delete(root);
    if (s == RT_OK) *cfg = c;
    return s;
}

/* The shortest decimal that reads back as the same float, so 1e-5f is
 * written "1e-05" rather than its double expansion 9.99999974737875e-06. */
static cJSON *cfg_float_json(float v) {
    char buf[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)v);
        if (strtof(buf, NULL) == v) break;
    }
    return cJSON_CreateNumber(strtod(buf, NULL));
}

/* Gemma3TextConfig's own keys; rope_theta below stays for older readers. */
static bool cfg_save_gemma3(const rt_llama_config *c, cJSON *root) {
    cJSON *lt = cJSON_AddArrayToObject(root, "layer_types");
    for (int i = 0; lt && i < c->num_hidden_layers; i++)
        if (!cJSON_AddItemToArray(lt, cJSON_CreateString(rt_llama_layer_is_local(c, i)
                                                             ? "sliding_attention" : "full_attention")))
            return false;
    cJSON *rp = cJSON_AddObjectToObject(root, "rope_parameters");
    cJSON *full = rp ? cJSON_AddObjectToObject(rp, "full_attention") : NULL;
    cJSON *local = rp ? cJSON_AddObjectToObject(rp, "sliding_attention") : NULL;
    return lt && full && local && cJSON_AddStringToObject(full, "rope_type", "default") &&
           cJSON_AddItemToObject(full, "rope_theta", cfg_float_json(c->rope_theta)) &&
           cJSON_AddStringToObject(local, "rope_type", "default") &&
           cJSON_AddItemToObject(local, "rope_theta", cfg_float_json(c->rope_local_base_freq)) &&
           cJSON_AddStringToObject(root, "hidden_activation", "gelu_pytorch_tanh") &&
           cJSON_AddNumberToObject(root, "head_dim", rt_llama_head_dim(c)) &&
           cJSON_AddItemToObject(root, "query_pre_attn_scalar", cfg_float_json(c->query_pre_attn_scalar)) &&
           cJSON_AddNumberToObject(root, "sliding_window", c->sliding_window) &&
           cJSON_AddNullToObject(root, "final_logit_softcapping") &&
           cJSON_AddNullToObject(root, "attn_logit_softcapping");
}

rt_status rt_llama_config_save(const rt_llama_config *c, const char *path) {
    cJSON *root = cJSON_CreateObject();
    const bool gemma = c->arch == RT_ARCH_GEMMA3;
    const char *arch = gemma ? "Gemma3ForCausalLM" : "LlamaForCausalLM";
    bool ok = root && cJSON_AddItemToObject(root, "architectures", cJSON_CreateStringArray(&arch, 1)) &&
              cJSON_AddStringToObject(root, "model_type", gemma ? "gemma3_text" : "llama") &&
              (gemma ? cfg_save_gemma3(c, root) : cJSON_AddStringToObject(root, "hidden_act", "silu") != NULL);
    const struct { const char *k; int v; } ints[] = {
        {"hidden_size", c->hidden_size}, {"intermediate_size", c->intermediate_size},
        {"num_hidden_layers", c->num_hidden_layers}, {"num_attention_heads", c->num_attention_heads},
        {"num_key_value_heads", c->num_key_value_heads}, {"vocab_size", c->vocab_size},
        {"max_position_embeddings", c->max_position_embeddings},
    };
    for (size_t i = 0; ok && i < sizeof ints / sizeof ints[0]; i++)
        ok = cJSON_AddNumberToObject(root, ints[i].k, ints[i].v) != NULL;
    ok = ok &&
         (c->bos_token_id >= 0 ? cJSON_AddNumberToObject(root, "bos_token_id", c->bos_token_id)
                               : cJSON_AddNullToObject(root, "bos_token_id")) &&
         (c->eos_token_id >= 0 ? cJSON_AddNumberToObject(root, "eos_token_id", c->eos_token_id)
                               : cJSON_AddNullToObject(root, "eos_token_id")) &&
         cJSON_AddItemToObject(root, "rms_norm_eps", cfg_float_json(c->rms_norm_eps)) &&
         (gemma || (cJSON_AddItemToObject(root, "rope_theta", cfg_float_json(c->rope_theta)) &&
                    cJSON_AddNullToObject(root, "rope_scaling"))) &&
         cJSON_AddBoolToObject(root, "tie_word_embeddings", c->tie_word_embeddings) &&
         cJSON_AddBoolToObject(root, "attention_bias", c->attention_bias) &&
         cJSON_AddStringToObject(root, "torch_dtype", c->torch_dtype[0] ? c->torch_dtype : "float32");
    char *text = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) return rt_errorf(RT_EINTERNAL, "%s: out of memory", path);

    char *tmp = malloc(strlen(path) + 5);
    rt_status s = RT_OK;
    if (!tmp) { free(text); return rt_errorf(RT_EINTERNAL, "%s: out of memory", path); }
    sprintf(tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        s = rt_errorf(RT_EINPUT, "%s: cannot create: %s", tmp, strerror(errno));
    } else {
        size_t n = strlen(text);
        bool w = fwrite(text, 1, n, f) == n && fputc('\n', f) != EOF;
        if (fclose(f) != 0) w = false;
        if (!w || rename(tmp, path) != 0) {
            s = rt_errorf(RT_EINPUT, "%s: cannot write: %s", path, strerror(errno));
            unlink(tmp);
        }
    }
    free(tmp);
    free(text);
    return s;
}

/* ---- projection names and shapes ---------------------------------------- */

static const char *const proj_names[RT_PROJ_COUNT] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                      "gate_proj", "up_proj", "down_proj"};
static const char *const proj_paths[RT_PROJ_COUNT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

const char *rt_proj_name(rt_proj p) { return proj_names[p]; }
const char *rt_proj_path(rt_proj p) { return proj_paths[p]; }

int rt_proj_parse(const char *name) {
    for (int p = 0; p < RT_PROJ_COUNT; p++)
        if (!strcmp(name, proj_names[p])) return p;
    return -1;
}

void rt_proj_shape(const rt_llama_config *c, rt_proj p, int64_t shape[2]) {
    int64_t D = c->hidden_size, F = c->intermediate_size, Dh = rt_llama_head_dim(c);
    int64_t q = c->num_attention_heads * Dh, kv = c->num_key_value_heads * Dh;
    const int64_t out[RT_PROJ_COUNT] = {q, kv, kv, D, F, F, D};
    const int64_t in[RT_PROJ_COUNT] = {D, D, D, q, D, D, F};
    shape[0] = out[p];
    shape[1] = in[p];
}
