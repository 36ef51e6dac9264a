/* retort — NF4 quantization on the CPU, bit-compatible with bitsandbytes.
 * Format and sources: kernels/nf4.h. */
#include "kernels/nf4.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Below this many blocks an OpenMP region costs more than it saves. */
#define NF4_OMP_MIN_BLOCKS 64

const float rt_nf4_code[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

/* Decision thresholds of bitsandbytes' dQuantizeNF4 (csrc/kernels.cu): the
 * midpoints of adjacent codes, (code[i] + code[i+1]) / 2 in double, rounded
 * to fp32. Its tree is a binary search with strict `>`, so the index equals
 * the number of thresholds x exceeds; that count also maps NaN to 0 exactly
 * as the tree does (every comparison false). */
static const float nf4_mid[15] = {
    -0.8480964004993439f,  -0.6106329262256622f,  -0.4599952697753906f,
    -0.33967943489551544f, -0.23460740596055984f, -0.13791173323988914f,
    -0.045525018125772476f, 0.03979014977812767f,  0.1202552504837513f,
    0.2035212516784668f,   0.2920137718319893f,   0.3893125355243683f,
    0.5016634166240692f,   0.6427869200706482f,   0.8614784181118011f,
};

static inline unsigned nf4_index(float x) {
    unsigned q = 0;
    for (int t = 0; t < 15; t++) q += x > nf4_mid[t];
    return q;
}

/* torch.linspace(start, end, steps) for float32 on the CPU (ATen
 * native/cpu/RangeFactoriesKernel.cpp): step = (end - start) / (steps - 1)
 * in fp32; the first half is start + step*i, the second half
 * end - step*(steps-1-i). torch's CPU kernels are compiled with FMA
 * contraction, so each is one fused multiply-add, hence fmaf: the resulting
 * map equals the table dumped from bitsandbytes on x86 in every entry, while
 * a separate multiply and add leaves 21 of the 127 positive entries (and
 * their mirrors) one ulp off. */
static void torch_linspace_f32(float start, float end, int steps, float *out) {
    float step = (end - start) / (float)(steps - 1);
    int half = steps / 2;
    for (int i = 0; i < steps; i++)
        out[i] = i < half ? fmaf(step, (float)i, start)
                          : fmaf(-step, (float)(steps - 1 - i), end);
}

void rt_bnb_dynamic_map_signed(float code[256]) {
    /* create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
     * for exponent i = 0..6, 2^i + 1 boundaries linspace(0.1, 1), their
     * pairwise means (fp32, (a + b) / 2), scaled by 10^(i-6) (a Python float
     * that torch rounds to fp32 before the fp32 multiply), each with its
     * negation; plus 0 and 1.0; sorted. 127 + 127 + 2 = 256 values, no
     * padding zeros (additional_items = 0 for these arguments). */
    float pos[127];
    int n = 0;
    for (int i = 0; i < 7; i++) {
        int steps = (1 << i) + 1;
        float bounds[65];
        torch_linspace_f32(0.1f, 1.0f, steps, bounds);
        float scale = (float)pow(10.0, (double)(i - 6));
        for (int k = 0; k < steps - 1; k++) {
            float mean = (bounds[k] + bounds[k + 1]) / 2.0f;
            pos[n++] = scale * mean;
        }
    }
    /* Already ascending (each decade lies above the previous one); an
     * insertion sort keeps this independent of that observation. */
    for (int i = 1; i < n; i++) {
        float v = pos[i];
        int j = i - 1;
        while (j >= 0 && pos[j] > v) { pos[j + 1] = pos[j]; j--; }
        pos[j + 1] = v;
    }
    for (int i = 0; i < 127; i++) {
        code[128 + i] = pos[i];
        code[126 - i] = -pos[i];
    }
    code[127] = 0.0f;
    code[255] = 1.0f;
}

/* A rewrite of bitsandbytes' dQuantize<STOCHASTIC=0> (csrc/kernels.cu). The
 * descent only ever compares odd indices, so it ends on an even pivot with
 * its odd neighbours as the bracket; the midpoint test then makes exact ties
 * go to the even index. The two bracket fix-ups below are no-ops for a map
 * with code[255] = 1 (the bracket starts at (-1, 1) and a bracket still at
 * index 0 means the pivot is 0 too) but are kept to mirror the kernel. */
uint8_t rt_bnb_dynamic_index(const float code[256], float x) {
    int pivot = 127, upper_pivot = 255, lower_pivot = 0;
    float lower = -1.0f, upper = 1.0f;
    float val = code[pivot];
    for (int i = 64; i > 0; i >>= 1) {
        if (x > val) {
            lower_pivot = pivot;
            lower = val;
            pivot += i;
        } else {
            upper_pivot = pivot;
            upper = val;
            pivot -= i;
        }
        val = code[pivot];
    }
    if (upper_pivot == 255) upper = code[255];
    if (lower_pivot == 0) lower = code[0];
    if (x > val) {
        float midpoint = (upper + val) * 0.5f;
        return (uint8_t)(x > midpoint ? upper_pivot : pivot);
    }
    float midpoint = (lower + val) * 0.5f;
    return (uint8_t)(x < midpoint ? lower_pivot : pivot);
}

/* fl(fl(a * b) + c): torch rounds the multiply (dequantize_blockwise) and
 * the offset add separately. GCC's default -ffp-contract=fast would fuse
 * them into one FMA on targets that have it (-march=native), even across
 * statements, so it is switched off here; clang only fuses within one
 * expression by default. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("fp-contract=off")))
#endif
static float mul_then_add(float a, float b, float c) {
    float p = a * b;
    return p + c;
}

/* The fp32 scale of block b. */
static inline float block_scale(const rt_nf4_state *st, int64_t b) {
    if (!st->double_quant) return st->absmax[b];
    return mul_then_add(st->nested_code[st->absmax_q[b]],
                        st->nested_absmax[b / st->nested_blocksize], st->nested_offset);
}

static rt_status quantize_scales(rt_nf4_state *st, float *absmax) {
    int64_t nb = st->n_blocks;
    int nbs = 256;
    int64_t n_nested = (nb + nbs - 1) / nbs;
    st->nested_blocksize = nbs;
    st->absmax_q = malloc((size_t)nb);
    st->nested_absmax = malloc((size_t)n_nested * sizeof(float));
    if (!st->absmax_q || !st->nested_absmax)
        return rt_errorf(RT_EINTERNAL, "nf4: out of memory for %lld double-quantized scales",
                         (long long)nb);
    rt_bnb_dynamic_map_signed(st->nested_code);

    double sum = 0.0;
    for (int64_t b = 0; b < nb; b++) sum += absmax[b];
    float offset = (float)(sum / (double)nb);
    st->nested_offset = offset;

    for (int64_t j = 0; j < n_nested; j++) {
        int64_t b0 = j * nbs, b1 = b0 + nbs < nb ? b0 + nbs : nb;
        float amax = 0.0f;
        for (int64_t b = b0; b < b1; b++) amax = fmaxf(amax, fabsf(absmax[b] - offset));
        st->nested_absmax[j] = amax;
        /* bitsandbytes multiplies by the fp32 reciprocal; amax = 0 gives inf
         * and NaN products, which rt_bnb_dynamic_index sends to index 0, like CUDA. */
        float inv = 1.0f / amax;
        for (int64_t b = b0; b < b1; b++)
            st->absmax_q[b] = rt_bnb_dynamic_index(st->nested_code, (absmax[b] - offset) * inv);
    }
    return RT_OK;
}

rt_status rt_nf4_quantize(const float *w, int64_t n, int blocksize, bool double_quant,
                          uint8_t *packed, rt_nf4_state *st) {
    if (!st) return rt_errorf(RT_EINTERNAL, "nf4 quantize: NULL state");
    memset(st, 0, sizeof *st);
    if (!w || !packed) return rt_errorf(RT_EINTERNAL, "nf4 quantize: NULL weight or output");
    if (n < 1) return rt_errorf(RT_EINPUT, "nf4 quantize: tensor has %lld elements (need >= 1)",
                                (long long)n);
    if (blocksize < 32 || blocksize > 4096 || (blocksize & (blocksize - 1)) != 0)
        return rt_errorf(RT_EINPUT,
                         "nf4 quantize: blocksize %d is not a power of two in 32..4096", blocksize);

    int64_t nb = (n + blocksize - 1) / blocksize;
    float *absmax = malloc((size_t)nb * sizeof(float));
    if (!absmax)
        return rt_errorf(RT_EINTERNAL, "nf4: out of memory for %lld block scales", (long long)nb);

    #pragma omp parallel for schedule(static) if (nb >= NF4_OMP_MIN_BLOCKS)
    for (int64_t b = 0; b < nb; b++) {
        int64_t i0 = b * blocksize, i1 = i0 + blocksize < n ? i0 + blocksize : n;
        float amax = 0.0f;
        for (int64_t i = i0; i < i1; i++) amax = fmaxf(amax, fabsf(w[i]));
        absmax[b] = amax;
        /* IEEE on purpose: amax = 0 gives inv = inf, 0 * inf = NaN, index 0
         * (bitsandbytes' zero-block behaviour, see nf4.h). */
        float inv = 1.0f / amax;
        int64_t i = i0;
        for (; i + 1 < i1; i += 2)
            packed[i >> 1] = (uint8_t)(nf4_index(w[i] * inv) << 4 | nf4_index(w[i + 1] * inv));
        if (i < i1) /* odd n: the kernel pairs the last element with a loaded 0.0 */
            packed[i >> 1] = (uint8_t)(nf4_index(w[i] * inv) << 4 | nf4_index(0.0f * inv));
    }

    st->n = n;
    st->blocksize = blocksize;
    st->n_blocks = nb;
    st->double_quant = double_quant;
    memcpy(st->code, rt_nf4_code, sizeof st->code);
    if (!double_quant) {
        st->absmax = absmax;
        return RT_OK;
    }
    rt_status s = quantize_scales(st, absmax);
    free(absmax);
    if (s != RT_OK) rt_nf4_state_free(st);
    return s;
}

/* Elements [e0, e1) into out[0 .. e1-e0). Blocks have an even size, so a
 * byte never straddles two blocks; only the range ends can split a byte. */
static void dequant_range(const uint8_t *packed, const rt_nf4_state *st, int64_t e0, int64_t e1,
                          float *out) {
    if (e1 <= e0) return;
    /* byte -> (high code, low code): one load per two outputs */
    float pair[256][2];
    for (int v = 0; v < 256; v++) {
        pair[v][0] = st->code[v >> 4];
        pair[v][1] = st->code[v & 15];
    }
    int64_t bs = st->blocksize;
    int64_t b0 = e0 / bs, b1 = (e1 - 1) / bs + 1;

    #pragma omp parallel for schedule(static) if (b1 - b0 >= NF4_OMP_MIN_BLOCKS)
    for (int64_t b = b0; b < b1; b++) {
        float s = block_scale(st, b);
        int64_t lo = b * bs > e0 ? b * bs : e0;
        int64_t hi = b * bs + bs < e1 ? b * bs + bs : e1;
        int64_t i = lo;
        if (i & 1) {
            out[i - e0] = pair[packed[i >> 1]][1] * s;
            i++;
        }
        for (; i + 1 < hi; i += 2) {
            const float *p = pair[packed[i >> 1]];
            out[i - e0] = p[0] * s;
            out[i + 1 - e0] = p[1] * s;
        }
        if (i < hi) out[i - e0] = pair[packed[i >> 1]][0] * s;
    }
}

void rt_nf4_dequantize(const uint8_t *packed, const rt_nf4_state *st, float *out) {
    dequant_range(packed, st, 0, st->n, out);
}

void rt_nf4_dequantize_rows(const uint8_t *packed, const rt_nf4_state *st, int64_t cols,
                            int64_t r0, int64_t r1, float *out) {
    dequant_range(packed, st, r0 * cols, r1 * cols, out);
}

void rt_nf4_absmax(const rt_nf4_state *st, float *absmax_out) {
    for (int64_t b = 0; b < st->n_blocks; b++) absmax_out[b] = block_scale(st, b);
}

double rt_nf4_bits_per_param(const rt_nf4_state *st) {
    double bs = (double)st->blocksize;
    if (!st->double_quant) return 4.0 + 32.0 / bs;
    return 4.0 + 8.0 / bs + 32.0 / (bs * 256.0);
}

size_t rt_nf4_storage_bytes(const rt_nf4_state *st) {
    size_t bytes = (size_t)rt_nf4_packed_bytes(st->n);
    if (!st->double_quant) return bytes + (size_t)st->n_blocks * sizeof(float);
    int64_t n_nested = (st->n_blocks + st->nested_blocksize - 1) / st->nested_blocksize;
    return bytes + (size_t)st->n_blocks + (size_t)n_nested * sizeof(float) + sizeof(float);
}

void rt_nf4_state_free(rt_nf4_state *st) {
    if (!st) return;
    free(st->absmax);
    free(st->absmax_q);
    free(st->nested_absmax);
    memset(st, 0, sizeof *st);
}
