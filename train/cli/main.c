/* retort — the command-line entry point: dispatches to a subcommand
 * (train/commands.h). The only place that exits. */
#include <stdio.h>
#include <string.h>

#include "kernels/error.h"
#include "train/cli/commands.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage;
} command;

static const command commands[] = {
    {"finetune", rt_cmd_finetune, "RECIPE.yaml [key=value ...] [--device D]   QLoRA/LoRA fine-tune, writes a PEFT adapter"},
    {"distill", rt_cmd_distill, "RECIPE.yaml [key=value ...] [--device D]    distill a student from a teacher"},
    {"eval", rt_cmd_eval, "--model M [--tokenizer T] --data FILE [--seq-len N] [--stride S] [--type T] [--adapter DIR] [--device D] [--json] [--load-in-4bit] [--dump-logits FILE]"},
    {"generate", rt_cmd_generate, "--model M [--tokenizer T] --prompt TEXT|--prompts FILE [--chat [--system S]] [--max-new-tokens N] [--temperature T] [--top-p P] [--top-k K] [--repetition-penalty R] [--stop STR] [--seed S] [--adapter DIR] [--device D]"},
    {"merge", rt_cmd_merge, "--model M --adapter DIR --out DIR   fold a LoRA adapter into the weights"},
    {"quantize", rt_cmd_quantize, "--model M [--tokenizer T] --out DIR   write NF4 weights (bitsandbytes layout)"},
    {"convert", rt_cmd_convert, "llama2c IN.bin --tokenizer TOK.bin --out DIR | gguf IN.gguf --out DIR   to an HF directory"},
    {"tokenize", rt_cmd_tokenize, "--tokenizer FILE [--decode] [--no-bos] [--chat [--text] [--labels]]   ids of stdin text (or text of ids)"},
    {"export", rt_cmd_export, "gguf-lora|gguf|gguf-tensors ...   llama.cpp GGUF adapter/model (retort export: usage)"},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f, "retort %s — fine-tune and distill language models (QLoRA, KD) in one binary\n\n",
            RETORT_VERSION);
    fprintf(f, "usage: retort <command> [options]\n\ncommands:\n");
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].usage);
    fprintf(f, "\n  retort <command> --help   the command's options\n  retort --help | --version\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("retort %s\n", RETORT_VERSION);
        return 0;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "retort: error: unknown command '%s' (see retort --help)\n", argv[1]);
    return 2;
}
