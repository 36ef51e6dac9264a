/* retort — NF4 4-bit blockwise quantization (QLoRA), bit-compatible with
 * bitsandbytes.
 *
 * Format (bitsandbytes functional.quantize_4bit / dequantize_4bit with
 * quant_type="nf4", CUDA kernels kQuantizeBlockwise<NF4> / dQuantizeNF4 /
 * kDequantizeBlockwise in csrc/kernels.cu; Dettmers et al. 2023, "QLoRA:
 * Efficient Finetuning of Quantized LLMs", arXiv:2305.14314):
 *
 *   - A weight of n elements ([out, in] flattened row-major) is cut into
 *     blocks of `blocksize` consecutive elements; the last block may be
 *     partial. absmax[b] = max |x| over the block (fp32).
 *   - Each element x becomes the 4-bit index of the NF4 code nearest to
 *     x * (1.0f / absmax[b]) (bitsandbytes multiplies by the fp32
 *     reciprocal, it does not divide). "Nearest" is bitsandbytes' decision
 *     tree over the 15 midpoints of adjacent codes with strict `>`: a value
 *     exactly on a midpoint takes the LOWER code.
 *   - Two indices per byte: element 2j in the HIGH nibble, element 2j+1 in
 *     the LOW nibble; ceil(n/2) bytes. For odd n the last low nibble is the
 *     code of a padding 0.0 (what the CUDA kernel's zero-filled load gives):
 *     7 (code 0.0), or 0 in a block whose absmax is 0 (see below).
 *   - A block of all zeros has absmax 0: bitsandbytes computes 1/0 = inf and
 *     0 * inf = NaN, which its decision tree sends to index 0 (code -1.0).
 *     Such a block therefore packs to 0x00 bytes and dequantizes to -0.0.
 *     retort reproduces this bit for bit (IEEE arithmetic, no special case).
 *   - Dequantized value: code[index] * absmax[b] (fp32).
 *
 * Double quantization (QLoRA §3 "Double Quantization"; bitsandbytes
 * quantize_4bit(compress_statistics=True)):
 *   offset = mean(absmax); the n_blocks values absmax[b] - offset are
 *   quantized blockwise (nested blocksize 256) to 8 bits with bitsandbytes'
 *   signed dynamic map (create_dynamic_map(signed=True)) using the CUDA
 *   kernel's binary search (dQuantize<0> in kernels.cu), one fp32
 *   nested_absmax per nested block. The dequantized scale is
 *     absmax[b] = nested_code[absmax_q[b]] * nested_absmax[b / 256] + offset
 *   computed as two separately rounded fp32 operations (torch does the
 *   multiply in dequantize_blockwise and adds the offset afterwards).
 *   The only value that can differ from bitsandbytes is `offset`: torch's
 *   float32 mean uses an implementation-defined summation order; retort sums
 *   in double and rounds once (at most ~1 ulp apart).
 *
 * The arrays of an rt_nf4_state map one to one onto a bitsandbytes
 * QuantState / a Params4bit checkpoint ("absmax", "quant_map",
 * "nested_absmax", "nested_quant_map", "quant_state.bitsandbytes__nf4"
 * {blocksize, nested_blocksize, nested_offset, shape}).
 */
#ifndef RT_NF4_H
#define RT_NF4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The 16 NF4 code values, ascending: index 0 = -1.0, 7 = 0.0, 15 = 1.0.
 * bitsandbytes' table (nf4_dequantization_lut in csrc/kernels.cu, the
 * "quant_map" of a Params4bit checkpoint): quantiles of N(0,1) normalised to
 * [-1, 1] with an exact zero (QLoRA §3 "4-bit NormalFloat"). */
extern const float rt_nf4_code[16];

/* Fills code[256] with bitsandbytes' signed dynamic 8-bit map,
 * functional.create_dynamic_map(signed=True, max_exponent_bits=7,
 * total_bits=8) (Dettmers 2015, "8-Bit Approximations for Parallelism in
 * Deep Learning", arXiv:1511.04561), bit-exact: ascending, code[0] =
 * -0.99296875 (rounded to fp32), code[127] = 0, code[255] = 1; the map is not
 * symmetric (1.0 has no negative twin). Reproduces torch's float32
 * linspace / mean / scale arithmetic. Never fails. */
void rt_bnb_dynamic_map_signed(float code[256]);

/* Index of the entry of a sorted 256-entry map (e.g. the dynamic map above)
 * nearest to x, exactly as bitsandbytes' CUDA blockwise 8-bit quantizer
 * picks it (dQuantize<0> in csrc/kernels.cu): a 7-step binary descent from
 * index 127, then a midpoint test against the bracketing entries. An x
 * exactly on the fp32 midpoint (code[k] + code[k+1]) * 0.5f takes the EVEN
 * index of the two; x beyond either end takes the end index; NaN gives 0.
 * x is normally a value already scaled into [-1, 1]. */
uint8_t rt_bnb_dynamic_index(const float code[256], float x);

/* A quantized weight's scales and maps. Every pointer is owned by the state
 * (malloc'd; released by rt_nf4_state_free). A loader that fills a state
 * from a checkpoint must allocate its arrays with malloc as well. */
typedef struct rt_nf4_state {
    int64_t n;              /* number of weight elements */
    int blocksize;          /* elements per block: power of two in [32, 4096] */
    int64_t n_blocks;       /* ceil(n / blocksize) */
    bool double_quant;      /* scales stored as 8-bit (absmax_q) + nested scales */
    float *absmax;          /* [n_blocks] fp32 scales; NULL when double_quant */
    uint8_t *absmax_q;      /* [n_blocks] 8-bit scale codes; NULL unless double_quant */
    float *nested_absmax;   /* [ceil(n_blocks / nested_blocksize)] fp32; NULL unless double_quant */
    float nested_offset;    /* mean of the fp32 absmax (double_quant only, else 0) */
    int nested_blocksize;   /* 256 when double_quant, else 0 */
    float nested_code[256]; /* rt_bnb_dynamic_map_signed (double_quant only, else zeros) */
    float code[16];         /* quant_map: rt_nf4_code */
} rt_nf4_state;

/* Bytes of packed 4-bit data for n elements: ceil(n / 2). */
static inline int64_t rt_nf4_packed_bytes(int64_t n) { return (n + 1) / 2; }

/* Quantizes w[n] (fp32; any finite values) to NF4 with the given blocksize
 * (a power of two in 32..4096; 64 is the QLoRA default), with double
 * quantization of the scales when double_quant (the QLoRA default).
 *   packed: caller-owned, rt_nf4_packed_bytes(n) bytes, fully written.
 *   st:     overwritten (arrays a previous state held are NOT freed); on
 *           success its arrays are allocated here, free with
 *           rt_nf4_state_free. On failure st is zeroed (safe to free).
 * Errors: RT_EINPUT for n < 1 or a bad blocksize (the message names the
 * value); RT_EINTERNAL for NULL pointers or out of memory.
 * Runs OpenMP-parallel over blocks. */
rt_status rt_nf4_quantize(const float *w, int64_t n, int blocksize, bool double_quant,
                          uint8_t *packed, rt_nf4_state *st);

/* Dequantizes all st->n elements into out[st->n] (fp32, caller-owned):
 * out[i] = code[nibble i] * absmax[i / blocksize], bit-identical to
 * bitsandbytes dequantize_4bit in fp32. OpenMP-parallel over blocks. */
void rt_nf4_dequantize(const uint8_t *packed, const rt_nf4_state *st, float *out);

/* Dequantizes rows [r0, r1) of a weight viewed as [rows, cols] row-major
 * (rows = st->n / cols) into out[(r1 - r0) * cols] (caller-owned), so a
 * layer can be materialised one slice at a time. Values are identical to
 * the matching slice of rt_nf4_dequantize. Requires 0 <= r0 <= r1 and
 * r1 * cols <= st->n (callers' contract, not checked). */
void rt_nf4_dequantize_rows(const uint8_t *packed, const rt_nf4_state *st, int64_t cols,
                            int64_t r0, int64_t r1, float *out);

/* The fp32 scale of every block into absmax_out[st->n_blocks]
 * (caller-owned): the stored absmax, or the double-quantized
 * reconstruction nested_code[absmax_q[b]] * nested_absmax[b/256] + offset. */
void rt_nf4_absmax(const rt_nf4_state *st, float *absmax_out);

/* Nominal storage cost in bits per parameter, the QLoRA paper's figure
 * (§3 "Double Quantization"): 4 + 32/blocksize without double quantization,
 * 4 + 8/blocksize + 32/(blocksize * 256) with it (4.127 for blocksize 64).
 * Ignores partial blocks and the few scalar fields; see
 * rt_nf4_storage_bytes for the exact size. */
double rt_nf4_bits_per_param(const rt_nf4_state *st);

/* Exact bytes held for one quantized weight: packed data plus the scale
 * arrays (and nested_offset when double quantized); maps excluded. */
size_t rt_nf4_storage_bytes(const rt_nf4_state *st);

/* Frees the state's arrays and zeroes it. NULL or a zeroed state is fine. */
void rt_nf4_state_free(rt_nf4_state *st);

#ifdef __cplusplus
}
#endif
#endif
