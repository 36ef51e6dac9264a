#include "autograd/tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

int64_t rt_numel(const rt_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

size_t rt_nbytes(const rt_tensor *t) {
    int64_t n = rt_numel(t);
    return t->dtype == RT_NF4 ? (size_t)(n + 1) / 2 : (size_t)n * rt_dtype_size(t->dtype);
}

bool rt_same_shape(const rt_tensor *a, const rt_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}

const char *rt_shape_str(const rt_tensor *t, char *buf, size_t cap) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->ndim && o < cap; d++)
        o += (size_t)snprintf(buf + o, cap - o, d ? ",%lld" : "%lld", (long long)t->shape[d]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
    return buf;
}

static void set_shape(rt_tensor *t, rt_dtype dt, int ndim, const int64_t *shape) {
    t->dtype = dt;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
}

/* ---- arena ----------------------------------------------------------------
 * Two pools: one of device memory for tensor data, one of host memory for
 * tensor structs and tape nodes (a CUDA arena's metadata must stay readable
 * by the host). Each pool is a list of chunks used front to back. */

#define ARENA_ALIGN 256
#define ARENA_MAX_CHUNKS 64

typedef struct {
    char *base;
    size_t size, used;
    size_t faulted; /* [0, faulted) has been pre-faulted (CPU) */
} arena_chunk;

typedef struct {
    const rt_kernels *k;
    size_t chunk_bytes;
    int n_chunks, cur;
    arena_chunk chunks[ARENA_MAX_CHUNKS];
    size_t peak, reserved;
} arena_pool;

struct rt_arena {
    rt_device device;
    arena_pool data, meta;
};

/* Pre-faulting runs ahead of the bump pointer by at least this much, so its
 * parallel region is entered a few times per chunk, not per tensor; the
 * cost is at most this much resident memory beyond the arena's peak. */
#define ARENA_PREFAULT_AHEAD ((size_t)32 << 20)

/* Fresh pages of c up to `end` are faulted in by every thread at once
 * (kernels' prefault) before the tensor that asked for them is written. */
static void chunk_prefault(const arena_pool *p, arena_chunk *c, size_t end) {
    if (!p->k->prefault || end <= c->faulted) return;
    size_t target = c->faulted + ARENA_PREFAULT_AHEAD;
    if (target < end) target = end;
    if (target > c->size) target = c->size;
    p->k->prefault(c->base + c->faulted, target - c->faulted);
    c->faulted = target;
}

rt_arena *rt_arena_new(rt_device dev, size_t chunk_bytes) {
    const rt_kernels *k = rt_kernels_for(dev);
    if (!k) return NULL;
    rt_arena *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->device = dev;
    a->data.k = k;
    a->data.chunk_bytes = chunk_bytes ? chunk_bytes : (size_t)64 << 20;
    a->meta.k = &rt_kernels_cpu;
    a->meta.chunk_bytes = (size_t)1 << 20;
    return a;
}

static void pool_free(arena_pool *p) {
    for (int i = 0; i < p->n_chunks; i++) p->k->free(p->chunks[i].base);
}

void rt_arena_free(rt_arena *a) {
    if (!a) return;
    pool_free(&a->data);
    pool_free(&a->meta);
    free(a);
}

static void pool_note_peak(arena_pool *p) {
    size_t u = 0;
    for (int i = 0; i <= p->cur && i < p->n_chunks; i++) u += p->chunks[i].used;
    if (u > p->peak) p->peak = u;
}

static void *pool_alloc(arena_pool *p, size_t bytes) {
    bytes = (bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    if (bytes == 0) bytes = ARENA_ALIGN;
    /* Room in the current chunk, or in a later chunk kept from an earlier step. */
    while (p->cur < p->n_chunks) {
        arena_chunk *c = &p->chunks[p->cur];
        if (c->size - c->used >= bytes) {
            chunk_prefault(p, c, c->used + bytes);
            void *r = c->base + c->used;
            c->used += bytes;
            pool_note_peak(p);
            return r;
        }
        if (p->cur + 1 >= p->n_chunks) break;
        p->cur++;
        p->chunks[p->cur].used = 0;
    }
    if (p->n_chunks == ARENA_MAX_CHUNKS) {
        rt_errorf(RT_EINTERNAL, "arena: more than %d chunks (%zu bytes held)", ARENA_MAX_CHUNKS,
                  p->reserved);
        return NULL;
    }
    /* Chunks grow geometrically (each at least half of all those before),
     * so a step of any size fits in a few dozen chunks and ARENA_MAX_CHUNKS
     * is never the limit before memory is; a chunk's unused tail is never
     * touched, so it costs address space, not resident memory. */
    size_t size = bytes > p->chunk_bytes ? bytes : p->chunk_bytes;
    if (size < p->reserved / 2) size = p->reserved / 2;
    char *base = p->k->malloc(size);
    if (!base && size > bytes && size > p->chunk_bytes) {
        size = bytes > p->chunk_bytes ? bytes : p->chunk_bytes; /* the growth was too greedy */
        base = p->k->malloc(size);
    }
    if (!base) {
        if (p->k == &rt_kernels_cpu)
            rt_errorf(RT_EINTERNAL,
                      "out of %s memory: the activation arena asked for %zu more bytes (%zu held); "
                      "lower micro_batch_size or sequence_len, or set gradient_checkpointing: true",
                      p->k->name, size, p->reserved);
        else /* the device allocator's message has the figures and the knobs */
            rt_errorf(RT_EINTERNAL, "activation arena (%zu bytes already held): %s", p->reserved,
                      rt_error_message());
        return NULL;
    }
    p->reserved += size;
    if (p->n_chunks > 0) p->cur = p->n_chunks;
    p->chunks[p->n_chunks++] = (arena_chunk){base, size, bytes, 0};
    chunk_prefault(p, &p->chunks[p->n_chunks - 1], bytes);
    pool_note_peak(p);
    return base;
}

void *rt_arena_alloc(rt_arena *a, size_t bytes) { return pool_alloc(&a->data, bytes); }

static void *arena_alloc_meta(rt_arena *a, size_t bytes) { return pool_alloc(&a->meta, bytes); }

rt_arena_mark rt_arena_get_mark(const rt_arena *a) {
    rt_arena_mark m = {a->data.cur, a->data.n_chunks ? a->data.chunks[a->data.cur].used : 0,
                       a->meta.cur, a->meta.n_chunks ? a->meta.chunks[a->meta.cur].used : 0};
    return m;
}

static void pool_release(arena_pool *p, int chunk, size_t used) {
    if (p->n_chunks == 0) return;
    p->cur = chunk;
    p->chunks[chunk].used = used;
    for (int i = chunk + 1; i < p->n_chunks; i++) p->chunks[i].used = 0;
}

void rt_arena_release(rt_arena *a, rt_arena_mark m) {
    pool_release(&a->data, m.chunk, m.used);
    pool_release(&a->meta, m.meta_chunk, m.meta_used);
}

void rt_arena_reset(rt_arena *a) {
    pool_release(&a->data, 0, 0);
    pool_release(&a->meta, 0, 0);
}

size_t rt_arena_peak(const rt_arena *a) { return a->data.peak; }
size_t rt_arena_reserved(const rt_arena *a) { return a->data.reserved; }

void *rt_arena_alloc_host(rt_arena *a, size_t bytes) { return arena_alloc_meta(a, bytes); }

rt_tensor *rt_arena_tensor(rt_arena *a, rt_dtype dt, int ndim, const int64_t *shape) {
    rt_tensor *t = arena_alloc_meta(a, sizeof *t);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    set_shape(t, dt, ndim, shape);
    t->device = a->device;
    t->data = rt_arena_alloc(a, rt_nbytes(t));
    return t->data ? t : NULL;
}

rt_tensor *rt_arena_tensor_zero(rt_arena *a, rt_dtype dt, int ndim, const int64_t *shape) {
    rt_tensor *t = rt_arena_tensor(a, dt, ndim, shape);
    if (t) a->data.k->zero(t->data, rt_nbytes(t));
    return t;
}

/* ---- persistent tensors ----------------------------------------------------- */

rt_tensor *rt_tensor_new(rt_device dev, rt_dtype dt, int ndim, const int64_t *shape) {
    const rt_kernels *k = rt_kernels_for(dev);
    if (!k) return NULL;
    rt_tensor *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    set_shape(t, dt, ndim, shape);
    t->device = dev;
    size_t n = rt_nbytes(t);
    t->data = k->malloc(n ? n : 1);
    if (!t->data) {
        /* A device allocator has already said how much is free and what helps. */
        if (dev == RT_CPU) rt_errorf(RT_EINTERNAL, "out of %s memory allocating %zu bytes", k->name, n);
        free(t);
        return NULL;
    }
    return t;
}

void rt_tensor_free(rt_tensor *t) {
    if (!t) return;
    const rt_kernels *k = rt_kernels_for(t->device);
    if (k) k->free(t->data);
    free(t);
}

/* ---- parameter store ------------------------------------------------------- */

void rt_params_init(rt_params *p, rt_device dev) {
    memset(p, 0, sizeof *p);
    p->device = dev;
}

rt_tensor *rt_params_add(rt_params *p, const char *name, int ndim, const int64_t *shape) {
    rt_tensor **ts = realloc(p->tensors, (size_t)(p->count + 1) * sizeof *ts);
    if (!ts) return NULL;
    p->tensors = ts;
    rt_tensor *t = calloc(2, sizeof *t); /* t[0] the parameter, t[1] its grad */
    char *copy = strdup(name);
    if (!t || !copy) {
        free(t);
        free(copy);
        return NULL;
    }
    set_shape(&t[0], RT_F32, ndim, shape);
    set_shape(&t[1], RT_F32, ndim, shape);
    t[0].device = t[1].device = p->device;
    t[0].requires_grad = true;
    t[0].grad = &t[1];
    t[0].name = t[1].name = copy;
    p->tensors[p->count++] = t;
    return t;
}

rt_status rt_params_finalize(rt_params *p, int64_t pad_multiple) {
    const rt_kernels *k = rt_kernels_for(p->device);
    if (!k) return rt_errorf(RT_EINTERNAL, "no kernels for device %s", rt_device_name(p->device));
    int64_t *off = malloc((size_t)(p->count ? p->count : 1) * sizeof *off);
    if (!off) return rt_errorf(RT_EINTERNAL, "out of memory");
    int64_t n = 0;
    for (int i = 0; i < p->count; i++) {
        off[i] = n;
        n += rt_numel(p->tensors[i]);
    }
    p->numel_used = n;
    if (pad_multiple < 1) pad_multiple = 1;
    n = (n + pad_multiple - 1) / pad_multiple * pad_multiple;
    p->numel = n;
    p->offsets = off;
    size_t bytes = (size_t)(n ? n : 1) * sizeof(float);
    p->data = k->malloc(bytes);
    p->grad = k->malloc(bytes);
    if (!p->data || !p->grad)
        return rt_errorf(RT_EINTERNAL, "out of %s memory for %lld trainable parameters", k->name,
                         (long long)n);
    k->zero(p->data, bytes);
    k->zero(p->grad, bytes);
    for (int i = 0; i < p->count; i++) {
        p->tensors[i]->data = p->data + off[i];
        p->tensors[i]->grad->data = p->grad + off[i];
    }
    return RT_OK;
}

void rt_params_zero_grad(rt_params *p) {
    const rt_kernels *k = rt_kernels_for(p->device);
    if (k && p->grad) k->zero(p->grad, (size_t)p->numel * sizeof(float));
}

void rt_params_free(rt_params *p) {
    const rt_kernels *k = rt_kernels_for(p->device);
    for (int i = 0; i < p->count; i++) {
        free((char *)p->tensors[i]->name);
        free(p->tensors[i]);
    }
    free(p->tensors);
    free(p->offsets);
    if (k) {
        k->free(p->data);
        k->free(p->grad);
    }
    memset(p, 0, sizeof *p);
}

int rt_params_find(const rt_params *p, const char *name) {
    for (int i = 0; i < p->count; i++)
        if (strcmp(p->tensors[i]->name, name) == 0) return i;
    return -1;
}
