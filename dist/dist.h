/* retort — data-parallel bootstrap and collectives.
 *
 * One process per GPU (or per CPU socket), launched by mpirun:
 *
 *     mpirun -np 4 retort train recipe.yaml
 *
 * Every rank runs the same program on a different slice of the data; after
 * each backward the ranks average their gradients (stage 0: all-reduce) or
 * reduce-scatter them into per-rank shards (ZeRO stage 1, see zero1.h).
 *
 * Transport: Open MPI (or any MPI) carries host buffers and the bootstrap;
 * NCCL carries device buffers when the f32 collectives run on RT_CUDA and
 * more than one rank is present. A build without MPI (RETORT_HAVE_MPI
 * undefined) compiles every function here to the world-size-1 case: init
 * fills world 1, and each collective is a no-op (or a copy where the output
 * is a different buffer), so single-process code calls the same functions.
 *
 * Blocking semantics: every collective returns when its result is in the
 * output buffer, on the host and the device alike; there is no overlap of
 * communication with compute yet.
 *
 * Errors: collectives return RT_EINTERNAL with the failing MPI/NCCL/CUDA
 * call named, or for caller bugs (n % world != 0, a bad root); RT_EINPUT only
 * for launch problems (launched under mpirun by a build without MPI, too few
 * GPUs). A rank that fails must not simply return from main while the
 * others wait in a collective: main() reports through rt_dist_abort.
 */
#ifndef RT_DIST_H
#define RT_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/tensor.h"
#include "kernels/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rt_dist {
    int rank;          /* 0 .. world-1 in MPI_COMM_WORLD */
    int world;         /* number of ranks (1 without mpirun or without MPI) */
    int local_rank;    /* rank among the ranks on this node (picks the GPU) */
    int local_world;   /* number of ranks on this node */
    bool mpi_active;   /* MPI is initialised and the collectives go through it */
    bool mpi_owned;    /* rt_dist_init called MPI_Init, so finalize ends MPI */
    rt_device device;  /* where the f32 collectives' buffers live */
    void *nccl;        /* NCCL communicator + stream (dist/nccl.c); NULL unless
                          device == RT_CUDA and world > 1 */
} rt_dist;

/* Starts the process group. MPI is initialised (MPI_Init_thread with
 * MPI_THREAD_FUNNELED: only the main thread talks to MPI, OpenMP workers
 * never do) only when the build has MPI and the process was started by an
 * MPI launcher, recognised by OMPI_COMM_WORLD_SIZE (Open MPI), PMI_SIZE
 * (MPICH/Hydra, Slurm PMI-2) or PMIX_RANK (PMIx) in the environment;
 * otherwise d is world 1, rank 0. If MPI was already initialised by the
 * caller, it is used and left running at finalize. local_rank/local_world
 * come from MPI_Comm_split_type(MPI_COMM_TYPE_SHARED). Errors are set to
 * return (MPI_ERRORS_RETURN) on MPI_COMM_WORLD so failures become rt_status.
 *   d:    filled in; device starts as RT_CPU.
 *   argc, argv: main's, passed to MPI_Init (may be NULL).
 * Errors: RT_EINPUT when launched with more than one rank by a build without
 * MPI (every rank would otherwise train alone on the full data);
 * RT_EINTERNAL when an MPI call fails. */
rt_status rt_dist_init(rt_dist *d, int *argc, char ***argv);

/* Chooses where the f32 collectives' buffers live. RT_CPU: host memory, MPI.
 * RT_CUDA with world > 1 (needs RETORT_HAVE_NCCL): cudaSetDevice(GPU
 * local_rank; GPU 0 when each rank sees exactly one GPU), then an NCCL
 * communicator from an ncclUniqueId made on rank 0 and sent with MPI_Bcast
 * (ncclCommInitRank), and a dedicated non-blocking stream for the
 * collectives. Call it before anything else touches CUDA: the device must be
 * set before the CUDA context is created. RT_CUDA with world 1: nothing to
 * set up (the process uses GPU 0 of what it can see).
 * Calling it again with the same device is a no-op; switching a set-up NCCL
 * communicator back to RT_CPU is RT_EINTERNAL.
 * Errors: RT_EINPUT for RT_CUDA in a build without CUDA, for multi-rank GPU
 * runs in a build without NCCL, or too few GPUs for the ranks on a node;
 * RT_EINTERNAL for a failed CUDA/NCCL/MPI call. */
rt_status rt_dist_use_device(rt_dist *d, rt_device dev);

/* Destroys the NCCL communicator, finalizes MPI if rt_dist_init started it,
 * and leaves d as world 1. Collective over all ranks (MPI_Finalize is). Safe
 * to call twice. */
void rt_dist_finalize(rt_dist *d);

/* In place: buf[i] <- (sum over ranks of buf[i]) / world.
 *   buf: f32[n] in d->device memory. MPI: sum (MPI_SUM) then divide by
 *        world; NCCL: ncclAvg. n == 0 is a no-op.
 * Errors: RT_EINTERNAL for n < 0, a NULL buf with n > 0, or a failed call.
 * Fault injection for tests: with RETORT_TEST_FAULT=allreduce_sum in the
 * environment the MPI paths here and in rt_dist_reduce_scatter_avg return
 * the sum instead of the mean, so that a test can show its comparison
 * catches a wrong reduction (tests/test_dist_finetune.c). */
rt_status rt_dist_allreduce_avg(rt_dist *d, float *buf, int64_t n);

/* In place: v[i] <- sum over ranks of v[i], double, host memory (gradient
 * norm partial sums of squares, token counts, loss sums). MPI_Allreduce:
 * Open MPI hands every rank the same bits; in any case a NaN or Inf on one
 * rank makes the sum non-finite on all of them, which is what lets the
 * ranks agree to skip a step. n == 0 is a no-op. */
rt_status rt_dist_allreduce_sum_f64(rt_dist *d, double *v, int n);

/* Reduce-scatter with averaging: shard = n / world; for j < shard,
 *   out[j] = (sum over ranks r of buf_r[rank*shard + j]) / world.
 *   buf: f32[n] in d->device memory, n % world == 0 (retort pads its flat
 *        buffers to make this so, see rt_zero1_pad_multiple).
 *   out: f32[shard]; either disjoint from buf, or exactly buf + rank*shard
 *        (in place — then the rest of buf is left undefined).
 * MPI: MPI_Reduce_scatter_block, so shard must be <= INT_MAX elements.
 * Errors: RT_EINTERNAL for n % world != 0, overlapping buffers, or a failed
 * call. */
rt_status rt_dist_reduce_scatter_avg(rt_dist *d, const float *buf, float *out, int64_t n);

/* All-gather: full[r*shard + j] = shard_r[j] for every rank r, shard = n/world.
 *   shard: f32[n/world], full: f32[n], both in d->device memory; shard is
 *          either disjoint from full or exactly full + rank*(n/world) (in
 *          place, how ZeRO-1 gathers parameters updated inside the buffer).
 * MPI: MPI_Allgather (shard <= INT_MAX elements).
 * Errors: as rt_dist_reduce_scatter_avg. */
rt_status rt_dist_allgather(rt_dist *d, const float *shard, float *full, int64_t n);

/* Waits until every rank has called it. */
rt_status rt_dist_barrier(rt_dist *d);

/* Copies bytes of host memory from rank root to every rank (MPI_Bcast, in
 * 1 GiB pieces). Errors: RT_EINTERNAL for a root outside [0, world). */
rt_status rt_dist_broadcast(rt_dist *d, void *buf, size_t bytes, int root);

/* Like rt_dist_broadcast for f32[n] in d->device memory (ncclBroadcast on
 * the GPU), e.g. to make initial parameters identical on every rank. */
rt_status rt_dist_broadcast_f32(rt_dist *d, float *buf, int64_t n, int root);

/* Host bytes: all[r*bytes .. (r+1)*bytes) <- rank r's `mine` (MPI_Allgather
 * of MPI_BYTE), e.g. the small record ranks compare at start to agree on
 * the job. all holds world * bytes. */
rt_status rt_dist_allgather_bytes(rt_dist *d, const void *mine, void *all, size_t bytes);

/* In place: *flag <- AND over ranks of *flag (MPI_LAND), e.g. "my loss is
 * finite", so that all ranks take the same branch (skip a step together). */
rt_status rt_dist_all_true(rt_dist *d, bool *flag);

/* Ends the whole job: prints "retort: error: [rank R] msg" (world > 1) or
 * "retort: error: msg" (world 1) on stderr, then MPI_Abort(MPI_COMM_WORLD,
 * code) when MPI is active, else exit(code). The only function in the
 * library that exits: it exists so that an error on one rank never leaves
 * the others blocked in a collective. main() is its only caller; library
 * code returns rt_status instead. d may be NULL (treated as world 1). */
_Noreturn void rt_dist_abort(rt_dist *d, int code, const char *msg);

/* ---- internal: implemented in dist/nccl.c, called only by dist.c --------
 * Same contracts as the public functions above, for device buffers on a
 * communicator set up by rt_dist_nccl_init. */
#ifdef RETORT_HAVE_NCCL
rt_status rt_dist_nccl_init(rt_dist *d);
void rt_dist_nccl_free(rt_dist *d);
rt_status rt_dist_nccl_allreduce_avg(rt_dist *d, float *buf, int64_t n);
rt_status rt_dist_nccl_reduce_scatter_avg(rt_dist *d, const float *buf, float *out,
                                          int64_t shard);
rt_status rt_dist_nccl_allgather(rt_dist *d, const float *shard, float *full, int64_t shard_n);
rt_status rt_dist_nccl_broadcast(rt_dist *d, float *buf, int64_t n, int root);
#endif

#ifdef __cplusplus
}
#endif
#endif
