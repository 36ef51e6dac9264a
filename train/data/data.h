/* retort — training data: examples, rows, micro-batches and their order.
 *
 * EXAMPLES. An example is a token sequence with a per-token target flag:
 * token k (k >= 1) is a target when the model is trained to predict it from
 * tokens 0..k-1. The first token of an example is never a target. Sources
 * (rt_recipe_dataset.type):
 *
 *   text     the whole file tokenized as one text (BOS if the tokenizer adds
 *            one), cut into windows of sequence_len + 1 tokens that overlap
 *            by one token: window k covers tokens [k*T, k*T + T + 1) with
 *            T = sequence_len, so every token after the first of the file is
 *            a target exactly once. A last window of >= 2 tokens is kept.
 *   jsonl    one JSON object a line; the string under `field` gives
 *            BOS + text + EOS (BOS/EOS when the tokenizer has them), cut into
 *            windows like text when longer than T + 1. Blank lines and
 *            empty texts are skipped.
 *   alpaca   {"instruction", "input" (optional), "output"} a line, rendered
 *            with axolotl's AlpacaPrompter (Stanford Alpaca's templates, github.com/tatsu-lab/
 *            stanford_alpaca train.py PROMPT_DICT, plus a final "\n"), literally:
 *              input empty or missing:
 *                "Below is an instruction that describes a task. Write a
 *                 response that appropriately completes the request.\n\n
 *                 ### Instruction:\n{instruction}\n\n### Response:\n"
 *              otherwise:
 *                "Below is an instruction that describes a task, paired with
 *                 an input that provides further context. Write a response
 *                 that appropriately completes the request.\n\n
 *                 ### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n
 *                 ### Response:\n"
 *            (each template is one line of text; the line breaks above are
 *            only for this comment, the "\n" are the real newlines).
 *            Tokens = BOS + encode(prompt) [targets off, labels -100] +
 *            encode(output) + EOS [targets on], truncated to T + 1 tokens;
 *            an example left with no target (prompt too long) is dropped.
 *            Prompt and response are encoded SEPARATELY and concatenated so
 *            that no BPE merge spans the prompt/response boundary: the
 *            prompt tokens are then exactly what `generate` feeds the model
 *            for the same prompt, and every response token is a whole target
 *            (one merged token half prompt, half response could be neither
 *            masked nor trained correctly). A SentencePiece tokenizer adds
 *            its dummy-prefix space to the response, so decoding the example
 *            gives "<prompt> <output>".
 *            With train_on_inputs (recipe) the prompt tokens are targets too.
 *            The prompt is axolotl's AlpacaPrompter text, which ends
 *            "### Response:\n" (Stanford's ends without the newline).
 *   completion   axolotl's: as jsonl (`field`, default "text", all trained).
 *   input_output axolotl's: {"segments": [{"text", "label"}]} a line: BOS
 *            (untrained, where the tokenizer adds one), then each segment
 *            encoded on its own, trained when label is true (default true);
 *            no EOS added. Truncated to T + 1, dropped without a target.
 *   chat_template / sharegpt   axolotl's: the list under field_messages
 *            (default "messages"; sharegpt "conversations") of messages whose
 *            role/content sit under message_property_mappings.role/.content
 *            (default role/content; sharegpt from/value, with human/gpt
 *            roles), rendered with the recipe's chat_template (default the
 *            tokenizer's own) and labelled as train/tokenizer/chat_template.h
 *            MASKING says, with roles_to_train and train_on_eos;
 *            train_on_inputs trains every token. A chat_template line without
 *            the list but with alpaca fields (instruction, input, output) is
 *            read as [user: instruction ("\n\n" input), assistant: output].
 *            Truncated to T + 1, dropped when no target is left.
 *   teacher_generate   skipped by rt_data_load (the distillation code makes
 *            those texts and adds them with rt_dataset_add_text).
 *
 * Files must be valid UTF-8. Errors (RT_EINPUT, one line naming the file):
 * missing/unreadable file, invalid UTF-8 ("path: invalid UTF-8 at byte
 * offset N (line L)"), a malformed JSON line or a line that is not an object
 * ("path:N: malformed JSON"), a missing or non-string field ("path:N: no
 * string field \"text\""), a file that gives no example ("path: no examples
 * ..."), tokenizer failures prefixed with "path:" (and ":N" for jsonl).
 *
 * SHARDS. An entry with shards > 1 keeps only its examples (after
 * windowing) of contiguous shard shards_idx, as Hugging Face datasets'
 * Dataset.shard(shards, shards_idx, contiguous=True): of n examples, shard
 * i starts at (n / shards) * i + min(i, n % shards) and the first
 * n % shards shards hold one more. The split below applies afterwards.
 *
 * VALIDATION SPLIT. test_datasets, when given, are loaded as the validation
 * set. Otherwise val_set_size examples of `datasets` (after windowing) are
 * held out: a fraction f < 1 holds out ceil(f * n) (as Hugging Face
 * datasets' train_test_split), at most n - 1; a count c >= 1 holds out
 * floor(c) and must be < n. The held-out examples are the first ones of a
 * permutation seeded with the recipe's seed, so the split is the same on
 * every run and every rank; both sets keep the file order.
 *
 * ROWS. A row is what one sample of a micro-batch is made of. Without
 * sample_packing a row is one example. With sample_packing the examples, in
 * a permutation seeded with the recipe's seed (the validation set: in order),
 * are packed greedily (next-fit) into rows of <= T + 1 tokens; each example
 * of a row is its own segment (attention stays inside it), positions restart
 * at 0 for each example and no label crosses an example boundary.
 *
 * MICRO-BATCH [B = micro_batch_size, T = sequence_len], all int32, row-major
 * [b*T + t]: ids = row token t; labels = row token t+1 when that token is a
 * target of the same example, else -100; pos = position of token t inside its
 * example; seg = index of its example inside the row (0, 1, ...). Unused tail:
 * ids 0, labels -100, pos 0, seg -1 (padding is its own segment).
 *
 * ORDER (data parallel; identical on every rank, no communication). Epoch e
 * visits the train rows in a permutation perm_e seeded with (seed, e). An
 * optimizer step s takes G = micro_batch_size * grad_accum * world_size
 * samples: sample i of micro-step m on rank r is stream position
 *     p = s*G + (m*world_size + r)*micro_batch_size + i,
 * which is row perm_e[p % n_rows] with e = p / n_rows. So 1 rank with
 * accumulation 2 and 2 ranks with accumulation 1 see the same samples in the
 * same step. The last step of an epoch may run into the next epoch.
 * Permutations are a keyed Feistel network with cycle walking (a bijection on
 * [0, n) computed per index in O(1), so batches need no per-epoch state).
 */
#ifndef RT_DATA_H
#define RT_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/error.h"
#include "train/recipe.h"
#include "train/tokenizer/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RT_LABEL_IGNORE (-100) /* PyTorch CrossEntropyLoss ignore_index */

/* Examples and the rows built from them; owned, freed with rt_dataset_free. */
typedef struct rt_dataset rt_dataset;

/* Loads every non-teacher_generate entry of r->datasets (in order) and
 * r->test_datasets, splits off the validation set and builds the rows (see
 * above), using r->sequence_len, r->sample_packing, r->val_set_size and
 * r->seed. On success *train and *val are owned by the caller (both
 * non-NULL; *val may have 0 rows; *train has 0 rows only when every entry of
 * r->datasets is teacher_generate). Errors: RT_EINPUT for bad data (see
 * above) or an impossible split, RT_EINTERNAL on OOM; *train and *val are
 * NULL on error. */
rt_status rt_data_load(const rt_recipe *r, const rt_tokenizer *tok, rt_dataset **train,
                       rt_dataset **val);

/* An empty dataset for rows of <= seq_len + 1 tokens (packed when
 * sample_packing, in an order seeded with seed). *out owned by the caller.
 * Errors: RT_EINPUT when seq_len < 1, RT_EINTERNAL on OOM. */
rt_status rt_dataset_new(int seq_len, bool sample_packing, uint64_t seed, rt_dataset **out);

/* Adds len bytes of UTF-8 `text` as jsonl-like examples (BOS + text + EOS,
 * cut into windows of seq_len + 1 tokens overlapping by one) and rebuilds
 * the rows (O(examples) per call). seq_len must be the dataset's. An empty
 * text adds nothing. Errors: RT_EINPUT for invalid UTF-8 (the tokenizer's
 * message), RT_EINTERNAL for a seq_len mismatch or OOM (d unchanged then). */
rt_status rt_dataset_add_text(rt_dataset *d, const rt_tokenizer *tok, const char *text,
                              size_t len, int seq_len);

/* Number of rows, examples and target tokens (labels that are not -100). */
int64_t rt_dataset_rows(const rt_dataset *d);
int64_t rt_dataset_examples(const rt_dataset *d);
int64_t rt_dataset_targets(const rt_dataset *d);
/* The dataset's sequence_len T. */
int rt_dataset_seq_len(const rt_dataset *d);

/* Read-only view of example i (0 <= i < rt_dataset_examples): *tokens and
 * *targets (1 = target) hold n entries, valid until the dataset changes. */
void rt_dataset_example(const rt_dataset *d, int64_t i, const int32_t **tokens,
                        const uint8_t **targets, int64_t *n);

void rt_dataset_free(rt_dataset *d); /* NULL-safe */

/* One micro-batch (layout above). Arrays owned by the batch. */
typedef struct {
    int B, T;
    int32_t *ids, *labels, *pos, *seg; /* [B*T] each */
    int64_t n_targets;                 /* labels != -100 in this batch */
} rt_batch;

/* Allocates the four [B*T] arrays (zeroed). Errors: RT_EINPUT for B or T
 * < 1, RT_EINTERNAL on OOM (b left freeable). */
rt_status rt_batch_alloc(rt_batch *b, int B, int T);
void rt_batch_free(rt_batch *b); /* frees the arrays, zeroes b; NULL-safe */

/* Who takes which samples (see ORDER above). */
typedef struct {
    int micro_batch_size; /* B >= 1 */
    int grad_accum;       /* micro-steps per optimizer step >= 1 */
    int world_size;       /* ranks >= 1 */
    int rank;             /* 0 <= rank < world_size */
    uint64_t seed;        /* the recipe's seed */
} rt_data_plan;

/* The plan of rank `rank` of `world_size` from r's micro_batch_size,
 * gradient_accumulation_steps and seed. */
rt_data_plan rt_data_plan_from_recipe(const rt_recipe *r, int world_size, int rank);

/* G = micro_batch_size * grad_accum * world_size: samples per optimizer step. */
int64_t rt_data_global_batch(const rt_data_plan *p);

/* Fills `out` (B = p->micro_batch_size, T = the dataset's seq_len) with
 * micro-step `micro` (0 <= micro < grad_accum) of optimizer step `step`
 * (>= 0) on rank p->rank. Errors: RT_EINPUT when d has no rows, RT_EINTERNAL
 * for a bad plan, step, micro or batch shape. */
rt_status rt_data_train_batch(const rt_dataset *d, const rt_data_plan *p, int64_t step,
                              int micro, rt_batch *out);

/* Number of target tokens in the whole global batch of step `step` (every
 * micro-step of every rank): the same value on every rank, computed locally.
 * The trainer divides the summed token loss by it so that the step loss is
 * the mean over all its tokens. 0 for an empty dataset or a bad plan. */
int64_t rt_data_step_targets(const rt_dataset *d, const rt_data_plan *p, int64_t step);

/* Optimizer steps to run: max_steps when > 0, else
 * ceil(num_epochs * rows / G) (0 for an empty dataset). */
int64_t rt_data_total_steps(const rt_dataset *d, const rt_data_plan *p, double num_epochs,
                            int max_steps);

/* Fills `out` (any B >= 1, T = the dataset's seq_len) with rows
 * first_row .. first_row + B - 1 in dataset order (for evaluation; works on
 * any dataset); rows past the end are padding. Errors: RT_EINTERNAL for a
 * negative first_row or a batch shape mismatch. */
rt_status rt_data_val_batch(const rt_dataset *d, int64_t first_row, rt_batch *out);

/* Renders the Alpaca prompt (templates above) into a malloc'd NUL-terminated
 * string (caller frees); input may be NULL or "" for the no-input template.
 * Errors: RT_EINTERNAL on OOM (*out NULL). */
rt_status rt_data_alpaca_prompt(const char *instruction, const char *input, char **out);

#ifdef __cplusplus
}
#endif
#endif
