/* generate's options (top_k, repetition_penalty, stop, escapes, prompts
 * file, --chat) on stories260K, and --help of every subcommand. */
#include <stdbool.h>

#include "tests/cli_util.h"

static char bin[600], tok[600];

static char *gen(const char *extra, int *rc) {
    const char *out = rt_tmp("gen.out");
    *rc = rt_run(out, NULL, "generate --model %s --tokenizer %s --max-new-tokens 40 --seed 7 %s", bin, tok, extra);
    return rt_slurp(out, NULL);
}

int main(void) {
    snprintf(bin, sizeof bin, "%s", rt_test_shared("models/stories260K/stories260K.bin"));
    snprintf(tok, sizeof tok, "%s", rt_test_shared("models/stories260K/tok512.bin"));
    int rc;
    char *greedy = gen("--prompt 'Once upon a time' --temperature 0", &rc);
    CHECK(rc == 0 && greedy && !strncmp(greedy, "Once upon a time", 16), "greedy runs");
    /* top-k 1 sampling at temperature 1 is greedy decoding */
    char *top1 = gen("--prompt 'Once upon a time' --temperature 1 --top-k 1", &rc);
    CHECK(rc == 0 && top1 && greedy && !strcmp(top1, greedy), "top-k 1 == greedy:\n%s\n%s", top1, greedy);
    /* a repetition penalty changes a greedy text that repeats tokens */
    char *rep = gen("--prompt 'Once upon a time' --temperature 0 --repetition-penalty 2.0", &rc);
    CHECK(rc == 0 && rep && greedy && strcmp(rep, greedy) != 0, "repetition penalty changes the output");
    /* --stop: the output ends at the first '.' after the prompt */
    char *st = gen("--prompt 'Once upon a time' --temperature 0 --stop .", &rc);
    const char *dot = st ? strchr(st + 16, '.') : NULL;
    CHECK(rc == 0 && dot && !strcmp(dot, ".\n") && greedy && !strncmp(st, greedy, (size_t)(dot - st + 1)),
          "stop at '.': %s", st ? st : "");
    /* escapes in --prompt */
    char *esc = gen("--prompt 'Lily\\nran' --temperature 0 --max-new-tokens 1", &rc);
    CHECK(rc == 0 && esc && !strncmp(esc, "Lily\nran", 8), "\\n in --prompt is a newline");
    /* prompts from a file: one output line per prompt line */
    const char *pf = rt_tmp("prompts.txt");
    rt_spit(pf, "Once upon a time\nThe dog\n", 25);
    char extra[700];
    snprintf(extra, sizeof extra, "--prompts %s --temperature 0 --stop .", pf);
    char *two = gen(extra, &rc);
    CHECK(rc == 0 && two && !strncmp(two, "Once upon a time", 16) && strstr(two, "\nThe dog"), "prompts file: %s",
          two ? two : "");
    /* --chat with a template whose markers stories260K's tokenizer lacks: an error naming the marker */
    char *chat = gen("--prompt Hi --chat --chat-template chatml --system 'Be brief.' --temperature 0", &rc);
    CHECK(rc == 2, "--chat-template chatml on tok512.bin (no <|im_start|> token): exit %d", rc);
    free(gen("--prompt Hi --chat", &rc));
    CHECK(rc == 2, "--chat without a template on a tokenizer that has none: exit 2");
    free(greedy), free(top1), free(rep), free(st), free(esc), free(two), free(chat);

    static const char *const cmds[] = {"finetune", "distill", "eval", "generate", "merge", "quantize", "convert",
                                       "tokenize"};
    const char *out = rt_tmp("help.out");
    for (int i = 0; i < 8; i++) {
        rc = rt_run(out, NULL, "%s --help", cmds[i]);
        char *h = rt_slurp(out, NULL);
        CHECK(rc == 0 && h && strstr(h, "usage: retort") && (strstr(h, "--") || strstr(h, "lora_r")), "%s --help (exit %d)", cmds[i], rc);
        free(h);
    }
    return rt_test_summary();
}
