/* retort — choosing the device a job runs on (--device, the recipe's device). */
#ifndef RT_DEVICE_H
#define RT_DEVICE_H

#include "autograd/tensor.h"
#include "kernels/error.h"

/* --device: "cpu", "cuda" or NULL/"auto" (the CPU for now: see device.c).
 * RT_EINPUT for cuda without a CUDA build or without a visible GPU. */
rt_status rt_device_select(const char *s, rt_device *out);

#endif
