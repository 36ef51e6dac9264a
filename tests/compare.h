/* retort — NaN-aware error figures for tests and benchmarks.
 *
 * The usual running maximum `if (!(d <= m)) m = d` takes a NaN but drops it
 * again at the next finite element, and fmax(m, d) ignores it outright: a
 * kernel that writes NaN (or leaves garbage) would pass unless the LAST
 * element was bad. Here a NaN is the worst possible error and stays so, and
 * an Inf where the reference has another value is an infinite error.
 * Header-only (static inline) so tests/ and bench/ programs share it;
 * tests/test_compare.c checks the comparison itself. */
#ifndef RT_TESTS_COMPARE_H
#define RT_TESTS_COMPARE_H

#include <math.h>
#include <stdint.h>

/* The worse of two error figures: NaN beats everything, then the larger.
 * Use as worst = rt_worse(worst, e). */
static inline double rt_worse(double worst, double e) {
    if (isnan(worst)) return worst;
    if (isnan(e)) return e;
    return e > worst ? e : worst;
}

/* |a - b| as an error: 0 when equal (so matching infinities agree), NaN
 * when either is NaN, +Inf when one is infinite and the other is not. */
static inline double rt_abs_err(double a, double b) {
    if (isnan(a) || isnan(b)) return NAN;
    if (a == b) return 0.0;
    return fabs(a - b);
}

/* max_j |a_j - b_j| / max(1, max_j |b_j| over FINITE b_j): the reference's
 * scale, so an infinite reference cannot scale every error down to 0. NaN
 * if any element is NaN on either side. */
static inline double rt_max_abs_rel(const float *a, const float *b, int64_t n) {
    double m = 0, scale = 1;
    for (int64_t j = 0; j < n; j++)
        if (isfinite(b[j]) && fabs((double)b[j]) > scale) scale = fabs((double)b[j]);
    for (int64_t j = 0; j < n; j++) m = rt_worse(m, rt_abs_err(a[j], b[j]));
    return m / scale;
}

/* The same against a double reference. */
static inline double rt_max_abs_rel_f64(const float *a, const double *b, int64_t n) {
    double m = 0, scale = 1;
    for (int64_t j = 0; j < n; j++)
        if (isfinite(b[j]) && fabs(b[j]) > scale) scale = fabs(b[j]);
    for (int64_t j = 0; j < n; j++) m = rt_worse(m, rt_abs_err(a[j], b[j]));
    return m / scale;
}

#endif
