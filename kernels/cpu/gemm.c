/* retort — CPU GEMM through OpenBLAS (cblas_sgemm, row-major).
 * Semantics: kernels/kernels.h.
 *
 * Threading: OpenMP owns the cores, OpenBLAS runs single-threaded inside each
 * OpenMP thread. (With the pthreads build of OpenBLAS its worker pool spins
 * after each call while the OpenMP pool spins between the other kernels'
 * parallel regions, and on a 2-core machine the two pools steal each other's
 * time: stories260K eval ran 2.3x faster with OPENBLAS_NUM_THREADS=1. retort
 * prefers the OpenMP build, cmake/FindOpenBLAS.cmake.) Each call splits its C matrices into
 * row (or column) panels, one single-threaded sgemm per OpenMP thread; with
 * several independent C matrices the batch is split instead. A broadcast C
 * (strideC 0) accumulates over the batch, so that batch loop stays serial and
 * in order. Every element of C is computed by exactly one sgemm over the full
 * K, so the result does not depend on the thread count beyond OpenBLAS's own
 * blocking of a panel. */
#include <cblas.h>
#include <omp.h>
#include <pthread.h>

#include "kernels/cpu/cpu.h"

/* Below this many multiply-adds (about 10 us on one core) a parallel region
 * costs more than it saves. */
#define GEMM_OMP_MIN (1 << 20)
/* Panel edges are multiples of this, which keeps OpenBLAS's micro-kernel
 * tiles (16 x 2..6 for AVX-512 sgemm) whole. */
#define GEMM_PANEL_ALIGN 16

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
/* Our OpenMP panels call OpenBLAS from every thread, so OpenBLAS itself must
 * not spawn more. The OpenMP build already runs single-threaded inside a
 * parallel region, and there openblas_set_num_threads would also shrink
 * OpenMP's own team to 1 for the whole process; only the pthreads build
 * (OPENBLAS_THREAD_MODEL 1) needs telling. */
static void blas_single_thread(void) {
    if (openblas_get_parallel() == 1) openblas_set_num_threads(1);
}

/* One C_i = alpha op(A_i) op(B_i) + beta C_i on the calling thread. */
static void sgemm1(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                   const float *A, blasint lda, const float *B, blasint ldb, float beta, float *C,
                   blasint ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* empty sum: BLAS may skip the beta scaling */
        for (int64_t r = 0; r < M; r++)
            for (int64_t c = 0; c < N; c++)
                C[r * ldc + c] = beta == 0.0f ? 0.0f : beta * C[r * ldc + c];
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (blasint)M, (blasint)N, (blasint)K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void rt_cpu_gemm(int64_t batch, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t strideA, const float *B, int64_t strideB, float beta,
                 float *C, int64_t strideC) {
    if (M <= 0 || N <= 0 || batch <= 0) return;
    pthread_once(&blas_once, blas_single_thread);
    /* Leading dimensions of the stored (row-major) matrices. */
    blasint lda = (blasint)(ta ? M : K), ldb = (blasint)(tb ? K : N), ldc = (blasint)N;
    if (lda < 1) lda = 1;
    if (ldb < 1) ldb = 1;
    const int nt = omp_get_max_threads();
    const int64_t work = M * N * (K > 1 ? K : 1);
    const bool big = work >= GEMM_OMP_MIN;

    /* Independent outputs: one whole product per thread. */
    if (strideC != 0 && batch >= nt && nt > 1) {
#pragma omp parallel for schedule(static) if (batch * work >= GEMM_OMP_MIN)
        for (int64_t i = 0; i < batch; i++)
            sgemm1(ta, tb, M, N, K, alpha, A + i * strideA, lda, B + i * strideB, ldb, beta,
                   C + i * strideC, ldc);
        return;
    }

    /* Otherwise split each product into panels of the longer side of C:
     * rows of op(A) (and C), or columns of op(B) (and C). */
    const bool by_rows = M >= N;
    const int64_t len = by_rows ? M : N;
    int64_t panel = (len + nt - 1) / nt;
    panel = (panel + GEMM_PANEL_ALIGN - 1) / GEMM_PANEL_ALIGN * GEMM_PANEL_ALIGN;
    const int64_t npanel = big && nt > 1 ? (len + panel - 1) / panel : 1;
    if (npanel == 1) panel = len;
    for (int64_t i = 0; i < batch; i++) {
        const float *Ai = A + i * strideA, *Bi = B + i * strideB;
        float *Ci = C + i * strideC;
#pragma omp parallel for schedule(static) if (npanel > 1)
        for (int64_t p = 0; p < npanel; p++) {
            const int64_t s0 = p * panel, n = s0 + panel < len ? panel : len - s0;
            if (by_rows) /* op(A) rows s0.. are stored rows (or, transposed, columns) */
                sgemm1(ta, tb, n, N, K, alpha, Ai + (ta ? s0 : s0 * lda), lda, Bi, ldb, beta,
                       Ci + s0 * ldc, ldc);
            else /* op(B) columns s0.. are stored columns (or, transposed, rows) */
                sgemm1(ta, tb, M, n, K, alpha, Ai, lda, Bi + (tb ? s0 * ldb : s0), ldb, beta,
                       Ci + s0, ldc);
        }
    }
}

void rt_cpu_gemm_tile(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                      float *C, int64_t ldc) {
    pthread_once(&blas_once, blas_single_thread);
    sgemm1(ta, tb, M, N, K, alpha, A, (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
}
