/* retort — BPE tokenizers for Llama-family models (and GPT-2).
 *
 * Three on-disk forms load into one rt_tokenizer:
 *
 *  1. llama2.c `tokenizer.bin` (https://github.com/karpathy/llama2.c,
 *     tokenizer.py export / run.c build_tokenizer): int32 max_token_length,
 *     then per token: float32 score, int32 len, len bytes (no NUL). BOS=1,
 *     EOS=2, unk=0; byte-fallback pieces "<0x00>".."<0xFF>"; spaces are ' '
 *     (SentencePiece's U+2581 '▁' was replaced on export). Encoding follows
 *     run.c encode(): dummy-prefix " " when the text is non-empty, each code
 *     point looked up whole or as byte tokens, then repeatedly merge the
 *     adjacent pair whose concatenation is a piece with the highest score
 *     (leftmost on ties).
 *
 *  2. Hugging Face `tokenizer.json` (https://github.com/huggingface/tokenizers)
 *     with model "BPE" (merges by rank, leftmost on ties, as tokenizers'
 *     Word::merge_all; byte_fallback, unk/fuse_unk, ignore_merges). Supported
 *     pipeline parts (anything else is an RT_EINPUT error naming it):
 *       pre_tokenizer: null, Sequence, ByteLevel, Metaspace, Digits, Split
 *                      (regex or string pattern; see below)
 *       decoder:       null, Sequence, Replace, ByteFallback, Fuse,
 *                      Strip (leading spaces of the whole text), ByteLevel,
 *                      Metaspace
 *       normalizer:    null, Sequence, Prepend, Replace (String pattern),
 *                      NFC, NFD, NFKC, NFKD (GNU libunistring's u8_normalize)
 *       post_processor: null, Sequence, ByteLevel (offsets only),
 *                      TemplateProcessing ("single": special tokens before
 *                      $A are added as BOS, after it as EOS)
 *     `added_tokens` are matched before normalization (normalized=false) or in
 *     the normalized text (normalized=true), leftmost-longest, as tokenizers'
 *     AddedVocabulary: lstrip/rstrip swallow the whitespace beside a match,
 *     single_word matches only with no letter/digit/'_' on either side.
 *     `tokenizer_config.json` beside the file (add_bos_token, add_eos_token,
 *     bos_token, eos_token, chat_template) overrides the template's BOS/EOS.
 *
 *  3. OpenAI GPT-2 `encoder.json` + `vocab.bpe` (same directory):
 *     byte-level BPE, <|endoftext|> (50256) as BOS and EOS, no BOS added.
 *
 *  4. A GGUF file's tokenizer.ggml.* metadata (llama.cpp llama-vocab.cpp;
 *     train/tokenizer/gguf.c): model "gpt2" is byte-level BPE (tokens,
 *     merges "a b" by rank, token_type CONTROL/USER_DEFINED as added tokens,
 *     CONTROL ones special), built as the equivalent tokenizer.json, with the
 *     pre-tokenizer named by tokenizer.ggml.pre from a small table; model
 *     "llama" is SentencePiece BPE (tokens with U+2581, scores, BYTE tokens)
 *     encoded like form 1. bos/eos/unk ids, add_bos_token and
 *     tokenizer.chat_template are kept.
 *
 * Split pre-tokenizers (Llama 3's and Qwen's patterns, GPT-2's regex inside
 * ByteLevel use_regex) run through PCRE2 with Unicode properties (\p{L},
 * \p{N}, \s = White_Space); behaviors Isolated, Removed, MergedWithPrevious,
 * MergedWithNext. Each Split runs on each piece of the previous step alone,
 * as in tokenizers. Digits is the Split of \p{N} (individual_digits) or
 * \p{N}+, Isolated.
 *
 * Input text must be valid UTF-8 (RT_EINPUT naming the byte offset otherwise).
 */
#ifndef RT_TOKENIZER_H
#define RT_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rt_tokenizer rt_tokenizer;

/* Loads a tokenizer. `path` may be: a tokenizer.json file; a directory with
 * tokenizer.json (+ optional tokenizer_config.json); a llama2.c tokenizer.bin;
 * a GPT-2 encoder.json file (vocab.bpe must sit beside it) or a directory
 * holding both. On success *out is owned by the caller (rt_tokenizer_free).
 * Errors: RT_EINPUT for a missing/unreadable/malformed file or an unsupported
 * tokenizer feature (message names the path and the problem); RT_EINTERNAL
 * on out-of-memory. *out is NULL on error. */
rt_status rt_tokenizer_load(const char *path, rt_tokenizer **out);

/* Frees everything (NULL is fine). */
void rt_tokenizer_free(rt_tokenizer *t);

/* Number of token ids (max id + 1). */
int rt_tokenizer_vocab_size(const rt_tokenizer *t);

/* BOS / EOS ids, -1 if the tokenizer has none. */
int rt_tokenizer_bos(const rt_tokenizer *t);
int rt_tokenizer_eos(const rt_tokenizer *t);

/* Whether the model expects BOS at the start of a sequence (Llama: true,
 * GPT-2: false). Callers pass this as encode's add_bos by default. */
bool rt_tokenizer_adds_bos(const rt_tokenizer *t);

/* Encodes len bytes of UTF-8 `text` (NUL not required) into token ids.
 * *ids is malloc'd (never NULL on success, even for n_ids == 0), caller
 * frees. add_bos prepends BOS if the tokenizer has one. EOS is never added.
 * Errors: RT_EINPUT for invalid UTF-8 ("invalid UTF-8 at byte offset N") or a
 * character with no token, no byte fallback and no unk; RT_EINTERNAL on OOM. */
rt_status rt_tokenizer_encode(const rt_tokenizer *t, const char *text, size_t len, bool add_bos,
                              int32_t **ids, size_t *n_ids);

/* Decodes n ids to a malloc'd NUL-terminated string (caller frees). Special
 * tokens (BOS/EOS/unk and other special added tokens) produce no text;
 * SentencePiece-style vocabularies map '▁' to ' ' and drop the single leading
 * space of the result (HF's Strip decoder / SentencePiece); byte pieces
 * "<0xXX>" and byte-level characters become raw bytes (so the result may hold
 * any bytes, including invalid UTF-8 for partial sequences).
 * decode(encode(x)) == x for text without special-token strings.
 * Errors: RT_EINPUT for an id outside [0, vocab_size); RT_EINTERNAL on OOM. */
rt_status rt_tokenizer_decode(const rt_tokenizer *t, const int32_t *ids, size_t n, char **text);

/* Streaming form of decode, as llama2.c run.c's decode(prev, id): the bytes
 * to print for `id` following `prev`. Right after BOS (prev == BOS) a leading
 * space is dropped (SentencePiece-style vocabularies only); "<0xXX>" gives the
 * raw byte; special tokens and out-of-range ids give "" (run.c would print
 * the piece text of specials). Returns a pointer into the tokenizer (valid
 * until rt_tokenizer_free) or into buf; never NULL. A piece for byte 0x00 is
 * the empty string. */
const char *rt_tokenizer_piece(const rt_tokenizer *t, int prev, int id, char buf[8]);

/* Adds the tokenizer as GGUF tokenizer.ggml.* metadata to a GGUF writer
 * (train/formats/gguf.h): a llama2.c tokenizer.bin as model "llama" (tokens
 * with U+2581 for spaces, scores, token_type); a byte-level BPE
 * tokenizer.json as model "gpt2" (its vocabulary strings, token_type, merges,
 * tokenizer.ggml.pre named from its pre_tokenizer), as llama.cpp's
 * convert_hf_to_gguf.py does; both with the special ids, add_bos_token and
 * the chat template. RT_EINPUT for others (e.g. a pre_tokenizer GGUF has no
 * name for). */
typedef struct rt_gguf_writer rt_gguf_writer;
rt_status rt_tokenizer_gguf_meta(const rt_tokenizer *t, rt_gguf_writer *w);

/* The model's chat template (Jinja source) from tokenizer_config.json or
 * GGUF tokenizer.chat_template, or NULL. Owned by the tokenizer. */
const char *rt_tokenizer_chat_template(const rt_tokenizer *t);

/* The path the tokenizer was loaded from (as given to rt_tokenizer_load),
 * for messages; "(tokenizer)" when it was made otherwise. Owned by t. */
const char *rt_tokenizer_path(const rt_tokenizer *t);

/* Id of the vocabulary or added-token string s (exact bytes), -1 if none. */
int rt_tokenizer_token_id(const rt_tokenizer *t, const char *s);

/* As rt_tokenizer_token_id, and also a special token whose stored piece is s
 * wrapped in newlines/spaces (llama2.c's "\n<s>\n"). -1 if none. */
int rt_tokenizer_special_id(const rt_tokenizer *t, const char *s);

/* Writes `dir`/tokenizer.json, tokenizer_config.json, special_tokens_map.json
 * and generation_config.json (bos_token_id, eos_token_id) (dir must
 * exist). For a llama2.c vocabulary this is a Llama-2-style BPE tokenizer.json:
 * pieces with '▁', byte_fallback, the Prepend/Replace normalizer and the
 * Replace/ByteFallback/Fuse/Strip decoder, and merges derived from the scores
 * as transformers' SentencePieceExtractor does (every split of a piece into
 * two vocabulary pieces; ordered by the merged piece's score, descending, then
 * by piece id, left id, right id). A GPT-2 vocabulary is written as a
 * byte-level BPE tokenizer.json; a loaded tokenizer.json and its
 * tokenizer_config.json are copied verbatim. A written tokenizer_config.json
 * holds add_bos_token, add_eos_token, bos_token, eos_token, unk_token. The
 * TemplateProcessing written has "single" and "pair" (HF tokenizers needs
 * both). Reloading gives the same ids.
 * Errors: RT_EINPUT if a file cannot be written (message names it). */
rt_status rt_tokenizer_save_hf(const rt_tokenizer *t, const char *dir);

#ifdef __cplusplus
}
#endif
#endif
