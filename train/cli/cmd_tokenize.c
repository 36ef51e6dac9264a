/* retort tokenize --tokenizer FILE [--decode] [--no-bos]
 *
 * Encode (default): reads all of stdin as UTF-8 text and prints the token ids
 * space-separated on one line (BOS first where the tokenizer adds one, unless
 * --no-bos). --decode: reads whitespace-separated ids from stdin and prints
 * the decoded text exactly (no newline added). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/error.h"
#include "train/cli/commands.h"
#include "train/tokenizer/tokenizer.h"

static const char USAGE[] =
    "usage: retort tokenize --tokenizer FILE [--decode] [--no-bos] < input\n"
    "  FILE: tokenizer.json (or its directory), llama2.c tokenizer.bin, or GPT-2 encoder.json\n"
    "  encode (default): prints the ids of stdin's text on one line\n"
    "  --decode: reads whitespace-separated ids from stdin and prints the text\n"
    "  --no-bos: do not prepend BOS when encoding\n";

static int read_stdin(char **out, size_t *len) {
    size_t cap = 65536, n = 0;
    char *p = malloc(cap);
    if (!p) return rt_errorf(RT_EINTERNAL, "tokenize: out of memory");
    for (;;) {
        if (n + 1 == cap) {
            char *q = realloc(p, cap * 2);
            if (!q) { free(p); return rt_errorf(RT_EINTERNAL, "tokenize: out of memory"); }
            p = q, cap *= 2;
        }
        size_t r = fread(p + n, 1, cap - 1 - n, stdin);
        n += r;
        if (r == 0) break;
    }
    if (ferror(stdin)) { free(p); return rt_errorf(RT_EINPUT, "stdin: read error"); }
    p[n] = '\0';
    *out = p, *len = n;
    return RT_OK;
}

/* Whitespace-separated decimal ids; anything else is an input error. */
static rt_status parse_ids(const char *s, int32_t **ids, size_t *n) {
    size_t cap = 256, k = 0;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) return rt_errorf(RT_EINTERNAL, "tokenize: out of memory");
    for (;;) {
        while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r' || *s == ',') s++;
        if (!*s) break;
        char *end;
        errno = 0;
        long x = strtol(s, &end, 10);
        if (end == s || errno || x < 0 || x > INT32_MAX) {
            free(v);
            return rt_errorf(RT_EINPUT, "stdin: expected a token id at \"%.20s\"", s);
        }
        if (k == cap) {
            int32_t *q = realloc(v, cap * 2 * sizeof *v);
            if (!q) { free(v); return rt_errorf(RT_EINTERNAL, "tokenize: out of memory"); }
            v = q, cap *= 2;
        }
        v[k++] = (int32_t)x;
        s = end;
    }
    *ids = v, *n = k;
    return RT_OK;
}

int rt_cmd_tokenize(int argc, char **argv) {
    const char *path = NULL;
    int decode = 0, no_bos = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tokenizer") == 0 && i + 1 < argc) path = argv[++i];
        else if (strcmp(argv[i], "--decode") == 0) decode = 1;
        else if (strcmp(argv[i], "--no-bos") == 0) no_bos = 1;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(USAGE, stdout);
            return 0;
        } else {
            rt_errorf(RT_EINPUT, "tokenize: unknown argument \"%s\"\n%s", argv[i], USAGE);
            return rt_cmd_fail(RT_EINPUT);
        }
    }
    if (!path) {
        rt_errorf(RT_EINPUT, "tokenize: --tokenizer FILE is required\n%s", USAGE);
        return rt_cmd_fail(RT_EINPUT);
    }
    rt_tokenizer *tok = NULL;
    char *in = NULL, *text = NULL;
    int32_t *ids = NULL;
    size_t len = 0, n = 0;
    rt_status st = rt_tokenizer_load(path, &tok);
    if (st == RT_OK) st = read_stdin(&in, &len);
    if (st == RT_OK && decode) {
        st = parse_ids(in, &ids, &n);
        if (st == RT_OK) st = rt_tokenizer_decode(tok, ids, n, &text);
        if (st == RT_OK) fwrite(text, 1, strlen(text), stdout);
    } else if (st == RT_OK) {
        st = rt_tokenizer_encode(tok, in, len, rt_tokenizer_adds_bos(tok) && !no_bos, &ids, &n);
        for (size_t i = 0; st == RT_OK && i < n; i++) printf(i ? " %d" : "%d", (int)ids[i]);
        if (st == RT_OK) putchar('\n');
    }
    if (st == RT_OK && fflush(stdout) != 0) st = rt_errorf(RT_EINPUT, "stdout: write failed");
    free(in), free(text), free(ids);
    rt_tokenizer_free(tok);
    return st == RT_OK ? 0 : rt_cmd_fail(st);
}
