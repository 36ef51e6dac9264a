/* retort — the device fault: the first failed CUDA / cuBLAS / cuDNN / NCCL
 * call of the process, kept until the process ends.
 *
 * Device kernels are void (kernels/kernels.h) and run asynchronously: an
 * illegal address or a failed launch surfaces at some later call, often in
 * another op. CUDA's own error for such faults is sticky (every later call
 * fails too), so the FIRST message is the root cause and every later one is
 * noise. rt_fault_record therefore keeps the first fault and ignores the
 * rest; the ctx (autograd/autograd.h) turns it into its status at the next
 * op, backward, rt_to_host and trainer step, so nothing computes on garbage.
 *
 * Process-wide (not thread-local, unlike the rt_errorf message): the device
 * is shared by every thread. Thread-safe: the first recorder wins.
 * Pure C, no CUDA headers, so the bookkeeping is unit-tested on the CPU
 * (tests/test_fault.c).
 */
#ifndef RT_FAULT_H
#define RT_FAULT_H

#include <stdbool.h>
#include <stddef.h>

#include "kernels/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Records a fault unless one is already kept: "<lib> error in <call> at
 * <file>:<line>: <what>" (call/file may be NULL). Also sets this thread's
 * rt_errorf message to the KEPT (first) fault's text. Returns RT_EINTERNAL. */
rt_status rt_fault_record(const char *lib, const char *call, const char *file, int line,
                          const char *what);

/* Records an out-of-memory fault with the figures and the recipe knobs that
 * lower memory use (see rt_oom_message). Returns RT_EINTERNAL. */
rt_status rt_fault_record_oom(const char *what, size_t asked, size_t free_bytes,
                              size_t total_bytes);

/* Formats the out-of-memory text into buf: what was being allocated, bytes
 * asked, bytes free of total (free/total 0: unknown, left out), and the
 * recipe keys that shrink activations (micro_batch_size, sequence_len,
 * gradient_checkpointing). Returns buf. */
const char *rt_oom_message(char *buf, size_t cap, const char *what, size_t asked,
                           size_t free_bytes, size_t total_bytes);

/* RT_OK while no fault is kept, else RT_EINTERNAL. Cheap (one atomic load). */
rt_status rt_fault_status(void);

/* The kept fault's text ("" when none). Owned by the library; stable once set. */
const char *rt_fault_message(void);

/* Forgets the kept fault. Only for tests and for a process that has reset
 * its device: after a sticky CUDA error the device stays unusable. */
void rt_fault_clear(void);

/* RETORT_CUDA_SYNC=1 in the environment (read once): device backends then
 * synchronise after every launch so a fault names the kernel that caused it. */
bool rt_fault_sync_mode(void);

#ifdef __cplusplus
}
#endif
#endif
