/* retort — tiny test harness shared by the test programs.
 *
 * Every test program prints one line per check group and ends with the
 * plain summary line "N passed, N failed" (and ", N skipped" where a check
 * could not run, e.g. a GPU test on a CPU machine), returning 1 on failure.
 */
#ifndef RT_TESTUTIL_H
#define RT_TESTUTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rt_t_pass, rt_t_fail, rt_t_skip;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (cond) {                                                            \
            rt_t_pass++;                                                       \
        } else {                                                               \
            rt_t_fail++;                                                       \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);    \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, "\n");                                             \
        }                                                                      \
    } while (0)

#define SKIP(...)                                                              \
    do {                                                                       \
        rt_t_skip++;                                                           \
        printf("SKIP: ");                                                      \
        printf(__VA_ARGS__);                                                   \
        printf("\n");                                                          \
    } while (0)

static inline int rt_test_summary(void) {
    if (rt_t_skip)
        printf("%d passed, %d failed, %d skipped\n", rt_t_pass, rt_t_fail, rt_t_skip);
    else
        printf("%d passed, %d failed\n", rt_t_pass, rt_t_fail);
    return rt_t_fail ? 1 : 0;
}

/* Path of a file in the shared material: $RETORT_SHARED/rel, else
 * <source dir>/../shared/rel. Returns a static buffer. */
static inline const char *rt_test_shared(const char *rel) {
    static char buf[4096];
    const char *root = getenv("RETORT_SHARED");
    if (root && *root)
        snprintf(buf, sizeof buf, "%s/%s", root, rel);
    else
        snprintf(buf, sizeof buf, "%s/../shared/%s", RETORT_SOURCE_DIR, rel);
    return buf;
}

/* A fresh temporary directory for this test program (tests write only
 * there). Returns a static buffer. */
static inline const char *rt_test_tmpdir(void) {
    static char dir[256];
    if (!dir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/retort-test-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(dir)) { perror("mkdtemp"); exit(1); }
    }
    return dir;
}

/* Path of the built retort binary (for CLI tests). */
#ifndef RETORT_BIN
#define RETORT_BIN "retort"
#endif

/* True when two id sequences are equal; otherwise prints where they first
 * differ (for tokenizer tests). */
static inline bool rt_same_ids(const int32_t *a, size_t na, const int32_t *b, size_t nb, const char *what) {
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    if (i == na && na == nb) return true;
    fprintf(stderr, "%s: differ at %zu (lengths %zu vs %zu): %d vs %d\n", what, i, na, nb,
            i < na ? (int)a[i] : -1, i < nb ? (int)b[i] : -1);
    return false;
}

#endif
