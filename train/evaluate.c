#include "train/evaluate.h"

#include <stdlib.h>

rt_status rt_eval_stream(rt_ctx *ctx, rt_llama *m, const int32_t *tokens, size_t n, int seq_len,
                         int batch, double *nll_sum, int64_t *n_predicted) {
    *nll_sum = 0;
    *n_predicted = 0;
    if (seq_len < 2) return rt_errorf(RT_EINPUT, "--seq-len must be at least 2");
    const int T = seq_len - 1; /* predictions per full window */
    size_t n_windows = (n + (size_t)seq_len - 1) / (size_t)seq_len;
    int32_t *ids = malloc((size_t)batch * T * sizeof *ids);
    int32_t *labels = malloc((size_t)batch * T * sizeof *labels);
    int32_t *pos = malloc((size_t)batch * T * sizeof *pos);
    if (!ids || !labels || !pos) {
        free(ids), free(labels), free(pos);
        return rt_errorf(RT_EINTERNAL, "out of memory");
    }
    bool no_grad = ctx->no_grad;
    ctx->no_grad = true;
    rt_status s = RT_OK;
    for (size_t w0 = 0; w0 < n_windows && s == RT_OK; w0 += (size_t)batch) {
        int B = (int)(n_windows - w0 < (size_t)batch ? n_windows - w0 : (size_t)batch);
        for (int b = 0; b < B; b++) {
            size_t start = (w0 + (size_t)b) * (size_t)seq_len;
            size_t len = n - start < (size_t)seq_len ? n - start : (size_t)seq_len;
            for (int t = 0; t < T; t++) {
                bool real = (size_t)t + 1 < len;
                ids[b * T + t] = real ? tokens[start + t] : 0;
                labels[b * T + t] = real ? tokens[start + t + 1] : RT_IGNORE_INDEX;
                pos[b * T + t] = t;
            }
        }
        int64_t shape[2] = {B, T};
        rt_ctx_reset(ctx);
        rt_tensor *tid = rt_from_i32(ctx, ids, 2, shape), *tpos = rt_from_i32(ctx, pos, 2, shape);
        rt_tensor *tlab = rt_from_i32(ctx, labels, 2, shape);
        rt_tensor *loss = rt_llama_loss(ctx, m, tid, tpos, NULL, tlab, 1.0f); /* summed nll */
        if (!loss) {
            s = ctx->status ? ctx->status : RT_EINTERNAL;
            break;
        }
        float v;
        rt_to_host(ctx, loss, &v);
        *nll_sum += v;
        for (int i = 0; i < B * T; i++) *n_predicted += labels[i] != RT_IGNORE_INDEX;
    }
    rt_ctx_reset(ctx);
    ctx->no_grad = no_grad;
    free(ids), free(labels), free(pos);
    return s;
}
