/* retort — CPU kernels (OpenBLAS GEMM, OpenMP across rows elsewhere).
 * Signatures and semantics: see the matching entries of kernels/kernels.h. */
#ifndef RT_KERNELS_CPU_H
#define RT_KERNELS_CPU_H

#include "kernels/kernels.h"

/* memory.c */
void *rt_cpu_malloc(size_t bytes);
void rt_cpu_free(void *p);
void rt_cpu_zero(void *p, size_t bytes);
void rt_cpu_copy(void *dst, const void *src, size_t bytes);
void rt_cpu_convert(int64_t n, const void *src, int src_dtype, void *dst, int dst_dtype);
double rt_cpu_sumsq(int64_t n, const float *x);
bool rt_cpu_all_finite(int64_t n, const float *x);
void rt_cpu_prefault(void *p, size_t bytes);

/* elementwise.c */
void rt_cpu_add(int64_t n, int64_t nb, const float *a, const float *b, float *out);
void rt_cpu_mul(int64_t n, int64_t nb, const float *a, const float *b, float *out);
void rt_cpu_scale(int64_t n, float alpha, const float *x, float *out);
void rt_cpu_axpy(int64_t n, float alpha, const float *x, float *y);
void rt_cpu_sum_rows(int64_t rows, int64_t cols, const float *x, const float *y, float *out);
void rt_cpu_mul_acc(int64_t n, int64_t nb, const float *g, const float *b, float *out);
void rt_cpu_silu(int64_t n, const float *x, float *y);
void rt_cpu_silu_bwd(int64_t n, const float *x, const float *dy, float *dx);
void rt_cpu_swiglu(int64_t n, const float *gate, const float *up, float *y);
void rt_cpu_swiglu_bwd(int64_t n, const float *gate, const float *up, const float *dy,
                       float *dgate, float *dup);
void rt_cpu_swiglu_bwd_set(int64_t n, const float *gate, const float *up, const float *dy,
                           float *dgate, float *dup);
void rt_cpu_dropout(int64_t n, float p, uint64_t seed, const float *x, float *y);
void rt_cpu_permute(int ndim, const int64_t *shape, const int *perm, const float *x, float *out);

/* gemm.c */
void rt_cpu_gemm(int64_t batch, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t strideA, const float *B, int64_t strideB, float beta,
                 float *C, int64_t strideC);
/* One row-major C = alpha op(A) op(B) + beta C with explicit leading
 * dimensions, on the calling thread only (inside an OpenMP region, the
 * OpenMP build of OpenBLAS runs single-threaded): attention's tiles. */
void rt_cpu_gemm_tile(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                      float *C, int64_t ldc);

/* transformer.c */
void rt_cpu_embedding(int64_t n, int64_t dim, int64_t V, const int32_t *ids, const float *W, float *out);
void rt_cpu_embedding_bwd(int64_t n, int64_t dim, int64_t V, const int32_t *ids, const float *dout, float *dW);
void rt_cpu_rmsnorm(int64_t rows, int64_t dim, const float *x, const float *w, float eps, float *y,
                    float *rstd);
void rt_cpu_rmsnorm_bwd(int64_t rows, int64_t dim, const float *x, const float *w,
                        const float *rstd, const float *dy, float *dx, float *dw);
void rt_cpu_rope(int64_t B, int64_t T, int64_t H, int64_t Dh, const float *x, const int32_t *pos,
                 float theta, int layout, bool inverse, float *out);

/* softmax.c */
void rt_cpu_softmax(int64_t rows, int64_t cols, const float *x, float *y);
void rt_cpu_softmax_bwd(int64_t rows, int64_t cols, const float *y, const float *dy, float *dx);
void rt_cpu_log_softmax(int64_t rows, int64_t cols, const float *x, float *y);
void rt_cpu_log_softmax_bwd(int64_t rows, int64_t cols, const float *y, const float *dy, float *dx);
void rt_cpu_cross_entropy(int64_t N, int64_t V, const float *logits, const int32_t *labels,
                          int32_t ignore_index, float *nll, float *lse);
void rt_cpu_cross_entropy_bwd(int64_t N, int64_t V, const float *logits, const int32_t *labels,
                              int32_t ignore_index, const float *lse, float g, float *dlogits);
void rt_cpu_kl_div(int64_t N, int64_t V, const float *s, const float *t, float T,
                   const uint8_t *mask, float *kl);
void rt_cpu_kl_div_bwd(int64_t N, int64_t V, const float *s, const float *t, float T,
                       const uint8_t *mask, float g, float *ds);

/* kd.c */
void rt_cpu_kd_loss(int64_t N, int64_t V, const float *s, const float *t, float T, int kind,
                    float beta, const uint8_t *mask, float *loss);
void rt_cpu_kd_loss_bwd(int64_t N, int64_t V, const float *s, const float *t, float T, int kind,
                        float beta, const uint8_t *mask, float g, float *ds);
void rt_cpu_kd_topk_loss(int64_t N, int64_t V, int64_t K, const float *s, const int32_t *ids,
                         const float *logp, float T, int kind, float beta, const uint8_t *mask,
                         float *loss);
void rt_cpu_kd_topk_loss_bwd(int64_t N, int64_t V, int64_t K, const float *s, const int32_t *ids,
                             const float *logp, float T, int kind, float beta,
                             const uint8_t *mask, float g, float *ds);
void rt_cpu_kd_topk(int64_t N, int64_t V, int64_t K, const float *t, float T, int32_t *ids,
                    float *logp);

/* geglu.c */
void rt_cpu_geglu(int64_t n, const float *gate, const float *up, float *y);
void rt_cpu_geglu_bwd(int64_t n, const float *gate, const float *up, const float *dy,
                      float *dgate, float *dup);

/* attention.c */
void rt_cpu_attention(int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t Hkv, int64_t Dh,
                      const float *q, const float *k, const float *v, const int32_t *seg,
                      int64_t window, float *out, float *lse);
void rt_cpu_attention_bwd(int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t Dh,
                          const float *q, const float *k, const float *v, const int32_t *seg,
                          int64_t window, const float *out, const float *lse, const float *dout, float *dq,
                          float *dk, float *dv);

/* nf4.c (kernels/nf4.h) */
void rt_cpu_nf4_dequant_rows(const uint8_t *packed, const struct rt_nf4_state *st, int64_t cols,
                             int64_t r0, int64_t r1, float *out);

/* fused.c */
void rt_cpu_add_rmsnorm(int64_t rows, int64_t dim, const float *x, const float *d, const float *w,
                        float eps, float *s, float *y, float *rstd);
void rt_cpu_add_rmsnorm_bwd(int64_t rows, int64_t dim, const float *s, const float *w,
                            const float *rstd, const float *dy, const float *ds, float *dx,
                            bool set_dx, float *dd, bool set_dd);
void rt_cpu_rope_qk(int64_t B, int64_t T, int64_t Hq, int64_t Hk, int64_t Dh, const float *q,
                    const float *k, const int32_t *pos, float theta, int layout, bool inverse,
                    bool set, float *qo, float *ko);

#endif
