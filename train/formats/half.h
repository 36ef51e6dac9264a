/* retort — bfloat16 and IEEE half (binary16) <-> float32 conversion.
 *
 * bf16 is the top 16 bits of an IEEE binary32 (Google Brain float; the same
 * bits PyTorch's torch.bfloat16 and safetensors "BF16" store). f16 is IEEE
 * 754-2008 binary16 (1 sign, 5 exponent with bias 15, 10 mantissa bits).
 * float32 -> 16-bit conversions round to nearest, ties to even, as
 * PyTorch's c10::BFloat16 / c10::Half constructors do; NaN stays NaN (quiet),
 * overflow goes to infinity. All functions are exact in the other direction.
 */
#ifndef RT_HALF_H
#define RT_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint32_t rt_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float rt_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* bf16 bits -> float (exact). */
static inline float rt_bf16_to_f32(uint16_t h) { return rt_bits_f32((uint32_t)h << 16); }

/* float -> bf16 bits, round to nearest even; NaN -> quiet NaN of the same sign. */
static inline uint16_t rt_f32_to_bf16(float f) {
    uint32_t u = rt_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
    /* Adding 0x7fff plus the lowest kept bit rounds ties towards the even result. */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* IEEE binary16 bits -> float (exact, subnormals included). */
static inline float rt_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f) return rt_bits_f32(sign | 0x7f800000u | (man << 13)); /* inf / NaN */
    if (exp != 0) return rt_bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
    if (man == 0) return rt_bits_f32(sign);
    /* subnormal: man * 2^-24, exactly representable in binary32 */
    float v = (float)man * (1.0f / 16777216.0f);
    return sign ? -v : v;
}

/* float -> IEEE binary16 bits, round to nearest even (subnormals included). */
static inline uint16_t rt_f32_to_f16(float f) {
    uint32_t u = rt_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: inf */
    if (a < 0x38800000u) {
        /* result is subnormal (or zero): value / 2^-24, rounded to nearest even */
        if (a < 0x33000000u) return sign; /* < 2^-25: rounds to zero (2^-25 ties to 0) */
        uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e; /* m * 2^(e-150) / 2^-24 = m >> (126 - e) */
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    /* normal: rebias exponent (127 -> 15) and round the 13 dropped mantissa bits */
    uint32_t r = a - 0x38000000u;
    r += 0xfffu + ((r >> 13) & 1u);
    return (uint16_t)(sign | (r >> 13));
}

#endif
