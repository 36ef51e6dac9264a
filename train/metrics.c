#include "train/metrics.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

rt_status rt_metrics_open(rt_metrics *m, const char *output_dir, bool append) {
    memset(m, 0, sizeof *m);
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", output_dir);
    m->jsonl = fopen(path, append ? "a" : "w");
    if (!m->jsonl) return rt_errorf(RT_EINPUT, "%s: cannot write: %s", path, strerror(errno));
    m->tty = isatty(STDOUT_FILENO);
    return RT_OK;
}

static void push(double **xs, double **ys, int64_t *n, int64_t *cap, double x, double y) {
    if (*n == *cap) {
        int64_t c = *cap ? 2 * *cap : 256;
        double *nx = realloc(*xs, (size_t)c * sizeof *nx);
        if (nx) *xs = nx;
        double *ny = realloc(*ys, (size_t)c * sizeof *ny);
        if (ny) *ys = ny;
        if (!nx || !ny) return;
        *cap = c;
    }
    (*xs)[*n] = x;
    (*ys)[*n] = y;
    (*n)++;
}

static void fmt_eta(double s, char *buf, size_t cap) {
    int t = (int)(s + 0.5);
    snprintf(buf, cap, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
}

/* A JSON number, or null for NaN/Inf (which JSON cannot hold). */
static const char *jnum(char *buf, size_t cap, const char *fmt, double v) {
    if (!isfinite(v)) return "null";
    snprintf(buf, cap, fmt, v);
    return buf;
}

void rt_metrics_train(rt_metrics *m, int64_t step, int64_t total, double loss, double lr,
                      double grad_norm, double tokens_per_s, double eta_s, bool print, bool skipped,
                      int64_t skipped_total) {
    char a[64], b[64], c[64], d[64];
    bool nonfinite = !isfinite(loss) || !isfinite(lr) || !isfinite(grad_norm) || !isfinite(tokens_per_s);
    struct rusage ru;
    double peak_mb = getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss / 1024.0 : 0.0;
    for (int i = 0; m->parts && i < RT_LOSS_PARTS; i++)
        if (m->parts->name[i]) nonfinite |= !isfinite(m->parts->sum[i]);
    fprintf(m->jsonl, "{\"step\":%lld,\"loss\":%s,\"lr\":%s,\"grad_norm\":%s,\"tokens_per_s\":%s%s%s",
            (long long)step, jnum(a, sizeof a, "%.6f", loss), jnum(b, sizeof b, "%.6g", lr),
            jnum(c, sizeof c, "%.6f", grad_norm), jnum(d, sizeof d, "%.1f", tokens_per_s),
            nonfinite ? ",\"nonfinite\":true" : "", skipped ? ",\"skipped\":true" : "");
    if (m->steps_per_epoch > 0) fprintf(m->jsonl, ",\"epoch\":%.4f", (double)step / m->steps_per_epoch);
    fprintf(m->jsonl, ",\"skipped_steps\":%lld,\"peak_mem_mb\":%.1f", (long long)skipped_total, peak_mb);
    for (int i = 0; m->parts && i < RT_LOSS_PARTS; i++) {
        double v = m->parts->sum[i];
        if (!m->parts->name[i]) continue;
        fprintf(m->jsonl, ",\"%s\":%s", m->parts->name[i], jnum(a, sizeof a, "%.6f", v));
        if (isfinite(v))
            push(&m->part_step[i], &m->part_loss[i], &m->n_part[i], &m->cap_part[i], (double)step, v);
    }
    fprintf(m->jsonl, "}\n");
    fflush(m->jsonl);
    if (!isfinite(loss)) loss = NAN; /* kept out of loss.svg below */
    if (isfinite(loss)) push(&m->train_step, &m->train_loss, &m->n_train, &m->cap_train, (double)step, loss);
    char eta[32];
    fmt_eta(eta_s, eta, sizeof eta);
    if (m->tty) {
        printf("\r\033[Kstep %lld/%lld  loss %.4f  lr %.3g  grad_norm %.3f  %.0f tok/s  eta %s",
               (long long)step, (long long)total, loss, lr, grad_norm, tokens_per_s, eta);
        fflush(stdout);
    } else if (print) {
        printf("step %lld/%lld loss %.4f lr %.3g grad_norm %.3f tok/s %.0f eta %s\n", (long long)step,
               (long long)total, loss, lr, grad_norm, tokens_per_s, eta);
        fflush(stdout);
    }
}

void rt_metrics_note(rt_metrics *m, const char *fmt, ...) {
    if (m->tty) printf("\r\033[K");
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

void rt_metrics_eval(rt_metrics *m, int64_t step, double val_loss) {
    char a[64], b[64];
    fprintf(m->jsonl, "{\"step\":%lld,\"val_loss\":%s,\"val_ppl\":%s%s}\n", (long long)step,
            jnum(a, sizeof a, "%.6f", val_loss), jnum(b, sizeof b, "%.6f", exp(val_loss)),
            isfinite(exp(val_loss)) ? "" : ",\"nonfinite\":true");
    fflush(m->jsonl);
    if (isfinite(val_loss)) push(&m->val_step, &m->val_loss, &m->n_val, &m->cap_val, (double)step, val_loss);
    rt_metrics_note(m, "eval step %lld: val_loss %.4f val_ppl %.3f", (long long)step, val_loss,
                    exp(val_loss));
}

static void polyline(FILE *f, const double *xs, const double *ys, int64_t n, double x0, double x1,
                     double y0, double y1, const char *color) {
    if (n == 0) return;
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", color);
    for (int64_t i = 0; i < n; i++)
        fprintf(f, "%.1f,%.1f ", 60 + 520 * (xs[i] - x0) / (x1 - x0), 20 + 300 * (y1 - ys[i]) / (y1 - y0));
    fprintf(f, "\"/>\n");
    for (int64_t i = 0; n < 50 && i < n; i++)
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2\" fill=\"%s\"/>\n",
                60 + 520 * (xs[i] - x0) / (x1 - x0), 20 + 300 * (y1 - ys[i]) / (y1 - y0), color);
}

rt_status rt_metrics_svg(const rt_metrics *m, const char *output_dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/loss.svg", output_dir);
    FILE *f = fopen(path, "w");
    if (!f) return rt_errorf(RT_EINPUT, "%s: cannot write: %s", path, strerror(errno));
    double x0 = 0, x1 = 1, y0 = INFINITY, y1 = -INFINITY;
    for (int64_t i = 0; i < m->n_train; i++) {
        x1 = fmax(x1, m->train_step[i]);
        y0 = fmin(y0, m->train_loss[i]);
        y1 = fmax(y1, m->train_loss[i]);
    }
    for (int64_t i = 0; i < m->n_val; i++) {
        x1 = fmax(x1, m->val_step[i]);
        y0 = fmin(y0, m->val_loss[i]);
        y1 = fmax(y1, m->val_loss[i]);
    }
    for (int p = 0; p < RT_LOSS_PARTS; p++)
        for (int64_t i = 0; i < m->n_part[p]; i++) {
            x1 = fmax(x1, m->part_step[p][i]);
            y0 = fmin(y0, m->part_loss[p][i]);
            y1 = fmax(y1, m->part_loss[p][i]);
        }
    if (!(y1 > y0)) y0 = 0, y1 = y1 > 0 ? y1 : 1;
    double pad = 0.05 * (y1 - y0);
    y0 -= pad, y1 += pad;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"360\" "
               "font-family=\"sans-serif\" font-size=\"11\">\n"
               "<rect width=\"600\" height=\"360\" fill=\"white\"/>\n"
               "<rect x=\"60\" y=\"20\" width=\"520\" height=\"300\" fill=\"none\" stroke=\"#999\"/>\n");
    for (int i = 0; i <= 4; i++) {
        double y = y0 + (y1 - y0) * i / 4;
        fprintf(f, "<text x=\"55\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n", 324 - 75.0 * i, y);
        fprintf(f, "<text x=\"%.1f\" y=\"336\" text-anchor=\"middle\">%.0f</text>\n", 60 + 130.0 * i,
                x0 + (x1 - x0) * i / 4);
    }
    fprintf(f, "<text x=\"320\" y=\"352\" text-anchor=\"middle\">step</text>\n"
               "<text x=\"14\" y=\"170\" transform=\"rotate(-90 14 170)\" text-anchor=\"middle\">loss</text>\n");
    polyline(f, m->train_step, m->train_loss, m->n_train, x0, x1, y0, y1, "#1f77b4");
    polyline(f, m->val_step, m->val_loss, m->n_val, x0, x1, y0, y1, "#d62728");
    fprintf(f, "<text x=\"480\" y=\"36\" fill=\"#1f77b4\">train loss</text>\n"
               "<text x=\"480\" y=\"50\" fill=\"#d62728\">validation loss</text>\n");
    /* the parts (distillation: CE and KD), dashed, each with its metrics.jsonl name */
    static const char *part_color[RT_LOSS_PARTS] = {"#2ca02c", "#9467bd"};
    for (int p = 0, row = 0; p < RT_LOSS_PARTS; p++) {
        if (m->n_part[p] == 0 || !m->parts || !m->parts->name[p]) continue;
        fprintf(f, "<g id=\"%s\" stroke-dasharray=\"4 2\">\n", m->parts->name[p]);
        polyline(f, m->part_step[p], m->part_loss[p], m->n_part[p], x0, x1, y0, y1, part_color[p]);
        fprintf(f, "</g>\n<text x=\"480\" y=\"%d\" fill=\"%s\">train %s</text>\n", 64 + 14 * row++,
                part_color[p], m->parts->name[p]);
    }
    fprintf(f, "</svg>\n");
    return fclose(f) == 0 ? RT_OK : rt_errorf(RT_EINPUT, "%s: write failed", path);
}

void rt_metrics_close(rt_metrics *m) {
    if (m->jsonl) fclose(m->jsonl);
    free(m->train_step);
    free(m->train_loss);
    free(m->val_step);
    free(m->val_loss);
    for (int p = 0; p < RT_LOSS_PARTS; p++) {
        free(m->part_step[p]);
        free(m->part_loss[p]);
    }
    memset(m, 0, sizeof *m);
}
