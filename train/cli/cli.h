/* retort — small helpers shared by the subcommands: option parsing and
 * loading a model (+ tokenizer, + adapter) the way every command does. */
#ifndef RT_CLI_H
#define RT_CLI_H

#include <stdbool.h>

#include "train/model/llama.h"
#include "train/tokenizer/tokenizer.h"

/* One "--name VALUE" option (value != NULL) or "--name" flag (flag != NULL). */
typedef struct {
    const char *name;
    const char **value;
    bool *flag;
    const char *help; /* meaning, for --help (may be NULL) */
} rt_cli_opt;

/* Set once --help has printed a command's options: rt_cmd_fail then exits 0
 * without an error line. */
extern bool rt_cli_help_shown;

/* Parses argv[1..argc) (argv[0] is the subcommand). Positional arguments go
 * to pos[0..*n_pos) (at most max_pos). RT_EINPUT for an unknown option, a
 * missing value, or too many positionals. --help / -h prints the options
 * (name, VALUE, help) to stdout, sets rt_cli_help_shown and returns
 * RT_EINPUT so the command stops (rt_cmd_fail then exits 0). */
rt_status rt_cli_parse(int argc, char **argv, const rt_cli_opt *opts, int n_opts,
                       const char **pos, int max_pos, int *n_pos);

/* Parses a number option; RT_EINPUT naming the option when malformed. */
rt_status rt_cli_int(const char *opt, const char *s, long lo, long hi, long *out);
rt_status rt_cli_float(const char *opt, const char *s, double lo, double hi, double *out);

/* Loads --model (HF dir or llama2.c .bin) for inference and its tokenizer
 * (--tokenizer, required for a .bin; else the directory's tokenizer.json),
 * and applies a PEFT adapter directory when `adapter` is not NULL. */
rt_status rt_cli_load(const char *model, const char *tokenizer, const char *adapter,
                      rt_device dev, rt_llama **m, rt_tokenizer **tok);
/* The same with every load option (e.g. load_in_4bit for eval). */
rt_status rt_cli_load_opts(const char *model, const char *tokenizer, const char *adapter,
                           const rt_llama_opts *o, rt_llama **m, rt_tokenizer **tok);

#endif
