/* retort — perplexity of a token stream, as `retort eval` measures it. */
#ifndef RT_EVALUATE_H
#define RT_EVALUATE_H

#include "train/model/llama.h"

/* Cuts tokens[n] into non-overlapping windows of seq_len tokens (the last may
 * be shorter; a window of one token predicts nothing); inside each window
 * every token after the first is predicted from the earlier ones of that
 * window. Runs `batch` windows per forward in no-grad mode. Returns the
 * summed negative log-likelihood (nats) and the number of predicted tokens. */
rt_status rt_eval_stream(rt_ctx *ctx, rt_llama *m, const int32_t *tokens, size_t n, int seq_len,
                         int batch, double *nll_sum, int64_t *n_predicted);

#endif
