/* Data-parallel collectives and the ZeRO-1 step (dist/).
 *
 * CTest runs this under `mpiexec -np 2`; run alone it is world 1, where
 * every expectation below still holds (the average over one rank is the
 * rank's own data) and the cross-process parts print SKIP.
 *
 * References are independent of dist/: every rank can compute every other
 * rank's data (a formula of rank and index), so the expected averages,
 * norms and the single-process AdamW run are computed locally. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dist/dist.h"
#include "dist/zero1.h"
#include "kernels/kernels.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "tests/compare.h"
#include "tests/testutil.h"

#if defined(RETORT_HAVE_MPI) && defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define RT_TEST_LSAN_BEFORE_FINALIZE 1
/* Open MPI 4.1 frees little at MPI_Finalize and unloads its plugins
 * (dlclose), so an at-exit leak report is full of "<unknown module>"
 * frames no suppression can name. The test therefore runs the leak check
 * itself just before finalizing (which also disables the at-exit one),
 * while MPI's state is still reachable and its modules still mapped, and
 * ignores what MPI_Init allocates on this thread; what MPI's own threads
 * lose is suppressed by library name here. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
    return "leak:libmpi.so\nleak:libopen-pal.so\nleak:libopen-rte.so\nleak:libhwloc.so\n"
           "leak:libevent\nleak:libpmix.so\nleak:mca_\n";
}
#endif

static rt_dist D;

/* Exactly representable data (multiples of 1/4, small), so the average
 * over 2 ranks is exact in f32. */
static float datum(int rank, int64_t i) { return (float)(i % 97) * 0.25f + (float)rank * 2.0f - 3.0f; }

static double avg_datum(int64_t i) {
    double s = 0;
    for (int r = 0; r < D.world; r++) s += datum(r, i);
    return s / D.world;
}

static bool close_rel(double got, double want, double tol) {
    return fabs(got - want) <= tol * fmax(1.0, fabs(want));
}

static void test_allreduce(void) {
    enum { N = 1001 };
    float *buf = malloc(N * sizeof(float));
    for (int64_t i = 0; i < N; i++) buf[i] = datum(D.rank, i);
    CHECK(rt_dist_allreduce_avg(&D, buf, N) == RT_OK, "%s", rt_error_message());
    int bad = 0;
    for (int64_t i = 0; i < N; i++) bad += !close_rel(buf[i], avg_datum(i), 1e-7);
    CHECK(bad == 0, "allreduce_avg: %d of %d elements differ from the average", bad, N);
    CHECK(rt_dist_allreduce_avg(&D, buf, 0) == RT_OK, "n == 0 is a no-op");
    CHECK(rt_dist_allreduce_avg(&D, buf, -1) == RT_EINTERNAL, "negative n is rejected");
    free(buf);
}

static void test_sum_f64(void) {
    double v[3] = {D.rank + 1.0, 0.5 * D.rank, 1e10};
    CHECK(rt_dist_allreduce_sum_f64(&D, v, 3) == RT_OK, "%s", rt_error_message());
    double w = D.world;
    CHECK(v[0] == w * (w + 1) / 2, "sum of rank+1: got %g", v[0]);
    CHECK(v[1] == 0.5 * w * (w - 1) / 2, "sum of rank/2: got %g", v[1]);
    CHECK(v[2] == 1e10 * w, "sum of 1e10: got %g", v[2]);
}

static void test_scatter_gather(void) {
    const int64_t shard = 12, n = shard * D.world;
    float *buf = malloc((size_t)n * sizeof(float)), *out = malloc((size_t)shard * sizeof(float));
    float *full = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) buf[i] = datum(D.rank, i);
    CHECK(rt_dist_reduce_scatter_avg(&D, buf, out, n) == RT_OK, "%s", rt_error_message());
    int bad = 0;
    for (int64_t j = 0; j < shard; j++) bad += !close_rel(out[j], avg_datum(D.rank * shard + j), 1e-7);
    CHECK(bad == 0, "reduce_scatter_avg: %d wrong elements in rank %d's shard", bad, D.rank);
    for (int64_t i = 0; i < n; i++) full[i] = NAN;
    CHECK(rt_dist_allgather(&D, out, full, n) == RT_OK, "%s", rt_error_message());
    bad = 0;
    for (int64_t i = 0; i < n; i++) bad += !close_rel(full[i], avg_datum(i), 1e-7);
    CHECK(bad == 0, "reduce-scatter + allgather round trip: %d wrong elements", bad);

    /* In place, as ZeRO-1 uses them: the shard lives inside the full buffer. */
    for (int64_t i = 0; i < n; i++) buf[i] = datum(D.rank, i);
    float *own = buf + D.rank * shard;
    CHECK(rt_dist_reduce_scatter_avg(&D, buf, own, n) == RT_OK, "%s", rt_error_message());
    bad = 0;
    for (int64_t j = 0; j < shard; j++) bad += !close_rel(own[j], avg_datum(D.rank * shard + j), 1e-7);
    CHECK(bad == 0, "in-place reduce_scatter_avg: %d wrong elements", bad);
    CHECK(rt_dist_allgather(&D, own, buf, n) == RT_OK, "%s", rt_error_message());
    bad = 0;
    for (int64_t i = 0; i < n; i++) bad += !close_rel(buf[i], avg_datum(i), 1e-7);
    CHECK(bad == 0, "in-place allgather: %d wrong elements", bad);

    if (D.world > 1) {
        CHECK(rt_dist_reduce_scatter_avg(&D, buf, out, n + 1) == RT_EINTERNAL,
              "n %% world != 0 must be rejected");
        CHECK(strstr(rt_error_message(), "split evenly") != NULL, "message: %s",
              rt_error_message());
        /* Overlapping the full buffer anywhere but at the own shard is a bug. */
        float *wrong = buf + ((D.rank + 1) % D.world) * shard + 1;
        CHECK(rt_dist_allgather(&D, wrong, buf, n) == RT_EINTERNAL,
              "overlapping shard must be rejected");
    }
    free(buf);
    free(out);
    free(full);
}

static void test_all_true_broadcast(void) {
    bool flag = true;
    CHECK(rt_dist_all_true(&D, &flag) == RT_OK && flag, "all true stays true");
    flag = D.rank != D.world - 1; /* false on the last rank only */
    CHECK(rt_dist_all_true(&D, &flag) == RT_OK, "%s", rt_error_message());
    CHECK(!flag, "one false rank makes every rank false");
    flag = D.rank == 0 && D.world > 1 ? false : true;
    CHECK(rt_dist_all_true(&D, &flag) == RT_OK && flag == (D.world == 1), "false on rank 0 only");

    const int root = D.world - 1;
    struct { int64_t step; double loss; char name[8]; } meta = {0, 0, ""};
    if (D.rank == root) {
        meta.step = 42;
        meta.loss = 1.25;
        memcpy(meta.name, "ckpt-7", 7);
    }
    CHECK(rt_dist_broadcast(&D, &meta, sizeof meta, root) == RT_OK, "%s", rt_error_message());
    CHECK(meta.step == 42 && meta.loss == 1.25 && strcmp(meta.name, "ckpt-7") == 0,
          "broadcast from rank %d: got step %lld loss %g name '%s'", root, (long long)meta.step,
          meta.loss, meta.name);
    float f[5];
    for (int i = 0; i < 5; i++) f[i] = D.rank == 0 ? (float)i * 1.5f : -1.0f;
    CHECK(rt_dist_broadcast_f32(&D, f, 5, 0) == RT_OK, "%s", rt_error_message());
    CHECK(f[0] == 0.0f && f[4] == 6.0f, "broadcast_f32 from rank 0: got %g %g", f[0], f[4]);
    CHECK(rt_dist_broadcast(&D, &meta, sizeof meta, D.world) == RT_EINTERNAL,
          "root outside the world is rejected");
    CHECK(rt_dist_barrier(&D) == RT_OK, "%s", rt_error_message());
}

/* ---- ZeRO-1 versus stage 0 versus a single-process reference ---------- */

enum { USED = 333, STEPS = 3 };
/* Gradient scale per step: clipping on, off (norm < 0.1), on. Powers of two
 * times multiples of 1/64, so that sums over up to 4 ranks and their
 * averages are exact in f32 whatever order MPI adds them in: then stage 0,
 * ZeRO-1 and the reference see the same averaged gradient bits, and only
 * the (double) norm accumulation order differs. */
static const float grad_scale[STEPS] = {1.0f, 1.0f / 128, 4.0f};

static float grad_of(int rank, int step, int64_t i) {
    float c = cosf(0.37f * (float)i + 1.3f * (float)rank + (float)step);
    return grad_scale[step] * roundf(c * 64.0f) / 64.0f;
}

static void fill_grads(float *g, int64_t n, int rank, int step) {
    for (int64_t i = 0; i < n; i++) g[i] = i < USED ? grad_of(rank, step, i) : 0.0f;
}

static double max_rel_diff(const float *a, const float *b, int64_t n) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / fmax(1e-6, fabs((double)b[i]));
        worst = rt_worse(worst, d); /* NaN wins and stays */
    }
    return worst;
}

static void test_zero1(void) {
    const int64_t pad = rt_zero1_pad_multiple(&D);
    CHECK(pad % 64 == 0 && pad % D.world == 0, "pad multiple %lld", (long long)pad);
    const int64_t n = (USED + pad - 1) / pad * pad;
    const size_t bytes = (size_t)n * sizeof(float);
    float *p0 = calloc(n, 4), *p1 = calloc(n, 4), *pr = calloc(n, 4), *g = calloc(n, 4);
    float *mr = calloc(n, 4), *vr = calloc(n, 4), *gr = calloc(n, 4);
    float *mfull = calloc(n, 4), *vfull = calloc(n, 4);
    for (int64_t i = 0; i < USED; i++) p0[i] = sinf((float)i);
    memcpy(p1, p0, bytes);
    memcpy(pr, p0, bytes);

    rt_adamw_config cfg = rt_adamw_default();
    cfg.weight_decay = 0.1;
    const float lr = 1e-2f, max_norm = 1.0f;
    rt_zero1 dp, z1;
    CHECK(rt_dp_init(&dp, &D, n, RT_CPU) == RT_OK, "%s", rt_error_message());
    CHECK(rt_zero1_init(&z1, &D, n, RT_CPU) == RT_OK, "%s", rt_error_message());
    CHECK(z1.shard_n == n / D.world && z1.shard_begin == D.rank * (n / D.world),
          "rank %d shard [%lld, +%lld)", D.rank, (long long)z1.shard_begin, (long long)z1.shard_n);

    bool clipped[STEPS] = {0};
    for (int s = 0; s < STEPS; s++) {
        const int64_t t = s + 1;
        /* Reference: average over ranks in double, then the single-buffer optim/ path. */
        double ss = 0;
        for (int64_t i = 0; i < n; i++) {
            double a = 0;
            for (int r = 0; r < D.world; r++) a += i < USED ? grad_of(r, s, i) : 0.0f;
            gr[i] = (float)(a / D.world);
            ss += (double)gr[i] * gr[i];
        }
        const double want_norm = sqrt(ss);
        clipped[s] = want_norm > max_norm;
        float ref_norm = rt_clip_grad_norm(gr, n, max_norm);
        CHECK(rt_adamw_update(pr, gr, mr, vr, n, lr, &cfg, t) == RT_OK, "%s", rt_error_message());

        float norm0 = -1, norm1 = -1;
        fill_grads(g, n, D.rank, s);
        CHECK(rt_dp_step(&dp, &D, p0, g, lr, &cfg, t, max_norm, &norm0) == RT_OK, "%s",
              rt_error_message());
        fill_grads(g, n, D.rank, s);
        CHECK(rt_zero1_step(&z1, &D, p1, g, lr, &cfg, t, max_norm, &norm1) == RT_OK, "%s",
              rt_error_message());
        CHECK(close_rel(norm0, want_norm, 1e-6), "step %d: stage-0 norm %.9g, want %.9g", s,
              (double)norm0, want_norm);
        CHECK(close_rel(norm1, want_norm, 1e-6), "step %d: ZeRO-1 norm %.9g, want %.9g", s,
              (double)norm1, want_norm);
        CHECK(close_rel(ref_norm, want_norm, 1e-6), "step %d: reference norm", s);
    }
    CHECK(clipped[0] && !clipped[1] && clipped[2], "the steps exercise clip on/off/on");
    double d01 = max_rel_diff(p1, p0, n), d0r = max_rel_diff(p0, pr, n);
    CHECK(d01 < 1e-6, "ZeRO-1 vs stage-0 params after %d steps: max rel diff %g", STEPS, d01);
    CHECK(d0r < 1e-6, "stage-0 vs single-process reference: max rel diff %g", d0r);
    double moved = 0;
    for (int64_t i = 0; i < USED; i++) moved = fmax(moved, fabs(p1[i] - sinf((float)i)));
    CHECK(moved > 1e-3, "parameters moved (max change %g)", moved);
    int pad_nonzero = 0;
    for (int64_t i = USED; i < n; i++) pad_nonzero += p1[i] != 0.0f || p0[i] != 0.0f;
    CHECK(pad_nonzero == 0, "padding stays zero (%d nonzero)", pad_nonzero);

    /* Checkpoint helpers: the gathered ZeRO-1 moments are the full moments. */
    CHECK(rt_zero1_gather_state(&z1, &D, mfull, vfull) == RT_OK, "%s", rt_error_message());
    double dm = max_rel_diff(mfull, mr, USED), dv = max_rel_diff(vfull, vr, USED);
    CHECK(dm < 1e-5 && dv < 1e-5, "gathered moments vs reference: m %g, v %g", dm, dv);
    rt_zero1 z2;
    CHECK(rt_zero1_init(&z2, &D, n, RT_CPU) == RT_OK, "%s", rt_error_message());
    CHECK(rt_zero1_load_state(&z2, mfull, vfull) == RT_OK, "%s", rt_error_message());
    CHECK(memcmp(z2.m, z1.m, (size_t)z1.shard_n * 4) == 0 &&
              memcmp(z2.v, z1.v, (size_t)z1.shard_n * 4) == 0,
          "load_state restores this rank's shard");
    rt_zero1_free(&z2);

    /* A NaN gradient on rank 0 alone: every rank sees a NaN norm and skips. */
    memcpy(pr, p1, bytes);
    float mb = z1.m[0];
    fill_grads(g, n, D.rank, 0);
    if (D.rank == 0) g[5] = NAN;
    float norm = 0;
    CHECK(rt_zero1_step(&z1, &D, p1, g, lr, &cfg, STEPS + 1, max_norm, &norm) == RT_OK, "%s",
          rt_error_message());
    CHECK(isnan(norm), "rank %d: norm %g, want NaN", D.rank, (double)norm);
    CHECK(memcmp(p1, pr, bytes) == 0 && z1.m[0] == mb, "rank %d: skipped step changed state",
          D.rank);
    fill_grads(g, n, D.rank, 0);
    if (D.rank == D.world - 1) g[7] = INFINITY;
    CHECK(rt_dp_step(&dp, &D, p0, g, lr, &cfg, STEPS + 1, max_norm, &norm) == RT_OK, "%s",
          rt_error_message());
    CHECK(isinf(norm), "stage 0: rank %d: norm %g, want Inf", D.rank, (double)norm);

    /* Bad arguments fail on every rank before any communication. */
    CHECK(rt_zero1_step(&z1, &D, p1, g, lr, &cfg, 0, max_norm, &norm) == RT_EINPUT, "t = 0");
    CHECK(rt_dp_step(&z1, &D, p1, g, lr, &cfg, 1, max_norm, &norm) == RT_EINTERNAL,
          "stage-0 step on a ZeRO-1 state");
    rt_zero1 bad;
    /* CUDA buffers are supported (issue #15), but only where the build has
     * the backend and the collectives run on that device too. */
    CHECK(rt_zero1_init(&bad, &D, n, RT_CUDA) ==
              (rt_kernels_for(RT_CUDA) ? RT_EINTERNAL : RT_EINPUT),
          "RT_CUDA buffers with CPU collectives: %s", rt_error_message());
    CHECK(rt_zero1_init(&bad, &D, 0, RT_CPU) == RT_EINTERNAL, "n = 0");
    if (D.world > 1)
        CHECK(rt_zero1_init(&bad, &D, n + 1, RT_CPU) == RT_EINTERNAL, "n %% world != 0");

    rt_zero1_free(&dp);
    rt_zero1_free(&z1);
    rt_zero1_free(&z1); /* safe twice */
    free(p0); free(p1); free(pr); free(g); free(mr); free(vr); free(gr); free(mfull); free(vfull);
}

/* rt_dist_abort without MPI: message on stderr and exit(code). Forked, and
 * only when MPI is not running (forking an MPI process is not portable). */
static void test_abort(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/abort.txt", rt_test_tmpdir());
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(path, "w", stderr)) _exit(99);
        rt_dist_abort(&D, 3, "out of cheese");
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid, "fork/wait");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 3, "abort exit status %d", status);
    char line[128] = "";
    FILE *f = fopen(path, "r");
    if (f) {
        if (!fgets(line, sizeof line, f)) line[0] = 0;
        fclose(f);
    }
    CHECK(strcmp(line, "retort: error: out of cheese\n") == 0, "abort message '%s'", line);
}

int main(int argc, char **argv) {
#ifdef RT_TEST_LSAN_BEFORE_FINALIZE
    __lsan_disable(); /* what MPI_Init allocates and drops is MPI's business */
#endif
    rt_status st = rt_dist_init(&D, &argc, &argv);
#ifdef RT_TEST_LSAN_BEFORE_FINALIZE
    __lsan_enable();
#endif
    if (st != RT_OK) {
        fprintf(stderr, "rt_dist_init: %s\n", rt_error_message());
        return 1;
    }
    CHECK(D.world >= 1 && D.rank >= 0 && D.rank < D.world, "rank %d of %d", D.rank, D.world);
    CHECK(D.local_rank >= 0 && D.local_rank < D.local_world && D.local_world <= D.world,
          "local rank %d of %d", D.local_rank, D.local_world);
    CHECK(rt_dist_use_device(&D, RT_CPU) == RT_OK, "%s", rt_error_message());
#ifndef RETORT_HAVE_CUDA
    CHECK(rt_dist_use_device(&D, RT_CUDA) == RT_EINPUT, "cuda without CUDA build");
#endif
    if (D.rank == 0) {
        if (D.world == 1)
            SKIP("1 rank: collectives run as world-size-1 no-ops; run under `mpiexec -np 2` "
                 "to exercise them across processes");
        if (D.mpi_active)
            SKIP("MPI is running: rt_dist_abort's exit path is not tested (it would end the job)");
    }
    test_allreduce();
    test_sum_f64();
    test_scatter_gather();
    test_all_true_broadcast();
    test_zero1();
    if (!D.mpi_active) test_abort();

    /* One summary for the job: every rank's counts, summed. */
    double counts[3] = {rt_t_pass, rt_t_fail, rt_t_skip};
    if (rt_dist_allreduce_sum_f64(&D, counts, 3) != RT_OK) {
        fprintf(stderr, "rank %d: %s\n", D.rank, rt_error_message());
        counts[1] += 1;
    }
    rt_t_pass = (int)counts[0];
    rt_t_fail = (int)counts[1];
    rt_t_skip = (int)counts[2];
    int rc = rt_t_fail ? 1 : 0;
    if (D.rank == 0) rc = rt_test_summary();
#ifdef RT_TEST_LSAN_BEFORE_FINALIZE
    if (D.mpi_active) __lsan_do_leak_check();
#endif
    rt_dist_finalize(&D);
    return rc;
}
