/* retort — CPU kernels of the fused elementwise chains (semantics:
 * kernels/kernels.h, "fused chains"). Each replaces two or three kernels
 * that were separate OpenMP regions, each a full pass over memory: one
 * region, one pass per row. The arithmetic is the unfused kernels' own, in
 * the same order (rt_cpu_rmsnorm/_bwd, rt_cpu_rope, rt_cpu_add), so results
 * are bit-identical to the separate ops. Outputs flagged "set" are
 * overwritten (their buffers may be uninitialised: no memset first), the
 * others accumulated. */
#include <math.h>

#include "kernels/cpu/cpu.h"

#define FUSED_OMP_MIN 16384

void rt_cpu_add_rmsnorm(int64_t rows, int64_t dim, const float *x, const float *d, const float *w,
                        float eps, float *s, float *y, float *rstd) {
#pragma omp parallel for schedule(static) if (rows * dim >= FUSED_OMP_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim, *dr = d + r * dim;
        float *sr = s + r * dim, *yr = y + r * dim;
        double ss = 0;
#pragma omp simd reduction(+ : ss)
        for (int64_t c = 0; c < dim; c++) {
            sr[c] = xr[c] + dr[c];
            ss += (double)sr[c] * sr[c];
        }
        float rs = 1.0f / sqrtf((float)(ss / (double)dim) + eps);
#pragma omp simd
        for (int64_t c = 0; c < dim; c++) yr[c] = (sr[c] * rs) * w[c];
        if (rstd) rstd[r] = rs;
    }
}

/* g = ds + rstd * (w*dy - s * mean(w*dy*s) * rstd^2) per row (RMSNorm's
 * input gradient plus the residual stream's own), then dx, dd from g. */
void rt_cpu_add_rmsnorm_bwd(int64_t rows, int64_t dim, const float *s, const float *w,
                            const float *rstd, const float *dy, const float *ds, float *dx,
                            bool set_dx, float *dd, bool set_dd) {
    if (!dx && !dd) return;
#pragma omp parallel for schedule(static) if (rows * dim >= FUSED_OMP_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *sr = s + r * dim, *gr = dy + r * dim, *dsr = ds ? ds + r * dim : NULL;
        float rs = rstd[r];
        double dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int64_t c = 0; c < dim; c++) dot += (double)(gr[c] * w[c]) * sr[c];
        float m = (float)(dot / (double)dim) * rs * rs;
        float *xr = dx ? dx + r * dim : NULL, *er = dd ? dd + r * dim : NULL;
        for (int64_t c = 0; c < dim; c++) {
            float g = (dsr ? dsr[c] : 0.0f) + rs * (gr[c] * w[c] - sr[c] * m);
            if (xr) xr[c] = set_dx ? g : xr[c] + g;
            if (er) er[c] = set_dd ? g : er[c] + g;
        }
    }
}

/* Largest head dim whose angles fit the per-thread table (Dh/2 entries). */
#define ROPE_MAX_HALF 512

void rt_cpu_rope_qk(int64_t B, int64_t T, int64_t Hq, int64_t Hk, int64_t Dh, const float *q,
                    const float *k, const int32_t *pos, float theta, int layout, bool inverse,
                    bool set, float *qo, float *ko) {
    const int64_t half = Dh / 2, bt = B * T;
    float inv_freq[ROPE_MAX_HALF];
    for (int64_t i = 0; i < half && i < ROPE_MAX_HALF; i++)
        inv_freq[i] = 1.0f / powf(theta, (float)(2 * i) / (float)Dh);
#pragma omp parallel for schedule(static) if (bt * (Hq + Hk) * Dh >= FUSED_OMP_MIN)
    for (int64_t t = 0; t < bt; t++) {
        float cs[ROPE_MAX_HALF], sn[ROPE_MAX_HALF];
        const float p = (float)pos[t];
        for (int64_t i = 0; i < half; i++) {
            float ang = p * inv_freq[i];
            cs[i] = cosf(ang);
            sn[i] = inverse ? -sinf(ang) : sinf(ang);
        }
        for (int which = 0; which < 2; which++) {
            const int64_t H = which ? Hk : Hq;
            const float *x = which ? k : q;
            float *out = which ? ko : qo;
            if (!x || !out) continue;
            for (int64_t h = 0; h < H; h++) {
                const float *xv = x + (t * H + h) * Dh;
                float *ov = out + (t * H + h) * Dh;
                for (int64_t i = 0; i < half; i++) {
                    int64_t i0 = layout == RT_ROPE_INTERLEAVED ? 2 * i : i;
                    int64_t i1 = layout == RT_ROPE_INTERLEAVED ? 2 * i + 1 : i + half;
                    float a = xv[i0], b = xv[i1];
                    float r0 = a * cs[i] - b * sn[i], r1 = b * cs[i] + a * sn[i];
                    ov[i0] = set ? r0 : ov[i0] + r0;
                    ov[i1] = set ? r1 : ov[i1] + r1;
                }
            }
        }
    }
}
