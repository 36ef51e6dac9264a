#include "kernels/dtype.h"

static const char *const dtype_names[RT_DTYPE_COUNT] = {"f32", "bf16", "f16", "i32", "u8", "nf4"};
static const size_t dtype_sizes[RT_DTYPE_COUNT] = {4, 2, 2, 4, 1, 0};

const char *rt_dtype_name(rt_dtype t) { return t < RT_DTYPE_COUNT ? dtype_names[t] : "?"; }
const char *rt_device_name(rt_device d) { return d == RT_CUDA ? "cuda" : "cpu"; }
size_t rt_dtype_size(rt_dtype t) { return t < RT_DTYPE_COUNT ? dtype_sizes[t] : 0; }
