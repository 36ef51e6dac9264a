/* retort generate --model M [--tokenizer T] --prompt TEXT [--max-new-tokens N]
 *   [--temperature T] [--top-p P] [--seed S] [--adapter DIR] [--device D]
 *
 * stdout: the prompt, the generated text, one newline — nothing else (stats
 * go to stderr). Decoding follows llama2.c's run.c: pieces are printed as
 * they come, a leading space right after BOS is dropped, <0xXX> pieces are
 * raw bytes; generation stops after max-new-tokens, at EOS, or at BOS
 * (llama2.c models end a story with BOS). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "train/cli/cli.h"
#include "train/device.h"
#include "train/cli/commands.h"
#include "train/model/sampler.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Prints everything printable of a piece, as run.c's safe_printf: a lone
 * control byte (other than whitespace) is skipped. */
static void put_piece(const char *p) {
    if (!p || !p[0]) return;
    if (!p[1]) {
        unsigned char c = (unsigned char)p[0];
        if (c < 32 && c != '\n' && c != '\t' && c != '\r' && c != ' ') return;
    }
    fputs(p, stdout);
}

static rt_status generate(rt_llama *m, rt_tokenizer *tok, rt_device dev, const char *prompt,
                          int max_new, float temperature, float top_p, uint64_t seed) {
    int32_t *ids = NULL;
    size_t n = 0;
    RT_TRY(rt_tokenizer_encode(tok, prompt, strlen(prompt), true, &ids, &n));
    int V = m->cfg.vocab_size;
    int ctx_len = (int)n + max_new;
    if (ctx_len > m->cfg.max_position_embeddings) ctx_len = m->cfg.max_position_embeddings;
    rt_status s = RT_OK;
    rt_kv_cache cache = {0};
    rt_ctx *ctx = rt_ctx_new(dev, (size_t)16 << 20);
    rt_sampler *sampler = rt_sampler_new(V, temperature, top_p, seed);
    float *logits = malloc((size_t)V * sizeof *logits);
    if (!ctx || !sampler || !logits) s = rt_errorf(RT_EINTERNAL, "out of memory");
    if (s == RT_OK && n == 0) s = rt_errorf(RT_EINPUT, "generate: the tokenizer produced no tokens");
    if (s == RT_OK && (int)n >= ctx_len)
        s = rt_errorf(RT_EINPUT, "generate: the prompt (%zu tokens) fills the context of %d", n,
                      m->cfg.max_position_embeddings);
    if (s == RT_OK) s = rt_kv_cache_init(&cache, m, ctx_len);
    if (s == RT_OK) {
        ctx->no_grad = true;
        fputs(prompt, stdout);
        double t0 = now_s();
        s = rt_llama_decode(ctx, m, &cache, ids, (int)n, logits);
        int prev = ids[n - 1], generated = 0;
        const int bos = rt_tokenizer_bos(tok), eos = rt_tokenizer_eos(tok);
        while (s == RT_OK && generated < max_new) {
            int next = rt_sampler_sample(sampler, logits);
            generated++;
            if (next == bos || next == eos) break;
            char buf[8];
            put_piece(rt_tokenizer_piece(tok, prev, next, buf));
            fflush(stdout);
            prev = next;
            if (cache.len >= ctx_len) break;
            int32_t one = next;
            s = rt_llama_decode(ctx, m, &cache, &one, 1, logits);
        }
        putchar('\n');
        double dt = now_s() - t0;
        fprintf(stderr, "generate: %d tokens in %.2f s (%.1f tokens/s)\n", generated, dt,
                generated / (dt > 0 ? dt : 1));
    }
    rt_kv_cache_free(&cache);
    rt_sampler_free(sampler);
    rt_ctx_free(ctx);
    free(logits);
    free(ids);
    return s;
}

int rt_cmd_generate(int argc, char **argv) {
    const char *model = NULL, *tokenizer = NULL, *prompt = "", *max_s = NULL, *temp_s = NULL,
               *topp_s = NULL, *seed_s = NULL, *adapter = NULL, *device = NULL;
    const rt_cli_opt opts[] = {
        {"--model", &model, NULL},        {"--tokenizer", &tokenizer, NULL},
        {"--prompt", &prompt, NULL},      {"--max-new-tokens", &max_s, NULL},
        {"--temperature", &temp_s, NULL}, {"--top-p", &topp_s, NULL},
        {"--seed", &seed_s, NULL},        {"--adapter", &adapter, NULL},
        {"--device", &device, NULL},
    };
    int n_pos;
    long max_new = 256, seed = 0;
    double temperature = 1.0, top_p = 0.9;
    rt_device dev = RT_CPU;
    rt_status s = rt_cli_parse(argc, argv, opts, (int)(sizeof opts / sizeof *opts), NULL, 0, &n_pos);
    if (s == RT_OK && max_s) s = rt_cli_int("--max-new-tokens", max_s, 0, 1 << 24, &max_new);
    if (s == RT_OK && temp_s) s = rt_cli_float("--temperature", temp_s, 0, 1e6, &temperature);
    if (s == RT_OK && topp_s) s = rt_cli_float("--top-p", topp_s, 0, 1, &top_p);
    if (s == RT_OK && seed_s) s = rt_cli_int("--seed", seed_s, 0, 0x7fffffffffffffffL, &seed);
    if (s == RT_OK && !seed_s) seed = (long)time(NULL);
    if (s == RT_OK) s = rt_device_select(device, &dev);
    rt_llama *m = NULL;
    rt_tokenizer *tok = NULL;
    if (s == RT_OK) s = rt_cli_load(model, tokenizer, adapter, dev, &m, &tok);
    if (s == RT_OK)
        s = generate(m, tok, dev, prompt, (int)max_new, (float)temperature, (float)top_p, (uint64_t)seed);
    rt_llama_free(m);
    rt_tokenizer_free(tok);
    return s == RT_OK ? 0 : rt_cmd_fail(s);
}
