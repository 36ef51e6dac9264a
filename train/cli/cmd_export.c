/* retort export gguf-lora --adapter DIR [--model BASE] --out FILE.gguf
 * retort export gguf --model M [--adapter DIR] [--tokenizer T.gguf] --out FILE.gguf [--type f16|q8_0|f32]
 * retort export gguf-tensors IN.gguf --out OUT.safetensors
 *
 * GGUF outputs for llama.cpp (train/formats/gguf_export.h): a PEFT adapter
 * as a llama.cpp LoRA adapter, a (merged) model. gguf-tensors writes every tensor of a GGUF file
 * dequantized to F32 (train/formats/gguf.h), under its GGUF name with the
 * shape in numpy order (ne reversed), for checking retort's dequantization
 * against gguf-py (tests/interop/test_gguf_dequant.py). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/cli/cli.h"
#include "train/cli/commands.h"
#include "train/formats/gguf.h"
#include "train/model/gguf_export.h"
#include "train/formats/safetensors.h"

static rt_status export_tensors(const char *in, const char *out) {
    rt_gguf *g;
    RT_TRY(rt_gguf_open(in, &g));
    rt_st_list l = {0};
    rt_status s = RT_OK;
    for (size_t i = 0; i < rt_gguf_tensor_count(g) && !s; i++) {
        const rt_gguf_tensor *t = rt_gguf_tensor_at(g, i);
        const int64_t n = rt_gguf_tensor_numel(t);
        float *f = malloc(n ? (size_t)n * sizeof *f : 1);
        if (!f) { s = rt_errorf(RT_EINTERNAL, "%s: out of memory", in); break; }
        if ((s = rt_st_list_own(&l, f))) break;
        if ((s = rt_ggml_dequantize(t->type, t->data, f, n))) break;
        int64_t shape[RT_GGUF_MAX_DIMS];
        for (int d = 0; d < t->n_dims; d++) shape[d] = t->ne[t->n_dims - 1 - d];
        s = rt_st_list_add(&l, t->name, RT_ST_F32, t->n_dims, shape, f);
    }
    if (!s) s = rt_st_write(out, l.t, l.n, NULL);
    rt_st_list_free(&l);
    rt_gguf_close(g);
    return s;
}

#define EXPORT_USAGE                                                                        \
    "usage: retort export gguf-lora --adapter DIR [--model BASE] --out FILE.gguf\n"          \
    "       retort export gguf --model M [--adapter DIR] [--tokenizer T.gguf] --out FILE.gguf " \
    "[--type f16|q8_0|f32]\n"                                                                 \
    "       retort export gguf-tensors IN.gguf --out OUT.safetensors"

int rt_cmd_export(int argc, char **argv) {
    const char *out = NULL, *adapter = NULL, *model = NULL, *type_s = NULL, *tokenizer = NULL;
    const rt_cli_opt opts[] = {
        {"--out", &out, NULL, "the .gguf (or .safetensors) to write"},
        {"--adapter", &adapter, NULL, "PEFT adapter directory"},
        {"--model", &model, NULL, "base model: HF directory, .gguf or llama2.c .bin"},
        {"--type", &type_s, NULL, "tensor type of a merged model: f16, q8_0 or f32"},
        {"--tokenizer", &tokenizer, NULL, "tokenizer for a llama2.c .bin"}};
    const char *pos[2];
    int n_pos = 0;
    rt_status s = rt_cli_parse(argc, argv, opts, 5, pos, 2, &n_pos);
    const char *what = n_pos >= 1 ? pos[0] : "";
    if (s == RT_OK && !out) s = rt_errorf(RT_EINPUT, EXPORT_USAGE);
    if (s == RT_OK && !strcmp(what, "gguf-tensors") && n_pos == 2) {
        s = export_tensors(pos[1], out);
    } else if (s == RT_OK && !strcmp(what, "gguf-lora") && n_pos == 1 && adapter) {
        s = rt_gguf_export_lora(adapter, model, out);
    } else if (s == RT_OK && !strcmp(what, "gguf") && n_pos == 1 && model) {
        rt_ggml_type type = RT_GGML_F16;
        if (type_s && !strcmp(type_s, "q8_0")) type = RT_GGML_Q8_0;
        else if (type_s && !strcmp(type_s, "f32")) type = RT_GGML_F32;
        else if (type_s && strcmp(type_s, "f16"))
            s = rt_errorf(RT_EINPUT, "--type: expected f16, q8_0 or f32, got '%s'", type_s);
        if (s == RT_OK) s = rt_gguf_export_model(model, adapter, tokenizer, type, out);
    } else if (s == RT_OK) {
        s = rt_errorf(RT_EINPUT, EXPORT_USAGE);
    }
    if (s != RT_OK) return rt_cmd_fail(s);
    fprintf(stderr, "export: wrote %s\n", out);
    return 0;
}
