/* The CPU kernel-table entry for NF4 dequantization (kernels/nf4.c has the
 * quantizer and the dequantizer itself). */
#include "kernels/cpu/cpu.h"
#include "kernels/nf4.h"

void rt_cpu_nf4_dequant_rows(const uint8_t *packed, const struct rt_nf4_state *st, int64_t cols,
                             int64_t r0, int64_t r1, float *out) {
    rt_nf4_dequantize_rows(packed, st, cols, r0, r1, out);
}
