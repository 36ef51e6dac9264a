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
 * No scratch memory is needed in either direction.
 */
#include <math.h>

#include "kernels/cpu/cpu.h"

static inline double dot(int64_t n, const float *a, const float *b) {
    double s = 0.0;
    for (int64_t d = 0; d < n; d++) s += (double)a[d] * b[d];
    return s;
}

/* Is key j visible from query i (i already an absolute position)? */
static inline bool visible(const int32_t *seg_b, int64_t i, int64_t j) {
    return j <= i && (!seg_b || seg_b[j] == seg_b[i]);
}

/* Rows (b, i, h) are independent, so threads split them all. */
void rt_cpu_attention(int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t Hkv, int64_t Dh,
                      const float *q, const float *k, const float *v, const int32_t *seg,
                      float *out, float *lse) {
    const int64_t group = H / Hkv, off = Tk - Tq;
    const double scale = 1.0 / sqrt((double)Dh);
    if (Tq != Tk) seg = NULL; /* segments are defined for full sequences only */
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < B * Tq * H; row++) {
        const int64_t b = row / (Tq * H), i = (row / H) % Tq, h = row % H, kh = h / group;
        const float *qi = q + row * Dh;
        const int32_t *seg_b = seg ? seg + b * Tk : NULL;
        float *o = out + row * Dh;
        for (int64_t d = 0; d < Dh; d++) o[d] = 0.0f;
        double m = -INFINITY, l = 0.0;
        for (int64_t j = 0; j <= off + i; j++) {
            if (!visible(seg_b, off + i, j)) continue;
            const int64_t kv = ((b * Tk + j) * Hkv + kh) * Dh;
            const double s = scale * dot(Dh, qi, k + kv);
            double p = 1.0;
            if (s > m) { /* new max: rescale what was accumulated so far */
                const float c = (float)exp(m - s);
                for (int64_t d = 0; d < Dh; d++) o[d] *= c;
                l *= c;
                m = s;
            } else {
                p = exp(s - m);
            }
            l += p;
            for (int64_t d = 0; d < Dh; d++) o[d] += (float)p * v[kv + d];
        }
        /* j = i is always visible, so l >= 1. */
        const float inv = (float)(1.0 / l);
        for (int64_t d = 0; d < Dh; d++) o[d] *= inv;
        lse[(b * H + h) * Tq + i] = (float)(m + log(l));
    }
}

/* Threads split (b, kv head) pairs: every write of a pair (dk, dv of that kv
 * head and dq of the query heads that read it) stays in one thread, so the
 * accumulation is race-free without atomics. */
void rt_cpu_attention_bwd(int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t Dh,
                          const float *q, const float *k, const float *v, const int32_t *seg,
                          const float *out, const float *lse, const float *dout, float *dq,
                          float *dk, float *dv) {
    const int64_t group = H / Hkv;
    const double scale = 1.0 / sqrt((double)Dh);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t pair = 0; pair < B * Hkv; pair++) {
        const int64_t b = pair / Hkv, kh = pair % Hkv;
        const int32_t *seg_b = seg ? seg + b * T : NULL;
        for (int64_t h = kh * group; h < (kh + 1) * group; h++) {
            for (int64_t i = 0; i < T; i++) {
                const int64_t qo = ((b * T + i) * H + h) * Dh;
                const float *qi = q + qo, *doi = dout + qo;
                const double lse_i = lse[(b * H + h) * T + i];
                const double D = dot(Dh, doi, out + qo);
                for (int64_t j = 0; j <= i; j++) {
                    if (!visible(seg_b, i, j)) continue;
                    const int64_t kv = ((b * T + j) * Hkv + kh) * Dh;
                    const double p = exp(scale * dot(Dh, qi, k + kv) - lse_i);
                    if (dv)
                        for (int64_t d = 0; d < Dh; d++) dv[kv + d] += (float)(p * doi[d]);
                    if (!dq && !dk) continue;
                    const float ds = (float)(scale * p * (dot(Dh, doi, v + kv) - D));
                    if (dq)
                        for (int64_t d = 0; d < Dh; d++) dq[qo + d] += ds * k[kv + d];
                    if (dk)
                        for (int64_t d = 0; d < Dh; d++) dk[kv + d] += ds * qi[d];
                }
            }
        }
    }
}
