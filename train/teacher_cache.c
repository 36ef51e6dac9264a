/* retort — the teacher-logit cache (format and key: teacher_cache.h). */
#include "train/teacher_cache.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "train/formats/fs.h"

#define MAGIC "RTKCACHE"
#define VERSION 2u
#define DTYPE_F32_SHUFFLED 1u
#define HEADER_BYTES 128
#define ZSTD_LEVEL 3

struct rt_teacher_cache {
    rt_teacher_cache_key key;
    int32_t *ids;      /* [tokens * k] */
    float *logp;       /* [tokens * k] */
    int64_t *row_off;  /* [rows + 1] token offsets */
    uint64_t *hkey;    /* open addressing: row hash -> row; 0 = empty */
    int64_t *hrow;
    uint64_t hmask;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- hashing ---------------------------------------------------------------- */

static uint64_t mix64(uint64_t z) { /* splitmix64's finalizer */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t hash_add(uint64_t h, uint64_t v) { return mix64(h ^ (v + 0x9e3779b97f4a7c15ull + (h << 6))); }

static uint64_t hash_i32(uint64_t h, const int32_t *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) h = hash_add(h, (uint32_t)x[i]);
    return h;
}

/* Content hash of batch row bi (never 0: 0 marks an empty table slot). */
static uint64_t row_hash(const rt_batch *b, int bi) {
    int64_t o = (int64_t)bi * b->T;
    uint64_t h = hash_i32(0x5151, b->ids + o, b->T);
    h = hash_i32(h, b->labels + o, b->T);
    h = hash_i32(h, b->pos + o, b->T);
    h = hash_i32(h, b->seg + o, b->T);
    return h ? h : 1;
}

static int64_t row_targets(const rt_batch *b, int bi) {
    int64_t n = 0;
    for (int t = 0; t < b->T; t++) n += b->labels[(int64_t)bi * b->T + t] != RT_LABEL_IGNORE;
    return n;
}

/* Row hashes [rows] and token offsets [rows + 1] of every train row. */
static rt_status scan_rows(const rt_dataset *d, uint64_t **hashes, int64_t **off) {
    int64_t rows = rt_dataset_rows(d);
    *hashes = malloc((size_t)(rows + 1) * sizeof **hashes);
    *off = malloc((size_t)(rows + 1) * sizeof **off);
    rt_batch b = {0};
    rt_status s = *hashes && *off ? rt_batch_alloc(&b, 16, rt_dataset_seq_len(d))
                                  : rt_errorf(RT_EINTERNAL, "teacher cache: out of memory");
    if (s == RT_OK) (*off)[0] = 0;
    for (int64_t r = 0; s == RT_OK && r < rows; r += b.B) {
        s = rt_data_val_batch(d, r, &b);
        for (int bi = 0; s == RT_OK && bi < b.B && r + bi < rows; bi++) {
            (*hashes)[r + bi] = row_hash(&b, bi);
            (*off)[r + bi + 1] = (*off)[r + bi] + row_targets(&b, bi);
        }
    }
    rt_batch_free(&b);
    if (s != RT_OK) {
        free(*hashes);
        free(*off);
        *hashes = NULL;
        *off = NULL;
    }
    return s;
}

rt_status rt_teacher_fingerprint(rt_ctx *ctx, rt_llama *teacher, uint64_t *fp) {
    const rt_llama_config *c = &teacher->cfg;
    enum { N = 8 };
    int32_t ids[N], pos[N];
    for (int i = 0; i < N; i++) {
        ids[i] = (int32_t)((i * 37 + 1) % c->vocab_size);
        pos[i] = i;
    }
    int64_t shape[2] = {1, N};
    bool no_grad = ctx->no_grad;
    ctx->no_grad = true;
    rt_ctx_reset(ctx);
    rt_tensor *logits = rt_llama_forward(ctx, teacher, rt_from_i32(ctx, ids, 2, shape),
                                         rt_from_i32(ctx, pos, 2, shape), NULL);
    rt_status s = logits ? RT_OK : ctx->status ? ctx->status : RT_EINTERNAL;
    float *h = s == RT_OK ? malloc((size_t)rt_numel(logits) * sizeof *h) : NULL;
    if (s == RT_OK && !h) s = rt_errorf(RT_EINTERNAL, "out of memory");
    if (s == RT_OK) s = rt_to_host(ctx, logits, h);
    if (s == RT_OK) {
        int32_t cf[] = {c->hidden_size, c->intermediate_size, c->num_hidden_layers,
                        c->num_attention_heads, c->num_key_value_heads, c->vocab_size,
                        c->tie_word_embeddings, c->attention_bias};
        uint64_t x = hash_i32(0x7eac4e5, cf, (int64_t)(sizeof cf / sizeof *cf));
        x = hash_i32(x, (const int32_t *)h, rt_numel(logits));
        *fp = x;
    }
    free(h);
    rt_ctx_reset(ctx);
    ctx->no_grad = no_grad;
    return s;
}

rt_status rt_teacher_cache_key_for(const rt_dataset *train, uint64_t teacher_fp, int k,
                                   float temperature, rt_teacher_cache_key *key) {
    uint64_t *hashes;
    int64_t *off;
    RT_TRY(scan_rows(train, &hashes, &off));
    int64_t rows = rt_dataset_rows(train);
    uint64_t h = 0xda7a;
    for (int64_t r = 0; r < rows; r++) h = hash_add(h, hashes[r]);
    *key = (rt_teacher_cache_key){.teacher = teacher_fp, .data = hash_add(h, (uint64_t)rows), .k = k,
                                  .temperature = temperature, .rows = rows, .tokens = off[rows],
                                  .seq_len = rt_dataset_seq_len(train)};
    free(hashes);
    free(off);
    return RT_OK;
}

/* ---- header ------------------------------------------------------------------- */

typedef struct {
    uint32_t version, k, dtype, seq_len;
    uint64_t tokens, row_begin, row_count, teacher, data, total_rows, total_tokens;
    float temperature;
    uint32_t shard, n_shards;
    uint64_t raw_bytes, zbytes;
} header;

static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static void header_write(unsigned char *p, const header *h) {
    memset(p, 0, HEADER_BYTES);
    memcpy(p, MAGIC, 8);
    put32(p + 8, h->version);
    put32(p + 12, h->k);
    put32(p + 16, h->dtype);
    put32(p + 20, h->seq_len);
    put64(p + 24, h->tokens);
    put64(p + 32, h->row_begin);
    put64(p + 40, h->row_count);
    put64(p + 48, h->teacher);
    put64(p + 56, h->data);
    put64(p + 64, h->total_rows);
    put64(p + 72, h->total_tokens);
    memcpy(p + 80, &h->temperature, 4);
    put32(p + 84, h->shard);
    put32(p + 88, h->n_shards);
    put64(p + 96, h->raw_bytes);
    put64(p + 104, h->zbytes);
    put32(p + 112, (uint32_t)crc32(0L, p, HEADER_BYTES)); /* over the header with this field 0 */
}

/* Whether the header's CRC-32 (bytes 112..115) matches its other bytes. */
static bool header_crc_ok(const unsigned char *p) {
    unsigned char c[HEADER_BYTES];
    memcpy(c, p, HEADER_BYTES);
    put32(c + 112, 0);
    return get32(p + 112) == (uint32_t)crc32(0L, c, HEADER_BYTES);
}

static void header_read(const unsigned char *p, header *h) {
    h->version = get32(p + 8);
    h->k = get32(p + 12);
    h->dtype = get32(p + 16);
    h->seq_len = get32(p + 20);
    h->tokens = get64(p + 24);
    h->row_begin = get64(p + 32);
    h->row_count = get64(p + 40);
    h->teacher = get64(p + 48);
    h->data = get64(p + 56);
    h->total_rows = get64(p + 64);
    h->total_tokens = get64(p + 72);
    memcpy(&h->temperature, p + 80, 4);
    h->shard = get32(p + 84);
    h->n_shards = get32(p + 88);
    h->raw_bytes = get64(p + 96);
    h->zbytes = get64(p + 104);
}

/* "" when h was made for key, else why not (into why[cap]). */
static void header_mismatch(const header *h, const rt_teacher_cache_key *key, char *why, size_t cap) {
    why[0] = '\0';
    if (h->version != VERSION || h->dtype != DTYPE_F32_SHUFFLED)
        snprintf(why, cap, "format version %u dtype %u (this build writes %u/%u)", h->version, h->dtype,
                 VERSION, DTYPE_F32_SHUFFLED);
    else if ((int)h->k != key->k)
        snprintf(why, cap, "made with kd_top_k %u (this run: %d)", h->k, key->k);
    else if (h->temperature != key->temperature)
        snprintf(why, cap, "made at kd_temperature %g (this run: %g)", (double)h->temperature,
                 (double)key->temperature);
    else if (h->teacher != key->teacher)
        snprintf(why, cap, "made with another teacher (fingerprint %016llx, this run %016llx)",
                 (unsigned long long)h->teacher, (unsigned long long)key->teacher);
    else if ((int)h->seq_len != key->seq_len || (int64_t)h->total_rows != key->rows ||
             (int64_t)h->total_tokens != key->tokens || h->data != key->data)
        snprintf(why, cap, "made for another dataset (%llu rows, %llu tokens, seq_len %u; this run: "
                 "%lld rows, %lld tokens, seq_len %d%s)",
                 (unsigned long long)h->total_rows, (unsigned long long)h->total_tokens, h->seq_len,
                 (long long)key->rows, (long long)key->tokens, key->seq_len,
                 h->data != key->data ? ", different content" : "");
}

/* ---- byte shuffle ---------------------------------------------------------- */

static void shuffle4(unsigned char *dst, const void *src, size_t n) {
    const unsigned char *s = src;
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < 4; j++) dst[(size_t)j * n + i] = s[4 * i + (size_t)j];
}

static void unshuffle4(void *dst, const unsigned char *src, size_t n) {
    unsigned char *d = dst;
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < 4; j++) d[4 * i + (size_t)j] = src[(size_t)j * n + i];
}

/* ---- build -------------------------------------------------------------------- */

static int64_t n_shards_of(int64_t rows) {
    return rows ? (rows + RT_TEACHER_CACHE_SHARD_ROWS - 1) / RT_TEACHER_CACHE_SHARD_ROWS : 1;
}

static void shard_path(char *buf, size_t cap, const char *dir, int64_t i) {
    snprintf(buf, cap, "%s/shard-%05lld.rtkc", dir, (long long)i);
}

/* Runs the teacher over every row into c->ids / c->logp. */
static rt_status compute(rt_teacher_cache *c, rt_llama *teacher, const rt_dataset *train, int batch,
                         bool packing, rt_device dev) {
    const int k = c->key.k, T = c->key.seq_len;
    rt_ctx *ctx = rt_ctx_new(dev, 0);
    rt_batch b = {0};
    int32_t *hid = malloc((size_t)batch * T * k * sizeof *hid);
    float *hlp = malloc((size_t)batch * T * k * sizeof *hlp);
    rt_status s = ctx && hid && hlp ? rt_batch_alloc(&b, batch, T)
                                    : rt_errorf(RT_EINTERNAL, "teacher cache: out of memory");
    if (ctx) ctx->no_grad = true;
    int64_t shape[2] = {batch, T};
    for (int64_t row = 0; s == RT_OK && row < c->key.rows; row += batch) {
        rt_ctx_reset(ctx);
        s = rt_data_val_batch(train, row, &b);
        if (s != RT_OK) break;
        rt_tensor *logits = rt_llama_forward(ctx, teacher, rt_from_i32(ctx, b.ids, 2, shape),
                                             rt_from_i32(ctx, b.pos, 2, shape),
                                             packing ? rt_from_i32(ctx, b.seg, 2, shape) : NULL);
        if (!logits) {
            s = ctx->status ? ctx->status : RT_EINTERNAL;
            break;
        }
        rt_tensor *tid, *tlp;
        s = rt_kd_topk(ctx, logits, k, c->key.temperature, &tid, &tlp);
        if (s != RT_OK) break;
        ctx->k->download(hid, tid->data, rt_nbytes(tid));
        ctx->k->download(hlp, tlp->data, rt_nbytes(tlp));
        for (int bi = 0; bi < batch && row + bi < c->key.rows; bi++) {
            int64_t o = c->row_off[row + bi];
            for (int t = 0; t < T; t++) {
                int64_t p = (int64_t)bi * T + t;
                if (b.labels[p] == RT_LABEL_IGNORE) continue;
                memcpy(c->ids + o * k, hid + p * k, (size_t)k * sizeof *hid);
                memcpy(c->logp + o * k, hlp + p * k, (size_t)k * sizeof *hlp);
                o++;
            }
        }
    }
    rt_batch_free(&b);
    free(hid);
    free(hlp);
    rt_ctx_free(ctx);
    return s;
}

static rt_status write_shards(const rt_teacher_cache *c, const char *dir, rt_teacher_cache_stats *st) {
    const int64_t k = c->key.k, n_shards = n_shards_of(c->key.rows);
    rt_status s = RT_OK;
    char path[4200];
    for (int64_t i = 0; i < n_shards && s == RT_OK; i++) {
        int64_t r0 = i * RT_TEACHER_CACHE_SHARD_ROWS, r1 = r0 + RT_TEACHER_CACHE_SHARD_ROWS;
        if (r1 > c->key.rows) r1 = c->key.rows;
        if (r0 > r1) r0 = r1;
        int64_t t0 = c->row_off[r0], nt = c->row_off[r1] - t0;
        size_t n = (size_t)(nt * k), raw = n * 8, bound = ZSTD_compressBound(raw);
        unsigned char *payload = malloc(raw + 1), *file = malloc(HEADER_BYTES + bound);
        if (!payload || !file) s = rt_errorf(RT_EINTERNAL, "teacher cache: out of memory");
        if (s == RT_OK) {
            shuffle4(payload, c->ids + t0 * k, n);
            shuffle4(payload + 4 * n, c->logp + t0 * k, n);
            /* with zstd's content checksum, which ZSTD_decompress verifies */
            ZSTD_CCtx *cc = ZSTD_createCCtx();
            size_t z = cc ? ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, ZSTD_LEVEL) : (size_t)-1;
            if (cc && !ZSTD_isError(z)) z = ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
            if (cc && !ZSTD_isError(z)) z = ZSTD_compress2(cc, file + HEADER_BYTES, bound, payload, raw);
            ZSTD_freeCCtx(cc);
            if (ZSTD_isError(z)) {
                s = rt_errorf(RT_EINTERNAL, "teacher cache: zstd: %s", ZSTD_getErrorName(z));
            } else {
                header h = {VERSION, (uint32_t)k, DTYPE_F32_SHUFFLED, (uint32_t)c->key.seq_len,
                            (uint64_t)nt, (uint64_t)r0, (uint64_t)(r1 - r0), c->key.teacher,
                            c->key.data, (uint64_t)c->key.rows, (uint64_t)c->key.tokens,
                            c->key.temperature, (uint32_t)i, (uint32_t)n_shards, raw, z};
                header_write(file, &h);
                shard_path(path, sizeof path, dir, i);
                s = rt_write_file_atomic(path, file, HEADER_BYTES + z);
                st->file_bytes += HEADER_BYTES + z;
            }
        }
        free(payload);
        free(file);
    }
    /* shards of an older, longer cache would only confuse a reader */
    for (int64_t i = n_shards; s == RT_OK; i++) {
        shard_path(path, sizeof path, dir, i);
        if (unlink(path) != 0) break;
    }
    return s;
}

/* ---- read -------------------------------------------------------------------- */

/* Reads shard i into c; on a mismatch or corruption returns RT_EINPUT with
 * the reason in why. */
static rt_status read_shard(rt_teacher_cache *c, const char *dir, int64_t i, char *why, size_t cap,
                            uint64_t *file_bytes) {
    char path[4200];
    shard_path(path, sizeof path, dir, i);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        snprintf(why, cap, "shard %lld is missing", (long long)i);
        return RT_EINPUT;
    }
    char *buf;
    size_t len;
    RT_TRY(rt_read_file_max(path, "teacher cache shard", RT_TEACHER_CACHE_SHARD_MAX, &buf, &len));
    rt_status s = RT_OK;
    header h;
    if (len < HEADER_BYTES || memcmp(buf, MAGIC, 8) != 0) {
        snprintf(why, cap, "shard %lld is not a retort teacher cache shard", (long long)i);
        s = RT_EINPUT;
    } else if (!header_crc_ok((const unsigned char *)buf)) {
        snprintf(why, cap, "shard %lld: corrupt header (checksum mismatch)", (long long)i);
        s = RT_EINPUT;
    } else {
        header_read((const unsigned char *)buf, &h);
        header_mismatch(&h, &c->key, why, cap);
        int64_t n_shards = n_shards_of(c->key.rows);
        int64_t r0 = i * RT_TEACHER_CACHE_SHARD_ROWS, r1 = r0 + RT_TEACHER_CACHE_SHARD_ROWS;
        if (r1 > c->key.rows) r1 = c->key.rows;
        if (r0 > r1) r0 = r1;
        if (!why[0] && (h.shard != (uint64_t)i || h.n_shards != (uint64_t)n_shards ||
                        h.row_begin != (uint64_t)r0 || h.row_count != (uint64_t)(r1 - r0) ||
                        h.tokens != (uint64_t)(c->row_off[r1] - c->row_off[r0]) ||
                        h.raw_bytes != h.tokens * h.k * 8 || h.zbytes != len - HEADER_BYTES))
            snprintf(why, cap, "shard %lld: inconsistent header (truncated or from another cache)", (long long)i);
        if (why[0]) s = RT_EINPUT;
    }
    if (s == RT_OK) {
        size_t n = (size_t)(h.tokens * h.k), raw = n * 8;
        unsigned char *payload = malloc(raw + 1);
        if (!payload) {
            s = rt_errorf(RT_EINTERNAL, "teacher cache: out of memory");
        } else {
            size_t got = ZSTD_decompress(payload, raw, buf + HEADER_BYTES, len - HEADER_BYTES);
            if (ZSTD_isError(got) || got != raw) {
                snprintf(why, cap, "shard %lld: corrupt payload (%s)", (long long)i,
                         ZSTD_isError(got) ? ZSTD_getErrorName(got) : "size");
                s = RT_EINPUT;
            } else {
                int64_t t0 = c->row_off[h.row_begin] * (int64_t)h.k;
                unshuffle4(c->ids + t0, payload, n);
                unshuffle4(c->logp + t0, payload + 4 * n, n);
                *file_bytes += len;
            }
            free(payload);
        }
    }
    free(buf);
    return s;
}

/* ---- open / lookup ----------------------------------------------------------- */

static rt_status build_index(rt_teacher_cache *c, const uint64_t *hashes) {
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)c->key.rows) cap *= 2;
    c->hkey = calloc(cap, sizeof *c->hkey);
    c->hrow = calloc(cap, sizeof *c->hrow);
    if (!c->hkey || !c->hrow) return rt_errorf(RT_EINTERNAL, "teacher cache: out of memory");
    c->hmask = cap - 1;
    for (int64_t r = 0; r < c->key.rows; r++) {
        uint64_t j = hashes[r] & c->hmask;
        while (c->hkey[j] && c->hkey[j] != hashes[r]) j = (j + 1) & c->hmask;
        if (!c->hkey[j]) {
            c->hkey[j] = hashes[r];
            c->hrow[j] = r;
        }
    }
    return RT_OK;
}

rt_status rt_teacher_cache_open(const char *dir, const rt_teacher_cache_key *key,
                                rt_llama *teacher, const rt_dataset *train, int batch,
                                bool packing, rt_device dev, rt_teacher_cache **out,
                                rt_teacher_cache_stats *st) {
    *out = NULL;
    memset(st, 0, sizeof *st);
    double t0 = now_s();
    if (teacher && (key->k < 1 || key->k > teacher->cfg.vocab_size))
        return rt_errorf(RT_EINPUT, "kd_top_k: %d is outside [1, %d] (the vocabulary)", key->k,
                         teacher->cfg.vocab_size);
    if (key->rows != rt_dataset_rows(train) || key->seq_len != rt_dataset_seq_len(train))
        return rt_errorf(RT_EINTERNAL, "teacher cache: key does not describe the dataset");
    rt_teacher_cache *c = calloc(1, sizeof *c);
    if (!c) return rt_errorf(RT_EINTERNAL, "teacher cache: out of memory");
    c->key = *key;
    uint64_t *hashes = NULL;
    rt_status s = rt_mkdir_p(dir);
    if (s == RT_OK) s = scan_rows(train, &hashes, &c->row_off);
    if (s == RT_OK && c->row_off[key->rows] != key->tokens)
        s = rt_errorf(RT_EINTERNAL, "teacher cache: key does not describe the dataset");
    if (s == RT_OK) s = build_index(c, hashes);
    size_t n = (size_t)(key->tokens * key->k);
    if (s == RT_OK) {
        c->ids = malloc(n * sizeof *c->ids + 1);
        c->logp = malloc(n * sizeof *c->logp + 1);
        if (!c->ids || !c->logp) s = rt_errorf(RT_EINTERNAL, "teacher cache: out of memory");
    }
    char why[256] = "";
    if (s == RT_OK) {
        char path[4200];
        shard_path(path, sizeof path, dir, 0);
        bool exists = access(path, F_OK) == 0;
        for (int64_t i = 0; exists && i < n_shards_of(key->rows) && !why[0] && s == RT_OK; i++) {
            s = read_shard(c, dir, i, why, sizeof why, &st->file_bytes);
            if (s == RT_EINPUT && why[0]) s = RT_OK; /* a mismatch: rebuild below */
        }
        if (s == RT_OK && (!exists || why[0])) {
            snprintf(st->rebuilt_reason, sizeof st->rebuilt_reason, "%s", why);
            if (!teacher)
                s = rt_errorf(RT_EINPUT, "%s: no usable teacher cache%s%s", dir, why[0] ? ": " : "", why);
            else {
                st->built = true;
                st->file_bytes = 0;
                s = compute(c, teacher, train, batch, packing, dev);
                if (s == RT_OK) s = write_shards(c, dir, st);
            }
        }
    }
    free(hashes);
    if (s != RT_OK) {
        rt_teacher_cache_free(c);
        return s;
    }
    st->tokens = key->tokens;
    st->shards = n_shards_of(key->rows);
    st->raw_bytes = (uint64_t)n * 8;
    st->bytes_per_token = key->tokens ? (double)st->file_bytes / (double)key->tokens : 0;
    st->ratio = st->file_bytes ? (double)st->raw_bytes / (double)st->file_bytes : 0;
    st->seconds = now_s() - t0;
    *out = c;
    return RT_OK;
}

rt_status rt_teacher_cache_lookup(const rt_teacher_cache *c, const rt_batch *b, int32_t *ids,
                                  float *logp) {
    const int k = c->key.k;
    const float rest = -logf((float)(k > 1 ? k : 2)) - 20.0f;
    for (int bi = 0; bi < b->B; bi++) {
        int64_t nt = row_targets(b, bi), o = 0;
        if (nt > 0) {
            uint64_t h = row_hash(b, bi), j = h & c->hmask;
            while (c->hkey[j] && c->hkey[j] != h) j = (j + 1) & c->hmask;
            int64_t r = c->hkey[j] ? c->hrow[j] : -1;
            if (r < 0 || c->row_off[r + 1] - c->row_off[r] != nt)
                return rt_errorf(RT_EINPUT, "teacher cache: batch row %d is not in the cache "
                                            "(the cache was made for another dataset)", bi);
            o = c->row_off[r];
        }
        for (int t = 0; t < b->T; t++) {
            int64_t p = ((int64_t)bi * b->T + t) * k;
            if (b->labels[(int64_t)bi * b->T + t] == RT_LABEL_IGNORE) {
                for (int j = 0; j < k; j++) {
                    ids[p + j] = j;
                    logp[p + j] = rest;
                }
            } else {
                memcpy(ids + p, c->ids + o * k, (size_t)k * sizeof *ids);
                memcpy(logp + p, c->logp + o * k, (size_t)k * sizeof *logp);
                o++;
            }
        }
    }
    return RT_OK;
}

int rt_teacher_cache_k(const rt_teacher_cache *c) { return c->key.k; }

void rt_teacher_cache_free(rt_teacher_cache *c) {
    if (!c) return;
    free(c->ids);
    free(c->logp);
    free(c->row_off);
    free(c->hkey);
    free(c->hrow);
    free(c);
}
