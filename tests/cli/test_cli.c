/* The retort CLI on real inputs: llama2.c's greedy output reproduced byte for
 * byte from the .bin and from its converted HF directory, eval on real text,
 * and a clear error with exit code 2 for each kind of bad input. */
#include <math.h>

#include "tests/cli_util.h"

#define S260 "models/stories260K/"

static char bin[512], tok[512], expected_greedy[512], expected_sample[512];

static void check_generation(const char *model_args, const char *label) {
    const char *out = rt_tmp("gen.txt");
    int rc = rt_run(out, NULL, "generate %s --prompt '' --max-new-tokens 256 --temperature 0",
                    model_args);
    CHECK(rc == 0, "%s: generate exit %d", label, rc);
    size_t n1, n2;
    char *got = rt_slurp(out, &n1), *want = rt_slurp(expected_greedy, &n2);
    CHECK(got && want && n1 == n2 && memcmp(got, want, n1) == 0,
          "%s: greedy output differs from llama2.c's run.c (%zu vs %zu bytes)", label, n1, n2);
    free(got);
    free(want);
}

/* Runs a command expected to fail on bad input: exit 2, one error line
 * naming `needle`. */
static void check_bad_input(const char *args, const char *needle) {
    const char *err = rt_tmp("err.txt");
    int rc = rt_run(NULL, err, "%s", args);
    char *msg = rt_slurp(err, NULL);
    CHECK(rc == 2, "'%s': exit %d, expected 2", args, rc);
    CHECK(msg && strncmp(msg, "retort: error: ", 15) == 0 && strstr(msg, needle) &&
              strchr(msg, '\n') == msg + strlen(msg) - 1,
          "'%s': expected one 'retort: error:' line naming '%s', got: %s", args, needle,
          msg ? msg : "(nothing)");
    free(msg);
}

int main(void) {
    snprintf(bin, sizeof bin, "%s", rt_test_shared(S260 "stories260K.bin"));
    snprintf(tok, sizeof tok, "%s", rt_test_shared(S260 "tok512.bin"));
    snprintf(expected_greedy, sizeof expected_greedy, "%s", rt_test_shared(S260 "greedy.expected.txt"));
    snprintf(expected_sample, sizeof expected_sample, "%s",
             rt_test_shared(S260 "sample-t1.0-p0.9-s133742.expected.txt"));
    char args[2048];

    /* --help / --version / unknown command */
    CHECK(rt_run(NULL, NULL, "--help") == 0, "--help");
    CHECK(rt_run(NULL, NULL, "--version") == 0, "--version");
    check_bad_input("frobnicate", "unknown command");

    /* greedy generation, .bin and converted HF directory */
    snprintf(args, sizeof args, "--model %s --tokenizer %s", bin, tok);
    check_generation(args, ".bin");
    char hf[512], chapter[512], trunc[512], bad[512], empty[512];
    snprintf(hf, sizeof hf, "%s", rt_tmp("hf260"));
    int rc = rt_run(NULL, NULL, "convert llama2c %s --tokenizer %s --out %s", bin, tok, hf);
    CHECK(rc == 0, "convert exit %d", rc);
    snprintf(args, sizeof args, "--model %s", hf);
    check_generation(args, "converted dir");

    /* run.c's sampler with the same seed gives the same text (same xorshift) */
    const char *out = rt_tmp("sample.txt");
    rc = rt_run(out, NULL, "generate --model %s --tokenizer %s --prompt '' --max-new-tokens 256 "
                "--temperature 1.0 --top-p 0.9 --seed 133742", bin, tok);
    char *got = rt_slurp(out, NULL), *want = rt_slurp(expected_sample, NULL);
    CHECK(rc == 0 && got && want && strcmp(got, want) == 0, "seeded top-p sample differs from run.c");
    free(got);
    free(want);

    /* prompt echo: stdout starts with the prompt */
    rc = rt_run(out, NULL, "generate --model %s --prompt 'Once upon a time' --max-new-tokens 8 "
                "--temperature 0", hf);
    got = rt_slurp(out, NULL);
    CHECK(rc == 0 && got && strncmp(got, "Once upon a time", 16) == 0 && got[strlen(got) - 1] == '\n',
          "generate with a prompt: %s", got ? got : "(nothing)");
    free(got);

    /* eval on a chapter of Moby-Dick: finite, and the same from both forms */
    size_t n;
    char *moby = rt_slurp(rt_test_shared("data/moby-dick.txt"), &n);
    CHECK(moby != NULL, "moby-dick.txt readable");
    snprintf(chapter, sizeof chapter, "%s", rt_tmp("chapter.txt"));
    rt_spit(chapter, moby, n > 20000 ? 20000 : n);
    const char *e1 = rt_tmp("eval1.txt"), *e2 = rt_tmp("eval2.txt");
    rc = rt_run(e1, NULL, "eval --model %s --tokenizer %s --data %s --seq-len 128", bin, tok, chapter);
    CHECK(rc == 0, "eval .bin exit %d", rc);
    rc = rt_run(e2, NULL, "eval --model %s --data %s --seq-len 128", hf, chapter);
    CHECK(rc == 0, "eval dir exit %d", rc);
    double nll1 = rt_eval_nll(e1), nll2 = rt_eval_nll(e2);
    CHECK(isfinite(nll1) && nll1 > 0.5 && nll1 < 7.0, "eval nll %f", nll1);
    CHECK(fabs(nll1 - nll2) < 1e-5, "eval .bin %f vs converted dir %f", nll1, nll2);
    rc = rt_run(e2, NULL, "eval --model %s --data %s --seq-len 128 --json", hf, chapter);
    got = rt_slurp(e2, NULL);
    CHECK(rc == 0 && got && got[0] == '{' && strstr(got, "\"ppl\":"), "--json: %s", got ? got : "");
    free(got);

    char cmd[4096];

    /* ---- bad input: exit 2 and one line naming the file and problem ---- */
    snprintf(args, sizeof args, "eval --model /nonexistent/model --data %s", chapter);
    check_bad_input(args, "/nonexistent/model");
    snprintf(args, sizeof args, "eval --model %s --tokenizer %s --data /nonexistent/data.txt", bin, tok);
    check_bad_input(args, "/nonexistent/data.txt");
    snprintf(bad, sizeof bad, "%s", rt_tmp("bad.txt"));
    rt_spit(bad, "abc\xff\xfe def", 9);
    snprintf(args, sizeof args, "eval --model %s --tokenizer %s --data %s", bin, tok, bad);
    check_bad_input(args, "UTF-8");
    snprintf(empty, sizeof empty, "%s", rt_tmp("empty.txt"));
    rt_spit(empty, "", 0);
    snprintf(args, sizeof args, "eval --model %s --tokenizer %s --data %s", bin, tok, empty);
    check_bad_input(args, empty);
    snprintf(args, sizeof args, "eval --model %s --data %s --seq-len banana", hf, chapter);
    check_bad_input(args, "--seq-len");

    /* a truncated safetensors file */
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", hf);
    char *st = rt_slurp(path, &n);
    snprintf(trunc, sizeof trunc, "%s", rt_tmp("trunc"));
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s/config.json %s/tokenizer.json %s/", trunc, hf, hf, trunc);
    CHECK(system(cmd) == 0, "copy");
    snprintf(path, sizeof path, "%s/model.safetensors", trunc);
    rt_spit(path, st, n / 2);
    snprintf(args, sizeof args, "eval --model %s --data %s", trunc, chapter);
    check_bad_input(args, "model.safetensors");
    /* a corrupt header */
    rt_spit(path, "\x10\x00\x00\x00\x00\x00\x00\x00{not json at all", 24);
    check_bad_input(args, "model.safetensors");

    /* a config.json without a required key */
    rt_spit(path, st, n);
    snprintf(path, sizeof path, "%s/config.json", trunc);
    char *cfg = rt_slurp(path, NULL);
    char *key = cfg ? strstr(cfg, "\"num_hidden_layers\"") : NULL;
    if (key) memcpy(key, "\"num_hidden_lay_rs\"", 19);
    if (cfg) rt_spit(path, cfg, strlen(cfg));
    check_bad_input(args, "num_hidden_layers");
    /* a tensor of the wrong shape: claim 6 layers' worth of heads differently */
    char *cfg2 = rt_slurp(path, NULL);
    if (key && cfg2) {
        char *k2 = strstr(cfg2, "\"num_hidden_lay_rs\"");
        memcpy(k2, "\"num_hidden_layers\"", 19);
        char *h = strstr(cfg2, "\"intermediate_size\"");
        char *colon = h ? strchr(h, ':') : NULL;
        if (colon) { /* 172 -> 173: every MLP weight now has the wrong shape */
            char *d = colon + 1;
            while (*d == ' ' || *d == '\t') d++;
            if (!strncmp(d, "172", 3)) d[2] = '3';
        }
        rt_spit(path, cfg2, strlen(cfg2));
    }
    check_bad_input(args, "shape");
    free(cfg);
    free(cfg2);
    free(st);
    free(moby);
    return rt_test_summary();
}
