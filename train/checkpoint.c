#include "train/checkpoint.h"

#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "kernels/kernels.h"

static const char MAGIC[8] = {'R', 'T', 'C', 'K', 'P', 'T', 0, 1};
#define VERSION 2u

typedef struct {
    char magic[8];
    uint32_t version, world, rank, zero_stage, optimizer, header_crc;
    int64_t step;
    uint64_t rng_counter;
    int64_t n_params, moment_begin, moment_n;
    uint64_t raw_bytes, zbytes;
    int64_t updates;
} header;

_Static_assert(sizeof(header) == 96, "checkpoint header layout");

/* CRC-32 (zlib) of the header with its crc field zeroed. */
static uint32_t header_crc(const header *h) {
    header c = *h;
    c.header_crc = 0;
    return (uint32_t)crc32(0L, (const Bytef *)&c, sizeof c);
}

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
    /* The frame carries zstd's content checksum (XXH64), which
     * ZSTD_decompress verifies. */
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    size_t zn = cc ? ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 3) : (size_t)-1;
    if (cc && !ZSTD_isError(zn)) zn = ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
    if (cc && !ZSTD_isError(zn)) zn = ZSTD_compress2(cc, z, zcap, buf, raw);
    ZSTD_freeCCtx(cc);
    free(buf);
    if (ZSTD_isError(zn)) {
        free(z);
        return rt_errorf(RT_EINTERNAL, "zstd: %s", ZSTD_getErrorName(zn));
    }
    header h = {.version = VERSION, .world = (uint32_t)s->world, .rank = (uint32_t)s->rank,
                .zero_stage = (uint32_t)s->zero_stage, .optimizer = (uint32_t)s->optimizer,
                .step = s->step, .rng_counter = s->rng_counter, .n_params = np ? s->n_params : 0,
                .moment_begin = s->moment_begin, .moment_n = s->moment_n, .raw_bytes = raw,
                .zbytes = zn, .updates = s->updates};
    memcpy(h.magic, MAGIC, 8);
    h.header_crc = header_crc(&h);
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
    else if (h.header_crc != header_crc(&h))
        r = rt_errorf(RT_EINPUT, "%s: corrupt header (checksum mismatch)", path);
    else if (h.step < 1 || h.step > RT_CHECKPOINT_MAX_STEP || h.updates < 0 || h.updates > h.step)
        r = rt_errorf(RT_EINPUT, "%s: step %lld (updates %lld) out of range", path, (long long)h.step,
                      (long long)h.updates);
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
    if (r == RT_OK && !rt_kernels_cpu.all_finite((int64_t)(raw / sizeof(float)), (const float *)buf))
        r = rt_errorf(RT_EINPUT, "%s: holds non-finite parameters or moments", path);
    if (r == RT_OK) {
        const char *p = buf;
        memcpy(s->params, p, np * sizeof(float)), p += np * sizeof(float);
        memcpy(s->m, p, nm * sizeof(float)), p += nm * sizeof(float);
        if (s->v) memcpy(s->v, p, nm * sizeof(float));
        s->step = h.step;
        s->updates = h.updates;
        s->rng_counter = h.rng_counter;
    }
    free(z), free(buf);
    fclose(f);
    return r;
}

/* ---- the COMPLETE manifest: "crc32 size name" per file ---- */

static rt_status file_crc(const char *path, uint32_t *crc, uint64_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return rt_errorf(RT_EINPUT, "%s: cannot open: %s", path, strerror(errno));
    unsigned char buf[1 << 16];
    uLong c = crc32(0L, Z_NULL, 0);
    uint64_t n = 0;
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        c = crc32(c, buf, (uInt)got);
        n += got;
    }
    bool err = ferror(f);
    fclose(f);
    if (err) return rt_errorf(RT_EINPUT, "%s: read error", path);
    *crc = (uint32_t)c;
    *size = n;
    return RT_OK;
}

rt_status rt_checkpoint_seal(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return rt_errorf(RT_EINPUT, "%s: cannot open: %s", dir, strerror(errno));
    char marker[4200], tmp[4300], p[4400];
    snprintf(marker, sizeof marker, "%s/COMPLETE", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", marker);
    FILE *f = fopen(tmp, "w");
    rt_status s = f ? RT_OK : rt_errorf(RT_EINPUT, "%s: cannot write: %s", tmp, strerror(errno));
    struct dirent *e;
    while (s == RT_OK && (e = readdir(d))) {
        if (e->d_name[0] == '.' || !strcmp(e->d_name, "COMPLETE") || !strcmp(e->d_name, "COMPLETE.tmp"))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        uint32_t crc;
        uint64_t size;
        s = file_crc(p, &crc, &size);
        if (s == RT_OK) fprintf(f, "%08x %llu %s\n", crc, (unsigned long long)size, e->d_name);
    }
    closedir(d);
    if (f && (fclose(f) != 0) && s == RT_OK) s = rt_errorf(RT_EINPUT, "%s: cannot write", tmp);
    if (s == RT_OK && rename(tmp, marker) != 0)
        s = rt_errorf(RT_EINPUT, "%s: cannot write: %s", marker, strerror(errno));
    if (s != RT_OK) remove(tmp);
    return s;
}

rt_status rt_checkpoint_verify(const char *dir) {
    char marker[4200], line[1200], p[4400];
    snprintf(marker, sizeof marker, "%s/COMPLETE", dir);
    FILE *f = fopen(marker, "r");
    if (!f) return rt_errorf(RT_EINPUT, "%s: missing: the checkpoint is incomplete", marker);
    rt_status s = RT_OK;
    int files = 0;
    while (s == RT_OK && fgets(line, sizeof line, f)) {
        unsigned crc_want;
        unsigned long long size_want;
        char name[1024];
        if (sscanf(line, "%8x %llu %1023[^\n]", &crc_want, &size_want, name) != 3 || strchr(name, '/')) {
            s = rt_errorf(RT_EINPUT, "%s: malformed manifest line %d", marker, files + 1);
            break;
        }
        snprintf(p, sizeof p, "%s/%s", dir, name);
        uint32_t crc;
        uint64_t size;
        s = file_crc(p, &crc, &size);
        if (s == RT_OK && size != size_want)
            s = rt_errorf(RT_EINPUT, "%s: %llu bytes, the checkpoint's manifest says %llu", p,
                          (unsigned long long)size, size_want);
        else if (s == RT_OK && crc != crc_want)
            s = rt_errorf(RT_EINPUT, "%s: checksum mismatch (CRC-32 %08x, manifest %08x): corrupt", p, crc,
                          crc_want);
        files++;
    }
    fclose(f);
    if (s == RT_OK && files == 0)
        s = rt_errorf(RT_EINPUT, "%s: empty manifest (a checkpoint from an older retort, or corrupt)", marker);
    return s;
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

static int cmp_long_desc(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x < y) - (x > y);
}

int rt_checkpoint_list(const char *output_dir, long *steps, int cap) {
    DIR *d = opendir(output_dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        long s = complete_step(output_dir, e->d_name);
        if (s >= 0) steps[n++] = s;
    }
    closedir(d);
    qsort(steps, (size_t)n, sizeof *steps, cmp_long_desc);
    return n;
}

rt_status rt_checkpoint_latest(const char *output_dir, char *out, size_t cap) {
    long steps[RT_CHECKPOINT_MAX_LIST];
    int n = rt_checkpoint_list(output_dir, steps, RT_CHECKPOINT_MAX_LIST);
    if (n < 1) return rt_errorf(RT_EINPUT, "%s: no complete checkpoint to resume from", output_dir);
    snprintf(out, cap, "%s/checkpoint-%ld", output_dir, steps[0]);
    return RT_OK;
}

/* The COMPLETE marker goes first, so a kill mid-removal never leaves a
 * checkpoint that looks whole. */
static void remove_tree(const char *dir) {
    char marker[4200];
    snprintf(marker, sizeof marker, "%s/COMPLETE", dir);
    unlink(marker);
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

void rt_checkpoint_remove(const char *dir) { remove_tree(dir); }

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
