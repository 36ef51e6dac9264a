#include "train/model/lora.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/nf4.h"

rt_tensor *rt_lora_forward(rt_ctx *ctx, const rt_lora_linear *l, rt_tensor *x) {
    if (!l->lora_A) return rt_linear(ctx, x, l->weight, l->bias);
    rt_tensor *h = rt_linear(ctx, rt_dropout(ctx, x, l->dropout), l->lora_A, NULL);
    rt_tensor *y = rt_linear_lora(ctx, x, l->weight, h, l->lora_B, l->scaling);
    return l->bias ? rt_add(ctx, y, l->bias) : y;
}

float rt_lora_scaling(float lora_alpha, int r, bool use_rslora) {
    return use_rslora ? lora_alpha / sqrtf((float)r) : lora_alpha / (float)r;
}

/* splitmix64 (Steele et al. 2014): a small, well-mixed, seedable generator. */
static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void rt_lora_init(rt_lora_linear *l, uint64_t seed) {
    rt_tensor *A = l->lora_A, *B = l->lora_B;
    int64_t na = rt_numel(A), in = A->shape[1];
    /* kaiming_uniform_(a=sqrt(5)): gain = sqrt(2 / (1 + 5)), bound =
     * gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in) (PEFT's LoraLayer init). */
    float bound = 1.0f / sqrtf((float)in);
    float *host = malloc((size_t)na * sizeof *host);
    if (!host) return;
    uint64_t s = seed;
    for (int64_t i = 0; i < na; i++) {
        double u = (double)(splitmix64(&s) >> 11) * 0x1.0p-53; /* [0, 1) */
        host[i] = (float)((2.0 * u - 1.0) * bound);
    }
    const rt_kernels *k = rt_kernels_for(A->device);
    k->upload(A->data, host, (size_t)na * sizeof *host);
    k->zero(B->data, rt_nbytes(B));
    free(host);
}

rt_status rt_lora_merged_weight(const rt_lora_linear *l, float *out) {
    const rt_tensor *W = l->weight;
    int64_t rows = W->shape[0], cols = W->shape[1];
    const rt_kernels *k = rt_kernels_for(W->device);
    if (W->dtype == RT_NF4) {
        if (W->device != RT_CPU)
            return rt_errorf(RT_EINTERNAL, "merge: NF4 weights on %s", rt_device_name(W->device));
        rt_nf4_dequantize(W->data, W->nf4, out);
    } else {
        k->download(out, W->data, (size_t)rows * cols * sizeof(float));
    }
    if (!l->lora_A) return RT_OK;
    int64_t r = l->lora_A->shape[0];
    float *A = malloc((size_t)(r * cols + rows * r) * sizeof *A);
    if (!A) return rt_errorf(RT_EINTERNAL, "out of memory merging LoRA");
    float *B = A + r * cols;
    k->download(A, l->lora_A->data, (size_t)(r * cols) * sizeof *A);
    k->download(B, l->lora_B->data, (size_t)(rows * r) * sizeof *B);
    rt_kernels_cpu.gemm(1, false, false, rows, cols, r, l->scaling, B, 0, A, 0, 1.0f, out, 0);
    free(A);
    return RT_OK;
}
