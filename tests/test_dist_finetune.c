/* Data parallelism under mpirun (2 ranks on the CPU, MPI collectives): the
 * same global batch gives the same adapter as one process with gradient
 * accumulation, bit for bit, at ZeRO stage 0 and 1, and a wrong reduction
 * is caught; a rank that fails on bad input takes
 * the whole job down with its message. */
#include <math.h>
#include <stdbool.h>
#include <time.h>

#include "tests/cli_util.h"
#include "train/formats/safetensors.h"

#define RECIPE RETORT_SOURCE_DIR "/recipes/stories260k-qlora-mobydick.yaml"

/* Max over all tensors of file `name` in two directories of
 * |a-b| / max(|a|,|b|, 1e-3·max|a|). */
/* (l2: per tensor ||a-b|| / ||a|| instead.) */
static double weights_diff(const char *dir_a, const char *dir_b, const char *name, bool l2) {
    char pa[700], pb[700];
    snprintf(pa, sizeof pa, "%s/%s", dir_a, name);
    snprintf(pb, sizeof pb, "%s/%s", dir_b, name);
    rt_safetensors *a = NULL, *b = NULL;
    if (rt_st_open(pa, &a) != RT_OK || rt_st_open(pb, &b) != RT_OK || rt_st_count(a) != rt_st_count(b)) {
        rt_st_close(a);
        rt_st_close(b);
        return INFINITY;
    }
    double worst = 0;
    for (size_t i = 0; i < rt_st_count(a); i++) {
        const rt_st_tensor *ta = rt_st_get(a, i), *tb = rt_st_find(b, ta->name);
        if (!tb || tb->nbytes != ta->nbytes) return INFINITY;
        const float *x = ta->data, *y = tb->data;
        int64_t n = (int64_t)(ta->nbytes / 4);
        double scale = 0, num = 0, den = 0;
        for (int64_t j = 0; j < n; j++) scale = fmax(scale, fabs(x[j]));
        for (int64_t j = 0; j < n; j++) {
            num += ((double)x[j] - y[j]) * ((double)x[j] - y[j]);
            den += (double)x[j] * x[j];
            if (!l2)
                worst = fmax(worst, fabs(x[j] - y[j]) / fmax(fmax(fabs(x[j]), fabs(y[j])), 1e-3 * scale + 1e-30));
        }
        if (l2) worst = fmax(worst, sqrt(num / fmax(den, 1e-30)));
    }
    rt_st_close(a);
    rt_st_close(b);
    return worst;
}

/* Whether file `name` is byte for byte the same in two directories. */
static bool same_file(const char *dir_a, const char *dir_b, const char *name) {
    char pa[700], pb[700];
    snprintf(pa, sizeof pa, "%s/%s", dir_a, name);
    snprintf(pb, sizeof pb, "%s/%s", dir_b, name);
    return rt_same_file(pa, pb);
}

int main(void) {
#ifndef RETORT_MPIEXEC
    SKIP("data-parallel tests: this build has no MPI (apt-get install -y libopenmpi-dev openmpi-bin)");
    return rt_test_summary();
#else
    char common[2048];
    rt_stories260k_args(common, sizeof common,
                        "max_steps=12 lora_dropout=0 "
                        "micro_batch_size=2 eval_steps=0 val_set_size=8 logging_steps=100");
    /* Open MPI unloads its plugins before LeakSanitizer's exit-time check, so
     * their allocations cannot be attributed or suppressed; leak checking of
     * the same retort code runs in the single-process tests. */
    const char *mpi = "ASAN_OPTIONS=detect_leaks=0 " RETORT_MPIEXEC " -np 2 --oversubscribe";
    char one[512], two[512], two_z1[512], fail0[512], fail1[512], cmd[8192];
    snprintf(one, sizeof one, "%s", rt_tmp("one"));
    snprintf(two, sizeof two, "%s", rt_tmp("two"));
    snprintf(two_z1, sizeof two_z1, "%s", rt_tmp("two-zero1"));

    int rc = rt_run(NULL, NULL, "finetune %s %s gradient_accumulation_steps=2 output_dir=%s", RECIPE,
                    common, one);
    CHECK(rc == 0, "1 process, accumulation 2: exit %d", rc);
    snprintf(cmd, sizeof cmd, "%s %s finetune %s %s gradient_accumulation_steps=1 output_dir=%s "
             ">/dev/null 2>%s/two.err", mpi, RETORT_BIN, RECIPE, common, two, rt_test_tmpdir());
    rc = system(cmd);
    CHECK(rc == 0, "mpirun -np 2, accumulation 1: status %d", rc);
    /* Why bitwise: the trainer sums micro-batch gradients one at a time in
     * a fixed order (train/trainer.c) and every GEMM's panels are a function
     * of its shape, not of the thread count (kernels/cpu/gemm.c), so 1
     * process accumulating g0 + g1 and the all-reduce of 2 ranks, each
     * holding one of them (a + b == b + a in IEEE arithmetic; the /2 of the
     * mean undoes the x2 of the per-rank loss scale exactly) compute the same
     * bits on any CPU. No tolerance can be derived instead: AdamW divides
     * each gradient by its own running RMS, so a 1-ulp difference in a
     * gradient near zero becomes an O(1) relative difference in its update
     * (0.4% of the adapter after 12 steps on a Zen 5 before the fix). */
    const char *adapter = "adapter_model.safetensors";
    double d = weights_diff(one, two, adapter, false);
    CHECK(same_file(one, two, adapter),
          "2 ranks vs 1 process with accumulation: adapters differ (max relative difference %g)", d);
    printf("2 ranks (zero_stage 0) vs 1 process: max relative difference %.3g\n", d);

    /* The comparison catches a wrong all-reduce (a sum where the mean
     * belongs: AdamW is nearly blind to a gradient scale, only epsilon and
     * clipping see it). */
    char bad[512];
    snprintf(bad, sizeof bad, "%s", rt_tmp("two-sum"));
    snprintf(cmd, sizeof cmd, "RETORT_TEST_FAULT=allreduce_sum %s %s finetune %s %s "
             "gradient_accumulation_steps=1 output_dir=%s >/dev/null 2>&1", mpi, RETORT_BIN, RECIPE,
             common, bad);
    rc = system(cmd);
    d = weights_diff(one, bad, adapter, false);
    CHECK(rc == 0 && !same_file(one, bad, adapter) && d > 0,
          "a sum instead of a mean must fail the comparison (status %d, difference %g)", rc, d);
    printf("2 ranks with a wrong reduction (sum) vs 1 process: max relative difference %.3g\n", d);

    /* ZeRO-1's gradient norm adds the ranks' shard sums of squares, a
     * different grouping of the same double sum; it reaches the update only
     * through float roundings (the clip coefficient), which coincide unless
     * the double falls within an ulp of a float rounding boundary (~2^-29
     * per step), so this is bitwise in practice. */
    snprintf(cmd, sizeof cmd, "%s %s finetune %s %s gradient_accumulation_steps=1 zero_stage=1 "
             "output_dir=%s >/dev/null 2>&1", mpi, RETORT_BIN, RECIPE, common, two_z1);
    rc = system(cmd);
    CHECK(rc == 0, "mpirun -np 2 zero_stage=1: status %d", rc);
    d = weights_diff(one, two_z1, adapter, false);
    CHECK(same_file(one, two_z1, adapter), "2 ranks ZeRO-1 vs 1 process: adapters differ (max relative difference %g)", d);
    printf("2 ranks (zero_stage 1) vs 1 process: max relative difference %.3g\n", d);

    /* A short distillation (new student, teacher generations, online KD):
     * the whole student is trainable, so this all-reduces every weight. */
    char dcommon[2048], d1[512], d2[512], bin[512];
    snprintf(bin, sizeof bin, "%s", rt_test_shared("models/stories260K/stories260K.bin"));
    snprintf(dcommon, sizeof dcommon,
             "teacher_model=%s teacher_tokenizer=%s datasets.0.num_samples=24 "
             "datasets.0.max_new_tokens=40 val_set_size=4 teacher_logits=online kd_top_k=0 "
             "max_steps=6 eval_steps=0 micro_batch_size=2 logging_steps=100", bin,
             rt_test_shared("models/stories260K/tok512.bin"));
    snprintf(d1, sizeof d1, "%s", rt_tmp("distill-one"));
    snprintf(d2, sizeof d2, "%s", rt_tmp("distill-two"));
    rc = rt_run(NULL, NULL, "distill %s/recipes/stories260k-distill.yaml %s gradient_accumulation_steps=2 "
                "output_dir=%s", RETORT_SOURCE_DIR, dcommon, d1);
    CHECK(rc == 0, "distill, 1 process: exit %d", rc);
    snprintf(cmd, sizeof cmd, "%s %s distill %s/recipes/stories260k-distill.yaml %s "
             "gradient_accumulation_steps=1 output_dir=%s >/dev/null 2>&1", mpi, RETORT_BIN,
             RETORT_SOURCE_DIR, dcommon, d2);
    rc = system(cmd);
    CHECK(rc == 0, "distill, mpirun -np 2: status %d", rc);
    /* Every weight trains here (embedding scatter-adds, RMSNorm weights,
     * tied GEMMs): the same fixed-order argument as above makes it bitwise. */
    d = weights_diff(d1, d2, "model.safetensors", true);
    double dmax = weights_diff(d1, d2, "model.safetensors", false);
    CHECK(same_file(d1, d2, "model.safetensors"),
          "distill: 2 ranks vs 1 process: models differ (relative L2 difference %g, elementwise max %g)",
          d, dmax);
    printf("distill, 2 ranks vs 1 process: relative L2 difference %.3g per tensor (elementwise max %.3g)\n",
           d, dmax);

    /* Rank 1 gets a dataset that does not exist (MPMD launch): the job ends
     * quickly, non-zero, with rank 1's message. */
    char err[600];
    snprintf(fail0, sizeof fail0, "%s", rt_tmp("fail0"));
    snprintf(fail1, sizeof fail1, "%s", rt_tmp("fail1"));
    snprintf(err, sizeof err, "%s/fail.err", rt_test_tmpdir());
    snprintf(cmd, sizeof cmd,
             "ASAN_OPTIONS=detect_leaks=0 %s -np 1 --oversubscribe %s finetune %s %s output_dir=%s : -np 1 %s finetune %s %s "
             "datasets.0.path=/nonexistent/rank1.txt output_dir=%s >/dev/null 2>%s",
             RETORT_MPIEXEC, RETORT_BIN, RECIPE, common, fail0, RETORT_BIN, RECIPE, common, fail1, err);
    time_t t0 = time(NULL);
    rc = system(cmd);
    double secs = difftime(time(NULL), t0);
    char *msg = rt_slurp(err, NULL);
    CHECK(rc != 0, "a failing rank must fail the job");
    CHECK(secs < 60, "the job ended after %.0f s", secs);
    CHECK(msg && strstr(msg, "/nonexistent/rank1.txt") && strstr(msg, "rank 1"),
          "the failing rank's message: %s", msg ? msg : "(none)");
    free(msg);

    /* Ranks started with different recipes (MPMD) stop before the first
     * gradient collective, every rank with the first difference named:
     * a different lora_r used to crash in glibc, a different max_steps to
     * hang mpirun forever. */
    const char *diffs[] = {"lora_r=4", "max_steps=13"};
    for (int i = 0; i < 2; i++) {
        char same[600];
        snprintf(same, sizeof same, "%s", rt_tmp("mpmd"));
        snprintf(cmd, sizeof cmd,
                 "ASAN_OPTIONS=detect_leaks=0 %s -np 1 --oversubscribe %s finetune %s %s output_dir=%s : -np 1 %s "
                 "finetune %s %s %s output_dir=%s >/dev/null 2>%s",
                 RETORT_MPIEXEC, RETORT_BIN, RECIPE, common, same, RETORT_BIN, RECIPE, common, diffs[i], same, err);
        t0 = time(NULL);
        rc = system(cmd);
        secs = difftime(time(NULL), t0);
        msg = rt_slurp(err, NULL);
        CHECK(rc != 0 && secs < 120 && msg && strstr(msg, "ranks 0 and 1 disagree on the effective recipe"),
              "ranks with %s on rank 1: status %d after %.0f s: %s", diffs[i], rc, secs, msg ? msg : "(none)");
        free(msg);
    }

    /* A rank killed with SIGKILL mid-run ends the job within seconds. */
    snprintf(cmd, sizeof cmd,
             "%s %s finetune %s %s max_steps=100000 output_dir=%s >/dev/null 2>&1 & mp=$!; "
             "for i in $(seq 600); do [ -d %s ] && break; sleep 0.1; done; sleep 3; "
             "kill -9 $(pgrep -P $mp | head -1); t0=$(date +%%s); wait $mp; rc=$?; "
             "echo $(( $(date +%%s) - t0 )) > %s/kill.secs; exit $rc",
             mpi, RETORT_BIN, RECIPE, common, rt_tmp("killed"), rt_tmp("killed"), rt_test_tmpdir());
    rc = system(cmd);
    char secs_path[600];
    snprintf(secs_path, sizeof secs_path, "%s/kill.secs", rt_test_tmpdir());
    char *ks = rt_slurp(secs_path, NULL);
    double kill_secs = ks ? atof(ks) : 1e9;
    free(ks);
    CHECK(rc != 0 && kill_secs <= 30, "a rank killed with SIGKILL: mpirun status %d after %.0f s", rc, kill_secs);
    printf("a rank killed with SIGKILL: mpirun ended %.0f s later\n", kill_secs);
    return rt_test_summary();
#endif
}
