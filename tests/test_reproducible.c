/* Thread-count independence of the CPU kernels that reduce: the same inputs
 * give the same bits with 1, 2 and 3 OpenMP threads. This is what makes a
 * 2-rank run (1 thread per rank under mpirun's core binding) bitwise equal to
 * 1 process with gradient accumulation (tests/test_dist_finetune.c), on
 * whatever kernels OpenBLAS picks for the CPU. Shapes are those of
 * stories260K's LoRA layers and a few batch/edge cases. */
#include <omp.h>
#include <stdbool.h>

#include "autograd/tensor.h"
#include "kernels/kernels.h"
#include "tests/testutil.h"

static float *rnd(int64_t n, unsigned seed) {
    float *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)(seed >> 8) / (float)(1u << 24) - 0.5f;
    }
    return x;
}

/* Runs the GEMM with `threads` threads into a fresh copy of C0. */
static float *gemm_with(int threads, int64_t batch, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                        const float *A, const float *B, const float *C0, float beta, bool bcast) {
    const rt_kernels *k = rt_kernels_for(RT_CPU);
    int64_t nc = (bcast ? 1 : batch) * M * N;
    float *C = malloc((size_t)nc * sizeof *C);
    memcpy(C, C0, (size_t)nc * sizeof *C);
    omp_set_num_threads(threads);
    k->gemm(batch, ta, tb, M, N, K, 1.0f, A, M * K, B, K * N, beta, C, bcast ? 0 : M * N);
    return C;
}

static void check_gemm(int64_t batch, int64_t M, int64_t N, int64_t K, bool bcast) {
    float *A = rnd(batch * M * K, 1), *B = rnd(batch * K * N, 2), *C0 = rnd((bcast ? 1 : batch) * M * N, 3);
    int64_t nc = (bcast ? 1 : batch) * M * N;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int b1 = 0; b1 < 2; b1++) {
                float *c1 = gemm_with(1, batch, ta, tb, M, N, K, A, B, C0, (float)b1, bcast);
                for (int t = 2; t <= 3; t++) {
                    float *ct = gemm_with(t, batch, ta, tb, M, N, K, A, B, C0, (float)b1, bcast);
                    int64_t bad = 0;
                    for (int64_t i = 0; i < nc; i++) bad += memcmp(&c1[i], &ct[i], sizeof(float)) != 0;
                    CHECK(bad == 0, "gemm batch %lld%s [%lld x %lld x %lld] ta %d tb %d beta %d: "
                          "%lld of %lld elements differ between 1 and %d threads", (long long)batch,
                          bcast ? " (broadcast C)" : "", (long long)M, (long long)N, (long long)K, ta, tb,
                          b1, (long long)bad, (long long)nc, t);
                    free(ct);
                }
                free(c1);
            }
    free(A), free(B), free(C0);
}

static void check_rows(void) {
    const rt_kernels *k = rt_kernels_for(RT_CPU);
    const int64_t rows = 512, dim = 172, vocab = 64;
    float *x = rnd(rows * dim, 4), *w = rnd(dim, 5), *dy = rnd(rows * dim, 6), rstd[512];
    int32_t ids[512];
    for (int64_t i = 0; i < rows; i++) ids[i] = (int32_t)((i * 7) % vocab);
    float *ref_dw = NULL, *ref_de = NULL;
    for (int t = 1; t <= 3; t++) {
        omp_set_num_threads(t);
        float *y = malloc(rows * dim * sizeof *y), *dw = calloc(dim, sizeof *dw);
        float *de = calloc(vocab * dim, sizeof *de);
        k->rmsnorm(rows, dim, x, w, 1e-5f, y, rstd);
        k->rmsnorm_bwd(rows, dim, x, w, rstd, dy, NULL, dw);
        k->embedding_bwd(rows, dim, vocab, ids, dy, de);
        if (t == 1) {
            ref_dw = dw, ref_de = de;
        } else {
            CHECK(!memcmp(dw, ref_dw, dim * sizeof *dw), "rmsnorm dw differs between 1 and %d threads", t);
            CHECK(!memcmp(de, ref_de, vocab * dim * sizeof *de), "embedding dW differs between 1 and %d threads", t);
            free(dw), free(de);
        }
        free(y);
    }
    free(ref_dw), free(ref_de), free(x), free(w), free(dy);
}

int main(void) {
    const int64_t shapes[][3] = {{512, 64, 64}, {512, 8, 64}, {8, 64, 512}, {512, 172, 8},
                                 {172, 8, 512}, {512, 512, 64}, {64, 512, 512}, {512, 64, 172},
                                 {1000, 3, 700}, {3, 1000, 700}, {1, 2048, 1024}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        check_gemm(1, shapes[s][0], shapes[s][1], shapes[s][2], false);
    check_gemm(6, 96, 80, 64, false);
    check_gemm(5, 200, 64, 64, true);
    check_rows();
    return rt_test_summary();
}
