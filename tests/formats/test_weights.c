/* Tests for train/formats/weights.[ch], model_file.[ch], llama2c.[ch] and llama_config.[ch]:
 * config.json parsing and errors, stories260K.bin against its raw floats
 * (the HF q/k permutation by index arithmetic), legacy/v1/unshared llama2.c
 * variants, HF save -> reopen, sharded indexes and shape checks. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/testutil.h"
#include "train/formats/model_file.h"

static char pbuf[4][512];
static int pnext;
static const char *tmp_path(const char *name) {
    char *b = pbuf[pnext++ % 4];
    snprintf(b, 512, "%s/%s", rt_test_tmpdir(), name);
    return b;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
}

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

/* Field by field: struct padding bytes are unspecified. */
static int cfg_equal(const rt_llama_config *a, const rt_llama_config *b) {
    return a->hidden_size == b->hidden_size && a->intermediate_size == b->intermediate_size &&
           a->num_hidden_layers == b->num_hidden_layers &&
           a->num_attention_heads == b->num_attention_heads &&
           a->num_key_value_heads == b->num_key_value_heads && a->vocab_size == b->vocab_size &&
           a->max_position_embeddings == b->max_position_embeddings &&
           a->bos_token_id == b->bos_token_id && a->eos_token_id == b->eos_token_id &&
           a->rms_norm_eps == b->rms_norm_eps && a->rope_theta == b->rope_theta &&
           a->tie_word_embeddings == b->tie_word_embeddings &&
           a->attention_bias == b->attention_bias && strcmp(a->torch_dtype, b->torch_dtype) == 0;
}

/* ---- config.json --------------------------------------------------------- */

static rt_status load_cfg_text(const char *text, rt_llama_config *c) {
    const char *p = tmp_path("config.json");
    write_text(p, text);
    rt_error_clear();
    return rt_llama_config_load(p, c);
}

static void test_config(void) {
    rt_llama_config c;
    rt_status s = load_cfg_text(
        "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"hidden_size\":2048,"
        "\"intermediate_size\":5632,\"num_hidden_layers\":22,\"num_attention_heads\":32,"
        "\"num_key_value_heads\":4,\"vocab_size\":32000,\"max_position_embeddings\":2048,"
        "\"rms_norm_eps\":1e-05,\"rope_theta\":10000.0,\"rope_scaling\":null,\"bos_token_id\":1,"
        "\"eos_token_id\":2,\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\","
        "\"hidden_act\":\"silu\"}", &c);
    CHECK(s == RT_OK, "TinyLlama config: %s", rt_error_message());
    CHECK(c.hidden_size == 2048 && c.intermediate_size == 5632 && c.num_hidden_layers == 22 &&
          c.num_attention_heads == 32 && c.num_key_value_heads == 4 && c.vocab_size == 32000 &&
          c.max_position_embeddings == 2048, "sizes");
    CHECK(c.rms_norm_eps == 1e-5f && c.rope_theta == 10000.0f && !c.tie_word_embeddings &&
          !c.attention_bias && c.bos_token_id == 1 && c.eos_token_id == 2, "scalars");
    CHECK(strcmp(c.torch_dtype, "bfloat16") == 0, "torch_dtype %s", c.torch_dtype);

    /* defaults, eos list, qwen2 biases */
    s = load_cfg_text("{\"model_type\":\"qwen2\",\"hidden_size\":896,\"intermediate_size\":4864,"
                      "\"num_hidden_layers\":24,\"num_attention_heads\":14,\"num_key_value_heads\":2,"
                      "\"vocab_size\":151936,\"rope_theta\":1000000.0,\"sliding_window\":32768,"
                      "\"use_sliding_window\":false,\"tie_word_embeddings\":true,"
                      "\"bos_token_id\":null,\"eos_token_id\":[151645,151643]}", &c);
    CHECK(s == RT_OK, "qwen2 config: %s", rt_error_message());
    CHECK(c.attention_bias && c.tie_word_embeddings && c.rope_theta == 1e6f, "qwen2 fields");
    CHECK(c.bos_token_id == -1 && c.eos_token_id == 151645, "bos null, first eos");
    CHECK(c.max_position_embeddings == 32768 && c.rms_norm_eps == 1e-6f, "qwen2 defaults");

    s = load_cfg_text("{\"architectures\":[\"MistralForCausalLM\"],\"hidden_size\":64,"
                      "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
                      "\"vocab_size\":100,\"max_position_embeddings\":4096,\"sliding_window\":null}", &c);
    CHECK(s == RT_OK && c.num_key_value_heads == 4, "mistral without sliding window, kv default: %s",
          rt_error_message());

    const struct { const char *json, *needle; } bad[] = {
        {"{\"model_type\":\"llama\",\"intermediate_size\":8,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":2,\"vocab_size\":10}", "\"hidden_size\""},
        {"{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":2,\"vocab_size\":10,\"rope_scaling\":{\"rope_type\":\"llama3\","
         "\"factor\":8.0}}", "rope_scaling"},
        {"{\"model_type\":\"gpt2\",\"hidden_size\":8}", "gpt2"},
        {"{\"architectures\":[\"GPTNeoXForCausalLM\"]}", "GPTNeoXForCausalLM"},
        {"{\"model_type\":\"mistral\",\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":2,\"vocab_size\":10,\"max_position_embeddings\":32768,"
         "\"sliding_window\":4096}", "sliding_window"},
        {"{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":3,\"vocab_size\":10}", "num_attention_heads"},
        {"{\"model_type\":\"llama\",\"hidden_size\":\"8\",\"intermediate_size\":8,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":2,\"vocab_size\":10}", "\"hidden_size\" must be an integer"},
        {"{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":2,\"vocab_size\":10,\"hidden_act\":\"gelu\"}", "gelu"},
        {"{\"model_type\":\"llama\",", "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s = load_cfg_text(bad[i].json, &c);
        CHECK(s == RT_EINPUT, "bad config %zu: status %d", i, s);
        CHECK(contains(rt_error_message(), "config.json") && contains(rt_error_message(), bad[i].needle),
              "bad config %zu: message '%s' should name the file and '%s'", i, rt_error_message(),
              bad[i].needle);
    }
    rt_error_clear();
    CHECK(rt_llama_config_load(tmp_path("nope.json"), &c) == RT_EINPUT &&
          contains(rt_error_message(), "nope.json"), "missing file");

    /* save -> load round trip */
    rt_llama_config a = {.hidden_size = 64, .intermediate_size = 172, .num_hidden_layers = 5,
                         .num_attention_heads = 8, .num_key_value_heads = 4, .vocab_size = 512,
                         .max_position_embeddings = 512, .bos_token_id = 1, .eos_token_id = 2,
                         .rms_norm_eps = 1e-5f, .rope_theta = 500000.0f, .tie_word_embeddings = true,
                         .attention_bias = true, .torch_dtype = "float16"};
    const char *p = tmp_path("saved_config.json");
    CHECK(rt_llama_config_save(&a, p) == RT_OK, "save config: %s", rt_error_message());
    rt_llama_config b;
    CHECK(rt_llama_config_load(p, &b) == RT_OK, "reload config: %s", rt_error_message());
    CHECK(cfg_equal(&a, &b), "saved config reloads identically");
    char text[4096] = {0};
    FILE *f = fopen(p, "rb");
    if (f) { fread(text, 1, sizeof text - 1, f); fclose(f); }
    CHECK(contains(text, "\"LlamaForCausalLM\"") && contains(text, "\"model_type\":\t\"llama\"") &&
          contains(text, "\"silu\"") && contains(text, "1e-05"), "config.json text:\n%s", text);
    printf("config.json: done\n");
}

/* ---- stories260K.bin ----------------------------------------------------- */

enum { D = 64, F = 172, L = 5, H = 8, HKV = 4, V = 512, S = 512, HD = D / H, KVD = HD * HKV };
/* float offsets of each section in the legacy file after the 28-byte header (README) */
enum {
    O_EMB = 0, O_ATT = O_EMB + V * D, O_WQ = O_ATT + L * D, O_WK = O_WQ + L * D * D,
    O_WV = O_WK + L * KVD * D, O_WO = O_WV + L * KVD * D, O_FFN = O_WO + L * D * D,
    O_W1 = O_FFN + L * D, O_W2 = O_W1 + L * F * D, O_W3 = O_W2 + L * D * F, O_FIN = O_W3 + L * F * D,
    O_FREQ = O_FIN + D, O_END = O_FREQ + S * HD
};

static float *raw; /* the file's floats after the header */

static int load_raw(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int32_t hdr[7];
    raw = malloc((size_t)O_END * 4);
    int ok = fread(hdr, 4, 7, f) == 7 && fread(raw, 4, O_END, f) == O_END && fgetc(f) == EOF;
    fclose(f);
    return ok;
}

static const float *tensor_f32(const rt_weights *w, const char *name) {
    const rt_st_tensor *t = rt_weights_find(w, name);
    return t && t->dtype == RT_ST_F32 ? t->data : NULL;
}

static void test_stories(const char *bin) {
    rt_weights *w = NULL;
    rt_llama_config c;
    rt_status s = rt_weights_open(bin, &w, &c);
    CHECK(s == RT_OK, "open stories260K: %s", rt_error_message());
    if (s) return;
    CHECK(c.hidden_size == 64 && c.intermediate_size == 172 && c.num_hidden_layers == 5 &&
          c.num_attention_heads == 8 && c.num_key_value_heads == 4 && c.vocab_size == 512 &&
          c.max_position_embeddings == 512 && c.tie_word_embeddings, "stories260K config");
    CHECK(c.rms_norm_eps == 1e-5f && c.rope_theta == 10000.0f && c.bos_token_id == 1 &&
          c.eos_token_id == 2 && !c.attention_bias, "llama2.c defaults");
    CHECK(rt_weights_count(w) == 3 - 1 + 9 * L, "tensor count %zu (tied: no lm_head)", rt_weights_count(w));
    CHECK(rt_weights_find(w, "lm_head.weight") == NULL, "tied model has no lm_head");
    CHECK(rt_weights_check_llama(w, &c) == RT_OK, "all HF tensors present: %s", rt_error_message());

    /* q_proj: HF row h*HD + j*HD/2 + i is raw row h*HD + 2*i + j (permute()) */
    int bad = 0;
    for (int l = 0; l < L; l += 2) {
        char n[96];
        snprintf(n, sizeof n, "model.layers.%d.self_attn.q_proj.weight", l);
        const float *q = tensor_f32(w, n);
        snprintf(n, sizeof n, "model.layers.%d.self_attn.k_proj.weight", l);
        const float *k = tensor_f32(w, n);
        CHECK(q && k, "layer %d q/k present", l);
        if (!q || !k) continue;
        for (int h = 0; h < H; h++)
            for (int j = 0; j < 2; j++)
                for (int i = 0; i < HD / 2; i++)
                    for (int col = 0; col < D; col += 7) {
                        int r = h * HD + j * (HD / 2) + i, rr = h * HD + 2 * i + j;
                        bad += q[r * D + col] != raw[O_WQ + l * D * D + rr * D + col];
                        if (h < HKV) bad += k[r * D + col] != raw[O_WK + l * KVD * D + rr * D + col];
                    }
    }
    CHECK(bad == 0, "%d q/k elements differ from the permuted raw rows", bad);
    /* spot values: q row 1 (h0, j0, i1) = raw row 2; row 4 (h0, j1, i0) = raw row 1 */
    const float *q0 = tensor_f32(w, "model.layers.0.self_attn.q_proj.weight");
    if (q0) {
        CHECK(q0[1 * D + 5] == raw[O_WQ + 2 * D + 5], "q0[1,5] = raw wq[0][2,5]");
        CHECK(q0[4 * D + 0] == raw[O_WQ + 1 * D + 0], "q0[4,0] = raw wq[0][1,0]");
        CHECK(q0[9 * D + 3] == raw[O_WQ + 10 * D + 3], "q0[9,3] = raw wq[0][10,3]");
        CHECK(q0[1 * D + 5] != raw[O_WQ + 1 * D + 5], "the permutation is not the identity here");
    }
    /* unpermuted tensors are the raw sections */
    const float *v3 = tensor_f32(w, "model.layers.3.self_attn.v_proj.weight");
    const float *up2 = tensor_f32(w, "model.layers.2.mlp.up_proj.weight");
    const float *gate4 = tensor_f32(w, "model.layers.4.mlp.gate_proj.weight");
    const float *down1 = tensor_f32(w, "model.layers.1.mlp.down_proj.weight");
    const float *o0 = tensor_f32(w, "model.layers.0.self_attn.o_proj.weight");
    const float *n3 = tensor_f32(w, "model.layers.3.post_attention_layernorm.weight");
    const float *a4 = tensor_f32(w, "model.layers.4.input_layernorm.weight");
    const float *emb = tensor_f32(w, "model.embed_tokens.weight");
    const float *fin = tensor_f32(w, "model.norm.weight");
    CHECK(v3 && memcmp(v3, raw + O_WV + 3 * KVD * D, KVD * D * 4) == 0, "v_proj = wv");
    CHECK(up2 && memcmp(up2, raw + O_W3 + 2 * F * D, F * D * 4) == 0, "up_proj = w3");
    CHECK(gate4 && memcmp(gate4, raw + O_W1 + 4 * F * D, F * D * 4) == 0, "gate_proj = w1");
    CHECK(down1 && memcmp(down1, raw + O_W2 + 1 * D * F, D * F * 4) == 0, "down_proj = w2");
    CHECK(o0 && memcmp(o0, raw + O_WO, D * D * 4) == 0, "o_proj = wo");
    CHECK(n3 && memcmp(n3, raw + O_FFN + 3 * D, D * 4) == 0, "post_attention_layernorm = rms_ffn");
    CHECK(a4 && memcmp(a4, raw + O_ATT + 4 * D, D * 4) == 0, "input_layernorm = rms_att");
    CHECK(emb && memcmp(emb, raw + O_EMB, V * D * 4) == 0, "embed_tokens");
    CHECK(fin && memcmp(fin, raw + O_FIN, D * 4) == 0, "norm = rms_final");

    /* shape checks */
    const int64_t qs[2] = {D, D}, wrong[2] = {D, 32};
    const rt_st_tensor *t = NULL;
    CHECK(rt_weights_expect(w, "model.layers.0.self_attn.q_proj.weight", 2, qs, &t) == RT_OK && t,
          "expect q_proj [64,64]");
    rt_error_clear();
    CHECK(rt_weights_expect(w, "model.layers.0.self_attn.q_proj.weight", 2, wrong, NULL) == RT_EINPUT,
          "expect wrong shape fails");
    char want[1024];
    snprintf(want, sizeof want, "%s: tensor model.layers.0.self_attn.q_proj.weight has shape [64,64], "
             "expected [64,32]", bin);
    CHECK(strcmp(rt_error_message(), want) == 0, "message '%s'", rt_error_message());
    CHECK(rt_weights_expect(w, "lm_head.weight", 2, qs, NULL) == RT_EINPUT &&
          contains(rt_error_message(), "missing tensor lm_head.weight"), "missing: %s", rt_error_message());

    /* save as HF, reopen: identical config and tensors */
    const char *dir = tmp_path("hf/stories260K");
    s = rt_weights_save_hf(w, &c, dir);
    CHECK(s == RT_OK, "save_hf: %s", rt_error_message());
    rt_weights *h = NULL;
    rt_llama_config hc;
    s = rt_weights_open(dir, &h, &hc);
    CHECK(s == RT_OK, "reopen HF dir: %s", rt_error_message());
    if (h) {
        CHECK(cfg_equal(&c, &hc), "config survives save_hf");
        CHECK(rt_weights_count(h) == rt_weights_count(w), "same tensor count");
        int diff = 0;
        for (size_t i = 0; i < rt_weights_count(w); i++) {
            const rt_st_tensor *x = rt_weights_get(w, i), *y = rt_weights_find(h, x->name);
            if (!y || y->dtype != RT_ST_F32 || y->ndim != x->ndim || y->nbytes != x->nbytes ||
                memcmp(x->shape, y->shape, sizeof x->shape) || memcmp(x->data, y->data, x->nbytes))
                diff++;
        }
        CHECK(diff == 0, "%d tensors differ after save_hf", diff);
        rt_weights_close(h);
    }
    char stp[600];
    snprintf(stp, sizeof stp, "%s/model.safetensors", dir);
    rt_safetensors *st = NULL;
    CHECK(rt_st_open(stp, &st) == RT_OK && rt_st_metadata(st, "format") &&
          strcmp(rt_st_metadata(st, "format"), "pt") == 0, "model.safetensors has format=pt");
    rt_st_close(st);
    /* a single .safetensors path finds config.json beside it */
    s = rt_weights_open(stp, &h, &hc);
    CHECK(s == RT_OK && rt_weights_count(h) == rt_weights_count(w), "open the .safetensors file: %s",
          rt_error_message());
    rt_weights_close(h);
    CHECK(rt_weights_convert_hf(bin, tmp_path("hf/converted")) == RT_OK &&
          access(tmp_path("hf/converted/config.json"), F_OK) == 0, "convert_hf");
    rt_weights_close(w);
    printf("stories260K: done\n");
}

/* llama2.c variants synthesized from the raw floats, checked against the
 * legacy reader's result. */
static void test_llama2c_variants(const char *bin) {
    rt_weights *ref = NULL, *w = NULL;
    rt_llama_config c, rc;
    if (rt_weights_open(bin, &ref, &rc) != RT_OK) return;

    /* version 1: 256-byte header, sections in version1_export order */
    const char *p = tmp_path("v1.bin");
    FILE *f = fopen(p, "wb");
    unsigned char hdr[256] = {0};
    const uint32_t magic = 0x616b3432u;
    const int32_t ver = 1, prm[7] = {D, F, L, H, HKV, V, S};
    memcpy(hdr, &magic, 4);
    memcpy(hdr + 4, &ver, 4);
    memcpy(hdr + 8, prm, 28);
    hdr[36] = 1; /* shared classifier */
    fwrite(hdr, 1, 256, f);
    fwrite(raw + O_ATT, 4, L * D, f);
    fwrite(raw + O_FFN, 4, L * D, f);
    fwrite(raw + O_FIN, 4, D, f);
    fwrite(raw + O_EMB, 4, V * D, f);
    fwrite(raw + O_WQ, 4, O_FFN - O_WQ, f); /* wq wk wv wo are adjacent in both formats */
    fwrite(raw + O_W1, 4, O_FIN - O_W1, f); /* w1 w2 w3 too */
    fclose(f);
    rt_status s = rt_weights_open(p, &w, &c);
    CHECK(s == RT_OK, "open v1: %s", rt_error_message());
    if (w) {
        CHECK(cfg_equal(&c, &rc), "v1 config = legacy config");
        int diff = rt_weights_count(w) != rt_weights_count(ref);
        for (size_t i = 0; i < rt_weights_count(ref); i++) {
            const rt_st_tensor *x = rt_weights_get(ref, i), *y = rt_weights_find(w, x->name);
            diff += !y || y->nbytes != x->nbytes || memcmp(x->data, y->data, x->nbytes) != 0;
        }
        CHECK(diff == 0, "v1 tensors = legacy tensors (%d differ)", diff);
        rt_weights_close(w);
    }

    /* legacy with negative vocab: unshared classifier after freq_cis */
    p = tmp_path("unshared.bin");
    f = fopen(p, "wb");
    const int32_t prm2[7] = {D, F, L, H, HKV, -V, S};
    fwrite(prm2, 4, 7, f);
    fwrite(raw, 4, O_END, f);
    float *cls = malloc((size_t)V * D * 4);
    for (int i = 0; i < V * D; i++) cls[i] = (float)i * 0.5f;
    fwrite(cls, 4, (size_t)V * D, f);
    fclose(f);
    s = rt_weights_open(p, &w, &c);
    CHECK(s == RT_OK, "open unshared: %s", rt_error_message());
    if (w) {
        const float *lm = tensor_f32(w, "lm_head.weight");
        CHECK(!c.tie_word_embeddings && c.vocab_size == V, "unshared config");
        CHECK(lm && memcmp(lm, cls, (size_t)V * D * 4) == 0, "lm_head = trailing classifier");
        CHECK(rt_weights_check_llama(w, &c) == RT_OK, "untied set complete: %s", rt_error_message());
        rt_weights_close(w);
    }
    free(cls);

    /* truncated copy: RT_EINPUT naming the file */
    p = tmp_path("truncated.bin");
    f = fopen(p, "wb");
    fwrite(prm, 4, 7, f);
    fwrite(raw, 4, O_END - 100, f);
    fclose(f);
    rt_error_clear();
    s = rt_weights_open(p, &w, &c);
    CHECK(s == RT_EINPUT && w == NULL, "truncated .bin fails: %d", s);
    CHECK(contains(rt_error_message(), p) && contains(rt_error_message(), "truncated"),
          "message: %s", rt_error_message());

    p = tmp_path("tiny.bin");
    write_text(p, "hello");
    s = rt_weights_open(p, &w, &c);
    CHECK(s == RT_EINPUT && contains(rt_error_message(), p), "5-byte file: %s", rt_error_message());
    p = tmp_path("badhdr.bin");
    f = fopen(p, "wb");
    const int32_t prm3[7] = {D, F, L, 7, HKV, V, S};
    fwrite(prm3, 4, 7, f);
    fwrite(raw, 4, 64, f);
    fclose(f);
    s = rt_weights_open(p, &w, &c);
    CHECK(s == RT_EINPUT && contains(rt_error_message(), "n_heads 7"), "bad header: %s", rt_error_message());
    rt_weights_close(ref);
    printf("llama2.c variants: done\n");
}

/* ---- synthetic HF models --------------------------------------------------- */

/* A tiny Llama (D 4, H 2, Hkv 1, F 6, L 1, V 8) with biases, untied, bf16. */
static const rt_llama_config tiny = {
    .hidden_size = 4, .intermediate_size = 6, .num_hidden_layers = 1, .num_attention_heads = 2,
    .num_key_value_heads = 1, .vocab_size = 8, .max_position_embeddings = 16, .bos_token_id = 1,
    .eos_token_id = 2, .rms_norm_eps = 1e-6f, .rope_theta = 10000.0f, .tie_word_embeddings = false,
    .attention_bias = true, .torch_dtype = "bfloat16"};

static const struct { const char *name; int ndim; int64_t a, b; } tiny_t[] = {
    {"model.embed_tokens.weight", 2, 8, 4}, {"lm_head.weight", 2, 8, 4}, {"model.norm.weight", 1, 4, 0},
    {"model.layers.0.input_layernorm.weight", 1, 4, 0},
    {"model.layers.0.post_attention_layernorm.weight", 1, 4, 0},
    {"model.layers.0.self_attn.q_proj.weight", 2, 4, 4}, {"model.layers.0.self_attn.q_proj.bias", 1, 4, 0},
    {"model.layers.0.self_attn.k_proj.weight", 2, 2, 4}, {"model.layers.0.self_attn.k_proj.bias", 1, 2, 0},
    {"model.layers.0.self_attn.v_proj.weight", 2, 2, 4}, {"model.layers.0.self_attn.v_proj.bias", 1, 2, 0},
    {"model.layers.0.self_attn.o_proj.weight", 2, 4, 4}, {"model.layers.0.mlp.gate_proj.weight", 2, 6, 4},
    {"model.layers.0.mlp.up_proj.weight", 2, 6, 4}, {"model.layers.0.mlp.down_proj.weight", 2, 4, 6},
};
#define NTINY (sizeof tiny_t / sizeof tiny_t[0])

static uint16_t tiny_val(size_t t, size_t i) { return rt_f32_to_bf16((float)(t * 100 + i) * 0.01f - 1.0f); }

static rt_weights *make_tiny(void) {
    rt_weights *w;
    if (rt_weights_new("tiny", &w) != RT_OK) return NULL;
    for (size_t t = 0; t < NTINY; t++) {
        size_t n = (size_t)tiny_t[t].a * (tiny_t[t].ndim == 2 ? (size_t)tiny_t[t].b : 1);
        uint16_t *d = malloc(n * 2);
        for (size_t i = 0; i < n; i++) d[i] = tiny_val(t, i);
        const int64_t shape[2] = {tiny_t[t].a, tiny_t[t].b};
        CHECK(rt_weights_add(w, tiny_t[t].name, RT_ST_BF16, tiny_t[t].ndim, shape, d, true) == RT_OK,
              "add %s", tiny_t[t].name);
    }
    return w;
}

static void test_hf_sets(void) {
    rt_weights *w = make_tiny();
    if (!w) return;
    const int64_t sh[1] = {4};
    uint16_t dup[4];
    CHECK(rt_weights_add(w, "model.norm.weight", RT_ST_BF16, 1, sh, dup, false) == RT_EINPUT &&
          contains(rt_error_message(), "twice"), "duplicate add rejected");
    CHECK(rt_weights_check_llama(w, &tiny) == RT_OK, "tiny set complete: %s", rt_error_message());
    const char *dir = tmp_path("tiny_hf");
    CHECK(rt_weights_save_hf(w, &tiny, dir) == RT_OK, "save tiny: %s", rt_error_message());
    rt_weights *h = NULL;
    rt_llama_config c;
    CHECK(rt_weights_open(dir, &h, &c) == RT_OK, "reopen tiny: %s", rt_error_message());
    if (h) {
        rt_llama_config want = tiny;
        strcpy(want.torch_dtype, "float32");
        CHECK(cfg_equal(&c, &want), "tiny config round trip (torch_dtype float32)");
        int bad = 0;
        for (size_t t = 0; t < NTINY; t++) {
            const float *x = tensor_f32(h, tiny_t[t].name);
            size_t n = (size_t)tiny_t[t].a * (tiny_t[t].ndim == 2 ? (size_t)tiny_t[t].b : 1);
            if (!x) { bad++; continue; }
            for (size_t i = 0; i < n; i++) bad += x[i] != rt_bf16_to_f32(tiny_val(t, i));
        }
        CHECK(bad == 0, "bf16 -> f32 on save: %d mismatches", bad);
        rt_weights_close(h);
    }

    /* sharded: two files + index */
    const char *sd = tmp_path("tiny_sharded");
    mkdir(sd, 0777);
    char p1[600], p2[600], ip[600], cp[600];
    snprintf(p1, sizeof p1, "%s/model-00001-of-00002.safetensors", sd);
    snprintf(p2, sizeof p2, "%s/model-00002-of-00002.safetensors", sd);
    snprintf(ip, sizeof ip, "%s/model.safetensors.index.json", sd);
    snprintf(cp, sizeof cp, "%s/config.json", sd);
    rt_st_tensor a[NTINY];
    for (size_t t = 0; t < NTINY; t++) a[t] = *rt_weights_find(w, tiny_t[t].name);
    CHECK(rt_st_write(p1, a, 3, NULL) == RT_OK && rt_st_write(p2, a + 3, NTINY - 3, NULL) == RT_OK,
          "write shards");
    CHECK(rt_llama_config_save(&tiny, cp) == RT_OK, "write config");
    char index[8192];
    size_t k = (size_t)snprintf(index, sizeof index, "{\"metadata\":{\"total_size\":1},\"weight_map\":{");
    for (size_t t = 0; t < NTINY; t++)
        k += (size_t)snprintf(index + k, sizeof index - k, "%s\"%s\":\"model-0000%d-of-00002.safetensors\"",
                              t ? "," : "", tiny_t[t].name, t < 3 ? 1 : 2);
    snprintf(index + k, sizeof index - k, "}}");
    write_text(ip, index);
    CHECK(rt_weights_open(sd, &h, &c) == RT_OK, "open sharded: %s", rt_error_message());
    if (h) {
        CHECK(rt_weights_count(h) == NTINY && rt_weights_check_llama(h, &c) == RT_OK, "sharded set complete");
        const rt_st_tensor *x = rt_weights_find(h, "model.layers.0.mlp.down_proj.weight");
        CHECK(x && x->dtype == RT_ST_BF16 && ((const uint16_t *)x->data)[5] == tiny_val(NTINY - 1, 5),
              "tensor from shard 2 (dtype kept)");
        rt_weights_close(h);
    }
    /* index that puts a tensor in the wrong shard */
    char *at = strstr(index, "\"model.norm.weight\":\"model-00001");
    if (at) at[strlen("\"model.norm.weight\":\"model-0000")] = '2';
    write_text(ip, index);
    rt_error_clear();
    CHECK(rt_weights_open(sd, &h, &c) == RT_EINPUT && contains(rt_error_message(), "model.norm.weight") &&
          contains(rt_error_message(), "index.json"), "wrong shard detected: %s", rt_error_message());

    /* a model.safetensors whose q_proj has the wrong shape */
    const char *bd = tmp_path("tiny_badshape");
    mkdir(bd, 0777);
    char bp[600], bc[600];
    snprintf(bp, sizeof bp, "%s/model.safetensors", bd);
    snprintf(bc, sizeof bc, "%s/config.json", bd);
    for (size_t t = 0; t < NTINY; t++)
        if (strcmp(a[t].name, "model.layers.0.self_attn.q_proj.weight") == 0) {
            a[t].shape[0] = 2;
            a[t].shape[1] = 8;
        }
    CHECK(rt_st_write(bp, a, NTINY, NULL) == RT_OK && rt_llama_config_save(&tiny, bc) == RT_OK,
          "write bad-shape model");
    CHECK(rt_weights_open(bd, &h, &c) == RT_OK, "bad-shape model opens (checked on request)");
    if (h) {
        const int64_t q[2] = {4, 4};
        char want[1024];
        snprintf(want, sizeof want, "%s: tensor model.layers.0.self_attn.q_proj.weight has shape "
                 "[2,8], expected [4,4]", bp);
        rt_error_clear();
        CHECK(rt_weights_expect(h, "model.layers.0.self_attn.q_proj.weight", 2, q, NULL) == RT_EINPUT &&
              strcmp(rt_error_message(), want) == 0, "expect: '%s'", rt_error_message());
        rt_error_clear();
        CHECK(rt_weights_check_llama(h, &c) == RT_EINPUT && strcmp(rt_error_message(), want) == 0,
              "check_llama: '%s'", rt_error_message());
        CHECK(rt_weights_save_hf(h, &c, tmp_path("never")) == RT_EINPUT, "save_hf refuses a bad set");
        rt_weights_close(h);
    }
    rt_error_clear();
    CHECK(rt_weights_open(tmp_path("no_such_model"), &h, &c) == RT_EINPUT &&
          contains(rt_error_message(), "no_such_model"), "missing path: %s", rt_error_message());
    CHECK(rt_weights_open(rt_test_tmpdir(), &h, &c) == RT_EINPUT, "dir without config.json");
    rt_weights_close(w);
    printf("HF sets: done\n");
}

int main(void) {
    test_config();
    const char *bin = rt_test_shared("models/stories260K/stories260K.bin");
    if (load_raw(bin)) {
        test_stories(bin);
        test_llama2c_variants(bin);
    } else {
        SKIP("%s not readable", bin);
    }
    free(raw);
    test_hf_sets();
    return rt_test_summary();
}
