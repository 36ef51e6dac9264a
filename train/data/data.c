/* retort — datasets in memory: examples, rows (packing), the seeded sample
 * order and micro-batches. Loading from files is in train/data_load.c.
 * Semantics are documented in train/data.h. */
#include "train/data/data_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- seeded permutations -------------------------------------------------- */

/* splitmix64's finalizer (Steele, Lea, Flood 2014): a strong 64-bit mixer. */
static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

uint64_t rt_data_perm_key(uint64_t seed, uint64_t stream, uint64_t index) {
    return mix64(mix64(seed + 0x9e3779b97f4a7c15ULL) ^ mix64(stream * 0xd1b54a32d192ed03ULL + index));
}

/* A balanced Feistel network on 2*half bits is a bijection for any round
 * function (Luby & Rackoff 1988); walking the cycle until the value falls
 * below n restricts it to a bijection on [0, n) (Black & Rogaway 2002,
 * "Ciphers with arbitrary finite domains"). The domain is < 4n, so a walk
 * takes < 4 rounds on average. This gives perm(i) without storing the
 * permutation, which keeps batch functions const and allocation-free. */
uint64_t rt_data_perm(uint64_t n, uint64_t key, uint64_t i) {
    if (n <= 1) return i;
    int bits = 64 - __builtin_clzll(n - 1);
    if (bits < 2) bits = 2;
    bits += bits & 1;
    int half = bits / 2;
    uint64_t mask = (half == 32) ? 0xffffffffULL : ((1ULL << half) - 1);
    uint64_t x = i;
    do {
        uint64_t l = x >> half, r = x & mask;
        for (uint64_t round = 0; round < 6; round++) {
            uint64_t f = mix64(r ^ mix64(key + round)) & mask;
            uint64_t nl = r;
            r = l ^ f;
            l = nl;
        }
        x = (l << half) | r;
    } while (x >= n);
    return x;
}

/* ---- datasets --------------------------------------------------------------- */

rt_status rt_dataset_new(int seq_len, bool sample_packing, uint64_t seed, rt_dataset **out) {
    *out = NULL;
    if (seq_len < 1) return rt_errorf(RT_EINPUT, "data: sequence_len must be >= 1 (got %d)", seq_len);
    rt_dataset *d = calloc(1, sizeof *d);
    if (!d) return rt_errorf(RT_EINTERNAL, "data: out of memory");
    d->seq_len = seq_len;
    d->packing = sample_packing;
    d->seed = seed;
    d->shuffle_pack = true;
    d->ex_off = calloc(1, sizeof *d->ex_off);
    d->row_off = calloc(1, sizeof *d->row_off);
    if (!d->ex_off || !d->row_off) {
        rt_dataset_free(d);
        return rt_errorf(RT_EINTERNAL, "data: out of memory");
    }
    *out = d;
    return RT_OK;
}

void rt_dataset_free(rt_dataset *d) {
    if (!d) return;
    free(d->tok);
    free(d->tgt);
    free(d->ex_off);
    free(d->row_ex);
    free(d->row_off);
    free(d->row_tgt);
    free(d);
}

rt_status rt_data_push_example(rt_dataset *d, const int32_t *tokens, const uint8_t *targets,
                               int64_t n) {
    if (n < 2 || n > (int64_t)d->seq_len + 1)
        return rt_errorf(RT_EINTERNAL, "data: example of %lld tokens (sequence_len %d)", (long long)n,
                         d->seq_len);
    if (d->n_tok + n > d->cap_tok) {
        int64_t cap = d->cap_tok ? d->cap_tok : 4096;
        while (cap < d->n_tok + n) cap *= 2;
        int32_t *t = realloc(d->tok, (size_t)cap * sizeof *t);
        if (!t) return rt_errorf(RT_EINTERNAL, "data: out of memory");
        d->tok = t;
        uint8_t *g = realloc(d->tgt, (size_t)cap);
        if (!g) return rt_errorf(RT_EINTERNAL, "data: out of memory");
        d->tgt = g;
        d->cap_tok = cap;
    }
    if (d->n_ex + 1 >= d->cap_ex) {
        int64_t cap = d->cap_ex ? d->cap_ex * 2 : 256;
        int64_t *o = realloc(d->ex_off, (size_t)(cap + 1) * sizeof *o);
        if (!o) return rt_errorf(RT_EINTERNAL, "data: out of memory");
        d->ex_off = o;
        d->cap_ex = cap;
    }
    memcpy(d->tok + d->n_tok, tokens, (size_t)n * sizeof *tokens);
    memcpy(d->tgt + d->n_tok, targets, (size_t)n);
    d->tgt[d->n_tok] = 0; /* nothing precedes the first token */
    d->n_tok += n;
    d->n_ex++;
    d->ex_off[d->n_ex] = d->n_tok;
    return RT_OK;
}

void rt_data_truncate(rt_dataset *d, int64_t n_ex) {
    if (n_ex >= d->n_ex) return;
    d->n_ex = n_ex;
    d->n_tok = d->ex_off[n_ex];
}

static int64_t ex_len(const rt_dataset *d, int64_t e) { return d->ex_off[e + 1] - d->ex_off[e]; }

static int64_t ex_targets(const rt_dataset *d, int64_t e) {
    int64_t s = 0;
    for (int64_t k = d->ex_off[e]; k < d->ex_off[e + 1]; k++) s += d->tgt[k];
    return s;
}

rt_status rt_data_build_rows(rt_dataset *d) {
    int64_t n = d->n_ex;
    int64_t *row_ex = malloc((size_t)(n ? n : 1) * sizeof *row_ex);
    int64_t *row_off = malloc((size_t)(n + 1) * sizeof *row_off);
    int64_t *row_tgt = malloc((size_t)(n ? n : 1) * sizeof *row_tgt);
    if (!row_ex || !row_off || !row_tgt) {
        free(row_ex), free(row_off), free(row_tgt);
        return rt_errorf(RT_EINTERNAL, "data: out of memory");
    }
    uint64_t key = rt_data_perm_key(d->seed, RT_DATA_STREAM_PACK, 0);
    int64_t n_rows = 0, fill = 0, total = 0;
    row_off[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t e = (d->packing && d->shuffle_pack) ? (int64_t)rt_data_perm((uint64_t)n, key, (uint64_t)i) : i;
        int64_t len = ex_len(d, e), t = ex_targets(d, e);
        /* next-fit: open a new row unless the example fits the current one */
        bool fits = d->packing && n_rows > 0 && fill + len <= (int64_t)d->seq_len + 1;
        if (!fits) {
            n_rows++;
            row_off[n_rows] = row_off[n_rows - 1];
            row_tgt[n_rows - 1] = 0;
            fill = 0;
        }
        row_ex[row_off[n_rows]++] = e;
        row_tgt[n_rows - 1] += t;
        fill += len;
        total += t;
    }
    free(d->row_ex), free(d->row_off), free(d->row_tgt);
    d->row_ex = row_ex;
    d->row_off = row_off;
    d->row_tgt = row_tgt;
    d->n_rows = n_rows;
    d->n_targets = total;
    return RT_OK;
}

int64_t rt_dataset_rows(const rt_dataset *d) { return d ? d->n_rows : 0; }
int64_t rt_dataset_examples(const rt_dataset *d) { return d ? d->n_ex : 0; }
int64_t rt_dataset_targets(const rt_dataset *d) { return d ? d->n_targets : 0; }
int rt_dataset_seq_len(const rt_dataset *d) { return d->seq_len; }

void rt_dataset_example(const rt_dataset *d, int64_t i, const int32_t **tokens,
                        const uint8_t **targets, int64_t *n) {
    *tokens = d->tok + d->ex_off[i];
    *targets = d->tgt + d->ex_off[i];
    *n = ex_len(d, i);
}

/* ---- batches ------------------------------------------------------------------ */

rt_status rt_batch_alloc(rt_batch *b, int B, int T) {
    memset(b, 0, sizeof *b);
    if (B < 1 || T < 1) return rt_errorf(RT_EINPUT, "data: batch shape [%d, %d] must be positive", B, T);
    size_t n = (size_t)B * (size_t)T;
    b->ids = calloc(n, sizeof(int32_t));
    b->labels = calloc(n, sizeof(int32_t));
    b->pos = calloc(n, sizeof(int32_t));
    b->seg = calloc(n, sizeof(int32_t));
    if (!b->ids || !b->labels || !b->pos || !b->seg) {
        rt_batch_free(b);
        return rt_errorf(RT_EINTERNAL, "data: out of memory for a [%d, %d] batch", B, T);
    }
    b->B = B;
    b->T = T;
    return RT_OK;
}

void rt_batch_free(rt_batch *b) {
    if (!b) return;
    free(b->ids), free(b->labels), free(b->pos), free(b->seg);
    memset(b, 0, sizeof *b);
}

/* Writes row `row` (or padding when row < 0) into batch line b; returns the
 * number of targets written. */
static int64_t fill_row(const rt_dataset *d, int64_t row, rt_batch *out, int b) {
    int T = out->T;
    int32_t *ids = out->ids + (size_t)b * T, *lab = out->labels + (size_t)b * T;
    int32_t *pos = out->pos + (size_t)b * T, *seg = out->seg + (size_t)b * T;
    int t = 0;
    int64_t n_tgt = 0;
    if (row >= 0) {
        for (int64_t k = d->row_off[row]; k < d->row_off[row + 1]; k++) {
            int64_t e = d->row_ex[k], off = d->ex_off[e], len = ex_len(d, e);
            int s = (int)(k - d->row_off[row]);
            for (int64_t j = 0; j < len && t < T; j++, t++) {
                ids[t] = d->tok[off + j];
                pos[t] = (int32_t)j;
                seg[t] = s;
                /* the label of the example's last token would come from the
                 * next example: never a target */
                bool tgt = j + 1 < len && d->tgt[off + j + 1];
                lab[t] = tgt ? d->tok[off + j + 1] : RT_LABEL_IGNORE;
                n_tgt += tgt;
            }
        }
    }
    for (; t < T; t++) {
        ids[t] = 0;
        lab[t] = RT_LABEL_IGNORE;
        pos[t] = 0;
        seg[t] = -1;
    }
    return n_tgt;
}

static bool plan_ok(const rt_data_plan *p) {
    return p->micro_batch_size >= 1 && p->grad_accum >= 1 && p->world_size >= 1 && p->rank >= 0 &&
           p->rank < p->world_size;
}

rt_data_plan rt_data_plan_from_recipe(const rt_recipe *r, int world_size, int rank) {
    rt_data_plan p = {r->micro_batch_size, r->gradient_accumulation_steps, world_size, rank,
                      (uint64_t)r->seed};
    return p;
}

int64_t rt_data_global_batch(const rt_data_plan *p) {
    return (int64_t)p->micro_batch_size * p->grad_accum * p->world_size;
}

/* Row at stream position pos (see ORDER in data.h). */
static int64_t stream_row(const rt_dataset *d, uint64_t seed, int64_t pos) {
    int64_t epoch = pos / d->n_rows, i = pos % d->n_rows;
    uint64_t key = rt_data_perm_key(seed, RT_DATA_STREAM_EPOCH, (uint64_t)epoch);
    return (int64_t)rt_data_perm((uint64_t)d->n_rows, key, (uint64_t)i);
}

rt_status rt_data_train_batch(const rt_dataset *d, const rt_data_plan *p, int64_t step,
                              int micro, rt_batch *out) {
    if (!plan_ok(p) || step < 0 || micro < 0 || micro >= p->grad_accum)
        return rt_errorf(RT_EINTERNAL,
                         "data: bad batch request (B %d, accum %d, world %d, rank %d, step %lld, micro %d)",
                         p->micro_batch_size, p->grad_accum, p->world_size, p->rank, (long long)step,
                         micro);
    if (out->B != p->micro_batch_size || out->T != d->seq_len)
        return rt_errorf(RT_EINTERNAL, "data: batch is [%d, %d], plan needs [%d, %d]", out->B, out->T,
                         p->micro_batch_size, d->seq_len);
    if (d->n_rows == 0) return rt_errorf(RT_EINPUT, "data: the training set has no rows");
    int64_t base = step * rt_data_global_batch(p) +
                   ((int64_t)micro * p->world_size + p->rank) * p->micro_batch_size;
    out->n_targets = 0;
    for (int b = 0; b < out->B; b++) out->n_targets += fill_row(d, stream_row(d, p->seed, base + b), out, b);
    return RT_OK;
}

int64_t rt_data_step_targets(const rt_dataset *d, const rt_data_plan *p, int64_t step) {
    if (!d || d->n_rows == 0 || !plan_ok(p) || step < 0) return 0;
    int64_t G = rt_data_global_batch(p), sum = 0;
    for (int64_t i = 0; i < G; i++) sum += d->row_tgt[stream_row(d, p->seed, step * G + i)];
    return sum;
}

int64_t rt_data_total_steps(const rt_dataset *d, const rt_data_plan *p, double num_epochs,
                            int max_steps) {
    if (max_steps > 0) return max_steps;
    if (!d || d->n_rows == 0 || !plan_ok(p) || !(num_epochs > 0)) return 0;
    /* exact integer ceil when num_epochs is whole (the common case) */
    int64_t G = rt_data_global_batch(p);
    if (num_epochs == floor(num_epochs) && num_epochs < 1e6) {
        int64_t samples = (int64_t)num_epochs * d->n_rows;
        return (samples + G - 1) / G;
    }
    return (int64_t)ceil(num_epochs * (double)d->n_rows / (double)G);
}

rt_status rt_data_val_batch(const rt_dataset *d, int64_t first_row, rt_batch *out) {
    if (first_row < 0 || out->T != d->seq_len || out->B < 1)
        return rt_errorf(RT_EINTERNAL, "data: bad eval batch (first row %lld, batch [%d, %d], T %d)",
                         (long long)first_row, out->B, out->T, d->seq_len);
    out->n_targets = 0;
    for (int b = 0; b < out->B; b++) {
        int64_t row = first_row + b < d->n_rows ? first_row + b : -1;
        out->n_targets += fill_row(d, row, out, b);
    }
    return RT_OK;
}
