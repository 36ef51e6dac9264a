#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kernels/dtype.h"
#include "kernels/cpu/cpu.h"

/* Large blocks (the activation arena's chunks, weights) are aligned to 2 MiB
 * and marked MADV_HUGEPAGE, so that with transparent huge pages in "madvise"
 * mode (Debian's default) the kernel backs them with 2 MiB pages: a first
 * training step at the stories15M shape touched ~1.2 GB through ~300k 4 KiB
 * page faults, which 2 MiB pages cut 512-fold. Pages are still faulted in
 * on first touch (not pre-populated), so the unused tail of an arena chunk
 * costs no resident memory. */
#define HUGE_MIN ((size_t)4 << 20)
#define HUGE_ALIGN ((size_t)2 << 20)

void *rt_cpu_malloc(size_t bytes) {
    void *p = NULL;
    if (bytes >= HUGE_MIN) {
        bytes = (bytes + HUGE_ALIGN - 1) / HUGE_ALIGN * HUGE_ALIGN;
        if (posix_memalign(&p, HUGE_ALIGN, bytes) != 0) return NULL;
#ifdef MADV_HUGEPAGE
        (void)madvise(p, bytes, MADV_HUGEPAGE); /* advice only: fine if THP is off */
#endif
        return p;
    }
    /* 64-byte alignment: a cache line, and what AVX-512 loads like. */
    if (posix_memalign(&p, 64, bytes ? bytes : 1) != 0) return NULL;
    return p;
}

void rt_cpu_free(void *p) { free(p); }
/* Large buffers (activation gradients) are zeroed by all threads: one
 * thread's memset is far from the memory bandwidth of two. */
#define ZERO_PAR_MIN ((size_t)1 << 20)
#define ZERO_SPAN ((size_t)256 << 10)

void rt_cpu_zero(void *p, size_t bytes) {
    if (bytes < ZERO_PAR_MIN) {
        memset(p, 0, bytes);
        return;
    }
    const int64_t spans = (int64_t)((bytes + ZERO_SPAN - 1) / ZERO_SPAN);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < spans; i++) {
        size_t off = (size_t)i * ZERO_SPAN;
        memset((char *)p + off, 0, bytes - off < ZERO_SPAN ? bytes - off : ZERO_SPAN);
    }
}

/* One write per 4 KiB page, pages split between the threads: the kernel's
 * zeroing of fresh pages (most of a first training step's extra time, and
 * slower still in a VM whose host backs guest memory lazily) runs on every
 * core instead of inside whichever kernel touches the memory first, often
 * a single-threaded memset. The bytes written are zeros into memory whose
 * contents are undefined anyway. */
void rt_cpu_prefault(void *p, size_t bytes) {
    const size_t page = 4096;
    char *c = p;
    const int64_t pages = (int64_t)((bytes + page - 1) / page);
#pragma omp parallel for schedule(static) if (pages >= 64)
    for (int64_t i = 0; i < pages; i++) c[(size_t)i * page] = 0;
}
void rt_cpu_copy(void *dst, const void *src, size_t bytes) {
    if (dst != src) memmove(dst, src, bytes);
}

/* bf16 is the top half of an f32; rounding to nearest even as PyTorch does. */
static float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* IEEE binary16 <-> binary32 (handles subnormals, inf, NaN). */
static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    float f;
    if (exp == 0) {
        f = ldexpf((float)man, -24);
        return sign ? -f : f;
    }
    uint32_t u = exp == 31 ? sign | 0x7f800000u | (man << 13)
                           : sign | ((exp - 15 + 127) << 23) | (man << 13);
    memcpy(&f, &u, 4);
    return f;
}

static uint16_t f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    float a = fabsf(f);
    if (isnan(f)) return sign | 0x7e00;
    if (a >= 65520.0f) return sign | 0x7c00;
    if (a < 6.103515625e-05f) /* subnormal: round to a multiple of 2^-24 */
        return sign | (uint16_t)lrintf(a * 16777216.0f);
    uint32_t exp = ((u >> 23) & 0xff) - 127 + 15, man = u & 0x7fffff;
    uint32_t h = (exp << 10) | (man >> 13);
    uint32_t rest = man & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    return sign | (uint16_t)h;
}

void rt_cpu_convert(int64_t n, const void *src, int src_dtype, void *dst, int dst_dtype) {
    if (src_dtype == dst_dtype) {
        rt_cpu_copy(dst, src, (size_t)n * rt_dtype_size((rt_dtype)src_dtype));
        return;
    }
    const uint16_t *s16 = src;
    uint16_t *d16 = dst;
    const float *s32 = src;
    float *d32 = dst;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float v = src_dtype == RT_F32 ? s32[i] : src_dtype == RT_BF16 ? bf16_to_f32(s16[i]) : f16_to_f32(s16[i]);
        if (dst_dtype == RT_F32) d32[i] = v;
        else if (dst_dtype == RT_BF16) d16[i] = f32_to_bf16(v);
        else d16[i] = f32_to_f16(v);
    }
}

double rt_cpu_sumsq(int64_t n, const float *x) {
    double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static)
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

bool rt_cpu_all_finite(int64_t n, const float *x) {
    int bad = 0;
#pragma omp parallel for reduction(| : bad) schedule(static)
    for (int64_t i = 0; i < n; i++) bad |= !isfinite(x[i]);
    return !bad;
}
