/* A full disk during a checkpoint save (issue #11 item 6): `retort finetune`
 * writes into a small tmpfs that holds its first checkpoint but not the
 * second. The run must stop with one clear error line, never exit 0, and
 * leave the first checkpoint complete and verifying, and no second one that
 * looks complete. Mounting needs root; elsewhere the test prints SKIP with
 * the reason. */
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/cli_util.h"
#include "train/checkpoint.h"

#define RECIPE RETORT_SOURCE_DIR "/recipes/stories260k-qlora-mobydick.yaml"

/* Size of a directory tree in KiB, as du counts it (tmpfs pages). */
static long du_kib(const char *dir) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "du -sk '%s' 2>/dev/null", dir);
    FILE *p = popen(cmd, "r");
    long k = -1;
    if (p && fscanf(p, "%ld", &k) != 1) k = -1;
    if (p) pclose(p);
    return k;
}

static int count_lines_with(const char *text, const char *needle) {
    int n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

int main(void) {
    char args[2048];
    rt_stories260k_args(args, sizeof args,
                        "sequence_len=64 micro_batch_size=2 "
                        "val_set_size=4 eval_steps=0 logging_steps=100 lora_dropout=0 save_steps=1 save_total_limit=0");

    /* How much one checkpoint takes, on the ordinary disk. */
    char probe[512];
    snprintf(probe, sizeof probe, "%s", rt_tmp("probe"));
    int rc = rt_run(NULL, NULL, "finetune %s %s max_steps=2 output_dir=%s", RECIPE, args, probe);
    CHECK(rc == 0, "probe run: exit %d", rc);
    char ck[800];
    snprintf(ck, sizeof ck, "%s/checkpoint-1", probe);
    long one = du_kib(ck), all = du_kib(probe);
    CHECK(one > 0 && all >= one, "probe sizes: checkpoint %ld KiB, output %ld KiB", one, all);

    /* Room for the first checkpoint and the run's other files, not a second. */
    char mnt[512], cmd[1400];
    snprintf(mnt, sizeof mnt, "%s", rt_tmp("tmpfs"));
    mkdir(mnt, 0755);
    long size = all + one / 4;
    snprintf(cmd, sizeof cmd, "mount -t tmpfs -o size=%ldk retort-disk-full '%s' 2>/dev/null", size, mnt);
    if (one <= 0 || system(cmd) != 0) {
        SKIP("full disk during a checkpoint save: cannot mount a %ld KiB tmpfs (needs root)", size);
        return rt_test_summary();
    }
    char out[600], err[600];
    snprintf(out, sizeof out, "%s/out", mnt);
    snprintf(err, sizeof err, "%s", rt_tmp("disk-full.err"));
    rc = rt_run(NULL, err, "finetune %s %s max_steps=6 output_dir=%s", RECIPE, args, out);
    char *msg = rt_slurp(err, NULL);
    CHECK(rc != 0, "a run whose checkpoint does not fit must not exit 0");
    CHECK(msg && count_lines_with(msg, "retort: error:") == 1, "one error line, got: %s", msg ? msg : "(none)");
    CHECK(msg && (strstr(msg, "space") || strstr(msg, "ENOSPC")), "the error says the disk is full: %s",
          msg ? msg : "(none)");
    snprintf(ck, sizeof ck, "%s/checkpoint-1", out);
    CHECK(rt_checkpoint_verify(ck) == RT_OK, "checkpoint-1 is intact after the failed save: %s",
          rt_error_message());
    long steps[16];
    int n = rt_checkpoint_list(out, steps, 16);
    CHECK(n == 1 && steps[0] == 1, "only checkpoint-1 counts as complete (found %d, newest %ld)", n,
          n > 0 ? steps[0] : -1L);
    printf("disk full (%ld KiB tmpfs, checkpoint %ld KiB): exit %d, %s", size, one, rc, msg ? msg : "\n");
    free(msg);
    snprintf(cmd, sizeof cmd, "umount '%s'", mnt);
    CHECK(system(cmd) == 0, "umount %s", mnt);
    return rt_test_summary();
}
