/* GGUF models and adapters end to end, on stories260K (the unit-test model):
 *  - `retort export gguf` of the llama2.c checkpoint (F32, with its
 *    SentencePiece vocabulary as tokenizer.ggml.*) evaluates to exactly the
 *    NLL of the .bin: config, names, the q/k permutation there and back, and
 *    the GGUF tokenizer all round-trip; F16 and Q8_0 stay close;
 *  - QLoRA fine-tuning with the .gguf as base_model and save_gguf: true writes
 *    adapter_model.gguf as llama.cpp reads it (general.type, adapter.type,
 *    alpha, blk.N.*.weight.lora_a/lora_b shapes, lora_b of q/k permuted like
 *    the base) and `export gguf-lora` writes the same file;
 *  - `export gguf --adapter` (merged) evaluates like eval --adapter;
 *  - `convert gguf` writes an HF directory that evaluates the same;
 *  - the SmolLM2-135M GGUF (when scripts/get-models.sh fetched it) has the
 *    documented config. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/cli_util.h"
#include "tests/testutil.h"
#include "train/formats/gguf_model.h"
#include "train/formats/safetensors.h"
#include "train/tokenizer/tokenizer.h"

static char bin[512], tok[512], text[512];

static double eval_nll(const char *model_args) {
    const char *out = rt_tmp("eval.txt");
    int rc = rt_run(out, NULL, "eval %s --data %s --seq-len 128", model_args, text);
    CHECK(rc == 0, "eval %s: exit %d", model_args, rc);
    return rc == 0 ? rt_eval_nll(out) : NAN;
}

static void test_export_round_trip(const char *g32) {
    char args[2048];
    snprintf(args, sizeof args, "--model %s --tokenizer %s", bin, tok);
    const double ref = eval_nll(args);
    CHECK(rt_run(NULL, NULL, "export gguf --model %s --tokenizer %s --type f32 --out %s", bin, tok,
                 g32) == 0, "export f32");
    snprintf(args, sizeof args, "--model %s", g32);
    const double got = eval_nll(args);
    CHECK(isfinite(ref) && got == ref, "F32 GGUF NLL %.6f == .bin NLL %.6f", got, ref);
    /* convert gguf -> HF directory (weights and tokenizer.json) evaluates the same */
    const char *hf = rt_tmp("hf-from-gguf");
    CHECK(rt_run(NULL, NULL, "convert gguf %s --out %s", g32, hf) == 0, "convert gguf");
    snprintf(args, sizeof args, "--model %s", hf);
    const double h = eval_nll(args);
    CHECK(h == ref, "HF directory from GGUF: NLL %.6f vs %.6f", h, ref);
    static const char *const types[2] = {"f16", "q8_0"};
    static const double tol[2] = {1e-3, 2e-2};
    for (int i = 0; i < 2; i++) {
        const char *g = rt_tmp(i ? "s-q8_0.gguf" : "s-f16.gguf");
        CHECK(rt_run(NULL, NULL, "export gguf --model %s --tokenizer %s --type %s --out %s", bin,
                     tok, types[i], g) == 0, "export %s", types[i]);
        snprintf(args, sizeof args, "--model %s", g);
        const double x = eval_nll(args);
        CHECK(fabs(x - ref) < tol[i] * ref, "%s GGUF NLL %.6f vs %.6f", types[i], x, ref);
    }
    /* the tokenizer read back from GGUF metadata encodes like tok512.bin */
    rt_tokenizer *ta = NULL, *tb = NULL;
    size_t len, na = 0, nb = 0;
    int32_t *ia = NULL, *ib = NULL;
    char *x = rt_slurp(text, &len);
    CHECK(x && rt_tokenizer_load(tok, &ta) == RT_OK && rt_tokenizer_load(g32, &tb) == RT_OK,
          "load tokenizers: %s", rt_error_message());
    if (x && ta && tb) {
        CHECK(rt_tokenizer_encode(ta, x, len, true, &ia, &na) == RT_OK &&
              rt_tokenizer_encode(tb, x, len, true, &ib, &nb) == RT_OK, "encode");
        CHECK(na > 100 && na == nb && !memcmp(ia, ib, na * sizeof *ia),
              "GGUF vocabulary encodes like tok512.bin (%zu vs %zu ids)", na, nb);
        CHECK(rt_tokenizer_bos(tb) == 1 && rt_tokenizer_eos(tb) == 2 && rt_tokenizer_adds_bos(tb), "specials");
    }
    free(ia), free(ib), free(x);
    rt_tokenizer_free(ta);
    rt_tokenizer_free(tb);
}

static void test_adapter(const char *g32) {
    const char *out = rt_tmp("ft-gguf");
    int rc = rt_run(NULL, NULL, "finetune %s/recipes/stories260k-qlora-mobydick.yaml base_model=%s "
                    "tokenizer= datasets.0.path=%s sequence_len=64 micro_batch_size=4 max_steps=8 "
                    "val_set_size=8 eval_steps=8 logging_steps=100 save_gguf=true output_dir=%s",
                    RETORT_SOURCE_DIR, g32, rt_test_shared("data/moby-dick.txt"), out);
    CHECK(rc == 0, "finetune from a .gguf base: exit %d", rc);
    char path[700], st_path[700];
    snprintf(path, sizeof path, "%s/adapter_model.gguf", out);
    snprintf(st_path, sizeof st_path, "%s/adapter_model.safetensors", out);
    rt_gguf *g = NULL;
    rt_safetensors *st = NULL;
    CHECK(rt_gguf_open(path, &g) == RT_OK, "open %s: %s", path, rt_error_message());
    CHECK(rt_st_open(st_path, &st) == RT_OK, "open %s", st_path);
    if (!g || !st) { rt_gguf_close(g); rt_st_close(st); return; }
    const char *s;
    size_t n;
    double alpha = 0;
    CHECK(!rt_gguf_get_str(g, "general.type", true, &s, &n) && n == 7 && !memcmp(s, "adapter", 7), "general.type");
    CHECK(!rt_gguf_get_str(g, "adapter.type", true, &s, &n) && n == 4 && !memcmp(s, "lora", 4), "adapter.type");
    CHECK(!rt_gguf_get_str(g, "general.architecture", true, &s, &n) && n == 5 && !memcmp(s, "llama", 5), "arch");
    CHECK(!rt_gguf_get_float(g, "adapter.lora.alpha", true, &alpha) && alpha == 16.0, "alpha %g", alpha);
    CHECK(rt_gguf_tensor_count(g) == rt_st_count(st), "%zu tensors, PEFT has %zu",
          rt_gguf_tensor_count(g), rt_st_count(st));
    /* every PEFT tensor: shape reversed; q/k lora_B rows permuted like the base */
    int bad = 0;
    for (size_t i = 0; i < rt_st_count(st); i++) {
        const rt_st_tensor *t = rt_st_get(st, i);
        int layer = -1;
        char mod[64] = "", ab = 0, name[256];
        if (sscanf(t->name, "base_model.model.model.layers.%d.%*[a-z_].%63[a-z_].lora_%c", &layer, mod, &ab) != 3) {
            bad++;
            continue;
        }
        static const char *const hf[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
        static const char *const gg[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
        int p = 0;
        while (p < 7 && strcmp(mod, hf[p])) p++;
        if (p == 7) { bad++; continue; }
        snprintf(name, sizeof name, "blk.%d.%s.weight.lora_%c", layer, gg[p], ab == 'A' ? 'a' : 'b');
        const rt_gguf_tensor *x = rt_gguf_find_tensor(g, name);
        if (!x || x->type != RT_GGML_F32 || x->n_dims != 2 || x->ne[0] != t->shape[1] || x->ne[1] != t->shape[0]) {
            bad++;
            continue;
        }
        const float *want = t->data;
        float *unperm = NULL;
        if (ab == 'B' && p <= 1) { /* 8 heads / 4 kv heads of head_dim 8 */
            unperm = malloc(t->nbytes);
            rt_gguf_permute_rows(unperm, x->data, p == 0 ? 8 : 4, 8, t->shape[1], false);
            if (memcmp(x->data, want, t->nbytes) == 0) bad++; /* must differ before un-permuting */
        }
        if (memcmp(unperm ? unperm : x->data, want, t->nbytes)) bad++;
        free(unperm);
    }
    CHECK(bad == 0 && rt_st_count(st) == 2 * 5 * 7, "%d of %zu adapter tensors wrong", bad, rt_st_count(st));
    rt_gguf_close(g);
    rt_st_close(st);
    /* export gguf-lora gives the same bytes */
    const char *again = rt_tmp("again.gguf");
    CHECK(rt_run(NULL, NULL, "export gguf-lora --adapter %s --out %s", out, again) == 0, "export gguf-lora");
    size_t la, lb;
    char *fa = rt_slurp(path, &la), *fb = rt_slurp(again, &lb);
    CHECK(fa && fb && la == lb && !memcmp(fa, fb, la), "export gguf-lora == save_gguf output");
    free(fa), free(fb);

    /* merged export evaluates like the adapter applied at load */
    char args[2048];
    snprintf(args, sizeof args, "--model %s --adapter %s", g32, out);
    const double with = eval_nll(args);
    const char *merged = rt_tmp("merged.gguf");
    CHECK(rt_run(NULL, NULL, "export gguf --model %s --adapter %s --type f32 --out %s", g32, out,
                 merged) == 0, "export merged");
    snprintf(args, sizeof args, "--model %s", merged);
    const double m = eval_nll(args);
    CHECK(fabs(m - with) < 1e-4 * fabs(with), "merged GGUF NLL %.6f vs base+adapter %.6f", m, with);
    snprintf(args, sizeof args, "--model %s", g32);
    CHECK(with < eval_nll(args), "the adapter lowers the NLL (%.4f)", with);
    /* a missing adapter config is a named input error */
    const char *err = rt_tmp("err.txt");
    rc = rt_run(NULL, err, "export gguf-lora --adapter %s --out %s", rt_tmp("nope"), again);
    char *msg = rt_slurp(err, NULL);
    CHECK(rc == 2 && msg && strstr(msg, "adapter_config.json"), "missing adapter: exit %d %s", rc, msg ? msg : "");
    free(msg);
}

static void test_smollm2_config(void) {
    const char *home = getenv("HOME"), *cache = getenv("RETORT_CACHE");
    char path[1024];
    snprintf(path, sizeof path, "%s/SmolLM2-135M-Instruct.Q4_1.gguf",
             cache && *cache ? cache : home ? home : "/nonexistent");
    if (!(cache && *cache) && home) snprintf(path, sizeof path, "%s/.cache/retort/SmolLM2-135M-Instruct.Q4_1.gguf", home);
    FILE *f = fopen(path, "rb");
    if (!f) { SKIP("%s not fetched (scripts/get-models.sh)", path); return; }
    fclose(f);
    rt_gguf *g;
    CHECK(rt_gguf_open(path, &g) == RT_OK, "open %s", rt_error_message());
    rt_llama_config c;
    bool perm;
    CHECK(rt_gguf_llama_config(g, &c, &perm) == RT_OK, "config: %s", rt_error_message());
    CHECK(c.num_hidden_layers == 30 && c.hidden_size == 576 && c.num_attention_heads == 9 &&
          c.num_key_value_heads == 3 && c.intermediate_size == 1536 && c.vocab_size == 49152 &&
          c.tie_word_embeddings && c.rope_theta == 100000.0f && perm,
          "SmolLM2-135M config: L%d D%d H%d Hkv%d F%d V%d tied %d theta %g", c.num_hidden_layers,
          c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.intermediate_size,
          c.vocab_size, c.tie_word_embeddings, c.rope_theta);
    rt_gguf_close(g);
}

int main(void) {
    snprintf(bin, sizeof bin, "%s", rt_test_shared("models/stories260K/stories260K.bin"));
    snprintf(tok, sizeof tok, "%s", rt_test_shared("models/stories260K/tok512.bin"));
    snprintf(text, sizeof text, "%s", rt_tmp("chapter.txt"));
    size_t n;
    char *moby = rt_slurp(rt_test_shared("data/moby-dick.txt"), &n);
    if (!moby) { CHECK(0, "read moby-dick.txt"); return rt_test_summary(); }
    /* whole lines, so the slice is valid UTF-8 */
    const char *a = strchr(moby + 30000, '\n') + 1, *b = a + 6000;
    while (*b != '\n') b--;
    rt_spit(text, a, (size_t)(b - a + 1));
    free(moby);
    char g32[512];
    snprintf(g32, sizeof g32, "%s", rt_tmp("s-f32.gguf"));
    test_export_round_trip(g32);
    printf("export round trip\n");
    test_adapter(g32);
    printf("adapter\n");
    test_smollm2_config();
    return rt_test_summary();
}
