/* Distillation: the CLI end to end (HF student that `retort eval` loads),
 * the KD/CE mixing formula, kd_ratio 0 == plain CE training, the teacher
 * cache == the online top-k teacher (step by step and bit for bit), cache
 * keys (another k / teacher / dataset is rebuilt, never used), different
 * vocabularies, and the HF save round trip. Tiny shapes: runs in seconds. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/cli_util.h"
#include "train/distill.h"
#include "train/finetune.h"

static char recipe_path[512];

static void write_recipe(void) {
    snprintf(recipe_path, sizeof recipe_path, "%s", rt_tmp("distill.yaml"));
    char yaml[4096];
    char teacher[1024];
    snprintf(teacher, sizeof teacher, "%s", rt_test_shared("models/stories260K/stories260K.bin"));
    snprintf(yaml, sizeof yaml,
             "teacher_model: %s\n"
             "teacher_tokenizer: %s\n"
             "student_config: {hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1,\n"
             "                 num_attention_heads: 2, num_key_value_heads: 1}\n"
             "adapter: none\n"
             "datasets:\n"
             "  - {path: gen.jsonl, type: teacher_generate, num_samples: 10, max_new_tokens: 40, seed: 7}\n"
             "val_set_size: 2\n"
             "sequence_len: 48\n"
             "kd_ratio: 0.5\n"
             "kd_top_k: 8\n"
             "micro_batch_size: 2\n"
             "max_steps: 4\n"
             "learning_rate: 1.0e-2\n"
             "eval_steps: 0\n"
             "logging_steps: 100\n"
             "device: cpu\n"
             "seed: 3\n",
             teacher, rt_test_shared("models/stories260K/tok512.bin"));
    rt_spit(recipe_path, yaml, strlen(yaml));
}

/* Loads the test recipe with overrides (NULL-terminated). */
static rt_status load(rt_recipe *r, const char *const *over) {
    char *argv[16] = {"distill", recipe_path};
    int argc = 2;
    for (int i = 0; over && over[i]; i++) argv[argc++] = (char *)over[i];
    return rt_finetune_load_recipe(argc, argv, r);
}

/* The train lines ("loss" and "grad_norm" fields) of metrics.jsonl. */
static char *train_lines(const char *dir) {
    char path[600];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    char *all = rt_slurp(path, NULL);
    if (!all) return NULL;
    char *out = calloc(strlen(all) + 1, 1);
    for (char *line = strtok(all, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strstr(line, "\"loss\"")) continue;
        char *tp = strstr(line, ",\"tokens_per_s\""); /* timing differs between runs */
        if (tp) *tp = '\0';
        strcat(out, line);
        strcat(out, "\n");
    }
    free(all);
    return out;
}

typedef struct {
    rt_recipe r;
    rt_dist d;
    rt_distill s;
    rt_train_result res;
    rt_status setup, train;
} run;

static void run_inproc(run *x, const char *out_dir, const char *const *over) {
    memset(x, 0, sizeof *x);
    x->d = (rt_dist){.rank = 0, .world = 1, .local_rank = 0, .local_world = 1};
    char od[700];
    snprintf(od, sizeof od, "output_dir=%s", out_dir);
    const char *all[12];
    int n = 0;
    all[n++] = od;
    for (int i = 0; over && over[i]; i++) all[n++] = over[i];
    all[n] = NULL;
    x->setup = load(&x->r, all);
    if (x->setup == RT_OK) x->setup = rt_distill_setup(&x->r, &x->d, &x->s);
    x->train = x->setup == RT_OK ? rt_distill_train(&x->s, &x->res) : x->setup;
    if (x->train != RT_OK) fprintf(stderr, "run %s: %s\n", out_dir, rt_error_message());
}

static void run_free(run *x) {
    rt_distill_free(&x->s);
    rt_recipe_free(&x->r);
}

static bool same_params(const rt_llama *a, const rt_llama *b) {
    return a->params.numel == b->params.numel &&
           !memcmp(a->params.data, b->params.data, (size_t)a->params.numel * sizeof(float));
}

/* ---- CLI: a short run gives an HF directory retort eval/generate load ---- */
static void test_cli(void) {
    char out[600], val[600];
    snprintf(out, sizeof out, "%s", rt_tmp("cli-out"));
    snprintf(val, sizeof val, "%s", rt_tmp("cli-val.txt"));
    int rc = rt_run(rt_tmp("cli.stdout"), rt_tmp("cli.stderr"), "distill %s output_dir=%s", recipe_path, out);
    CHECK(rc == 0, "distill exit %d", rc);
    char *so = rt_slurp(rt_tmp("cli.stdout"), NULL);
    CHECK(so && strstr(so, "held-out perplexity") && strstr(so, "teacher held-out perplexity"), "summary: %s",
          so ? so : "(none)");
    free(so);
    const char *files[] = {"config.json", "model.safetensors", "tokenizer.json", "metrics.jsonl", "gen.jsonl"};
    for (int i = 0; i < 5; i++) {
        char p[700];
        snprintf(p, sizeof p, "%s/%s", out, files[i]);
        CHECK(access(p, F_OK) == 0, "%s missing", p);
    }
    /* the generations: one {"text"} line per sample */
    char p[700];
    snprintf(p, sizeof p, "%s/gen.jsonl", out);
    char *g = rt_slurp(p, NULL);
    int lines = 0;
    for (char *c = g; c && *c; c++) lines += *c == '\n';
    CHECK(lines == 10 && g && !strncmp(g, "{\"text\":", 8), "gen.jsonl has %d lines", lines);
    free(g);
    snprintf(p, sizeof p, "%s/metrics.jsonl", out);
    char *m = rt_slurp(p, NULL);
    CHECK(m && strstr(m, "\"val_ppl\""), "no val_ppl line in metrics.jsonl");
    free(m);
    rt_spit(val, "Once upon a time there was a little dog. He liked to play in the park.", 71);
    rc = rt_run(rt_tmp("eval.out"), NULL, "eval --model %s --data %s", out, val);
    double nll = rt_eval_nll(rt_tmp("eval.out"));
    /* an almost untrained student is near uniform over 512 tokens: ln 512 = 6.24 */
    CHECK(rc == 0 && isfinite(nll) && nll > 2.0 && nll < 7.0, "eval of the student: rc %d nll %g", rc, nll);
    rc = rt_run(NULL, NULL, "generate --model %s --prompt Once --max-new-tokens 8 --seed 1", out);
    CHECK(rc == 0, "generate with the student: rc %d", rc);
    printf("cli: distill -> HF dir -> eval nll %.3f\n", nll);
}

/* ---- the loss: mixing formula, ratio 0 is the CE graph ---- */
static void test_loss_mixing(void) {
    run x;
    const char *over[] = {"max_steps=1", NULL};
    run_inproc(&x, rt_tmp("mix"), over);
    CHECK(x.train == RT_OK, "setup/train: %s", rt_error_message());
    if (x.train != RT_OK) {
        run_free(&x);
        return;
    }
    rt_ctx *ctx = rt_ctx_new(RT_CPU, 0);
    ctx->no_grad = true;
    rt_batch b = {0};
    rt_batch_alloc(&b, 2, 48);
    rt_data_val_batch(x.s.train, 0, &b);
    int64_t shape[2] = {2, 48};
    float v[4];
    const float ratios[3] = {0.0f, 1.0f, 0.3f};
    for (int i = 0; i < 3; i++) {
        rt_ctx_reset(ctx);
        rt_distill_loss L = x.s.loss;
        L.kd_ratio = ratios[i];
        rt_tensor *loss = rt_distill_loss_fn(ctx, &L, x.s.student, &b, rt_from_i32(ctx, b.ids, 2, shape),
                                             rt_from_i32(ctx, b.pos, 2, shape), NULL,
                                             rt_from_i32(ctx, b.labels, 2, shape), 10.0f);
        CHECK(loss != NULL, "loss fn: %s", rt_error_message());
        if (loss) rt_to_host(ctx, loss, &v[i]);
    }
    rt_ctx_reset(ctx);
    rt_tensor *ce = rt_cross_entropy(ctx, rt_llama_forward(ctx, x.s.student, rt_from_i32(ctx, b.ids, 2, shape),
                                                           rt_from_i32(ctx, b.pos, 2, shape), NULL),
                                     rt_from_i32(ctx, b.labels, 2, shape), 10.0f);
    rt_to_host(ctx, ce, &v[3]);
    CHECK(v[0] == v[3], "kd_ratio 0 %.9g != CE %.9g", v[0], v[3]);
    float mix = 0.7f * v[0] + 0.3f * v[1];
    CHECK(fabsf(v[2] - mix) <= 1e-5f * fabsf(mix), "0.3 mix %.9g != 0.7 CE + 0.3 KD %.9g", v[2], mix);
    CHECK(v[1] > 0.0f, "KD of an untrained student %g should be > 0", v[1]);
    rt_batch_free(&b);
    rt_ctx_free(ctx);
    run_free(&x);
    printf("loss: CE %.5f KD %.5f mix(0.3) %.5f\n", v[0], v[1], v[2]);
}

/* CE-only training through the trainer with a plain CE loss. */
static rt_tensor *ce_loss(rt_ctx *ctx, void *user, rt_llama *m, const rt_batch *b, rt_tensor *ids,
                          rt_tensor *pos, rt_tensor *seg, rt_tensor *labels, float denom) {
    (void)user, (void)b;
    return rt_cross_entropy(ctx, rt_llama_forward(ctx, m, ids, pos, seg), labels, denom);
}

static rt_status save_nothing(void *user, rt_llama *m, const char *dir) {
    (void)user, (void)m, (void)dir;
    return RT_OK;
}

static void test_ratio0_is_ce(void) {
    char d0[600], d1[600];
    snprintf(d0, sizeof d0, "%s", rt_tmp("ratio0"));
    snprintf(d1, sizeof d1, "%s", rt_tmp("plain-ce"));
    const char *over[] = {"kd_ratio=0", NULL};
    run a, b;
    run_inproc(&a, d0, over);
    /* the same setup, trained by the trainer with a hand-written CE loss */
    memset(&b, 0, sizeof b);
    b.d = a.d;
    char od[700];
    snprintf(od, sizeof od, "output_dir=%s", d1);
    const char *over2[] = {"kd_ratio=0", od, NULL};
    rt_status s = load(&b.r, over2);
    if (s == RT_OK) s = rt_distill_setup(&b.r, &b.d, &b.s);
    if (s == RT_OK) {
        rt_train_job job = {.recipe = &b.r, .dist = &b.d, .device = RT_CPU, .model = b.s.student,
                            .train = b.s.train, .val = b.s.val, .loss = ce_loss, .save = save_nothing};
        s = rt_train(&job, &b.res);
    }
    CHECK(a.train == RT_OK && s == RT_OK, "runs failed: %s", rt_error_message());
    char *la = train_lines(d0), *lb = train_lines(d1);
    CHECK(la && lb && la[0] && !strcmp(la, lb), "kd_ratio 0 losses differ from CE:\n%s---\n%s", la, lb);
    CHECK(a.s.student && b.s.student && same_params(a.s.student, b.s.student), "weights differ");
    CHECK(a.s.loss.teacher_forwards == 0, "teacher ran %lld times at kd_ratio 0",
          (long long)a.s.loss.teacher_forwards);
    free(la);
    free(lb);
    run_free(&a);
    run_free(&b);
}

/* ---- the cache == the online top-k teacher; keys ---- */
static void test_cache(void) {
    char don[600], dca[600], dca2[600], cache[600], ck[700], ct[700], cd[700];
    snprintf(don, sizeof don, "%s", rt_tmp("online"));
    snprintf(dca, sizeof dca, "%s", rt_tmp("cached"));
    snprintf(dca2, sizeof dca2, "%s", rt_tmp("cached2"));
    snprintf(cache, sizeof cache, "%s", rt_tmp("kcache"));
    snprintf(ck, sizeof ck, "teacher_cache_dir=%s", cache);
    snprintf(ct, sizeof ct, "%s", "teacher_logits=cache");
    snprintf(cd, sizeof cd, "%s", "kd_loss=jsd");
    const char *on_over[] = {"max_steps=6", cd, NULL};
    const char *ca_over[] = {"max_steps=6", cd, ct, ck, NULL};
    run on, ca, ca2;
    run_inproc(&on, don, on_over);
    run_inproc(&ca, dca, ca_over);
    CHECK(on.train == RT_OK && ca.train == RT_OK, "runs failed");
    CHECK(ca.s.cache_stats.built && !ca.s.cache_stats.rebuilt_reason[0], "first cache run should build");
    CHECK(ca.s.loss.teacher_forwards == 0, "teacher ran %lld times with a cache",
          (long long)ca.s.loss.teacher_forwards);
    char *lo = train_lines(don), *lc = train_lines(dca);
    CHECK(lo && lc && lo[0] && !strcmp(lo, lc), "cache losses differ from online:\n%s---\n%s", lo, lc);
    CHECK(on.s.student && ca.s.student && same_params(on.s.student, ca.s.student),
          "cache-trained weights differ from online-trained ones");
    const rt_teacher_cache_stats *st = &ca.s.cache_stats;
    CHECK(st->tokens == rt_dataset_targets(ca.s.train) && st->raw_bytes == (uint64_t)st->tokens * 8 * 8,
          "cache holds %lld tokens (%llu raw bytes), train has %lld targets", (long long)st->tokens,
          (unsigned long long)st->raw_bytes, (long long)rt_dataset_targets(ca.s.train));
    CHECK(st->ratio > 1.0 && st->bytes_per_token < 64.0, "compression %.2fx, %.1f B/token", st->ratio,
          st->bytes_per_token);
    printf("cache: %lld tokens, top-8 %.1f bytes/token, %.2fx\n", (long long)st->tokens, st->bytes_per_token,
           st->ratio);
    free(lo);
    free(lc);
    /* a second run reads it and trains identically */
    run_inproc(&ca2, dca2, ca_over);
    CHECK(ca2.train == RT_OK && !ca2.s.cache_stats.built, "second run should read the cache");
    char *l2 = train_lines(dca2), *l1 = train_lines(dca);
    CHECK(l1 && l2 && !strcmp(l1, l2), "second cached run differs");
    free(l1);
    free(l2);
    run_free(&ca2);
    /* another k, another teacher (NF4), another dataset: rebuilt with a reason */
    struct { const char *over, *reason; } cases[] = {
        {"kd_top_k=4", "kd_top_k"},
        {"teacher_load_in_4bit=true", "another teacher"},
        {"datasets.0.seed=8", "another dataset"},
    };
    for (int i = 0; i < 3; i++) {
        /* each case starts from a copy of the original cache */
        char copy[700], ckc[800];
        snprintf(copy, sizeof copy, "%s-%d", cache, i);
        snprintf(ckc, sizeof ckc, "teacher_cache_dir=%s", copy);
        char cmd[1600];
        snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", cache, copy);
        CHECK(system(cmd) == 0, "%s", cmd);
        const char *o[] = {"max_steps=1", cd, ct, ckc, cases[i].over, NULL};
        run x;
        run_inproc(&x, rt_tmp("rebuild"), o);
        CHECK(x.train == RT_OK && x.s.cache_stats.built && strstr(x.s.cache_stats.rebuilt_reason, cases[i].reason),
              "%s: built %d reason '%s'", cases[i].over, x.setup == RT_OK && x.s.cache_stats.built,
              x.setup == RT_OK ? x.s.cache_stats.rebuilt_reason : rt_error_message());
        run_free(&x);
    }
    /* a read-only open (no teacher) of a mismatching cache is refused */
    rt_teacher_cache_key key;
    rt_teacher_cache *c = NULL;
    rt_teacher_cache_stats cs;
    rt_status s = rt_teacher_cache_key_for(ca.s.train, 12345, 8, 1.0f, &key);
    if (s == RT_OK) s = rt_teacher_cache_open(cache, &key, NULL, ca.s.train, 2, false, RT_CPU, &c, &cs);
    CHECK(s == RT_EINPUT && strstr(rt_error_message(), "no usable teacher cache"), "read-only open: %d %s", s,
          rt_error_message());
    rt_teacher_cache_free(c);
    run_free(&on);
    run_free(&ca);
}

/* ---- errors ---- */
static void test_errors(void) {
    /* a student tokenizer with another vocabulary */
    rt_recipe r;
    char tk[700], od[700];
    snprintf(tk, sizeof tk, "tokenizer=%s", rt_test_shared("tokenizers/llama2/tokenizer.bin"));
    snprintf(od, sizeof od, "output_dir=%s", rt_tmp("vocab"));
    const char *over[] = {tk, od, NULL};
    rt_status s = load(&r, over);
    rt_dist d = {.rank = 0, .world = 1, .local_rank = 0, .local_world = 1};
    rt_distill x;
    if (s == RT_OK) s = rt_distill_setup(&r, &d, &x);
    CHECK(s == RT_EINPUT && strstr(rt_error_message(), "vocabularies differ") &&
              strstr(rt_error_message(), "32000"),
          "different vocabularies: %d %s", s, rt_error_message());
    rt_distill_free(&x);
    rt_recipe_free(&r);
    /* via the CLI: exit 2 and a one-line message */
    int rc = rt_run(NULL, rt_tmp("vocab.err"), "distill %s %s %s", recipe_path, tk, od);
    char *e = rt_slurp(rt_tmp("vocab.err"), NULL);
    CHECK(rc == 2 && e && strstr(e, "retort: error: teacher and student vocabularies differ"), "rc %d: %s", rc,
          e ? e : "");
    free(e);
    /* cache without top-k */
    const char *over2[] = {"teacher_logits=cache", "teacher_cache_dir=/nonexistent/x", "kd_top_k=0", od, NULL};
    s = load(&r, over2);
    if (s == RT_OK) s = rt_distill_setup(&r, &d, &x);
    CHECK(s == RT_EINPUT && strstr(rt_error_message(), "kd_top_k"), "cache without top-k: %s", rt_error_message());
    rt_distill_free(&x);
    rt_recipe_free(&r);
}

/* ---- a pretrained student without adapters: every weight trained, HF directory ---- */
static void test_full_student(void) {
    char sm[700], tok[700], od[700], p[800];
    snprintf(sm, sizeof sm, "student_model=%s", rt_test_shared("models/stories260K/stories260K.bin"));
    snprintf(tok, sizeof tok, "tokenizer=%s", rt_test_shared("models/stories260K/tok512.bin"));
    snprintf(od, sizeof od, "%s", rt_tmp("full-student"));
    const char *over[] = {"student_config=", sm, tok, "adapter=none", "max_steps=2", NULL};
    run x;
    run_inproc(&x, od, over);
    CHECK(x.train == RT_OK, "full pretrained student: %s", rt_error_message());
    if (x.train == RT_OK)
        CHECK(rt_llama_is_full(x.s.student) && x.s.student->params.numel_used == rt_llama_n_params(x.s.teacher),
              "student trains %lld of the teacher's %lld weights", (long long)x.s.student->params.numel_used,
              (long long)rt_llama_n_params(x.s.teacher));
    snprintf(p, sizeof p, "%s/model.safetensors", od);
    CHECK(access(p, F_OK) == 0, "%s missing", p);
    run_free(&x);
}

/* ---- a LoRA student (the teacher itself + adapters) saves a PEFT adapter ---- */
static void test_lora_student(void) {
    char sm[700], tok[700], od[700], p[800];
    snprintf(sm, sizeof sm, "student_model=%s", rt_test_shared("models/stories260K/stories260K.bin"));
    snprintf(tok, sizeof tok, "tokenizer=%s", rt_test_shared("models/stories260K/tok512.bin"));
    snprintf(od, sizeof od, "%s", rt_tmp("lora"));
    const char *over[] = {"student_config=", sm, tok, "adapter=lora", "max_steps=2", NULL};
    run x;
    run_inproc(&x, od, over);
    CHECK(x.train == RT_OK, "LoRA student: %s", rt_error_message());
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", od);
    CHECK(access(p, F_OK) == 0, "%s missing", p);
    run_free(&x);
}


/* ---- student_init: teacher_layers ---- */

static bool same_tensor(const rt_tensor *a, const rt_tensor *b) {
    return rt_numel(a) == rt_numel(b) && !memcmp(a->data, b->data, (size_t)rt_numel(a) * sizeof(float));
}

static double norm_of(const float *v, int64_t n, int64_t stride) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)v[i * stride] * v[i * stride];
    return sqrt(s);
}

/* Student layers [0, 2, 4] of stories260K are exactly the teacher's; a
 * narrower MLP keeps the top-magnitude neurons; the run saves an HF dir. */
static void test_teacher_layers(void) {
    const char *over[] = {"student_config=", "student_init=teacher_layers", "student_layers=[0, 2, 4]", NULL};
    run x;
    run_inproc(&x, rt_tmp("tl"), over);
    CHECK(x.train == RT_OK, "teacher_layers run: %s", rt_error_message());
    if (x.setup != RT_OK) {
        run_free(&x);
        return;
    }
    /* setup again, untrained, to compare the initial weights */
    rt_distill y;
    rt_status s = rt_distill_setup(&x.r, &x.d, &y);
    CHECK(s == RT_OK, "setup: %s", rt_error_message());
    if (s == RT_OK) {
        const rt_llama *T = y.teacher, *S = y.student;
        const int layers[3] = {0, 2, 4};
        CHECK(S->cfg.num_hidden_layers == 3 && S->cfg.hidden_size == T->cfg.hidden_size &&
                  S->cfg.intermediate_size == T->cfg.intermediate_size && rt_llama_is_full(S),
              "student shape %d layers", S->cfg.num_hidden_layers);
        bool ok = same_tensor(S->embed_tokens, T->embed_tokens) && same_tensor(S->norm, T->norm);
        for (int i = 0; i < 3; i++) {
            const rt_llama_layer *a = &S->layers[i], *b = &T->layers[layers[i]];
            ok = ok && same_tensor(a->input_layernorm, b->input_layernorm) &&
                 same_tensor(a->post_attention_layernorm, b->post_attention_layernorm);
            for (int p = 0; p < RT_PROJ_COUNT; p++) ok = ok && same_tensor(a->proj[p].weight, b->proj[p].weight);
        }
        CHECK(ok, "student weights are not exactly the teacher's layers 0, 2, 4");
        /* and not, say, layers 0, 1, 2 */
        CHECK(!same_tensor(S->layers[1].proj[RT_PROJ_Q].weight, T->layers[1].proj[RT_PROJ_Q].weight),
              "student layer 1 equals teacher layer 1");
        CHECK(S->params.numel_used == rt_llama_n_params(S) &&
                  rt_llama_n_params(S) < rt_llama_n_params(T),
              "student %lld trainable of %lld", (long long)S->params.numel_used, (long long)rt_llama_n_params(S));
    }
    rt_distill_free(&y);
    char p[800];
    snprintf(p, sizeof p, "%s/config.json", rt_tmp("tl"));
    char *cfg = rt_slurp(p, NULL);
    CHECK(cfg && strstr(cfg, "\"num_hidden_layers\":\t3"), "saved config: %s", cfg ? cfg : "(none)");
    free(cfg);
    run_free(&x);

    /* a narrower MLP: the 100 of 172 neurons with the largest
     * ||gate_j|| ||up_j|| ||down_:,j||, in order, copied exactly */
    const char *over2[] = {"student_config=", "student_config.intermediate_size=100", "student_init=teacher_layers",
                           "student_layers=[3]", "max_steps=1", NULL};
    run z;
    run_inproc(&z, rt_tmp("tl-narrow"), over2);
    CHECK(z.train == RT_OK, "narrow MLP: %s", rt_error_message());
    if (z.setup == RT_OK) {
        rt_distill u;
        s = rt_distill_setup(&z.r, &z.d, &u);
        if (s == RT_OK) {
            const rt_llama_layer *a = &u.student->layers[0], *b = &u.teacher->layers[3];
            const int64_t D = 64, I = 172, K = 100;
            const float *tg = b->proj[RT_PROJ_GATE].weight->data, *tu = b->proj[RT_PROJ_UP].weight->data,
                        *td = b->proj[RT_PROJ_DOWN].weight->data;
            const float *sg = a->proj[RT_PROJ_GATE].weight->data, *su = a->proj[RT_PROJ_UP].weight->data,
                        *sd = a->proj[RT_PROJ_DOWN].weight->data;
            double score[172];
            for (int64_t j = 0; j < I; j++)
                score[j] = norm_of(tg + j * D, D, 1) * norm_of(tu + j * D, D, 1) * norm_of(td + j, D, I);
            bool kept[172] = {0}, exact = true;
            int64_t prev = -1;
            for (int64_t k = 0; k < K; k++) {
                int64_t j = 0;
                while (j < I && memcmp(sg + k * D, tg + j * D, (size_t)D * sizeof(float))) j++;
                exact = exact && j < I && j > prev && !memcmp(su + k * D, tu + j * D, (size_t)D * sizeof(float));
                for (int64_t dd = 0; exact && dd < D; dd++) exact = sd[dd * K + k] == td[dd * I + j];
                if (j < I) kept[j] = true;
                prev = j;
            }
            double min_kept = 1e30, max_dropped = 0;
            for (int64_t j = 0; j < I; j++) {
                if (kept[j]) min_kept = fmin(min_kept, score[j]);
                else max_dropped = fmax(max_dropped, score[j]);
            }
            CHECK(exact && u.student->cfg.intermediate_size == 100, "kept neurons are not exact teacher rows");
            CHECK(min_kept >= max_dropped, "a dropped neuron scores %g > a kept one %g", max_dropped, min_kept);
            CHECK(same_tensor(a->proj[RT_PROJ_Q].weight, b->proj[RT_PROJ_Q].weight), "attention of layer 3");
        }
        CHECK(s == RT_OK, "setup: %s", rt_error_message());
        rt_distill_free(&u);
    }
    run_free(&z);

    /* errors: a layer out of range, another hidden size, an adapter */
    struct { const char *over[5]; const char *msg; } bad[] = {
        {{"student_config=", "student_init=teacher_layers", "student_layers=[0, 5]", NULL}, "layer 5 is out of range"},
        {{"student_config=", "student_config.hidden_size=32", "student_init=teacher_layers", "student_layers=[1]", NULL},
         "hidden_size"},
        {{"student_config=", "student_config.intermediate_size=400", "student_init=teacher_layers", "student_layers=[1]",
          NULL},
         "larger than the teacher"},
        {{"student_config=", "student_init=teacher_layers", NULL}, "student_layers"},
        {{"student_layers=[1]", NULL}, "only used with student_init"},
        {{"student_config=", "student_init=teacher_layers", "student_layers=[1]", "adapter=lora", NULL},
         "set adapter: none"},
        {{"student_config=", "student_init=teacher_layers", "student_layers=[1, x]", NULL}, "integers"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        run e;
        run_inproc(&e, rt_tmp("tl-bad"), bad[i].over);
        CHECK(e.train == RT_EINPUT && strstr(rt_error_message(), bad[i].msg), "case %zu: %d %s", i, e.train,
              rt_error_message());
        run_free(&e);
    }
}


/* ---- the SmolLM2-135M job's student (when scripts/get-models.sh fetched the GGUF) ---- */
static void test_smollm2_student(void) {
    const char *home = getenv("HOME"), *cache = getenv("RETORT_CACHE");
    char path[1024];
    snprintf(path, sizeof path, "%s/SmolLM2-135M-Instruct.Q4_1.gguf", cache && *cache ? cache : "");
    if (!(cache && *cache) && home) snprintf(path, sizeof path, "%s/.cache/retort/SmolLM2-135M-Instruct.Q4_1.gguf", home);
    if (access(path, F_OK) != 0) {
        SKIP("%s not fetched (scripts/get-models.sh)", path);
        return;
    }
    rt_llama_opts o = {.device = RT_CPU};
    rt_llama *t = NULL, *s = NULL;
    const int layers[3] = {0, 14, 28};
    rt_status st = rt_llama_load(path, &o, &t);
    if (st == RT_OK) st = rt_llama_new_from(t, layers, 3, 512, &o, &s);
    CHECK(st == RT_OK, "SmolLM2 student: %s", rt_error_message());
    if (st == RT_OK) {
        int64_t nt = rt_llama_n_params(t), ns = rt_llama_n_params(s);
        /* 49152 x 576 tied embeddings + 3 x (attention 884,736 + MLP 3 x 576 x 512 + 2 norms) + final norm */
        CHECK(nt == 134515008 && ns == 28311552 + 3 * (884736 + 884736 + 1152) + 576 && 4 * ns <= nt,
              "teacher %lld, student %lld parameters", (long long)nt, (long long)ns);
        CHECK(same_tensor(s->embed_tokens, t->embed_tokens) &&
                  same_tensor(s->layers[1].proj[RT_PROJ_K].weight, t->layers[14].proj[RT_PROJ_K].weight) &&
                  same_tensor(s->layers[2].post_attention_layernorm, t->layers[28].post_attention_layernorm),
              "SmolLM2 student weights are not the teacher's");
        printf("smollm2 student: %lld of %lld parameters (%.3f%%)\n", (long long)ns, (long long)nt,
               100.0 * (double)ns / (double)nt);
    }
    rt_llama_free(s);
    rt_llama_free(t);
}

/* ---- rt_llama_save_hf round trip ---- */
static void test_save_roundtrip(void) {
    rt_llama_config cfg = {.hidden_size = 16, .intermediate_size = 24, .num_hidden_layers = 2,
                           .num_attention_heads = 4, .num_key_value_heads = 2, .vocab_size = 40,
                           .max_position_embeddings = 32, .bos_token_id = 1, .eos_token_id = 2,
                           .rms_norm_eps = 1e-5f, .rope_theta = 10000.0f, .tie_word_embeddings = false};
    rt_llama_opts o = {.device = RT_CPU, .seed = 9};
    rt_llama *m = NULL, *back = NULL;
    rt_status s = rt_llama_new(&cfg, &o, 0.2f, &m);
    char dir[600];
    snprintf(dir, sizeof dir, "%s", rt_tmp("saved/model"));
    if (s == RT_OK) s = rt_llama_save_hf(m, NULL, dir);
    rt_llama_opts lo = {.device = RT_CPU};
    if (s == RT_OK) s = rt_llama_load(dir, &lo, &back);
    CHECK(s == RT_OK, "save/load: %s", rt_error_message());
    if (s == RT_OK) {
        rt_ctx *ctx = rt_ctx_new(RT_CPU, 0);
        ctx->no_grad = true;
        int32_t ids[6] = {1, 5, 9, 30, 2, 7}, pos[6] = {0, 1, 2, 3, 4, 5};
        int64_t shape[2] = {1, 6};
        float a[6 * 40], b[6 * 40];
        rt_to_host(ctx, rt_llama_forward(ctx, m, rt_from_i32(ctx, ids, 2, shape), rt_from_i32(ctx, pos, 2, shape), NULL), a);
        rt_to_host(ctx, rt_llama_forward(ctx, back, rt_from_i32(ctx, ids, 2, shape), rt_from_i32(ctx, pos, 2, shape), NULL), b);
        CHECK(!memcmp(a, b, sizeof a), "reloaded model gives other logits");
        CHECK(back->cfg.hidden_size == 16 && !back->cfg.tie_word_embeddings && back->cfg.num_key_value_heads == 2,
              "config not kept");
        rt_ctx_free(ctx);
    }
    rt_llama_free(m);
    rt_llama_free(back);
}

int main(void) {
    const char *teacher = rt_test_shared("models/stories260K/stories260K.bin");
    if (access(teacher, F_OK) != 0) {
        SKIP("%s not found", teacher);
        return rt_test_summary();
    }
    write_recipe();
    test_save_roundtrip();
    test_loss_mixing();
    test_ratio0_is_ce();
    test_cache();
    test_errors();
    test_lora_student();
    test_full_student();
    test_teacher_layers();
    test_smollm2_student();
    test_cli();
    return rt_test_summary();
}
