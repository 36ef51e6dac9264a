/* QLoRA fine-tuning end to end on real inputs (stories260K, Moby-Dick):
 * a LoRA layer equals its merged weight, the recipe trains and the held-out
 * perplexity falls, an adapter trained on the .bin gives the same NLL on the
 * converted HF directory, resuming from a checkpoint continues bit for bit,
 * and bad recipes fail cleanly. */
#include <math.h>

#include "tests/cli_util.h"
#include "train/model/lora.h"

#define S260 "models/stories260K/"
#define RECIPE RETORT_SOURCE_DIR "/recipes/stories260k-qlora-mobydick.yaml"

static char bin[512], tok[512], moby[512];

/* y = x W^T + s B A x  ==  x (W + s B A)^T, with random non-zero B. */
static void check_lora_vs_merged(void) {
    rt_ctx *ctx = rt_ctx_new(RT_CPU, 0);
    rt_params P;
    rt_params_init(&P, RT_CPU);
    const int64_t in = 13, out = 7, r = 4, N = 5;
    rt_tensor *A = rt_params_add(&P, "A", 2, (int64_t[]){r, in});
    rt_tensor *B = rt_params_add(&P, "B", 2, (int64_t[]){out, r});
    CHECK(rt_params_finalize(&P, 64) == RT_OK, "finalize");
    float w[7 * 13], x[5 * 13];
    uint64_t s = 1;
    for (int i = 0; i < out * in; i++) w[i] = (float)((s = s * 6364136223846793005ull + 1) >> 40) / 16777216.0f - 0.5f;
    for (int i = 0; i < N * in; i++) x[i] = (float)((s = s * 6364136223846793005ull + 1) >> 40) / 16777216.0f - 0.5f;
    rt_tensor *W = rt_tensor_new(RT_CPU, RT_F32, 2, (int64_t[]){out, in});
    memcpy(W->data, w, sizeof w);
    rt_lora_linear l = {.weight = W, .lora_A = A, .lora_B = B, .scaling = rt_lora_scaling(16, 4, false)};
    rt_lora_init(&l, 7);
    CHECK(fabsf(l.scaling - 4.0f) < 1e-7f && fabsf(rt_lora_scaling(16, 4, true) - 8.0f) < 1e-6f,
          "scaling alpha/r and alpha/sqrt(r)");
    float *b = B->data;
    for (int i = 0; i < out * r; i++) b[i] = 0.1f * (float)(i % 5) - 0.2f;
    float merged[7 * 13];
    CHECK(rt_lora_merged_weight(&l, merged) == RT_OK, "merge");
    rt_tensor *tx = rt_from_f32(ctx, x, 2, (int64_t[]){N, in});
    rt_tensor *y = rt_lora_forward(ctx, &l, tx);
    float got[5 * 7];
    rt_to_host(ctx, y, got);
    double maxerr = 0;
    for (int i = 0; i < N; i++)
        for (int o = 0; o < out; o++) {
            double ref = 0;
            for (int k = 0; k < in; k++) ref += (double)x[i * in + k] * merged[o * in + k];
            maxerr = fmax(maxerr, fabs(ref - got[i * out + o]));
        }
    CHECK(maxerr < 1e-5, "LoRA forward vs merged weight: max error %g", maxerr);
    /* A's init is kaiming-uniform(a=sqrt 5): |A| <= 1/sqrt(in) */
    float bound = 1.0f / sqrtf((float)in), amax = 0;
    for (int i = 0; i < r * in; i++) amax = fmaxf(amax, fabsf(((float *)A->data)[i]));
    CHECK(amax <= bound && amax > 0.5f * bound, "A init bound %g (max %g)", bound, amax);
    rt_tensor_free(W);
    rt_params_free(&P);
    rt_ctx_free(ctx);
}

/* The "val_ppl" of the first and last eval lines of a metrics.jsonl. */
static void val_ppl_range(const char *metrics, double *first, double *last) {
    char *s = rt_slurp(metrics, NULL);
    *first = *last = NAN;
    for (char *p = s ? strstr(s, "\"val_ppl\":") : NULL; p; p = strstr(p + 1, "\"val_ppl\":")) {
        double v = atof(p + 10);
        if (isnan(*first)) *first = v;
        *last = v;
    }
    free(s);
}

static char *train_lines(const char *metrics) {
    /* the "loss" fields of train lines, concatenated */
    char *s = rt_slurp(metrics, NULL), *out = calloc(1, 1 << 16);
    size_t o = 0;
    for (char *p = s ? strstr(s, "\"loss\":") : NULL; p && o < (1 << 16) - 64; p = strstr(p + 1, "\"loss\":")) {
        char *end = strchr(p, ',');
        if (!end) break;
        memcpy(out + o, p, (size_t)(end - p));
        o += (size_t)(end - p);
        out[o++] = ' ';
    }
    free(s);
    return out;
}

int main(void) {
    snprintf(bin, sizeof bin, "%s", rt_test_shared(S260 "stories260K.bin"));
    snprintf(tok, sizeof tok, "%s", rt_test_shared(S260 "tok512.bin"));
    snprintf(moby, sizeof moby, "%s", rt_test_shared("data/moby-dick.txt"));
    check_lora_vs_merged();

    /* A short QLoRA run of the main recipe: the held-out perplexity falls. */
    char out1[512], m1[600];
    snprintf(out1, sizeof out1, "%s", rt_tmp("ft1"));
    const char *common = "base_model=%s tokenizer=%s datasets.0.path=%s sequence_len=128 "
                         "micro_batch_size=4 val_set_size=24 logging_steps=100";
    char base_args[2048];
    snprintf(base_args, sizeof base_args, common, bin, tok, moby);
    int rc = rt_run(NULL, NULL, "finetune %s %s max_steps=24 eval_steps=12 output_dir=%s", RECIPE,
                    base_args, out1);
    CHECK(rc == 0, "finetune exit %d", rc);
    snprintf(m1, sizeof m1, "%s/metrics.jsonl", out1);
    double first, last;
    val_ppl_range(m1, &first, &last);
    CHECK(isfinite(first) && last < 0.8 * first, "held-out ppl %.3f -> %.3f (want -20%%)", first, last);
    char path[700];
    snprintf(path, sizeof path, "%s/adapter_config.json", out1);
    char *cfg = rt_slurp(path, NULL);
    CHECK(cfg && strstr(cfg, "\"LORA\"") && strstr(cfg, "\"CAUSAL_LM\"") && strstr(cfg, "gate_proj"),
          "adapter_config.json");
    free(cfg);
    snprintf(path, sizeof path, "%s/loss.svg", out1);
    char *svg = rt_slurp(path, NULL);
    CHECK(svg && strstr(svg, "<svg") && strstr(svg, "polyline"), "loss.svg");
    free(svg);

    /* The adapter applies unchanged to the converted HF directory. */
    char hf[512], e1[512], e2[512], chapter[512];
    snprintf(hf, sizeof hf, "%s", rt_tmp("hf260"));
    snprintf(e1, sizeof e1, "%s", rt_tmp("e1.txt"));
    snprintf(e2, sizeof e2, "%s", rt_tmp("e2.txt"));
    snprintf(chapter, sizeof chapter, "%s", rt_tmp("chapter.txt"));
    size_t n;
    char *text = rt_slurp(moby, &n);
    rt_spit(chapter, text + 20000, 12000);
    free(text);
    CHECK(rt_run(NULL, NULL, "convert llama2c %s --tokenizer %s --out %s", bin, tok, hf) == 0, "convert");
    CHECK(rt_run(e1, NULL, "eval --model %s --tokenizer %s --data %s --seq-len 128 --adapter %s", bin,
                 tok, chapter, out1) == 0, "eval .bin + adapter");
    CHECK(rt_run(e2, NULL, "eval --model %s --data %s --seq-len 128 --adapter %s", hf, chapter, out1) == 0,
          "eval dir + adapter");
    double a = rt_eval_nll(e1), b = rt_eval_nll(e2);
    CHECK(isfinite(a) && fabs(a - b) < 1e-5, "adapter NLL on .bin %.6f vs converted dir %.6f", a, b);
    CHECK(rt_run(e2, NULL, "eval --model %s --data %s --seq-len 128", hf, chapter) == 0, "eval base");
    CHECK(rt_eval_nll(e2) > a, "the adapter lowers the NLL of unseen Moby-Dick text (%.4f vs %.4f)",
          a, rt_eval_nll(e2));

    /* Resume: 6 steps straight == 3 steps, checkpoint, resume for 3 more;
     * with dropout on, so the RNG state must be restored too. */
    char full[512], part[512];
    snprintf(full, sizeof full, "%s", rt_tmp("full"));
    snprintf(part, sizeof part, "%s", rt_tmp("part"));
    const char *sched = "max_steps=6 eval_steps=0 val_set_size=4 lora_dropout=0.1";
    rc = rt_run(NULL, NULL, "finetune %s %s %s output_dir=%s", RECIPE, base_args, sched, full);
    CHECK(rc == 0, "uninterrupted run exit %d", rc);
    rc = rt_run(NULL, NULL, "finetune %s %s %s save_steps=3 output_dir=%s", RECIPE, base_args, sched, part);
    CHECK(rc == 0, "checkpointing run exit %d", rc);
    char resumed[512], ckpt[700];
    snprintf(resumed, sizeof resumed, "%s", rt_tmp("resumed"));
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint-3", part);
    rc = rt_run(NULL, NULL, "finetune %s %s %s output_dir=%s resume_from_checkpoint=%s", RECIPE,
                base_args, sched, resumed, ckpt);
    CHECK(rc == 0, "resumed run exit %d", rc);
    char pa[700], pb[700];
    snprintf(pa, sizeof pa, "%s/adapter_model.safetensors", full);
    snprintf(pb, sizeof pb, "%s/adapter_model.safetensors", resumed);
    size_t na, nb;
    char *fa = rt_slurp(pa, &na), *fb = rt_slurp(pb, &nb);
    CHECK(fa && fb && na == nb && memcmp(fa, fb, na) == 0,
          "resumed adapter is not bit-identical to the uninterrupted one");
    free(fa);
    free(fb);
    snprintf(pa, sizeof pa, "%s/metrics.jsonl", full);
    snprintf(pb, sizeof pb, "%s/metrics.jsonl", resumed);
    char *la = train_lines(pa), *lb = train_lines(pb);
    /* the resumed run logs steps 4..6: the tail of the full run's losses */
    size_t ka = strlen(la), kb = strlen(lb);
    CHECK(kb > 0 && ka >= kb && strcmp(la + ka - kb, lb) == 0, "resumed losses differ:\n%s\n%s", la, lb);
    free(la);
    free(lb);
    /* a resume from a checkpoint with a different setup is refused */
    rc = rt_run(NULL, e1, "finetune %s %s %s output_dir=%s resume_from_checkpoint=%s lora_r=4", RECIPE,
                base_args, sched, rt_tmp("bad-resume"), ckpt);
    CHECK(rc == 2, "resume with another lora_r: exit %d", rc);

    /* The Alpaca recipe (prompt masked) runs. */
    rc = rt_run(NULL, NULL, "finetune %s/recipes/stories260k-qlora-sotu-alpaca.yaml base_model=%s "
                "tokenizer=%s datasets.0.path=%s max_steps=3 eval_steps=0 output_dir=%s",
                RETORT_SOURCE_DIR, bin, tok, rt_test_shared("data/sotu-openings.alpaca.jsonl"),
                rt_tmp("alpaca"));
    CHECK(rc == 0, "alpaca recipe exit %d", rc);

    /* Bad recipes: exit 2 and a message naming the key. */
    rc = rt_run(NULL, e1, "finetune %s lora_rank=8", RECIPE);
    char *msg = rt_slurp(e1, NULL);
    CHECK(rc == 2 && msg && strstr(msg, "lora_rank") && strstr(msg, "lora_r"), "unknown key: %s", msg ? msg : "");
    free(msg);
    rc = rt_run(NULL, e1, "finetune %s %s datasets.0.path=/nonexistent.txt", RECIPE, base_args);
    msg = rt_slurp(e1, NULL);
    CHECK(rc == 2 && msg && strstr(msg, "/nonexistent.txt"), "missing dataset: %s", msg ? msg : "");
    free(msg);
    rc = rt_run(NULL, e1, "finetune /nonexistent-recipe.yaml");
    CHECK(rc == 2, "missing recipe exit %d", rc);
    return rt_test_summary();
}
