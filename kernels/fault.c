#include "kernels/fault.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 0: none; 1: a recorder is writing the text; 2: kept (text complete). */
static atomic_int fault_state;
static char fault_text[1024];

rt_status rt_fault_record(const char *lib, const char *call, const char *file, int line,
                          const char *what) {
    int expect = 0;
    if (atomic_compare_exchange_strong(&fault_state, &expect, 1)) {
        int k = snprintf(fault_text, sizeof fault_text, "%s error", lib ? lib : "device");
        if (k < 0) k = 0;
        size_t used = (size_t)k < sizeof fault_text ? (size_t)k : sizeof fault_text - 1;
        if (call)
            snprintf(fault_text + used, sizeof fault_text - used, " in %s", call);
        used = strlen(fault_text);
        if (file)
            snprintf(fault_text + used, sizeof fault_text - used, " at %s:%d", file, line);
        used = strlen(fault_text);
        snprintf(fault_text + used, sizeof fault_text - used, ": %s", what ? what : "failed");
        atomic_store(&fault_state, 2);
    }
    /* A concurrent first recorder may still be writing: report our own text
     * then rather than wait on it. */
    if (atomic_load(&fault_state) == 2)
        return rt_errorf(RT_EINTERNAL, "%s", fault_text);
    return rt_errorf(RT_EINTERNAL, "%s error: %s", lib ? lib : "device", what ? what : "failed");
}

const char *rt_oom_message(char *buf, size_t cap, const char *what, size_t asked,
                           size_t free_bytes, size_t total_bytes) {
    const double mib = 1024.0 * 1024.0;
    int k = snprintf(buf, cap, "out of device memory allocating %s: asked for %.1f MiB",
                     what ? what : "a buffer", (double)asked / mib);
    if (k < 0 || (size_t)k >= cap) return buf;
    if (total_bytes)
        k += snprintf(buf + k, cap - (size_t)k, ", %.1f MiB free of %.1f MiB",
                      (double)free_bytes / mib, (double)total_bytes / mib);
    if ((size_t)k >= cap) return buf;
    snprintf(buf + k, cap - (size_t)k,
             "; lower micro_batch_size or sequence_len, or set gradient_checkpointing: true "
             "in the recipe");
    return buf;
}

rt_status rt_fault_record_oom(const char *what, size_t asked, size_t free_bytes,
                              size_t total_bytes) {
    char msg[512];
    rt_oom_message(msg, sizeof msg, what, asked, free_bytes, total_bytes);
    return rt_fault_record("CUDA", NULL, NULL, 0, msg);
}

rt_status rt_fault_status(void) {
    return atomic_load_explicit(&fault_state, memory_order_acquire) == 2 ? RT_EINTERNAL : RT_OK;
}

const char *rt_fault_message(void) { return rt_fault_status() == RT_OK ? "" : fault_text; }

void rt_fault_clear(void) {
    fault_text[0] = '\0';
    atomic_store(&fault_state, 0);
}

bool rt_fault_sync_mode(void) {
    static atomic_int mode = -1; /* -1: not read yet */
    int m = atomic_load(&mode);
    if (m < 0) {
        const char *s = getenv("RETORT_CUDA_SYNC");
        m = s && *s && strcmp(s, "0") != 0;
        atomic_store(&mode, m);
    }
    return m == 1;
}
