/* retort — training logs: metrics.jsonl (one JSON object per line, as the
 * issue tracker and plotting scripts expect), the live progress line, and
 * loss.svg (train and validation loss curves). Only rank 0 writes. */
#ifndef RT_METRICS_H
#define RT_METRICS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kernels/error.h"

/* Named parts of the train loss that a loss function reports beside it
 * (distillation: "loss_ce" and "loss_kd", train/distill.h), on the same scale
 * as the loss: each micro-batch adds its part's value, like the loss itself.
 * A part whose name is NULL is not computed and not logged. */
#define RT_LOSS_PARTS 2
typedef struct {
    const char *name[RT_LOSS_PARTS];
    double sum[RT_LOSS_PARTS]; /* this step's sum over micro-batches (the trainer zeroes it) */
} rt_loss_parts;

typedef struct {
    FILE *jsonl;          /* output_dir/metrics.jsonl, appended */
    bool tty;             /* stdout is a terminal: redraw one progress line */
    int64_t n_train, n_val, cap_train, cap_val;
    double *train_step, *train_loss, *val_step, *val_loss; /* for loss.svg */
    double steps_per_epoch; /* > 0: train lines carry "epoch" = step / steps_per_epoch */
    const rt_loss_parts *parts; /* NULL, or this step's parts (already averaged over ranks) */
    int64_t n_part[RT_LOSS_PARTS], cap_part[RT_LOSS_PARTS];
    double *part_step[RT_LOSS_PARTS], *part_loss[RT_LOSS_PARTS]; /* for loss.svg */
} rt_metrics;

/* Opens output_dir/metrics.jsonl (appending when resuming). */
rt_status rt_metrics_open(rt_metrics *m, const char *output_dir, bool append);
/* One train line: step, loss, the named parts of m->parts (e.g. loss_ce,
 * loss_kd), lr, grad_norm, tokens_per_s, epoch (when
 * steps_per_epoch is set), peak_mem_mb (the process's peak resident set,
 * getrusage ru_maxrss, in MiB) and the run's skipped_steps so far.
 * Non-finite values are written as null with "nonfinite": true (JSON has no
 * NaN); a skipped step adds "skipped": true. */
void rt_metrics_train(rt_metrics *m, int64_t step, int64_t total, double loss, double lr,
                      double grad_norm, double tokens_per_s, double eta_s, bool print, bool skipped,
                      int64_t skipped_total);
/* One eval line: val_loss (the mean target-token cross-entropy of the
 * held-out rows; in distillation too: the student's CE, no KD part) and
 * val_ppl = exp(val_loss). */
void rt_metrics_eval(rt_metrics *m, int64_t step, double val_loss);
/* A free-form line to stdout that does not tear the progress line. */
void rt_metrics_note(rt_metrics *m, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Writes output_dir/loss.svg from everything logged this run: train and
 * validation loss, and each named loss part (distillation: CE and KD). */
rt_status rt_metrics_svg(const rt_metrics *m, const char *output_dir);
void rt_metrics_close(rt_metrics *m);

#endif
