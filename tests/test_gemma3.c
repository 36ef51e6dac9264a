/* retort — the Gemma 3 decoder on a tiny random model (no files needed; the
 * real Gemma 3 270M against transformers and llama.cpp is in
 * tests/interop/test_gemma3.py).
 *
 * - config.json round trip: rt_llama_save_hf writes a Gemma3TextConfig that
 *   reads back with every Gemma field, and the reloaded model gives the same
 *   logits bit for bit (norm weights stay HF's w both ways);
 * - the KV-cache path (one token at a time, keys longer than queries) gives
 *   the full forward's logits with a sliding window shorter than the text;
 * - the window is honoured: with every layer local, a position's logits do
 *   not depend on tokens beyond the layers' combined reach (L * (window-1)
 *   positions back), and do depend on them once a layer is global.
 * Shapes are chosen so that head_dim (12) != hidden/heads (8) and
 * query_pre_attn_scalar (16) != head_dim, exercising both.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tests/cli_util.h"
#include "tests/testutil.h"
#include "train/model/llama.h"

enum { V = 40, T = 10 };

static rt_llama_config tiny(int layers, int pattern) {
    rt_llama_config c = {.hidden_size = 16, .intermediate_size = 24, .num_hidden_layers = layers,
                         .num_attention_heads = 2, .num_key_value_heads = 1, .vocab_size = V,
                         .max_position_embeddings = 64, .bos_token_id = 2, .eos_token_id = 1,
                         .rms_norm_eps = 1e-6f, .rope_theta = 1e6f, .tie_word_embeddings = true,
                         .arch = RT_ARCH_GEMMA3, .head_dim = 12, .sliding_window = 4,
                         .sliding_window_pattern = pattern, .rope_local_base_freq = 1e4f,
                         .query_pre_attn_scalar = 16.0f};
    snprintf(c.torch_dtype, sizeof c.torch_dtype, "float32");
    return c;
}

/* A random model whose norm weights are not all 0 (so 1 + w matters). */
static rt_llama *make(const rt_llama_config *c) {
    rt_llama_opts o = {.device = RT_CPU, .seed = 11};
    rt_llama *m = NULL;
    rt_status s = rt_llama_new(c, &o, 0.3f, &m);
    CHECK(s == RT_OK, "rt_llama_new: %s", rt_error_message());
    if (s != RT_OK) return NULL;
    float *p = m->params.data;
    for (int i = 0; i < m->params.count; i++) {
        const rt_tensor *t = m->params.tensors[i];
        if (strstr(t->name, "norm.weight"))
            for (int64_t j = 0; j < rt_numel(t); j++) p[m->params.offsets[i] + j] = 0.3f * sinf((float)(i + 3 * j));
    }
    return m;
}

static void logits(rt_llama *m, const int32_t *ids, float *out) {
    rt_ctx *ctx = rt_ctx_new(RT_CPU, 0);
    ctx->no_grad = true;
    int32_t pos[T];
    for (int i = 0; i < T; i++) pos[i] = i;
    int64_t shape[2] = {1, T};
    rt_status s = rt_to_host(ctx, rt_llama_forward(ctx, m, rt_from_i32(ctx, ids, 2, shape),
                                                   rt_from_i32(ctx, pos, 2, shape), NULL), out);
    CHECK(s == RT_OK, "forward: %s", rt_error_message());
    rt_ctx_free(ctx);
}

static double max_rel(const float *a, const float *b, int n) {
    double d = 0, m = 1e-30;
    for (int i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return d / m;
}

static const int32_t ids_a[T] = {2, 5, 9, 30, 7, 7, 13, 21, 3, 38};

static void test_roundtrip(void) {
    rt_llama_config c = tiny(3, 3);
    rt_llama *m = make(&c), *back = NULL;
    if (!m) return;
    char dir[512];
    snprintf(dir, sizeof dir, "%s", rt_tmp("gemma3-hf"));
    rt_status s = rt_llama_save_hf(m, NULL, dir);
    rt_llama_opts lo = {.device = RT_CPU};
    if (s == RT_OK) s = rt_llama_load(dir, &lo, &back);
    CHECK(s == RT_OK, "save/load: %s", rt_error_message());
    if (s == RT_OK) {
        const rt_llama_config *b = &back->cfg;
        CHECK(b->arch == RT_ARCH_GEMMA3 && b->head_dim == 12 && b->sliding_window == 4 &&
                  b->sliding_window_pattern == 3 && b->rope_local_base_freq == 1e4f &&
                  b->rope_theta == 1e6f && b->query_pre_attn_scalar == 16.0f && b->tie_word_embeddings,
              "Gemma fields not kept");
        float a[T * V], r[T * V];
        logits(m, ids_a, a);
        logits(back, ids_a, r);
        CHECK(!memcmp(a, r, sizeof a), "reloaded Gemma model gives other logits");
    }
    rt_llama_free(m);
    rt_llama_free(back);
}

static void test_decode_matches_forward(void) {
    rt_llama_config c = tiny(3, 3);
    rt_llama *m = make(&c);
    if (!m) return;
    float full[T * V], step[T * V];
    logits(m, ids_a, full);
    rt_ctx *ctx = rt_ctx_new(RT_CPU, 0);
    ctx->no_grad = true;
    rt_kv_cache kv;
    rt_status s = rt_kv_cache_init(&kv, m, T);
    for (int i = 0; s == RT_OK && i < T; i++) s = rt_llama_decode(ctx, m, &kv, ids_a + i, 1, step + i * V);
    CHECK(s == RT_OK, "decode: %s", rt_error_message());
    double e = max_rel(step, full, T * V);
    CHECK(e <= 1e-5, "KV-cache decode differs from the forward by %.3g (window 4 < %d tokens)", e, T);
    printf("gemma3 decode vs forward (window 4, %d tokens): max rel %.3g\n", T, e);
    rt_kv_cache_free(&kv);
    rt_ctx_free(ctx);
    rt_llama_free(m);
}

/* Two local layers of window 4 reach 2 * 3 = 6 positions back: the last
 * position (9) sees tokens 3..9 only. */
static void test_window_reach(void) {
    int32_t ids_b[T];
    memcpy(ids_b, ids_a, sizeof ids_b);
    ids_b[1] = 17, ids_b[2] = 33; /* outside the reach of position 9 */
    float a[T * V], b[T * V];
    rt_llama_config local = tiny(2, 100);
    rt_llama *m = make(&local);
    if (!m) return;
    logits(m, ids_a, a);
    logits(m, ids_b, b);
    CHECK(!memcmp(a + 9 * V, b + 9 * V, V * sizeof(float)),
          "all-local model: position 9 depends on tokens 1, 2 (window 4, 2 layers)");
    rt_llama_free(m);
    rt_llama_config global = tiny(2, 2); /* layer 1 global */
    if (!(m = make(&global))) return;
    logits(m, ids_a, a);
    logits(m, ids_b, b);
    CHECK(memcmp(a + 9 * V, b + 9 * V, V * sizeof(float)) != 0,
          "with a global layer, position 9 must see tokens 1, 2");
    rt_llama_free(m);
}

int main(void) {
    test_roundtrip();
    test_decode_matches_forward();
    test_window_reach();
    return rt_test_summary();
}
