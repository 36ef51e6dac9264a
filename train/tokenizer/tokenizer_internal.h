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
enum { RT_NORM_PREPEND, RT_NORM_REPLACE };                 /* normalizer step */
enum { RT_MS_ALWAYS, RT_MS_FIRST, RT_MS_NEVER };           /* Metaspace prepend_scheme */

#define RT_TOK_MAX_STEPS 8

/* A string step: Prepend(a) or Replace(a -> b). Strings are owned. */
typedef struct {
    int op;
    char *a, *b;
    size_t alen, blen;
} rt_tok_step;

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
    bool bl_prefix_space, bl_regex;      /* ByteLevel */
    bool split_digits;                   /* Digits(individual_digits) before ByteLevel */
    char ms_repl[8];                     /* Metaspace replacement (UTF-8) */
    int ms_scheme;
    bool ms_split;

    /* decoder: applied per token to build disp[] */
    int n_dec_replace;
    rt_tok_step dec_replace[RT_TOK_MAX_STEPS];
    bool dec_byte_fallback, dec_bytelevel;
    int strip_lead; /* leading ' ' removed from a whole decode */

    int n_added;        /* added tokens matched whole in the input */
    int32_t *added;     /* [n_added] ids, longest piece first */
    uint8_t added_first[256]; /* first bytes that can start an added token */

    char *hf_json;      /* the original tokenizer.json text (source HF) */
    char *chat_template; /* Jinja chat template (GGUF tokenizer.chat_template) or NULL */
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
/* End offset of the GPT-2 regex match starting at s[i] (s valid UTF-8, i < n). */
size_t rt_gpt2_split_next(const char *s, size_t n, size_t i);
/* \p{N} (the table's approximation), as the GPT-2 regex uses it. */
bool rt_tok_is_number(uint32_t cp);
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
