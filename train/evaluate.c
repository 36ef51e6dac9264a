#include "train/evaluate.h"
#include "train/data/data.h"

#include <stdlib.h>

rt_status rt_eval_stream(rt_ctx *ctx, rt_llama *m, const int32_t *tokens, size_t n, int seq_len,
                         int stride, int batch, double *nll_sum, int64_t *n_predicted) {
    return rt_eval_stream_dump(ctx, m, tokens, n, seq_len, stride, batch, NULL, nll_sum, n_predicted);
}

/* The records (id, pos, logits) of one forward's positions with a real label. */
static rt_status dump_rows(FILE *f, const float *logits, const int32_t *ids, const int32_t *pos,
                           const int32_t *labels, int rows, int64_t vocab) {
    for (int i = 0; i < rows; i++) {
        if (labels[i] == RT_IGNORE_INDEX) continue;
        if (fwrite(&ids[i], 4, 1, f) != 1 || fwrite(&pos[i], 4, 1, f) != 1 ||
            fwrite(logits + (size_t)i * (size_t)vocab, 4, (size_t)vocab, f) != (size_t)vocab)
            return rt_errorf(RT_EINPUT, "--dump-logits: write failed");
    }
    return RT_OK;
}

rt_status rt_eval_stream_dump(rt_ctx *ctx, rt_llama *m, const int32_t *tokens, size_t n,
                              int seq_len, int stride, int batch, FILE *dump, double *nll_sum,
                              int64_t *n_predicted) {
    *nll_sum = 0;
    *n_predicted = 0;
    if (seq_len < 2) return rt_errorf(RT_EINPUT, "--seq-len must be at least 2");
    if (stride <= 0 || stride > seq_len) stride = seq_len;
    const int T = seq_len - 1; /* predictions per full window */
    const int64_t V = m->cfg.vocab_size;
    /* window starts: 0, stride, 2*stride, ... until a window reaches the end */
    size_t n_windows = 1;
    while ((n_windows - 1) * (size_t)stride + (size_t)seq_len < n) n_windows++;
    int32_t *ids = malloc((size_t)batch * T * sizeof *ids);
    int32_t *labels = malloc((size_t)batch * T * sizeof *labels);
    int32_t *pos = malloc((size_t)batch * T * sizeof *pos);
    float *host = dump ? malloc((size_t)batch * T * (size_t)V * sizeof *host) : NULL;
    if (!ids || !labels || !pos || (dump && !host)) {
        free(ids), free(labels), free(pos), free(host);
        return rt_errorf(RT_EINTERNAL, "out of memory");
    }
    const char magic[8] = {'R', 'T', 'L', 'O', 'G', 'I', 'T', '1'};
    rt_status s = RT_OK;
    if (dump && (fwrite(magic, 1, 8, dump) != 8 || fwrite(&V, 8, 1, dump) != 1))
        s = rt_errorf(RT_EINPUT, "--dump-logits: write failed");
    bool no_grad = ctx->no_grad;
    ctx->no_grad = true;
    size_t first_unscored = 1; /* targets before it were scored by an earlier window */
    for (size_t w0 = 0; w0 < n_windows && s == RT_OK; w0 += (size_t)batch) {
        int B = (int)(n_windows - w0 < (size_t)batch ? n_windows - w0 : (size_t)batch);
        for (int b = 0; b < B; b++) {
            size_t start = (w0 + (size_t)b) * (size_t)stride;
            size_t len = start < n ? (n - start < (size_t)seq_len ? n - start : (size_t)seq_len) : 0;
            for (int t = 0; t < T; t++) {
                size_t target = start + (size_t)t + 1;
                bool real = (size_t)t + 1 < len;
                ids[b * T + t] = (size_t)t < len ? tokens[start + t] : 0;
                labels[b * T + t] = real && target >= first_unscored ? tokens[target] : RT_IGNORE_INDEX;
                pos[b * T + t] = t;
            }
            if (start + len > first_unscored) first_unscored = start + len;
        }
        int64_t shape[2] = {B, T};
        rt_ctx_reset(ctx);
        rt_tensor *tid = rt_from_i32(ctx, ids, 2, shape), *tpos = rt_from_i32(ctx, pos, 2, shape);
        rt_tensor *tlab = rt_from_i32(ctx, labels, 2, shape);
        /* Summed NLL; the fused lm_head + loss never holds B*T*V logits, so
         * --dump-logits takes the unfused path that does. */
        rt_tensor *logits = dump ? rt_llama_forward(ctx, m, tid, tpos, NULL) : NULL;
        rt_tensor *loss = !dump    ? rt_llama_loss(ctx, m, tid, tpos, NULL, tlab, 1.0f)
                          : logits ? rt_cross_entropy(ctx, logits, tlab, 1.0f)
                                   : NULL;
        if (!loss) {
            s = ctx->status ? ctx->status : RT_EINTERNAL;
            break;
        }
        float v;
        if ((s = rt_to_host(ctx, loss, &v)) != RT_OK) break;
        *nll_sum += v;
        for (int i = 0; i < B * T; i++) *n_predicted += labels[i] != RT_IGNORE_INDEX;
        if (dump) {
            rt_to_host(ctx, logits, host);
            s = dump_rows(dump, host, ids, pos, labels, B * T, V);
        }
    }
    rt_ctx_reset(ctx);
    ctx->no_grad = no_grad;
    free(ids), free(labels), free(pos), free(host);
    return s;
}

rt_status rt_eval_dataset(rt_ctx *ctx, rt_llama *m, const rt_dataset *d, int batch, double *nll_sum,
                          int64_t *n_predicted) {
    *nll_sum = 0;
    *n_predicted = 0;
    rt_batch b = {0};
    RT_TRY(rt_batch_alloc(&b, batch, rt_dataset_seq_len(d)));
    bool no_grad = ctx->no_grad;
    ctx->no_grad = true;
    rt_status s = RT_OK;
    for (int64_t row = 0; row < rt_dataset_rows(d) && s == RT_OK; row += batch) {
        s = rt_data_val_batch(d, row, &b);
        if (s != RT_OK) break;
        int64_t shape[2] = {b.B, b.T};
        rt_ctx_reset(ctx);
        rt_tensor *tid = rt_from_i32(ctx, b.ids, 2, shape), *tpos = rt_from_i32(ctx, b.pos, 2, shape);
        rt_tensor *tseg = rt_from_i32(ctx, b.seg, 2, shape), *tlab = rt_from_i32(ctx, b.labels, 2, shape);
        rt_tensor *loss = rt_cross_entropy(ctx, rt_llama_forward(ctx, m, tid, tpos, tseg), tlab, 1.0f);
        if (!loss) {
            s = ctx->status ? ctx->status : RT_EINTERNAL;
            break;
        }
        float v;
        rt_to_host(ctx, loss, &v);
        *nll_sum += v;
        *n_predicted += b.n_targets;
    }
    rt_ctx_reset(ctx);
    ctx->no_grad = no_grad;
    rt_batch_free(&b);
    return s;
}
