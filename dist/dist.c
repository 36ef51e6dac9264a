/* retort — data-parallel bootstrap and host (MPI) collectives; see dist.h.
 * Device buffers with more than one rank go to dist/nccl.c. */
#include "dist/dist.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/kernels.h"

#ifdef RETORT_HAVE_MPI
#include <mpi.h>

/* Turns a failed MPI call into an rt_status naming the call. Needs
 * MPI_ERRORS_RETURN on the communicator (rt_dist_init sets it). */
#define RT_MPI_CHECK(call)                                                     \
    do {                                                                       \
        int rt_mpi_rc_ = (call);                                               \
        if (rt_mpi_rc_ != MPI_SUCCESS) {                                       \
            char rt_mpi_msg_[MPI_MAX_ERROR_STRING];                            \
            int rt_mpi_len_ = 0;                                               \
            if (MPI_Error_string(rt_mpi_rc_, rt_mpi_msg_, &rt_mpi_len_) !=     \
                MPI_SUCCESS)                                                   \
                snprintf(rt_mpi_msg_, sizeof rt_mpi_msg_, "error %d", rt_mpi_rc_); \
            return rt_errorf(RT_EINTERNAL, "dist: %s failed: %s", #call,       \
                             rt_mpi_msg_);                                     \
        }                                                                      \
    } while (0)

/* MPI counts are int: large transfers go in pieces of this many elements
 * (a power of two, so pieces stay aligned). */
#define RT_DIST_CHUNK ((int64_t)1 << 28)
#endif

/* Environment variables set by the launchers we recognise; any one of them
 * means "started by mpirun/srun". */
static const char *const launch_vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"};

static bool launched_by_mpi(void) {
    for (size_t i = 0; i < sizeof launch_vars / sizeof launch_vars[0]; i++)
        if (getenv(launch_vars[i])) return true;
    return false;
}

static void set_single(rt_dist *d) {
    d->rank = 0;
    d->world = 1;
    d->local_rank = 0;
    d->local_world = 1;
    d->mpi_active = false;
    d->mpi_owned = false;
    d->device = RT_CPU;
    d->nccl = NULL;
}

rt_status rt_dist_init(rt_dist *d, int *argc, char ***argv) {
    if (!d) return rt_errorf(RT_EINTERNAL, "dist: rt_dist_init: NULL rt_dist");
    set_single(d);
#ifdef RETORT_HAVE_MPI
    int inited = 0;
    /* MPI_Initialized may be called before MPI_Init; error handlers do not
     * apply yet, so its return code is the only signal. */
    if (MPI_Initialized(&inited) != MPI_SUCCESS)
        return rt_errorf(RT_EINTERNAL, "dist: MPI_Initialized failed");
    if (!inited && !launched_by_mpi()) return RT_OK;
    if (!inited) {
        int provided = 0;
        if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            return rt_errorf(RT_EINTERNAL, "dist: MPI_Init_thread failed");
        d->mpi_owned = true;
    }
    d->mpi_active = true;
    RT_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    RT_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &d->rank));
    RT_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &d->world));
    MPI_Comm node;
    RT_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank,
                                  MPI_INFO_NULL, &node));
    RT_MPI_CHECK(MPI_Comm_rank(node, &d->local_rank));
    RT_MPI_CHECK(MPI_Comm_size(node, &d->local_world));
    RT_MPI_CHECK(MPI_Comm_free(&node));
    return RT_OK;
#else
    (void)argc;
    (void)argv;
    if (!launched_by_mpi()) return RT_OK;
    const char *size = getenv("OMPI_COMM_WORLD_SIZE");
    if (!size) size = getenv("PMI_SIZE");
    if (size && atoi(size) > 1)
        return rt_errorf(RT_EINPUT,
                         "dist: launched by mpirun with %s ranks, but this build has no MPI "
                         "(install libopenmpi-dev openmpi-bin and rebuild), so every rank "
                         "would train alone",
                         size);
    return RT_OK;
#endif
}

rt_status rt_dist_use_device(rt_dist *d, rt_device dev) {
    if (!d) return rt_errorf(RT_EINTERNAL, "dist: rt_dist_use_device: NULL rt_dist");
    if (dev == d->device) return RT_OK;
    if (dev == RT_CPU) {
        if (d->nccl)
            return rt_errorf(RT_EINTERNAL,
                             "dist: cannot move collectives back to the CPU after NCCL setup");
        d->device = RT_CPU;
        return RT_OK;
    }
    if (dev != RT_CUDA)
        return rt_errorf(RT_EINTERNAL, "dist: unknown device %d", (int)dev);
    if (!rt_kernels_for(RT_CUDA))
        return rt_errorf(RT_EINPUT, "dist: device cuda requested: %s", rt_cuda_module_error());
    if (d->world > 1) {
#ifdef RETORT_HAVE_NCCL
        const rt_nccl_api *nccl = rt_cuda_nccl();
        if (!nccl) return RT_EINPUT;
        RT_TRY(nccl->init(d));
#else
        return rt_errorf(RT_EINPUT,
                         "dist: GPU data parallelism over %d ranks needs NCCL, but this "
                         "build has none (install libnccl-dev and rebuild)",
                         d->world);
#endif
    }
    d->device = RT_CUDA;
    return RT_OK;
}

void rt_dist_finalize(rt_dist *d) {
    if (!d) return;
#ifdef RETORT_HAVE_NCCL
    if (d->nccl) {
        const rt_nccl_api *nccl = rt_cuda_nccl();
        if (nccl) nccl->free(d);
    }
#endif
#ifdef RETORT_HAVE_MPI
    if (d->mpi_owned) {
        int done = 0;
        MPI_Finalized(&done);
        if (!done) MPI_Finalize();
    }
#endif
    set_single(d);
}

/* ---- argument checks shared by the collectives --------------------------- */

static bool ranges_overlap(const void *a, size_t an, const void *b, size_t bn) {
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y + bn && y < x + an;
}

static rt_status check_buf(const char *what, const void *p, int64_t n) {
    if (n < 0) return rt_errorf(RT_EINTERNAL, "dist: %s: negative count %lld", what, (long long)n);
    if (n > 0 && !p) return rt_errorf(RT_EINTERNAL, "dist: %s: NULL buffer", what);
    return RT_OK;
}

/* The shard size of a sharded collective, after checking the contract. */
static rt_status check_sharded(const rt_dist *d, const char *what, const float *full,
                               const float *part, int64_t n, int64_t *shard) {
    RT_TRY(check_buf(what, full, n));
    if (n > 0 && !part) return rt_errorf(RT_EINTERNAL, "dist: %s: NULL shard buffer", what);
    if (n % d->world != 0)
        return rt_errorf(RT_EINTERNAL,
                         "dist: %s: %lld elements do not split evenly over %d ranks (pad the "
                         "flat buffer to a multiple of the world size)",
                         what, (long long)n, d->world);
    *shard = n / d->world;
    const float *own = full + (size_t)d->rank * (size_t)*shard;
    if (part != own && ranges_overlap(full, (size_t)n * sizeof(float), part,
                                      (size_t)*shard * sizeof(float)))
        return rt_errorf(RT_EINTERNAL,
                         "dist: %s: the shard buffer overlaps the full buffer other than at "
                         "this rank's own shard",
                         what);
    return RT_OK;
}

/* Copy within d->device memory (world 1, where a sharded collective is a copy). */
static rt_status device_copy(rt_dist *d, void *dst, const void *src, size_t bytes) {
    if (dst == src || bytes == 0) return RT_OK;
    const rt_kernels *k = rt_kernels_for((int)d->device);
    if (!k || !k->copy)
        return rt_errorf(RT_EINTERNAL, "dist: no copy kernel for device %s",
                         rt_device_name(d->device));
    k->copy(dst, src, bytes);
    return RT_OK;
}

#ifdef RETORT_HAVE_MPI
/* RETORT_TEST_FAULT=allreduce_sum (tests only, see dist.h) skips the
 * division, the classic data-parallel bug. */
static void host_divide(float *x, int64_t n, int world) {
    const char *fault = getenv("RETORT_TEST_FAULT");
    if (fault && !strcmp(fault, "allreduce_sum")) return;
    const float w = (float)world;
    for (int64_t i = 0; i < n; i++) x[i] /= w;
}

static rt_status check_int_count(const char *what, int64_t n) {
    if (n > INT_MAX)
        return rt_errorf(RT_EINTERNAL,
                         "dist: %s: a shard of %lld elements exceeds MPI's int count limit",
                         what, (long long)n);
    return RT_OK;
}
#endif

/* ---- collectives ----------------------------------------------------------- */

rt_status rt_dist_allreduce_avg(rt_dist *d, float *buf, int64_t n) {
    RT_TRY(check_buf("allreduce_avg", buf, n));
    if (d->world == 1 || n == 0) return RT_OK;
#ifdef RETORT_HAVE_NCCL
    if (d->device == RT_CUDA) return rt_cuda_nccl()->allreduce_avg(d, buf, n);
#endif
#ifdef RETORT_HAVE_MPI
    for (int64_t off = 0; off < n; off += RT_DIST_CHUNK) {
        int64_t c = n - off < RT_DIST_CHUNK ? n - off : RT_DIST_CHUNK;
        RT_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf + off, (int)c, MPI_FLOAT, MPI_SUM,
                                MPI_COMM_WORLD));
    }
    host_divide(buf, n, d->world);
    return RT_OK;
#else
    return rt_errorf(RT_EINTERNAL, "dist: world %d without MPI", d->world);
#endif
}

rt_status rt_dist_allreduce_sum_f64(rt_dist *d, double *v, int n) {
    RT_TRY(check_buf("allreduce_sum_f64", v, n));
    if (d->world == 1 || n == 0) return RT_OK;
#ifdef RETORT_HAVE_MPI
    RT_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
    return RT_OK;
#else
    return rt_errorf(RT_EINTERNAL, "dist: world %d without MPI", d->world);
#endif
}

rt_status rt_dist_reduce_scatter_avg(rt_dist *d, const float *buf, float *out, int64_t n) {
    int64_t shard = 0;
    RT_TRY(check_sharded(d, "reduce_scatter_avg", buf, out, n, &shard));
    if (n == 0) return RT_OK;
    if (d->world == 1) return device_copy(d, out, buf, (size_t)n * sizeof(float));
#ifdef RETORT_HAVE_NCCL
    if (d->device == RT_CUDA) return rt_cuda_nccl()->reduce_scatter_avg(d, buf, out, shard);
#endif
#ifdef RETORT_HAVE_MPI
    RT_TRY(check_int_count("reduce_scatter_avg", shard));
    if (out == buf + (size_t)d->rank * (size_t)shard) {
        /* MPI_IN_PLACE takes the input from the receive buffer and leaves the
         * result at its start, not at this rank's offset. */
        float *b = (float *)buf;
        RT_MPI_CHECK(MPI_Reduce_scatter_block(MPI_IN_PLACE, b, (int)shard, MPI_FLOAT, MPI_SUM,
                                           MPI_COMM_WORLD));
        if (d->rank != 0) memmove(out, b, (size_t)shard * sizeof(float));
    } else {
        RT_MPI_CHECK(MPI_Reduce_scatter_block(buf, out, (int)shard, MPI_FLOAT, MPI_SUM,
                                           MPI_COMM_WORLD));
    }
    host_divide(out, shard, d->world);
    return RT_OK;
#else
    return rt_errorf(RT_EINTERNAL, "dist: world %d without MPI", d->world);
#endif
}

rt_status rt_dist_allgather(rt_dist *d, const float *shard, float *full, int64_t n) {
    int64_t sn = 0;
    RT_TRY(check_sharded(d, "allgather", full, shard, n, &sn));
    if (n == 0) return RT_OK;
    if (d->world == 1) return device_copy(d, full, shard, (size_t)n * sizeof(float));
#ifdef RETORT_HAVE_NCCL
    if (d->device == RT_CUDA) return rt_cuda_nccl()->allgather(d, shard, full, sn);
#endif
#ifdef RETORT_HAVE_MPI
    RT_TRY(check_int_count("allgather", sn));
    if (shard == full + (size_t)d->rank * (size_t)sn)
        RT_MPI_CHECK(MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, full, (int)sn, MPI_FLOAT,
                                MPI_COMM_WORLD));
    else
        RT_MPI_CHECK(MPI_Allgather(shard, (int)sn, MPI_FLOAT, full, (int)sn, MPI_FLOAT,
                                MPI_COMM_WORLD));
    return RT_OK;
#else
    return rt_errorf(RT_EINTERNAL, "dist: world %d without MPI", d->world);
#endif
}

rt_status rt_dist_barrier(rt_dist *d) {
    if (d->world == 1) return RT_OK;
#ifdef RETORT_HAVE_MPI
    RT_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
    return RT_OK;
#else
    return rt_errorf(RT_EINTERNAL, "dist: world %d without MPI", d->world);
#endif
}

rt_status rt_dist_broadcast(rt_dist *d, void *buf, size_t bytes, int root) {
    if (root < 0 || root >= d->world)
        return rt_errorf(RT_EINTERNAL, "dist: broadcast root %d outside [0, %d)", root,
                         d->world);
    if (bytes > 0 && !buf) return rt_errorf(RT_EINTERNAL, "dist: broadcast: NULL buffer");
    if (d->world == 1 || bytes == 0) return RT_OK;
#ifdef RETORT_HAVE_MPI
    const size_t piece = (size_t)1 << 30;
    for (size_t off = 0; off < bytes; off += piece) {
        size_t c = bytes - off < piece ? bytes - off : piece;
        RT_MPI_CHECK(MPI_Bcast((char *)buf + off, (int)c, MPI_BYTE, root, MPI_COMM_WORLD));
    }
    return RT_OK;
#else
    return rt_errorf(RT_EINTERNAL, "dist: world %d without MPI", d->world);
#endif
}

rt_status rt_dist_broadcast_f32(rt_dist *d, float *buf, int64_t n, int root) {
    RT_TRY(check_buf("broadcast_f32", buf, n));
    if (root < 0 || root >= d->world)
        return rt_errorf(RT_EINTERNAL, "dist: broadcast root %d outside [0, %d)", root,
                         d->world);
#ifdef RETORT_HAVE_NCCL
    if (d->device == RT_CUDA && d->world > 1 && n > 0)
        return rt_cuda_nccl()->broadcast(d, buf, n, root);
#endif
    return rt_dist_broadcast(d, buf, (size_t)n * sizeof(float), root);
}

rt_status rt_dist_allgather_bytes(rt_dist *d, const void *mine, void *all, size_t bytes) {
    if (bytes > 0 && (!mine || !all)) return rt_errorf(RT_EINTERNAL, "dist: allgather_bytes: NULL buffer");
    if (bytes > INT_MAX) return rt_errorf(RT_EINTERNAL, "dist: allgather_bytes: %zu bytes", bytes);
    if (d->world == 1) {
        memmove(all, mine, bytes);
        return RT_OK;
    }
#ifdef RETORT_HAVE_MPI
    RT_MPI_CHECK(MPI_Allgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, MPI_COMM_WORLD));
    return RT_OK;
#else
    return rt_errorf(RT_EINTERNAL, "dist: world %d without MPI", d->world);
#endif
}

rt_status rt_dist_all_true(rt_dist *d, bool *flag) {
    if (!flag) return rt_errorf(RT_EINTERNAL, "dist: all_true: NULL flag");
    if (d->world == 1) return RT_OK;
#ifdef RETORT_HAVE_MPI
    int x = *flag ? 1 : 0;
    RT_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD));
    *flag = x != 0;
    return RT_OK;
#else
    return rt_errorf(RT_EINTERNAL, "dist: world %d without MPI", d->world);
#endif
}

_Noreturn void rt_dist_abort(rt_dist *d, int code, const char *msg) {
    if (!msg) msg = "";
    if (d && d->world > 1)
        fprintf(stderr, "retort: error: [rank %d] %s\n", d->rank, msg);
    else
        fprintf(stderr, "retort: error: %s\n", msg);
    fflush(stderr);
#ifdef RETORT_HAVE_MPI
    int inited = 0, done = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&done);
    if (d && d->mpi_active && inited && !done) MPI_Abort(MPI_COMM_WORLD, code);
#endif
    exit(code);
}
