#include "kernels/kernels.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kernels/backend.h"
#include "kernels/fault.h"
#include "kernels/nf4.h"

static const rt_kernels *overrides[2];

static pthread_once_t cuda_once = PTHREAD_ONCE_INIT;
static void *cuda_module;
static const rt_kernels *cuda_table;
static char cuda_error[1200];

#ifdef RETORT_HAVE_CUDA
static rt_status host_set_error(rt_status code, const char *msg) { return rt_errorf(code, "%s", msg); }

static const rt_cuda_host cuda_host = {
    .abi = RT_CUDA_MODULE_ABI,
    .set_error = host_set_error,
    .fault_record = rt_fault_record,
    .fault_record_oom = rt_fault_record_oom,
    .oom_message = rt_oom_message,
    .sync_mode = rt_fault_sync_mode,
    .nf4_absmax = rt_nf4_absmax,
};

/* RETORT_CUDA_MODULE, else libretort_cuda.so beside the executable. */
static void module_path(char *path, size_t cap) {
    const char *env = getenv("RETORT_CUDA_MODULE");
    if (env && *env) {
        snprintf(path, cap, "%s", env);
        return;
    }
    ssize_t n = readlink("/proc/self/exe", path, cap - sizeof RT_CUDA_MODULE_NAME - 1);
    char *slash = n > 0 ? (path[n] = '\0', strrchr(path, '/')) : NULL;
    if (slash) snprintf(slash + 1, sizeof RT_CUDA_MODULE_NAME, "%s", RT_CUDA_MODULE_NAME);
    else snprintf(path, cap, "%s", RT_CUDA_MODULE_NAME);
}
#endif

static void load_cuda(void) {
#ifdef RETORT_HAVE_CUDA
    char path[4096];
    module_path(path, sizeof path);
    cuda_module = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!cuda_module) {
        snprintf(cuda_error, sizeof cuda_error, "cannot load the CUDA backend: %.1100s", dlerror());
        return;
    }
    rt_cuda_module_init_fn init;
    *(void **)&init = dlsym(cuda_module, RT_CUDA_MODULE_INIT);
    cuda_table = init ? init(&cuda_host) : NULL;
    if (!cuda_table)
        snprintf(cuda_error, sizeof cuda_error,
                 "%.900s: not a retort CUDA backend of this version (ABI %d)", path, RT_CUDA_MODULE_ABI);
#else
    snprintf(cuda_error, sizeof cuda_error, "this build of retort has no CUDA backend");
#endif
}

static const rt_kernels *cuda_kernels(void) {
    pthread_once(&cuda_once, load_cuda);
    if (!cuda_table) rt_errorf(RT_EINPUT, "%s", cuda_error);
    return cuda_table;
}

const rt_kernels *rt_kernels_for(int device) {
    if (device >= 0 && device < 2 && overrides[device]) return overrides[device];
    switch (device) {
    case 0: return &rt_kernels_cpu;
    case 1: return cuda_kernels();
    default: return NULL;
    }
}

int rt_device_count(int device) {
    const rt_kernels *k = rt_kernels_for(device);
    return k && k->device_count ? k->device_count() : 0;
}

const char *rt_cuda_module_error(void) {
    pthread_once(&cuda_once, load_cuda);
    return cuda_table ? "" : cuda_error;
}

const rt_nccl_api *rt_cuda_nccl(void) {
    if (!cuda_kernels()) return NULL;
    rt_cuda_module_nccl_fn get;
    *(void **)&get = dlsym(cuda_module, RT_CUDA_MODULE_NCCL);
    const rt_nccl_api *api = get ? get() : NULL;
    if (!api) rt_errorf(RT_EINPUT, "the CUDA backend was built without NCCL");
    return api;
}

void rt_kernels_override(int device, const rt_kernels *k) {
    if (device >= 0 && device < 2) overrides[device] = k;
}
