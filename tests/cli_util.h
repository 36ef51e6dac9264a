/* retort — helpers for tests that run the retort binary (RETORT_BIN). */
#ifndef RT_CLI_UTIL_H
#define RT_CLI_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "tests/testutil.h"

/* Runs `RETORT_BIN <args>` through the shell with stdout to out_path and
 * stderr to err_path (either may be NULL: /dev/null); returns the exit code. */
static inline int rt_run(const char *out_path, const char *err_path, const char *fmt, ...) {
    char args[8192], cmd[12288];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s >%s 2>%s </dev/null", RETORT_BIN, args,
             out_path ? out_path : "/dev/null", err_path ? err_path : "/dev/null");
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The whole file as a NUL-terminated malloc'd string (NULL if unreadable). */
static inline char *rt_slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf) buf[n] = '\0';
    if (len) *len = (size_t)n;
    fclose(f);
    return buf;
}

static inline void rt_spit(const char *path, const char *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(data, 1, len, f);
    fclose(f);
}

/* A path under the test's temp dir (static buffer, rotates among 8: copy it
 * to keep it). */
static inline const char *rt_tmp(const char *name) {
    static char bufs[8][512];
    static int i;
    char *b = bufs[i++ % 8];
    snprintf(b, 512, "%s/%s", rt_test_tmpdir(), name);
    return b;
}

/* 1 if the two files exist and hold the same bytes. */
static inline bool rt_same_file(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    char *x = rt_slurp(a, &na), *y = rt_slurp(b, &nb);
    bool same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

/* "base_model=<stories260K.bin> tokenizer=<tok512.bin> datasets.0.path=<moby-dick.txt> <extra>":
 * the finetune overrides of the tests that train stories260K on Moby-Dick. */
static inline void rt_stories260k_args(char *buf, size_t cap, const char *extra) {
    char bin[512], tok[512];
    snprintf(bin, sizeof bin, "%s", rt_test_shared("models/stories260K/stories260K.bin"));
    snprintf(tok, sizeof tok, "%s", rt_test_shared("models/stories260K/tok512.bin"));
    snprintf(buf, cap, "base_model=%s tokenizer=%s datasets.0.path=%s %s", bin, tok,
             rt_test_shared("data/moby-dick.txt"), extra);
}

/* Parses "nll=<x>" from an eval output file; NAN if absent. */
static inline double rt_eval_nll(const char *path) {
    char *s = rt_slurp(path, NULL);
    const char *p = s ? strstr(s, "nll=") : NULL;
    double v = p ? atof(p + 4) : 0.0 / 0.0;
    free(s);
    return v;
}

#endif
