/* Tests for train/formats/nf4_io.[ch], train/cli/cmd_quantize.c and train/model/merge.c:
 * stories260K quantized into bitsandbytes' NF4 layout (every key's dtype,
 * shape and bytes against rt_nf4_quantize of the HF-layout weight, the
 * quant_state JSON, quantization_config), the reader's round trip and its
 * errors on corrupt quant states, LoRA merges (hand-computed W + s B A, and
 * logits of the merged model against the adapter model, plain and NF4
 * bases), and the two CLI commands. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cjson/cJSON.h>

#include "autograd/ops.h"
#include "tests/cli_util.h"
#include "train/formats/model_file.h"
#include "train/model/adapter.h"
#include "train/formats/half.h"
#include "train/model/llama.h"
#include "train/formats/nf4_io.h"
#include "train/model/merge.h"

static bool file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* stories260K: D 64, F 172, 5 layers, 8 heads of 8, 4 kv heads. */
static void proj_shape(int p, int64_t s[2]) {
    static const int64_t out[7] = {64, 32, 32, 64, 172, 172, 64}, in[7] = {64, 64, 64, 64, 64, 64, 172};
    s[0] = out[p];
    s[1] = in[p];
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* ---- quantize: keys, dtypes, shapes, bytes --------------------------------- */

static void check_quantized_dir(const char *bin, const char *dir, int bs, bool dq) {
    rt_weights *w1 = NULL, *w2 = NULL;
    rt_llama_config c1, c2;
    CHECK(rt_weights_open(bin, &w1, &c1) == RT_OK, "%s", rt_error_message());
    CHECK(rt_weights_open(dir, &w2, &c2) == RT_OK, "reopen %s: %s", dir, rt_error_message());
    if (!w1 || !w2) goto done;
    CHECK(c2.hidden_size == 64 && c2.num_hidden_layers == 5 && c2.tie_word_embeddings, "config");

    float nested_map[256];
    rt_bnb_dynamic_map_signed(nested_map);
    int bad_bytes = 0, bad_meta = 0, bad_json = 0, bad_roundtrip = 0;
    for (int l = 0; l < 5; l++) {
        for (int p = 0; p < RT_PROJ_COUNT; p++) {
            char name[160], key[224];
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, rt_proj_path(p));
            int64_t shape[2];
            proj_shape(p, shape);
            int64_t n = shape[0] * shape[1], nb = ceil_div(n, bs);
            const rt_st_tensor *src = rt_weights_find(w1, name);
            uint8_t *ref = malloc((size_t)rt_nf4_packed_bytes(n));
            rt_nf4_state rs;
            rt_nf4_quantize(src->data, n, bs, dq, ref, &rs);

            const rt_st_tensor *pk = rt_weights_find(w2, name);
            bad_meta += !pk || pk->dtype != RT_ST_U8 || pk->ndim != 2 ||
                        pk->shape[0] != ceil_div(n, 2) || pk->shape[1] != 1;
            bad_bytes += !pk || memcmp(pk->data, ref, (size_t)ceil_div(n, 2)) != 0;
            snprintf(key, sizeof key, "%s.absmax", name);
            const rt_st_tensor *am = rt_weights_find(w2, key);
            bad_meta += !am || am->ndim != 1 || am->shape[0] != nb ||
                        am->dtype != (dq ? RT_ST_U8 : RT_ST_F32);
            bad_bytes += !am || memcmp(am->data, dq ? (void *)rs.absmax_q : (void *)rs.absmax,
                                       (size_t)nb * (dq ? 1 : 4)) != 0;
            snprintf(key, sizeof key, "%s.quant_map", name);
            const rt_st_tensor *qm = rt_weights_find(w2, key);
            bad_meta += !qm || qm->dtype != RT_ST_F32 || qm->ndim != 1 || qm->shape[0] != 16;
            bad_bytes += !qm || memcmp(qm->data, rt_nf4_code, sizeof rt_nf4_code) != 0;
            snprintf(key, sizeof key, "%s.nested_absmax", name);
            const rt_st_tensor *na = rt_weights_find(w2, key);
            snprintf(key, sizeof key, "%s.nested_quant_map", name);
            const rt_st_tensor *nm = rt_weights_find(w2, key);
            if (dq) {
                bad_meta += !na || na->dtype != RT_ST_F32 || na->ndim != 1 || na->shape[0] != ceil_div(nb, 256);
                bad_bytes += !na || memcmp(na->data, rs.nested_absmax, (size_t)ceil_div(nb, 256) * 4) != 0;
                bad_meta += !nm || nm->dtype != RT_ST_F32 || nm->ndim != 1 || nm->shape[0] != 256;
                bad_bytes += !nm || memcmp(nm->data, nested_map, sizeof nested_map) != 0;
            } else {
                bad_meta += na != NULL || nm != NULL;
            }

            /* quant_state JSON, json.dumps layout */
            snprintf(key, sizeof key, "%s.quant_state.bitsandbytes__nf4", name);
            const rt_st_tensor *qs = rt_weights_find(w2, key);
            bad_meta += !qs || qs->dtype != RT_ST_U8 || qs->ndim != 1;
            cJSON *j = qs ? cJSON_ParseWithLength(qs->data, qs->nbytes) : NULL;
            char prefix[96];
            snprintf(prefix, sizeof prefix, "{\"quant_type\": \"nf4\", \"blocksize\": %d, \"dtype\": \"float32\", ", bs);
            bad_json += !qs || qs->nbytes < strlen(prefix) || memcmp(qs->data, prefix, strlen(prefix)) != 0;
            const cJSON *sh = cJSON_GetObjectItem(j, "shape");
            bad_json += !j || strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(j, "quant_type")), "nf4") ||
                        cJSON_GetNumberValue(cJSON_GetObjectItem(j, "blocksize")) != bs ||
                        strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(j, "dtype")), "float32") ||
                        cJSON_GetArraySize(sh) != 2 ||
                        cJSON_GetArrayItem(sh, 0)->valuedouble != (double)shape[0] ||
                        cJSON_GetArrayItem(sh, 1)->valuedouble != (double)shape[1];
            if (dq)
                bad_json += cJSON_GetNumberValue(cJSON_GetObjectItem(j, "nested_blocksize")) != 256 ||
                            strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(j, "nested_dtype")), "float32") ||
                            (float)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "nested_offset")) != rs.nested_offset;
            else
                bad_json += cJSON_GetObjectItem(j, "nested_offset") != NULL;
            cJSON_Delete(j);

            /* reader round trip: same codes, same dequantized values */
            uint8_t *packed = NULL;
            rt_nf4_state st;
            bool found = false;
            rt_status s = rt_nf4_from_weights(w2, name, shape, &packed, &st, &found);
            float *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4);
            if (s == RT_OK && found) {
                rt_nf4_dequantize(ref, &rs, a);
                rt_nf4_dequantize(packed, &st, b);
                bad_roundtrip += memcmp(a, b, (size_t)n * 4) != 0 || st.blocksize != bs ||
                                 st.double_quant != dq || st.n != n;
            } else {
                bad_roundtrip++;
            }
            free(a);
            free(b);
            free(packed);
            rt_nf4_state_free(&st);
            rt_nf4_state_free(&rs);
            free(ref);
        }
    }
    CHECK(bad_meta == 0, "%d key dtype/shape mismatches (bs %d dq %d)", bad_meta, bs, dq);
    CHECK(bad_bytes == 0, "%d tensors differ from rt_nf4_quantize (bs %d dq %d)", bad_bytes, bs, dq);
    CHECK(bad_json == 0, "%d quant_state JSONs wrong", bad_json);
    CHECK(bad_roundtrip == 0, "%d rt_nf4_from_weights round trips differ", bad_roundtrip);

    /* full-precision tensors copied as they are; tied: no lm_head */
    const rt_st_tensor *e1 = rt_weights_find(w1, "model.embed_tokens.weight");
    const rt_st_tensor *e2 = rt_weights_find(w2, "model.embed_tokens.weight");
    CHECK(e2 && e2->dtype == RT_ST_F32 && e2->nbytes == e1->nbytes &&
          memcmp(e1->data, e2->data, e1->nbytes) == 0, "embed_tokens copied");
    const rt_st_tensor *n1 = rt_weights_find(w1, "model.layers.3.post_attention_layernorm.weight");
    const rt_st_tensor *n2 = rt_weights_find(w2, "model.layers.3.post_attention_layernorm.weight");
    CHECK(n2 && n2->dtype == RT_ST_F32 && memcmp(n1->data, n2->data, n1->nbytes) == 0, "norm copied");
    CHECK(rt_weights_find(w2, "lm_head.weight") == NULL, "no lm_head (tied)");
    /* 9 + 5 * (2 norms + 7 * (4 or 6)) + embed + norm */
    size_t want = 2 + 5 * (2 + 7 * (dq ? 6 : 4));
    CHECK(rt_weights_count(w2) == want, "%zu tensors, want %zu", rt_weights_count(w2), want);

    /* a plain weight is reported as such */
    uint8_t *pk = (uint8_t *)1;
    rt_nf4_state st;
    bool found = true;
    CHECK(rt_nf4_from_weights(w2, "model.embed_tokens.weight", NULL, &pk, &st, &found) == RT_OK &&
          !found && pk == NULL, "plain weight: not found");
    found = true;
    CHECK(rt_nf4_from_weights(w1, "model.layers.0.self_attn.q_proj.weight", NULL, &pk, &st, &found) == RT_OK &&
          !found, ".bin weight: not found");
    rt_st_dtype dt = RT_ST_U8;
    CHECK(rt_nf4_weight_dtype(w2, "model.layers.1.mlp.up_proj.weight", &dt) == RT_OK && dt == RT_ST_F32,
          "quant_state dtype float32");
    /* wrong expected shape */
    const int64_t wrong[2] = {64, 32};
    rt_error_clear();
    CHECK(rt_nf4_from_weights(w2, "model.layers.0.self_attn.q_proj.weight", wrong, &pk, &st, &found) == RT_EINPUT &&
          strstr(rt_error_message(), "q_proj") && pk == NULL, "shape mismatch: %s", rt_error_message());
done:
    rt_weights_close(w1);
    rt_weights_close(w2);
}

static void check_config(const char *dir, bool dq) {
    char p[1100];
    snprintf(p, sizeof p, "%s/config.json", dir);
    char *text = rt_slurp(p, NULL);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    const cJSON *q = cJSON_GetObjectItem(j, "quantization_config");
    CHECK(cJSON_IsObject(q), "quantization_config present");
    CHECK(q && !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(q, "quant_method")), "bitsandbytes") &&
          cJSON_IsTrue(cJSON_GetObjectItem(q, "load_in_4bit")) &&
          cJSON_IsFalse(cJSON_GetObjectItem(q, "load_in_8bit")) &&
          !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(q, "bnb_4bit_quant_type")), "nf4") &&
          cJSON_IsBool(cJSON_GetObjectItem(q, "bnb_4bit_use_double_quant")) &&
          cJSON_IsTrue(cJSON_GetObjectItem(q, "bnb_4bit_use_double_quant")) == dq &&
          !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(q, "bnb_4bit_quant_storage")), "uint8") &&
          cJSON_IsString(cJSON_GetObjectItem(q, "bnb_4bit_compute_dtype")),
          "quantization_config fields");
    CHECK(j && !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(j, "model_type")), "llama"), "model_type");
    cJSON_Delete(j);
    free(text);
}

static void test_quantize(const char *bin) {
    const char *dir = rt_tmp("q64");
    rt_nf4_stats st;
    rt_status s = rt_nf4_write_hf_stats(bin, dir, 64, true, &st);
    CHECK(s == RT_OK, "quantize: %s", rt_error_message());
    if (s != RT_OK) return;
    /* per layer 4096 + 2048 + 2048 + 4096 + 3 * 11008 elements */
    int64_t per_layer = 4096 + 2048 + 2048 + 4096 + 3 * 11008;
    CHECK(st.n_quantized == 35 && st.quantized_params == 5 * per_layer, "%d / %lld quantized",
          st.n_quantized, (long long)st.quantized_params);
    size_t bytes = 0;
    for (int p = 0; p < 7; p++) {
        int64_t sh[2];
        proj_shape(p, sh);
        int64_t n = sh[0] * sh[1], nb = ceil_div(n, 64);
        bytes += (size_t)(ceil_div(n, 2) + nb + 4 * ceil_div(nb, 256) + 4);
    }
    CHECK(st.quantized_bytes == 5 * bytes, "storage %zu, want %zu", st.quantized_bytes, 5 * bytes);
    CHECK(st.nominal_bits == 4.0 + 8.0 / 64 + 32.0 / (64 * 256), "nominal bits %f", st.nominal_bits);
    CHECK(st.bytes_before == 4 * (size_t)(512 * 64 + 64 + 5 * (128 + per_layer)), "bytes before %zu",
          st.bytes_before);
    CHECK(st.bytes_after < st.bytes_before / 2, "bytes after %zu", st.bytes_after);
    check_quantized_dir(bin, dir, 64, true);
    check_config(dir, true);

    const char *dir2 = rt_tmp("q128");
    s = rt_nf4_write_hf(bin, dir2, 128, false);
    CHECK(s == RT_OK, "quantize 128 no-dq: %s", rt_error_message());
    if (s == RT_OK) {
        check_quantized_dir(bin, dir2, 128, false);
        check_config(dir2, false);
    }

    rt_error_clear();
    CHECK(rt_nf4_write_hf(bin, rt_tmp("qbad"), 48, true) == RT_EINPUT &&
          strstr(rt_error_message(), "48"), "blocksize 48: %s", rt_error_message());
    rt_error_clear();
    CHECK(rt_nf4_write_hf(dir, rt_tmp("qq"), 64, true) == RT_EINPUT &&
          strstr(rt_error_message(), "already quantized"), "requantize: %s", rt_error_message());
    rt_error_clear();
    CHECK(rt_nf4_write_hf(rt_tmp("missing"), rt_tmp("qm"), 64, true) == RT_EINPUT,
          "missing model");
}

/* ---- the loader hook -------------------------------------------------------- */

static void test_load_tensor(const char *bin) {
    rt_weights *w1 = NULL, *w2 = NULL;
    rt_llama_config c;
    if (rt_weights_open(bin, &w1, &c) || rt_weights_open(rt_tmp("q64"), &w2, &c)) {
        CHECK(0, "open: %s", rt_error_message());
        rt_weights_close(w1);
        return;
    }
    const char *name = "model.layers.2.mlp.down_proj.weight";
    const int64_t shape[2] = {64, 172};
    int64_t n = 64 * 172;
    uint8_t *ref = malloc((size_t)rt_nf4_packed_bytes(n));
    rt_nf4_state rs;
    rt_nf4_quantize(rt_weights_find(w1, name)->data, n, 64, true, ref, &rs);
    float *want = malloc((size_t)n * 4), *got = malloc((size_t)n * 4);
    rt_nf4_dequantize(ref, &rs, want);

    rt_tensor *t = NULL;
    bool found = false;
    CHECK(rt_nf4_load_tensor(w2, name, shape, true, RT_CPU, &t, &found) == RT_OK && found && t &&
          t->dtype == RT_NF4 && t->nf4, "keep NF4: %s", rt_error_message());
    if (t && t->nf4) {
        rt_nf4_dequantize(t->data, t->nf4, got);
        CHECK(memcmp(got, want, (size_t)n * 4) == 0 && memcmp(t->data, ref, (size_t)rt_nf4_packed_bytes(n)) == 0,
              "NF4 tensor equals the quantized weight");
        rt_nf4_state_free(t->nf4);
        free(t->nf4);
        rt_tensor_free(t);
    }
    t = NULL;
    CHECK(rt_nf4_load_tensor(w2, name, shape, false, RT_CPU, &t, &found) == RT_OK && found && t &&
          t->dtype == RT_F32 && t->shape[0] == 64 && t->shape[1] == 172, "dequantized");
    if (t) {
        CHECK(memcmp(t->data, want, (size_t)n * 4) == 0, "dequantized values");
        rt_tensor_free(t);
    }
    t = NULL;
    found = true;
    CHECK(rt_nf4_load_tensor(w1, name, shape, true, RT_CPU, &t, &found) == RT_OK && !found && !t,
          "plain weight left to the dense loader");
    free(want);
    free(got);
    free(ref);
    rt_nf4_state_free(&rs);
    rt_weights_close(w1);
    rt_weights_close(w2);
}

/* ---- corrupt quant states ---------------------------------------------------- */

/* Writes `dir` = the q64 model with tensor `key` replaced by (dt, len, data),
 * or dropped when data is NULL. */
static void write_variant(const char *dir, const char *key, rt_st_dtype dt, int64_t len, const void *data) {
    rt_weights *w;
    rt_llama_config c;
    if (rt_weights_open(rt_tmp("q64"), &w, &c)) return;
    mkdir(dir, 0777);
    size_t n = rt_weights_count(w), k = 0;
    rt_st_tensor *ts = calloc(n, sizeof *ts);
    for (size_t i = 0; i < n; i++) {
        const rt_st_tensor *t = rt_weights_get(w, i);
        if (strcmp(t->name, key) != 0) {
            ts[k++] = *t;
        } else if (data) {
            ts[k] = *t;
            ts[k].dtype = dt;
            ts[k].ndim = 1;
            ts[k].shape[0] = len;
            ts[k].data = data;
            ts[k++].nbytes = (size_t)len * rt_st_dtype_size(dt);
        }
    }
    char p[1100];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    rt_st_write(p, ts, k, NULL);
    snprintf(p, sizeof p, "%s/config.json", dir);
    rt_llama_config_save(&c, p);
    free(ts);
    rt_weights_close(w);
}

static void expect_corrupt(const char *tag, const char *key, rt_st_dtype dt, int64_t len,
                           const void *data, const char *needle) {
    const char *dir = rt_tmp(tag);
    write_variant(dir, key, dt, len, data);
    rt_weights *w = NULL;
    rt_llama_config c;
    if (rt_weights_open(dir, &w, &c)) {
        CHECK(0, "%s: open: %s", tag, rt_error_message());
        return;
    }
    const int64_t shape[2] = {64, 64};
    uint8_t *packed = (uint8_t *)1;
    rt_nf4_state st;
    bool found = false;
    rt_error_clear();
    rt_status s = rt_nf4_from_weights(w, "model.layers.0.self_attn.q_proj.weight", shape, &packed, &st, &found);
    CHECK(s == RT_EINPUT && packed == NULL && strstr(rt_error_message(), "q_proj") &&
          strstr(rt_error_message(), needle), "%s: status %d, message '%s'", tag, s, rt_error_message());
    rt_nf4_state_free(&st);
    rt_weights_close(w);
}

static void test_corrupt(void) {
    const char *qs = "model.layers.0.self_attn.q_proj.weight.quant_state.bitsandbytes__nf4";
    const char *bad_json = "{\"quant_type\": \"nf4\", \"blocksize\": 64,";
    expect_corrupt("c_json", qs, RT_ST_U8, (int64_t)strlen(bad_json), bad_json, "JSON");
    const char *bad_shape = "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", "
                            "\"shape\": [64, 63], \"nested_blocksize\": 256, \"nested_dtype\": "
                            "\"float32\", \"nested_offset\": 0.01}";
    expect_corrupt("c_shape", qs, RT_ST_U8, (int64_t)strlen(bad_shape), bad_shape, "shape");
    const char *bad_bs = "{\"quant_type\": \"nf4\", \"blocksize\": 48, \"dtype\": \"float32\", "
                         "\"shape\": [64, 64], \"nested_blocksize\": 256, \"nested_dtype\": "
                         "\"float32\", \"nested_offset\": 0.01}";
    expect_corrupt("c_bs", qs, RT_ST_U8, (int64_t)strlen(bad_bs), bad_bs, "blocksize");
    const char *fp4 = "{\"quant_type\": \"fp4\", \"blocksize\": 64, \"dtype\": \"float32\", "
                      "\"shape\": [64, 64]}";
    expect_corrupt("c_fp4", qs, RT_ST_U8, (int64_t)strlen(fp4), fp4, "quant_type");
    const char *no_nested = "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", "
                            "\"shape\": [64, 64]}";
    expect_corrupt("c_half", qs, RT_ST_U8, (int64_t)strlen(no_nested), no_nested, "half present");
    /* blocksize 128 in the JSON: absmax then has the wrong length */
    const char *bs128 = "{\"quant_type\": \"nf4\", \"blocksize\": 128, \"dtype\": \"float32\", "
                        "\"shape\": [64, 64], \"nested_blocksize\": 256, \"nested_dtype\": "
                        "\"float32\", \"nested_offset\": 0.01}";
    expect_corrupt("c_len", qs, RT_ST_U8, (int64_t)strlen(bs128), bs128, "absmax");
    expect_corrupt("c_noabs", "model.layers.0.self_attn.q_proj.weight.absmax", RT_ST_U8, 0, NULL,
                   "missing tensor");
    static uint8_t short_codes[100];
    expect_corrupt("c_packed", "model.layers.0.self_attn.q_proj.weight", RT_ST_U8, 100, short_codes,
                   "packed");
    static float qmap[15];
    expect_corrupt("c_qmap", "model.layers.0.self_attn.q_proj.weight.quant_map", RT_ST_F32, 15, qmap,
                   "quant_map");
}

/* ---- merge ----------------------------------------------------------------- */

static rt_status logits_of(rt_llama *m, float *out) {
    static const int32_t ids[6] = {1, 403, 261, 75, 300, 42};
    static const int32_t pos[6] = {0, 1, 2, 3, 4, 5};
    rt_ctx *ctx = rt_ctx_new(RT_CPU, 0);
    if (!ctx) return RT_EINTERNAL;
    ctx->no_grad = true;
    const int64_t shape[2] = {1, 6};
    rt_tensor *lg = rt_llama_forward(ctx, m, rt_from_i32(ctx, ids, 2, shape),
                                     rt_from_i32(ctx, pos, 2, shape), NULL);
    rt_status s = lg ? RT_OK : (ctx->status ? ctx->status : RT_EINTERNAL);
    if (lg) rt_to_host(ctx, lg, out);
    rt_ctx_free(ctx);
    return s;
}

static float max_diff(const float *a, const float *b, size_t n) {
    float d = 0;
    for (size_t i = 0; i < n; i++) d = fmaxf(d, fabsf(a[i] - b[i]));
    return d;
}

static void test_merge(const char *bin) {
    const size_t NL = 6 * 512;
    rt_llama_opts o = {.device = RT_CPU, .lora_r = 4, .lora_alpha = 8.0f,
                       .lora_targets = (1u << RT_PROJ_Q) | (1u << RT_PROJ_V) | (1u << RT_PROJ_O) |
                                       (1u << RT_PROJ_DOWN) | (1u << RT_PROJ_GATE),
                       .seed = 11};
    rt_llama *ma = NULL;
    if (rt_llama_load(bin, &o, &ma) != RT_OK) {
        CHECK(0, "load with lora: %s", rt_error_message());
        return;
    }
    /* B non-zero so the merge changes the weights */
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int l = 0; l < 5; l++)
        for (int p = 0; p < RT_PROJ_COUNT; p++) {
            rt_tensor *B = ma->layers[l].proj[p].lora_B;
            if (!B) continue;
            float *d = B->data;
            for (int64_t i = 0; i < rt_numel(B); i++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                d[i] = ((float)(x >> 40) / (float)(1u << 24) - 0.5f) * 0.2f;
            }
        }
    const char *adir = rt_tmp("adapter");
    CHECK(rt_adapter_save(ma, adir, bin) == RT_OK, "adapter save: %s", rt_error_message());
    float *ref = malloc(NL * 4), *got = malloc(NL * 4);
    CHECK(logits_of(ma, ref) == RT_OK, "adapter logits: %s", rt_error_message());

    /* plain base (.bin) */
    const char *mdir = rt_tmp("merged");
    rt_status s = rt_merge_write_hf(bin, adir, mdir);
    CHECK(s == RT_OK, "merge: %s", rt_error_message());
    rt_weights *w1 = NULL, *wm = NULL;
    rt_llama_config c;
    if (s == RT_OK && rt_weights_open(bin, &w1, &c) == RT_OK && rt_weights_open(mdir, &wm, &c) == RT_OK) {
        /* layer 1 v_proj [32, 64] against W + (alpha/r) B A by hand */
        const rt_lora_linear *l = &ma->layers[1].proj[RT_PROJ_V];
        const float *W = rt_weights_find(w1, "model.layers.1.self_attn.v_proj.weight")->data;
        const rt_st_tensor *mt = rt_weights_find(wm, "model.layers.1.self_attn.v_proj.weight");
        const float *A = l->lora_A->data, *B = l->lora_B->data;
        double err = 0, delta = 0;
        for (int i = 0; mt && i < 32; i++)
            for (int j = 0; j < 64; j++) {
                double acc = 0;
                for (int k = 0; k < 4; k++) acc += (double)B[i * 4 + k] * A[k * 64 + j];
                double want = W[i * 64 + j] + 2.0 * acc;
                err = fmax(err, fabs(want - ((const float *)mt->data)[i * 64 + j]));
                delta = fmax(delta, fabs(2.0 * acc));
            }
        CHECK(mt && mt->dtype == RT_ST_F32 && err < 1e-6 && delta > 1e-3,
              "merged v_proj = W + 2 B A (err %g, |BA| %g)", err, delta);
        const rt_st_tensor *k0 = rt_weights_find(w1, "model.layers.1.self_attn.k_proj.weight");
        const rt_st_tensor *k1 = rt_weights_find(wm, "model.layers.1.self_attn.k_proj.weight");
        CHECK(k1 && memcmp(k0->data, k1->data, k0->nbytes) == 0, "un-adapted k_proj unchanged");
        CHECK(!strcmp(c.torch_dtype, "float32"), "merged torch_dtype %s", c.torch_dtype);
    }
    rt_weights_close(w1);
    rt_weights_close(wm);
    char *cfgtext = rt_slurp(rt_tmp("merged/config.json"), NULL);
    CHECK(cfgtext && !strstr(cfgtext, "quantization_config"), "merged config has no quantization_config");
    free(cfgtext);
    rt_llama *mm = NULL;
    rt_llama_opts plain = {.device = RT_CPU};
    if (s == RT_OK && rt_llama_load(mdir, &plain, &mm) == RT_OK && logits_of(mm, got) == RT_OK) {
        float d = max_diff(ref, got, NL);
        CHECK(d < 1e-4f, "merged logits vs adapter logits: max diff %g", d);
    } else {
        CHECK(0, "load merged: %s", rt_error_message());
    }
    rt_llama_free(mm);
    mm = NULL;

    /* NF4 base: reference is the QLoRA model (same NF4 codes) + the adapter */
    const char *mdir2 = rt_tmp("merged_nf4");
    s = rt_merge_write_hf(rt_tmp("q64"), adir, mdir2);
    CHECK(s == RT_OK, "merge NF4: %s", rt_error_message());
    rt_llama_opts q = {.device = RT_CPU, .load_in_4bit = true, .nf4_blocksize = 64, .double_quant = true};
    rt_llama *mq = NULL;
    if (s == RT_OK && rt_llama_load(bin, &q, &mq) == RT_OK && rt_adapter_apply(mq, adir) == RT_OK &&
        logits_of(mq, ref) == RT_OK && rt_llama_load(mdir2, &plain, &mm) == RT_OK &&
        logits_of(mm, got) == RT_OK) {
        float d = max_diff(ref, got, NL);
        CHECK(d < 1e-4f, "merged NF4 logits vs QLoRA logits: max diff %g", d);
    } else {
        CHECK(0, "NF4 merge check: %s", rt_error_message());
    }
    if (s == RT_OK && rt_weights_open(mdir2, &wm, &c) == RT_OK) {
        const rt_st_tensor *t = rt_weights_find(wm, "model.layers.0.mlp.up_proj.weight");
        CHECK(t && t->dtype == RT_ST_F32 && t->ndim == 2 && t->shape[0] == 172 &&
              !rt_weights_find(wm, "model.layers.0.mlp.up_proj.weight.absmax") &&
              rt_weights_count(wm) == 2 + 5 * 9, "NF4 merge writes plain tensors only");
        rt_weights_close(wm);
    }
    rt_llama_free(mq);
    rt_llama_free(mm);

    rt_error_clear();
    CHECK(rt_merge_write_hf(bin, rt_tmp("no-adapter"), rt_tmp("m3")) == RT_EINPUT &&
          strstr(rt_error_message(), "adapter_config.json"), "missing adapter: %s", rt_error_message());
    free(ref);
    free(got);
    rt_llama_free(ma);
}

/* ---- bf16 models keep their dtype ----------------------------------------- */

static void test_bf16(const char *bin) {
    rt_weights *w = NULL;
    rt_llama_config c;
    if (rt_weights_open(bin, &w, &c)) return;
    const char *dir = rt_tmp("bf16");
    mkdir(dir, 0777);
    size_t n = rt_weights_count(w);
    rt_st_tensor *ts = calloc(n, sizeof *ts);
    uint16_t **bufs = calloc(n, sizeof *bufs);
    for (size_t i = 0; i < n; i++) {
        const rt_st_tensor *t = rt_weights_get(w, i);
        int64_t k = rt_st_numel(t);
        bufs[i] = malloc((size_t)k * 2);
        for (int64_t j = 0; j < k; j++) bufs[i][j] = rt_f32_to_bf16(((const float *)t->data)[j]);
        ts[i] = *t;
        ts[i].dtype = RT_ST_BF16;
        ts[i].data = bufs[i];
        ts[i].nbytes = (size_t)k * 2;
    }
    char p[1100];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    rt_st_write(p, ts, n, NULL);
    snprintf(c.torch_dtype, sizeof c.torch_dtype, "bfloat16");
    snprintf(p, sizeof p, "%s/config.json", dir);
    rt_llama_config_save(&c, p);
    rt_weights_close(w);

    const char *qdir = rt_tmp("bf16q");
    CHECK(rt_nf4_write_hf(dir, qdir, 64, true) == RT_OK, "quantize bf16: %s", rt_error_message());
    rt_weights *wb = NULL, *wq = NULL;
    const char *name = "model.layers.4.mlp.gate_proj.weight";
    if (rt_weights_open(dir, &wb, &c) == RT_OK && rt_weights_open(qdir, &wq, &c) == RT_OK) {
        rt_st_dtype dt = RT_ST_F32;
        CHECK(rt_nf4_weight_dtype(wq, name, &dt) == RT_OK && dt == RT_ST_BF16, "quant_state dtype bfloat16");
        CHECK(!strcmp(c.torch_dtype, "bfloat16"), "quantized config keeps torch_dtype");
        const rt_st_tensor *e = rt_weights_find(wq, "model.embed_tokens.weight");
        CHECK(e && e->dtype == RT_ST_BF16, "embeddings stay bf16");
        int64_t k = 172 * 64;
        float *f = malloc((size_t)k * 4);
        const uint16_t *src = rt_weights_find(wb, name)->data;
        for (int64_t j = 0; j < k; j++) f[j] = rt_bf16_to_f32(src[j]);
        uint8_t *ref = malloc((size_t)k / 2);
        rt_nf4_state rs;
        rt_nf4_quantize(f, k, 64, true, ref, &rs);
        const rt_st_tensor *pk = rt_weights_find(wq, name);
        CHECK(pk && memcmp(pk->data, ref, (size_t)k / 2) == 0, "bf16 weight quantized from its exact values");
        free(f);
        free(ref);
        rt_nf4_state_free(&rs);
    } else {
        CHECK(0, "open bf16 dirs: %s", rt_error_message());
    }

    /* merge into the bf16 NF4 base: projections come back as bf16 */
    const char *mdir = rt_tmp("bf16m");
    CHECK(rt_merge_write_hf(qdir, rt_tmp("adapter"), mdir) == RT_OK, "merge bf16 NF4: %s", rt_error_message());
    rt_weights *wm = NULL;
    if (wq && rt_weights_open(mdir, &wm, &c) == RT_OK) {
        CHECK(!strcmp(c.torch_dtype, "bfloat16"), "merged torch_dtype %s", c.torch_dtype);
        const rt_st_tensor *t = rt_weights_find(wm, name);
        const rt_st_tensor *e = rt_weights_find(wm, "model.embed_tokens.weight");
        CHECK(t && t->dtype == RT_ST_BF16 && e && e->dtype == RT_ST_BF16, "merged tensors bf16");
        /* gate_proj is adapted: bf16(dequant(W) + 2 B A), B and A from the adapter file */
        rt_safetensors *ad = NULL;
        rt_st_open(rt_tmp("adapter/adapter_model.safetensors"), &ad);
        const rt_st_tensor *A = ad ? rt_st_find(ad, "base_model.model.model.layers.4.mlp.gate_proj.lora_A.weight") : NULL;
        const rt_st_tensor *B = ad ? rt_st_find(ad, "base_model.model.model.layers.4.mlp.gate_proj.lora_B.weight") : NULL;
        uint8_t *packed = NULL;
        rt_nf4_state st;
        bool found;
        const int64_t shape[2] = {172, 64};
        int bad = 0, changed = 0;
        if (t && A && B && rt_nf4_from_weights(wq, name, shape, &packed, &st, &found) == RT_OK && found) {
            float *W = malloc(172 * 64 * 4);
            rt_nf4_dequantize(packed, &st, W);
            for (int i = 0; i < 172; i++)
                for (int j = 0; j < 64; j++) {
                    double acc = 0;
                    for (int r = 0; r < 4; r++)
                        acc += (double)((const float *)B->data)[i * 4 + r] * ((const float *)A->data)[r * 64 + j];
                    float want = (float)(W[i * 64 + j] + 2.0 * acc);
                    float got = rt_bf16_to_f32(((const uint16_t *)t->data)[i * 64 + j]);
                    bad += fabsf(got - want) > fabsf(want) * (1.0f / 256) + 1e-30f;
                    changed += got != rt_bf16_to_f32(rt_f32_to_bf16(W[i * 64 + j]));
                }
            free(W);
        } else {
            bad = -1;
        }
        CHECK(bad == 0 && changed > 1000, "bf16 merged gate_proj = bf16(W + 2 B A) (%d off, %d changed)", bad, changed);
        free(packed);
        rt_nf4_state_free(&st);
        rt_st_close(ad);
        rt_weights_close(wm);
    }
    rt_weights_close(wb);
    rt_weights_close(wq);
    for (size_t i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    free(ts);
}

/* ---- CLI ------------------------------------------------------------------- */

static int run(const char *args, const char *log) {
    char cmd[20000];
    snprintf(cmd, sizeof cmd, "%s %s >/dev/null 2>%s", RETORT_BIN, args, log);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(const char *bin, const char *tok) {
    char args[16384];
    const char *log = rt_tmp("cli.log");
    snprintf(args, sizeof args, "quantize --model %s --tokenizer %s --out %s", bin, tok, rt_tmp("cq"));
    CHECK(run(args, log) == 0, "retort quantize exit 0");
    char *text = rt_slurp(log, NULL);
    CHECK(text && strstr(text, "bits per parameter") && strstr(text, "4.12"), "quantize report: %s",
          text ? text : "");
    free(text);
    CHECK(file_exists(rt_tmp("cq/tokenizer.json")) && file_exists(rt_tmp("cq/model.safetensors")),
          "quantize wrote tokenizer + weights");

    snprintf(args, sizeof args, "merge --model %s --adapter %s --out %s", rt_tmp("cq"),
             rt_tmp("adapter"), rt_tmp("cm"));
    CHECK(run(args, log) == 0, "retort merge exit 0");
    CHECK(file_exists(rt_tmp("cm/tokenizer.json")) && file_exists(rt_tmp("cm/model.safetensors")),
          "merge copied the tokenizer");

    snprintf(args, sizeof args, "quantize --model %s --out %s", rt_tmp("nope"), rt_tmp("cq2"));
    CHECK(run(args, log) == 2, "quantize bad path exit 2");
    text = rt_slurp(log, NULL);
    CHECK(text && strstr(text, "retort: error:") && strstr(text, "nope"), "error line: %s", text ? text : "");
    free(text);
    snprintf(args, sizeof args, "merge --model %s --adapter %s --out %s", rt_tmp("cq"),
             rt_tmp("nope"), rt_tmp("cm2"));
    CHECK(run(args, log) == 2, "merge bad adapter exit 2");
    text = rt_slurp(log, NULL);
    CHECK(text && strstr(text, "retort: error:"), "merge error line: %s", text ? text : "");
    free(text);
}

int main(void) {
    char bin[4096], tok[4096];
    snprintf(bin, sizeof bin, "%s", rt_test_shared("models/stories260K/stories260K.bin"));
    snprintf(tok, sizeof tok, "%s", rt_test_shared("models/stories260K/tok512.bin"));
    if (!file_exists(bin) || !file_exists(tok)) {
        SKIP("stories260K not found at %s", bin);
        return rt_test_summary();
    }
    test_quantize(bin);
    test_load_tensor(bin);
    test_corrupt();
    test_merge(bin);
    test_bf16(bin);
    test_cli(bin, tok);
    return rt_test_summary();
}
