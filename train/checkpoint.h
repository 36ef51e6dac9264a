/* retort — training checkpoints.
 *
 * output_dir/checkpoint-<step>/ holds the adapter in PEFT form (so any
 * checkpoint is usable as is) and one trainer_state-rank<R>.bin per rank:
 *
 *   offset 0  char[8]  magic "RTCKPT\0\1"
 *          8  u32      version (2)
 *         12  u32      world size, rank, zero stage, optimizer (adamw 0 / sgd 1)
 *         28  u32      CRC-32 (zlib) of these 96 header bytes with this field 0
 *         32  i64      step (optimizer steps completed)
 *         40  u64      dropout RNG counter
 *         48  i64      n_params (flat trainable buffer, padded), moment_begin, moment_n
 *         72  u64      raw payload bytes, compressed bytes
 *         88  i64      optimizer updates applied (AdamW's t; skipped steps
 *                      do not count)
 *         96  zstd frame with its content checksum (XXH64, checked on read):
 *                          params[n_params] f32 (rank 0 only, else absent),
 *                          m[moment_n] f32, v[moment_n] f32 (params in every
 *                          rank's file)
 *
 * Checkpoints are written to checkpoint-<step>.tmp and renamed once every
 * rank's file is on disk (after a barrier) and a COMPLETE marker is written,
 * so a crash never leaves a checkpoint that looks whole. COMPLETE is the
 * checkpoint's manifest: one line "crc32 size name" (CRC-32 as 8 hex digits,
 * size in bytes) per other file of the directory, so every file of a
 * checkpoint proves itself (rt_checkpoint_verify). Removal unlinks COMPLETE
 * first. Caps on hostile files: a state file's sizes must equal the ones the
 * resuming run expects before anything is allocated; step in
 * [1, RT_CHECKPOINT_MAX_STEP]; parameters and moments must be finite. */
#ifndef RT_CHECKPOINT_H
#define RT_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/error.h"

typedef struct {
    int world, rank, zero_stage, optimizer;
    int64_t step;
    int64_t updates; /* optimizer updates applied (<= step) */
    uint64_t rng_counter;
    int64_t n_params, moment_begin, moment_n;
    float *params;   /* [n_params] or NULL (ranks > 0) */
    float *m, *v;    /* [moment_n] each (v NULL for SGD) */
} rt_train_state;

/* Writes this rank's state file into dir (which must exist). */
rt_status rt_checkpoint_write_state(const char *dir, const rt_train_state *s);

/* Reads dir/trainer_state-rank<rank>.bin into s, checking it against the
 * expected sizes already in s (world, rank, zero_stage, optimizer, n_params,
 * moment_begin, moment_n) and filling step, rng_counter and the buffers
 * (which must be allocated by the caller). A checkpoint from another world
 * size or configuration is RT_EINPUT naming the file. */
rt_status rt_checkpoint_read_state(const char *dir, rt_train_state *s);

#define RT_CHECKPOINT_MAX_STEP ((int64_t)1 << 40)
#define RT_CHECKPOINT_MAX_LIST 4096

/* The newest complete checkpoint directory under output_dir (path into
 * `out`), or RT_EINPUT when there is none. */
rt_status rt_checkpoint_latest(const char *output_dir, char *out, size_t cap);

/* Steps of the checkpoint-<step> directories under output_dir that have a
 * COMPLETE marker, newest first (at most cap). Returns how many. */
int rt_checkpoint_list(const char *output_dir, long *steps, int cap);

/* Writes dir/COMPLETE: the manifest of every other file in dir (through
 * COMPLETE.tmp and a rename). */
rt_status rt_checkpoint_seal(const char *dir);

/* Checks every file the manifest dir/COMPLETE lists (size and CRC-32).
 * RT_EINPUT naming the first file that is missing, truncated or corrupt. */
rt_status rt_checkpoint_verify(const char *dir);

/* Removes one checkpoint directory, COMPLETE first. */
void rt_checkpoint_remove(const char *dir);

/* Removes complete checkpoints beyond the newest `keep` (save_total_limit). */
void rt_checkpoint_prune(const char *output_dir, int keep);

#endif
