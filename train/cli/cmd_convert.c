/* retort convert llama2c IN.bin --tokenizer TOK.bin --out DIR  |  retort convert gguf IN.gguf --out DIR
 *
 * Writes a Hugging Face model directory: config.json, model.safetensors
 * (HF names, q/k rows in HF's rotate-half order, as
 * convert_llama_weights_to_hf.py permutes them) and the tokenizer as
 * tokenizer.json + tokenizer_config.json. */
#include <string.h>
#include <stdio.h>

#include "train/formats/fs.h"
#include "train/cli/cli.h"
#include "train/cli/commands.h"
#include "train/formats/model_file.h"

int rt_cmd_convert(int argc, char **argv) {
    const char *tokenizer = NULL, *out = NULL;
    const rt_cli_opt opts[] = {{"--tokenizer", &tokenizer, NULL, "tokenizer.json/its directory or tokenizer.bin (needed for a .bin model)"}, {"--out", &out, NULL, "output directory"}};
    const char *pos[2];
    int n_pos;
    rt_status s = rt_cli_parse(argc, argv, opts, 2, pos, 2, &n_pos);
    const bool gguf = n_pos == 2 && !strcmp(pos[0], "gguf");
    if (s == RT_OK && gguf && !tokenizer) tokenizer = pos[1]; /* its tokenizer.ggml.* metadata */
    if (s == RT_OK && (n_pos != 2 || (strcmp(pos[0], "llama2c") && !gguf)))
        s = rt_errorf(RT_EINPUT, "usage: retort convert llama2c IN.bin --tokenizer TOK.bin --out DIR\n"
                                 "       retort convert gguf IN.gguf --out DIR");
    if (s == RT_OK && (!tokenizer || !out))
        s = rt_errorf(RT_EINPUT, "convert: --tokenizer and --out are required");
    if (s == RT_OK) s = rt_check_output_path(out, (const char *[]){pos[1], tokenizer}, 2);
    if (s != RT_OK) return rt_cmd_fail(s);

    rt_weights *w = NULL;
    rt_tokenizer *tok = NULL;
    rt_llama_config cfg;
    s = rt_weights_open(pos[1], &w, &cfg);
    if (s == RT_OK) s = rt_tokenizer_load(tokenizer, &tok);
    if (s == RT_OK && rt_tokenizer_vocab_size(tok) != cfg.vocab_size)
        s = rt_errorf(RT_EINPUT, "%s: %d tokens, but %s has a vocabulary of %d", tokenizer,
                      rt_tokenizer_vocab_size(tok), pos[1], cfg.vocab_size);
    if (s == RT_OK) s = rt_weights_save_hf(w, &cfg, out);
    if (s == RT_OK) s = rt_tokenizer_save_hf(tok, out);
    rt_weights_close(w);
    rt_tokenizer_free(tok);
    if (s != RT_OK) return rt_cmd_fail(s);
    fprintf(stderr, "convert: wrote %s\n", out);
    return 0;
}
