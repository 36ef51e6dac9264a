/* retort eval --model M [--tokenizer T] --data FILE [--seq-len N] [--stride S]
 *             [--type TYPE [--field F] [--chat-template NAME]]
 *             [--adapter DIR] [--batch B] [--device D] [--json] [--load-in-4bit]
 *             [--dump-logits FILE]  (every position's logits; format in evaluate.h)
 *
 * --type text (default): the file is one token stream scored in windows
 * (--stride: overlapping windows, each token scored once with more context),
 * defined as in evaluate.h: transformers' sliding-window perplexity with
 * max_length = --seq-len (a window of N tokens makes N-1 predictions).
 * Any other dataset type (jsonl, alpaca, completion, input_output,
 * chat_template, sharegpt) reads the file through the training data code
 * (train/data/data.h), so only the tokens training would learn are scored. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "train/cli/cli.h"
#include "train/device.h"
#include "train/formats/fs.h"
#include "train/cli/commands.h"
#include "train/evaluate.h"
#include "train/data/data.h"
#include "train/recipe.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int rt_cmd_eval(int argc, char **argv) {
    const char *model = NULL, *tokenizer = NULL, *data = NULL, *seq = NULL, *adapter = NULL,
               *batch_s = NULL, *device = NULL, *stride_s = NULL, *type = NULL, *field = NULL,
               *tmpl = NULL, *dump_path = NULL;
    bool json = false, nf4 = false;
    const rt_cli_opt opts[] = {
        {"--model", &model, NULL, "HF model directory, model.safetensors or llama2.c .bin"},     {"--tokenizer", &tokenizer, NULL, "tokenizer.json/its directory or tokenizer.bin (needed for a .bin model)"}, {"--data", &data, NULL, "text, .jsonl or alpaca file to score"},
        {"--seq-len", &seq, NULL, "text: N tokens per window, N-1 next-token predictions (transformers' "
                                  "\"Perplexity of fixed-length models\" with max_length=N); the text's first token, "
                                  "and without --stride each window's, is context only; nll = mean over the "
                                  "predicted tokens [max_position_embeddings]"},     {"--adapter", &adapter, NULL, "PEFT adapter directory to apply"},     {"--batch", &batch_s, NULL, "windows per forward pass"},
        {"--device", &device, NULL, "cpu, cuda or auto"},   {"--json", NULL, &json, "print one JSON object"},
        {"--stride", &stride_s, NULL, "text: start a window every S tokens (default: seq-len, no overlap); a "
                                      "window predicts only tokens no earlier window did (that docs page's stride=S)"},
        {"--type", &type, NULL, "text (default) or a dataset type: jsonl, alpaca, completion, input_output, chat_template, sharegpt"},
        {"--field", &field, NULL, "jsonl/completion: the text field [text]"},
        {"--chat-template", &tmpl, NULL, "chat_template/sharegpt: the template (default: the tokenizer's)"},
        {"--load-in-4bit", NULL, &nf4, "re-quantize the projections to NF4 (blocksize 64, double quant)"},
        {"--dump-logits", &dump_path, NULL, "text: write every predicted position's f32 logits (tests/interop)"},
    };
    int n_pos;
    rt_status s = rt_cli_parse(argc, argv, opts, (int)(sizeof opts / sizeof *opts), NULL, 0, &n_pos);
    if (s == RT_OK && !data) s = rt_errorf(RT_EINPUT, "eval: --data FILE is required");
    long seq_len = 0, batch = 4, stride = 0;
    if (s == RT_OK && stride_s) s = rt_cli_int("--stride", stride_s, 1, 1 << 20, &stride);
    if (s == RT_OK && seq) s = rt_cli_int("--seq-len", seq, 2, 1 << 20, &seq_len);
    if (s == RT_OK && batch_s) s = rt_cli_int("--batch", batch_s, 1, 4096, &batch);
    rt_device dev = RT_CPU;
    if (s == RT_OK) s = rt_device_select(device, &dev);
    if (s != RT_OK) return rt_cmd_fail(s);

    char *text = NULL;
    size_t len = 0;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    rt_llama *m = NULL;
    rt_tokenizer *tok = NULL;
    rt_ctx *ctx = NULL;
    FILE *dump = NULL;
    bool as_dataset = type && strcmp(type, "text") != 0;
    rt_dataset *dtrain = NULL, *dval = NULL;
    if (!as_dataset) s = rt_read_file(data, "data file", &text, &len);
    const rt_llama_opts lo = {.device = dev, .load_in_4bit = nf4, .nf4_blocksize = 64, .double_quant = true};
    if (s == RT_OK) s = rt_cli_load_opts(model, tokenizer, adapter, &lo, &m, &tok);
    if (s == RT_OK && as_dataset) { /* through the training data code */
        rt_recipe r;
        s = rt_recipe_init(&r);
        char set[4400];
        snprintf(set, sizeof set, "datasets=[{path: '%s', type: %s%s%s}]", data, type, field ? ", field: " : "",
                 field ? field : "");
        if (s == RT_OK) s = rt_recipe_set(&r, set);
        if (s == RT_OK && tmpl) {
            snprintf(set, sizeof set, "chat_template=%s", tmpl);
            s = rt_recipe_set(&r, set);
        }
        r.val_set_size = 0;
        r.sequence_len = seq_len ? (int)seq_len : m->cfg.max_position_embeddings;
        if (s == RT_OK) s = rt_data_load(&r, tok, &dtrain, &dval);
        rt_recipe_free(&r);
        double nll = 0;
        int64_t count = 0;
        if (s == RT_OK && !(ctx = rt_ctx_new(dev, 0))) s = RT_EINTERNAL;
        if (s == RT_OK) s = rt_eval_dataset(ctx, m, dtrain, (int)batch, &nll, &count);
        if (s == RT_OK && count == 0) s = rt_errorf(RT_EINPUT, "%s: no token to score", data);
        if (s == RT_OK) {
            double mean = nll / (double)count;
            if (json)
                printf("{\"tokens\":%lld,\"nll\":%.6f,\"ppl\":%.6f}\n", (long long)count, mean, exp(mean));
            else
                printf("eval: tokens=%lld nll=%.6f ppl=%.6f\n", (long long)count, mean, exp(mean));
        }
        rt_dataset_free(dtrain), rt_dataset_free(dval);
        rt_ctx_free(ctx);
        rt_llama_free(m);
        rt_tokenizer_free(tok);
        return s == RT_OK ? 0 : rt_cmd_fail(s);
    }
    if (s == RT_OK) {
        s = rt_tokenizer_encode(tok, text, len, rt_tokenizer_adds_bos(tok), &ids, &n_ids);
        if (s != RT_OK) s = rt_errorf(s, "%s: %s", data, rt_error_message());
    }
    if (s == RT_OK && n_ids < 2) s = rt_errorf(RT_EINPUT, "%s: too little text to evaluate", data);
    if (s == RT_OK && !(ctx = rt_ctx_new(dev, 0))) s = RT_EINTERNAL;
    if (s == RT_OK && dump_path && !(dump = fopen(dump_path, "wb")))
        s = rt_errorf(RT_EINPUT, "%s: cannot create logits file: %s", dump_path, strerror(errno));
    double nll = 0;
    int64_t count = 0;
    double t0 = now_s();
    if (s == RT_OK) {
        if (seq_len == 0) seq_len = m->cfg.max_position_embeddings;
        s = rt_eval_stream_dump(ctx, m, ids, n_ids, (int)seq_len, (int)stride, (int)batch, dump, &nll, &count);
    }
    if (dump && fclose(dump) != 0 && s == RT_OK)
        s = rt_errorf(RT_EINPUT, "%s: cannot write logits file", dump_path);
    double dt = now_s() - t0;
    if (s == RT_OK) {
        double mean = nll / (double)count;
        fprintf(stderr, "eval: %zu tokens in %.2f s (%.0f tokens/s)\n", n_ids, dt, (double)n_ids / dt);
        if (json)
            printf("{\"tokens\":%lld,\"nll\":%.6f,\"ppl\":%.6f}\n", (long long)count, mean, exp(mean));
        else
            printf("eval: tokens=%lld nll=%.6f ppl=%.6f\n", (long long)count, mean, exp(mean));
    }
    rt_ctx_free(ctx);
    rt_llama_free(m);
    rt_tokenizer_free(tok);
    free(ids);
    free(text);
    return s == RT_OK ? 0 : rt_cmd_fail(s);
}
