/* retort — CPU causal grouped-query attention, forward and backward.
 *
 * Layouts (kernels/kernels.h): q, out, dq [B,Tq,H,Dh]; k, v, dk, dv
 * [B,Tk,Hkv,Dh]; lse [B,H,Tq]; seg [B,T]. Query head h reads kv head
 * h / (H/Hkv). Query i sits at absolute position Tk-Tq+i and sees key j iff
 * j <= Tk-Tq+i and (no seg, or seg[j] == seg[i]).
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
 * Speed: both directions walk the keys of a query row in blocks of ATT_KB,
 * computing the block's scores into a small stack array first and then
 * exponentiating the whole block in one SIMD loop with fast_expf (libm's exp
 * is a function call per score, which was ~80% of a stories260K forward).
 * Scores, probabilities and the per-row dot products are f32 (Dh-term sums);
 * the softmax denominator of a row is summed per block in f32 and across
 * blocks in double, and lse = max + log(sum) in double.
 */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu.h"

/* Keys per block: the block's scores (and, in backward, dP) sit in stack
 * arrays of this size; large enough for long SIMD loops, small enough that
 * the causal diagonal block wastes little. */
#define ATT_KB 64

/* exp(x) in f32, written so that a loop of it vectorises (a call to libm's
 * expf stops gcc from vectorising). x = n ln2 + r with |r| <= ln2/2, the
 * reduction done with ln2 split in a high part with few bits and a low part
 * (Cody & Waite 1980) so that n*ln2_hi is exact; exp(r) by its Taylor series
 * to r^7 (truncation below 6e-9 relative); 2^n put straight into the exponent
 * bits. Within 2 ulp of exp() (1.02e-7 relative over [-87.3, 88.3]; see
 * bench/bench_kernels.c --check). x below -87.33654 (including -inf: masked
 * scores) gives exactly 0, x above 88.37626 saturates at 2.4e38, NaN stays NaN.
 *
 * The range handling works on the bit pattern on purpose: with float
 * compares gcc (-O2, -ftrapping-math) threads the clamped paths into
 * constants and then refuses to if-convert the trapping arithmetic, and the
 * loop stays scalar. As unsigned, a float below lo (negative, larger
 * magnitude, or -NaN) has bits above lo's; as signed, a float above hi has
 * bits above hi's; integer min/select never trap.
 *
 * Identical copies live in softmax.c and elementwise.c (kernels/cpu has no
 * shared private header); keep them in step. */
static inline float fast_expf(float x) {
    const uint32_t lo_bits = 0xC2AEAC4Fu; /* -87.33654f: exp is below FLT_MIN */
    const int32_t hi_bits = 0x42B0C0A5;   /* 88.37626f: n = 127, the largest exponent */
    union { float f; uint32_t u; int32_t i; } v = {.f = x};
    float keep = v.u > lo_bits ? 0.0f : 1.0f;               /* underflow: exactly 0 */
    keep = (v.u & 0x7FFFFFFFu) > 0x7F800000u ? NAN : keep;  /* NaN in, NaN out */
    v.u = v.u > lo_bits ? lo_bits : v.u;                    /* clamp below */
    v.i = v.i > hi_bits ? hi_bits : v.i;                    /* clamp above */
    const float xc = v.f;
    /* Adding 1.5*2^23 rounds x/ln2 to an integer n held in the low mantissa
     * bits of t (no float->int conversion needed, so SSE2 vectorises it). */
    const float shifter = 12582912.0f;
    const float t = xc * 1.44269504088896341f + shifter;
    const float n = t - shifter;
    float r = xc - n * 0.693359375f; /* ln2_hi: 9 significant bits */
    r = r - n * -2.12194440e-4f;     /* ln2_lo = ln2 - ln2_hi */
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union { float f; uint32_t u; } tb = {.f = t}, sc;
    sc.u = (tb.u - 0x4B400000u + 127u) << 23; /* n + 127 into the exponent field */
    return p * sc.f * keep;
}

static inline float dotf(int64_t n, const float *a, const float *b) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t d = 0; d < n; d++) s += a[d] * b[d];
    return s;
}

/* y[0..n) += a * x[0..n) */
static inline void axpyf(int64_t n, float a, const float *x, float *y) {
#pragma omp simd
    for (int64_t d = 0; d < n; d++) y[d] += a * x[d];
}

/* Rows (b, i, h) are independent, so threads split them all. Row cost grows
 * with i (causal), so rows are dealt in small interleaved chunks. */
void rt_cpu_attention(int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t Hkv, int64_t Dh,
                      const float *q, const float *k, const float *v, const int32_t *seg,
                      float *out, float *lse) {
    const int64_t group = H / Hkv, off = Tk - Tq, kstride = Hkv * Dh;
    const float scale = (float)(1.0 / sqrt((double)Dh));
    if (Tq != Tk) seg = NULL; /* segments are defined for full sequences only */
#pragma omp parallel for schedule(static, 8) if (B * Tq * Tk * H * Dh >= 65536)
    for (int64_t row = 0; row < B * Tq * H; row++) {
        const int64_t b = row / (Tq * H), i = (row / H) % Tq, h = row % H, kh = h / group;
        const int64_t last = off + i; /* keys 0..last are causally visible */
        const float *qi = q + row * Dh;
        const float *kb = k + (b * Tk * Hkv + kh) * Dh, *vb = v + (b * Tk * Hkv + kh) * Dh;
        const int32_t *seg_b = seg ? seg + b * Tk : NULL;
        float *o = out + row * Dh;
        memset(o, 0, (size_t)Dh * sizeof(float));
        float m = -INFINITY; /* running max of the scores seen so far */
        double l = 0.0;      /* running sum of exp(score - m) */
        for (int64_t j0 = 0; j0 <= last; j0 += ATT_KB) {
            const int64_t n = last + 1 - j0 < ATT_KB ? last + 1 - j0 : ATT_KB;
            float s[ATT_KB], bm = -INFINITY;
            for (int64_t jj = 0; jj < n; jj++) {
                s[jj] = scale * dotf(Dh, qi, kb + (j0 + jj) * kstride);
                if (seg_b && seg_b[j0 + jj] != seg_b[last]) s[jj] = -INFINITY;
                bm = s[jj] > bm ? s[jj] : bm;
            }
            if (bm == -INFINITY) continue; /* every key of the block is in another segment */
            if (bm > m) { /* new max: rescale what was accumulated so far */
                const float c = fast_expf(m - bm); /* 0 on the first visible block */
                for (int64_t d = 0; d < Dh; d++) o[d] *= c;
                l *= c;
                m = bm;
            }
            float bl = 0.0f;
#pragma omp simd reduction(+ : bl)
            for (int64_t jj = 0; jj < n; jj++) {
                s[jj] = fast_expf(s[jj] - m);
                bl += s[jj];
            }
            l += bl;
            for (int64_t jj = 0; jj < n; jj++) axpyf(Dh, s[jj], vb + (j0 + jj) * kstride, o);
        }
        /* j = i is always visible, so l >= 1. */
        const float inv = (float)(1.0 / l);
        for (int64_t d = 0; d < Dh; d++) o[d] *= inv;
        lse[(b * H + h) * Tq + i] = (float)((double)m + log(l));
    }
}

/* Threads split (b, kv head) pairs: every write of a pair (dk, dv of that kv
 * head and dq of the query heads that read it) stays in one thread, so the
 * accumulation is race-free without atomics or scratch. */
void rt_cpu_attention_bwd(int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t Dh,
                          const float *q, const float *k, const float *v, const int32_t *seg,
                          const float *out, const float *lse, const float *dout, float *dq,
                          float *dk, float *dv) {
    const int64_t group = H / Hkv, kstride = Hkv * Dh;
    const float scale = (float)(1.0 / sqrt((double)Dh));
#pragma omp parallel for schedule(dynamic, 1) if (B * T * T * H * Dh >= 65536)
    for (int64_t pair = 0; pair < B * Hkv; pair++) {
        const int64_t b = pair / Hkv, kh = pair % Hkv;
        const int32_t *seg_b = seg ? seg + b * T : NULL;
        const int64_t kv0 = (b * T * Hkv + kh) * Dh; /* key j of this pair at kv0 + j*kstride */
        for (int64_t h = kh * group; h < (kh + 1) * group; h++) {
            for (int64_t i = 0; i < T; i++) {
                const int64_t qo = ((b * T + i) * H + h) * Dh;
                const float *qi = q + qo, *doi = dout + qo;
                const float lse_i = lse[(b * H + h) * T + i];
                const float D = dotf(Dh, doi, out + qo);
                for (int64_t j0 = 0; j0 <= i; j0 += ATT_KB) {
                    const int64_t n = i + 1 - j0 < ATT_KB ? i + 1 - j0 : ATT_KB;
                    float p[ATT_KB], ds[ATT_KB];
                    for (int64_t jj = 0; jj < n; jj++) {
                        const int64_t kv = kv0 + (j0 + jj) * kstride;
                        p[jj] = scale * dotf(Dh, qi, k + kv);
                        if (seg_b && seg_b[j0 + jj] != seg_b[i]) p[jj] = -INFINITY;
                        ds[jj] = dotf(Dh, doi, v + kv); /* dP */
                    }
#pragma omp simd
                    for (int64_t jj = 0; jj < n; jj++) {
                        p[jj] = fast_expf(p[jj] - lse_i);
                        ds[jj] = scale * p[jj] * (ds[jj] - D);
                    }
                    for (int64_t jj = 0; jj < n; jj++) {
                        const int64_t kv = kv0 + (j0 + jj) * kstride;
                        if (p[jj] == 0.0f) continue; /* masked (or negligible): no gradient */
                        if (dv) axpyf(Dh, p[jj], doi, dv + kv);
                        if (dq) axpyf(Dh, ds[jj], k + kv, dq + qo);
                        if (dk) axpyf(Dh, ds[jj], qi, dk + kv);
                    }
                }
            }
        }
    }
}
