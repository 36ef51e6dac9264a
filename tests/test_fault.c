/* Tests for the device fault (kernels/fault.h) and how the ctx reports it
 * (autograd/autograd.h rt_ctx_check): the first fault is kept and never
 * overwritten, every later op / backward / rt_to_host fails with it, the
 * out-of-memory text names the figures and the recipe knobs. All on the
 * CPU: the CUDA backend's checking macros (kernels/cuda/cuda_check.h) call
 * exactly these functions. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "autograd/ops.h"
#include "kernels/fault.h"
#include "tests/testutil.h"

static void test_first_fault_kept(void) {
    rt_fault_clear();
    CHECK(rt_fault_status() == RT_OK, "clean start");
    CHECK(!strcmp(rt_fault_message(), ""), "no message: '%s'", rt_fault_message());
    rt_status s = rt_fault_record("CUDA", "cudaMemcpy(dst, src, n)", "kernels/cuda/table.cu", 40,
                                  "an illegal memory access was encountered");
    CHECK(s == RT_EINTERNAL, "record returns RT_EINTERNAL, got %d", (int)s);
    CHECK(rt_fault_status() == RT_EINTERNAL, "fault kept");
    const char *want = "CUDA error in cudaMemcpy(dst, src, n) at kernels/cuda/table.cu:40: "
                       "an illegal memory access was encountered";
    CHECK(!strcmp(rt_fault_message(), want), "text: '%s'", rt_fault_message());
    CHECK(!strcmp(rt_error_message(), want), "errorf message: '%s'", rt_error_message());
    /* A later fault (CUDA errors are sticky: every later call fails too) is
     * noise and must not replace the cause. */
    rt_fault_record("cuBLAS", "cublasSgemm", "kernels/cuda/gemm.cu", 99, "CUBLAS_STATUS_EXECUTION_FAILED");
    CHECK(!strcmp(rt_fault_message(), want), "first kept after a second: '%s'", rt_fault_message());
    CHECK(!strcmp(rt_error_message(), want), "the second reports the first: '%s'",
          rt_error_message());
    rt_fault_clear();
    CHECK(rt_fault_status() == RT_OK && !strcmp(rt_fault_message(), ""), "cleared");
    rt_fault_record(NULL, NULL, NULL, 0, NULL);
    CHECK(!strcmp(rt_fault_message(), "device error: failed"), "defaults: '%s'", rt_fault_message());
    rt_fault_clear();
}

static void test_oom_text(void) {
    char buf[512];
    rt_oom_message(buf, sizeof buf, "activations", (size_t)3 << 30, (size_t)1 << 29, (size_t)80 << 30);
    CHECK(strstr(buf, "activations") && strstr(buf, "3072.0 MiB"), "asked: %s", buf);
    CHECK(strstr(buf, "512.0 MiB free of 81920.0 MiB"), "free/total: %s", buf);
    CHECK(strstr(buf, "micro_batch_size") && strstr(buf, "sequence_len") &&
              strstr(buf, "gradient_checkpointing"),
          "knobs: %s", buf);
    rt_oom_message(buf, sizeof buf, "x", 1 << 20, 0, 0);
    CHECK(!strstr(buf, "free of"), "unknown free left out: %s", buf);
    char tiny[16];
    rt_oom_message(tiny, sizeof tiny, "activations", 1, 2, 3);
    CHECK(strlen(tiny) == sizeof tiny - 1, "truncates safely: '%s'", tiny);
    rt_fault_clear();
    rt_fault_record_oom("kernel scratch", 100 << 20, 1 << 20, 2 << 20);
    CHECK(rt_fault_status() != RT_OK && strstr(rt_fault_message(), "kernel scratch") &&
              strstr(rt_fault_message(), "micro_batch_size"),
          "oom fault: %s", rt_fault_message());
    rt_fault_clear();
}

/* Every op, rt_backward and rt_to_host stop on a kept fault. */
static void test_ctx_reports_fault(void) {
    rt_fault_clear();
    rt_ctx *ctx = rt_ctx_new(RT_CPU, 0);
    float xs[4] = {1, 2, 3, 4};
    int64_t shape[1] = {4};
    rt_tensor *x = rt_from_f32(ctx, xs, 1, shape);
    x->requires_grad = true;
    rt_tensor *y = rt_scale(ctx, x, 2.0f);
    CHECK(y && ctx->status == RT_OK, "ops run before a fault");
    /* As if the kernel behind y had failed asynchronously. */
    rt_fault_record("CUDA", "the kernel launched by rt_cuda_scale", "elementwise.cu", 7, "boom");
    float out[4] = {0};
    rt_status s = rt_to_host(ctx, y, out);
    CHECK(s == RT_EINTERNAL && ctx->status == RT_EINTERNAL, "rt_to_host fails: %d", (int)s);
    CHECK(isnan(out[0]) && isnan(out[3]), "rt_to_host never returns stale values: %g", out[0]);
    CHECK(strstr(rt_error_message(), "boom") != NULL, "message: %s", rt_error_message());
    rt_ctx_reset(ctx); /* a new step: ctx->status cleared, the fault is not */
    CHECK(ctx->status == RT_OK, "reset clears the step status");
    x = rt_from_f32(ctx, xs, 1, shape);
    CHECK(x == NULL && ctx->status == RT_EINTERNAL, "the next op fails");
    CHECK(rt_add(ctx, x, x) == NULL, "and every op after it");
    rt_ctx_reset(ctx);
    CHECK(rt_backward(ctx, NULL) == RT_EINTERNAL, "backward fails");
    CHECK(strstr(rt_error_message(), "boom") != NULL, "with the fault's text: %s",
          rt_error_message());
    rt_fault_clear();
    rt_ctx_reset(ctx);
    x = rt_from_f32(ctx, xs, 1, shape);
    CHECK(x && rt_to_host(ctx, x, out) == RT_OK && out[2] == 3.0f, "clean again after clear");
    rt_ctx_free(ctx);
}

/* Many threads fault at once: exactly one complete text is kept. */
#define NTHREADS 8
static void *racer(void *arg) {
    char what[64];
    snprintf(what, sizeof what, "fault-from-thread-%d-end", (int)(intptr_t)arg);
    for (int i = 0; i < 200; i++) rt_fault_record("CUDA", "race", "t.c", i, what);
    return NULL;
}

static void test_threads(void) {
    rt_fault_clear();
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) pthread_create(&th[i], NULL, racer, (void *)(intptr_t)i);
    for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
    const char *m = rt_fault_message();
    int who = -1;
    CHECK(sscanf(m, "CUDA error in race at t.c:0: fault-from-thread-%d-end", &who) == 1 &&
              who >= 0 && who < NTHREADS,
          "one whole first text: '%s'", m);
    rt_fault_clear();
}

static void test_sync_mode(void) {
    /* Read once per process; main sets it before anything asks. */
    CHECK(rt_fault_sync_mode(), "RETORT_CUDA_SYNC=1 turns sync mode on");
}

int main(void) {
    setenv("RETORT_CUDA_SYNC", "1", 1);
    test_first_fault_kept();
    test_oom_text();
    test_ctx_reports_fault();
    test_threads();
    test_sync_mode();
    return rt_test_summary();
}
