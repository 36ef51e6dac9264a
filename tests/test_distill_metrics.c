/* Distillation metrics: `retort distill` logs the CE and KD terms of the
 * loss apart (loss_ce, loss_kd in metrics.jsonl), they are finite and mix to
 * the logged loss as train/distill.h says,
 *     loss = (1 - kd_ratio) * loss_ce + kd_ratio * loss_kd,
 * over several micro-batches; kd_ratio 0 / 1 log only the term they compute;
 * loss.svg draws both parts. A tiny student of stories260K on Moby-Dick text. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/cli_util.h"

static char recipe_path[512], data_path[512];

static void write_inputs(void) {
    snprintf(data_path, sizeof data_path, "%s", rt_tmp("moby.txt"));
    char *moby = rt_slurp(rt_test_shared("data/moby-dick.txt"), NULL);
    if (!moby) return;
    size_t n = 6000; /* prose well inside the book, cut on a UTF-8 boundary */
    while (n > 0 && ((unsigned char)moby[30000 + n] & 0xC0) == 0x80) n--;
    rt_spit(data_path, moby + 30000, n);
    free(moby);
    snprintf(recipe_path, sizeof recipe_path, "%s", rt_tmp("distill.yaml"));
    char yaml[4096], teacher[1024];
    snprintf(teacher, sizeof teacher, "%s", rt_test_shared("models/stories260K/stories260K.bin"));
    snprintf(yaml, sizeof yaml,
             "teacher_model: %s\n"
             "teacher_tokenizer: %s\n"
             "student_config: {hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1,\n"
             "                 num_attention_heads: 2, num_key_value_heads: 1}\n"
             "adapter: none\n"
             "datasets:\n"
             "  - {path: %s, type: text}\n"
             "val_set_size: 2\n"
             "sequence_len: 32\n"
             "kd_ratio: 0.3\n"
             "micro_batch_size: 2\n"
             "gradient_accumulation_steps: 2\n"
             "max_steps: 3\n"
             "eval_steps: 2\n"
             "learning_rate: 1.0e-2\n"
             "logging_steps: 100\n"
             "device: cpu\n"
             "seed: 5\n",
             teacher, rt_test_shared("models/stories260K/tok512.bin"), data_path);
    rt_spit(recipe_path, yaml, strlen(yaml));
}

/* A finite number field of j, or NAN (absent, null, not a number). */
static double num(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(j, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* Runs distill with kd_ratio and checks every train line of metrics.jsonl;
 * returns the number of train lines. */
static int run_and_check(const char *name, double kd_ratio, const char *extra) {
    char out[600];
    snprintf(out, sizeof out, "%s", rt_tmp(name));
    int rc = rt_run(NULL, rt_tmp("distill.stderr"), "distill %s output_dir=%s kd_ratio=%g %s", recipe_path, out,
                    kd_ratio, extra);
    char *err = rt_slurp(rt_tmp("distill.stderr"), NULL);
    CHECK(rc == 0, "%s: distill exit %d: %s", name, rc, err ? err : "");
    free(err);
    char p[700];
    snprintf(p, sizeof p, "%s/metrics.jsonl", out);
    char *all = rt_slurp(p, NULL);
    CHECK(all != NULL, "%s: no metrics.jsonl", p);
    int train = 0, eval = 0;
    double worst = 0;
    for (char *line = all ? strtok(all, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        CHECK(cJSON_IsObject(j), "%s: not JSON: %s", name, line);
        if (!j) continue;
        bool has_ce = cJSON_GetObjectItem(j, "loss_ce") != NULL, has_kd = cJSON_GetObjectItem(j, "loss_kd") != NULL;
        if (cJSON_GetObjectItem(j, "val_loss")) {
            eval++;
            CHECK(!has_ce && !has_kd && isfinite(num(j, "val_loss")), "%s: eval line %s", name, line);
        } else if (cJSON_GetObjectItem(j, "loss")) {
            train++;
            double loss = num(j, "loss"), ce = num(j, "loss_ce"), kd = num(j, "loss_kd");
            CHECK(has_ce == (kd_ratio < 1) && has_kd == (kd_ratio > 0), "%s: fields of %s", name, line);
            /* the terms of a live loss are finite and positive (CE > 0, KL >= 0) */
            CHECK(isfinite(loss) && loss > 0, "%s: loss in %s", name, line);
            if (has_ce) CHECK(isfinite(ce) && ce > 0, "%s: loss_ce in %s", name, line);
            if (has_kd) CHECK(isfinite(kd) && kd >= 0, "%s: loss_kd in %s", name, line);
            double mix = (has_ce ? (1 - kd_ratio) * ce : 0) + (has_kd ? kd_ratio * kd : 0);
            /* each value is printed with 6 decimals; the mix is done in f32 per micro-batch */
            double err = fabs(loss - mix), tol = 4e-6 + 2e-6 * fabs(loss);
            if (err > worst) worst = err;
            CHECK(err <= tol, "%s: loss %.6f != (1-%g)*%.6f + %g*%.6f = %.6f", name, loss, kd_ratio, ce,
                  kd_ratio, kd, mix);
        }
        cJSON_Delete(j);
    }
    free(all);
    CHECK(train == 3 && eval >= 2, "%s: %d train, %d eval lines", name, train, eval);
    printf("%s: kd_ratio %g, %d train lines, |loss - mix| max %.2g\n", name, kd_ratio, train, worst);
    return train;
}

/* loss.svg: a dashed series per logged part, and its legend. */
static void check_svg(const char *name, bool ce, bool kd) {
    char p[700];
    snprintf(p, sizeof p, "%s/loss.svg", rt_tmp(name));
    char *svg = rt_slurp(p, NULL);
    CHECK(svg && strstr(svg, ">train loss<") && strstr(svg, ">validation loss<"), "%s: train/val series", p);
    const char *part[2] = {"loss_ce", "loss_kd"};
    bool want[2] = {ce, kd};
    for (int i = 0; svg && i < 2; i++) {
        char g[64], legend[64];
        snprintf(g, sizeof g, "<g id=\"%s\"", part[i]);
        snprintf(legend, sizeof legend, ">train %s<", part[i]);
        const char *at = strstr(svg, g);
        bool drawn = at && !strncmp(strstr(at, ">") + 2, "<polyline", 9) && strstr(svg, legend);
        CHECK(drawn == want[i], "%s: %s series %s", p, part[i], drawn ? "drawn" : "missing");
    }
    free(svg);
}

int main(void) {
    write_inputs();
    if (!data_path[0] || !recipe_path[0]) {
        SKIP("../shared/data/moby-dick.txt not readable");
        return rt_test_summary();
    }
    run_and_check("mixed", 0.3, "");
    check_svg("mixed", true, true);
    run_and_check("topk", 0.6, "kd_top_k=4 kd_loss=jsd");
    run_and_check("kd-only", 1.0, "");
    check_svg("kd-only", false, true);
    run_and_check("ce-only", 0.0, "");
    check_svg("ce-only", true, false);
    return rt_test_summary();
}
