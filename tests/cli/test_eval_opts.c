/* retort eval: --stride (overlapping windows score each token once) and
 * dataset types scored through the training data code (masked prompts are
 * not scored). stories260K. */
#include <stdbool.h>

#include "tests/cli_util.h"
#include "train/tokenizer/tokenizer.h"

static char bin[600], tok[600];

static bool eval(const char *extra, long long *tokens, double *nll) {
    const char *out = rt_tmp("eval.out");
    int rc = rt_run(out, NULL, "eval --model %s --tokenizer %s %s", bin, tok, extra);
    char *s = rt_slurp(out, NULL);
    bool ok = rc == 0 && s && sscanf(s, "eval: tokens=%lld nll=%lf", tokens, nll) == 2;
    free(s);
    return ok;
}

int main(void) {
    snprintf(bin, sizeof bin, "%s", rt_test_shared("models/stories260K/stories260K.bin"));
    snprintf(tok, sizeof tok, "%s", rt_test_shared("models/stories260K/tok512.bin"));
    rt_tokenizer *t = NULL;
    CHECK(rt_tokenizer_load(tok, &t) == RT_OK, "tokenizer");
    size_t n = 0;
    char *all = rt_slurp(rt_test_shared("data/moby-dick.txt"), &n);
    const char *txt = rt_tmp("moby.txt");
    rt_spit(txt, all, 6000);
    int32_t *ids = NULL;
    size_t n_ids = 0;
    rt_tokenizer_encode(t, all, 6000, true, &ids, &n_ids);
    free(ids), free(all);
    char extra[800];
    long long k0, k1, k2;
    double a, b, c;
    snprintf(extra, sizeof extra, "--data %s --seq-len 128", txt);
    bool ok0 = eval(extra, &k0, &a);
    snprintf(extra, sizeof extra, "--data %s --seq-len 128 --stride 128", txt);
    bool ok1 = eval(extra, &k1, &b);
    CHECK(ok0 && ok1 && k0 == k1 && a == b, "stride = seq-len is the non-overlapping evaluation");
    snprintf(extra, sizeof extra, "--data %s --seq-len 128 --stride 32", txt);
    bool ok2 = eval(extra, &k2, &c);
    CHECK(ok2 && k2 == (long long)n_ids - 1, "stride 32 scores every token after the first once (%lld of %zu)", k2,
          n_ids);
    CHECK(ok0 && k0 < (long long)n_ids - 1, "non-overlapping windows skip each window's first token");

    /* alpaca through the data code: only outputs + EOS are scored */
    const char *ap = rt_tmp("a.jsonl");
    const char *rec = "{\"instruction\": \"Say hi.\", \"output\": \"Hi there.\"}\n"
                      "{\"instruction\": \"Count.\", \"input\": \"1 2\", \"output\": \"3 4 5\"}\n";
    rt_spit(ap, rec, strlen(rec));
    long long want = 0;
    const char *outs[2] = {"Hi there.", "3 4 5"};
    for (int i = 0; i < 2; i++) {
        rt_tokenizer_encode(t, outs[i], strlen(outs[i]), false, &ids, &n_ids);
        want += (long long)n_ids + 1;
        free(ids);
    }
    long long k;
    double v;
    snprintf(extra, sizeof extra, "--data %s --type alpaca --seq-len 256", ap);
    CHECK(eval(extra, &k, &v) && k == want && v > 0, "alpaca eval scores %lld response tokens (want %lld)", k, want);
    snprintf(extra, sizeof extra, "--data %s --type chat_template", ap);
    const char *err = rt_tmp("eval.err");
    int rc = rt_run(NULL, err, "eval --model %s --tokenizer %s %s", bin, tok, extra);
    char *e = rt_slurp(err, NULL);
    CHECK(rc == 2 && e && strstr(e, "chat_template"), "chat eval without a template: exit 2");
    free(e);
    rt_tokenizer_free(t);
    return rt_test_summary();
}
