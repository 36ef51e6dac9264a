/* retort — CPU kernels of the transformer-specific ops: embedding lookup,
 * RMSNorm and rotary position embedding. Semantics: kernels/kernels.h.
 * Parallel over rows; gradient reductions over rows (dW of the embedding,
 * dw of RMSNorm) are parallel over columns instead, so no two threads add
 * into the same element and results do not depend on the thread count. */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu.h"

#define TF_OMP_MIN 16384

void rt_cpu_embedding(int64_t n, int64_t dim, int64_t V, const int32_t *ids, const float *W,
                      float *out) {
#pragma omp parallel for schedule(static) if (n * dim >= TF_OMP_MIN)
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] >= 0 && ids[i] < V)
            memcpy(out + i * dim, W + (int64_t)ids[i] * dim, (size_t)dim * sizeof(float));
        else
            for (int64_t c = 0; c < dim; c++) out[i * dim + c] = NAN;
    }
}

#define EMB_COL_BLOCK 64

void rt_cpu_embedding_bwd(int64_t n, int64_t dim, int64_t V, const int32_t *ids, const float *dout,
                          float *dW) {
    /* A token id can repeat, so split the work by columns, not by rows. */
    int64_t nblk = (dim + EMB_COL_BLOCK - 1) / EMB_COL_BLOCK;
#pragma omp parallel for schedule(static) if (n * dim >= TF_OMP_MIN)
    for (int64_t blk = 0; blk < nblk; blk++) {
        int64_t c0 = blk * EMB_COL_BLOCK, c1 = c0 + EMB_COL_BLOCK < dim ? c0 + EMB_COL_BLOCK : dim;
        for (int64_t i = 0; i < n; i++) {
            if (ids[i] < 0 || ids[i] >= V) continue;
            float *dst = dW + (int64_t)ids[i] * dim;
            const float *src = dout + i * dim;
            for (int64_t c = c0; c < c1; c++) dst[c] += src[c];
        }
    }
}

/* y = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps): HF LlamaRMSNorm
 * (normalise first, then multiply by the weight), mean accumulated in double.
 * The loops carry `omp simd` because gcc's -O2 cost model leaves loops of
 * unknown length scalar. */
void rt_cpu_rmsnorm(int64_t rows, int64_t dim, const float *x, const float *w, float eps, float *y,
                    float *rstd) {
#pragma omp parallel for schedule(static) if (rows * dim >= TF_OMP_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim;
        float *yr = y + r * dim;
        double ss = 0;
#pragma omp simd reduction(+ : ss)
        for (int64_t c = 0; c < dim; c++) ss += (double)xr[c] * xr[c];
        float rs = 1.0f / sqrtf((float)(ss / (double)dim) + eps);
#pragma omp simd
        for (int64_t c = 0; c < dim; c++) yr[c] = (xr[c] * rs) * w[c];
        if (rstd) rstd[r] = rs;
    }
}

/* Columns per block of the dw reduction: each thread owns whole columns
 * (no two threads add into the same dw element, so the result does not
 * depend on the thread count) and reads the rows contiguously. */
#define RMS_COL_BLOCK 32

/* With n = x*rstd: dx = rstd * (w*dy - n * mean(w*dy*n)), dw = sum_rows dy*n. */
void rt_cpu_rmsnorm_bwd(int64_t rows, int64_t dim, const float *x, const float *w,
                        const float *rstd, const float *dy, float *dx, float *dw) {
    if (dx) {
#pragma omp parallel for schedule(static) if (rows * dim >= TF_OMP_MIN)
        for (int64_t r = 0; r < rows; r++) {
            const float *xr = x + r * dim, *gr = dy + r * dim;
            float rs = rstd[r];
            double dot = 0;
#pragma omp simd reduction(+ : dot)
            for (int64_t c = 0; c < dim; c++) dot += (double)(gr[c] * w[c]) * xr[c];
            float m = (float)(dot / (double)dim) * rs * rs;
            float *dr = dx + r * dim;
#pragma omp simd
            for (int64_t c = 0; c < dim; c++) dr[c] += rs * (gr[c] * w[c] - xr[c] * m);
        }
    }
    if (dw) {
        const int64_t nblk = (dim + RMS_COL_BLOCK - 1) / RMS_COL_BLOCK;
#pragma omp parallel for schedule(static) if (rows * dim >= TF_OMP_MIN)
        for (int64_t blk = 0; blk < nblk; blk++) {
            const int64_t c0 = blk * RMS_COL_BLOCK;
            const int64_t nc = c0 + RMS_COL_BLOCK < dim ? RMS_COL_BLOCK : dim - c0;
            double acc[RMS_COL_BLOCK] = {0};
            for (int64_t r = 0; r < rows; r++) {
                const float *gr = dy + r * dim + c0, *xr = x + r * dim + c0;
                const float rs = rstd[r];
#pragma omp simd
                for (int64_t c = 0; c < nc; c++) acc[c] += (double)(gr[c] * xr[c] * rs);
            }
            for (int64_t c = 0; c < nc; c++) dw[c0 + c] += (float)acc[c];
        }
    }
}

/* Rotary embedding (Su et al. 2021, RoFormer). The angle is computed as in
 * llama2.c's run.c and HF's LlamaRotaryEmbedding (f32 inverse frequency
 * 1/theta^(2i/Dh), times the position in f32). RT_ROPE_HF rotates the
 * pairs (i, i+Dh/2) (HF rotate_half); RT_ROPE_INTERLEAVED the pairs
 * (2i, 2i+1) (llama2.c, Meta's complex-number form). */
void rt_cpu_rope(int64_t B, int64_t T, int64_t H, int64_t Dh, const float *x, const int32_t *pos,
                 float theta, int layout, bool inverse, float *out) {
    int64_t half = Dh / 2, bt = B * T;
#pragma omp parallel for schedule(static) if (bt * H * Dh >= TF_OMP_MIN)
    for (int64_t t = 0; t < bt; t++) {
        float p = (float)pos[t];
        for (int64_t i = 0; i < half; i++) {
            float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)Dh);
            float ang = p * inv_freq;
            float c = cosf(ang), s = sinf(ang);
            if (inverse) s = -s;
            int64_t i0 = layout == RT_ROPE_INTERLEAVED ? 2 * i : i;
            int64_t i1 = layout == RT_ROPE_INTERLEAVED ? 2 * i + 1 : i + half;
            for (int64_t h = 0; h < H; h++) {
                int64_t base = (t * H + h) * Dh;
                float a = x[base + i0], b = x[base + i1]; /* read both: out may alias x */
                out[base + i0] = a * c - b * s;
                out[base + i1] = b * c + a * s;
            }
        }
        /* odd Dh: the last element has no partner and passes through */
        if (Dh % 2 && out != x)
            for (int64_t h = 0; h < H; h++) out[(t * H + h) * Dh + Dh - 1] = x[(t * H + h) * Dh + Dh - 1];
    }
}
