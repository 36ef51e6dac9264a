/* retort — training logs: metrics.jsonl (one JSON object per line, as the
 * issue tracker and plotting scripts expect), the live progress line, and
 * loss.svg (train and validation loss curves). Only rank 0 writes. */
#ifndef RT_METRICS_H
#define RT_METRICS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kernels/error.h"

typedef struct {
    FILE *jsonl;          /* output_dir/metrics.jsonl, appended */
    bool tty;             /* stdout is a terminal: redraw one progress line */
    int64_t n_train, n_val, cap_train, cap_val;
    double *train_step, *train_loss, *val_step, *val_loss; /* for loss.svg */
    double steps_per_epoch; /* > 0: train lines carry "epoch" = step / steps_per_epoch */
} rt_metrics;

/* Opens output_dir/metrics.jsonl (appending when resuming). */
rt_status rt_metrics_open(rt_metrics *m, const char *output_dir, bool append);
/* One train line: step, loss, lr, grad_norm, tokens_per_s, epoch (when
 * steps_per_epoch is set), peak_mem_mb (the process's peak resident set,
 * getrusage ru_maxrss, in MiB) and the run's skipped_steps so far.
 * Non-finite values are written as null with "nonfinite": true (JSON has no
 * NaN); a skipped step adds "skipped": true. */
void rt_metrics_train(rt_metrics *m, int64_t step, int64_t total, double loss, double lr,
                      double grad_norm, double tokens_per_s, double eta_s, bool print, bool skipped,
                      int64_t skipped_total);
void rt_metrics_eval(rt_metrics *m, int64_t step, double val_loss);
/* A free-form line to stdout that does not tear the progress line. */
void rt_metrics_note(rt_metrics *m, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Writes output_dir/loss.svg from everything logged this run. */
rt_status rt_metrics_svg(const rt_metrics *m, const char *output_dir);
void rt_metrics_close(rt_metrics *m);

#endif
