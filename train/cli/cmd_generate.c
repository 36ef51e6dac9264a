/* retort generate --model M [--tokenizer T] --prompt TEXT [--max-new-tokens N]
 *   [--temperature T] [--top-p P] [--top-k K] [--repetition-penalty R]
 *   [--stop STR] [--prompts FILE] [--chat [--system TEXT] [--chat-template NAME]]
 *   [--seed S] [--adapter DIR] [--device D]
 *
 * stdout: the prompt, the generated text, one newline — nothing else (stats
 * go to stderr). --prompt decodes the escapes \n \t \r \\ \"; --prompts FILE
 * generates for each line of FILE in turn. --chat renders [system, user:
 * prompt] with the chat template (the model's own or --chat-template) and the
 * assistant header, prints only the reply and stops at the end-of-turn token.
 * --top-k keeps the K largest logits; --repetition-penalty divides positive
 * (multiplies negative) logits of tokens already in the sequence by R
 * (Keskar et al. 2019, as transformers' RepetitionPenaltyLogitsProcessor);
 * --stop ends generation once the reply contains STR (escapes decoded). Decoding follows llama2.c's run.c: pieces are printed as
 * they come, a leading space right after BOS is dropped, <0xXX> pieces are
 * raw bytes; generation stops after max-new-tokens, at EOS, or at BOS
 * (llama2.c models end a story with BOS). */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "train/cli/cli.h"
#include "train/formats/fs.h"
#include "train/device.h"
#include "train/cli/commands.h"
#include "train/model/sampler.h"
#include "train/tokenizer/chat_template.h"

/* Generation settings beyond the sampler's. */
typedef struct {
    int top_k;
    float repetition_penalty;
    const char *stop;
    bool chat;
    const char *system, *chat_template;
} gen_opts;

/* Decodes \n \t \r \\ \" in place (other backslashes stay). */
static void unescape(char *s) {
    char *o = s;
    for (char *p = s; *p; p++) {
        if (p[0] == '\\' && p[1]) {
            char c = p[1] == 'n' ? '\n' : p[1] == 't' ? '\t' : p[1] == 'r' ? '\r' : p[1] == '\\' ? '\\'
                     : p[1] == '"' ? '"' : 0;
            if (c) {
                *o++ = c;
                p++;
                continue;
            }
        }
        *o++ = *p;
    }
    *o = '\0';
}

static int cmp_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* top_k and repetition penalty on the logits of the next token. */
static rt_status shape_logits(float *logits, int V, const gen_opts *g, const int32_t *seq, size_t n_seq,
                              float *scratch) {
    if (g->repetition_penalty != 1.0f)
        for (size_t i = 0; i < n_seq; i++) {
            int id = seq[i];
            if (id < 0 || id >= V) continue;
            float *l = &logits[id];
            /* once per distinct token: mark by the sign trick is unsafe, so
             * scan for an earlier occurrence */
            bool seen = false;
            for (size_t j = 0; j < i && !seen; j++) seen = seq[j] == id;
            if (!seen) *l = *l > 0 ? *l / g->repetition_penalty : *l * g->repetition_penalty;
        }
    if (g->top_k > 0 && g->top_k < V) {
        memcpy(scratch, logits, (size_t)V * sizeof *scratch);
        qsort(scratch, (size_t)V, sizeof *scratch, cmp_desc);
        float kth = scratch[g->top_k - 1];
        int kept = 0;
        for (int i = 0; i < V; i++) {
            if (logits[i] >= kth && kept < g->top_k) kept++;
            else logits[i] = -INFINITY;
        }
    }
    return RT_OK;
}

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
                          int max_new, float temperature, float top_p, uint64_t seed, const gen_opts *g) {
    int32_t *ids = NULL;
    size_t n = 0;
    int eot = -1;
    if (g->chat) {
        rt_chat_template ct;
        RT_TRY(rt_chat_template_get(g->chat_template, tok, &ct));
        rt_chat_msg msgs[2] = {{"system", g->system}, {"user", prompt}};
        int first = g->system && *g->system ? 0 : 1;
        char *text = NULL;
        size_t tl = 0;
        rt_status st = rt_chat_render(&ct, tok, msgs + first, 2 - first, true, &text, &tl);
        eot = rt_chat_end_of_turn(&ct, tok);
        rt_chat_template_clear(&ct);
        if (st == RT_OK) st = rt_tokenizer_encode(tok, text, tl, false, &ids, &n);
        free(text);
        RT_TRY(st);
    } else {
        RT_TRY(rt_tokenizer_encode(tok, prompt, strlen(prompt), true, &ids, &n));
    }
    int V = m->cfg.vocab_size;
    int ctx_len = (int)n + max_new;
    if (ctx_len > m->cfg.max_position_embeddings) ctx_len = m->cfg.max_position_embeddings;
    rt_status s = RT_OK;
    rt_kv_cache cache = {0};
    rt_ctx *ctx = rt_ctx_new(dev, (size_t)16 << 20);
    rt_sampler *sampler = rt_sampler_new(V, temperature, top_p, seed);
    float *logits = malloc((size_t)V * sizeof *logits), *scratch = malloc((size_t)V * sizeof *scratch);
    int32_t *seq = malloc(((size_t)n + (size_t)max_new + 1) * sizeof *seq);
    size_t n_seq = n, out_cap = 256, out_len = 0;
    char *out = malloc(out_cap);
    if (!ctx || !sampler || !logits || !scratch || !seq || !out) s = rt_errorf(RT_EINTERNAL, "out of memory");
    if (s == RT_OK && n == 0) s = rt_errorf(RT_EINPUT, "generate: the tokenizer produced no tokens");
    if (s == RT_OK && (int)n >= ctx_len)
        s = rt_errorf(RT_EINPUT, "generate: the prompt (%zu tokens) fills the context of %d", n,
                      m->cfg.max_position_embeddings);
    if (s == RT_OK) s = rt_kv_cache_init(&cache, m, ctx_len);
    if (s == RT_OK) {
        memcpy(seq, ids, n * sizeof *ids);
        ctx->no_grad = true;
        if (!g->chat) fputs(prompt, stdout);
        double t0 = now_s();
        s = rt_llama_decode(ctx, m, &cache, ids, (int)n, logits);
        int prev = g->chat ? rt_tokenizer_bos(tok) : ids[n - 1], generated = 0;
        const int bos = rt_tokenizer_bos(tok), eos = rt_tokenizer_eos(tok);
        while (s == RT_OK && generated < max_new) {
            shape_logits(logits, V, g, seq, n_seq, scratch);
            int next = rt_sampler_sample(sampler, logits);
            generated++;
            if (next == bos || next == eos || (eot >= 0 && next == eot)) break;
            seq[n_seq++] = next;
            char buf[8];
            const char *piece = rt_tokenizer_piece(tok, prev, next, buf);
            put_piece(piece);
            fflush(stdout);
            size_t pl = strlen(piece);
            if (out_len + pl + 1 > out_cap) {
                while (out_len + pl + 1 > out_cap) out_cap *= 2;
                char *o2 = realloc(out, out_cap);
                if (!o2) { s = rt_errorf(RT_EINTERNAL, "out of memory"); break; }
                out = o2;
            }
            memcpy(out + out_len, piece, pl + 1);
            out_len += pl;
            if (g->stop && *g->stop && strstr(out, g->stop)) break;
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
    free(logits), free(scratch), free(seq), free(out);
    free(ids);
    return s;
}

int rt_cmd_generate(int argc, char **argv) {
    const char *model = NULL, *tokenizer = NULL, *prompt = "", *max_s = NULL, *temp_s = NULL,
               *topp_s = NULL, *seed_s = NULL, *adapter = NULL, *device = NULL, *topk_s = NULL,
               *rep_s = NULL, *stop = NULL, *prompts = NULL, *system = NULL, *tmpl = NULL;
    bool chat = false;
    const rt_cli_opt opts[] = {
        {"--model", &model, NULL, "HF model directory, model.safetensors or llama2.c .bin"},
        {"--tokenizer", &tokenizer, NULL, "tokenizer.json/its directory or tokenizer.bin (needed for a .bin model)"},
        {"--prompt", &prompt, NULL, "prompt text (\\n, \\t, \\r, \\\\, \\\" escapes are decoded)"},
        {"--prompts", &prompts, NULL, "file with one prompt a line (instead of --prompt)"},
        {"--max-new-tokens", &max_s, NULL, "tokens to generate [256]"},
        {"--temperature", &temp_s, NULL, "sampling temperature (0 = greedy) [1.0]"},
        {"--top-p", &topp_s, NULL, "nucleus sampling mass [0.9]"},
        {"--top-k", &topk_s, NULL, "sample among the K most likely tokens (0 = all) [0]"},
        {"--repetition-penalty", &rep_s, NULL, "penalize tokens already in the sequence (1 = off) [1.0]"},
        {"--stop", &stop, NULL, "stop once the output contains this string (escapes decoded)"},
        {"--chat", NULL, &chat, "apply the chat template; print only the reply"},
        {"--system", &system, NULL, "with --chat: a system message"},
        {"--chat-template", &tmpl, NULL, "with --chat: llama3, chatml, qwen3, mistral, llama2, gemma, phi_3"},
        {"--seed", &seed_s, NULL, "sampler seed [time]"},
        {"--adapter", &adapter, NULL, "PEFT adapter directory to apply"},
        {"--device", &device, NULL, "cpu, cuda or auto"},
    };
    int n_pos;
    long max_new = 256, seed = 0, top_k = 0;
    double temperature = 1.0, top_p = 0.9, rep = 1.0;
    rt_device dev = RT_CPU;
    rt_status s = rt_cli_parse(argc, argv, opts, (int)(sizeof opts / sizeof *opts), NULL, 0, &n_pos);
    if (s == RT_OK && max_s) s = rt_cli_int("--max-new-tokens", max_s, 0, 1 << 24, &max_new);
    if (s == RT_OK && temp_s) s = rt_cli_float("--temperature", temp_s, 0, 1e6, &temperature);
    if (s == RT_OK && topp_s) s = rt_cli_float("--top-p", topp_s, 0, 1, &top_p);
    if (s == RT_OK && topk_s) s = rt_cli_int("--top-k", topk_s, 0, 1 << 24, &top_k);
    if (s == RT_OK && rep_s) s = rt_cli_float("--repetition-penalty", rep_s, 1e-3, 1e3, &rep);
    if (s == RT_OK && seed_s) s = rt_cli_int("--seed", seed_s, 0, 0x7fffffffffffffffL, &seed);
    if (s == RT_OK && !seed_s) seed = (long)time(NULL);
    if (s == RT_OK) s = rt_device_select(device, &dev);
    char *p1 = strdup(prompt), *st = stop ? strdup(stop) : NULL, *sys = system ? strdup(system) : NULL;
    char *file = NULL;
    size_t flen = 0;
    if (s == RT_OK && (!p1 || (stop && !st) || (system && !sys))) s = rt_errorf(RT_EINTERNAL, "out of memory");
    if (s == RT_OK) {
        unescape(p1);
        if (st) unescape(st);
        if (sys) unescape(sys);
    }
    if (s == RT_OK && prompts) s = rt_read_file(prompts, "prompts file", &file, &flen);
    gen_opts g = {(int)top_k, (float)rep, st, chat, sys, tmpl};
    rt_llama *m = NULL;
    rt_tokenizer *tok = NULL;
    if (s == RT_OK) s = rt_cli_load(model, tokenizer, adapter, dev, &m, &tok);
    if (s == RT_OK && !file) {
        s = generate(m, tok, dev, p1, (int)max_new, (float)temperature, (float)top_p, (uint64_t)seed, &g);
    } else if (s == RT_OK) { /* one generation per non-empty line */
        for (char *line = file; s == RT_OK && line && *line;) {
            char *nl = strchr(line, '\n');
            if (nl) *nl = '\0';
            size_t ll = strlen(line);
            if (ll && line[ll - 1] == '\r') line[ll - 1] = '\0';
            if (*line)
                s = generate(m, tok, dev, line, (int)max_new, (float)temperature, (float)top_p, (uint64_t)seed, &g);
            line = nl ? nl + 1 : NULL;
        }
    }
    free(p1), free(st), free(sys), free(file);
    rt_llama_free(m);
    rt_tokenizer_free(tok);
    return s == RT_OK ? 0 : rt_cmd_fail(s);
}
