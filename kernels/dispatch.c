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
