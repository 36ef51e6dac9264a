/* Hostile input costs bounded work: each file below once made retort
 * allocate gigabytes, spin for seconds or accept nonsense (issue #11). Each
 * must now be refused with exit code 2 and one message naming the file and
 * the problem, within a bounded CPU time and peak RSS (wait4's rusage: CPU
 * seconds, not wall-clock, so a machine loaded by other jobs does not fail
 * it; the bounds leave room for the sanitizer build; figures are printed). */
#include <math.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/cli_util.h"

#define RECIPE RETORT_SOURCE_DIR "/recipes/stories260k-qlora-mobydick.yaml"
#define MAX_SECONDS 2.0
#define MAX_RSS_MB 700.0

static char bin[512], tok[512], moby[512];

/* Runs `RETORT_BIN args` (stderr to err_path) and reports exit code, CPU
 * seconds (user + system), wall-clock seconds and peak RSS of the child. */
static int run_measured(const char *err_path, double *secs, double *wall, double *rss_mb, const char *fmt, ...) {
    char args[8192], cmd[12288];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "exec %s %s >/dev/null 2>%s </dev/null", RETORT_BIN, args, err_path);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    wait4(pid, &st, 0, &ru);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *wall = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    *secs = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
            1e-6 * (double)ru.ru_stime.tv_usec;
    *rss_mb = (double)ru.ru_maxrss / 1024.0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* One hostile case: exit 2, the message holds each of want1/want2, bounded. */
static void refused(const char *what, const char *want1, const char *want2, const char *fmt, const char *arg) {
    char err[600];
    snprintf(err, sizeof err, "%s/hostile.err", rt_test_tmpdir());
    double secs = 0, wall = 0, rss = 0;
    int rc = run_measured(err, &secs, &wall, &rss, fmt, arg);
    char *msg = rt_slurp(err, NULL);
    if (msg) msg[strcspn(msg, "\n")] = '\0';
    CHECK(rc == 2, "%s: exit %d, want 2 (%s)", what, rc, msg ? msg : "");
    CHECK(msg && strstr(msg, want1) && (!want2 || strstr(msg, want2)),
          "%s: the message must name \"%s\"%s%s: %s", what, want1, want2 ? " and " : "", want2 ? want2 : "",
          msg ? msg : "(none)");
    CHECK(secs < MAX_SECONDS && rss < MAX_RSS_MB, "%s: %.2f CPU s, %.0f MB peak RSS", what, secs, rss);
    printf("%-40s %5.2f CPU s %5.2f wall s %6.0f MB  %s\n", what, secs, wall, rss, msg ? msg : "");
    free(msg);
}

static const char *dir_with(const char *name, const char *file, const char *text, const char *file2,
                            const char *text2) {
    static char dir[512];
    char p[700];
    snprintf(dir, sizeof dir, "%s", rt_tmp(name));
    char cmd[800];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    if (system(cmd) != 0) return dir;
    snprintf(p, sizeof p, "%s/%s", dir, file);
    rt_spit(p, text, strlen(text));
    if (file2) {
        snprintf(p, sizeof p, "%s/%s", dir, file2);
        rt_spit(p, text2, strlen(text2));
    }
    return dir;
}

static void tokenizers(void) {
    /* One huge id: the tables used to be sized by it (1.3 GB, 9 s). */
    const char *d = dir_with("gpt2-huge-id", "encoder.json", "{\"a\": 0, \"b\": 1, \"i\": 72000216}", "vocab.bpe",
                             "#version: 0.2\na b\n");
    refused("encoder.json with id 72000216", "encoder.json", "72000216", "tokenize --tokenizer %s", d);
    d = dir_with("hf-huge-id", "tokenizer.json",
                 "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"i\": 72000216}, \"merges\": []}}",
                 NULL, NULL);
    refused("tokenizer.json with id 72000216", "tokenizer.json", "72000216", "tokenize --tokenizer %s", d);
    d = dir_with("hf-huge-added", "tokenizer.json",
                 "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, "
                 "\"added_tokens\": [{\"id\": 99999999, \"content\": \"<s>\", \"special\": true}]}",
                 NULL, NULL);
    refused("tokenizer.json added token id 99999999", "tokenizer.json", "99999999", "tokenize --tokenizer %s", d);
    /* An endless device is read up to the tokenizer cap, not until OOM. */
    refused("tokenizer /dev/zero", "/dev/zero", "not a regular file", "tokenize --tokenizer %s", "/dev/zero");
}

static void adapters(void) {
    const struct {
        const char *what, *json, *want;
    } cases[] = {
        {"adapter r 2147483647", "{\"peft_type\": \"LORA\", \"r\": 2147483647, \"lora_alpha\": 16, "
                                 "\"target_modules\": [\"q_proj\"]}", "\"r\""},
        {"adapter r 4096 (wider than every layer)", "{\"peft_type\": \"LORA\", \"r\": 4096, \"lora_alpha\": 16, "
                                 "\"target_modules\": [\"q_proj\"]}", "larger than every targeted layer"},
        {"adapter lora_alpha -1", "{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": -1, "
                                  "\"target_modules\": [\"q_proj\"]}", "lora_alpha"},
        {"adapter lora_alpha 1e999", "{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 1e999, "
                                     "\"target_modules\": [\"q_proj\"]}", "lora_alpha"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[32], args[3000];
        snprintf(name, sizeof name, "adapter%zu", i);
        const char *d = dir_with(name, "adapter_config.json", cases[i].json, NULL, NULL);
        snprintf(args, sizeof args, "eval --model %s --tokenizer %s --data %s --adapter %s", bin, tok, moby, d);
        refused(cases[i].what, "adapter_config.json", cases[i].want, "%s", args);
    }
}

static void recipes(void) {
    char common[2048], args[4096];
    snprintf(common, sizeof common, "base_model=%s tokenizer=%s datasets.0.path=%s max_steps=1", bin, tok, moby);
    snprintf(args, sizeof args, "finetune %s %s sequence_len=1000000 output_dir=%s", RECIPE, common,
             rt_tmp("seq"));
    refused("sequence_len 1000000 (context 512)", "sequence_len", "max_position_embeddings", "%s", args);

    /* 100 KB of '[': libyaml's cost grows with the square of the depth. */
    size_t n = 100 * 1024;
    char *deep = malloc(n + 16);
    memcpy(deep, "x: ", 3);
    memset(deep + 3, '[', n);
    deep[n + 3] = '\0';
    const char *deep_path = rt_tmp("deep.yaml");
    rt_spit(deep_path, deep, strlen(deep));
    free(deep);
    refused("recipe of 100 KB nested '['", "deep.yaml", "nested deeper", "finetune %s", deep_path);

    char text[4096], path[600];
    snprintf(text, sizeof text,
             "base_model: %s\ntokenizer: %s\ndatasets:\n  - path: %s\nmax_steps: 1\n---\nlearning_rate: 1\n",
             bin, tok, moby);
    snprintf(path, sizeof path, "%s", rt_tmp("two-docs.yaml"));
    rt_spit(path, text, strlen(text));
    refused("recipe keys after '---'", "two-docs.yaml", "second YAML document", "finetune %s", path);

    const char *keys[] = {"adam_beta2: 1", "adam_beta1: 1", "lora_dropout: 1"};
    for (int i = 0; i < 3; i++) {
        snprintf(text, sizeof text, "base_model: %s\ntokenizer: %s\ndatasets:\n  - path: %s\nmax_steps: 1\n%s\n",
                 bin, tok, moby, keys[i]);
        snprintf(path, sizeof path, "%s", rt_tmp("range.yaml"));
        rt_spit(path, text, strlen(text));
        char key[32];
        snprintf(key, sizeof key, "%.*s", (int)strcspn(keys[i], ":"), keys[i]);
        char what[64];
        snprintf(what, sizeof what, "recipe %s", keys[i]);
        refused(what, "range.yaml", key, "finetune %s", path);
    }
}

int main(void) {
    snprintf(bin, sizeof bin, "%s", rt_test_shared("models/stories260K/stories260K.bin"));
    snprintf(tok, sizeof tok, "%s", rt_test_shared("models/stories260K/tok512.bin"));
    snprintf(moby, sizeof moby, "%s", rt_test_shared("data/moby-dick.txt"));
    tokenizers();
    adapters();
    recipes();
    return rt_test_summary();
}
