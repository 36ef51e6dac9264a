/* Tests for tests/compare.h: a NaN or Inf anywhere is the worst error, in
 * any position, and survives later finite elements. */
#include <math.h>

#include "tests/compare.h"
#include "tests/testutil.h"

int main(void) {
    /* rt_worse */
    CHECK(rt_worse(0, 1) == 1 && rt_worse(2, 1) == 2, "larger wins");
    CHECK(isnan(rt_worse(NAN, 5)) && isnan(rt_worse(5, NAN)), "NaN wins either side");
    CHECK(isinf(rt_worse(1e300, INFINITY)), "Inf beats finite");
    CHECK(isnan(rt_worse(INFINITY, NAN)), "NaN beats Inf");
    /* The bug this replaces: a NaN followed by a finite error. */
    double m = 0;
    const double errs[] = {0.1, NAN, 0.2, 0.0};
    for (int i = 0; i < 4; i++) m = rt_worse(m, errs[i]);
    CHECK(isnan(m), "NaN in the middle survives: %g", m);
    double old = 0;
    for (int i = 0; i < 4; i++)
        if (!(errs[i] <= old)) old = errs[i];
    CHECK(!isnan(old), "(the old running max loses it: %g)", old);

    /* rt_abs_err */
    CHECK(rt_abs_err(1, 1) == 0 && rt_abs_err(1, 3) == 2, "plain");
    CHECK(rt_abs_err(INFINITY, INFINITY) == 0, "equal infinities agree");
    CHECK(isinf(rt_abs_err(INFINITY, 1)) && isinf(rt_abs_err(1, -INFINITY)), "Inf vs finite");
    CHECK(isinf(rt_abs_err(INFINITY, -INFINITY)), "opposite infinities");
    CHECK(isnan(rt_abs_err(NAN, NAN)) && isnan(rt_abs_err(NAN, 0)), "NaN is never equal");

    /* rt_max_abs_rel: a NaN at every position fails (the old max failed
     * unless the NaN came last). */
    const float ref[5] = {1, -2, 3, 4, 5};
    for (int pos = 0; pos < 5; pos++) {
        float got[5] = {1, -2, 3, 4, 5};
        got[pos] = NAN;
        CHECK(!(rt_max_abs_rel(got, ref, 5) <= 1e-3), "NaN at %d caught", pos);
        got[pos] = INFINITY;
        CHECK(!(rt_max_abs_rel(got, ref, 5) <= 1e-3), "Inf at %d caught", pos);
    }
    float same[5] = {1, -2, 3, 4, 5};
    CHECK(rt_max_abs_rel(same, ref, 5) == 0, "identical is 0");
    float off[5] = {1, -2, 3, 4, 5.5f};
    CHECK(fabs(rt_max_abs_rel(off, ref, 5) - 0.1) < 1e-12, "0.5 / scale 5 = 0.1: %g",
          rt_max_abs_rel(off, ref, 5));
    /* An infinite reference must not scale every other error away. */
    const float iref[3] = {INFINITY, 1, 2};
    float iget[3] = {INFINITY, 1, 3};
    CHECK(rt_max_abs_rel(iget, iref, 3) == 0.5, "scale 2 from the finite entries: %g",
          rt_max_abs_rel(iget, iref, 3));
    /* A NaN in the reference fails too (the case is broken). */
    const float nref[2] = {NAN, 1};
    float nget[2] = {0, 1};
    CHECK(isnan(rt_max_abs_rel(nget, nref, 2)), "NaN reference");
    const double dref[3] = {1, 2, 3};
    float dget[3] = {1, NAN, 3};
    CHECK(isnan(rt_max_abs_rel_f64(dget, dref, 3)), "f64 variant catches NaN");
    return rt_test_summary();
}
