// retort — the entry points of the CUDA backend module (kernels/backend.h)
// and the engine functions the module's code calls, forwarded to the
// engine's own through the rt_cuda_host it was given: one fault state and
// one message per thread for the whole process, whichever side records.
// Everything in the module is hidden (-fvisibility=hidden) except the two
// entry points.
#include <cstdarg>
#include <cstdio>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_internal.h"
#include "kernels/fault.h"
#include "kernels/nf4.h"

#define RT_EXPORT extern "C" __attribute__((visibility("default")))

extern "C" const rt_kernels rt_kernels_cuda; // table.cu

static rt_cuda_host host;

extern "C" rt_status rt_errorf(rt_status code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return host.set_error(code, msg);
}

extern "C" rt_status rt_fault_record(const char *lib, const char *call, const char *file, int line,
                                     const char *what) {
    return host.fault_record(lib, call, file, line, what);
}

extern "C" rt_status rt_fault_record_oom(const char *what, size_t asked, size_t free_bytes,
                                         size_t total_bytes) {
    return host.fault_record_oom(what, asked, free_bytes, total_bytes);
}

extern "C" const char *rt_oom_message(char *buf, size_t cap, const char *what, size_t asked,
                                      size_t free_bytes, size_t total_bytes) {
    return host.oom_message(buf, cap, what, asked, free_bytes, total_bytes);
}

extern "C" bool rt_fault_sync_mode(void) { return host.sync_mode(); }

extern "C" void rt_nf4_absmax(const rt_nf4_state *st, float *absmax_out) {
    host.nf4_absmax(st, absmax_out);
}

RT_EXPORT const rt_kernels *rt_cuda_module_init(const rt_cuda_host *h) {
    if (!h || h->abi != RT_CUDA_MODULE_ABI) return nullptr;
    host = *h;
    return &rt_kernels_cuda;
}

#if defined(RETORT_HAVE_NCCL) && defined(RETORT_HAVE_MPI)
// dist/nccl.c (C; dist/dist.h itself is C-only: _Noreturn)
extern "C" {
rt_status rt_dist_nccl_init(struct rt_dist *d);
void rt_dist_nccl_free(struct rt_dist *d);
rt_status rt_dist_nccl_allreduce_avg(struct rt_dist *d, float *buf, int64_t n);
rt_status rt_dist_nccl_reduce_scatter_avg(struct rt_dist *d, const float *buf, float *out,
                                          int64_t shard);
rt_status rt_dist_nccl_allgather(struct rt_dist *d, const float *shard, float *full,
                                 int64_t shard_n);
rt_status rt_dist_nccl_broadcast(struct rt_dist *d, float *buf, int64_t n, int root);
}
static const rt_nccl_api nccl_api = {
    rt_dist_nccl_init,        rt_dist_nccl_free,      rt_dist_nccl_allreduce_avg,
    rt_dist_nccl_reduce_scatter_avg, rt_dist_nccl_allgather, rt_dist_nccl_broadcast,
};
RT_EXPORT const rt_nccl_api *rt_cuda_module_nccl(void) { return &nccl_api; }
#else
RT_EXPORT const rt_nccl_api *rt_cuda_module_nccl(void) { return nullptr; }
#endif
