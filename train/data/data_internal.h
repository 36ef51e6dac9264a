/* retort — internals shared by train/data.c (rows, batches, order) and
 * train/data_load.c (files, tokenization, split). Not a public API. */
#ifndef RT_DATA_INTERNAL_H
#define RT_DATA_INTERNAL_H

#include "train/data/data.h"

struct rt_dataset {
    int seq_len; /* T: rows hold <= T + 1 tokens */
    bool packing;
    uint64_t seed; /* packing order */
    bool shuffle_pack; /* false for the validation set: pack in order */
    /* examples: tokens/targets [ex_off[i], ex_off[i+1]) */
    int32_t *tok;
    uint8_t *tgt;
    int64_t n_tok, cap_tok;
    int64_t *ex_off; /* n_ex + 1 entries */
    int64_t n_ex, cap_ex;
    /* rows: examples row_ex[row_off[r] .. row_off[r+1]) */
    int64_t *row_ex, *row_off, *row_tgt; /* row_tgt: targets per row */
    int64_t n_rows, n_targets;
};

/* Streams of the seeded permutations (one key per use). */
enum { RT_DATA_STREAM_SPLIT = 1, RT_DATA_STREAM_PACK = 2, RT_DATA_STREAM_EPOCH = 3 };

/* Key of permutation (seed, stream, index). */
uint64_t rt_data_perm_key(uint64_t seed, uint64_t stream, uint64_t index);

/* Position i of a keyed pseudo-random permutation of [0, n) (i < n). */
uint64_t rt_data_perm(uint64_t n, uint64_t key, uint64_t i);

/* Appends one example (n >= 2 tokens, targets[0] ignored and stored as 0).
 * RT_EINTERNAL on OOM (d unchanged). Rows are NOT rebuilt. */
rt_status rt_data_push_example(rt_dataset *d, const int32_t *tokens, const uint8_t *targets,
                               int64_t n);

/* Drops examples [n_ex, d->n_ex) (undo of pushes after a failure). */
void rt_data_truncate(rt_dataset *d, int64_t n_ex);

/* Rebuilds the rows from the examples (packing/order per d's settings).
 * RT_EINTERNAL on OOM (the old rows are kept then). */
rt_status rt_data_build_rows(rt_dataset *d);

#endif
