/* Crash safety (issue #11 item 6): `retort finetune` killed with SIGKILL at
 * several moments — right after a checkpoint appears (between checkpoints),
 * while a checkpoint-N.tmp is being written (best effort: the first moment
 * the directory is seen), and late in the run (around the final save) — then
 * resumed with resume_from_checkpoint: true. Each time: every checkpoint with
 * a COMPLETE marker verifies, and the resumed run's adapter equals an
 * uninterrupted run's byte for byte. */
#include <dirent.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/cli_util.h"
#include "train/checkpoint.h"

#define RECIPE RETORT_SOURCE_DIR "/recipes/stories260k-qlora-mobydick.yaml"

static char args[2048];

static bool same_adapter(const char *a, const char *b) {
    char pa[700], pb[700];
    snprintf(pa, sizeof pa, "%s/adapter_model.safetensors", a);
    snprintf(pb, sizeof pb, "%s/adapter_model.safetensors", b);
    size_t na = 0, nb = 0;
    char *x = rt_slurp(pa, &na), *y = rt_slurp(pb, &nb);
    bool same = x && y && na == nb && !memcmp(x, y, na);
    free(x), free(y);
    return same;
}

static bool all_complete_verify(const char *out) {
    long steps[64];
    int n = rt_checkpoint_list(out, steps, 64);
    for (int i = 0; i < n; i++) {
        char d[700];
        snprintf(d, sizeof d, "%s/checkpoint-%ld", out, steps[i]);
        if (rt_checkpoint_verify(d) != RT_OK) {
            fprintf(stderr, "%s\n", rt_error_message());
            return false;
        }
    }
    return true;
}

/* Starts the run, waits until `path_glob` exists (shell test), sleeps
 * `delay` seconds, kills it with SIGKILL. */
static void run_and_kill(const char *out, const char *wait_for, const char *delay) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "%s finetune %s %s output_dir=%s >/dev/null 2>&1 & p=$!; "
             "for i in $(seq 3000); do ls -d %s >/dev/null 2>&1 && break; kill -0 $p 2>/dev/null || break; "
             "sleep 0.02; done; sleep %s; kill -9 $p 2>/dev/null; wait $p 2>/dev/null; exit 0",
             RETORT_BIN, RECIPE, args, out, wait_for, delay);
    if (system(cmd) != 0) fprintf(stderr, "kill script failed\n");
}

int main(void) {
    rt_stories260k_args(args, sizeof args,
                        "sequence_len=64 micro_batch_size=2 "
                        "val_set_size=4 eval_steps=0 logging_steps=100 lora_dropout=0.1 max_steps=10 save_steps=2 "
                        "save_total_limit=2");
    char ref[512];
    snprintf(ref, sizeof ref, "%s", rt_tmp("uninterrupted"));
    int rc = rt_run(NULL, NULL, "finetune %s %s output_dir=%s", RECIPE, args, ref);
    CHECK(rc == 0, "uninterrupted run: exit %d", rc);

    const struct {
        const char *name, *wait_for, *delay;
    } moments[] = {
        {"between checkpoints", "%s/checkpoint-4", "0.3"},
        {"during a checkpoint write", "%s/checkpoint-*.tmp", "0"},
        {"near the final save", "%s/checkpoint-8", "0.5"},
    };
    for (size_t i = 0; i < sizeof moments / sizeof moments[0]; i++) {
        char out[512], wait_for[700], err[600];
        snprintf(out, sizeof out, "%s", rt_tmp(moments[i].name[0] == 'b' ? "k-between" : moments[i].name[0] == 'd' ? "k-write" : "k-final"));
        snprintf(wait_for, sizeof wait_for, moments[i].wait_for, out);
        snprintf(err, sizeof err, "%s", rt_tmp("crash.err"));
        run_and_kill(out, wait_for, moments[i].delay);
        CHECK(all_complete_verify(out), "%s: every complete checkpoint verifies after the kill", moments[i].name);
        long steps[64];
        int n = rt_checkpoint_list(out, steps, 64);
        const char *resume = n > 0 ? "resume_from_checkpoint=true" : "";
        rc = rt_run(NULL, err, "finetune %s %s output_dir=%s %s", RECIPE, args, out, resume);
        CHECK(rc == 0, "%s: resumed run exit %d", moments[i].name, rc);
        CHECK(same_adapter(ref, out), "%s (resumed from step %ld): the final adapter equals the uninterrupted run's",
              moments[i].name, n > 0 ? steps[0] : 0L);
        printf("killed %s: newest complete checkpoint %ld, resumed to a byte-identical adapter\n", moments[i].name,
               n > 0 ? steps[0] : 0L);
    }
    return rt_test_summary();
}
