/* retort — the GEMM bound of one LoRA training step on this machine.
 *
 *   gemm_bound D F L H HKV V B T R      (prints one JSON line)
 *
 * Lists every matrix product of a LoRA step (r = R on all seven projections,
 * frozen base, frozen tied lm_head) at a Llama shape, batch B x seq T
 * (N = B*T rows), times retort's own GEMM (rt_cpu_gemm: OpenBLAS sgemm under
 * OpenMP panels, OMP_NUM_THREADS threads) at each distinct shape, and prints
 * the step's GEMM FLOPs and the time those GEMMs alone take at the measured
 * rates (the bound): a step can be no faster. Products (M x N x K, 2MNK
 * FLOPs each):
 *   per projection W [out, in]: forward N.out.in, N.r.in (lora_A), N.out.r
 *   (lora_B); backward N.in.out (dx), N.r.out (dh), out.r.N (dlora_B),
 *   r.in.N (dlora_A), N.in.r (dx through lora_A);
 *   lm_head [V, D]: N.V.D and N.D.V (dx); no dW (frozen);
 *   attention per (batch, layer, head), causal (x (T+1)/2T): forward QK^T
 *   (T.T.Dh) and PV (T.Dh.T); backward the recomputed QK^T, dP = dO V^T
 *   (T.T.Dh), dV, dQ, dK (T.Dh.T each), as FlashAttention-2 does.
 * The rate of each shape is the median of 5 timings of enough repeats to
 * fill ~0.1 s, so a shared machine's bursts of load move it less.
 *
 * Build: see bench/peer_bench.sh (links build/libretort_core.a).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cpu/cpu.h"

typedef struct { long long M, N, K; double count; } prod;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* GFLOP/s of C[M,N] = A[M,K] B[K,N] at this shape. */
static double rate(long long M, long long N, long long K) {
    float *A = rt_cpu_malloc((size_t)(M * K) * 4), *B = rt_cpu_malloc((size_t)(K * N) * 4),
          *C = rt_cpu_malloc((size_t)(M * N) * 4);
    for (long long i = 0; i < M * K; i++) A[i] = (float)(i % 7) * 0.01f;
    for (long long i = 0; i < K * N; i++) B[i] = (float)(i % 5) * 0.01f;
    rt_cpu_gemm(1, false, false, M, N, K, 1.0f, A, 0, B, 0, 0.0f, C, 0); /* warm */
    double t0 = now();
    rt_cpu_gemm(1, false, false, M, N, K, 1.0f, A, 0, B, 0, 0.0f, C, 0);
    double one = now() - t0;
    int reps = one > 0 ? (int)(0.1 / one) + 1 : 1;
    double s[5];
    for (int k = 0; k < 5; k++) {
        t0 = now();
        for (int i = 0; i < reps; i++)
            rt_cpu_gemm(1, false, false, M, N, K, 1.0f, A, 0, B, 0, 0.0f, C, 0);
        s[k] = (now() - t0) / reps;
    }
    qsort(s, 5, sizeof *s, cmp);
    rt_cpu_free(A);
    rt_cpu_free(B);
    rt_cpu_free(C);
    return 2.0 * (double)M * (double)N * (double)K / s[2] / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 10) {
        fprintf(stderr, "usage: gemm_bound D F L H HKV V B T R\n");
        return 2;
    }
    long long a[9];
    for (int i = 0; i < 9; i++) a[i] = atoll(argv[i + 1]);
    const long long D = a[0], F = a[1], L = a[2], H = a[3], HKV = a[4], V = a[5], B = a[6],
                    T = a[7], R = a[8], Dh = D / H, N = B * T;
    const long long proj[7][2] = {{H * Dh, D}, {HKV * Dh, D}, {HKV * Dh, D}, {D, H * Dh},
                                  {F, D},      {F, D},        {D, F}}; /* q k v o gate up down */
    prod p[64];
    int n = 0;
    for (int j = 0; j < 7; j++) {
        const long long out = proj[j][0], in = proj[j][1];
        const prod each[8] = {{N, out, in, 1}, {N, R, in, 1}, {N, out, R, 1}, {N, in, out, 1},
                              {N, R, out, 1},  {out, R, N, 1}, {R, in, N, 1}, {N, in, R, 1}};
        for (int i = 0; i < 8; i++) p[n] = each[i], p[n++].count = (double)L;
    }
    p[n++] = (prod){N, V, D, 1};
    p[n++] = (prod){N, D, V, 1};
    const double causal = (double)(T + 1) / (2.0 * (double)T), heads = (double)(B * L * H);
    p[n++] = (prod){T, T, Dh, 3 * heads * causal}; /* QK^T (fwd, recomputed), dP */
    p[n++] = (prod){T, Dh, T, 4 * heads * causal}; /* PV, dV, dQ, dK */
    double flops = 0, secs = 0, attn_flops = 0;
    for (int i = 0; i < n; i++) {
        double f = 2.0 * (double)p[i].M * (double)p[i].N * (double)p[i].K * p[i].count;
        double r = 0;
        for (int j = 0; j < i; j++) /* shapes repeat: measure each once */
            if (p[j].M == p[i].M && p[j].N == p[i].N && p[j].K == p[i].K) r = -1;
        static double rates[64];
        if (r == 0) r = rate(p[i].M, p[i].N, p[i].K);
        else
            for (int j = 0; j < i; j++)
                if (p[j].M == p[i].M && p[j].N == p[i].N && p[j].K == p[i].K) { r = rates[j]; break; }
        rates[i] = r;
        flops += f;
        secs += f / (r * 1e9);
        if (i >= n - 2) attn_flops += f;
    }
    printf("{\"gemm_gflop\":%.1f,\"attention_gflop\":%.1f,\"bound_s\":%.3f,\"gflops\":%.1f}\n",
           flops / 1e9, attn_flops / 1e9, secs, flops / 1e9 / secs);
    return 0;
}
