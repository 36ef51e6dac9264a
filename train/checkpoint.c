#include "train/checkpoint.h"

#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

static const char MAGIC[8] = {'R', 'T', 'C', 'K', 'P', 'T', 0, 1};
#define VERSION 1u

typedef struct {
    char magic[8];
    uint32_t version, world, rank, zero_stage, optimizer, reserved;
    int64_t step;
    uint64_t rng_counter;
    int64_t n_params, moment_begin, moment_n;
    uint64_t raw_bytes, zbytes;
} header;

_Static_assert(sizeof(header) == 88, "checkpoint header layout");

static void state_path(const char *dir, int rank, char *out, size_t cap) {
    snprintf(out, cap, "%s/trainer_state-rank%d.bin", dir, rank);
}

rt_status rt_checkpoint_write_state(const char *dir, const rt_train_state *s) {
    size_t np = s->params ? (size_t)s->n_params : 0, nm = (size_t)s->moment_n;
    size_t raw = (np + nm * (s->v ? 2 : 1)) * sizeof(float);
    char *buf = malloc(raw ? raw : 1);
    size_t zcap = ZSTD_compressBound(raw);
    char *z = malloc(zcap);
    if (!buf || !z) {
        free(buf), free(z);
        return rt_errorf(RT_EINTERNAL, "out of memory writing a checkpoint");
    }
    char *p = buf;
    memcpy(p, s->params, np * sizeof(float)), p += np * sizeof(float);
    memcpy(p, s->m, nm * sizeof(float)), p += nm * sizeof(float);
    if (s->v) memcpy(p, s->v, nm * sizeof(float));
    size_t zn = ZSTD_compress(z, zcap, buf, raw, 3);
    free(buf);
    if (ZSTD_isError(zn)) {
        free(z);
        return rt_errorf(RT_EINTERNAL, "zstd: %s", ZSTD_getErrorName(zn));
    }
    header h = {.version = VERSION, .world = (uint32_t)s->world, .rank = (uint32_t)s->rank,
                .zero_stage = (uint32_t)s->zero_stage, .optimizer = (uint32_t)s->optimizer,
                .step = s->step, .rng_counter = s->rng_counter, .n_params = np ? s->n_params : 0,
                .moment_begin = s->moment_begin, .moment_n = s->moment_n, .raw_bytes = raw,
                .zbytes = zn};
    memcpy(h.magic, MAGIC, 8);
    char path[4096];
    state_path(dir, s->rank, path, sizeof path);
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite(&h, sizeof h, 1, f) == 1 && fwrite(z, 1, zn, f) == zn;
    ok = f && fclose(f) == 0 && ok;
    free(z);
    return ok ? RT_OK : rt_errorf(RT_EINPUT, "%s: cannot write: %s", path, strerror(errno));
}

rt_status rt_checkpoint_read_state(const char *dir, rt_train_state *s) {
    char path[4096];
    state_path(dir, s->rank, path, sizeof path);
    FILE *f = fopen(path, "rb");
    if (!f)
        return rt_errorf(RT_EINPUT, "%s: cannot open (a checkpoint from a different world size?)",
                         path);
    header h;
    struct stat st;
    rt_status r = RT_OK;
    if (fstat(fileno(f), &st) != 0 || fread(&h, sizeof h, 1, f) != 1 || memcmp(h.magic, MAGIC, 8))
        r = rt_errorf(RT_EINPUT, "%s: not a retort trainer state", path);
    else if (h.version != VERSION)
        r = rt_errorf(RT_EINPUT, "%s: version %u, this retort reads %u", path, h.version, VERSION);
    else if ((int)h.world != s->world)
        r = rt_errorf(RT_EINPUT, "%s: written by %u ranks, resuming with %d (use the same world size)",
                      path, h.world, s->world);
    else if ((int)h.zero_stage != s->zero_stage || (int)h.optimizer != s->optimizer ||
             h.moment_begin != s->moment_begin || h.moment_n != s->moment_n ||
             (h.n_params != 0 && h.n_params != s->n_params) || (s->params && h.n_params == 0))
        r = rt_errorf(RT_EINPUT, "%s: written for another model, optimizer or zero_stage", path);
    else if ((uint64_t)st.st_size != sizeof h + h.zbytes)
        r = rt_errorf(RT_EINPUT, "%s: truncated (%lld bytes, header says %llu)", path,
                      (long long)st.st_size, (unsigned long long)(sizeof h + h.zbytes));
    size_t np = s->params ? (size_t)s->n_params : 0, nm = (size_t)s->moment_n;
    size_t raw = (np + nm * (s->v ? 2 : 1)) * sizeof(float);
    if (r == RT_OK && h.raw_bytes != raw) r = rt_errorf(RT_EINPUT, "%s: payload size mismatch", path);
    char *z = r == RT_OK ? malloc(h.zbytes ? h.zbytes : 1) : NULL;
    char *buf = r == RT_OK ? malloc(raw ? raw : 1) : NULL;
    if (r == RT_OK && (!z || !buf)) r = rt_errorf(RT_EINTERNAL, "out of memory reading %s", path);
    if (r == RT_OK && fread(z, 1, h.zbytes, f) != h.zbytes) r = rt_errorf(RT_EINPUT, "%s: read failed", path);
    if (r == RT_OK) {
        size_t n = ZSTD_decompress(buf, raw, z, h.zbytes);
        if (ZSTD_isError(n) || n != raw)
            r = rt_errorf(RT_EINPUT, "%s: corrupt payload (%s)", path,
                          ZSTD_isError(n) ? ZSTD_getErrorName(n) : "size");
    }
    if (r == RT_OK) {
        const char *p = buf;
        memcpy(s->params, p, np * sizeof(float)), p += np * sizeof(float);
        memcpy(s->m, p, nm * sizeof(float)), p += nm * sizeof(float);
        if (s->v) memcpy(s->v, p, nm * sizeof(float));
        s->step = h.step;
        s->rng_counter = h.rng_counter;
    }
    free(z), free(buf);
    fclose(f);
    return r;
}

/* step of a "checkpoint-<step>" directory name with a COMPLETE marker, else -1 */
static long complete_step(const char *output_dir, const char *name) {
    char *end;
    if (strncmp(name, "checkpoint-", 11)) return -1;
    long step = strtol(name + 11, &end, 10);
    if (end == name + 11 || *end) return -1;
    char marker[4096];
    snprintf(marker, sizeof marker, "%s/%s/COMPLETE", output_dir, name);
    return access(marker, F_OK) == 0 ? step : -1;
}

rt_status rt_checkpoint_latest(const char *output_dir, char *out, size_t cap) {
    DIR *d = opendir(output_dir);
    if (!d) return rt_errorf(RT_EINPUT, "%s: no checkpoints to resume from", output_dir);
    long best = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        long s = complete_step(output_dir, e->d_name);
        if (s > best) best = s;
    }
    closedir(d);
    if (best < 0) return rt_errorf(RT_EINPUT, "%s: no complete checkpoint to resume from", output_dir);
    snprintf(out, cap, "%s/checkpoint-%ld", output_dir, best);
    return RT_OK;
}

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[4096 + 512];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

void rt_checkpoint_prune(const char *output_dir, int keep) {
    if (keep <= 0) return;
    DIR *d = opendir(output_dir);
    if (!d) return;
    long steps[4096];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        long s = complete_step(output_dir, e->d_name);
        if (s >= 0) steps[n++] = s;
    }
    closedir(d);
    qsort(steps, (size_t)n, sizeof *steps, cmp_long);
    for (int i = 0; i + keep < n; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/checkpoint-%ld", output_dir, steps[i]);
        remove_tree(p);
    }
}
