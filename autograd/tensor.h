/* retort — tensors, memory arenas and the parameter store.
 *
 * A tensor is small and plain: dtype, device, up to 4 dims of row-major
 * contiguous storage, a data pointer it does not own, an optional gradient
 * and the tape node that produced it. Storage comes from one of two places:
 *   - rt_arena: a chunked bump allocator for activations, reset every step
 *     (after the first step no allocation reaches malloc/cudaMalloc);
 *   - rt_params: the persistent store of trainable parameters, laid out as
 *     ONE contiguous f32 buffer for values and one for gradients, so a
 *     data-parallel all-reduce or a ZeRO-1 shard is one call over a byte
 *     range. Frozen weights (f32, bf16 or NF4) live outside it and have no
 *     gradient memory at all.
 */
#ifndef RT_TENSOR_H
#define RT_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/dtype.h"
#include "kernels/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RT_MAX_DIMS 4

struct rt_node;
struct rt_nf4_state;

typedef struct rt_tensor {
    rt_dtype dtype;
    rt_device device;
    int ndim;                      /* 0 (scalar) .. RT_MAX_DIMS */
    int64_t shape[RT_MAX_DIMS];
    void *data;                    /* not owned: arena, parameter store or mmap */
    struct rt_tensor *grad;        /* f32, same shape; NULL until backward reaches it */
    bool requires_grad;
    struct rt_node *node;          /* producer on the tape; NULL for leaves */
    struct rt_nf4_state *nf4;      /* quantization state when dtype == RT_NF4 */
    const char *name;              /* optional, for messages; not owned */
} rt_tensor;

int64_t rt_numel(const rt_tensor *t);
/* Bytes of storage (NF4: packed codes only, ceil(numel/2)). */
size_t rt_nbytes(const rt_tensor *t);
bool rt_same_shape(const rt_tensor *a, const rt_tensor *b);
/* "[2,3,4]" into buf (for messages). */
const char *rt_shape_str(const rt_tensor *t, char *buf, size_t cap);

/* ---- arena: per-step scratch memory -------------------------------------
 * Allocations are 256-byte aligned and live until rt_arena_reset (or a
 * release to an earlier mark). Chunks are kept across resets, so a steady
 * state step loop allocates nothing from the system. */
typedef struct rt_arena rt_arena;
typedef struct { int chunk; size_t used; int meta_chunk; size_t meta_used; } rt_arena_mark;

rt_arena *rt_arena_new(rt_device dev, size_t chunk_bytes);
void rt_arena_free(rt_arena *a);
/* NULL (with an error message saying how much was asked) when the device
 * is out of memory. */
void *rt_arena_alloc(rt_arena *a, size_t bytes);
/* Host memory from the arena (tensor structs, tape nodes, op scratch the
 * host reads), released with the same marks and resets. */
void *rt_arena_alloc_host(rt_arena *a, size_t bytes);
rt_arena_mark rt_arena_get_mark(const rt_arena *a);
void rt_arena_release(rt_arena *a, rt_arena_mark m);
void rt_arena_reset(rt_arena *a);
size_t rt_arena_peak(const rt_arena *a);     /* high-water mark in bytes */
size_t rt_arena_reserved(const rt_arena *a); /* bytes held from the system */

/* A tensor (struct and storage) from the arena; contents uninitialised.
 * rt_arena_tensor_zero zero-fills. NULL on OOM. */
rt_tensor *rt_arena_tensor(rt_arena *a, rt_dtype dt, int ndim, const int64_t *shape);
rt_tensor *rt_arena_tensor_zero(rt_arena *a, rt_dtype dt, int ndim, const int64_t *shape);

/* ---- persistent tensors (frozen weights, caches) --------------------------
 * Owned by the caller: free with rt_tensor_free (frees struct and data). */
rt_tensor *rt_tensor_new(rt_device dev, rt_dtype dt, int ndim, const int64_t *shape);
void rt_tensor_free(rt_tensor *t);

/* ---- parameter store: all trainable parameters in one flat buffer -------
 * Two phases: rt_params_add declares tensors (shape only); rt_params_finalize
 * allocates `data` and `grad` (each `numel` f32, zeroed, numel padded up to
 * a multiple of `pad_multiple` so ZeRO shards are equal) and points every
 * declared tensor (and its grad tensor) into them, in declaration order. */
typedef struct rt_params {
    rt_device device;
    int count;
    rt_tensor **tensors;  /* owned */
    int64_t *offsets;     /* element offset of each tensor in the flat buffer */
    int64_t numel;        /* padded total */
    int64_t numel_used;   /* sum of the tensors' sizes */
    float *data;          /* owned, device memory */
    float *grad;          /* owned, device memory */
} rt_params;

void rt_params_init(rt_params *p, rt_device dev);
/* The returned tensor has requires_grad set; data/grad are valid after
 * finalize. `name` is copied. NULL on OOM. */
rt_tensor *rt_params_add(rt_params *p, const char *name, int ndim, const int64_t *shape);
rt_status rt_params_finalize(rt_params *p, int64_t pad_multiple);
void rt_params_zero_grad(rt_params *p);
void rt_params_free(rt_params *p);
/* Index of the tensor called `name`, or -1. */
int rt_params_find(const rt_params *p, const char *name);

#ifdef __cplusplus
}
#endif
#endif
