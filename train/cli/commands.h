/* retort — the CLI's subcommands. Each takes the arguments after its name
 * (argv[0] is the subcommand name) and returns the process exit status:
 * 0 success, 2 bad input (the message already printed as
 * "retort: error: ..."), 1 internal failure. Only train/cli/main.c calls them. */
#ifndef RT_COMMANDS_H
#define RT_COMMANDS_H

#include "dist/dist.h"
#include "train/recipe.h"

int rt_cmd_finetune(int argc, char **argv);
int rt_cmd_distill(int argc, char **argv);
int rt_cmd_eval(int argc, char **argv);
int rt_cmd_generate(int argc, char **argv);
int rt_cmd_merge(int argc, char **argv);
int rt_cmd_quantize(int argc, char **argv);
int rt_cmd_convert(int argc, char **argv);
int rt_cmd_tokenize(int argc, char **argv);
int rt_cmd_export(int argc, char **argv);

/* Prints "retort: error: <rt_error_message()>" to stderr and returns the
 * status as an exit code (for use as `return rt_cmd_fail(st);`). */
int rt_cmd_fail(int status);

/* The body of a recipe command (finetune, distill) under mpirun or not:
 * start dist/, load and validate the recipe with its overrides, run `job`;
 * an error on any rank ends the whole job with that rank's message. Returns
 * the exit status. */
int rt_recipe_main(int argc, char **argv, rt_status (*job)(rt_recipe *r, rt_dist *d));

#endif
