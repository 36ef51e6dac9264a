/* retort — chat templates: rendering conversations as a model's chat template
 * does, and labelling which tokens are trained.
 *
 * Hugging Face models carry their chat template as Jinja source
 * (tokenizer_config.json "chat_template"). Debian packages no C Jinja engine
 * (apt-cache search jinja: only Python's jinja2, Rust's tera and R's jinjar),
 * so retort RECOGNISES the common families in the source and renders them
 * with the code below, written to give the same text as
 * transformers' apply_chat_template on that template:
 *
 *   llama3   <|begin_of_text|> then per message
 *            "<|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|>";
 *            generation prompt "<|start_header_id|>assistant<|end_header_id|>\n\n"
 *            (early Llama 3 templates append it unconditionally: recognised
 *            by the absence of add_generation_prompt in the source).
 *            Llama 3.1-3.3 templates ("Cutting Knowledge Date" in the source)
 *            always open with a system turn "Cutting Knowledge Date: December
 *            2023\nToday Date: {date}\n\n{system|trim}": date is the
 *            template's date_string default ("26 Jul 2024"), or today's
 *            "%d %b %Y" where it calls strftime_now (Llama 3.2), as rendered
 *            by transformers; tools (Environment: ipython) are not supported.
 *   chatml   "<|im_start|>{role}\n{content}<|im_end|>\n" (Qwen2.5, SmolLM2: a
 *            default system message in the template, "<|im_start|>system\n..."
 *            as a literal, is rendered when the conversation has none);
 *            generation prompt "<|im_start|>assistant\n".
 *   qwen3    chatml, and the assistant message after the last user message
 *            that ends the conversation gets "<think>\n\n</think>\n\n"
 *            before its content (Qwen3's template, no reasoning_content).
 *   mistral  <s> then "[INST] {user} [/INST]{assistant}</s>"; a system message
 *            is prepended to the first user message with "\n\n" (Mistral v1;
 *            the v3/Tekken templates without the spaces, such as
 *            Mistral-Nemo's, are not recognised).
 *   llama2   per user turn "<s>[INST] {user|trim} [/INST]", assistant
 *            " {content|trim} </s>"; a system message goes into the first user
 *            turn as "<<SYS>>\n{system}\n<</SYS>>\n\n".
 *   gemma    <bos> then "<start_of_turn>{user|model}\n{content|trim}<end_of_turn>\n";
 *            a system message is prepended to the first user turn with "\n\n"
 *            (Gemma 3); a template that raises "System role not supported"
 *            (Gemma 2) makes a system message an RT_EINPUT error, as it is there.
 *   phi_3    "<|{role}|>\n{content}<|end|>\n", then eos_token when no
 *            generation prompt, else "<|assistant|>\n".
 * A template that matches none of them is an RT_EINPUT error listing these
 * names (name one with the recipe's chat_template key instead).
 *
 * MASKING (axolotl's chat_template dataset): a message's content is trained
 * when its role is in roles_to_train (default: assistant); its end-of-turn
 * token(s) (<|eot_id|>, <|im_end|>, </s>, <end_of_turn>, <|end|>) follow
 * train_on_eos: "turn" (when the content is trained; default), "all", "last"
 * (only the last trained message's) or "none". Headers, BOS and the text
 * between turns are never trained.
 *
 * TOKENIZATION: the whole rendering is encoded at once (so the ids are what
 * apply_chat_template(tokenize=True) gives); each token's label comes from
 * the part of the text its first byte lies in (a SentencePiece dummy-prefix
 * space on the first token is skipped). When the tokenizer's pieces do not
 * concatenate back to the text (a normalizer that changes it), the parts are
 * encoded one by one and concatenated instead.
 */
#ifndef RT_CHAT_TEMPLATE_H
#define RT_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/error.h"
#include "train/tokenizer/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    RT_CHAT_LLAMA3 = 0,
    RT_CHAT_CHATML,
    RT_CHAT_QWEN3,
    RT_CHAT_MISTRAL,
    RT_CHAT_LLAMA2,
    RT_CHAT_GEMMA,
    RT_CHAT_PHI3,
    RT_CHAT_N_FAMILIES
} rt_chat_family;

/* Role bits for roles_to_train. */
enum { RT_ROLE_SYSTEM = 1, RT_ROLE_USER = 2, RT_ROLE_ASSISTANT = 4, RT_ROLE_TOOL = 8 };

/* train_on_eos values. */
typedef enum { RT_EOS_TURN = 0, RT_EOS_ALL, RT_EOS_LAST, RT_EOS_NONE } rt_chat_eos;

typedef struct {
    int family;            /* rt_chat_family */
    bool gen_prompt_always; /* llama3: the template always appends the assistant header */
    char *default_system;  /* chatml: the template's default system message, or NULL */
    bool no_system;        /* the template refuses a system message (Gemma 2) */
    char *llama_date;      /* llama3 (3.1+): "Today Date" of the system header, or NULL (none) */
} rt_chat_template;

/* One message; role is "system", "user", "assistant" or "tool" (sharegpt's
 * "human"/"gpt" and Gemma's "model" are accepted as user/assistant). */
typedef struct {
    const char *role;
    const char *content;
} rt_chat_msg;

/* The family names, comma separated ("llama3, chatml, ..."). */
const char *rt_chat_template_names(void);

/* Resolves a template: `name` empty, NULL or "tokenizer_default" recognises
 * tok's own chat_template; "tokenizer_default_fallback_<name>" recognises it
 * or else uses <name>; a family name (or axolotl's aliases qwen_25 ->
 * chatml with Qwen's default system message, mistral_v1 -> mistral) selects
 * it. Errors: RT_EINPUT when the tokenizer has no template or it is not
 * recognised, or the name is unknown (the message lists the names), or when
 * tok lacks one of the family's turn markers as a single token (llama3
 * <|start_header_id|> <|end_header_id|> <|eot_id|>; chatml/qwen3 <|im_start|>
 * <|im_end|>; gemma <start_of_turn> <end_of_turn>; phi_3 <|system|> <|user|>
 * <|assistant|> <|end|>; none for mistral/llama2, whose [INST] is text) or
 * the BOS/EOS string the family renders (llama3, mistral, llama2, gemma:
 * BOS; mistral, llama2, phi_3: EOS; a llama2.c tokenizer.bin matches no
 * special string in text), naming the marker and rt_tokenizer_path(tok).
 * *out is
 * owned by the caller (rt_chat_template_clear). */
rt_status rt_chat_template_get(const char *name, const rt_tokenizer *tok, rt_chat_template *out);
void rt_chat_template_clear(rt_chat_template *ct);

/* Maps a role string to its RT_ROLE_* bit; 0 if unknown. */
int rt_chat_role_bit(const char *role);

/* Renders n messages as the template does (add_generation_prompt as given)
 * into a malloc'd NUL-terminated *text (*len bytes). BOS/EOS/end-of-turn
 * strings are the tokenizer's own token strings (bos/eos) or the family's
 * literal markers. Errors: RT_EINPUT for an unknown role (naming it and the
 * message index), RT_EINTERNAL on OOM. */
rt_status rt_chat_render(const rt_chat_template *ct, const rt_tokenizer *tok, const rt_chat_msg *m,
                         int n, bool add_generation_prompt, char **text, size_t *len);

/* Renders (add_generation_prompt false) and encodes n messages; *ids and
 * *trained (1 = the token is trained, see MASKING) hold *n_ids entries,
 * malloc'd, caller frees both. roles is a mask of RT_ROLE_* bits.
 * Errors: as rt_chat_render and rt_tokenizer_encode. */
rt_status rt_chat_encode(const rt_chat_template *ct, const rt_tokenizer *tok, const rt_chat_msg *m,
                         int n, unsigned roles, rt_chat_eos train_on_eos, int32_t **ids,
                         uint8_t **trained, size_t *n_ids);

/* Messages from a JSON array of objects (cJSON *): role under role_key,
 * content under content_key (NULL keys: "role", "content"). *out is a
 * malloc'd array of n entries pointing INTO the JSON (valid while it lives).
 * Errors: RT_EINPUT "message N: ..." for a non-array, a non-object entry, a
 * missing/non-string role or content, or an unknown role. */
struct cJSON;
rt_status rt_chat_msgs_from_json(const struct cJSON *arr, const char *role_key, const char *content_key,
                                 rt_chat_msg **out, int *n);

/* The token id that ends an assistant turn for this template (for stopping
 * generation), -1 when the tokenizer has no single token for it. */
int rt_chat_end_of_turn(const rt_chat_template *ct, const rt_tokenizer *tok);

#ifdef __cplusplus
}
#endif
#endif
