#include "train/formats/fs.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

rt_status rt_read_file(const char *path, const char *what, char **data, size_t *len) {
    return rt_read_file_max(path, what, SIZE_MAX, data, len);
}

rt_status rt_read_file_max(const char *path, const char *what, size_t max, char **data, size_t *len) {
    *data = NULL;
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return rt_errorf(RT_EINPUT, "%s: cannot open %s: %s", path, what, strerror(errno));
    struct stat sb;
    if (max != SIZE_MAX && fstat(fileno(f), &sb) == 0) {
        /* A capped file is a file: a device (/dev/zero, /dev/urandom) never
         * ends, and a regular file's size is known before reading it. */
        bool device = S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode) || S_ISDIR(sb.st_mode);
        bool big = S_ISREG(sb.st_mode) && (uint64_t)sb.st_size > (uint64_t)max;
        if (device || big) {
            fclose(f);
            return device ? rt_errorf(RT_EINPUT, "%s: the %s is not a regular file", path, what)
                          : rt_errorf(RT_EINPUT, "%s: %s larger than %zu MiB, the most retort reads for one",
                                      path, what, max >> 20);
        }
    }
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap + 1);
    while (b) {
        n += fread(b + n, 1, cap - n, f);
        if (n < cap) break;
        if (n > max) { /* also ends an endless device such as /dev/zero */
            fclose(f);
            free(b);
            return rt_errorf(RT_EINPUT, "%s: %s larger than %zu MiB, the most retort reads for one", path,
                             what, max >> 20);
        }
        cap *= 2;
        char *nb = realloc(b, cap + 1);
        if (!nb) free(b);
        b = nb;
    }
    bool err = ferror(f);
    fclose(f);
    if (!b) return rt_errorf(RT_EINTERNAL, "%s: out of memory reading the %s", path, what);
    if (err) {
        free(b);
        return rt_errorf(RT_EINPUT, "%s: read error", path);
    }
    if (n > max) {
        free(b);
        return rt_errorf(RT_EINPUT, "%s: %s larger than %zu MiB, the most retort reads for one", path, what,
                         max >> 20);
    }
    b[n] = '\0';
    *data = b;
    if (len) *len = n;
    return RT_OK;
}

rt_status rt_write_file_atomic(const char *path, const void *data, size_t len) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return rt_errorf(RT_EINPUT, "%s: cannot write: %s", tmp, strerror(errno));
    bool ok = fwrite(data, 1, len, f) == len;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return rt_errorf(RT_EINPUT, "%s: write failed: %s", path, strerror(errno));
    }
    return RT_OK;
}

rt_status rt_mkdir_p(const char *dir) {
    if (!dir || !dir[0]) return rt_errorf(RT_EINPUT, "empty output directory name");
    char *p = strdup(dir);
    if (!p) return rt_errorf(RT_EINTERNAL, "%s: out of memory", dir);
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0') continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            rt_status st = rt_errorf(RT_EINPUT, "%s: cannot create directory: %s", p, strerror(errno));
            free(p);
            return st;
        }
        *s = c;
        if (!c) break;
    }
    free(p);
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return rt_errorf(RT_EINPUT, "%s: not a directory", dir);
    return RT_OK;
}

/* realpath of a path that may not exist yet: its parent's realpath + name. */
static bool resolve(const char *path, char *out) {
    if (realpath(path, out)) return true;
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    size_t n = strlen(tmp);
    while (n > 1 && tmp[n - 1] == '/') tmp[--n] = '\0';
    char *slash = strrchr(tmp, '/');
    const char *name = slash ? slash + 1 : tmp;
    char parent[PATH_MAX];
    if (!realpath(slash ? (slash == tmp ? "/" : (*slash = '\0', tmp)) : ".", parent)) return false;
    int w = snprintf(out, PATH_MAX, "%s/%s", strcmp(parent, "/") ? parent : "", name);
    return w > 0 && w < PATH_MAX;
}

rt_status rt_check_output_path(const char *out, const char *const *inputs, int n) {
    char o[PATH_MAX], in[PATH_MAX];
    if (!out || !resolve(out, o)) return RT_OK; /* a path that cannot exist cannot hold an input */
    size_t ol = strlen(o);
    for (int i = 0; i < n; i++) {
        if (!inputs[i] || !realpath(inputs[i], in)) continue;
        if (!strcmp(o, in) || (!strncmp(in, o, ol) && (in[ol] == '/' || ol == 1)))
            return rt_errorf(RT_EINPUT, "%s: the output would overwrite the input %s; choose another --out",
                             out, inputs[i]);
    }
    return RT_OK;
}
