/* retort — writes a synthetic Llama with random weights as a Hugging Face
 * model directory, for benchmarks at a real model's shape without its weights.
 *
 *   make_synthetic OUT_DIR [--shape 15m|smollm2-135m] [--max-pos N] [--tokenizer TOKENIZER] [--untied] [--seed S]
 *
 * --max-pos N overrides max_position_embeddings (only checked against the
 * training sequence length). --shape smollm2-135m: HuggingFaceTB/SmolLM2-135M's config.json (hidden 576,
 * 30 layers, 9 heads, 3 KV heads, head dim 64, MLP 1536, vocab 49152, tied,
 * rope_theta 100000; 2048 positions here), 134,515,008 parameters, ~538 MB.
 *
 * Default shape (15m): Karpathy's stories15M (llama2.c tinyllamas): hidden 288, 6 layers,
 * 6 heads, 6 KV heads, MLP width 768, vocab 32000, 256 positions, RMSNorm
 * eps 1e-5, rope_theta 10000. stories15M shares its classifier with the
 * token embedding, so the synthetic model is tied unless --untied is given
 * (which adds an lm_head.weight [32000, 288], +9.2M parameters).
 *
 * Weights: every matrix N(0, 0.02) (transformers' LlamaConfig
 * initializer_range), every RMSNorm weight 1 (LlamaRMSNorm's init), drawn
 * with xorshift64* + Box-Muller from --seed (default 1), so a rerun gives the
 * same bytes. Written with rt_weights_save_hf: OUT_DIR/config.json +
 * OUT_DIR/model.safetensors (F32, about 61 MB tied).
 *
 * --tokenizer (any form rt_tokenizer_load reads, e.g. the llama2.c
 * tokenizer.bin of the Llama-2 vocabulary) is loaded and saved into OUT_DIR
 * with rt_tokenizer_save_hf, so OUT_DIR is a complete model directory whose
 * token ids fit the 32000-row embedding.
 *
 * Build (see bench/cpu_bench.sh, which does this):
 *   gcc -std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -I. bench/make_synthetic.c \
 *       build/libretort_core.a -lcjson -lyaml -lzstd -lopenblas -fopenmp -lm
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/formats/llama_config.h"
#include "train/tokenizer/tokenizer.h"
#include "train/formats/model_file.h"

static int64_t D = 288, L = 6, H = 6, HKV = 6, F = 768, V = 32000, T = 256;
static float THETA = 10000.0f;

static uint64_t rng = 1;

static double uniform01(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    /* top 53 bits of xorshift64* -> (0, 1]; never 0, so log() below is finite */
    return ((double)((rng * 0x2545F4914F6CDD1Dull) >> 11) + 1.0) / 9007199254740992.0;
}

/* Box-Muller; one of the pair is enough here. */
static float normal(float std) {
    double u1 = uniform01(), u2 = uniform01();
    return (float)(std * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static rt_status add(rt_weights *w, const char *name, int64_t rows, int64_t cols, bool is_norm) {
    int64_t n = rows * (cols ? cols : 1);
    float *p = malloc((size_t)n * sizeof *p);
    if (!p) return rt_errorf(RT_EINTERNAL, "out of memory for %s", name);
    for (int64_t i = 0; i < n; i++) p[i] = is_norm ? 1.0f : normal(0.02f);
    int64_t shape[2] = {rows, cols};
    return rt_weights_add(w, name, RT_ST_F32, cols ? 2 : 1, shape, p, true);
}

static rt_status build(rt_weights *w, bool tied) {
    char name[128];
    RT_TRY(add(w, "model.embed_tokens.weight", V, D, false));
    for (int l = 0; l < (int)L; l++) {
        const struct { const char *n; int64_t r, c; bool norm; } t[] = {
            {"input_layernorm", D, 0, true},     {"self_attn.q_proj", H * (D / H), D, false},
            {"self_attn.k_proj", HKV * (D / H), D, false},
            {"self_attn.v_proj", HKV * (D / H), D, false},
            {"self_attn.o_proj", D, H * (D / H), false},
            {"post_attention_layernorm", D, 0, true}, {"mlp.gate_proj", F, D, false},
            {"mlp.up_proj", F, D, false},        {"mlp.down_proj", D, F, false},
        };
        for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, t[i].n);
            RT_TRY(add(w, name, t[i].r, t[i].c, t[i].norm));
        }
    }
    RT_TRY(add(w, "model.norm.weight", D, 0, true));
    if (!tied) RT_TRY(add(w, "lm_head.weight", V, D, false));
    return RT_OK;
}

int main(int argc, char **argv) {
    const char *out = NULL, *tok_path = NULL;
    bool tied = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tok_path = argv[++i];
        else if (!strcmp(argv[i], "--untied")) tied = false;
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc && !strcmp(argv[i + 1], "15m")) i++;
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc && !strcmp(argv[i + 1], "smollm2-135m")) {
            D = 576, L = 30, H = 9, HKV = 3, F = 1536, V = 49152, T = 2048, THETA = 100000.0f;
            i++;
        }
        else if (!strcmp(argv[i], "--max-pos") && i + 1 < argc) T = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) rng = strtoull(argv[++i], NULL, 10) | 1;
        else if (argv[i][0] != '-' && !out) out = argv[i];
        else {
            fprintf(stderr, "usage: make_synthetic OUT_DIR [--shape 15m|smollm2-135m] [--max-pos N] [--tokenizer TOK] [--untied] [--seed S]\n");
            return 2;
        }
    }
    if (!out) {
        fprintf(stderr, "usage: make_synthetic OUT_DIR [--shape 15m|smollm2-135m] [--max-pos N] [--tokenizer TOK] [--untied] [--seed S]\n");
        return 2;
    }
    rt_llama_config cfg = {
        .hidden_size = (int)D, .intermediate_size = (int)F, .num_hidden_layers = (int)L,
        .num_attention_heads = (int)H, .num_key_value_heads = (int)HKV, .vocab_size = (int)V,
        .max_position_embeddings = (int)T, .bos_token_id = 1, .eos_token_id = 2,
        .rms_norm_eps = 1e-5f, .rope_theta = THETA, .tie_word_embeddings = tied,
        .attention_bias = false, .torch_dtype = "float32",
    };
    rt_weights *w = NULL;
    rt_tokenizer *tok = NULL;
    rt_status s = rt_weights_new("synthetic Llama", &w);
    if (s == RT_OK) s = build(w, tied);
    if (s == RT_OK) s = rt_weights_save_hf(w, &cfg, out);
    if (s == RT_OK && tok_path) s = rt_tokenizer_load(tok_path, &tok);
    if (s == RT_OK && tok && rt_tokenizer_vocab_size(tok) > V)
        s = rt_errorf(RT_EINPUT, "%s: %d tokens do not fit the %lld-row embedding", tok_path,
                      rt_tokenizer_vocab_size(tok), (long long)V);
    if (s == RT_OK && tok) s = rt_tokenizer_save_hf(tok, out);
    rt_tokenizer_free(tok);
    rt_weights_close(w);
    if (s != RT_OK) {
        fprintf(stderr, "make_synthetic: %s\n", rt_error_message());
        return s;
    }
    long long n = (long long)V * D * (tied ? 1 : 2) + D +
                  (long long)L * (2 * D + (long long)D * D * 2 + (long long)D * (D / H) * HKV * 2 +
                                  3LL * D * F);
    fprintf(stderr, "make_synthetic: wrote %s (%lld parameters, %s)\n", out, n,
            tied ? "tied embeddings" : "untied lm_head");
    return 0;
}
