/* retort — perplexity of a token stream, as `retort eval` measures it. */
#ifndef RT_EVALUATE_H
#define RT_EVALUATE_H

#include <stdio.h>

#include "train/model/llama.h"

/* Windows of seq_len tokens starting every `stride` tokens (stride 0 or
 * >= seq_len: non-overlapping windows, the last may be shorter; a window of
 * one token predicts nothing). Each window predicts only the tokens that no
 * earlier window predicted, from all the earlier tokens of its window: the
 * sliding-window perplexity of transformers' docs ("Perplexity of
 * fixed-length models") with max_length = seq_len, so a smaller stride gives
 * every scored token more context. A window of seq_len tokens feeds its first
 * seq_len - 1 and makes seq_len - 1 predictions (its last token is only a
 * target), so tokens[0] and, without overlap, the first token of every
 * window are never predicted: with n tokens and stride = seq_len there are
 * n - ceil(n / seq_len) predictions. Windows of seq_len + 1 tokens score other
 * tokens with other contexts (0.0017 nats apart on 2,097 Moby-Dick tokens
 * for SmolLM2-135M at 256 vs 257); tests/interop/test_eval_nll.py checks
 * this definition against transformers. Runs `batch` windows per forward in
 * no-grad mode. Returns the summed negative log-likelihood (nats) and the
 * number of predicted tokens; the mean is over tokens, not windows. */
rt_status rt_eval_stream(rt_ctx *ctx, rt_llama *m, const int32_t *tokens, size_t n, int seq_len,
                         int stride, int batch, double *nll_sum, int64_t *n_predicted);

/* Mean-free sum over a dataset's rows (labels as training builds them, so a
 * masked prompt is not scored): summed NLL and the number of scored tokens. */
struct rt_dataset;
rt_status rt_eval_dataset(rt_ctx *ctx, rt_llama *m, const struct rt_dataset *d, int batch,
                          double *nll_sum, int64_t *n_predicted);

/* rt_eval_stream that also writes the logits of every predicted position to
 * `dump` (NULL: none), for comparing retort with another implementation
 * (tests/interop). The file, little-endian, streamed as it is computed:
 *   char magic[8] = "RTLOGIT1"; int64 vocab;
 *   then one record per predicted position, in token-stream order, to EOF:
 *     int32 id;   the input token at this position
 *     int32 pos;  its position in its window (0 starts a window)
 *     float32 logits[vocab];  the f32 logits predicting the next token
 * RT_EINPUT when writing fails. */
rt_status rt_eval_stream_dump(rt_ctx *ctx, rt_llama *m, const int32_t *tokens, size_t n,
                              int seq_len, int stride, int batch, FILE *dump, double *nll_sum,
                              int64_t *n_predicted);

#endif
