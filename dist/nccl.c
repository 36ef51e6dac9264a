/* retort — NCCL collectives on device buffers (see dist.h). Compiled only
 * with RETORT_HAVE_NCCL, which the build sets only together with CUDA and
 * MPI; the only file that includes nccl.h.
 *
 * Bootstrap follows the NCCL user guide's "one device per process" example:
 * cudaSetDevice(local rank), ncclGetUniqueId on rank 0, MPI_Bcast of the id,
 * ncclCommInitRank. Every collective runs on a dedicated stream and is made
 * blocking: the device is synchronised before (the caller's gradients may
 * still be in flight on any stream) and the stream after (the caller's next
 * kernels, on any stream, must see the result). */
#if defined(RETORT_HAVE_NCCL) && defined(RETORT_HAVE_MPI)

#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>
#include <stdlib.h>

#include "dist/dist.h"
#include "kernels/fault.h"

/* A failed NCCL or CUDA call is also the process's device fault
 * (kernels/fault.h): the first is kept and every later op reports it. */
#define RT_NCCL_CHECK(call)                                                    \
    do {                                                                       \
        ncclResult_t rt_nccl_rc_ = (call);                                     \
        if (rt_nccl_rc_ != ncclSuccess)                                        \
            return rt_fault_record("NCCL", #call, __FILE__, __LINE__,          \
                                   ncclGetErrorString(rt_nccl_rc_));           \
    } while (0)

#define RT_CUDA_TRY(call)                                                      \
    do {                                                                       \
        cudaError_t rt_cuda_rc_ = (call);                                      \
        if (rt_cuda_rc_ != cudaSuccess)                                        \
            return rt_fault_record("CUDA", #call, __FILE__, __LINE__,          \
                                   cudaGetErrorString(rt_cuda_rc_));           \
    } while (0)

#define RT_MPI_CHECK(call)                                                     \
    do {                                                                       \
        int rt_mpi_rc_ = (call);                                               \
        if (rt_mpi_rc_ != MPI_SUCCESS)                                         \
            return rt_errorf(RT_EINTERNAL, "dist: %s failed (MPI error %d)",   \
                             #call, rt_mpi_rc_);                               \
    } while (0)

typedef struct {
    ncclComm_t comm;
    cudaStream_t stream;
    int gpu;
} rt_nccl_state;

rt_status rt_dist_nccl_init(rt_dist *d) {
    if (d->nccl) return RT_OK;
    if (!d->mpi_active)
        return rt_errorf(RT_EINTERNAL, "dist: NCCL setup needs MPI for the bootstrap");
    int ngpu = 0;
    RT_CUDA_TRY(cudaGetDeviceCount(&ngpu));
    /* Either every rank on the node sees all GPUs (pick by local rank) or the
     * launcher gave each rank exactly one (CUDA_VISIBLE_DEVICES per rank). */
    int gpu;
    if (ngpu >= d->local_world)
        gpu = d->local_rank;
    else if (ngpu == 1)
        gpu = 0;
    else
        return rt_errorf(RT_EINPUT,
                         "dist: rank %d: %d ranks on this node but only %d GPUs visible "
                         "(one rank per GPU)",
                         d->rank, d->local_world, ngpu);
    RT_CUDA_TRY(cudaSetDevice(gpu));

    ncclUniqueId id;
    if (d->rank == 0) RT_NCCL_CHECK(ncclGetUniqueId(&id));
    RT_MPI_CHECK(MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD));

    rt_nccl_state *s = calloc(1, sizeof *s);
    if (!s) return rt_errorf(RT_EINTERNAL, "dist: out of memory for the NCCL state");
    s->gpu = gpu;
    ncclResult_t rc = ncclCommInitRank(&s->comm, d->world, id, d->rank);
    if (rc != ncclSuccess) {
        free(s);
        return rt_errorf(RT_EINTERNAL, "dist: ncclCommInitRank(rank %d of %d, GPU %d) failed: %s",
                         d->rank, d->world, gpu, ncclGetErrorString(rc));
    }
    cudaError_t ce = cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking);
    if (ce != cudaSuccess) {
        ncclCommDestroy(s->comm);
        free(s);
        return rt_errorf(RT_EINTERNAL, "dist: cudaStreamCreateWithFlags failed: %s",
                         cudaGetErrorString(ce));
    }
    d->nccl = s;
    return RT_OK;
}

void rt_dist_nccl_free(rt_dist *d) {
    rt_nccl_state *s = d->nccl;
    if (!s) return;
    cudaStreamSynchronize(s->stream);
    ncclCommDestroy(s->comm);
    cudaStreamDestroy(s->stream);
    free(s);
    d->nccl = NULL;
}

static rt_status state_of(rt_dist *d, rt_nccl_state **s) {
    *s = d->nccl;
    if (!*s) return rt_errorf(RT_EINTERNAL, "dist: NCCL collective before rt_dist_use_device");
    /* The caller's kernels may run on any stream; wait for all of them. */
    RT_CUDA_TRY(cudaDeviceSynchronize());
    return RT_OK;
}

/* Waits for the collective and surfaces errors NCCL reports asynchronously
 * (a peer that died, a network failure). */
static rt_status finish(rt_nccl_state *s) {
    RT_CUDA_TRY(cudaStreamSynchronize(s->stream));
    ncclResult_t async = ncclSuccess;
    RT_NCCL_CHECK(ncclCommGetAsyncError(s->comm, &async));
    if (async != ncclSuccess)
        return rt_errorf(RT_EINTERNAL, "dist: NCCL communicator error: %s",
                         ncclGetErrorString(async));
    return RT_OK;
}

rt_status rt_dist_nccl_allreduce_avg(rt_dist *d, float *buf, int64_t n) {
    rt_nccl_state *s;
    RT_TRY(state_of(d, &s));
    RT_NCCL_CHECK(ncclAllReduce(buf, buf, (size_t)n, ncclFloat32, ncclAvg, s->comm, s->stream));
    return finish(s);
}

rt_status rt_dist_nccl_reduce_scatter_avg(rt_dist *d, const float *buf, float *out,
                                          int64_t shard) {
    rt_nccl_state *s;
    RT_TRY(state_of(d, &s));
    /* In place when out == buf + rank*shard, which NCCL supports directly. */
    RT_NCCL_CHECK(ncclReduceScatter(buf, out, (size_t)shard, ncclFloat32, ncclAvg, s->comm,
                                 s->stream));
    return finish(s);
}

rt_status rt_dist_nccl_allgather(rt_dist *d, const float *shard, float *full, int64_t shard_n) {
    rt_nccl_state *s;
    RT_TRY(state_of(d, &s));
    /* In place when shard == full + rank*shard_n, which NCCL supports directly. */
    RT_NCCL_CHECK(ncclAllGather(shard, full, (size_t)shard_n, ncclFloat32, s->comm, s->stream));
    return finish(s);
}

rt_status rt_dist_nccl_broadcast(rt_dist *d, float *buf, int64_t n, int root) {
    rt_nccl_state *s;
    RT_TRY(state_of(d, &s));
    RT_NCCL_CHECK(ncclBroadcast(buf, buf, (size_t)n, ncclFloat32, root, s->comm, s->stream));
    return finish(s);
}

#else
/* ISO C wants at least one declaration in a translation unit. */
typedef int rt_dist_nccl_unused;
#endif
