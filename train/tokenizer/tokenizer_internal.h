/* retort — tokenizer internals shared by tokenizer.c (core, encode/decode),
 * tokenizer_text.c (UTF-8 and the GPT-2 pre-tokenizer), tokenizer_load.c
 * (file formats) and tokenizer_save.c (tokenizer.json writer). Not a public
 * API: only these files include it. */
#ifndef RT_TOKENIZER_INTERNAL_H
#define RT_TOKENIZER_INTERNAL_H

#include "train/tokenizer/tokenizer.h"

enum { RT_TOKF_SPECIAL = 1, RT_TOKF_BYTE = 2 };           /* flags[id] */
enum { RT_TOKSRC_BIN, RT_TOKSRC_HF, RT_TOKSRC_GPT2 };       /* where it came from */
enum { RT_PRE_NONE, RT_PRE_BYTELEVEL, RT_PRE_METASPACE };  /* pre-tokenizer */
enum { RT_NORM_PREPEND, RT_NORM_REPLACE, RT_NORM_UNICODE }; /* normalizer step */
enum { RT_SPLIT_ISOLATED, RT_SPLIT_REMOVED, RT_SPLIT_PREV, RT_SPLIT_NEXT }; /* Split behavior */
enum { RT_PSTEP_SPLIT, RT_PSTEP_BYTELEVEL };               /* pre-tokenizer step */
enum { RT_MS_ALWAYS, RT_MS_FIRST, RT_MS_NEVER };           /* Metaspace prepend_scheme */

#define RT_TOK_MAX_STEPS 8

/* A string step: Prepend(a), Replace(a -> b), or a Unicode normalization form
 * (op RT_NORM_UNICODE, form = libunistring's uninorm_t: UNINORM_NFC...).
 * Strings are owned. */
typedef struct {
    int op;
    char *a, *b;
    size_t alen, blen;
    const void *form;
} rt_tok_step;

/* One pre-tokenizer step of a byte-level pipeline: a Split by a compiled
 * PCRE2 regex (owned; pcre2_code *), or ByteLevel (its optional prefix space
 * and GPT-2 regex split; after it, pieces are mapped byte -> stand-in char). */
typedef struct {
    int op;        /* RT_PSTEP_* */
    void *re;      /* pcre2_code * for a Split or ByteLevel with use_regex; NULL otherwise */
    int behavior;  /* RT_SPLIT_* */
    bool prefix_space;
} rt_tok_pstep;

/* An added token's matching flags (tokenizers' AddedToken). */
enum { RT_ADD_LSTRIP = 1, RT_ADD_RSTRIP = 2, RT_ADD_SINGLE_WORD = 4, RT_ADD_NORMALIZED = 8 };
#define RT_TOK_MAX_POST 8

struct rt_tokenizer {
    int source;
    int n_vocab;
    char **piece;       /* [n_vocab] vocabulary strings as in the file, NUL-terminated */
    int32_t *piece_len; /* [n_vocab] */
    char **disp;        /* [n_vocab] text each id decodes to (bytes), NUL-terminated */
    int32_t *disp_len;  /* [n_vocab] */
    float *score;       /* [n_vocab] llama2.c scores; NULL for rank-based merges */
    uint8_t *flags;     /* [n_vocab] RT_TOKF_* */
    int byte_id[256];   /* id of "<0xXX>", -1 if absent */

    int32_t *vmap;      /* piece -> id, open addressing, -1 empty */
    uint32_t vmask;

    uint64_t *pkey;     /* (left << 32 | right) -> merged id + priority */
    int32_t *pmerged;
    double *pprio;      /* lower merges first: rank, or -score */
    uint32_t pmask;
    size_t n_pairs;

    int bos, eos, unk;
    bool add_bos, add_eos;
    bool byte_fallback, fuse_unk, ignore_merges;

    int n_norm;
    rt_tok_step norm[RT_TOK_MAX_STEPS];
    int pretok;
    int n_pstep;                         /* byte-level pipeline (pretok RT_PRE_BYTELEVEL) */
    rt_tok_pstep pstep[RT_TOK_MAX_STEPS];
    char ms_repl[8];                     /* Metaspace replacement (UTF-8) */
    int ms_scheme;
    bool ms_split;

    /* decoder: applied per token to build disp[] */
    int n_dec_replace;
    rt_tok_step dec_replace[RT_TOK_MAX_STEPS];
    bool dec_byte_fallback, dec_bytelevel;
    int strip_lead; /* leading ' ' removed from a whole decode */
    /* SentencePiece (source BIN) without the dummy-prefix ' ' before the
     * text: GGUF tokenizer.ggml.add_space_prefix false (Gemma; llama.cpp's
     * llm_tokenizer_spm adds it only when add_space_prefix). */
    bool no_space_prefix;

    int n_added;        /* added tokens matched whole in the input */
    int32_t *added;     /* [n_added] ids, longest piece first */
    uint8_t *added_flags; /* [n_vocab] RT_ADD_* of added tokens */
    uint8_t added_first[256]; /* first bytes that can start an added token */

    /* TemplateProcessing "single": ids before and after $A (BOS/EOS) */
    int n_post_pre, n_post_suf;
    int32_t post_pre[RT_TOK_MAX_POST], post_suf[RT_TOK_MAX_POST];

    char *hf_json;      /* the original tokenizer.json text (source HF) */
    char *hf_config;    /* tokenizer_config.json text beside it, NULL if none */
    char *chat_template; /* "chat_template" of tokenizer_config.json or GGUF (Jinja), or NULL */
    char *path;          /* the path rt_tokenizer_load was given (for messages), or NULL */
};

/* --- tokenizer.c --------------------------------------------------------- */
rt_status rt_tok_alloc_vocab(rt_tokenizer *t, int n);
/* Copies s[0..len) into piece[id] (replacing any previous one). */
rt_status rt_tok_set_piece(rt_tokenizer *t, int id, const char *s, size_t len);
/* Builds vmap from the pieces (the first id wins for duplicate strings). */
rt_status rt_tok_build_vmap(rt_tokenizer *t);
int rt_tok_lookup(const rt_tokenizer *t, const char *s, size_t len);
/* Adds (left, right) -> merged with priority prio; an existing pair keeps the
 * lower priority. cap_hint sizes the table on first use. */
rt_status rt_tok_pair_add(rt_tokenizer *t, int left, int right, int merged, double prio,
                          size_t cap_hint);
/* Finishes loading: byte_id[], disp[], added-token index. */
rt_status rt_tok_finish(rt_tokenizer *t);
rt_status rt_tok_oom(void);

/* --- tokenizer_load.c / tokenizer/gguf.c -------------------------------- */
/* Loads a tokenizer.json held in memory; takes ownership of `text` (kept as
 * hf_json). `path` names it in messages. */
rt_status rt_tok_load_hf_text(rt_tokenizer *t, const char *path, char *text);
/* Pair table of a scores vocabulary (llama2.c / SentencePiece BPE): every
 * split of a piece into two pieces merges, best score first. */
rt_status rt_tok_pairs_from_scores(rt_tokenizer *t);
/* Loads the tokenizer in a GGUF file's tokenizer.ggml.* metadata. */
rt_status rt_tok_load_gguf(rt_tokenizer *t, const char *path);

/* --- tokenizer_text.c ---------------------------------------------------- */
/* Length (1..4) of the valid UTF-8 sequence at s[0..n), 0 if invalid
 * (overlong, surrogate, > U+10FFFF, truncated). *cp gets the code point. */
int rt_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);
/* Encodes cp into out (>= 4 bytes); returns the length. */
int rt_utf8_encode(uint32_t cp, char *out);
/* Compiles a tokenizer.json Split pattern for PCRE2 (UTF + Unicode
 * properties; JIT when available); literal=true for {"String": ...}. Returns
 * a pcre2_code * or NULL with an RT_EINPUT error naming path and pattern. */
void *rt_tok_regex_compile(const char *path, const char *pattern, bool literal);
void rt_tok_regex_free(void *re);
/* The GPT-2 split pattern (ByteLevel use_regex). */
extern const char RT_GPT2_PATTERN[];
/* GPT-2 bytes_to_unicode(): the code point standing for byte b. */
uint32_t rt_byte_to_unicode(unsigned b);
/* Inverse: the byte for code point cp, -1 if cp is not in the map. */
int rt_unicode_to_byte(uint32_t cp);

/* --- growable byte buffer (tokenizer.c) ---------------------------------- */
typedef struct {
    char *p;
    size_t n, cap;
} rt_tok_buf;
rt_status rt_tok_buf_put(rt_tok_buf *b, const void *s, size_t len);

#endif
