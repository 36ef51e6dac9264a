/* retort — chat template recognition, rendering and masking (see
 * chat_template.h for the families and the rules). */
#include "train/tokenizer/chat_template.h"
#include "train/tokenizer/tokenizer_internal.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const family_names[RT_CHAT_N_FAMILIES] = {"llama3", "chatml", "qwen3", "mistral",
                                                             "llama2", "gemma",  "phi_3"};

const char *rt_chat_template_names(void) {
    return "llama3, chatml, qwen3, mistral, llama2, gemma, phi_3 (also axolotl's qwen_25, mistral_v1, "
           "tokenizer_default, tokenizer_default_fallback_<name>)";
}

void rt_chat_template_clear(rt_chat_template *ct) {
    free(ct->default_system);
    free(ct->llama_date);
    memset(ct, 0, sizeof *ct);
}

int rt_chat_role_bit(const char *r) {
    if (!r) return 0;
    if (!strcmp(r, "system")) return RT_ROLE_SYSTEM;
    if (!strcmp(r, "user") || !strcmp(r, "human")) return RT_ROLE_USER;
    if (!strcmp(r, "assistant") || !strcmp(r, "gpt") || !strcmp(r, "model")) return RT_ROLE_ASSISTANT;
    if (!strcmp(r, "tool")) return RT_ROLE_TOOL;
    return 0;
}

static const char *role_name(int bit) {
    switch (bit) {
    case RT_ROLE_SYSTEM: return "system";
    case RT_ROLE_USER: return "user";
    case RT_ROLE_ASSISTANT: return "assistant";
    default: return "tool";
    }
}

/* ChatML default system message: the literal after '<|im_start|>system\n'
 * (written "\n" inside a Jinja string) up to '<|im_end|>', when it holds no
 * Jinja expression. Jinja's \n and \' escapes are undone. */
static char *chatml_default_system(const char *src) {
    static const char mark[] = "<|im_start|>system\\n";
    for (const char *p = strstr(src, mark); p; p = strstr(p + 1, mark)) {
        const char *s = p + sizeof mark - 1, *e = strstr(s, "<|im_end|>");
        if (!e || e <= s) continue;
        size_t sl = (size_t)(e - s);
        bool literal = true;
        for (const char *q = s; q < e && literal; q++) literal = *q != '{' && *q != '\'' && *q != '"' && *q != '+';
        if (!literal) continue;
        char *out = malloc(sl + 1), *o = out;
        if (!out) return NULL;
        for (const char *q = s; q < e; q++) {
            if (q[0] == '\\' && q + 1 < e && q[1] == 'n') *o++ = '\n', q++;
            else if (q[0] == '\\' && q + 1 < e) *o++ = q[1], q++;
            else *o++ = *q;
        }
        *o = '\0';
        return out;
    }
    return NULL;
}

/* Llama 3.1+ "Today Date": today's date where the template calls
 * strftime_now, else its date_string default. NULL when the template has no
 * knowledge-date header. */
static char *llama_date(const char *src) {
    if (!strstr(src, "Cutting Knowledge Date: December 2023")) return NULL;
    char buf[64];
    if (strstr(src, "strftime_now(\"%d %b %Y\")")) {
        time_t now = time(NULL);
        struct tm tm;
        if (localtime_r(&now, &tm) && strftime(buf, sizeof buf, "%d %b %Y", &tm) > 0) return strdup(buf);
    }
    const char *p = strstr(src, "date_string = \"");
    if (!p) return strdup("26 Jul 2024"); /* Meta's templates' default */
    p += strlen("date_string = \"");
    const char *e = strchr(p, '"');
    size_t n = e && e > p && (size_t)(e - p) < sizeof buf ? (size_t)(e - p) : 0;
    return n ? strndup(p, n) : strdup("26 Jul 2024");
}

/* The family of a Jinja chat template, -1 if not recognised. */
static int recognise(const char *src, rt_chat_template *out) {
    if (strstr(src, "<|start_header_id|>") && strstr(src, "<|eot_id|>")) {
        out->gen_prompt_always = !strstr(src, "add_generation_prompt");
        out->llama_date = llama_date(src);
        return RT_CHAT_LLAMA3;
    }
    if (strstr(src, "<|im_start|>")) {
        if (strstr(src, "<think>") && strstr(src, "reasoning_content")) return RT_CHAT_QWEN3;
        out->default_system = chatml_default_system(src);
        return RT_CHAT_CHATML;
    }
    if (strstr(src, "<start_of_turn>") && strstr(src, "<end_of_turn>")) {
        out->no_system = strstr(src, "System role not supported") != NULL;
        return RT_CHAT_GEMMA;
    }
    if (strstr(src, "<|user|>") && strstr(src, "<|end|>") && strstr(src, "<|assistant|>")) return RT_CHAT_PHI3;
    /* Mistral v1 / Llama 2 write "[INST] " with a space; the v3 (Tekken) templates, e.g.
     * Mistral-Nemo's "[INST]{user}[/INST]" with the system message in the last user turn,
     * are another format, not recognised. */
    if (strstr(src, "[INST] ") && strstr(src, "[/INST]")) return strstr(src, "<<SYS>>") ? RT_CHAT_LLAMA2 : RT_CHAT_MISTRAL;
    return -1;
}

static int family_by_name(const char *name, rt_chat_template *out) {
    for (int f = 0; f < RT_CHAT_N_FAMILIES; f++)
        if (!strcmp(name, family_names[f])) return f;
    if (!strcmp(name, "mistral_v1")) return RT_CHAT_MISTRAL;
    if (!strcmp(name, "qwen_25")) {
        out->default_system = strdup("You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
        return RT_CHAT_CHATML;
    }
    return -1;
}

/* The tokenizer's string for a special id (llama2.c pieces lose their "\n"
 * wrapping), or dflt. */
static const char *special_str(const rt_tokenizer *tok, int id, const char *dflt, char *buf, size_t cap) {
    if (!tok || id < 0 || !tok->piece[id]) return dflt;
    const char *p = tok->piece[id];
    size_t n = (size_t)tok->piece_len[id];
    while (n && (*p == '\n' || *p == ' ')) p++, n--;
    while (n && (p[n - 1] == '\n' || p[n - 1] == ' ')) n--;
    if (n == 0 || n >= cap) return dflt;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return buf;
}

/* The BOS / EOS strings a family renders as text (NULL: it renders none). */
static const char *family_bos(int f, const rt_tokenizer *tok, char *buf, size_t cap) {
    if (f != RT_CHAT_LLAMA3 && f != RT_CHAT_MISTRAL && f != RT_CHAT_LLAMA2 && f != RT_CHAT_GEMMA) return NULL;
    return special_str(tok, tok ? tok->bos : -1, f == RT_CHAT_LLAMA3 ? "<|begin_of_text|>"
                       : f == RT_CHAT_GEMMA ? "<bos>" : "<s>", buf, cap);
}

static const char *family_eos(int f, const rt_tokenizer *tok, char *buf, size_t cap) {
    if (f != RT_CHAT_MISTRAL && f != RT_CHAT_LLAMA2 && f != RT_CHAT_PHI3) return NULL;
    return special_str(tok, tok ? tok->eos : -1, f == RT_CHAT_PHI3 ? "<|endoftext|>" : "</s>", buf, cap);
}

/* The family's turn markers, and the BOS/EOS strings it renders, must each
 * be one token of tok (an added/special token matched in the text):
 * otherwise they would be tokenized as plain text and the model trained on a
 * format it never saw. [INST]/[/INST] are plain text in Llama 2 / Mistral v1
 * vocabularies, so those families have no turn markers. */
static rt_status markers_in_vocab(int family, const rt_tokenizer *tok) {
    static const char *const markers[RT_CHAT_N_FAMILIES][5] = {
        [RT_CHAT_LLAMA3] = {"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"},
        [RT_CHAT_CHATML] = {"<|im_start|>", "<|im_end|>"},
        [RT_CHAT_QWEN3] = {"<|im_start|>", "<|im_end|>"},
        [RT_CHAT_GEMMA] = {"<start_of_turn>", "<end_of_turn>"},
        [RT_CHAT_PHI3] = {"<|system|>", "<|user|>", "<|assistant|>", "<|end|>"},
    };
    char bb[64], eb[64];
    const char *all[7] = {0};
    for (int k = 0; k < 5; k++) all[k] = markers[family][k];
    all[5] = family_bos(family, tok, bb, sizeof bb), all[6] = family_eos(family, tok, eb, sizeof eb);
    for (int k = 0; k < 7; k++) {
        const char *s = all[k];
        if (!s) continue;
        int32_t *ids = NULL;
        size_t n = 0;
        rt_status st = rt_tokenizer_encode(tok, s, strlen(s), false, &ids, &n);
        int id = n == 1 ? ids[0] : -1;
        free(ids);
        RT_TRY(st);
        if (id < 0)
            return rt_errorf(RT_EINPUT, "chat_template %s: the tokenizer %s has no token \"%s\" (it would be "
                             "tokenized as %zu pieces of plain text); use the tokenizer's own template "
                             "(chat_template: tokenizer_default) or one whose markers it has (retort does not add "
                             "tokens)", family_names[family], rt_tokenizer_path(tok), s, n);
    }
    return RT_OK;
}

static rt_status template_get(const char *name, const rt_tokenizer *tok, rt_chat_template *out);

rt_status rt_chat_template_get(const char *name, const rt_tokenizer *tok, rt_chat_template *out) {
    RT_TRY(template_get(name, tok, out));
    rt_status st = tok ? markers_in_vocab(out->family, tok) : RT_OK;
    if (st != RT_OK) rt_chat_template_clear(out);
    return st;
}

static rt_status template_get(const char *name, const rt_tokenizer *tok, rt_chat_template *out) {
    memset(out, 0, sizeof *out);
    static const char fb[] = "tokenizer_default_fallback_";
    bool own = !name || !*name || !strcmp(name, "tokenizer_default") || !strncmp(name, fb, sizeof fb - 1);
    const char *src = tok ? rt_tokenizer_chat_template(tok) : NULL;
    if (own && src) {
        int f = recognise(src, out);
        if (f >= 0) {
            out->family = f;
            return RT_OK;
        }
        rt_chat_template_clear(out);
        if (!name || strncmp(name, fb, sizeof fb - 1) != 0)
            return rt_errorf(RT_EINPUT,
                             "the tokenizer's chat_template (\"%.60s...\") is not one retort recognises; "
                             "set chat_template to one of: %s",
                             src, rt_chat_template_names());
    }
    if (own && (!name || strncmp(name, fb, sizeof fb - 1) != 0))
        return rt_errorf(RT_EINPUT, "the tokenizer has no chat_template (tokenizer_config.json); set "
                         "chat_template to one of: %s", rt_chat_template_names());
    const char *want = own ? name + sizeof fb - 1 : name;
    int f = family_by_name(want, out);
    if (f < 0) {
        rt_chat_template_clear(out);
        return rt_errorf(RT_EINPUT, "chat_template \"%s\" is not supported; use one of: %s", want,
                         rt_chat_template_names());
    }
    out->family = f;
    return RT_OK;
}

/* --- rendering ------------------------------------------------------------ */

enum { PART_FRAME, PART_CONTENT, PART_EOT };

typedef struct {
    size_t off, len;
    int kind, msg;
} part;

typedef struct {
    rt_tok_buf text;
    part *p;
    int n, cap;
} render;

static rt_status put(render *r, const char *s, size_t len, int kind, int msg) {
    if (r->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 32;
        part *p = realloc(r->p, (size_t)cap * sizeof *p);
        if (!p) return rt_tok_oom();
        r->p = p, r->cap = cap;
    }
    r->p[r->n++] = (part){r->text.n, len, kind, msg};
    return rt_tok_buf_put(&r->text, s, len);
}

static rt_status puts_(render *r, const char *s, int kind, int msg) { return put(r, s, strlen(s), kind, msg); }

/* Jinja's |trim (Python str.strip(): ASCII and Unicode whitespace; ASCII here). */
static void trim(const char **s, size_t *len) {
    while (*len && isspace((unsigned char)**s)) (*s)++, (*len)--;
    while (*len && isspace((unsigned char)(*s)[*len - 1])) (*len)--;
}

static rt_status render_msgs(const rt_chat_template *ct, const rt_tokenizer *tok, const rt_chat_msg *m,
                             int n, bool gen, render *r) {
    char bb[64], eb[64];
    const char *bos = family_bos(ct->family, tok, bb, sizeof bb), *eos = family_eos(ct->family, tok, eb, sizeof eb);
    int sys = -1, first_user = -1, last_user = -1;
    for (int i = 0; i < n; i++) {
        int b = rt_chat_role_bit(m[i].role);
        if (!b) return rt_errorf(RT_EINPUT, "message %d has role \"%s\" (expected system, user, assistant or tool)",
                                 i, m[i].role ? m[i].role : "(none)");
        if (b == RT_ROLE_SYSTEM && i == 0) sys = 0;
        if (b == RT_ROLE_USER && first_user < 0) first_user = i;
        if (b == RT_ROLE_USER) last_user = i;
    }
    if (ct->no_system && sys >= 0)
        return rt_errorf(RT_EINPUT, "message 0: the model's chat template does not take a system message (it "
                         "raises \"System role not supported\")");
    rt_status st = RT_OK;
    int f = ct->family;
    if (f == RT_CHAT_LLAMA3 || f == RT_CHAT_MISTRAL || f == RT_CHAT_GEMMA) st = puts_(r, bos, PART_FRAME, -1);
    /* Llama 3.1+: the system turn is always there, with the knowledge date */
    bool dated = f == RT_CHAT_LLAMA3 && ct->llama_date;
    if (st == RT_OK && dated) {
        st = puts_(r, "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
                   "Today Date: ", PART_FRAME, -1);
        if (st == RT_OK) st = puts_(r, ct->llama_date, PART_FRAME, -1);
        if (st == RT_OK) st = puts_(r, "\n\n", PART_FRAME, -1);
        if (st == RT_OK && sys >= 0) {
            const char *s = m[sys].content ? m[sys].content : "";
            size_t sl = strlen(s);
            trim(&s, &sl);
            st = put(r, s, sl, PART_FRAME, -1);
        }
        if (st == RT_OK) st = puts_(r, "<|eot_id|>", PART_FRAME, -1);
    }
    if (st == RT_OK && f == RT_CHAT_CHATML && ct->default_system && sys < 0) {
        st = puts_(r, "<|im_start|>system\n", PART_FRAME, -1);
        if (st == RT_OK) st = puts_(r, ct->default_system, PART_FRAME, -1);
        if (st == RT_OK) st = puts_(r, "<|im_end|>\n", PART_FRAME, -1);
    }
    /* Families that fold the system message into the first user turn. */
    bool fold = f == RT_CHAT_MISTRAL || f == RT_CHAT_LLAMA2 || f == RT_CHAT_GEMMA;
    for (int i = 0; i < n && st == RT_OK; i++) {
        int b = rt_chat_role_bit(m[i].role);
        const char *role = role_name(b), *c = m[i].content ? m[i].content : "";
        size_t cl = strlen(c);
        if (dated && i == sys) continue;
        if (fold && b == RT_ROLE_SYSTEM) {
            if (i != sys) return rt_errorf(RT_EINPUT, "message %d: the %s template takes a system message only "
                                           "first", i, family_names[f]);
            continue;
        }
        switch (f) {
        case RT_CHAT_LLAMA3:
            trim(&c, &cl);
            st = puts_(r, "<|start_header_id|>", PART_FRAME, i);
            if (st == RT_OK) st = puts_(r, role, PART_FRAME, i);
            if (st == RT_OK) st = puts_(r, "<|end_header_id|>\n\n", PART_FRAME, i);
            if (st == RT_OK) st = put(r, c, cl, PART_CONTENT, i);
            if (st == RT_OK) st = puts_(r, "<|eot_id|>", PART_EOT, i);
            break;
        case RT_CHAT_CHATML:
        case RT_CHAT_QWEN3:
            st = puts_(r, "<|im_start|>", PART_FRAME, i);
            if (st == RT_OK) st = puts_(r, role, PART_FRAME, i);
            if (st == RT_OK) st = puts_(r, "\n", PART_FRAME, i);
            if (st == RT_OK && f == RT_CHAT_QWEN3 && b == RT_ROLE_ASSISTANT && i > last_user && i == n - 1) {
                st = puts_(r, "<think>\n\n</think>\n\n", PART_FRAME, i);
                while (cl && *c == '\n') c++, cl--;
            }
            if (st == RT_OK) st = put(r, c, cl, PART_CONTENT, i);
            if (st == RT_OK) st = puts_(r, "<|im_end|>", PART_EOT, i);
            if (st == RT_OK) st = puts_(r, "\n", PART_FRAME, i);
            break;
        case RT_CHAT_MISTRAL:
        case RT_CHAT_LLAMA2:
            if (b == RT_ROLE_USER) {
                if (f == RT_CHAT_LLAMA2) trim(&c, &cl), st = puts_(r, bos, PART_FRAME, i);
                if (st == RT_OK) st = puts_(r, "[INST] ", PART_FRAME, i);
                if (st == RT_OK && i == first_user && sys >= 0) {
                    const char *s = m[sys].content ? m[sys].content : "";
                    size_t sl = strlen(s);
                    if (f == RT_CHAT_LLAMA2) {
                        trim(&s, &sl);
                        st = puts_(r, "<<SYS>>\n", PART_FRAME, i);
                        if (st == RT_OK) st = put(r, s, sl, PART_FRAME, i);
                        if (st == RT_OK) st = puts_(r, "\n<</SYS>>\n\n", PART_FRAME, i);
                    } else {
                        st = put(r, s, sl, PART_FRAME, i);
                        if (st == RT_OK) st = puts_(r, "\n\n", PART_FRAME, i);
                    }
                }
                if (st == RT_OK) st = put(r, c, cl, PART_CONTENT, i);
                if (st == RT_OK) st = puts_(r, " [/INST]", PART_FRAME, i);
            } else {
                if (f == RT_CHAT_LLAMA2) trim(&c, &cl), st = puts_(r, " ", PART_FRAME, i);
                if (st == RT_OK) st = put(r, c, cl, PART_CONTENT, i);
                if (st == RT_OK && f == RT_CHAT_LLAMA2) st = puts_(r, " ", PART_CONTENT, i);
                if (st == RT_OK) st = puts_(r, eos, PART_EOT, i);
            }
            break;
        case RT_CHAT_GEMMA:
            trim(&c, &cl);
            st = puts_(r, "<start_of_turn>", PART_FRAME, i);
            if (st == RT_OK) st = puts_(r, b == RT_ROLE_ASSISTANT ? "model" : role, PART_FRAME, i);
            if (st == RT_OK) st = puts_(r, "\n", PART_FRAME, i);
            if (st == RT_OK && i == first_user && sys >= 0) {
                const char *s = m[sys].content ? m[sys].content : "";
                size_t sl = strlen(s);
                trim(&s, &sl);
                st = put(r, s, sl, PART_FRAME, i);
                if (st == RT_OK) st = puts_(r, "\n\n", PART_FRAME, i);
            }
            if (st == RT_OK) st = put(r, c, cl, PART_CONTENT, i);
            if (st == RT_OK) st = puts_(r, "<end_of_turn>", PART_EOT, i);
            if (st == RT_OK) st = puts_(r, "\n", PART_FRAME, i);
            break;
        default: /* RT_CHAT_PHI3 */
            st = puts_(r, "<|", PART_FRAME, i);
            if (st == RT_OK) st = puts_(r, role, PART_FRAME, i);
            if (st == RT_OK) st = puts_(r, "|>\n", PART_FRAME, i);
            if (st == RT_OK) st = put(r, c, cl, PART_CONTENT, i);
            if (st == RT_OK) st = puts_(r, "<|end|>", PART_EOT, i);
            if (st == RT_OK) st = puts_(r, "\n", PART_FRAME, i);
            break;
        }
    }
    if (st != RT_OK) return st;
    bool g = gen || (f == RT_CHAT_LLAMA3 && ct->gen_prompt_always);
    if (g) {
        static const char *const prompt[RT_CHAT_N_FAMILIES] = {
            "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|im_start|>assistant\n",
            "<|im_start|>assistant\n", "", "", "<start_of_turn>model\n", "<|assistant|>\n"};
        st = puts_(r, prompt[f], PART_FRAME, -1);
    } else if (f == RT_CHAT_PHI3) {
        st = puts_(r, eos, PART_FRAME, -1);
    }
    if (st == RT_OK && !r->text.p) st = rt_tok_buf_put(&r->text, "", 0);
    return st;
}

rt_status rt_chat_render(const rt_chat_template *ct, const rt_tokenizer *tok, const rt_chat_msg *m,
                         int n, bool add_generation_prompt, char **text, size_t *len) {
    render r = {0};
    rt_status st = render_msgs(ct, tok, m, n, add_generation_prompt, &r);
    free(r.p);
    if (st != RT_OK) {
        free(r.text.p);
        *text = NULL;
        return st;
    }
    *text = r.text.p;
    *len = r.text.n;
    return RT_OK;
}

/* --- encoding and labels ------------------------------------------------ */

static bool part_trained(const render *r, const rt_chat_msg *m, int k, unsigned roles, rt_chat_eos eos,
                         int last_trained) {
    const part *p = &r->p[k];
    if (p->msg < 0 || p->kind == PART_FRAME) return false;
    bool role_on = (roles & (unsigned)rt_chat_role_bit(m[p->msg].role)) != 0;
    if (p->kind == PART_CONTENT) return role_on;
    switch (eos) {
    case RT_EOS_ALL: return true;
    case RT_EOS_NONE: return false;
    case RT_EOS_LAST: return p->msg == last_trained;
    default: return role_on;
    }
}

/* The input bytes token id stands for: a special token's string, else what
 * it decodes to. */
static const char *token_bytes(const rt_tokenizer *t, int id, size_t *len) {
    if (t->flags[id] & RT_TOKF_SPECIAL) { /* decodes to nothing, stands for its string */
        *len = (size_t)t->piece_len[id];
        return t->piece[id];
    }
    *len = (size_t)t->disp_len[id];
    return t->disp[id];
}

/* Labels from byte offsets: true when the tokens concatenate to the text
 * (after a SentencePiece dummy-prefix space on the first token, which stands
 * for no byte of the text). */
static bool label_by_offsets(const rt_tokenizer *tok, const render *r, const int32_t *ids, size_t n,
                             const uint8_t *part_on, uint8_t *out) {
    size_t off = 0;
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *b = token_bytes(tok, ids[i], &len);
        if (i == 0 && len > 0 && b[0] == ' ' && r->text.n > 0 && r->text.p[0] != ' ') b++, len--;
        if (off + len > r->text.n || memcmp(r->text.p + off, b, len) != 0) return false;
        while (k + 1 < r->n && r->p[k + 1].off <= off) k++;
        out[i] = len > 0 && part_on[k];
        off += len;
    }
    return off == r->text.n;
}

rt_status rt_chat_encode(const rt_chat_template *ct, const rt_tokenizer *tok, const rt_chat_msg *m,
                         int n, unsigned roles, rt_chat_eos train_on_eos, int32_t **ids,
                         uint8_t **trained, size_t *n_ids) {
    *ids = NULL, *trained = NULL, *n_ids = 0;
    render r = {0};
    rt_status st = render_msgs(ct, tok, m, n, false, &r);
    uint8_t *on = st == RT_OK ? calloc((size_t)r.n + 1, 1) : NULL;
    if (st == RT_OK && !on) st = rt_tok_oom();
    int last_trained = -1;
    for (int i = 0; i < n; i++)
        if (roles & (unsigned)rt_chat_role_bit(m[i].role)) last_trained = i;
    for (int k = 0; st == RT_OK && k < r.n; k++) on[k] = part_trained(&r, m, k, roles, train_on_eos, last_trained);
    int32_t *v = NULL;
    uint8_t *tg = NULL;
    size_t nv = 0;
    if (st == RT_OK) st = rt_tokenizer_encode(tok, r.text.p, r.text.n, false, &v, &nv);
    if (st == RT_OK && !(tg = malloc(nv + 1))) st = rt_tok_oom();
    if (st == RT_OK && !label_by_offsets(tok, &r, v, nv, on, tg)) {
        /* Encode part by part (no BPE merge across a part boundary). */
        free(v), free(tg);
        v = NULL, tg = NULL;
        size_t cap = 0;
        nv = 0;
        for (int k = 0; k < r.n && st == RT_OK; k++) {
            int32_t *pv = NULL;
            size_t pn = 0;
            st = rt_tokenizer_encode(tok, r.text.p + r.p[k].off, r.p[k].len, false, &pv, &pn);
            if (st == RT_OK && nv + pn + 1 > cap) {
                cap = (nv + pn + 1) * 2;
                int32_t *nv2 = realloc(v, cap * sizeof *v);
                uint8_t *nt = nv2 ? realloc(tg, cap) : NULL;
                if (nv2) v = nv2;
                if (nt) tg = nt;
                if (!nv2 || !nt) st = rt_tok_oom();
            }
            if (st == RT_OK) {
                memcpy(v + nv, pv, pn * sizeof *pv);
                memset(tg + nv, on[k], pn);
                nv += pn;
            }
            free(pv);
        }
        if (st == RT_OK && !v) {
            v = malloc(sizeof *v), tg = malloc(1);
            if (!v || !tg) st = rt_tok_oom();
        }
    }
    free(on), free(r.p), free(r.text.p);
    if (st != RT_OK) {
        free(v), free(tg);
        return st;
    }
    *ids = v, *trained = tg, *n_ids = nv;
    return RT_OK;
}

int rt_chat_end_of_turn(const rt_chat_template *ct, const rt_tokenizer *tok) {
    static const char *const eot[RT_CHAT_N_FAMILIES] = {"<|eot_id|>", "<|im_end|>", "<|im_end|>", NULL,
                                                        NULL,         "<end_of_turn>", "<|end|>"};
    const char *s = eot[ct->family];
    if (!s) return rt_tokenizer_eos(tok);
    return rt_tokenizer_token_id(tok, s);
}

rt_status rt_chat_msgs_from_json(const cJSON *arr, const char *role_key, const char *content_key,
                                 rt_chat_msg **out, int *n) {
    *out = NULL, *n = 0;
    if (!role_key) role_key = "role";
    if (!content_key) content_key = "content";
    if (!cJSON_IsArray(arr)) return rt_errorf(RT_EINPUT, "messages: expected a JSON list of messages");
    int cnt = cJSON_GetArraySize(arr), i = 0;
    rt_chat_msg *m = malloc((size_t)(cnt ? cnt : 1) * sizeof *m);
    if (!m) return rt_tok_oom();
    const cJSON *c;
    cJSON_ArrayForEach(c, arr) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(c, role_key);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(c, content_key);
        const char *why = !cJSON_IsObject(c) ? "is not an object"
                          : !cJSON_IsString(r) ? "has no string role field"
                          : !cJSON_IsString(t) ? "has no string content field"
                          : !rt_chat_role_bit(r->valuestring) ? "has an unknown role" : NULL;
        if (why) {
            free(m);
            return rt_errorf(RT_EINPUT, "message %d %s (\"%s\", \"%s\"; roles: system, user, assistant, tool, "
                             "human, gpt)", i, why, role_key, content_key);
        }
        m[i++] = (rt_chat_msg){r->valuestring, t->valuestring};
    }
    *out = m, *n = i;
    return RT_OK;
}
