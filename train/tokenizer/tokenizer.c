/* retort — tokenizer core: vocabulary/merge hash maps, BPE encode, decode.
 *
 * One merge loop serves both merge orders: a pair's priority is its rank
 * (tokenizer.json / vocab.bpe) or minus the merged piece's score (llama2.c).
 * A min-heap on (priority, position) pops the pair to merge next; that is the
 * leftmost best pair, which is what run.c's repeated scan ("highest score,
 * first on ties") and HF tokenizers' Word::merge_all both pick. Stale heap
 * entries are skipped by re-checking the two symbols. */
#include "train/tokenizer/tokenizer_internal.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unictype.h>
#include <uninorm.h>

rt_status rt_tok_oom(void) { return rt_errorf(RT_EINTERNAL, "tokenizer: out of memory"); }

rt_status rt_tok_buf_put(rt_tok_buf *b, const void *s, size_t len) {
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + len + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return rt_tok_oom();
        b->p = p;
        b->cap = cap;
    }
    if (len) memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = '\0';
    return RT_OK;
}

/* FNV-1a (http://www.isthe.com/chongo/tech/comp/fnv/). */
static uint32_t hash_bytes(const char *s, size_t len) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static uint32_t hash_u64(uint64_t x) { /* splitmix64 finalizer */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return (uint32_t)x;
}

rt_status rt_tok_alloc_vocab(rt_tokenizer *t, int n) {
    t->n_vocab = n;
    t->piece = calloc((size_t)n, sizeof *t->piece);
    t->piece_len = calloc((size_t)n, sizeof *t->piece_len);
    t->disp = calloc((size_t)n, sizeof *t->disp);
    t->disp_len = calloc((size_t)n, sizeof *t->disp_len);
    t->flags = calloc((size_t)n, 1);
    if (!t->piece || !t->piece_len || !t->disp || !t->disp_len || !t->flags) return rt_tok_oom();
    return RT_OK;
}

rt_status rt_tok_set_piece(rt_tokenizer *t, int id, const char *s, size_t len) {
    char *p = malloc(len + 1);
    if (!p) return rt_tok_oom();
    memcpy(p, s, len);
    p[len] = '\0';
    free(t->piece[id]);
    t->piece[id] = p;
    t->piece_len[id] = (int32_t)len;
    return RT_OK;
}

rt_status rt_tok_build_vmap(rt_tokenizer *t) {
    uint32_t cap = 16;
    while (cap < (uint32_t)t->n_vocab * 2u) cap *= 2;
    free(t->vmap);
    t->vmap = malloc(cap * sizeof *t->vmap);
    if (!t->vmap) return rt_tok_oom();
    memset(t->vmap, 0xff, cap * sizeof *t->vmap);
    t->vmask = cap - 1;
    for (int id = 0; id < t->n_vocab; id++) {
        if (!t->piece[id]) continue;
        if (rt_tok_lookup(t, t->piece[id], (size_t)t->piece_len[id]) >= 0) continue;
        uint32_t h = hash_bytes(t->piece[id], (size_t)t->piece_len[id]) & t->vmask;
        while (t->vmap[h] >= 0) h = (h + 1) & t->vmask;
        t->vmap[h] = id;
    }
    return RT_OK;
}

int rt_tok_lookup(const rt_tokenizer *t, const char *s, size_t len) {
    if (!t->vmap) return -1;
    uint32_t h = hash_bytes(s, len) & t->vmask;
    for (int32_t id; (id = t->vmap[h]) >= 0; h = (h + 1) & t->vmask)
        if ((size_t)t->piece_len[id] == len && memcmp(t->piece[id], s, len) == 0) return id;
    return -1;
}

static const uint64_t EMPTY_KEY = ~0ull;

static rt_status pair_grow(rt_tokenizer *t, uint32_t cap) {
    uint64_t *key = malloc(cap * sizeof *key);
    int32_t *merged = malloc(cap * sizeof *merged);
    double *prio = malloc(cap * sizeof *prio);
    if (!key || !merged || !prio) {
        free(key), free(merged), free(prio);
        return rt_tok_oom();
    }
    for (uint32_t i = 0; i < cap; i++) key[i] = EMPTY_KEY;
    uint32_t mask = cap - 1;
    if (t->pkey) {
        for (uint32_t i = 0; i <= t->pmask; i++) {
            if (t->pkey[i] == EMPTY_KEY) continue;
            uint32_t h = hash_u64(t->pkey[i]) & mask;
            while (key[h] != EMPTY_KEY) h = (h + 1) & mask;
            key[h] = t->pkey[i], merged[h] = t->pmerged[i], prio[h] = t->pprio[i];
        }
    }
    free(t->pkey), free(t->pmerged), free(t->pprio);
    t->pkey = key, t->pmerged = merged, t->pprio = prio, t->pmask = mask;
    return RT_OK;
}

static long pair_slot(const rt_tokenizer *t, int left, int right) {
    if (!t->pkey) return -1;
    uint64_t k = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    for (uint32_t h = hash_u64(k) & t->pmask; t->pkey[h] != EMPTY_KEY; h = (h + 1) & t->pmask)
        if (t->pkey[h] == k) return (long)h;
    return -1;
}

rt_status rt_tok_pair_add(rt_tokenizer *t, int left, int right, int merged, double prio,
                          size_t cap_hint) {
    if (!t->pkey || (t->n_pairs + 1) * 2 > (size_t)t->pmask + 1) {
        uint32_t cap = t->pkey ? (t->pmask + 1) * 2 : 16;
        while ((size_t)cap < cap_hint * 2) cap *= 2;
        RT_TRY(pair_grow(t, cap));
    }
    long s = pair_slot(t, left, right);
    if (s >= 0) {
        if (prio < t->pprio[s]) t->pprio[s] = prio, t->pmerged[s] = merged;
        return RT_OK;
    }
    uint64_t k = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    uint32_t h = hash_u64(k) & t->pmask;
    while (t->pkey[h] != EMPTY_KEY) h = (h + 1) & t->pmask;
    t->pkey[h] = k, t->pmerged[h] = merged, t->pprio[h] = prio;
    t->n_pairs++;
    return RT_OK;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* "<0xXX>" -> XX, else -1. */
static int byte_piece(const char *p, int len) {
    if (len != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') return -1;
    int a = hexval(p[3]), b = hexval(p[4]);
    return a < 0 || b < 0 ? -1 : a * 16 + b;
}

/* Replaces every occurrence of a with b in buf (in place via a copy). */
static rt_status replace_all(rt_tok_buf *buf, const rt_tok_step *st) {
    if (st->alen == 0 || buf->n < st->alen) return RT_OK;
    rt_tok_buf o = {0};
    size_t i = 0;
    rt_status s = RT_OK;
    while (i < buf->n && s == RT_OK) {
        if (i + st->alen <= buf->n && memcmp(buf->p + i, st->a, st->alen) == 0) {
            s = rt_tok_buf_put(&o, st->b, st->blen);
            i += st->alen;
        } else {
            s = rt_tok_buf_put(&o, buf->p + i, 1);
            i++;
        }
    }
    if (s != RT_OK) { free(o.p); return s; }
    if (!o.p) s = rt_tok_buf_put(&o, "", 0);
    free(buf->p);
    *buf = o;
    return s;
}

/* The text one token contributes when decoded, following the declared
 * decoder: ByteLevel maps characters back to bytes, Replace/Metaspace swap
 * '▁' for ' ', ByteFallback turns "<0xXX>" into the byte. */
static rt_status build_disp(rt_tokenizer *t, int id) {
    rt_tok_buf b = {0};
    rt_status s = rt_tok_buf_put(&b, "", 0);
    const char *p = t->piece[id] ? t->piece[id] : "";
    int len = t->piece[id] ? t->piece_len[id] : 0;
    int bv = byte_piece(p, len);
    if (s != RT_OK || (t->flags[id] & RT_TOKF_SPECIAL)) {
    } else if (bv >= 0 && t->dec_byte_fallback) {
        char c = (char)bv;
        s = rt_tok_buf_put(&b, &c, 1);
    } else if (t->dec_bytelevel) {
        for (int i = 0; i < len && s == RT_OK;) {
            uint32_t cp;
            int l = rt_utf8_decode((const unsigned char *)p + i, (size_t)(len - i), &cp);
            int by = l ? rt_unicode_to_byte(cp) : -1;
            if (l == 0) l = 1;
            if (by >= 0) {
                char c = (char)by;
                s = rt_tok_buf_put(&b, &c, 1);
            } else {
                s = rt_tok_buf_put(&b, p + i, (size_t)l);
            }
            i += l;
        }
    } else {
        s = rt_tok_buf_put(&b, p, (size_t)len);
        for (int k = 0; k < t->n_dec_replace && s == RT_OK; k++)
            s = replace_all(&b, &t->dec_replace[k]);
    }
    if (s != RT_OK) { free(b.p); return s; }
    t->disp[id] = b.p;
    t->disp_len[id] = (int32_t)b.n;
    return RT_OK;
}

static int cmp_added_len(const void *a, const void *b, void *ctx) {
    const rt_tokenizer *t = ctx;
    int la = t->piece_len[*(const int32_t *)a], lb = t->piece_len[*(const int32_t *)b];
    return la != lb ? (lb > la ? 1 : -1) : (*(const int32_t *)a - *(const int32_t *)b);
}

rt_status rt_tok_finish(rt_tokenizer *t) {
    if (!t->vmap) RT_TRY(rt_tok_build_vmap(t));
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_id[b] = rt_tok_lookup(t, name, 6);
        if (t->byte_id[b] >= 0) t->flags[t->byte_id[b]] |= RT_TOKF_BYTE;
    }
    for (int id = 0; id < t->n_vocab; id++) RT_TRY(build_disp(t, id));
    if (t->n_added > 1) qsort_r(t->added, (size_t)t->n_added, sizeof *t->added, cmp_added_len, t);
    memset(t->added_first, 0, sizeof t->added_first);
    for (int k = 0; k < t->n_added; k++)
        if (t->piece_len[t->added[k]] > 0) t->added_first[(unsigned char)t->piece[t->added[k]][0]] = 1;
    return RT_OK;
}

void rt_tokenizer_free(rt_tokenizer *t) {
    if (!t) return;
    for (int i = 0; i < t->n_vocab; i++) {
        if (t->piece) free(t->piece[i]);
        if (t->disp) free(t->disp[i]);
    }
    free(t->piece), free(t->piece_len), free(t->disp), free(t->disp_len);
    free(t->score), free(t->flags), free(t->vmap);
    free(t->pkey), free(t->pmerged), free(t->pprio);
    for (int k = 0; k < t->n_norm; k++) free(t->norm[k].a), free(t->norm[k].b);
    for (int k = 0; k < t->n_dec_replace; k++) free(t->dec_replace[k].a), free(t->dec_replace[k].b);
    for (int k = 0; k < t->n_pstep; k++) rt_tok_regex_free(t->pstep[k].re);
    free(t->added), free(t->added_flags), free(t->hf_json), free(t->hf_config), free(t->chat_template);
    free(t->path);
    free(t);
}

int rt_tokenizer_vocab_size(const rt_tokenizer *t) { return t->n_vocab; }
int rt_tokenizer_bos(const rt_tokenizer *t) { return t->bos; }
int rt_tokenizer_eos(const rt_tokenizer *t) { return t->eos; }
bool rt_tokenizer_adds_bos(const rt_tokenizer *t) { return t->add_bos && t->bos >= 0; }
const char *rt_tokenizer_chat_template(const rt_tokenizer *t) { return t->chat_template; }
const char *rt_tokenizer_path(const rt_tokenizer *t) { return t->path ? t->path : "(tokenizer)"; }
int rt_tokenizer_token_id(const rt_tokenizer *t, const char *s) { return rt_tok_lookup(t, s, strlen(s)); }

int rt_tokenizer_special_id(const rt_tokenizer *t, const char *s) {
    int id = rt_tok_lookup(t, s, strlen(s));
    size_t n = strlen(s);
    for (int i = 0; id < 0 && i < t->n_vocab; i++) {
        if (!(t->flags[i] & RT_TOKF_SPECIAL) || !t->piece[i]) continue;
        const char *p = t->piece[i];
        size_t l = (size_t)t->piece_len[i];
        while (l && (*p == '\n' || *p == ' ')) p++, l--;
        while (l && (p[l - 1] == '\n' || p[l - 1] == ' ')) l--;
        if (l == n && memcmp(p, s, n) == 0) id = i;
    }
    return id;
}

/* --- encoding ------------------------------------------------------------ */

typedef struct {
    int32_t *p;
    size_t n, cap;
} ivec;

static rt_status ivec_push(ivec *v, int32_t x) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        int32_t *p = realloc(v->p, cap * sizeof *p);
        if (!p) return rt_tok_oom();
        v->p = p, v->cap = cap;
    }
    v->p[v->n++] = x;
    return RT_OK;
}

typedef struct { int id, prev, next; } sym;
typedef struct { double prio; int pos, right, lid, rid, merged; } cand;

typedef struct {
    sym *s;
    size_t ns, scap;
    cand *h;
    size_t nh, hcap;
} bpe_work;

static bool cand_less(const cand *a, const cand *b) {
    return a->prio < b->prio || (a->prio == b->prio && a->pos < b->pos);
}

static rt_status heap_push(bpe_work *w, cand c) {
    if (w->nh == w->hcap) {
        size_t cap = w->hcap ? w->hcap * 2 : 64;
        cand *p = realloc(w->h, cap * sizeof *p);
        if (!p) return rt_tok_oom();
        w->h = p, w->hcap = cap;
    }
    size_t i = w->nh++;
    while (i > 0 && cand_less(&c, &w->h[(i - 1) / 2])) {
        w->h[i] = w->h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->h[i] = c;
    return RT_OK;
}

static cand heap_pop(bpe_work *w) {
    cand top = w->h[0], last = w->h[--w->nh];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= w->nh) break;
        if (c + 1 < w->nh && cand_less(&w->h[c + 1], &w->h[c])) c++;
        if (!cand_less(&w->h[c], &last)) break;
        w->h[i] = w->h[c];
        i = c;
    }
    if (w->nh) w->h[i] = last;
    return top;
}

static rt_status sym_push(bpe_work *w, int id) {
    if (w->ns == w->scap) {
        size_t cap = w->scap ? w->scap * 2 : 64;
        sym *p = realloc(w->s, cap * sizeof *p);
        if (!p) return rt_tok_oom();
        w->s = p, w->scap = cap;
    }
    w->s[w->ns] = (sym){id, (int)w->ns - 1, (int)w->ns + 1};
    w->ns++;
    return RT_OK;
}

static rt_status push_pair(const rt_tokenizer *t, bpe_work *w, int pos) {
    if (pos < 0) return RT_OK;
    int r = w->s[pos].next;
    if (r < 0 || (size_t)r >= w->ns) return RT_OK;
    long slot = pair_slot(t, w->s[pos].id, w->s[r].id);
    if (slot < 0) return RT_OK;
    return heap_push(w, (cand){t->pprio[slot], pos, r, w->s[pos].id, w->s[r].id, t->pmerged[slot]});
}

/* Merges w->s (a linked list of w->ns symbols) and appends the ids to out. */
static rt_status bpe_merge(const rt_tokenizer *t, bpe_work *w, ivec *out) {
    w->nh = 0;
    if (w->ns) w->s[w->ns - 1].next = -1;
    for (size_t i = 0; i + 1 < w->ns; i++) RT_TRY(push_pair(t, w, (int)i));
    while (w->nh) {
        cand c = heap_pop(w);
        sym *L = &w->s[c.pos];
        if (L->id != c.lid || L->next != c.right || w->s[c.right].id != c.rid) continue;
        L->id = c.merged;
        int rn = w->s[c.right].next;
        w->s[c.right].id = -1; /* dead */
        w->s[c.right].next = -2;
        L->next = rn;
        if (rn >= 0) w->s[rn].prev = c.pos;
        RT_TRY(push_pair(t, w, L->prev));
        RT_TRY(push_pair(t, w, c.pos));
    }
    for (int i = w->ns ? 0 : -1; i >= 0; i = w->s[i].next) RT_TRY(ivec_push(out, w->s[i].id));
    return RT_OK;
}

/* Initial symbols for one word: each code point whole, else its bytes'
 * "<0xXX>" tokens (when byte fallback is on), else unk. */
static rt_status word_symbols(const rt_tokenizer *t, bpe_work *w, const char *s, size_t n) {
    bool last_unk = false;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = rt_utf8_decode((const unsigned char *)s + i, n - i, &cp);
        if (l == 0) l = 1; /* only byte-level symbols reach here, all valid */
        int id = rt_tok_lookup(t, s + i, (size_t)l);
        if (id >= 0) {
            RT_TRY(sym_push(w, id));
            last_unk = false;
        } else {
            bool bytes_ok = t->byte_fallback;
            for (int k = 0; k < l && bytes_ok; k++)
                bytes_ok = t->byte_id[(unsigned char)s[i + k]] >= 0;
            if (bytes_ok) {
                for (int k = 0; k < l; k++) RT_TRY(sym_push(w, t->byte_id[(unsigned char)s[i + k]]));
                last_unk = false;
            } else if (t->unk >= 0) {
                if (!(t->fuse_unk && last_unk)) RT_TRY(sym_push(w, t->unk));
                last_unk = true;
            } else {
                return rt_errorf(RT_EINPUT,
                                 "tokenizer: character U+%04X has no token, no byte fallback "
                                 "and no unk token",
                                 (unsigned)cp);
            }
        }
        i += (size_t)l;
    }
    return RT_OK;
}

static rt_status bpe_word(const rt_tokenizer *t, bpe_work *w, const char *s, size_t n, ivec *out) {
    if (n == 0) return RT_OK;
    if (t->ignore_merges) {
        int id = rt_tok_lookup(t, s, n);
        if (id >= 0) return ivec_push(out, id);
    }
    w->ns = 0;
    RT_TRY(word_symbols(t, w, s, n));
    return bpe_merge(t, w, out);
}

/* A pre-tokenized piece: [off, off + len) of a text buffer. */
typedef struct { size_t off, len; } span;
typedef struct {
    span *p;
    size_t n, cap;
} spans;

static rt_status spans_push(spans *v, size_t off, size_t len) {
    if (len == 0) return RT_OK;
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        span *p = realloc(v->p, cap * sizeof *p);
        if (!p) return rt_tok_oom();
        v->p = p, v->cap = cap;
    }
    v->p[v->n++] = (span){off, len};
    return RT_OK;
}

static size_t utf8_len_at(const char *s) {
    unsigned c = (unsigned char)*s;
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

/* Splits piece [off, off + len) of s by the regex, as tokenizers' Split with
 * the given behavior: the regex runs on the piece alone (lookarounds see no
 * neighbouring piece); empty matches are skipped. */
static rt_status split_piece(const rt_tok_pstep *ps, pcre2_match_data *md, const char *s, size_t off,
                             size_t len, spans *out) {
    const PCRE2_SPTR sub = (PCRE2_SPTR)(s + off);
    size_t pos = 0, gap = 0;
    rt_status st = RT_OK;
    while (pos < len && st == RT_OK) {
        int rc = pcre2_match(ps->re, sub, len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return rt_errorf(RT_EINPUT, "tokenizer: Split regex failed (PCRE2 error %d)", rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* empty match: move on one character */
            pos = ms + utf8_len_at(s + off + ms);
            continue;
        }
        switch (ps->behavior) {
        case RT_SPLIT_ISOLATED:
            st = spans_push(out, off + gap, ms - gap);
            if (st == RT_OK) st = spans_push(out, off + ms, me - ms);
            gap = me;
            break;
        case RT_SPLIT_REMOVED:
            st = spans_push(out, off + gap, ms - gap);
            gap = me;
            break;
        case RT_SPLIT_PREV:
            st = spans_push(out, off + gap, me - gap);
            gap = me;
            break;
        default: /* RT_SPLIT_NEXT: the match starts the next piece */
            st = spans_push(out, off + gap, ms - gap);
            gap = ms;
            break;
        }
        pos = me;
    }
    if (st == RT_OK) st = spans_push(out, off + gap, len - gap);
    return st;
}

/* Runs the pre-tokenizer steps over s[0..n) and BPE-encodes each piece. */
static rt_status encode_pipeline(const rt_tokenizer *t, bpe_work *w, const char *s, size_t n, ivec *out) {
    rt_tok_buf text = {0}, word = {0};
    spans cur = {0}, next = {0};
    bool bytelevel = false;
    rt_status st = rt_tok_buf_put(&text, s, n);
    if (st == RT_OK) st = spans_push(&cur, 0, n);
    for (int k = 0; k < t->n_pstep && st == RT_OK; k++) {
        const rt_tok_pstep *ps = &t->pstep[k];
        if (ps->op == RT_PSTEP_BYTELEVEL && ps->prefix_space) { /* ' ' before each piece lacking one */
            rt_tok_buf nt = {0};
            st = rt_tok_buf_put(&nt, "", 0);
            for (size_t i = 0; i < cur.n && st == RT_OK; i++) {
                size_t o = nt.n;
                if (text.p[cur.p[i].off] != ' ') st = rt_tok_buf_put(&nt, " ", 1);
                if (st == RT_OK) st = rt_tok_buf_put(&nt, text.p + cur.p[i].off, cur.p[i].len);
                cur.p[i] = (span){o, nt.n - o};
            }
            free(text.p);
            text = nt;
        }
        if (ps->op == RT_PSTEP_BYTELEVEL) bytelevel = true;
        if (!ps->re || st != RT_OK) continue;
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(ps->re, NULL);
        if (!md) st = rt_tok_oom();
        next.n = 0;
        for (size_t i = 0; i < cur.n && st == RT_OK; i++)
            st = split_piece(ps, md, text.p, cur.p[i].off, cur.p[i].len, &next);
        pcre2_match_data_free(md);
        spans tmp = cur;
        cur = next, next = tmp;
    }
    for (size_t i = 0; i < cur.n && st == RT_OK; i++) {
        const char *p = text.p + cur.p[i].off;
        size_t len = cur.p[i].len;
        if (!bytelevel) {
            st = bpe_word(t, w, p, len, out);
            continue;
        }
        word.n = 0;
        for (size_t k = 0; k < len && st == RT_OK; k++) {
            char u[4];
            int l = rt_utf8_encode(rt_byte_to_unicode((unsigned char)p[k]), u);
            st = rt_tok_buf_put(&word, u, (size_t)l);
        }
        if (st == RT_OK) st = bpe_word(t, w, word.p, word.n, out);
    }
    free(text.p), free(word.p), free(cur.p), free(next.p);
    return st;
}

static rt_status encode_added(const rt_tokenizer *t, bpe_work *w, const char *text, size_t len,
                              bool normalized_phase, bool at_start, ivec *out);

/* Applies the normalizer steps to s[0..n) into *b. */
static rt_status normalize(const rt_tokenizer *t, const char *s, size_t n, rt_tok_buf *b) {
    rt_status st = rt_tok_buf_put(b, s, n);
    for (int k = 0; k < t->n_norm && st == RT_OK; k++) {
        const rt_tok_step *ns = &t->norm[k];
        if (ns->op == RT_NORM_REPLACE) {
            st = replace_all(b, ns);
        } else if (ns->op == RT_NORM_UNICODE) {
            size_t ol = 0;
            uint8_t *o = u8_normalize(ns->form, (const uint8_t *)b->p, b->n, NULL, &ol);
            if (!o) return rt_tok_oom();
            b->n = 0;
            st = rt_tok_buf_put(b, o, ol);
            free(o);
        } else if (b->n > 0) { /* Prepend applies to non-empty text only */
            rt_tok_buf o = {0};
            st = rt_tok_buf_put(&o, ns->a, ns->alen);
            if (st == RT_OK) st = rt_tok_buf_put(&o, b->p, b->n);
            free(b->p);
            *b = o;
        }
    }
    return st;
}

/* One stretch of text between non-normalized added tokens: normalize, split
 * at normalized added tokens, pre-tokenize, BPE. */
static rt_status encode_segment(const rt_tokenizer *t, bpe_work *w, const char *s, size_t n,
                                bool at_start, ivec *out) {
    if (n == 0) return RT_OK;
    if (t->source == RT_TOKSRC_BIN) { /* run.c encode() */
        w->ns = 0;
        int sp = t->no_space_prefix ? -1 : rt_tok_lookup(t, " ", 1);
        if (sp >= 0) RT_TRY(sym_push(w, sp));
        RT_TRY(word_symbols(t, w, s, n));
        return bpe_merge(t, w, out);
    }
    rt_tok_buf b = {0};
    rt_status st = normalize(t, s, n, &b);
    if (st == RT_OK) st = encode_added(t, w, b.p, b.n, true, at_start, out);
    free(b.p);
    return st;
}

/* Pre-tokenizes and encodes normalized text (no added tokens left in it). */
static rt_status encode_normalized(const rt_tokenizer *t, bpe_work *w, const char *s, size_t n,
                                   bool at_start, ivec *out) {
    if (n == 0) return RT_OK;
    if (t->n_pstep > 0) return encode_pipeline(t, w, s, n, out);
    if (t->pretok != RT_PRE_METASPACE) return bpe_word(t, w, s, n, out);
    rt_tok_buf b = {0};
    rt_status st = rt_tok_buf_put(&b, s, n);
    rt_tok_step sp = {RT_NORM_REPLACE, " ", (char *)t->ms_repl, 1, strlen(t->ms_repl), NULL};
    size_t rl = sp.blen;
    if (st == RT_OK) st = replace_all(&b, &sp);
    bool pre = t->ms_scheme == RT_MS_ALWAYS || (t->ms_scheme == RT_MS_FIRST && at_start);
    if (st == RT_OK && pre && !(b.n >= rl && memcmp(b.p, t->ms_repl, rl) == 0)) {
        rt_tok_buf o = {0};
        st = rt_tok_buf_put(&o, t->ms_repl, rl);
        if (st == RT_OK) st = rt_tok_buf_put(&o, b.p, b.n);
        free(b.p);
        b = o;
    }
    /* split=true: words start at each replacement char (MergedWithNext) */
    size_t i = 0;
    while (st == RT_OK && i < b.n) {
        size_t e = i + 1;
        if (t->ms_split) {
            while (e < b.n && !(e + rl <= b.n && memcmp(b.p + e, t->ms_repl, rl) == 0)) e++;
        } else {
            e = b.n;
        }
        st = bpe_word(t, w, b.p + i, e - i, out);
        i = e;
    }
    free(b.p);
    return st;
}

/* Code point ending just before s[i] (i > 0, s valid UTF-8). */
static uint32_t cp_before(const char *s, size_t i) {
    size_t k = i - 1;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
    uint32_t cp = 0;
    rt_utf8_decode((const unsigned char *)s + k, i - k, &cp);
    return cp;
}

static uint32_t cp_at(const char *s, size_t n, size_t i) {
    uint32_t cp = 0;
    rt_utf8_decode((const unsigned char *)s + i, n - i, &cp);
    return cp;
}

static bool word_char(uint32_t cp) { return cp == '_' || uc_is_alnum(cp); }

/* The added token matching text[i..) in this phase (longest first), -1 if
 * none. single_word tokens match only with no word character on either side
 * (tokenizers' AddedVocabulary). */
static int match_added(const rt_tokenizer *t, const char *text, size_t len, size_t i, bool normalized_phase) {
    if (!t->added_first[(unsigned char)text[i]]) return -1;
    for (int k = 0; k < t->n_added; k++) {
        int id = t->added[k];
        uint8_t f = t->added_flags ? t->added_flags[id] : 0;
        if (((f & RT_ADD_NORMALIZED) != 0) != normalized_phase) continue;
        size_t pl = (size_t)t->piece_len[id];
        if (!pl || i + pl > len || memcmp(text + i, t->piece[id], pl) != 0) continue;
        if ((f & RT_ADD_SINGLE_WORD) &&
            ((i > 0 && word_char(cp_before(text, i))) || (i + pl < len && word_char(cp_at(text, len, i + pl)))))
            continue;
        return id;
    }
    return -1;
}

/* Splits text at the added tokens of this phase (raw text: tokens with
 * normalized=false; normalized text: normalized=true). lstrip/rstrip tokens
 * swallow the whitespace beside them. */
static rt_status encode_added(const rt_tokenizer *t, bpe_work *w, const char *text, size_t len,
                              bool normalized_phase, bool at_start, ivec *out) {
    size_t seg = 0, i = 0;
    rt_status st = RT_OK;
    while (st == RT_OK && i < len) {
        int hit = match_added(t, text, len, i, normalized_phase);
        if (hit < 0) { i++; continue; }
        uint8_t f = t->added_flags ? t->added_flags[hit] : 0;
        size_t start = i, end = i + (size_t)t->piece_len[hit];
        if (f & RT_ADD_LSTRIP) { /* step back whole characters */
            while (start > seg && uc_is_property_white_space(cp_before(text, start))) {
                size_t k = start - 1;
                while (k > seg && ((unsigned char)text[k] & 0xC0) == 0x80) k--;
                start = k;
            }
        }
        if (f & RT_ADD_RSTRIP)
            while (end < len && uc_is_property_white_space(cp_at(text, len, end))) end += utf8_len_at(text + end);
        if (normalized_phase)
            st = encode_normalized(t, w, text + seg, start - seg, at_start && seg == 0, out);
        else
            st = encode_segment(t, w, text + seg, start - seg, seg == 0, out);
        if (st == RT_OK) st = ivec_push(out, hit);
        i = seg = end;
    }
    if (st != RT_OK) return st;
    if (normalized_phase) return encode_normalized(t, w, text + seg, len - seg, at_start && seg == 0, out);
    return encode_segment(t, w, text + seg, len - seg, seg == 0, out);
}

rt_status rt_tokenizer_encode(const rt_tokenizer *t, const char *text, size_t len, bool add_bos,
                              int32_t **ids, size_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int l = rt_utf8_decode((const unsigned char *)text + i, len - i, &cp);
        if (l == 0) return rt_errorf(RT_EINPUT, "tokenizer: invalid UTF-8 at byte offset %zu", i);
        i += (size_t)l;
    }
    ivec out = {0};
    bpe_work w = {0};
    rt_status st = RT_OK;
    if (add_bos && t->n_post_pre > 0) {
        for (int k = 0; k < t->n_post_pre && st == RT_OK; k++) st = ivec_push(&out, t->post_pre[k]);
    } else if (add_bos && t->bos >= 0) {
        st = ivec_push(&out, t->bos);
    }
    if (st == RT_OK) st = encode_added(t, &w, text, len, false, true, &out);
    if (st == RT_OK && !out.p) st = ivec_push(&out, 0), out.n = 0;
    free(w.s), free(w.h);
    if (st != RT_OK) { free(out.p); return st; }
    *ids = out.p;
    *n_ids = out.n;
    return RT_OK;
}

/* --- decoding ------------------------------------------------------------ */

rt_status rt_tokenizer_decode(const rt_tokenizer *t, const int32_t *ids, size_t n, char **text) {
    *text = NULL;
    rt_tok_buf b = {0};
    rt_status st = rt_tok_buf_put(&b, "", 0);
    for (size_t i = 0; i < n && st == RT_OK; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab) {
            st = rt_errorf(RT_EINPUT, "tokenizer: token id %d at position %zu is outside [0, %d)",
                           (int)ids[i], i, t->n_vocab);
            break;
        }
        st = rt_tok_buf_put(&b, t->disp[ids[i]], (size_t)t->disp_len[ids[i]]);
    }
    if (st != RT_OK) { free(b.p); return st; }
    size_t skip = 0;
    while ((int)skip < t->strip_lead && skip < b.n && b.p[skip] == ' ') skip++;
    if (skip) memmove(b.p, b.p + skip, b.n - skip + 1);
    *text = b.p;
    return RT_OK;
}

const char *rt_tokenizer_piece(const rt_tokenizer *t, int prev, int id, char buf[8]) {
    if (id < 0 || id >= t->n_vocab) return "";
    if (t->flags[id] & RT_TOKF_BYTE && t->disp_len[id] == 1) {
        buf[0] = t->disp[id][0];
        buf[1] = '\0';
        return buf;
    }
    const char *p = t->disp[id];
    if (prev == t->bos && t->bos >= 0 && t->strip_lead > 0 && p[0] == ' ') p++;
    return p;
}
