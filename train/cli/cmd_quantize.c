/* retort quantize --model M [--tokenizer T] --out DIR [--blocksize 64] [--no-double-quant]
 *
 * Writes an NF4 model directory in bitsandbytes' layout (train/nf4_io.h)
 * and reports on stderr the storage cost of the quantized projections
 * (bits per parameter) and the model's tensor bytes before and after. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "train/formats/fs.h"
#include "train/cli/cli.h"
#include "train/cli/commands.h"
#include "train/formats/gguf_model.h"
#include "train/formats/nf4_io.h"
#include "train/tokenizer/tokenizer.h"

static bool is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

int rt_cmd_quantize(int argc, char **argv) {
    const char *model = NULL, *tokenizer = NULL, *out = NULL, *bs_s = NULL;
    bool no_dq = false;
    const rt_cli_opt opts[] = {{"--model", &model, NULL, "HF model directory, model.safetensors or llama2.c .bin"},
                               {"--tokenizer", &tokenizer, NULL, "tokenizer.json/its directory or tokenizer.bin (needed for a .bin model)"},
                               {"--out", &out, NULL, "output directory"},
                               {"--blocksize", &bs_s, NULL, "NF4 block size (power of two)"},
                               {"--no-double-quant", NULL, &no_dq, "keep absmax in f32 (no double quantization)"}};
    const char *pos[1];
    int n_pos;
    long blocksize = 64;
    rt_status s = rt_cli_parse(argc, argv, opts, 5, pos, 0, &n_pos);
    if (s == RT_OK && (!model || !out))
        s = rt_errorf(RT_EINPUT, "usage: retort quantize --model M [--tokenizer T] --out DIR "
                                 "[--blocksize 64] [--no-double-quant]");
    if (s == RT_OK && bs_s) s = rt_cli_int("--blocksize", bs_s, 32, 4096, &blocksize);
    if (s == RT_OK && (blocksize & (blocksize - 1)) != 0)
        s = rt_errorf(RT_EINPUT, "--blocksize: expected a power of two in 32..4096, got %ld", blocksize);
    /* A .bin carries no tokenizer; the output directory needs one to be usable. */
    if (s == RT_OK && !tokenizer && rt_is_gguf(model)) tokenizer = model; /* tokenizer.ggml.* */
    if (s == RT_OK && !tokenizer && is_file(model) && !ends_with(model, ".safetensors"))
        s = rt_errorf(RT_EINPUT, "%s: a llama2.c checkpoint needs --tokenizer FILE", model);
    if (s == RT_OK) s = rt_check_output_path(out, (const char *[]){model, tokenizer}, 2);
    if (s != RT_OK) return rt_cmd_fail(s);

    rt_tokenizer *tok = NULL;
    if (tokenizer && (s = rt_tokenizer_load(tokenizer, &tok))) return rt_cmd_fail(s);
    rt_nf4_stats st;
    s = rt_nf4_write_hf_stats(model, out, (int)blocksize, !no_dq, &st);
    if (s == RT_OK && tok) s = rt_tokenizer_save_hf(tok, out);
    rt_tokenizer_free(tok);
    if (s != RT_OK) return rt_cmd_fail(s);

    double bits = st.quantized_params ? 8.0 * (double)st.quantized_bytes / (double)st.quantized_params : 0;
    fprintf(stderr, "quantize: %d projections, %lld parameters, NF4 blocksize %ld%s\n",
            st.n_quantized, (long long)st.quantized_params, blocksize,
            no_dq ? "" : " with double quantization");
    fprintf(stderr, "quantize: %.4f bits per parameter (%.4f nominal, QLoRA paper)\n", bits,
            st.nominal_bits);
    fprintf(stderr, "quantize: model tensors %zu -> %zu bytes (%.2fx smaller)\n", st.bytes_before,
            st.bytes_after, st.bytes_after ? (double)st.bytes_before / (double)st.bytes_after : 0.0);
    fprintf(stderr, "quantize: wrote %s\n", out);
    return 0;
}
