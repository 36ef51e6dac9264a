/* retort — the teacher-logit cache of distillation (teacher_logits: cache).
 *
 * The teacher's top-k log-probabilities (rt_kd_topk: ids and f32 values at
 * the KD temperature, descending) of every TARGET token of every train row
 * are computed once and kept on disk, so later epochs and later runs read
 * them instead of running the teacher. Only target positions (labels !=
 * -100) are stored: the KD loss ignores the others.
 *
 * FILES. `dir`/shard-NNNNN.rtkc, each covering RT_TEACHER_CACHE_SHARD_ROWS
 * consecutive rows (dataset order). A shard is a 128-byte little-endian
 * header followed by one zstd frame:
 *     0  char[8] "RTKCACHE"          48  u64 teacher fingerprint
 *     8  u32 version (2)             56  u64 data fingerprint
 *    12  u32 k                       64  u64 total rows of the dataset
 *    16  u32 dtype (1: i32 ids +     72  u64 total target tokens
 *            f32 log-probs,          80  f32 temperature
 *            byte-shuffled)          84  u32 shard index
 *    20  u32 seq_len                 88  u32 number of shards
 *    24  u64 tokens in this shard    96  u64 payload bytes (uncompressed)
 *    32  u64 first row              104  u64 zstd frame bytes
 *    40  u64 rows in this shard     112  u32 CRC-32 (zlib) of the 128
 *                                        header bytes with this field 0
 *                                   116  12 bytes reserved (0)
 * The payload is ids[tokens * k] then logp[tokens * k], tokens in row order
 * and, inside a row, in position order; each array is byte-shuffled (byte j
 * of every element stored together, as Blosc's shuffle filter), which lets
 * zstd find the runs in the high bytes of ids and the sign/exponent bytes of
 * log-probs. The zstd frame carries its content checksum (XXH64); a shard
 * whose header CRC or frame checksum fails is reported and the cache
 * rebuilt. A shard file is read only up to RT_TEACHER_CACHE_SHARD_MAX bytes
 * and every size in its header must equal what the key implies before
 * anything is allocated from it.
 *
 * KEY. A cache is used only when every header field matches this run: k,
 * temperature, teacher fingerprint (a hash of the teacher's config and of
 * its logits on a fixed probe sequence, so another checkpoint, a 4-bit
 * teacher or another architecture all differ), data fingerprint (a hash of
 * every train row's ids, labels, positions and segments, in order),
 * rows, target tokens and seq_len. Otherwise the cache is rebuilt and the
 * reason reported (never silently used).
 *
 * LOOKUP. The trainer hands the loss function batches, not row indices, so
 * rows are found by content: a hash of the batch row (ids, labels, pos,
 * seg) maps to its dataset row. Two rows with equal content have equal
 * teacher outputs, so any match is the right one.
 */
#ifndef RT_TEACHER_CACHE_H
#define RT_TEACHER_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "train/data/data.h"
#include "train/model/llama.h"

#define RT_TEACHER_CACHE_SHARD_ROWS 256
#define RT_TEACHER_CACHE_SHARD_MAX ((size_t)4 << 30)

typedef struct {
    uint64_t teacher;    /* rt_teacher_fingerprint */
    uint64_t data;       /* rt_teacher_cache_key_for */
    int k;
    float temperature;
    int64_t rows, tokens; /* train rows and their target tokens */
    int seq_len;
} rt_teacher_cache_key;

typedef struct {
    bool built;                 /* computed by this run (else read from disk) */
    char rebuilt_reason[256];   /* why an existing cache was not used; "" */
    int64_t tokens, shards;
    uint64_t raw_bytes;         /* tokens * k * 8: ids + log-probs uncompressed */
    uint64_t file_bytes;        /* shard files on disk (headers included) */
    double bytes_per_token;     /* file_bytes / tokens */
    double ratio;               /* raw_bytes / file_bytes */
    double seconds;             /* building or reading */
} rt_teacher_cache_stats;

typedef struct rt_teacher_cache rt_teacher_cache;

/* A 64-bit fingerprint of the teacher: its config and the bit patterns of
 * its logits for a fixed 8-token probe (one no-grad forward on ctx; the
 * ctx arena is reset). */
rt_status rt_teacher_fingerprint(rt_ctx *ctx, rt_llama *teacher, uint64_t *fp);

/* The key of (teacher fingerprint, train rows, k, temperature). */
rt_status rt_teacher_cache_key_for(const rt_dataset *train, uint64_t teacher_fp, int k,
                                   float temperature, rt_teacher_cache_key *key);

/* Opens the cache in `dir` (created with parents if missing) when its
 * headers match `key`; otherwise (no cache, another key, a corrupt shard)
 * builds it by running `teacher` over every train row, `batch` rows per
 * no-grad forward (seg passed when `packing`, as the trainer does), writes
 * the shards (atomically) and removes stale ones. `teacher` may be NULL
 * only for a read that must not build (then a missing or mismatching cache
 * is RT_EINPUT naming the reason). *out is owned by the caller
 * (rt_teacher_cache_free); *st filled on success. Errors: RT_EINPUT for an
 * unwritable dir or k outside [1, V], RT_EINTERNAL on OOM or zstd failure. */
rt_status rt_teacher_cache_open(const char *dir, const rt_teacher_cache_key *key,
                                rt_llama *teacher, const rt_dataset *train, int batch,
                                bool packing, rt_device dev, rt_teacher_cache **out,
                                rt_teacher_cache_stats *st);

/* The cached top-k of batch b: ids and logp [b->B * b->T * k] (host
 * memory, caller's). Positions whose label is -100 get ids 0..k-1 and
 * log-probs -log(k) - 20 (ignored by the KD loss, but valid input for it).
 * RT_EINPUT when a batch row is not in the cache (another dataset). */
rt_status rt_teacher_cache_lookup(const rt_teacher_cache *c, const rt_batch *b, int32_t *ids,
                                  float *logp);

int rt_teacher_cache_k(const rt_teacher_cache *c);
void rt_teacher_cache_free(rt_teacher_cache *c); /* NULL-safe */

#endif
