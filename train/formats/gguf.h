/* retort — GGUF files (ggml's model format, as llama.cpp and gguf-py use it):
 * reader, dequantization of the common tensor types, and a writer.
 *
 * Layout (ggml docs/gguf.md; ggml/src/gguf.cpp): all integers little-endian.
 *   u32 magic "GGUF" | u32 version (2 or 3; v1 is refused) |
 *   u64 n_tensors | u64 n_kv |
 *   n_kv x { string key | u32 type | value } |
 *   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset } |
 *   padding to general.alignment (u32 key, default 32) | tensor data.
 * string = u64 length + bytes (no NUL). An array value is u32 element type +
 * u64 count + elements. ne[0] is the fastest-varying dimension (ggml order),
 * so an nn.Linear weight [out, in] is stored with ne = {in, out}. A tensor's
 * offset is relative to the start of the data section and a multiple of the
 * alignment.
 *
 * Hostile files: every count, length and offset is checked against the file
 * size before it is used, so a reader never reads outside the mapping and
 * allocates at most O(file size) memory. Caps (each violation is RT_EINPUT
 * naming the file and what is wrong):
 *   n_tensors, n_kv           <= RT_GGUF_MAX_ITEMS (1<<22) and fit in the file
 *   key / tensor name length  <= RT_GGUF_MAX_NAME (1024) bytes
 *   n_dims                    1..4 (GGML_MAX_DIMS); each ne in [0, 2^62), ne[0] a
 *                             multiple of the type's block size, product < 2^62
 *   arrays                    elements must fit in the file; nested arrays refused
 *   general.alignment         a power of two in [1, 1<<16]
 *   tensor data               inside the file, offsets aligned, no two tensors overlap
 * Duplicate keys or tensor names are refused (as gguf.cpp does).
 */
#ifndef RT_GGUF_H
#define RT_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RT_GGUF_MAX_ITEMS (1u << 22)
#define RT_GGUF_MAX_NAME 1024
#define RT_GGUF_MAX_DIMS 4
#define RT_GGUF_DEFAULT_ALIGNMENT 32

/* Metadata value types (gguf_type). */
typedef enum {
    RT_GGUF_UINT8 = 0, RT_GGUF_INT8 = 1, RT_GGUF_UINT16 = 2, RT_GGUF_INT16 = 3,
    RT_GGUF_UINT32 = 4, RT_GGUF_INT32 = 5, RT_GGUF_FLOAT32 = 6, RT_GGUF_BOOL = 7,
    RT_GGUF_STRING = 8, RT_GGUF_ARRAY = 9, RT_GGUF_UINT64 = 10, RT_GGUF_INT64 = 11,
    RT_GGUF_FLOAT64 = 12, RT_GGUF_TYPE_COUNT
} rt_gguf_type;

/* Tensor types (enum ggml_type, ggml.h). Only the ones with a block layout
 * in rt_ggml_type_* are readable; others are refused by name. */
typedef enum {
    RT_GGML_F32 = 0, RT_GGML_F16 = 1, RT_GGML_Q4_0 = 2, RT_GGML_Q4_1 = 3,
    RT_GGML_Q5_0 = 6, RT_GGML_Q5_1 = 7, RT_GGML_Q8_0 = 8, RT_GGML_Q8_1 = 9,
    RT_GGML_Q2_K = 10, RT_GGML_Q3_K = 11, RT_GGML_Q4_K = 12, RT_GGML_Q5_K = 13,
    RT_GGML_Q6_K = 14, RT_GGML_Q8_K = 15, RT_GGML_BF16 = 30,
} rt_ggml_type;

/* Elements per block and bytes per block of a type (F32: 1 and 4); both 0
 * for a type retort cannot dequantize. */
int rt_ggml_block_size(rt_ggml_type t);
size_t rt_ggml_type_size(rt_ggml_type t);
/* "F32", "Q4_K", ...; "type<N>" style names are not returned: unknown -> "?". */
const char *rt_ggml_type_name(rt_ggml_type t);
/* Bytes of n elements of type t (n a multiple of the block size). */
size_t rt_ggml_row_size(rt_ggml_type t, int64_t n);

/* Dequantizes n elements (a multiple of the block size) of type t at src to
 * float32, exactly as ggml's dequantize_row_* (ggml-quants.c) and gguf-py's
 * gguf.quants.dequantize do: same products in the same order, so the
 * results are bit-identical (this file is built with -ffp-contract=off).
 * Block layouts (QK = 32, QK_K = 256; d, m, dmin are f16):
 *   Q4_0 {d; qs[16]}          x = (q - 8) * d        q: low nibbles = elements 0..15
 *   Q4_1 {d, m; qs[16]}       x = q * d + m
 *   Q5_0 {d; qh[4]; qs[16]}   x = (q | hbit << 4 - 16) * d   hbit j = bit j of qh (u32 LE)
 *   Q5_1 {d, m; qh[4]; qs[16]} x = (q | hbit << 4) * d + m
 *   Q8_0 {d; int8 qs[32]}     x = q * d
 *   Q4_K {d, dmin; scales[12]; qs[128]}: 8 sub-blocks of 32 with 6-bit
 *        scale sc and min mn (get_scale_min_k4); x = (d*sc) * q - (dmin*mn)
 *   Q5_K {d, dmin; scales[12]; qh[32]; qs[128]}: as Q4_K with a 5th bit from qh
 *   Q6_K {ql[128]; qh[64]; int8 scales[16]; d}: 16 sub-blocks of 16,
 *        x = (d*scale) * (q - 32), q 6 bits from ql (4) and qh (2)
 * F16 and BF16 widen exactly. Returns RT_EINPUT for a type without a layout. */
rt_status rt_ggml_dequantize(rt_ggml_type t, const void *src, float *dst, int64_t n);

/* One metadata entry. Pointers point into the mapping (valid until close). */
typedef struct {
    char *key;               /* NUL-terminated copy */
    rt_gguf_type type;
    rt_gguf_type arr_type;   /* element type when type == ARRAY */
    uint64_t n;              /* ARRAY: element count; STRING: byte length */
    const uint8_t *data;     /* scalar bytes, string bytes, or the first array element */
    const uint64_t *str_off; /* ARRAY of STRING: offsets of each element's u64 length
                                from data (n entries, owned by the file) */
} rt_gguf_kv;

typedef struct {
    char *name;                      /* NUL-terminated copy */
    rt_ggml_type type;
    int n_dims;
    int64_t ne[RT_GGUF_MAX_DIMS];    /* ggml order; unused dims are 1 */
    uint64_t offset;                 /* from the start of the data section */
    size_t nbytes;
    const void *data;                /* into the mapping */
} rt_gguf_tensor;

typedef struct rt_gguf rt_gguf;

/* Maps and parses `path` (read-only). On success *out is the caller's (free
 * with rt_gguf_close). Errors: RT_EINPUT "<path>: <problem>" for any
 * malformed or unsupported file (see the caps above); RT_EINTERNAL on OOM. */
rt_status rt_gguf_open(const char *path, rt_gguf **out);
void rt_gguf_close(rt_gguf *g);

const char *rt_gguf_path(const rt_gguf *g);
uint32_t rt_gguf_version(const rt_gguf *g);
size_t rt_gguf_alignment(const rt_gguf *g);

size_t rt_gguf_kv_count(const rt_gguf *g);
const rt_gguf_kv *rt_gguf_kv_at(const rt_gguf *g, size_t i);
/* The entry with this key, or NULL. */
const rt_gguf_kv *rt_gguf_find(const rt_gguf *g, const char *key);

/* Typed getters. Absent key: RT_OK with *out untouched when `required` is
 * false, else RT_EINPUT "<path>: missing key <key>". A present key of the
 * wrong type (any integer type is accepted for integers if the value fits;
 * float32/float64 for floats) is RT_EINPUT naming key and type. */
rt_status rt_gguf_get_int(const rt_gguf *g, const char *key, bool required, int64_t *out);
rt_status rt_gguf_get_float(const rt_gguf *g, const char *key, bool required, double *out);
rt_status rt_gguf_get_bool(const rt_gguf *g, const char *key, bool required, bool *out);
/* *out points into the mapping (not NUL-terminated), *len its length. */
rt_status rt_gguf_get_str(const rt_gguf *g, const char *key, bool required, const char **out,
                          size_t *len);

/* Element i of an array of strings (i < kv->n). */
void rt_gguf_arr_str(const rt_gguf_kv *kv, uint64_t i, const char **s, size_t *len);
/* Element i of a numeric/bool array, converted. */
int64_t rt_gguf_arr_int(const rt_gguf_kv *kv, uint64_t i);
double rt_gguf_arr_float(const rt_gguf_kv *kv, uint64_t i);
/* Bytes per element of a scalar type (0 for STRING/ARRAY). */
size_t rt_gguf_type_size(rt_gguf_type t);
const char *rt_gguf_type_name(rt_gguf_type t);

size_t rt_gguf_tensor_count(const rt_gguf *g);
const rt_gguf_tensor *rt_gguf_tensor_at(const rt_gguf *g, size_t i);
const rt_gguf_tensor *rt_gguf_find_tensor(const rt_gguf *g, const char *name);
int64_t rt_gguf_tensor_numel(const rt_gguf_tensor *t);

/* ---- writer -------------------------------------------------------------- */

/* Builds a GGUF v3 file in memory order: metadata in the order set, then
 * tensors in the order added, data aligned to `alignment` (general.alignment
 * is written only when it is not 32). Keys and strings are copied; tensor
 * data is referenced until rt_gguf_writer_free. */
typedef struct rt_gguf_writer rt_gguf_writer;

rt_status rt_gguf_writer_new(rt_gguf_writer **out);
void rt_gguf_writer_free(rt_gguf_writer *w);
rt_status rt_gguf_set_str(rt_gguf_writer *w, const char *key, const char *val);
rt_status rt_gguf_set_u32(rt_gguf_writer *w, const char *key, uint32_t val);
rt_status rt_gguf_set_i32(rt_gguf_writer *w, const char *key, int32_t val);
rt_status rt_gguf_set_f32(rt_gguf_writer *w, const char *key, float val);
rt_status rt_gguf_set_bool(rt_gguf_writer *w, const char *key, bool val);
/* Array of n scalars of type t (not STRING/ARRAY), copied from data. */
rt_status rt_gguf_set_arr(rt_gguf_writer *w, const char *key, rt_gguf_type t, const void *data,
                          uint64_t n);
/* Array of n strings (lens[i] bytes each; lens NULL: NUL-terminated). */
rt_status rt_gguf_set_arr_str(rt_gguf_writer *w, const char *key, const char *const *s,
                              const size_t *lens, uint64_t n);
/* A raw value already encoded (type + bytes as they go into the file, e.g.
 * copied from another file's rt_gguf_kv): used to carry metadata over. */
rt_status rt_gguf_set_raw(rt_gguf_writer *w, const char *key, rt_gguf_type type,
                          const void *bytes, size_t nbytes);
/* The encoded bytes of a kv's value (what rt_gguf_set_raw takes): *bytes
 * points into the mapping. */
void rt_gguf_kv_raw(const rt_gguf_kv *kv, const void **bytes, size_t *nbytes);
/* ne in ggml order; nbytes must equal rt_ggml_row_size(type, numel). */
rt_status rt_gguf_add_tensor(rt_gguf_writer *w, const char *name, rt_ggml_type type, int n_dims,
                             const int64_t *ne, const void *data, size_t nbytes);
/* Writes the file atomically (path.tmp + rename). RT_EINPUT if unwritable. */
rt_status rt_gguf_write(rt_gguf_writer *w, const char *path);

/* Quantizes n floats (a multiple of 32) to Q8_0 as ggml's
 * quantize_row_q8_0_ref: d = amax/127 (f16), q = round(x/d). */
void rt_ggml_quantize_q8_0(const float *x, void *dst, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
