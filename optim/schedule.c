/* retort — learning-rate schedules (see schedule.h for the formulas). */
#include "optim/schedule.h"

#include <math.h>
#include <string.h>

rt_status rt_lr_kind_parse(const char *name, rt_lr_kind *out) {
    if (!out) return rt_errorf(RT_EINTERNAL, "lr_scheduler: NULL output");
    if (!name) return rt_errorf(RT_EINPUT, "lr_scheduler: missing schedule name");
    if (!strcmp(name, "constant") || !strcmp(name, "constant_with_warmup"))
        *out = RT_LR_CONSTANT;
    else if (!strcmp(name, "linear"))
        *out = RT_LR_LINEAR;
    else if (!strcmp(name, "cosine"))
        *out = RT_LR_COSINE;
    else
        return rt_errorf(RT_EINPUT,
                         "lr_scheduler: unknown schedule '%s' (expected constant, linear or cosine)",
                         name);
    return RT_OK;
}

const char *rt_lr_kind_name(rt_lr_kind kind) {
    switch (kind) {
    case RT_LR_CONSTANT: return "constant";
    case RT_LR_LINEAR: return "linear";
    case RT_LR_COSINE: return "cosine";
    }
    return "unknown";
}

static int64_t max1(int64_t x) { return x > 1 ? x : 1; }

static double lr_lambda(rt_lr_kind kind, int64_t step, int64_t warmup, int64_t total) {
    if (step < warmup) return (double)step / (double)max1(warmup);
    switch (kind) {
    case RT_LR_CONSTANT: return 1.0;
    case RT_LR_LINEAR: {
        double r = (double)(total - step) / (double)max1(total - warmup);
        return r > 0.0 ? r : 0.0;
    }
    case RT_LR_COSINE: {
        const double num_cycles = 0.5;
        double progress = (double)(step - warmup) / (double)max1(total - warmup);
        double r = 0.5 * (1.0 + cos(M_PI * num_cycles * 2.0 * progress));
        return r > 0.0 ? r : 0.0;
    }
    }
    return 1.0;
}

float rt_lr_at(rt_lr_kind kind, float base_lr, int64_t step, int64_t warmup_steps,
               int64_t total_steps) {
    if (warmup_steps < 0) warmup_steps = 0;
    return (float)((double)base_lr * lr_lambda(kind, step, warmup_steps, total_steps));
}

int64_t rt_warmup_steps(int64_t warmup_steps, double warmup_ratio, int64_t total_steps) {
    if (warmup_steps > 0) return warmup_steps;
    if (!(warmup_ratio > 0.0) || total_steps <= 0) return 0;
    return (int64_t)ceil((double)total_steps * warmup_ratio);
}
