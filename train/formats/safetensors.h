/* retort — safetensors reader and writer.
 *
 * Format (https://github.com/huggingface/safetensors, README "Format"):
 *   8 bytes   N, little-endian u64: length of the JSON header
 *   N bytes   UTF-8 JSON object {name: {"dtype": "F32", "shape": [..],
 *             "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}}
 *   rest      the byte buffer; offsets are relative to its start (8 + N),
 *             tensors are row-major (C order), little-endian.
 * retort assumes a little-endian host (x86-64, aarch64).
 */
#ifndef RT_SAFETENSORS_H
#define RT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/error.h"
#include "train/formats/half.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Element types retort reads and writes; names in the file are the comments. */
typedef enum {
    RT_ST_F32,  /* "F32"  */
    RT_ST_BF16, /* "BF16" */
    RT_ST_F16,  /* "F16"  */
    RT_ST_U8,   /* "U8"   */
    RT_ST_I32,  /* "I32"  */
    RT_ST_I64,  /* "I64"  */
    RT_ST_F64,  /* "F64"  */
} rt_st_dtype;

#define RT_ST_MAX_DIMS 8

/* One tensor: `data` points to nbytes = prod(shape) * rt_st_dtype_size(dtype)
 * bytes, row-major, aligned to the element size. ndim 0 is a scalar (one
 * element). In a reader result everything (name, data) is owned by the
 * rt_safetensors and lives until rt_st_close. */
typedef struct {
    const char *name;
    rt_st_dtype dtype;
    int ndim;
    int64_t shape[RT_ST_MAX_DIMS];
    const void *data;
    size_t nbytes;
} rt_st_tensor;

typedef struct rt_safetensors rt_safetensors;

/* Bytes per element (4, 2, 2, 1, 4, 8, 8). */
size_t rt_st_dtype_size(rt_st_dtype dt);

/* The file's dtype string ("F32", ...). */
const char *rt_st_dtype_name(rt_st_dtype dt);

/* Product of shape[0..ndim) (1 for ndim 0). */
int64_t rt_st_numel(const rt_st_tensor *t);

/* Opens and validates a .safetensors file. The file is mmapped read-only;
 * tensor data points into the mapping (or, if the file's data section is
 * not aligned to the element sizes, into one aligned heap copy of it).
 * Every tensor's dtype, shape, offsets (within the file, begin <= end,
 * end - begin == numel * dtype size, no two tensors overlapping) and every
 * metadata value (a string) is checked here, so later access cannot fault.
 * Errors: RT_EINPUT naming the path and the problem (missing file,
 * truncated, bad JSON, bad entry, unsupported dtype); RT_EINTERNAL on OOM.
 * On success *out is owned by the caller: free with rt_st_close. */
rt_status rt_st_open(const char *path, rt_safetensors **out);

/* The path given to rt_st_open. */
const char *rt_st_path(const rt_safetensors *st);

/* Tensors in file-header order; i < rt_st_count. */
size_t rt_st_count(const rt_safetensors *st);
const rt_st_tensor *rt_st_get(const rt_safetensors *st, size_t i);

/* The tensor called `name`, or NULL. */
const rt_st_tensor *rt_st_find(const rt_safetensors *st, const char *name);

/* The "__metadata__" value for `key`, or NULL if absent. Owned by st. */
const char *rt_st_metadata(const rt_safetensors *st, const char *key);

/* Unmaps and frees; NULL is a no-op. */
void rt_st_close(rt_safetensors *st);

/* Writes tensors[0..n) and metadata to `path` as safetensors, the way the
 * Hugging Face writer (safetensors `serialize`) lays it out: the header is
 * padded with spaces to a multiple of 8 bytes so the buffer starts 8-aligned,
 * tensors are stored contiguously sorted by element size (largest first)
 * and then by name, so every tensor is aligned to its element size and
 * files of one dtype are sorted by name. meta_kv is NULL or a NULL-terminated
 * list of key, value, key, value, ... strings. The file is written to
 * "<path>.tmp" and renamed onto `path`, so readers never see half a file.
 * Only tensors[i].name/dtype/ndim/shape/data/nbytes are read; nbytes must
 * equal numel * dtype size. Errors: RT_EINPUT for bad arguments (duplicate
 * or empty name, nbytes mismatch, ndim out of range) or an unwritable path
 * (message names the path and the OS error); RT_EINTERNAL on OOM. */
rt_status rt_st_write(const char *path, const rt_st_tensor *tensors, size_t n,
                      const char *const *meta_kv);

/* A list of tensors being assembled for rt_st_write, plus the buffers it
 * owns (converted or quantized data, generated names), all freed together
 * by rt_st_list_free. Zero-initialise it. */
typedef struct {
    rt_st_tensor *t;
    size_t n, cap;
    void **own;
    size_t nown, capown;
} rt_st_list;

/* Takes ownership of p (freed by rt_st_list_free); if that fails, p is freed
 * at once. RT_EINTERNAL for a NULL p or out of memory. */
rt_status rt_st_list_own(rt_st_list *l, void *p);
/* Appends a tensor; `name` and `data` must be owned by l or outlive it. */
rt_status rt_st_list_add(rt_st_list *l, const char *name, rt_st_dtype dtype, int ndim,
                         const int64_t *shape, const void *data);
void rt_st_list_free(rt_st_list *l);

#ifdef __cplusplus
}
#endif
#endif
