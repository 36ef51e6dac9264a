#include "train/cli/cli.h"
#include "train/formats/gguf_model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "train/model/adapter.h"

bool rt_cli_help_shown = false;

rt_status rt_cli_parse(int argc, char **argv, const rt_cli_opt *opts, int n_opts,
                       const char **pos, int max_pos, int *n_pos) {
    *n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { /* the options, from the parser's own table */
            printf("usage: retort %s", argv[0]);
            if (max_pos > 0) printf(" [ARG...]");
            printf("\noptions:\n");
            for (int j = 0; j < n_opts; j++) {
                char left[64];
                snprintf(left, sizeof left, "%s%s", opts[j].name, opts[j].flag ? "" : " VALUE");
                printf("  %-24s %s\n", left, opts[j].help ? opts[j].help : "");
            }
            fflush(stdout);
            rt_cli_help_shown = true;
            return rt_errorf(RT_EINPUT, "%s: --help", argv[0]);
        }
        if (a[0] == '-' && a[1] == '-') {
            int j = 0;
            while (j < n_opts && strcmp(opts[j].name, a)) j++;
            if (j == n_opts) return rt_errorf(RT_EINPUT, "%s: unknown option %s", argv[0], a);
            if (opts[j].flag) {
                *opts[j].flag = true;
            } else {
                if (i + 1 >= argc) return rt_errorf(RT_EINPUT, "%s: option %s needs a value", argv[0], a);
                *opts[j].value = argv[++i];
            }
        } else {
            if (*n_pos >= max_pos)
                return rt_errorf(RT_EINPUT, "%s: unexpected argument '%s'", argv[0], a);
            pos[(*n_pos)++] = a;
        }
    }
    return RT_OK;
}

rt_status rt_cli_int(const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *s == '\0' || *end != '\0' || v < lo || v > hi)
        return rt_errorf(RT_EINPUT, "%s: expected an integer in [%ld, %ld], got '%s'", opt, lo, hi, s);
    *out = v;
    return RT_OK;
}

rt_status rt_cli_float(const char *opt, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *s == '\0' || *end != '\0' || !(v >= lo && v <= hi))
        return rt_errorf(RT_EINPUT, "%s: expected a number in [%g, %g], got '%s'", opt, lo, hi, s);
    *out = v;
    return RT_OK;
}

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

rt_status rt_cli_load(const char *model, const char *tokenizer, const char *adapter,
                      rt_device dev, rt_llama **m, rt_tokenizer **tok) {
    const rt_llama_opts o = {.device = dev};
    return rt_cli_load_opts(model, tokenizer, adapter, &o, m, tok);
}

rt_status rt_cli_load_opts(const char *model, const char *tokenizer, const char *adapter,
                           const rt_llama_opts *o, rt_llama **m, rt_tokenizer **tok) {
    *m = NULL;
    *tok = NULL;
    if (!model) return rt_errorf(RT_EINPUT, "--model is required");
    if (!tokenizer && !is_dir(model) && !rt_is_gguf(model))
        return rt_errorf(RT_EINPUT, "%s: a llama2.c checkpoint needs --tokenizer FILE", model);
    RT_TRY(rt_tokenizer_load(tokenizer ? tokenizer : model, tok));
    rt_status s = rt_llama_load(model, o, m);
    if (s == RT_OK && (*m)->cfg.vocab_size < rt_tokenizer_vocab_size(*tok))
        s = rt_errorf(RT_EINPUT, "%s: tokenizer has %d tokens but the model only %d",
                      tokenizer ? tokenizer : model, rt_tokenizer_vocab_size(*tok), (*m)->cfg.vocab_size);
    if (s == RT_OK && adapter) s = rt_adapter_apply(*m, adapter);
    if (s != RT_OK) {
        rt_tokenizer_free(*tok);
        *tok = NULL;
        rt_llama_free(*m);
        *m = NULL;
    }
    return s;
}
