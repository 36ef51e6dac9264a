/* retort — CPU causal grouped-query attention, forward and backward.
 *
 * Layouts (kernels/kernels.h): q, out, dq [B,Tq,H,Dh]; k, v, dk, dv
 * [B,Tk,Hkv,Dh]; lse [B,H,Tq]; seg [B,T]. Query head h reads kv head
 * h / (H/Hkv). Query i sits at absolute position Tk-Tq+i and sees key j iff
 * j <= Tk-Tq+i and (no seg, or seg[j] == seg[i]) and (window 0, or
 * Tk-Tq+i - j < window: a sliding window of the last `window` keys).
 *
 * Neither direction materialises the [Tq,Tk] score matrix: the forward is an
 * online softmax (Milakov & Gimelshein 2018, as in FlashAttention) keeping a
 * running max and sum per query row, and the backward recomputes each
 * probability from q, k and the saved lse with the FlashAttention-2 equations
 * (Dao 2023, Algorithm 2):
 *   P_ij = exp(s_ij - lse_i),  D_i = dO_i . O_i,  dP_ij = dO_i . V_j,
 *   dS_ij = P_ij (dP_ij - D_i),  dQ_i += scale dS_ij K_j,
 *   dK_j += scale dS_ij Q_i,  dV_j += P_ij dO_i.
 *
 * Speed: libm's exp per score was ~80% of a stories260K forward. Both
 * directions walk the keys in blocks of ATT_KB: a block's scores go into a
 * small stack array, which one SIMD loop then exponentiates with fast_expf.
 * Heads up to ATT_DPACK wide (stories260K has Dh = 8) first copy the block's
 * keys and values transposed into [Dh][ATT_KB] stack tiles, so that every
 * inner loop runs along the keys (long, contiguous) instead of along Dh
 * (8 floats are two SSE vectors plus a horizontal sum); the forward reuses a
 * tile for ATT_QB query rows and the backward also accumulates the block's
 * dK and dV in tiles (FlashAttention-2's loop order: key block outer, query
 * rows inner). Wider heads work on the rows directly. On x86-64 the
 * per-unit work functions are compiled twice, for AVX2+FMA (x86-64-v3: 8
 * floats per vector, fused multiply-add, blends) and for the build's baseline
 * (SSE2), and the loader picks one per machine (GCC target_clones).
 * Scores, probabilities and the Dh-term dot products are f32; the softmax
 * denominator of a row is summed per block in f32 and across blocks in
 * double, and lse = max + log(sum) in double.
 */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/vec_math.h"

/* Work functions: cloned per ISA where GCC supports it (see above). Their
 * helpers are forced inline so that each clone gets its own vector code
 * (a plain call would land in the baseline copy). */

/* Keys per block: the block's scores (and, in backward, dP) sit in stack
 * arrays of this size; large enough for long SIMD loops, small enough that
 * the causal diagonal block wastes little. */
#define ATT_KB 64
/* Widest head that takes the tiled path: measured on one Zen 4 core, tiles
 * win 1.5-2x at Dh = 8 and 16 and lose from Dh = 24 on (a row of 24+ floats
 * already fills SIMD vectors). The backward's four [Dh][ATT_KB] tiles are
 * 16 KB of stack. */
#define ATT_DPACK 16
/* Wide heads: query rows and keys per GEMM tile (S is ATT_GB x ATT_GB). */
#define ATT_GB 64
/* Widest head whose backward keeps ATT_GB keys per block: the dK and dV
 * tiles are ATT_GB x ATT_DTILE floats each (64 KB) on the stack. */
#define ATT_DTILE 256
/* Query rows that share one packed key tile in the forward. */
#define ATT_QB 16
/* Below this many multiply-adds (B*Tq*Tk*H*Dh) one thread does it all. */
#define ATT_OMP_MIN 65536

/* Everything a work unit needs (kernels/kernels.h names). */
typedef struct att_args {
    int64_t B, Tq, Tk, H, Hkv, Dh;
    int64_t group, kstride; /* H / Hkv; distance between consecutive keys of one head */
    float scale;            /* 1/sqrt(Dh) */
    int64_t window;         /* sliding window (keys a query sees); 0: none */
    const float *q, *k, *v, *out, *lse, *dout;
    const int32_t *seg;
    float *o, *lse_out, *dq, *dk, *dv;
} att_args;

RT_CPU_INLINE int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

RT_CPU_INLINE float dotf(int64_t n, const float *a, const float *b) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t d = 0; d < n; d++) s += a[d] * b[d];
    return s;
}

/* y[0..n) += a * x[0..n) */
RT_CPU_INLINE void axpyf(int64_t n, float a, const float *x, float *y) {
#pragma omp simd
    for (int64_t d = 0; d < n; d++) y[d] += a * x[d];
}

/* Online-softmax step for one row over a block of n scores s (in place):
 * raises the running max *m to the block's, exponentiates s[j] - *m into s,
 * adds their sum to *l, and returns the factor by which what was
 * accumulated before must be rescaled (exp(old max - new max), 1 if the max
 * did not move). Returns -1 and leaves everything alone when every score is
 * -inf (the whole block lies in other segments). */
RT_CPU_INLINE float softmax_block(int64_t n, float *s, float *m, double *l) {
    float bm = -INFINITY;
#pragma omp simd reduction(max : bm)
    for (int64_t j = 0; j < n; j++) bm = s[j] > bm ? s[j] : bm;
    if (bm == -INFINITY) return -1.0f;
    float c = 1.0f;
    if (bm > *m) {
        c = rt_fast_expf(*m - bm); /* 0 on a row's first visible block (m = -inf) */
        *l *= c;
        *m = bm;
    }
    const float mm = *m;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < n; j++) {
        s[j] = rt_fast_expf(s[j] - mm);
        sum += s[j];
    }
    *l += sum;
    return c;
}

/* Keys of segments other than the query's (seg_i) get score -inf. */
RT_CPU_INLINE void mask_segments(int64_t n, const int32_t *seg_j, int32_t seg_i, float *s) {
    for (int64_t j = 0; j < n; j++)
        if (seg_j[j] != seg_i) s[j] = -INFINITY;
}

/* Keys j0 + j more than window - 1 positions behind the query at pos get
 * score -inf (sliding-window attention, e.g. Gemma 3's local layers: as
 * transformers' sliding_window_overlay, kv > q - window). */
RT_CPU_INLINE void mask_window(int64_t n, int64_t j0, int64_t pos, int64_t window, float *s) {
    for (int64_t j = 0; j < n && pos - (j0 + j) >= window; j++) s[j] = -INFINITY;
}

/* The first key block (of size bs) a query at pos can see. */
RT_CPU_INLINE int64_t window_start(int64_t pos, int64_t window, int64_t bs) {
    return window > 0 && pos - window + 1 > 0 ? (pos - window + 1) / bs * bs : 0;
}

/* tile[d][j] = rows[j * stride + d] for j < n, d < Dh: keys (or values) of
 * one head, transposed so that loops over keys are contiguous. */
RT_CPU_INLINE void pack_tile(int64_t n, int64_t Dh, const float *rows, int64_t stride, float *tile) {
    for (int64_t j = 0; j < n; j++)
        for (int64_t d = 0; d < Dh; d++) tile[d * ATT_KB + j] = rows[j * stride + d];
}

/* rows[j * stride + d] += tile[d][j]: the inverse of pack_tile, accumulating. */
RT_CPU_INLINE void unpack_add_tile(int64_t n, int64_t Dh, const float *tile, float *rows,
                                int64_t stride) {
    for (int64_t j = 0; j < n; j++)
        for (int64_t d = 0; d < Dh; d++) rows[j * stride + d] += tile[d * ATT_KB + j];
}

/* out[j] = alpha * sum_d x[d] * tile[d][j] for j < n: a row of scores against
 * a packed tile, vectorised along the keys. */
RT_CPU_INLINE void tile_dots(int64_t n, int64_t Dh, const float *x, const float *tile, float alpha,
                          float *out) {
    for (int64_t j = 0; j < n; j++) out[j] = 0.0f;
    for (int64_t d = 0; d < Dh; d++) {
        const float xd = x[d], *t = tile + d * ATT_KB;
#pragma omp simd
        for (int64_t j = 0; j < n; j++) out[j] += xd * t[j];
    }
#pragma omp simd
    for (int64_t j = 0; j < n; j++) out[j] *= alpha;
}

/* Forward, Dh <= ATT_DPACK: ATT_QB query rows (i0..) of one (batch b, head
 * h), whose key/value blocks are packed once for all the rows. */
static RT_CPU_CLONES void fwd_tiled_unit(const att_args *a, int64_t b, int64_t h, int64_t i0) {
    const int64_t Tq = a->Tq, H = a->H, Dh = a->Dh, off = a->Tk - Tq, kstride = a->kstride;
    const int64_t nq = min64(ATT_QB, Tq - i0), kv0 = (b * a->Tk * a->Hkv + h / a->group) * Dh;
    const int32_t *seg_b = a->seg ? a->seg + b * a->Tk : NULL;
    float kt[ATT_DPACK * ATT_KB], vt[ATT_DPACK * ATT_KB], s[ATT_KB], m[ATT_QB];
    double l[ATT_QB];
    for (int64_t r = 0; r < nq; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0;
        memset(a->o + ((b * Tq + i0 + r) * H + h) * Dh, 0, (size_t)Dh * sizeof(float));
    }
    const int64_t kend = off + i0 + nq; /* the unit's rows see keys < kend */
    for (int64_t j0 = window_start(off + i0, a->window, ATT_KB); j0 < kend; j0 += ATT_KB) {
        const int64_t n = min64(ATT_KB, kend - j0);
        pack_tile(n, Dh, a->k + kv0 + j0 * kstride, kstride, kt);
        pack_tile(n, Dh, a->v + kv0 + j0 * kstride, kstride, vt);
        for (int64_t r = 0; r < nq; r++) {
            const int64_t i = i0 + r, nv = min64(n, off + i + 1 - j0); /* causal */
            if (nv <= 0) continue;
            const int64_t row = (b * Tq + i) * H + h;
            tile_dots(nv, Dh, a->q + row * Dh, kt, a->scale, s);
            if (seg_b) mask_segments(nv, seg_b + j0, seg_b[off + i], s);
            if (a->window) mask_window(nv, j0, off + i, a->window, s);
            const float c = softmax_block(nv, s, &m[r], &l[r]);
            if (c < 0.0f) continue;
            float *o = a->o + row * Dh;
            for (int64_t d = 0; d < Dh; d++) {
                const float *t = vt + d * ATT_KB;
                float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                for (int64_t j = 0; j < nv; j++) acc += s[j] * t[j];
                o[d] = o[d] * c + acc;
            }
        }
    }
    for (int64_t r = 0; r < nq; r++) { /* key i is always visible, so l >= 1 */
        float *o = a->o + ((b * Tq + i0 + r) * H + h) * Dh;
        const float inv = (float)(1.0 / l[r]);
        for (int64_t d = 0; d < Dh; d++) o[d] *= inv;
        a->lse_out[(b * H + h) * Tq + i0 + r] = (float)((double)m[r] + log(l[r]));
    }
}

/* Forward, wide heads (Dh > ATT_DPACK): ATT_GB query rows (i0..) of one
 * (batch b, head h) against blocks of ATT_GB keys, each block's scores and
 * its product with V as GEMMs on the strided rows themselves (no packing):
 *   S = scale Q_blk K_blk^T,  online softmax per row of S (in place: P),
 *   O_blk = c O_blk + P V_blk  (c: each row's rescale factor).
 * Entries of P a row may not see (causal, other segments) are 0, so the
 * diagonal block's GEMMs run whole. */
static RT_CPU_CLONES void fwd_gemm_unit(const att_args *a, int64_t b, int64_t h, int64_t i0) {
    const int64_t Tq = a->Tq, H = a->H, Dh = a->Dh, off = a->Tk - Tq, kstride = a->kstride;
    const int64_t ldq = H * Dh, nq = min64(ATT_GB, Tq - i0);
    const int64_t kv0 = (b * a->Tk * a->Hkv + h / a->group) * Dh;
    const int32_t *seg_b = a->seg ? a->seg + b * a->Tk : NULL;
    const float *qb = a->q + ((b * Tq + i0) * H + h) * Dh;
    float *ob = a->o + ((b * Tq + i0) * H + h) * Dh;
    float S[ATT_GB * ATT_GB], m[ATT_GB];
    double l[ATT_GB];
    for (int64_t r = 0; r < nq; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0;
        memset(ob + r * ldq, 0, (size_t)Dh * sizeof(float));
    }
    const int64_t kend = off + i0 + nq; /* the unit's rows see keys < kend */
    for (int64_t j0 = window_start(off + i0, a->window, ATT_GB); j0 < kend; j0 += ATT_GB) {
        const int64_t n = min64(ATT_GB, kend - j0);
        rt_cpu_gemm_tile(false, true, nq, n, Dh, a->scale, qb, ldq, a->k + kv0 + j0 * kstride,
                         kstride, 0.0f, S, ATT_GB);
        for (int64_t r = 0; r < nq; r++) {
            const int64_t i = i0 + r, nv = min64(n, off + i + 1 - j0); /* causal */
            float *s = S + r * ATT_GB, c = -1.0f;
            if (nv > 0) {
                if (seg_b) mask_segments(nv, seg_b + j0, seg_b[off + i], s);
                if (a->window) mask_window(nv, j0, off + i, a->window, s);
                c = softmax_block(nv, s, &m[r], &l[r]);
            }
            if (c < 0.0f) { /* sees none of this block */
                memset(s, 0, (size_t)n * sizeof(float));
                continue;
            }
            for (int64_t j = nv; j < n; j++) s[j] = 0.0f;
            if (c != 1.0f) {
                float *o = ob + r * ldq;
#pragma omp simd
                for (int64_t d = 0; d < Dh; d++) o[d] *= c;
            }
        }
        rt_cpu_gemm_tile(false, false, nq, Dh, n, 1.0f, S, ATT_GB, a->v + kv0 + j0 * kstride,
                         kstride, 1.0f, ob, ldq);
    }
    for (int64_t r = 0; r < nq; r++) { /* key i is always visible, so l >= 1 */
        float *o = ob + r * ldq;
        const float inv = (float)(1.0 / l[r]);
#pragma omp simd
        for (int64_t d = 0; d < Dh; d++) o[d] *= inv;
        a->lse_out[(b * H + h) * Tq + i0 + r] = (float)((double)m[r] + log(l[r]));
    }
}

/* Work is split into independent units: (b, h, block of ATT_QB rows) for
 * tiles, single rows otherwise. A unit's cost grows with its query position
 * (causal), so units are handed out dynamically. */
void rt_cpu_attention(int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t Hkv, int64_t Dh,
                      const float *q, const float *k, const float *v, const int32_t *seg,
                      int64_t window, float *out, float *lse) {
    const att_args a = {.B = B, .Tq = Tq, .Tk = Tk, .H = H, .Hkv = Hkv, .Dh = Dh,
                        .group = H / Hkv, .kstride = Hkv * Dh,
                        .scale = (float)(1.0 / sqrt((double)Dh)), .q = q, .k = k, .v = v,
                        /* segments are defined for full sequences only */
                        .seg = Tq == Tk ? seg : NULL, .window = window, .o = out, .lse_out = lse};
    const bool par = B * Tq * Tk * H * Dh >= ATT_OMP_MIN;
    if (Dh <= ATT_DPACK) {
        const int64_t nqb = (Tq + ATT_QB - 1) / ATT_QB;
#pragma omp parallel for schedule(dynamic, 1) if (par)
        for (int64_t u = 0; u < B * H * nqb; u++)
            fwd_tiled_unit(&a, u / (H * nqb), (u / nqb) % H, (u % nqb) * ATT_QB);
    } else {
        const int64_t nqb = (Tq + ATT_GB - 1) / ATT_GB;
#pragma omp parallel for schedule(dynamic, 1) if (par)
        for (int64_t u = 0; u < B * H * nqb; u++)
            fwd_gemm_unit(&a, u / (H * nqb), (u / nqb) % H, (u % nqb) * ATT_GB);
    }
}

/* P_ij and scale * dS_ij for one query row against n keys, given its scores
 * p[j] = scale * q.k_j (masked: -inf) and ds[j] = dO_i . V_j on entry. */
RT_CPU_INLINE void probs_and_dscores(int64_t n, float lse_i, float D, float scale, float *p,
                                  float *ds) {
#pragma omp simd
    for (int64_t j = 0; j < n; j++) {
        p[j] = rt_fast_expf(p[j] - lse_i);
        ds[j] = scale * p[j] * (ds[j] - D);
    }
}

/* Backward, Dh <= ATT_DPACK, one (batch b, kv head kh) pair: key block outer,
 * query rows inner; the block's K and V are packed and its dK and dV
 * accumulate in tiles, added to dk, dv once per block. */
static RT_CPU_CLONES void bwd_tiled_pair(const att_args *a, int64_t b, int64_t kh) {
    const int64_t T = a->Tq, H = a->H, Dh = a->Dh, kstride = a->kstride;
    const int64_t kv0 = (b * T * a->Hkv + kh) * Dh; /* key j of the pair at kv0 + j*kstride */
    const int32_t *seg_b = a->seg ? a->seg + b * T : NULL;
    float kt[ATT_DPACK * ATT_KB], vt[ATT_DPACK * ATT_KB];
    float dkt[ATT_DPACK * ATT_KB], dvt[ATT_DPACK * ATT_KB], p[ATT_KB], ds[ATT_KB];
    for (int64_t j0 = 0; j0 < T; j0 += ATT_KB) {
        const int64_t n = min64(ATT_KB, T - j0);
        pack_tile(n, Dh, a->k + kv0 + j0 * kstride, kstride, kt);
        pack_tile(n, Dh, a->v + kv0 + j0 * kstride, kstride, vt);
        memset(dkt, 0, sizeof dkt);
        memset(dvt, 0, sizeof dvt);
        for (int64_t h = kh * a->group; h < (kh + 1) * a->group; h++) {
            for (int64_t i = j0; i < T; i++) { /* rows before j0 see none of the block */
                const int64_t nv = min64(n, i + 1 - j0), qo = ((b * T + i) * H + h) * Dh;
                const float *qi = a->q + qo, *doi = a->dout + qo;
                tile_dots(nv, Dh, qi, kt, a->scale, p);
                if (seg_b) mask_segments(nv, seg_b + j0, seg_b[i], p);
                if (a->window) mask_window(nv, j0, i, a->window, p);
                tile_dots(nv, Dh, doi, vt, 1.0f, ds); /* dP */
                probs_and_dscores(nv, a->lse[(b * H + h) * T + i], dotf(Dh, doi, a->out + qo),
                                  a->scale, p, ds);
                for (int64_t d = 0; d < Dh; d++) {
                    const float qd = qi[d], dod = doi[d];
                    float *dkr = dkt + d * ATT_KB, *dvr = dvt + d * ATT_KB;
#pragma omp simd
                    for (int64_t j = 0; j < nv; j++) {
                        dvr[j] += dod * p[j];
                        dkr[j] += qd * ds[j];
                    }
                }
                if (a->dq) {
                    float *dqi = a->dq + qo;
                    for (int64_t d = 0; d < Dh; d++) {
                        const float *kr = kt + d * ATT_KB;
                        float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                        for (int64_t j = 0; j < nv; j++) acc += ds[j] * kr[j];
                        dqi[d] += acc;
                    }
                }
            }
        }
        if (a->dk) unpack_add_tile(n, Dh, dkt, a->dk + kv0 + j0 * kstride, kstride);
        if (a->dv) unpack_add_tile(n, Dh, dvt, a->dv + kv0 + j0 * kstride, kstride);
    }
}

/* Backward, wide heads, one (b, kh) pair: FlashAttention-2's loop order
 * with every product a GEMM on tiles of up to ATT_GB x ATT_GB. Key block
 * outer (its dK, dV accumulate in the stack tiles dkb, dvb of kb x Dh
 * floats: kb = ATT_GB keys, fewer for heads wider than ATT_DTILE), then each
 * query head of the group and each query block that sees the keys:
 *   S = scale Q_i K_j^T -> P (masked: 0),  dP = dO_i V_j^T -> scale dS,
 *   dV_j += P^T dO_i,  dK_j += dS^T Q_i,  dQ_i += dS K_j,
 * with D_i = dO_i . O_i formed per row where it is used (Dh flops against
 * the ~10 kb Dh of the row's GEMM work). */
static RT_CPU_CLONES void bwd_gemm_pair(const att_args *a, int64_t b, int64_t kh) {
    const int64_t T = a->Tq, H = a->H, Dh = a->Dh, kstride = a->kstride, ldq = H * Dh;
    const int64_t kv0 = (b * T * a->Hkv + kh) * Dh, h0 = kh * a->group;
    const int64_t kb = Dh <= ATT_DTILE ? ATT_GB : (ATT_GB * ATT_DTILE / Dh > 0 ? ATT_GB * ATT_DTILE / Dh : 1);
    const int32_t *seg_b = a->seg ? a->seg + b * T : NULL;
    float dkb[ATT_GB * ATT_DTILE], dvb[ATT_GB * ATT_DTILE], S[ATT_GB * ATT_GB], dP[ATT_GB * ATT_GB];
    for (int64_t j0 = 0; j0 < T; j0 += kb) {
        const int64_t n = min64(kb, T - j0);
        const float *kj = a->k + kv0 + j0 * kstride, *vj = a->v + kv0 + j0 * kstride;
        memset(dkb, 0, (size_t)(n * Dh) * sizeof(float));
        memset(dvb, 0, (size_t)(n * Dh) * sizeof(float));
        for (int64_t h = h0; h < h0 + a->group; h++) {
            for (int64_t i0 = j0 / ATT_GB * ATT_GB; i0 < T; i0 += ATT_GB) {
                const int64_t nq = min64(ATT_GB, T - i0), qo = ((b * T + i0) * H + h) * Dh;
                const float *qi = a->q + qo, *doi = a->dout + qo;
                rt_cpu_gemm_tile(false, true, nq, n, Dh, a->scale, qi, ldq, kj, kstride, 0.0f, S,
                                 ATT_GB);
                rt_cpu_gemm_tile(false, true, nq, n, Dh, 1.0f, doi, ldq, vj, kstride, 0.0f, dP,
                                 ATT_GB);
                for (int64_t r = 0; r < nq; r++) {
                    const int64_t i = i0 + r, nv = min64(n, i + 1 - j0);
                    float *p = S + r * ATT_GB, *ds = dP + r * ATT_GB;
                    if (nv > 0) {
                        if (seg_b) mask_segments(nv, seg_b + j0, seg_b[i], p);
                        if (a->window) mask_window(nv, j0, i, a->window, p);
                        probs_and_dscores(nv, a->lse[(b * H + h) * T + i],
                                          dotf(Dh, doi + r * ldq, a->out + qo + r * ldq), a->scale,
                                          p, ds);
                    }
                    for (int64_t j = nv > 0 ? nv : 0; j < n; j++) p[j] = ds[j] = 0.0f;
                }
                if (a->dv)
                    rt_cpu_gemm_tile(true, false, n, Dh, nq, 1.0f, S, ATT_GB, doi, ldq, 1.0f, dvb, Dh);
                if (a->dk)
                    rt_cpu_gemm_tile(true, false, n, Dh, nq, 1.0f, dP, ATT_GB, qi, ldq, 1.0f, dkb, Dh);
                if (a->dq)
                    rt_cpu_gemm_tile(false, false, nq, Dh, n, 1.0f, dP, ATT_GB, kj, kstride, 1.0f,
                                     a->dq + qo, ldq);
            }
        }
        for (int64_t j = 0; j < n; j++) {
            if (a->dk) axpyf(Dh, 1.0f, dkb + j * Dh, a->dk + kv0 + (j0 + j) * kstride);
            if (a->dv) axpyf(Dh, 1.0f, dvb + j * Dh, a->dv + kv0 + (j0 + j) * kstride);
        }
    }
}

/* Threads split (b, kv head) pairs: every write of a pair (dk, dv of that kv
 * head and dq of the query heads that read it) stays in one thread, so the
 * accumulation is race-free without atomics or scratch. */
void rt_cpu_attention_bwd(int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t Dh,
                          const float *q, const float *k, const float *v, const int32_t *seg,
                          int64_t window, const float *out, const float *lse, const float *dout, float *dq,
                          float *dk, float *dv) {
    if (!dq && !dk && !dv) return;
    const att_args a = {.B = B, .Tq = T, .Tk = T, .H = H, .Hkv = Hkv, .Dh = Dh,
                        .group = H / Hkv, .kstride = Hkv * Dh,
                        .scale = (float)(1.0 / sqrt((double)Dh)), .q = q, .k = k, .v = v,
                        .out = out, .lse = lse, .dout = dout, .seg = seg, .window = window,
                        .dq = dq, .dk = dk,
                        .dv = dv};
#pragma omp parallel for schedule(dynamic, 1) if (B * T * T * H * Dh >= ATT_OMP_MIN)
    for (int64_t pair = 0; pair < B * Hkv; pair++) {
        if (Dh <= ATT_DPACK)
            bwd_tiled_pair(&a, pair / Hkv, pair % Hkv);
        else
            bwd_gemm_pair(&a, pair / Hkv, pair % Hkv);
    }
}
