/* NF4 quantization: packed bytes worked out by hand from bitsandbytes'
 * algorithm, the dynamic map against values dumped from bitsandbytes, and
 * round-trip / nearest-code properties against brute-force references. */
#include "kernels/nf4.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/testutil.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double rng_uniform(void) { /* xorshift64*, (0, 1) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return ((double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) + 0.5) / 9007199254740992.0;
}
static float rng_normal(void) {
    return (float)(sqrt(-2.0 * log(rng_uniform())) * cos(6.283185307179586 * rng_uniform()));
}

static unsigned nibble(const uint8_t *packed, int64_t i) {
    return i % 2 == 0 ? packed[i / 2] >> 4 : packed[i / 2] & 15;
}

static void test_codes(void) {
    /* bitsandbytes nf4_dequantization_lut / quant_map */
    CHECK(rt_nf4_code[0] == -1.0f && rt_nf4_code[7] == 0.0f && rt_nf4_code[15] == 1.0f,
          "ends/zero %g %g %g", rt_nf4_code[0], rt_nf4_code[7], rt_nf4_code[15]);
    CHECK(rt_nf4_code[1] == -0.6961928009986877f, "code1 %.9g", rt_nf4_code[1]);
    CHECK(rt_nf4_code[8] == 0.07958029955625534f, "code8 %.9g", rt_nf4_code[8]);
    CHECK(rt_nf4_code[14] == 0.7229568362236023f, "code14 %.9g", rt_nf4_code[14]);
    int sorted = 1;
    for (int i = 1; i < 16; i++) sorted &= rt_nf4_code[i - 1] < rt_nf4_code[i];
    CHECK(sorted, "NF4 codes not ascending");
    printf("nf4 codes: ok\n");
}

static void test_dynamic_map(void) {
    float c[256];
    rt_bnb_dynamic_map_signed(c);
    /* Literals: create_dynamic_map(signed=True) as dumped from bitsandbytes
     * (the table several independent ports embed). Indices 170, 229 and 128
     * are entries where naive fp32 or fp64 arithmetic lands one ulp off. */
    CHECK(c[0] == -0.992968738079071f, "c[0] %.9g", c[0]);
    CHECK(c[1] == -0.9789062738418579f, "c[1] %.9g", c[1]);
    CHECK(c[126] == -5.500000384017767e-07f, "c[126] %.9g", c[126]);
    CHECK(c[127] == 0.0f, "c[127] %.9g", c[127]);
    CHECK(c[128] == 5.500000384017767e-07f, "c[128] %.9g", c[128]);
    CHECK(c[129] == 3.250000190746505e-06f, "c[129] %.9g", c[129]);
    CHECK(c[142] == 0.0009437500848434865f, "c[142] %.9g", c[142]);
    CHECK(c[170] == 0.04234374687075615f, "c[170] %.9g", c[170]);
    CHECK(c[190] == 0.09859374910593033f, "c[190] %.9g", c[190]);
    CHECK(c[208] == 0.3460937440395355f, "c[208] %.9g", c[208]);
    CHECK(c[229] == 0.6414062976837158f, "c[229] %.9g", c[229]);
    CHECK(c[234] == 0.7117187976837158f, "c[234] %.9g", c[234]);
    CHECK(c[254] == 0.992968738079071f, "c[254] %.9g", c[254]);
    CHECK(c[255] == 1.0f, "c[255] %.9g", c[255]);
    int sorted = 1, mirrored = 1;
    for (int i = 1; i < 256; i++) sorted &= c[i - 1] < c[i];
    for (int i = 0; i < 127; i++) mirrored &= c[126 - i] == -c[128 + i];
    CHECK(sorted, "dynamic map not strictly ascending");
    CHECK(mirrored, "dynamic map negatives are not the mirrored positives");

    /* The CUDA search (dQuantize<0>): every entry maps to itself; a value on
     * the fp32 midpoint of two neighbours goes to the even index (the
     * descent compares odd indices only and its midpoint test keeps the
     * final, even pivot on ties); one ulp past a midpoint moves across. */
    int self = 1;
    for (int k = 0; k < 256; k++) self &= rt_bnb_dynamic_index(c, c[k]) == k;
    CHECK(self, "a map entry does not quantize to its own index");
    const int evens[] = {0, 2, 64, 126, 128, 200, 254};
    for (int e = 0; e < 7; e++) {
        int k = evens[e];
        float up = (c[k] + c[k + 1]) * 0.5f;
        CHECK(rt_bnb_dynamic_index(c, up) == k, "tie %d|%d -> %u", k, k + 1, rt_bnb_dynamic_index(c, up));
        CHECK(rt_bnb_dynamic_index(c, nextafterf(up, 2.0f)) == k + 1, "above tie %d|%d", k, k + 1);
        if (k > 0) {
            float dn = (c[k - 1] + c[k]) * 0.5f;
            CHECK(rt_bnb_dynamic_index(c, dn) == k, "tie %d|%d -> %u", k - 1, k, rt_bnb_dynamic_index(c, dn));
            CHECK(rt_bnb_dynamic_index(c, nextafterf(dn, -2.0f)) == k - 1, "below tie %d|%d", k - 1, k);
        }
    }
    CHECK(rt_bnb_dynamic_index(c, -1.0f) == 0 && rt_bnb_dynamic_index(c, 1.0f) == 255 &&
              rt_bnb_dynamic_index(c, 0.0f) == 127 && rt_bnb_dynamic_index(c, NAN) == 0,
          "ends/zero/NaN");
    printf("dynamic map: ok\n");
}

/* Two blocks of 64 chosen so the scaling is exact (absmax 1 then 2, i.e.
 * reciprocals 1 and 0.5), so every nibble follows from the NF4 midpoints
 *   m(i|i+1) = (code[i] + code[i+1]) / 2 with x > m -> upper code:
 *   -0.8481 -0.6106 -0.4600 -0.3397 -0.2346 -0.1379 -0.0455
 *    0.0398  0.1203  0.2035  0.2920  0.3893  0.5017  0.6428  0.8615 */
static void test_hand_bytes(void) {
    float w[128];
    for (int i = 0; i < 128; i++) w[i] = 0.0f;
    const float b0[32] = {
        1.0f, -1.0f,                              /* 15, 0 (extremes)        -> 0xF0 */
        0.0f, -0.0f,                              /* 7, 7 (zeros)            -> 0x77 */
        0.07958029955625534f, -0.6961928009986877f, /* exact codes 8, 1     -> 0x81 */
        0.7229568362236023f, -0.09105003625154495f, /* exact codes 14, 6    -> 0xE6 */
        0.03979014977812767f,                     /* on m(7|8): not > -> 7         */
        0.0397901535f,                            /* next float above m(7|8) -> 8  -> 0x78 */
        0.8614784181118011f,                      /* on m(14|15) -> 14             */
        -0.8480964004993439f,                     /* on m(0|1) -> 0                -> 0xE0 */
        0.5f, 0.51f,                              /* < m(12|13) -> 12; > -> 13   -> 0xCD */
        -0.5f, -0.25f,                            /* < m(2|3) -> 2; < m(4|5) -> 4 -> 0x24 */
        0.3f, 0.2f,                               /* > m(10|11) -> 11; < m(9|10) -> 9 -> 0xB9 */
        0.1f, 0.9f,                               /* < m(8|9) -> 8; > m(14|15) -> 15 -> 0x8F */
        -0.95f, -0.7f,                            /* < m(0|1) -> 0; in (m01, m12) -> 1 -> 0x01 */
        0.45f, 0.4f,                              /* in (m11|12, m12|13) -> 12, 12 -> 0xCC */
        -0.3f, -0.1f,                             /* in (m34, m45) -> 4; (m56, m67) -> 6 -> 0x46 */
        -0.04f, -0.05f,                           /* > m(6|7) -> 7; < -> 6       -> 0x76 */
        0.65f, 0.6f,                              /* > m(13|14) -> 14; -> 13     -> 0xED */
        -0.6f, -0.62f,                            /* in (m12, m23) -> 2; (m01, m12) -> 1 -> 0x21 */
    };
    memcpy(w, b0, sizeof b0); /* w[32..63] = 0 -> code 7 -> 0x77 */
    /* block 1: absmax 2 (from -2), x * 0.5 exact */
    w[64] = -2.0f;  /* -1 -> 0 */
    w[65] = 0.4f;   /* 0.2 < m(9|10) -> 9                     -> 0x09 */
    w[66] = 0.07958029955625534f; /* 0.0398 on m(7|8) -> 7 */
    w[67] = 1.0f;   /* 0.5 -> 12                              -> 0x7C */
    w[68] = -1.2f;  /* -0.6 -> 2 */
    w[69] = 1.8f;   /* 0.9 -> 15                              -> 0x2F */
    const uint8_t expect[64] = {
        0xF0, 0x77, 0x81, 0xE6, 0x78, 0xE0, 0xCD, 0x24, 0xB9, 0x8F, 0x01, 0xCC, 0x46, 0x76,
        0xED, 0x21, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77,
        0x77, 0x77, 0x77, 0x77, /* block 1 */
        0x09, 0x7C, 0x2F, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77,
        0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77,
        0x77, 0x77, 0x77, 0x77,
    };
    CHECK(nextafterf(0.03979014977812767f, 1.0f) == 0.0397901535f, "test literal is not the next float");
    uint8_t packed[64];
    rt_nf4_state st;
    CHECK(rt_nf4_quantize(w, 128, 64, false, packed, &st) == RT_OK, "%s", rt_error_message());
    int bad = 0;
    for (int i = 0; i < 64; i++)
        if (packed[i] != expect[i]) {
            if (bad++ < 8) fprintf(stderr, "byte %d: got 0x%02X want 0x%02X\n", i, packed[i], expect[i]);
        }
    CHECK(bad == 0, "%d packed bytes differ from the hand-derived ones", bad);
    CHECK(st.n_blocks == 2 && st.absmax[0] == 1.0f && st.absmax[1] == 2.0f, "absmax %g %g",
          st.absmax ? st.absmax[0] : -1, st.absmax ? st.absmax[1] : -1);
    float out[128];
    rt_nf4_dequantize(packed, &st, out);
    CHECK(out[6] == 0.7229568362236023f && out[1] == -1.0f && out[64] == -2.0f &&
              out[67] == 2.0f * 0.44070982933044434f && out[69] == 2.0f,
          "dequant %g %g %g %g %g", out[6], out[1], out[64], out[67], out[69]);
    rt_nf4_state_free(&st);
    printf("hand-derived bytes: ok\n");
}

static void test_odd_partial_zero(void) {
    rt_nf4_state st;
    /* n = 3: absmax 1; 1 -> 15, -1 -> 0, 0.5 -> 12, padding 0.0 -> 7 */
    const float w3[3] = {1.0f, -1.0f, 0.5f};
    uint8_t p3[2] = {0xAA, 0xAA};
    CHECK(rt_nf4_quantize(w3, 3, 64, false, p3, &st) == RT_OK, "%s", rt_error_message());
    CHECK(p3[0] == 0xF0 && p3[1] == 0xC7, "odd n bytes %02X %02X (want F0 C7)", p3[0], p3[1]);
    float o3[3];
    rt_nf4_dequantize(p3, &st, o3);
    CHECK(o3[0] == 1.0f && o3[1] == -1.0f && o3[2] == 0.44070982933044434f, "odd n dequant");
    rt_nf4_state_free(&st);

    /* n = 65, blocksize 64: block 1 holds only -0.25 (absmax 0.25, x*4 = -1
     * -> 0) and its padding 0 -> 7: last byte 0x07 */
    float w65[65];
    for (int i = 0; i < 64; i++) w65[i] = (i % 2 ? -0.5f : 0.5f); /* absmax 0.5: +-1 -> 15/0 */
    w65[64] = -0.25f;
    uint8_t p65[33];
    CHECK(rt_nf4_quantize(w65, 65, 64, false, p65, &st) == RT_OK, "%s", rt_error_message());
    CHECK(st.n_blocks == 2 && st.absmax[1] == 0.25f, "partial block absmax");
    CHECK(p65[0] == 0xF0 && p65[31] == 0xF0 && p65[32] == 0x07, "partial block bytes %02X %02X %02X",
          p65[0], p65[31], p65[32]);
    rt_nf4_state_free(&st);

    /* an all-zero block: absmax 0, bitsandbytes' 0 * (1/0) = NaN -> index 0,
     * so every byte is 0x00; dequantized values are -1 * 0 = -0.0 */
    float wz[64] = {0};
    uint8_t pz[32];
    memset(pz, 0xAA, sizeof pz);
    CHECK(rt_nf4_quantize(wz, 64, 64, true, pz, &st) == RT_OK, "%s", rt_error_message());
    int allzero = 1;
    for (int i = 0; i < 32; i++) allzero &= pz[i] == 0;
    CHECK(allzero, "zero block bytes not 0x00 (first %02X)", pz[0]);
    float oz[64];
    rt_nf4_dequantize(pz, &st, oz);
    int zeros = 1;
    for (int i = 0; i < 64; i++) zeros &= oz[i] == 0.0f;
    CHECK(zeros, "zero block does not dequantize to zeros");
    rt_nf4_state_free(&st);
    printf("odd n / partial block / zero block: ok\n");
}

/* Double quantization worked by hand: block absmax {1, 3} -> offset 2,
 * centred {-1, +1}, nested absmax 1. -1 lies below code[0] = -0.99297, the
 * descent ends at index 0; +1 ends above the (code[254] + 1)/2 midpoint ->
 * 255. Dequantized: code[0] * 1 + 2 and 1 * 1 + 2. */
static void test_nested_hand(void) {
    float w[128];
    for (int i = 0; i < 128; i++) w[i] = 0.0f;
    w[5] = -1.0f;
    w[100] = 3.0f;
    uint8_t packed[64];
    rt_nf4_state st;
    CHECK(rt_nf4_quantize(w, 128, 64, true, packed, &st) == RT_OK, "%s", rt_error_message());
    CHECK(st.double_quant && st.absmax == NULL && st.nested_blocksize == 256, "dq state fields");
    CHECK(st.nested_offset == 2.0f, "offset %g", st.nested_offset);
    CHECK(st.nested_absmax[0] == 1.0f, "nested absmax %g", st.nested_absmax[0]);
    CHECK(st.absmax_q[0] == 0 && st.absmax_q[1] == 255, "absmax_q %u %u", st.absmax_q[0],
          st.absmax_q[1]);
    float a[2];
    rt_nf4_absmax(&st, a);
    float want0 = -0.992968738079071f * 1.0f + 2.0f;
    CHECK(a[0] == want0 && a[1] == 3.0f, "dequantized absmax %.9g %.9g", a[0], a[1]);
    /* w[100] = 3 -> code 15 -> 1.0 * 3 */
    float out[128];
    rt_nf4_dequantize(packed, &st, out);
    CHECK(out[100] == 3.0f && out[5] == -want0, "dq dequant %g %g", out[100], out[5]);
    rt_nf4_state_free(&st);
    printf("double quant by hand: ok\n");
}

/* Gaussian weights, every blocksize, with and without double quant:
 *  - each nibble is the nearest NF4 code of x * (1/absmax) (brute force);
 *  - dequantize == code[nibble] * scale, scale from the state's formula;
 *  - |w - dequant| <= absmax * (largest code gap)/2 (+ the scale error);
 *  - 8-bit scale codes are the nearest dynamic-map entry (brute force) and
 *    the scale is within nested_absmax * (largest map gap)/2 of the truth;
 *  - dequantize_rows slices equal the full dequantization. */
static void test_roundtrip(void) {
    const int64_t n = 3 * 4096 + 4097; /* odd, partial last block for every size */
    float *w = malloc(n * sizeof *w), *out = malloc(n * sizeof *out), *rows = malloc(n * sizeof *rows);
    uint8_t *packed = malloc(rt_nf4_packed_bytes(n));
    float dmap[256];
    rt_bnb_dynamic_map_signed(dmap);
    double max_gap = 0;
    for (int i = 1; i < 16; i++) max_gap = fmax(max_gap, rt_nf4_code[i] - rt_nf4_code[i - 1]);
    double map_gap = 0;
    for (int i = 1; i < 256; i++) map_gap = fmax(map_gap, dmap[i] - dmap[i - 1]);
    for (int64_t i = 0; i < n; i++) w[i] = 0.02f * rng_normal();
    w[17] = 0.5f; /* an outlier block */

    for (int dq = 0; dq <= 1; dq++)
        for (int bs = 32; bs <= 4096; bs *= 2) {
            rt_nf4_state st;
            rt_status s = rt_nf4_quantize(w, n, bs, dq, packed, &st);
            CHECK(s == RT_OK, "bs %d dq %d: %s", bs, dq, rt_error_message());
            if (s != RT_OK) continue;
            CHECK(st.n_blocks == (n + bs - 1) / bs, "n_blocks");
            rt_nf4_dequantize(packed, &st, out);
            int64_t nb = st.n_blocks;
            float *scale = malloc(nb * sizeof *scale);
            int not_nearest = 0, bad_value = 0, too_far = 0, bad_scale_code = 0, bad_scale = 0;
            for (int64_t b = 0; b < nb; b++) {
                float amax = 0;
                for (int64_t i = b * bs; i < n && i < (b + 1) * bs; i++) amax = fmaxf(amax, fabsf(w[i]));
                if (dq) {
                    int64_t j = b / 256;
                    float nab = st.nested_absmax[j];
                    scale[b] = dmap[st.absmax_q[b]] * nab + st.nested_offset;
                    float v = (amax - st.nested_offset) * (1.0f / nab);
                    double best = 1e9;
                    for (int k = 0; k < 256; k++) best = fmin(best, fabs(v - dmap[k]));
                    if (fabs(v - dmap[st.absmax_q[b]]) > best + 1e-7) bad_scale_code++;
                    if (fabsf(scale[b] - amax) > nab * (map_gap / 2 + 1e-6) + 1e-7f * amax) bad_scale++;
                } else {
                    scale[b] = st.absmax[b];
                    if (st.absmax[b] != amax) bad_scale++;
                }
                float inv = 1.0f / amax;
                for (int64_t i = b * bs; i < n && i < (b + 1) * bs; i++) {
                    unsigned q = nibble(packed, i);
                    float v = w[i] * inv;
                    double best = 1e9;
                    for (int k = 0; k < 16; k++) best = fmin(best, fabs(v - rt_nf4_code[k]));
                    if (fabs(v - rt_nf4_code[q]) > best + 1e-7) not_nearest++;
                    if (out[i] != rt_nf4_code[q] * scale[b]) bad_value++;
                    double bound = amax * (max_gap / 2) * (1 + 1e-6) + fabs(scale[b] - amax);
                    if (fabs(w[i] - out[i]) > bound) too_far++;
                }
            }
            CHECK(not_nearest == 0, "bs %d dq %d: %d nibbles not the nearest code", bs, dq, not_nearest);
            CHECK(bad_value == 0, "bs %d dq %d: %d dequantized values != code*scale", bs, dq, bad_value);
            CHECK(too_far == 0, "bs %d dq %d: %d errors above absmax*gap/2", bs, dq, too_far);
            CHECK(bad_scale_code == 0, "bs %d: %d 8-bit scale codes not nearest", bs, bad_scale_code);
            CHECK(bad_scale == 0, "bs %d dq %d: %d scales off", bs, dq, bad_scale);
            float *sc = malloc(nb * sizeof *sc);
            rt_nf4_absmax(&st, sc);
            CHECK(memcmp(sc, scale, nb * sizeof *sc) == 0, "rt_nf4_absmax != formula (bs %d)", bs);
            free(sc);
            /* [rows, cols] view with odd cols: slices start mid-byte and mid-block */
            const int64_t cols = 75, nrows = n / cols;
            int64_t cuts[] = {0, 1, 2, 7, 40, nrows - 3, nrows};
            int slice_bad = 0;
            for (int c = 0; c + 1 < 7; c++) {
                rt_nf4_dequantize_rows(packed, &st, cols, cuts[c], cuts[c + 1], rows);
                if (memcmp(rows, out + cuts[c] * cols, (cuts[c + 1] - cuts[c]) * cols * sizeof(float)))
                    slice_bad++;
            }
            CHECK(slice_bad == 0, "bs %d dq %d: %d row slices differ", bs, dq, slice_bad);
            free(scale);
            rt_nf4_state_free(&st);
        }
    printf("round trip, blocksizes 32..4096, dq off/on: ok\n");
    free(w);
    free(out);
    free(rows);
    free(packed);
}

static void test_errors_and_bits(void) {
    float w[256] = {0};
    uint8_t p[128];
    rt_nf4_state st;
    const int bad_bs[] = {48, 16, 0, -64, 8192, 96};
    for (int k = 0; k < 6; k++) {
        rt_error_clear();
        rt_status s = rt_nf4_quantize(w, 256, bad_bs[k], true, p, &st);
        CHECK(s == RT_EINPUT, "blocksize %d accepted (status %d)", bad_bs[k], s);
        CHECK(strstr(rt_error_message(), "blocksize") != NULL, "message: %s", rt_error_message());
        CHECK(st.absmax == NULL && st.absmax_q == NULL && st.nested_absmax == NULL, "state not zeroed");
    }
    CHECK(rt_nf4_quantize(w, 0, 64, true, p, &st) == RT_EINPUT, "n = 0 accepted");

    CHECK(rt_nf4_quantize(w, 256, 64, true, p, &st) == RT_OK, "%s", rt_error_message());
    double bpp = rt_nf4_bits_per_param(&st);
    CHECK(fabs(bpp - (4.0 + 8.0 / 64 + 32.0 / (64 * 256))) < 1e-12 && fabs(bpp - 4.127) < 5e-4,
          "bits/param %.6f", bpp);
    printf("bits per param (blocksize 64, double quant): %.6f\n", bpp);
    /* 256 elements: 128 packed bytes + 4 absmax_q + 1 nested absmax + offset */
    CHECK(rt_nf4_storage_bytes(&st) == 128 + 4 + 4 + 4, "storage %zu", rt_nf4_storage_bytes(&st));
    rt_nf4_state_free(&st);
    CHECK(rt_nf4_quantize(w, 256, 64, false, p, &st) == RT_OK, "%s", rt_error_message());
    CHECK(rt_nf4_bits_per_param(&st) == 4.5, "bits/param without dq %.6f", rt_nf4_bits_per_param(&st));
    CHECK(rt_nf4_storage_bytes(&st) == 128 + 16, "storage %zu", rt_nf4_storage_bytes(&st));
    rt_nf4_state_free(&st);
    printf("errors / bits per param: ok\n");
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* Informative only: dequantization is the hot path of QLoRA on the CPU. */
static void bench(void) {
    const int64_t n = 1 << 22;
    float *w = malloc(n * sizeof *w), *out = malloc(n * sizeof *out);
    uint8_t *p = malloc(rt_nf4_packed_bytes(n));
    for (int64_t i = 0; i < n; i++) w[i] = rng_normal();
    rt_nf4_state st;
    double t0 = now_s();
    rt_status s = rt_nf4_quantize(w, n, 64, true, p, &st);
    double t1 = now_s();
    CHECK(s == RT_OK, "%s", rt_error_message());
    if (s == RT_OK) {
        rt_nf4_dequantize(p, &st, out);
        double t2 = now_s();
        const int reps = 5;
        for (int r = 0; r < reps; r++) rt_nf4_dequantize(p, &st, out);
        double t3 = now_s();
        printf("4M params: quantize %.1f ms, dequantize %.2f ms (%.2f Gparam/s)\n", 1e3 * (t1 - t0),
               1e3 * (t3 - t2) / reps, n * reps / (t3 - t2) / 1e9);
        rt_nf4_state_free(&st);
    }
    free(w);
    free(out);
    free(p);
}

int main(void) {
    test_codes();
    test_dynamic_map();
    test_hand_bytes();
    test_odd_partial_zero();
    test_nested_hand();
    test_roundtrip();
    test_errors_and_bits();
    bench();
    return rt_test_summary();
}
