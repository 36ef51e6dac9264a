/* retort — CPU GEMM through OpenBLAS (cblas_sgemm, row-major).
 * Semantics: kernels/kernels.h. OpenBLAS threads each call itself, so the
 * batch loop stays serial (and a broadcast C, stride 0, accumulates in a
 * defined order). */
#include <cblas.h>

#include "kernels/cpu/cpu.h"

void rt_cpu_gemm(int64_t batch, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t strideA, const float *B, int64_t strideB, float beta,
                 float *C, int64_t strideC) {
    if (M <= 0 || N <= 0) return;
    /* Leading dimensions of the stored (row-major) matrices. */
    blasint lda = (blasint)(ta ? M : K), ldb = (blasint)(tb ? K : N), ldc = (blasint)N;
    if (lda < 1) lda = 1;
    if (ldb < 1) ldb = 1;
    for (int64_t i = 0; i < batch; i++) {
        float *Ci = C + i * strideC;
        if (K <= 0) { /* empty sum: BLAS may skip the beta scaling */
            for (int64_t j = 0; j < M * N; j++) Ci[j] = beta == 0.0f ? 0.0f : beta * Ci[j];
            continue;
        }
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    (blasint)M, (blasint)N, (blasint)K, alpha, A + i * strideA, lda,
                    B + i * strideB, ldb, beta, Ci, ldc);
    }
}
