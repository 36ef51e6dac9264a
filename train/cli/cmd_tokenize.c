/* retort tokenize --tokenizer FILE [--decode] [--no-bos] [--chat [--text] [--labels]
 *                 [--chat-template NAME] [--add-generation-prompt]]
 *
 * --chat: each stdin line is one conversation (a JSON list of {role,
 * content}); prints the ids of its chat-template rendering (--text: the
 * rendered text; --labels: a second line of 0/1, 1 = trained token under the
 * default masking: assistant content and its end-of-turn token).
 *
 * Encode (default): reads all of stdin as UTF-8 text and prints the token ids
 * space-separated on one line (BOS first where the tokenizer adds one, unless
 * --no-bos). --decode: reads whitespace-separated ids from stdin and prints
 * the decoded text exactly (no newline added). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/error.h"
#include "train/cli/commands.h"
#include "train/tokenizer/chat_template.h"
#include "train/tokenizer/tokenizer.h"

#include <cjson/cJSON.h>

static const char USAGE[] =
    "usage: retort tokenize --tokenizer FILE [--decode] [--no-bos] < input\n"
    "  FILE: tokenizer.json (or its directory), llama2.c tokenizer.bin, or GPT-2 encoder.json\n"
    "  encode (default): prints the ids of stdin's text on one line\n"
    "  --decode: reads whitespace-separated ids from stdin and prints the text\n"
    "  --no-bos: do not prepend BOS when encoding\n"
    "  --chat: each line of stdin is a conversation, a JSON list of {\"role\", \"content\"};\n"
    "          prints the ids of its chat-template rendering, one line each\n"
    "  --text: with --chat, print the rendered text instead of ids\n"
    "  --labels: with --chat, also print a line of 0/1 (1 = trained: assistant turns)\n"
    "  --chat-template NAME: llama3, chatml, qwen3, mistral, llama2, gemma, phi_3\n"
    "          (default: the tokenizer's own chat_template)\n"
    "  --add-generation-prompt: end the rendering with the assistant header\n";

/* --chat: one conversation a line. */
static rt_status chat_lines(const rt_tokenizer *tok, const char *tmpl, char *in, size_t len, bool text,
                            bool labels, bool gen) {
    rt_chat_template ct;
    RT_TRY(rt_chat_template_get(tmpl, tok, &ct));
    rt_status st = RT_OK;
    long line = 0;
    for (char *p = in; st == RT_OK && p < in + len;) {
        char *nl = memchr(p, '\n', (size_t)(in + len - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(in + len - p);
        char *next = p + n + 1;
        line++;
        size_t k = 0;
        while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r')) k++;
        if (k == n) { p = next; continue; }
        cJSON *j = cJSON_ParseWithLength(p, n);
        rt_chat_msg *m = NULL;
        int nm = 0;
        st = j ? rt_chat_msgs_from_json(j, NULL, NULL, &m, &nm)
               : rt_errorf(RT_EINPUT, "stdin:%ld: malformed JSON (expected a list of messages)", line);
        if (st != RT_OK && j) st = rt_errorf(RT_EINPUT, "stdin:%ld: %s", line, rt_error_message());
        if (st == RT_OK && text) {
            char *r = NULL;
            size_t rl = 0;
            st = rt_chat_render(&ct, tok, m, nm, gen, &r, &rl);
            if (st == RT_OK) fwrite(r, 1, rl, stdout), putchar('\n');
            free(r);
        } else if (st == RT_OK) {
            int32_t *ids = NULL;
            uint8_t *tr = NULL;
            size_t ni = 0;
            if (gen) { /* ids of the rendering with the generation prompt (no labels) */
                char *r = NULL;
                size_t rl = 0;
                st = rt_chat_render(&ct, tok, m, nm, true, &r, &rl);
                if (st == RT_OK) st = rt_tokenizer_encode(tok, r, rl, false, &ids, &ni);
                free(r);
                labels = false;
            } else {
                st = rt_chat_encode(&ct, tok, m, nm, RT_ROLE_ASSISTANT, RT_EOS_TURN, &ids, &tr, &ni);
            }
            for (size_t i = 0; st == RT_OK && i < ni; i++) printf(i ? " %d" : "%d", (int)ids[i]);
            if (st == RT_OK) putchar('\n');
            for (size_t i = 0; st == RT_OK && labels && i < ni; i++) printf(i ? " %d" : "%d", tr[i]);
            if (st == RT_OK && labels) putchar('\n');
            free(ids), free(tr);
        }
        free(m);
        cJSON_Delete(j);
        p = next;
    }
    rt_chat_template_clear(&ct);
    return st;
}

static int read_stdin(char **out, size_t *len) {
    size_t cap = 65536, n = 0;
    char *p = malloc(cap);
    if (!p) return rt_errorf(RT_EINTERNAL, "tokenize: out of memory");
    for (;;) {
        if (n + 1 == cap) {
            char *q = realloc(p, cap * 2);
            if (!q) { free(p); return rt_errorf(RT_EINTERNAL, "tokenize: out of memory"); }
            p = q, cap *= 2;
        }
        size_t r = fread(p + n, 1, cap - 1 - n, stdin);
        n += r;
        if (r == 0) break;
    }
    if (ferror(stdin)) { free(p); return rt_errorf(RT_EINPUT, "stdin: read error"); }
    p[n] = '\0';
    *out = p, *len = n;
    return RT_OK;
}

/* Whitespace-separated decimal ids; anything else is an input error. */
static rt_status parse_ids(const char *s, int32_t **ids, size_t *n) {
    size_t cap = 256, k = 0;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) return rt_errorf(RT_EINTERNAL, "tokenize: out of memory");
    for (;;) {
        while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r' || *s == ',') s++;
        if (!*s) break;
        char *end;
        errno = 0;
        long x = strtol(s, &end, 10);
        if (end == s || errno || x < 0 || x > INT32_MAX) {
            free(v);
            return rt_errorf(RT_EINPUT, "stdin: expected a token id at \"%.20s\"", s);
        }
        if (k == cap) {
            int32_t *q = realloc(v, cap * 2 * sizeof *v);
            if (!q) { free(v); return rt_errorf(RT_EINTERNAL, "tokenize: out of memory"); }
            v = q, cap *= 2;
        }
        v[k++] = (int32_t)x;
        s = end;
    }
    *ids = v, *n = k;
    return RT_OK;
}

int rt_cmd_tokenize(int argc, char **argv) {
    const char *path = NULL;
    const char *tmpl = NULL;
    int decode = 0, no_bos = 0, chat = 0, text_out = 0, labels = 0, gen = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tokenizer") == 0 && i + 1 < argc) path = argv[++i];
        else if (strcmp(argv[i], "--chat-template") == 0 && i + 1 < argc) tmpl = argv[++i];
        else if (strcmp(argv[i], "--chat") == 0) chat = 1;
        else if (strcmp(argv[i], "--text") == 0) text_out = 1;
        else if (strcmp(argv[i], "--labels") == 0) labels = 1;
        else if (strcmp(argv[i], "--add-generation-prompt") == 0) gen = 1;
        else if (strcmp(argv[i], "--decode") == 0) decode = 1;
        else if (strcmp(argv[i], "--no-bos") == 0) no_bos = 1;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(USAGE, stdout);
            return 0;
        } else {
            rt_errorf(RT_EINPUT, "tokenize: unknown argument \"%s\"\n%s", argv[i], USAGE);
            return rt_cmd_fail(RT_EINPUT);
        }
    }
    if (!path) {
        rt_errorf(RT_EINPUT, "tokenize: --tokenizer FILE is required\n%s", USAGE);
        return rt_cmd_fail(RT_EINPUT);
    }
    rt_tokenizer *tok = NULL;
    char *in = NULL, *text = NULL;
    int32_t *ids = NULL;
    size_t len = 0, n = 0;
    rt_status st = rt_tokenizer_load(path, &tok);
    if (st == RT_OK) st = read_stdin(&in, &len);
    if (st == RT_OK && chat) {
        st = chat_lines(tok, tmpl, in, len, text_out, labels, gen);
    } else if (st == RT_OK && decode) {
        st = parse_ids(in, &ids, &n);
        if (st == RT_OK) st = rt_tokenizer_decode(tok, ids, n, &text);
        if (st == RT_OK) fwrite(text, 1, strlen(text), stdout);
    } else if (st == RT_OK) {
        st = rt_tokenizer_encode(tok, in, len, rt_tokenizer_adds_bos(tok) && !no_bos, &ids, &n);
        for (size_t i = 0; st == RT_OK && i < n; i++) printf(i ? " %d" : "%d", (int)ids[i]);
        if (st == RT_OK) putchar('\n');
    }
    if (st == RT_OK && fflush(stdout) != 0) st = rt_errorf(RT_EINPUT, "stdout: write failed");
    free(in), free(text), free(ids);
    rt_tokenizer_free(tok);
    return st == RT_OK ? 0 : rt_cmd_fail(st);
}
