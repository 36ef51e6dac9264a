/* retort — choosing the device a job runs on (see device.h). */
#include "train/device.h"

#include <string.h>

#include "kernels/backend.h"
#include "kernels/kernels.h"

rt_status rt_device_select(const char *s, rt_device *out) {
    /* "auto" stays on the CPU until the CUDA backend has been verified on a
     * GPU (its kernels compile in every CUDA build but have not run yet);
     * --device cuda opts in. */
    if (!s || !strcmp(s, "auto") || !strcmp(s, "cpu")) {
        *out = RT_CPU;
        return RT_OK;
    }
    if (strcmp(s, "cuda"))
        return rt_errorf(RT_EINPUT, "--device: expected cpu, cuda or auto, got '%s'", s);
    if (!rt_kernels_for(RT_CUDA))
        return rt_errorf(RT_EINPUT, "--device cuda: %s", rt_cuda_module_error());
    if (rt_device_count(RT_CUDA) == 0)
        return rt_errorf(RT_EINPUT, "--device cuda: no CUDA GPU is visible to this process");
    *out = RT_CUDA;
    return RT_OK;
}
