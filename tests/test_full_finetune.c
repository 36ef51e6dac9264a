/* Full fine-tuning of a pretrained model (adapter: none): every weight of
 * stories260K in the flat parameter store (rt_llama_new_from) computes the
 * same logits as the loaded model, a few steps on Moby-Dick lower the loss,
 * the saved HF directory reloads with identical logits, and resuming from a
 * checkpoint continues bit for bit. */
#include <math.h>
#include <unistd.h>

#include "tests/cli_util.h"
#include "train/finetune.h"
#include "train/trainer.h"

#define S260 "models/stories260K/"

static char bin[512], tok[512], moby[512], recipe[512];

static void write_recipe(void) {
    snprintf(recipe, sizeof recipe, "%s", rt_tmp("full.yaml"));
    char yaml[2048];
    int n = snprintf(yaml, sizeof yaml,
                     "base_model: %s\ntokenizer: %s\nadapter: none\n"
                     "datasets:\n  - {path: %s, type: text}\n"
                     "val_set_size: 8\nsequence_len: 64\nmicro_batch_size: 4\nmax_steps: 8\n"
                     "learning_rate: 1.0e-3\nlr_scheduler: cosine\nwarmup_steps: 2\noptimizer: adamw\n"
                     "weight_decay: 0.01\neval_steps: 4\nlogging_steps: 100\ndevice: cpu\nseed: 5\n",
                     bin, tok, moby);
    rt_spit(recipe, yaml, (size_t)n);
}

/* logits [1, 7, V] of m on a fixed sequence, into out (host). */
static void logits(rt_llama *m, float *out) {
    rt_ctx *ctx = rt_ctx_new(RT_CPU, 0);
    ctx->no_grad = true;
    int32_t ids[7] = {1, 403, 13, 70, 300, 2, 99}, pos[7] = {0, 1, 2, 3, 4, 5, 6};
    int64_t shape[2] = {1, 7};
    rt_to_host(ctx, rt_llama_forward(ctx, m, rt_from_i32(ctx, ids, 2, shape), rt_from_i32(ctx, pos, 2, shape), NULL),
               out);
    rt_ctx_free(ctx);
}

/* The full copy holds every weight as a parameter and computes the same logits. */
static void test_copy(void) {
    rt_llama_opts o = {.device = RT_CPU};
    rt_llama *m = NULL, *f = NULL;
    rt_status s = rt_llama_load(bin, &o, &m);
    if (s == RT_OK) s = rt_llama_new_from(m, NULL, 0, 0, &o, &f);
    CHECK(s == RT_OK, "load + full copy: %s", rt_error_message());
    if (s != RT_OK) return;
    CHECK(rt_llama_is_full(f) && !rt_llama_is_full(m), "full flags");
    CHECK(f->params.numel_used == rt_llama_n_params(m) && rt_llama_n_params(f) == rt_llama_n_params(m),
          "trainable %lld of %lld parameters", (long long)f->params.numel_used, (long long)rt_llama_n_params(m));
    static float a[7 * 512], b[7 * 512];
    logits(m, a);
    logits(f, b);
    CHECK(!memcmp(a, b, sizeof a), "the full copy computes other logits");
    /* a 4-bit or LoRA model is no full model's options */
    rt_llama *bad = NULL;
    rt_llama_opts q = {.device = RT_CPU, .load_in_4bit = true};
    CHECK(rt_llama_new_from(m, NULL, 0, 0, &q, &bad) == RT_EINTERNAL && !bad, "4-bit full model refused");
    rt_llama_free(m);
    rt_llama_free(f);
}

static rt_tensor *ce_loss(rt_ctx *ctx, void *user, rt_llama *m, const rt_batch *b, rt_tensor *ids,
                          rt_tensor *pos, rt_tensor *seg, rt_tensor *labels, float denom) {
    (void)user, (void)b;
    return rt_cross_entropy(ctx, rt_llama_forward(ctx, m, ids, pos, seg), labels, denom);
}

static rt_status save_hf(void *user, rt_llama *m, const char *dir) {
    return rt_llama_save_hf(m, user, dir);
}

/* In process: training lowers the held-out loss; the HF directory reloads
 * with bit-identical logits. */
static void test_train_save_reload(void) {
    rt_recipe r;
    char od[700];
    snprintf(od, sizeof od, "output_dir=%s", rt_tmp("inproc"));
    char *argv[] = {"finetune", recipe, od};
    rt_status s = rt_finetune_load_recipe(3, argv, &r);
    rt_dist d = {.rank = 0, .world = 1, .local_rank = 0, .local_world = 1};
    rt_llama *m = NULL, *back = NULL;
    rt_tokenizer *tk = NULL;
    rt_dataset *train = NULL, *val = NULL;
    rt_train_result res;
    if (s == RT_OK) s = rt_finetune_model(&r, &d, RT_CPU, &m, &tk);
    if (s == RT_OK) s = rt_data_load(&r, tk, &train, &val);
    if (s == RT_OK) {
        rt_train_job job = {.recipe = &r, .dist = &d, .device = RT_CPU, .model = m, .train = train,
                            .val = val, .loss = ce_loss, .save = save_hf, .save_user = tk};
        s = rt_train(&job, &res);
    }
    CHECK(s == RT_OK, "full fine-tune: %s", rt_error_message());
    if (s == RT_OK) {
        CHECK(rt_llama_is_full(m) && m->params.numel_used == rt_llama_n_params(m), "every weight trainable");
        CHECK(isfinite(res.first_val_loss) && res.last_val_loss < res.first_val_loss - 0.05,
              "held-out loss %.4f -> %.4f", res.first_val_loss, res.last_val_loss);
        printf("full fine-tune: held-out loss %.4f -> %.4f in %lld steps\n", res.first_val_loss,
               res.last_val_loss, (long long)res.steps);
        rt_llama_opts o = {.device = RT_CPU};
        s = rt_llama_load(rt_tmp("inproc"), &o, &back);
        CHECK(s == RT_OK, "reload the saved directory: %s", rt_error_message());
    }
    if (back) {
        static float a[7 * 512], b[7 * 512], base[7 * 512];
        logits(m, a);
        logits(back, b);
        CHECK(!memcmp(a, b, sizeof a), "the reloaded directory computes other logits");
        rt_llama *orig = NULL;
        rt_llama_opts o = {.device = RT_CPU};
        if (rt_llama_load(bin, &o, &orig) == RT_OK) {
            logits(orig, base);
            CHECK(memcmp(a, base, sizeof a) != 0, "training did not change the model");
        }
        rt_llama_free(orig);
        char p[800];
        snprintf(p, sizeof p, "%s/tokenizer.json", rt_tmp("inproc"));
        CHECK(access(p, F_OK) == 0, "%s missing", p);
    }
    rt_llama_free(back);
    rt_llama_free(m);
    rt_tokenizer_free(tk);
    rt_dataset_free(train);
    rt_dataset_free(val);
    rt_recipe_free(&r);
}

/* CLI: 6 steps straight == 3 steps, checkpoint, resume for 3 more (model
 * file bit-identical). */
static void test_resume(void) {
    char full[512], part[512], resumed[512], ckpt[700], pa[800], pb[800];
    snprintf(full, sizeof full, "%s", rt_tmp("straight"));
    snprintf(part, sizeof part, "%s", rt_tmp("part"));
    snprintf(resumed, sizeof resumed, "%s", rt_tmp("resumed"));
    const char *sched = "max_steps=6 eval_steps=0";
    int rc = rt_run(rt_tmp("straight.out"), NULL, "finetune %s %s output_dir=%s", recipe, sched, full);
    CHECK(rc == 0, "straight run exit %d", rc);
    char *so = rt_slurp(rt_tmp("straight.out"), NULL);
    CHECK(so && strstr(so, "full fine-tuning") && strstr(so, "Hugging Face directory"), "summary: %s",
          so ? so : "");
    free(so);
    rc = rt_run(NULL, NULL, "finetune %s %s save_steps=3 output_dir=%s", recipe, sched, part);
    CHECK(rc == 0, "checkpointing run exit %d", rc);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint-3", part);
    rc = rt_run(NULL, NULL, "finetune %s %s output_dir=%s resume_from_checkpoint=%s", recipe, sched, resumed, ckpt);
    CHECK(rc == 0, "resumed run exit %d", rc);
    snprintf(pa, sizeof pa, "%s/model.safetensors", full);
    snprintf(pb, sizeof pb, "%s/model.safetensors", resumed);
    size_t na = 0, nb = 0;
    char *fa = rt_slurp(pa, &na), *fb = rt_slurp(pb, &nb);
    CHECK(fa && fb && na == nb && !memcmp(fa, fb, na), "resumed model is not bit-identical to the straight one");
    free(fa);
    free(fb);
    /* the checkpoint itself is a loadable HF directory */
    snprintf(pa, sizeof pa, "%s/config.json", ckpt);
    CHECK(access(pa, F_OK) == 0, "%s missing", pa);
}

int main(void) {
    snprintf(bin, sizeof bin, "%s", rt_test_shared(S260 "stories260K.bin"));
    snprintf(tok, sizeof tok, "%s", rt_test_shared(S260 "tok512.bin"));
    if (access(bin, F_OK) != 0) {
        SKIP("%s not found", bin);
        return rt_test_summary();
    }
    /* 40 KB of Moby-Dick keeps tokenizing short */
    size_t n = 0;
    char *text = rt_slurp(rt_test_shared("data/moby-dick.txt"), &n);
    CHECK(text && n > 60000, "moby-dick.txt");
    if (!text || n <= 60000) return rt_test_summary();
    snprintf(moby, sizeof moby, "%s", rt_tmp("moby-40k.txt"));
    rt_spit(moby, text + 20000, 40000);
    free(text);
    write_recipe();
    test_copy();
    test_train_save_reload();
    test_resume();
    return rt_test_summary();
}
