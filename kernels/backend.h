/* retort — the CUDA backend as a separately loaded module.
 *
 * A CUDA build puts every CUDA kernel (the .cu files of kernels/cuda) and the NCCL
 * collectives (dist/nccl.c) into libretort_cuda.so beside the executable,
 * and loads it with dlopen only when a CUDA device is first asked for
 * (rt_kernels_for(RT_CUDA) / rt_device_count(RT_CUDA)). A CPU run of a CUDA
 * build therefore maps no CUDA library: no cudart/cuBLAS/NCCL start-up time
 * or memory (issue #14), and the executable runs on machines without them.
 *
 * The module links only CUDA libraries (cudart statically, cuBLAS, NCCL,
 * MPI); what it needs from the engine (error messages, the device fault,
 * NF4 scales) comes through rt_cuda_host at initialisation, so it has no
 * undefined references to the executable (it links with --no-undefined).
 * Where it is looked for: $RETORT_CUDA_MODULE if set, else the directory of
 * the running executable (/proc/self/exe).
 */
#ifndef RT_BACKEND_H
#define RT_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

#include "kernels/error.h"
#include "kernels/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RT_CUDA_MODULE_ABI 1
#define RT_CUDA_MODULE_NAME "libretort_cuda.so"
#define RT_CUDA_MODULE_INIT "rt_cuda_module_init"
#define RT_CUDA_MODULE_NCCL "rt_cuda_module_nccl"

struct rt_nf4_state;
struct rt_dist;

/* The engine's services, handed to the module once (kernels/fault.h,
 * kernels/error.h, kernels/nf4.h have their contracts). */
typedef struct rt_cuda_host {
    int abi; /* RT_CUDA_MODULE_ABI */
    rt_status (*set_error)(rt_status code, const char *msg);
    rt_status (*fault_record)(const char *lib, const char *call, const char *file, int line,
                              const char *what);
    rt_status (*fault_record_oom)(const char *what, size_t asked, size_t free_bytes,
                                  size_t total_bytes);
    const char *(*oom_message)(char *buf, size_t cap, const char *what, size_t asked,
                               size_t free_bytes, size_t total_bytes);
    bool (*sync_mode)(void);
    void (*nf4_absmax)(const struct rt_nf4_state *st, float *absmax_out);
} rt_cuda_host;

/* The module's entry point (RT_CUDA_MODULE_INIT): the CUDA kernel table, or
 * NULL when host->abi differs from the module's. */
typedef const rt_kernels *(*rt_cuda_module_init_fn)(const rt_cuda_host *host);

/* The NCCL collectives of dist/nccl.c (RT_CUDA_MODULE_NCCL returns this
 * table; NULL symbol in a module built without NCCL). Contracts: dist/dist.h. */
typedef struct rt_nccl_api {
    rt_status (*init)(struct rt_dist *d);
    void (*free)(struct rt_dist *d);
    rt_status (*allreduce_avg)(struct rt_dist *d, float *buf, int64_t n);
    rt_status (*reduce_scatter_avg)(struct rt_dist *d, const float *buf, float *out, int64_t shard_n);
    rt_status (*allgather)(struct rt_dist *d, const float *shard, float *full, int64_t shard_n);
    rt_status (*broadcast)(struct rt_dist *d, float *buf, int64_t n, int root);
} rt_nccl_api;
typedef const rt_nccl_api *(*rt_cuda_module_nccl_fn)(void);

/* The NCCL table of the loaded module (loading it if needed); NULL with the
 * message set when the module is missing or was built without NCCL. */
const rt_nccl_api *rt_cuda_nccl(void);

/* Why the CUDA backend is unavailable ("" once it loaded). */
const char *rt_cuda_module_error(void);

/* Tests only: makes rt_kernels_for(device) return k (NULL restores the
 * built-in choice), so the device code paths of the engine (uploads,
 * downloads, the optimizer entry) can run against a host-memory table on a
 * machine without a GPU. Not thread-safe; set it before using the device. */
void rt_kernels_override(int device, const rt_kernels *k);

#ifdef __cplusplus
}
#endif
#endif
