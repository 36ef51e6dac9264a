/* retort — vector math shared by the CPU kernels (private to kernels/cpu).
 *
 * Hot loops are compiled twice on x86-64 with GCC, for AVX2+FMA (x86-64-v3)
 * and for the build's baseline, and the loader picks one per machine
 * (target_clones); the helpers they call are forced inline so each copy gets
 * its own vector code. */
#ifndef RT_KERNELS_CPU_VEC_MATH_H
#define RT_KERNELS_CPU_VEC_MATH_H

#include <math.h>
#include <stdint.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define RT_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#define RT_CPU_INLINE static inline __attribute__((always_inline))
#else
#define RT_CPU_CLONES
#define RT_CPU_INLINE static inline
#endif

/* exp(x) in f32, written so that a loop of it vectorises (a call to libm's
 * expf stops gcc from vectorising). x = n ln2 + r with |r| <= ln2/2, the
 * reduction done with ln2 split in a high part with few bits and a low part
 * (Cody & Waite 1980) so that n*ln2_hi is exact; exp(r) by its Taylor series
 * to r^7 (truncation below 6e-9 relative); 2^n put straight into the exponent
 * bits. Within 2 ulp of exp() (1.02e-7 relative over [-87.3, 88.3]; see
 * bench/bench_kernels.c --check). x below -87.33654 (including -inf: masked
 * scores) gives exactly 0, x above 88.37626 saturates at 2.4e38, NaN stays NaN.
 *
 * The range handling works on the bit pattern on purpose: with float
 * compares gcc (-O2, -ftrapping-math) threads the clamped paths into
 * constants and then refuses to if-convert the trapping arithmetic, and the
 * loop stays scalar. As unsigned, a float below lo (negative, larger
 * magnitude, or -NaN) has bits above lo's; as signed, a float above hi has
 * bits above hi's; integer min/select never trap.
 */
RT_CPU_INLINE float rt_fast_expf(float x) {
    const uint32_t lo_bits = 0xC2AEAC4Fu; /* -87.33654f: exp is below FLT_MIN */
    const int32_t hi_bits = 0x42B0C0A5;   /* 88.37626f: n = 127, the largest exponent */
    union { float f; uint32_t u; int32_t i; } v = {.f = x};
    float keep = v.u > lo_bits ? 0.0f : 1.0f;               /* underflow: exactly 0 */
    keep = (v.u & 0x7FFFFFFFu) > 0x7F800000u ? NAN : keep;  /* NaN in, NaN out */
    v.u = v.u > lo_bits ? lo_bits : v.u;                    /* clamp below */
    v.i = v.i > hi_bits ? hi_bits : v.i;                    /* clamp above */
    const float xc = v.f;
    /* Adding 1.5*2^23 rounds x/ln2 to an integer n held in the low mantissa
     * bits of t (no float->int conversion needed, so SSE2 vectorises it). */
    const float shifter = 12582912.0f;
    const float t = xc * 1.44269504088896341f + shifter;
    const float n = t - shifter;
    float r = xc - n * 0.693359375f; /* ln2_hi: 9 significant bits */
    r = r - n * -2.12194440e-4f;     /* ln2_lo = ln2 - ln2_hi */
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union { float f; uint32_t u; } tb = {.f = t}, sc;
    sc.u = (tb.u - 0x4B400000u + 127u) << 23; /* n + 127 into the exponent field */
    return p * sc.f * keep;
}

#endif
