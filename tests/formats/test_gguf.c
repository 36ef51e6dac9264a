/* Tests for train/formats/gguf.[ch]: dequantization of hand-packed blocks
 * of every type (packed here from the documented layouts, values chosen so
 * the expected floats are exact), writer -> reader round trips of every
 * metadata type, and hostile files (every truncation, bad counts, lengths,
 * alignment, offsets, types) failing with RT_EINPUT naming the file, also
 * through the CLI with exit status 2. gguf-py's bit-exact agreement is
 * tests/interop/test_gguf_dequant.py. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tests/cli_util.h"
#include "tests/testutil.h"
#include "train/formats/gguf.h"

static char path_buf[512];
static const char *tmp_path(const char *name) {
    snprintf(path_buf, sizeof path_buf, "%s/%s", rt_test_tmpdir(), name);
    return path_buf;
}

static void put_f16(uint8_t *p, uint16_t h) { p[0] = (uint8_t)h; p[1] = (uint8_t)(h >> 8); }

/* Dequantizes one block of `t` and compares with want[] exactly. */
static void check_block(rt_ggml_type t, const uint8_t *blk, const float *want) {
    float got[256];
    const int n = rt_ggml_block_size(t);
    CHECK(rt_ggml_dequantize(t, blk, got, n) == RT_OK, "%s", rt_ggml_type_name(t));
    int bad = -1;
    for (int i = 0; i < n && bad < 0; i++)
        if (got[i] != want[i]) bad = i;
    CHECK(bad < 0, "%s element %d: got %g want %g", rt_ggml_type_name(t), bad,
          bad >= 0 ? got[bad] : 0.0, bad >= 0 ? want[bad] : 0.0);
}

static void test_blocks_32(void) {
    uint8_t b[64];
    float want[32];
    /* Q4_0: d = 0.25; element j < 16 low nibble of qs[j], j >= 16 high nibble */
    memset(b, 0, sizeof b);
    put_f16(b, 0x3400);
    for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)(j | (15 - j) << 4);
    for (int j = 0; j < 16; j++) { want[j] = (float)(j - 8) * 0.25f; want[j + 16] = (float)(7 - j) * 0.25f; }
    check_block(RT_GGML_Q4_0, b, want);
    /* Q4_1: d = 0.5, m = -1 */
    put_f16(b, 0x3800);
    put_f16(b + 2, 0xBC00);
    for (int j = 0; j < 16; j++) b[4 + j] = (uint8_t)(j | (15 - j) << 4);
    for (int j = 0; j < 16; j++) { want[j] = (float)j * 0.5f - 1; want[j + 16] = (float)(15 - j) * 0.5f - 1; }
    check_block(RT_GGML_Q4_1, b, want);
    /* Q5_0 / Q5_1: 5-bit v_k, the 5th bit is bit k of qh (u32 little-endian) */
    int v[32];
    for (int k = 0; k < 32; k++) v[k] = (k * 7 + 3) % 32;
    for (int withmin = 0; withmin < 2; withmin++) {
        memset(b, 0, sizeof b);
        put_f16(b, 0x3000); /* 0.125 */
        if (withmin) put_f16(b + 2, 0x4000); /* m = 2 */
        uint8_t *qh = b + (withmin ? 4 : 2), *qs = qh + 4;
        for (int k = 0; k < 32; k++) {
            qs[k % 16] |= (uint8_t)((v[k] & 15) << (k < 16 ? 0 : 4));
            qh[k / 8] |= (uint8_t)((v[k] >> 4) << (k % 8));
            want[k] = withmin ? (float)v[k] * 0.125f + 2 : (float)(v[k] - 16) * 0.125f;
        }
        check_block(withmin ? RT_GGML_Q5_1 : RT_GGML_Q5_0, b, want);
    }
    /* Q8_0: d = 0.5, int8 */
    put_f16(b, 0x3800);
    for (int j = 0; j < 32; j++) { b[2 + j] = (uint8_t)(int8_t)(j * 8 - 128); want[j] = (float)(j * 8 - 128) * 0.5f; }
    check_block(RT_GGML_Q8_0, b, want);
}

/* Packs 8 six-bit scales and mins as Q4_K/Q5_K do (see gguf-py Q4_K.get_scale_min). */
static void pack_k4_scales(uint8_t *s, const int *sc, const int *mn) {
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
        s[j + 4] = (uint8_t)(mn[j] | (mn[j + 4] >> 4) << 6);
        s[j + 8] = (uint8_t)((sc[j + 4] & 15) | (mn[j + 4] & 15) << 4);
    }
}

static void test_blocks_k(void) {
    uint8_t b[256];
    float want[256];
    int sc[8], mn[8];
    for (int s = 0; s < 8; s++) { sc[s] = s * 7 + 3 + (s == 7 ? 10 : 0); mn[s] = 63 - s * 5; }
    for (int five = 0; five < 2; five++) {
        memset(b, 0, sizeof b);
        put_f16(b, 0x3C00);     /* d = 1 */
        put_f16(b + 2, 0x3800); /* dmin = 0.5 */
        pack_k4_scales(b + 4, sc, mn);
        uint8_t *qh = b + 16, *qs = b + (five ? 48 : 16);
        for (int e = 0; e < 256; e++) {
            const int s = e / 32, c = s / 2, l = e % 32;
            const int q = five ? (e * 11 + 5) % 32 : (e * 5 + 1) % 16;
            qs[c * 32 + l] |= (uint8_t)((q & 15) << (s % 2 ? 4 : 0));
            if (five) qh[l] |= (uint8_t)((q >> 4) << s);
            want[e] = (float)sc[s] * (float)q - 0.5f * (float)mn[s];
        }
        check_block(five ? RT_GGML_Q5_K : RT_GGML_Q4_K, b, want);
    }
    /* Q6_K: ql[128] qh[64] int8 scales[16] d; 16 sub-blocks of 16 */
    memset(b, 0, sizeof b);
    int8_t s6[16];
    for (int s = 0; s < 16; s++) s6[s] = (int8_t)(s * 3 - 20);
    memcpy(b + 192, s6, 16);
    put_f16(b + 208, 0x3400); /* d = 0.25 */
    for (int e = 0; e < 256; e++) {
        const int n = e / 128, k = (e % 128) / 32, l = e % 32, q = (e * 13 + 7) % 64;
        uint8_t *ql = b + n * 64 + l + (k % 2 ? 32 : 0);
        *ql |= (uint8_t)((q & 15) << (k >= 2 ? 4 : 0));
        b[128 + n * 32 + l] |= (uint8_t)((q >> 4) << (2 * k));
        want[e] = 0.25f * (float)s6[e / 16] * (float)(q - 32);
    }
    check_block(RT_GGML_Q6_K, b, want);
    /* F16 subnormal and BF16 */
    uint8_t h[4] = {0x01, 0x00, 0x00, 0xC0};
    float f[2];
    rt_ggml_dequantize(RT_GGML_F16, h, f, 2);
    CHECK(f[0] == ldexpf(1, -24) && f[1] == -2.0f, "f16: %g %g", f[0], f[1]);
    uint8_t bf[2] = {0x49, 0x40};
    rt_ggml_dequantize(RT_GGML_BF16, bf, f, 1);
    CHECK(f[0] == 3.140625f, "bf16: %g", f[0]);
    CHECK(rt_ggml_dequantize(RT_GGML_Q2_K, b, f, 256) == RT_EINPUT, "Q2_K refused");
    CHECK(rt_ggml_dequantize(RT_GGML_Q4_0, b, f, 31) == RT_EINPUT, "partial block refused");
}

static void test_q8_0_quantize(void) {
    float x[64], y[64];
    uint8_t q[68];
    for (int i = 0; i < 64; i++) x[i] = sinf((float)i) * (i < 32 ? 1.0f : 100.0f);
    rt_ggml_quantize_q8_0(x, q, 64);
    rt_ggml_dequantize(RT_GGML_Q8_0, q, y, 64);
    float err = 0;
    for (int i = 0; i < 64; i++) err = fmaxf(err, fabsf(x[i] - y[i]) / (i < 32 ? 1.0f : 100.0f));
    CHECK(err <= 0.5f / 127 * 1.01f, "q8_0 error %g of amax", err);
}

/* A small valid file through the writer: every scalar type, both array
 * kinds, two tensors (the last ends the file, no trailing padding). */
static const float T0[64] = {1, -2, 3.5f};
static const float T1[8] = {0.25f, 0.5f, 0.75f, 1, 2, 3, 4, 5};
static void write_sample(const char *path, uint32_t alignment) {
    rt_gguf_writer *w;
    rt_gguf_writer_new(&w);
    rt_gguf_set_str(w, "general.architecture", "llama");
    if (alignment != 32) rt_gguf_set_u32(w, "general.alignment", alignment);
    rt_gguf_set_u32(w, "t.u32", 4000000000u);
    rt_gguf_set_i32(w, "t.i32", -7);
    rt_gguf_set_f32(w, "t.f32", 0.125f);
    rt_gguf_set_bool(w, "t.bool", true);
    const uint8_t u8 = 200; const int8_t i8 = -100; const uint16_t u16 = 60000; const int16_t i16 = -30000;
    const uint64_t u64 = 1ull << 40; const int64_t i64 = -(1ll << 40); const double f64 = 0.1;
    rt_gguf_set_raw(w, "t.u8", RT_GGUF_UINT8, &u8, 1);
    rt_gguf_set_raw(w, "t.i8", RT_GGUF_INT8, &i8, 1);
    rt_gguf_set_raw(w, "t.u16", RT_GGUF_UINT16, &u16, 2);
    rt_gguf_set_raw(w, "t.i16", RT_GGUF_INT16, &i16, 2);
    rt_gguf_set_raw(w, "t.u64", RT_GGUF_UINT64, &u64, 8);
    rt_gguf_set_raw(w, "t.i64", RT_GGUF_INT64, &i64, 8);
    rt_gguf_set_raw(w, "t.f64", RT_GGUF_FLOAT64, &f64, 8);
    const char *strs[3] = {"a", "", "ccc"};
    rt_gguf_set_arr_str(w, "t.strs", strs, NULL, 3);
    const float fl[3] = {1.5f, -2, 3};
    rt_gguf_set_arr(w, "t.floats", RT_GGUF_FLOAT32, fl, 3);
    const int64_t ne0[2] = {32, 2}, ne1[1] = {8};
    rt_gguf_add_tensor(w, "t0", RT_GGML_F32, 2, ne0, T0, sizeof T0);
    rt_gguf_add_tensor(w, "t1", RT_GGML_F32, 1, ne1, T1, sizeof T1);
    CHECK(rt_gguf_write(w, path) == RT_OK, "write %s: %s", path, rt_error_message());
    rt_gguf_writer_free(w);
}

static void test_round_trip(void) {
    for (int k = 0; k < 2; k++) {
        const uint32_t al = k ? 64 : 32;
        char path[512];
        snprintf(path, sizeof path, "%s", tmp_path(k ? "sample64.gguf" : "sample.gguf"));
        write_sample(path, al);
        rt_gguf *g = NULL;
        CHECK(rt_gguf_open(path, &g) == RT_OK, "open: %s", rt_error_message());
        if (!g) continue;
        int64_t i = 0;
        double f = 0;
        bool b = false;
        const char *s;
        size_t n;
        CHECK(rt_gguf_version(g) == 3 && rt_gguf_alignment(g) == al, "version/alignment");
        CHECK(!rt_gguf_get_int(g, "t.u32", true, &i) && i == 4000000000ll, "u32 %lld", (long long)i);
        CHECK(!rt_gguf_get_int(g, "t.i32", true, &i) && i == -7, "i32");
        CHECK(!rt_gguf_get_int(g, "t.u8", true, &i) && i == 200, "u8");
        CHECK(!rt_gguf_get_int(g, "t.i8", true, &i) && i == -100, "i8");
        CHECK(!rt_gguf_get_int(g, "t.u16", true, &i) && i == 60000, "u16");
        CHECK(!rt_gguf_get_int(g, "t.i16", true, &i) && i == -30000, "i16");
        CHECK(!rt_gguf_get_int(g, "t.u64", true, &i) && i == 1ll << 40, "u64");
        CHECK(!rt_gguf_get_int(g, "t.i64", true, &i) && i == -(1ll << 40), "i64");
        CHECK(!rt_gguf_get_float(g, "t.f32", true, &f) && f == 0.125, "f32");
        CHECK(!rt_gguf_get_float(g, "t.f64", true, &f) && f == 0.1, "f64");
        CHECK(!rt_gguf_get_bool(g, "t.bool", true, &b) && b, "bool");
        CHECK(!rt_gguf_get_str(g, "general.architecture", true, &s, &n) && n == 5 && !memcmp(s, "llama", 5), "str");
        CHECK(rt_gguf_get_str(g, "t.u32", true, &s, &n) == RT_EINPUT &&
              strstr(rt_error_message(), "t.u32"), "type mismatch named: %s", rt_error_message());
        CHECK(rt_gguf_get_int(g, "nope", true, &i) == RT_EINPUT && strstr(rt_error_message(), path),
              "missing key names file");
        CHECK(rt_gguf_get_int(g, "nope", false, &i) == RT_OK, "optional key");
        const rt_gguf_kv *kv = rt_gguf_find(g, "t.strs");
        CHECK(kv && kv->type == RT_GGUF_ARRAY && kv->arr_type == RT_GGUF_STRING && kv->n == 3, "strs");
        if (kv) {
            rt_gguf_arr_str(kv, 2, &s, &n);
            CHECK(n == 3 && !memcmp(s, "ccc", 3), "strs[2]");
            rt_gguf_arr_str(kv, 1, &s, &n);
            CHECK(n == 0, "strs[1] empty");
        }
        kv = rt_gguf_find(g, "t.floats");
        CHECK(kv && kv->n == 3 && rt_gguf_arr_float(kv, 1) == -2.0, "floats");
        const rt_gguf_tensor *t0 = rt_gguf_find_tensor(g, "t0"), *t1 = rt_gguf_find_tensor(g, "t1");
        CHECK(t0 && t0->n_dims == 2 && t0->ne[0] == 32 && t0->ne[1] == 2 && !memcmp(t0->data, T0, sizeof T0), "t0");
        CHECK(t1 && t1->offset % al == 0 && !memcmp(t1->data, T1, sizeof T1), "t1");
        /* carry every kv over raw: same bytes */
        rt_gguf_writer *w;
        rt_gguf_writer_new(&w);
        for (size_t k2 = 0; k2 < rt_gguf_kv_count(g); k2++) {
            const void *raw;
            size_t nb;
            kv = rt_gguf_kv_at(g, k2);
            rt_gguf_kv_raw(kv, &raw, &nb);
            rt_gguf_set_raw(w, kv->key, kv->type, raw, nb);
        }
        const char *copy = tmp_path("copy.gguf");
        CHECK(rt_gguf_write(w, copy) == RT_OK, "copy");
        rt_gguf_writer_free(w);
        rt_gguf *g2 = NULL;
        CHECK(rt_gguf_open(copy, &g2) == RT_OK, "reopen copy: %s", rt_error_message());
        if (g2) {
            CHECK(rt_gguf_kv_count(g2) == rt_gguf_kv_count(g), "copy kv count");
            kv = rt_gguf_find(g2, "t.strs");
            CHECK(kv && kv->n == 3, "copy strs");
            rt_gguf_close(g2);
        }
        rt_gguf_close(g);
    }
}

static void expect_bad(const char *path, const char *what, const char *needle) {
    rt_gguf *g = NULL;
    rt_error_clear();
    rt_status s = rt_gguf_open(path, &g);
    CHECK(s == RT_EINPUT && g == NULL, "%s: status %d (%s)", what, s, rt_error_message());
    CHECK(strstr(rt_error_message(), path) != NULL, "%s: message names the file: %s", what,
          rt_error_message());
    if (needle)
        CHECK(strstr(rt_error_message(), needle) != NULL, "%s: '%s' mentions '%s'", what,
              rt_error_message(), needle);
    rt_gguf_close(g);
}

/* Offset of the first occurrence of `needle` (n bytes) in buf. */
static size_t find(const char *buf, size_t len, const void *needle, size_t n) {
    for (size_t i = 0; i + n <= len; i++)
        if (!memcmp(buf + i, needle, n)) return i;
    return (size_t)-1;
}

static void put_u64(char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (char)(v >> (8 * i)); }
static void put_u32(char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (char)(v >> (8 * i)); }

static void test_hostile(void) {
    const char *good = tmp_path("good.gguf");
    write_sample(good, 32);
    size_t len;
    char *buf = rt_slurp(good, &len);
    if (!buf) { CHECK(0, "read back"); return; }
    char bad[512];
    snprintf(bad, sizeof bad, "%s", tmp_path("bad.gguf"));

    /* every truncation fails with a named error */
    int ok_trunc = 1;
    for (size_t n = 0; n < len; n++) {
        rt_spit(bad, buf, n);
        rt_gguf *g = NULL;
        rt_status s = rt_gguf_open(bad, &g);
        if (s != RT_EINPUT || !strstr(rt_error_message(), bad)) {
            ok_trunc = 0;
            CHECK(0, "truncated to %zu of %zu bytes: status %d (%s)", n, len, s, rt_error_message());
            rt_gguf_close(g);
            break;
        }
    }
    CHECK(ok_trunc, "all %zu truncations refused", len);

    char *m = malloc(len);
    const uint64_t huge = 1ull << 60;
#define MUTATE(what, needle, stmt) do { memcpy(m, buf, len); stmt; rt_spit(bad, m, len); expect_bad(bad, what, needle); } while (0)
    MUTATE("magic", "magic", m[0] = 'X');
    MUTATE("version 1", "version", put_u32(m + 4, 1));
    MUTATE("version 4", "version", put_u32(m + 4, 4));
    MUTATE("tensor count", "do not fit", put_u64(m + 8, huge));
    MUTATE("kv count", "do not fit", put_u64(m + 16, huge));
    MUTATE("kv count + 1", NULL, put_u64(m + 16, 16));
    /* first key's length (at byte 24) */
    MUTATE("key length", "limit", put_u64(m + 24, huge));
    size_t at = find(buf, len, "general.architecture", 20);
    MUTATE("value type", "unknown value type", put_u32(m + at + 20, 77));
    MUTATE("string length", "truncated", put_u64(m + at + 24, huge));
    at = find(buf, len, "t.strs", 6);
    MUTATE("nested array", "array of arrays", put_u32(m + at + 6 + 4, RT_GGUF_ARRAY));
    MUTATE("array count", "does not fit", put_u64(m + at + 6 + 8, huge));
    at = find(buf, len, "t.floats", 8);
    MUTATE("numeric array count", "does not fit", put_u64(m + at + 8 + 8, huge / 2));
    at = find(buf, len, "t.u8", 4);
    MUTATE("duplicate key", "duplicate key", memcpy(m + at, "t.i8", 4));
    /* tensor infos: name "t0", n_dims at +2, ne at +6, type after dims, offset after type */
    at = find(buf, len, "\x02\0\0\0\0\0\0\0t0", 10) + 10;
    MUTATE("n_dims 0", "dimensions", put_u32(m + at, 0));
    MUTATE("n_dims 5", "dimensions", put_u32(m + at, 5));
    MUTATE("dimension huge", "too large", put_u64(m + at + 4, huge * 4));
    MUTATE("dimension product", "too large", put_u64(m + at + 4, 1ull << 40); put_u64(m + at + 12, 1ull << 40));
    MUTATE("tensor too big", "truncated", put_u64(m + at + 12, 1000));
    MUTATE("unknown ggml type", "cannot read", put_u32(m + at + 20, 99));
    MUTATE("unsupported ggml type", "Q2_K", put_u32(m + at + 20, RT_GGML_Q2_K));
    MUTATE("block multiple", "block size", put_u32(m + at + 20, RT_GGML_Q8_0); put_u64(m + at + 4, 16));
    MUTATE("misaligned offset", "alignment", put_u64(m + at + 24, 4));
    MUTATE("offset out of file", "truncated", put_u64(m + at + 24, huge));
    size_t at1 = find(buf, len, "\x02\0\0\0\0\0\0\0t1", 10) + 10;
    MUTATE("overlap", "overlap", put_u64(m + at1 + 12 + 4, 0));
    MUTATE("duplicate tensor", "duplicate tensor", m[at1 - 1] = '0');
#undef MUTATE
    /* general.alignment not a power of two */
    const char *al = tmp_path("align.gguf");
    rt_gguf_writer *w;
    rt_gguf_writer_new(&w);
    rt_gguf_set_u32(w, "general.alignment", 48);
    rt_gguf_write(w, al);
    rt_gguf_writer_free(w);
    expect_bad(al, "alignment 48", "power of two");

    /* the CLI: exit status 2 and one line naming the file */
    memcpy(m, buf, len);
    put_u64(m + 16, huge);
    rt_spit(bad, m, len);
    const char *err = tmp_path("err.txt");
    int rc = rt_run(NULL, err, "export gguf-tensors %s --out %s", bad, tmp_path("x.safetensors"));
    char *msg = rt_slurp(err, NULL);
    CHECK(rc == 2, "CLI exit %d", rc);
    CHECK(msg && strstr(msg, bad) && strstr(msg, "retort: error:"), "CLI message: %s", msg ? msg : "");
    free(msg);
    free(m);
    free(buf);
}

int main(void) {
    test_blocks_32();
    printf("blocks (32)\n");
    test_blocks_k();
    printf("blocks (K)\n");
    test_q8_0_quantize();
    test_round_trip();
    printf("round trip\n");
    test_hostile();
    printf("hostile files\n");
    return rt_test_summary();
}
