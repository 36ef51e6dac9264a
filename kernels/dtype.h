/* retort — element types and devices, shared by the kernels and the tensors
 * above them (autograd/tensor.h). */
#ifndef RT_DTYPE_H
#define RT_DTYPE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    RT_F32,
    RT_BF16,
    RT_F16,
    RT_I32,
    RT_U8,
    RT_NF4, /* packed 4-bit codes (2 per byte) + an rt_nf4_state (kernels/nf4.h) */
    RT_DTYPE_COUNT
} rt_dtype;

typedef enum { RT_CPU, RT_CUDA, RT_DEVICE_COUNT } rt_device;

const char *rt_dtype_name(rt_dtype t);
const char *rt_device_name(rt_device d);
/* Size of one element; 0 for RT_NF4 (sub-byte). */
size_t rt_dtype_size(rt_dtype t);

#ifdef __cplusplus
}
#endif
#endif
