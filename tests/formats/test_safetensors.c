/* Tests for train/formats/safetensors.[ch] and train/formats/half.h: round trips, the
 * on-disk layout against the format spec, hand-built files, and every
 * corrupt-file path reporting RT_EINPUT with the file name. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/testutil.h"
#include "train/formats/safetensors.h"

static char path_buf[512];
static const char *tmp_path(const char *name) {
    snprintf(path_buf, sizeof path_buf, "%s/%s", rt_test_tmpdir(), name);
    return path_buf;
}

/* Writes 8-byte length + header + data as given (no padding): a file
 * built by hand, independent of rt_st_write. */
static void write_raw(const char *path, const char *header, const void *data, size_t nd) {
    FILE *f = fopen(path, "wb");
    uint64_t n = strlen(header);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(n >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(header, 1, n, f);
    if (nd) fwrite(data, 1, nd, f);
    fclose(f);
}

static void expect_input_error(const char *path, const char *what, const char *needle) {
    rt_safetensors *st = NULL;
    rt_error_clear();
    rt_status s = rt_st_open(path, &st);
    CHECK(s == RT_EINPUT, "%s: status %d (%s)", what, s, rt_error_message());
    CHECK(st == NULL, "%s: no handle on failure", what);
    CHECK(strstr(rt_error_message(), path) != NULL, "%s: message names the file: %s", what,
          rt_error_message());
    CHECK(strstr(rt_error_message(), needle) != NULL, "%s: message '%s' mentions '%s'", what,
          rt_error_message(), needle);
    rt_st_close(st);
}

static void test_half(void) {
    /* bf16: hand-computed bit patterns, ties to even */
    CHECK(rt_f32_to_bf16(1.0f) == 0x3f80, "bf16(1)");
    CHECK(rt_f32_to_bf16(rt_bits_f32(0x3f808000u)) == 0x3f80, "tie rounds down to even");
    CHECK(rt_f32_to_bf16(rt_bits_f32(0x3f818000u)) == 0x3f82, "tie rounds up to even");
    CHECK(rt_f32_to_bf16(rt_bits_f32(0x3f808001u)) == 0x3f81, "above tie rounds up");
    CHECK(rt_f32_to_bf16(-2.5f) == 0xc020, "bf16(-2.5)");
    CHECK(rt_f32_to_bf16(rt_bits_f32(0x7f7fffffu)) == 0x7f80, "FLT_MAX rounds to inf");
    uint16_t nan = rt_f32_to_bf16(NAN);
    CHECK((nan & 0x7f80) == 0x7f80 && (nan & 0x7f), "NaN stays NaN (%04x)", nan);
    CHECK(rt_bf16_to_f32(0x4049) == 3.140625f, "bf16 0x4049 = 3.140625");
    /* f16: IEEE binary16 reference values */
    CHECK(rt_f32_to_f16(1.0f) == 0x3c00, "f16(1)");
    CHECK(rt_f32_to_f16(65504.0f) == 0x7bff, "f16 max");
    CHECK(rt_f32_to_f16(65519.0f) == 0x7bff, "65519 rounds to max");
    CHECK(rt_f32_to_f16(65520.0f) == 0x7c00, "65520 rounds to inf");
    CHECK(rt_f32_to_f16(0.1f) == 0x2e66, "f16(0.1) = %04x", rt_f32_to_f16(0.1f));
    CHECK(rt_f32_to_f16(ldexpf(1, -24)) == 0x0001, "smallest subnormal");
    CHECK(rt_f32_to_f16(ldexpf(1, -25)) == 0x0000, "half the smallest subnormal ties to 0");
    CHECK(rt_f32_to_f16(ldexpf(3, -26)) == 0x0001, "0.75 ulp rounds up");
    CHECK(rt_f32_to_f16(ldexpf(3, -25)) == 0x0002, "1.5 ulp ties to even 2");
    CHECK(rt_f32_to_f16(-ldexpf(1, -14)) == 0x8400, "-smallest normal");
    CHECK(rt_f16_to_f32(0x0001) == ldexpf(1, -24), "subnormal decode");
    CHECK(rt_f16_to_f32(0xc000) == -2.0f, "f16 -2");
    CHECK(isinf(rt_f16_to_f32(0x7c00)) && isnan(rt_f16_to_f32(0x7e00)), "inf/nan decode");
    /* every finite f16 survives f16 -> f32 -> f16 */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00) continue;
        if (rt_f32_to_f16(rt_f16_to_f32((uint16_t)h)) != h) bad++;
    }
    CHECK(bad == 0, "%d f16 values do not round-trip", bad);
    /* every bf16 survives bf16 -> f32 -> bf16 (NaNs excluded) */
    bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7f80) == 0x7f80 && (h & 0x7f)) continue;
        if (rt_f32_to_bf16(rt_bf16_to_f32((uint16_t)h)) != h) bad++;
    }
    CHECK(bad == 0, "%d bf16 values do not round-trip", bad);
    printf("half conversions: done\n");
}

static void test_round_trip(void) {
    const float a[6] = {1, -2, 3.5f, 0, 1e-8f, -7};
    uint16_t b[4];
    const float bsrc[4] = {0.5f, -1.25f, 3.0f, 100.0f};
    for (int i = 0; i < 4; i++) b[i] = rt_f32_to_bf16(bsrc[i]);
    const uint8_t c[5] = {1, 2, 3, 250, 0};
    const int64_t d[2] = {-1, 1LL << 40};
    const float e = 42.0f;
    rt_st_tensor ts[5] = {
        {.name = "zeta.f32", .dtype = RT_ST_F32, .ndim = 2, .shape = {2, 3}, .data = a, .nbytes = sizeof a},
        {.name = "bf", .dtype = RT_ST_BF16, .ndim = 1, .shape = {4}, .data = b, .nbytes = sizeof b},
        {.name = "bytes", .dtype = RT_ST_U8, .ndim = 1, .shape = {5}, .data = c, .nbytes = sizeof c},
        {.name = "alpha.i64", .dtype = RT_ST_I64, .ndim = 1, .shape = {2}, .data = d, .nbytes = sizeof d},
        {.name = "scalar", .dtype = RT_ST_F32, .ndim = 0, .data = &e, .nbytes = 4},
    };
    const char *meta[] = {"format", "pt", "note", "quote \" and \\ ok", NULL};
    const char *path = tmp_path("rt.safetensors");
    rt_status s = rt_st_write(path, ts, 5, meta);
    CHECK(s == RT_OK, "write: %s", rt_error_message());
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0, "no .tmp left behind");

    /* Layout per the spec, read independently of the reader: 8-byte LE
     * length, header padded to 8, then exactly the tensor bytes. */
    FILE *f = fopen(path, "rb");
    unsigned char len8[8] = {0};
    CHECK(f && fread(len8, 1, 8, f) == 8, "read length");
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | len8[i];
    struct stat sb;
    stat(path, &sb);
    CHECK(n % 8 == 0, "header length %llu is a multiple of 8", (unsigned long long)n);
    CHECK((uint64_t)sb.st_size == 8 + n + sizeof a + sizeof b + sizeof c + sizeof d + 4,
          "file size %lld = header + data, no holes", (long long)sb.st_size);
    /* sorted by alignment then name: alpha.i64 (8) first, then scalar, zeta.f32 (4), bf (2), bytes (1) */
    unsigned char first[16];
    CHECK(fseek(f, (long)(8 + n), SEEK_SET) == 0 && fread(first, 1, 16, f) == 16, "read data");
    CHECK(memcmp(first, d, 16) == 0, "the 8-byte tensor comes first");
    if (f) fclose(f);

    rt_safetensors *st = NULL;
    s = rt_st_open(path, &st);
    CHECK(s == RT_OK && st, "open: %s", rt_error_message());
    if (!st) return;
    CHECK(rt_st_count(st) == 5, "count %zu", rt_st_count(st));
    for (int i = 0; i < 5; i++) {
        const rt_st_tensor *t = rt_st_find(st, ts[i].name);
        CHECK(t != NULL, "find %s", ts[i].name);
        if (!t) continue;
        CHECK(t->dtype == ts[i].dtype && t->ndim == ts[i].ndim, "%s dtype/ndim", ts[i].name);
        CHECK(t->nbytes == ts[i].nbytes && memcmp(t->data, ts[i].data, t->nbytes) == 0,
              "%s bytes equal", ts[i].name);
        CHECK((uintptr_t)t->data % rt_st_dtype_size(t->dtype) == 0, "%s aligned", ts[i].name);
        for (int k = 0; k < t->ndim; k++) CHECK(t->shape[k] == ts[i].shape[k], "%s shape", ts[i].name);
    }
    const rt_st_tensor *bt = rt_st_find(st, "bf");
    if (bt) CHECK(rt_bf16_to_f32(((const uint16_t *)bt->data)[1]) == -1.25f, "bf16 value");
    CHECK(rt_st_find(st, "nope") == NULL, "absent tensor is NULL");
    CHECK(rt_st_metadata(st, "format") && strcmp(rt_st_metadata(st, "format"), "pt") == 0, "meta format");
    CHECK(rt_st_metadata(st, "note") && strcmp(rt_st_metadata(st, "note"), "quote \" and \\ ok") == 0,
          "meta escaping");
    CHECK(rt_st_metadata(st, "absent") == NULL, "absent metadata is NULL");
    CHECK(strcmp(rt_st_path(st), path) == 0, "path kept");
    rt_st_close(st);

    /* rewriting the same path replaces it atomically */
    s = rt_st_write(path, ts, 1, NULL);
    CHECK(s == RT_OK, "overwrite");
    s = rt_st_open(path, &st);
    CHECK(s == RT_OK && rt_st_count(st) == 1 && rt_st_metadata(st, "format") == NULL, "overwritten file");
    rt_st_close(st);
    printf("round trip: done\n");
}

/* A header that is not 8-aligned and uses the spec's own field order. */
static void test_hand_built(void) {
    const char *path = tmp_path("hand.safetensors");
    const float vals[3] = {1.5f, -2.0f, 0.25f};
    unsigned char data[14];
    memcpy(data, vals, 12);
    data[12] = 0x80, data[13] = 0x3f; /* bf16 1.0 */
    write_raw(path, "{\"__metadata__\":{\"k\":\"v\"},\"w\":{\"dtype\":\"F32\",\"shape\":[3],"
                    "\"data_offsets\":[0,12]},\"h\":{\"dtype\":\"BF16\",\"shape\":[1,1],"
                    "\"data_offsets\":[12,14]}}",
              data, sizeof data);
    rt_safetensors *st = NULL;
    rt_status s = rt_st_open(path, &st);
    CHECK(s == RT_OK, "open hand-built: %s", rt_error_message());
    if (!st) return;
    const rt_st_tensor *w = rt_st_find(st, "w"), *h = rt_st_find(st, "h");
    CHECK(w && w->ndim == 1 && w->shape[0] == 3 && w->nbytes == 12, "w entry");
    if (w) {
        CHECK((uintptr_t)w->data % 4 == 0, "unaligned file still gives aligned data");
        const float *wf = w->data;
        CHECK(wf[0] == 1.5f && wf[1] == -2.0f && wf[2] == 0.25f, "w values");
    }
    CHECK(h && h->dtype == RT_ST_BF16 && h->ndim == 2 &&
          rt_bf16_to_f32(*(const uint16_t *)h->data) == 1.0f, "h entry");
    CHECK(rt_st_metadata(st, "k") && strcmp(rt_st_metadata(st, "k"), "v") == 0, "metadata");
    CHECK(rt_st_get(st, 0) && strcmp(rt_st_get(st, 0)->name, "w") == 0, "header order kept");
    CHECK(rt_st_get(st, 2) == NULL, "get out of range is NULL");
    rt_st_close(st);
    printf("hand-built file: done\n");
}

static void test_corrupt(void) {
    const float z[4] = {0};
    const char *p;

    p = tmp_path("missing.safetensors");
    expect_input_error(p, "missing file", "cannot open");

    p = tmp_path("short.safetensors");
    FILE *f = fopen(p, "wb");
    fwrite("abc", 1, 3, f);
    fclose(f);
    expect_input_error(p, "3-byte file", "truncated");

    p = tmp_path("hdrtrunc.safetensors");
    f = fopen(p, "wb");
    unsigned char len8[8] = {200, 0, 0, 0, 0, 0, 0, 0};
    fwrite(len8, 1, 8, f);
    fwrite("{\"a\":", 1, 5, f);
    fclose(f);
    expect_input_error(p, "header length past end", "truncated header");

    /* a good file cut short inside the data */
    rt_st_tensor t = {.name = "x", .dtype = RT_ST_F32, .ndim = 1, .shape = {4}, .data = z, .nbytes = 16};
    p = tmp_path("datatrunc.safetensors");
    CHECK(rt_st_write(p, &t, 1, NULL) == RT_OK, "write for truncation");
    struct stat sb;
    stat(p, &sb);
    CHECK(truncate(p, sb.st_size - 4) == 0, "truncate");
    expect_input_error(p, "data truncated", "truncated");

    p = tmp_path("badjson.safetensors");
    write_raw(p, "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],", z, 16);
    expect_input_error(p, "bad JSON", "invalid JSON");

    p = tmp_path("notobj.safetensors");
    write_raw(p, "[1,2]", NULL, 0);
    expect_input_error(p, "array header", "not a JSON object");

    p = tmp_path("past.safetensors");
    write_raw(p, "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,32]}}", z, 16);
    expect_input_error(p, "offsets past end", "past the end");

    p = tmp_path("mismatch.safetensors");
    write_raw(p, "{\"x\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,16]}}", z, 16);
    expect_input_error(p, "shape/bytes mismatch", "[2,3]");

    p = tmp_path("bf16mismatch.safetensors");
    write_raw(p, "{\"x\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,16]}}", z, 16);
    expect_input_error(p, "dtype size mismatch", "span 16 bytes");

    p = tmp_path("reversed.safetensors");
    write_raw(p, "{\"x\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,4]}}", z, 16);
    expect_input_error(p, "reversed offsets", "end before begin");

    p = tmp_path("dtype.safetensors");
    write_raw(p, "{\"x\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[0,4]}}", z, 16);
    expect_input_error(p, "unknown dtype", "F8_E4M3");

    p = tmp_path("negshape.safetensors");
    write_raw(p, "{\"x\":{\"dtype\":\"U8\",\"shape\":[-4],\"data_offsets\":[0,4]}}", z, 16);
    expect_input_error(p, "negative dim", "shape[0]");

    p = tmp_path("overlap.safetensors");
    write_raw(p, "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", z, 16);
    expect_input_error(p, "overlapping tensors", "overlap");

    p = tmp_path("dup.safetensors");
    write_raw(p, "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", z, 16);
    expect_input_error(p, "duplicate name", "twice");

    p = tmp_path("meta.safetensors");
    write_raw(p, "{\"__metadata__\":{\"n\":3}}", NULL, 0);
    expect_input_error(p, "non-string metadata", "__metadata__");

    p = tmp_path("garbage.safetensors");
    write_raw(p, "{}  x", NULL, 0);
    expect_input_error(p, "garbage after header", "garbage");

    /* writer argument errors */
    rt_st_tensor two[2] = {t, t};
    rt_error_clear();
    CHECK(rt_st_write(tmp_path("w.safetensors"), two, 2, NULL) == RT_EINPUT &&
          strstr(rt_error_message(), "twice"), "duplicate names rejected: %s", rt_error_message());
    two[1].name = "y";
    two[1].nbytes = 12;
    CHECK(rt_st_write(tmp_path("w.safetensors"), two, 2, NULL) == RT_EINPUT &&
          strstr(rt_error_message(), "nbytes"), "nbytes mismatch rejected: %s", rt_error_message());
    CHECK(access(tmp_path("w.safetensors"), F_OK) != 0, "nothing written on error");
    CHECK(rt_st_write("/nonexistent-dir/x.safetensors", &t, 1, NULL) == RT_EINPUT &&
          strstr(rt_error_message(), "/nonexistent-dir/x.safetensors.tmp"), "unwritable path: %s",
          rt_error_message());
    printf("corrupt files: done\n");
}

int main(void) {
    test_half();
    test_round_trip();
    test_hand_built();
    test_corrupt();
    return rt_test_summary();
}
