/* Checkpoints that prove themselves, and numerical faults (issue #11 items
 * 3 and 7), through the CLI on stories260K:
 *   - a flipped bit in a trainer state or in a checkpoint's adapter is
 *     refused naming the file; resume_from_checkpoint: true falls back to
 *     the newest checkpoint that verifies and says so;
 *   - a state whose step field was edited (-1) is refused (header CRC);
 *   - resuming from an explicitly named older checkpoint while newer ones
 *     exist saves over the abandoned timeline's checkpoint;
 *   - pruning leaves only complete checkpoints;
 *   - learning_rate 1e30: steps are skipped on every rank and counted in a
 *     metrics.jsonl that stays valid JSON Lines, AdamW's t does not advance
 *     on a skipped step, the run stops after max_consecutive_skipped_steps
 *     with a message and never overwrites a good adapter.
 * (Kill -9 trials live in tests/test_crash.c.) */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdbool.h>
#include <sys/stat.h>

#include "tests/cli_util.h"
#include "train/checkpoint.h"

#define RECIPE RETORT_SOURCE_DIR "/recipes/stories260k-qlora-mobydick.yaml"

static char args[2048];

static void flip_byte(const char *path, long off_from_end) {
    size_t n;
    char *d = rt_slurp(path, &n);
    if (!d || (size_t)off_from_end > n) {
        free(d);
        return;
    }
    d[n - (size_t)off_from_end] ^= 0x24;
    rt_spit(path, d, n);
    free(d);
}

static bool exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

static bool contains(const char *path, const char *a, const char *b) {
    char *s = rt_slurp(path, NULL);
    bool ok = s && strstr(s, a) && (!b || strstr(s, b));
    free(s);
    return ok;
}

static void corrupt_and_resume(void) {
    char out[512], ck[700], p[800], log[600], err[600];
    snprintf(out, sizeof out, "%s", rt_tmp("ck"));
    snprintf(log, sizeof log, "%s", rt_tmp("ck.out"));
    snprintf(err, sizeof err, "%s", rt_tmp("ck.err"));
    int rc = rt_run(NULL, NULL, "finetune %s %s max_steps=6 save_steps=2 save_total_limit=0 output_dir=%s", RECIPE,
                    args, out);
    CHECK(rc == 0, "checkpointing run: exit %d", rc);
    snprintf(ck, sizeof ck, "%s/checkpoint-4", out);
    CHECK(rt_checkpoint_verify(ck) == RT_OK, "a fresh checkpoint verifies: %s", rt_error_message());

    /* A bit flip in the payload of the newest state. */
    snprintf(p, sizeof p, "%s/trainer_state-rank0.bin", ck);
    flip_byte(p, 100);
    rc = rt_run(NULL, err, "finetune %s %s max_steps=6 save_steps=2 output_dir=%s resume_from_checkpoint=%s",
                RECIPE, args, rt_tmp("ck-explicit"), ck);
    CHECK(rc == 2 && contains(err, "trainer_state-rank0.bin", "checksum"),
          "an explicitly named corrupt checkpoint is refused naming the file (exit %d)", rc);
    rc = rt_run(log, err, "finetune %s %s max_steps=6 save_steps=2 save_total_limit=0 output_dir=%s "
                "resume_from_checkpoint=true", RECIPE, args, out);
    CHECK(rc == 0, "resume_from_checkpoint: true with a corrupt newest checkpoint: exit %d", rc);
    CHECK(contains(log, "skipping checkpoint", "checkpoint-4") && contains(log, "checkpoint-2", "newest checkpoint that verifies"),
          "the fallback is reported");
    CHECK(rt_checkpoint_verify(ck) == RT_OK, "the rerun wrote a fresh checkpoint-4 over the corrupt one: %s",
          rt_error_message());

    /* A flipped byte in the checkpoint's adapter file. */
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", ck);
    flip_byte(p, 10);
    CHECK(rt_checkpoint_verify(ck) == RT_EINPUT && strstr(rt_error_message(), "adapter_model.safetensors"),
          "a corrupt adapter in a checkpoint is named: %s", rt_error_message());

    /* step = -1 written into the header (offset 32). */
    char ck2[700];
    snprintf(ck2, sizeof ck2, "%s/checkpoint-2/trainer_state-rank0.bin", out);
    size_t n;
    char *d = rt_slurp(ck2, &n);
    if (d && n > 40) {
        int64_t minus1 = -1;
        memcpy(d + 32, &minus1, 8);
        rt_spit(ck2, d, n);
    }
    free(d);
    snprintf(ck2, sizeof ck2, "%s/checkpoint-2", out);
    rc = rt_run(NULL, err, "finetune %s %s max_steps=6 output_dir=%s resume_from_checkpoint=%s", RECIPE, args,
                rt_tmp("ck-step"), ck2);
    CHECK(rc == 2 && contains(err, "checkpoint-2", NULL), "a state with step -1 is refused naming the file (exit %d)", rc);
}

static void older_checkpoint_and_prune(void) {
    char out[512], ck[700];
    snprintf(out, sizeof out, "%s", rt_tmp("older"));
    int rc = rt_run(NULL, NULL, "finetune %s %s max_steps=6 save_steps=2 save_total_limit=0 output_dir=%s", RECIPE,
                    args, out);
    CHECK(rc == 0, "run with checkpoints 2 and 4: exit %d", rc);
    snprintf(ck, sizeof ck, "%s/checkpoint-2", out);
    char err[600];
    snprintf(err, sizeof err, "%s", rt_tmp("older.err"));
    rc = rt_run(NULL, err, "finetune %s %s max_steps=6 save_steps=2 save_total_limit=0 output_dir=%s "
                "resume_from_checkpoint=%s", RECIPE, args, out, ck);
    CHECK(rc == 0, "resume from checkpoint-2 while checkpoint-4 exists saves over it: exit %d", rc);

    /* save_total_limit 1: only the newest, complete. */
    snprintf(out, sizeof out, "%s", rt_tmp("prune"));
    rc = rt_run(NULL, NULL, "finetune %s %s max_steps=7 save_steps=2 save_total_limit=1 output_dir=%s", RECIPE, args,
                out);
    DIR *dd = opendir(out);
    int n = 0, complete = 0;
    struct dirent *e;
    while (dd && (e = readdir(dd)))
        if (!strncmp(e->d_name, "checkpoint-", 11)) {
            char p[1200];
            snprintf(p, sizeof p, "%s/%s", out, e->d_name);
            n++;
            complete += rt_checkpoint_verify(p) == RT_OK;
        }
    if (dd) closedir(dd);
    char p6[700];
    snprintf(p6, sizeof p6, "%s/checkpoint-6", out);
    CHECK(rc == 0 && n == 1 && complete == 1 && exists(p6), "pruned to the newest checkpoint (%d left)", n);
}

/* Every line of metrics.jsonl parses as a JSON object. */
static bool valid_jsonl(const char *path, int *lines, int *skipped_lines) {
    char *s = rt_slurp(path, NULL);
    if (!s) return false;
    bool ok = true;
    *lines = *skipped_lines = 0;
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        ok &= cJSON_IsObject(j);
        (*lines)++;
        *skipped_lines += cJSON_IsTrue(cJSON_GetObjectItem(j, "skipped"));
        cJSON_Delete(j);
    }
    free(s);
    return ok;
}

static void numerical_faults(void) {
    char out[512], log[600], err[600], p[700];
    snprintf(out, sizeof out, "%s", rt_tmp("diverge"));
    snprintf(log, sizeof log, "%s", rt_tmp("diverge.out"));
    snprintf(err, sizeof err, "%s", rt_tmp("diverge.err"));
    /* A good adapter already in output_dir must survive a diverged run. */
    int rc = rt_run(NULL, NULL, "finetune %s %s max_steps=2 output_dir=%s", RECIPE, args, out);
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", out);
    size_t n0;
    char *good = rt_slurp(p, &n0);
    CHECK(rc == 0 && good, "a good run first: exit %d", rc);
    rc = rt_run(log, err, "finetune %s %s max_steps=40 learning_rate=1e30 warmup_steps=0 "
                "max_consecutive_skipped_steps=5 save_steps=2 save_total_limit=0 output_dir=%s", RECIPE, args, out);
    CHECK(rc != 0 && contains(err, "in a row", "max_consecutive_skipped_steps"),
          "learning_rate 1e30 stops with a message (exit %d)", rc);
    size_t n1;
    char *after = rt_slurp(p, &n1);
    CHECK(after && n1 == n0 && !memcmp(good, after, n0), "the good adapter was not overwritten");
    free(good), free(after);
    int lines = 0, skipped = 0;
    snprintf(p, sizeof p, "%s/metrics.jsonl", out);
    CHECK(valid_jsonl(p, &lines, &skipped) && skipped >= 5, "metrics.jsonl is valid JSON Lines (%d lines, %d skipped)",
          lines, skipped);
    /* AdamW's t counts applied updates only: the checkpoint at step 2 or
     * later holds updates < step once steps were skipped. */
    long steps[64];
    int nck = rt_checkpoint_list(out, steps, 64);
    bool counted = false;
    for (int i = 0; i < nck; i++) {
        char dir[700];
        snprintf(dir, sizeof dir, "%s/checkpoint-%ld", out, steps[i]);
        FILE *f = fopen(strcat(dir, "/trainer_state-rank0.bin"), "rb");
        unsigned char h[96];
        if (f && fread(h, 1, 96, f) == 96) {
            int64_t step, updates;
            memcpy(&step, h + 32, 8);
            memcpy(&updates, h + 88, 8);
            if (updates < step) counted = true;
            printf("checkpoint-%ld: step %lld, AdamW updates %lld\n", steps[i], (long long)step, (long long)updates);
        }
        if (f) fclose(f);
    }
    CHECK(nck == 0 || counted, "a checkpoint after skipped steps records fewer updates than steps");
}

int main(void) {
    rt_stories260k_args(args, sizeof args,
                        "sequence_len=64 micro_batch_size=2 "
                        "val_set_size=4 eval_steps=0 logging_steps=100 lora_dropout=0");
    corrupt_and_resume();
    older_checkpoint_and_prune();
    numerical_faults();
    return rt_test_summary();
}
