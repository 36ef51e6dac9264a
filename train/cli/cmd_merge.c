/* retort merge --model M [--tokenizer T] --adapter DIR --out DIR
 *
 * Folds a PEFT LoRA adapter into its base (a plain HF directory, a llama2.c
 * .bin or an NF4 directory written by `retort quantize` / transformers +
 * bitsandbytes) and writes a plain HF directory (rt_merge_write_hf in
 * train/model/merge.h). */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "train/formats/fs.h"
#include "train/cli/cli.h"
#include "train/cli/commands.h"
#include "train/formats/gguf_model.h"
#include "train/model/merge.h"

static bool is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

int rt_cmd_merge(int argc, char **argv) {
    const char *model = NULL, *tokenizer = NULL, *adapter = NULL, *out = NULL;
    const rt_cli_opt opts[] = {{"--model", &model, NULL, "HF model directory, model.safetensors or llama2.c .bin"},
                               {"--tokenizer", &tokenizer, NULL, "tokenizer.json/its directory or tokenizer.bin (needed for a .bin model)"},
                               {"--adapter", &adapter, NULL, "PEFT adapter directory to apply"},
                               {"--out", &out, NULL, "output directory"}};
    const char *pos[1];
    int n_pos;
    rt_status s = rt_cli_parse(argc, argv, opts, 4, pos, 0, &n_pos);
    if (s == RT_OK && (!model || !adapter || !out))
        s = rt_errorf(RT_EINPUT, "usage: retort merge --model M [--tokenizer T] --adapter DIR --out DIR");
    size_t ml = model ? strlen(model) : 0;
    if (s == RT_OK && !tokenizer && is_file(model) && !rt_is_gguf(model) &&
        !(ml >= 12 && strcmp(model + ml - 12, ".safetensors") == 0))
        s = rt_errorf(RT_EINPUT, "%s: a llama2.c checkpoint needs --tokenizer FILE", model);
    if (s == RT_OK) s = rt_check_output_path(out, (const char *[]){model, adapter, tokenizer}, 3);
    if (s != RT_OK) return rt_cmd_fail(s);

    rt_tokenizer *tok = NULL;
    if (!tokenizer && rt_is_gguf(model)) tokenizer = model; /* its tokenizer.ggml.* metadata */
    if (tokenizer && (s = rt_tokenizer_load(tokenizer, &tok))) return rt_cmd_fail(s);
    s = rt_merge_write_hf(model, adapter, out);
    if (s == RT_OK && tok) s = rt_tokenizer_save_hf(tok, out);
    rt_tokenizer_free(tok);
    if (s != RT_OK) return rt_cmd_fail(s);
    fprintf(stderr, "merge: wrote %s (%s + %s)\n", out, model, adapter);
    return 0;
}
