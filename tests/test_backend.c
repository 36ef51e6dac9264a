/* The CUDA backend module (kernels/backend.h, issue #14): a CPU run maps no
 * CUDA library; the first use of the CUDA device loads libretort_cuda.so,
 * and a failure inside the module reaches the engine's one fault state
 * through the host table. Runs without a GPU (the module loads; its calls
 * then fail, which is what the forwarding test needs). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/fault.h"
#include "kernels/kernels.h"
#include "tests/testutil.h"

/* Whether a library whose path contains `name` is mapped in this process. */
static bool mapped(const char *name) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return false;
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) found = strstr(line, name) != NULL;
    fclose(f);
    return found;
}

int main(void) {
    /* The CPU table needs nothing from CUDA. */
    CHECK(rt_kernels_for(0) == &rt_kernels_cpu, "cpu table");
    CHECK(!mapped("libcudart") && !mapped("libcublas") && !mapped("libretort_cuda"),
          "a CPU-only process maps no CUDA library");
#ifdef RETORT_HAVE_CUDA
    const rt_kernels *g = rt_kernels_for(1);
    CHECK(g != NULL, "the CUDA module loads: %s", rt_cuda_module_error());
    if (!g) return rt_test_summary();
    CHECK(!strcmp(g->name, "cuda") && g->adamw && g->synchronize, "it is the CUDA table");
    CHECK(mapped("libretort_cuda.so") && mapped("libcublas"), "now the module and cuBLAS are mapped");
    CHECK(!strcmp(rt_cuda_module_error(), ""), "no load error");
    if (rt_device_count(1) == 0) {
        /* No GPU: a device call fails inside the module; the fault must be
         * the engine's (the module has no state of its own). */
        rt_fault_clear();
        g->synchronize();
        CHECK(rt_fault_status() != RT_OK && strstr(rt_fault_message(), "CUDA error in cudaDeviceSynchronize"),
              "a fault inside the module is the engine's: '%s'", rt_fault_message());
        rt_fault_clear();
    } else {
        SKIP("a GPU is visible: the no-device fault path is not exercised");
    }
#else
    CHECK(rt_kernels_for(1) == NULL && strstr(rt_cuda_module_error(), "no CUDA backend"),
          "no CUDA build: %s", rt_cuda_module_error());
#endif
    /* A module path that does not exist is a clear message (checked in a
     * child so this process's successful load stays). */
    int st = system("RETORT_CUDA_MODULE=/nonexistent/libretort_cuda.so " RETORT_BIN
                    " eval --device cuda --model x --data x 2>&1 | grep -q 'cannot load the CUDA backend\\|no CUDA backend'");
    CHECK(st == 0, "a missing module is named in the error");
    return rt_test_summary();
}
