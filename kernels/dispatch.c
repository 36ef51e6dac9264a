#include "kernels/kernels.h"

const rt_kernels *rt_kernels_for(int device) {
    switch (device) {
    case 0: return &rt_kernels_cpu;
#ifdef RETORT_HAVE_CUDA
    case 1: return &rt_kernels_cuda;
#endif
    default: return NULL;
    }
}

int rt_device_count(int device) {
    const rt_kernels *k = rt_kernels_for(device);
    return k && k->device_count ? k->device_count() : 0;
}
