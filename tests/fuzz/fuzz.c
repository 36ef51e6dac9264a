/* libFuzzer targets, one per parser of a file retort reads (issue #11 item
 * 5). One source, compiled once per target with -DFUZZ_<NAME> by
 * CMakeLists.txt when RETORT_FUZZ=ON (clang, -fsanitize=fuzzer,address,
 * undefined); scripts/fuzz.sh builds them, makes seed corpora with the
 * retort binary itself and runs each for a fixed time.
 *
 * The readers take paths, so each input is written to a file in a private
 * directory under /dev/shm (or TMPDIR) first; what is checked is that the
 * reader returns (RT_OK or an error), without a sanitizer report, a leak, a
 * timeout (-timeout=1) or more than -rss_limit_mb of memory.
 *
 * Targets: safetensors (header and tensor table), config_json,
 * adapter_config (adapter_config.json applied to stories260K),
 * tokenizer_json, tokenizer_bin, gpt2_bpe (encoder.json NUL vocab.bpe),
 * llama2c (.bin header and sizes), recipe (YAML + validation), dataset
 * (jsonl lines, tokenized), checkpoint (trainer_state-rank0.bin), gguf
 * (header, metadata and tensor infos: rt_gguf_open), teacher_cache (a
 * shard's header and payload, read against the key of a small text dataset).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/error.h"
#include "train/checkpoint.h"
#include "train/data/data.h"
#include "train/formats/gguf.h"
#include "train/formats/llama_config.h"
#include "train/formats/model_file.h"
#include "train/formats/safetensors.h"
#include "train/formats/weights.h"
#include "train/model/adapter.h"
#include "train/model/llama.h"
#include "train/recipe.h"
#include "train/teacher_cache.h"
#include "train/tokenizer/tokenizer.h"

static char dir[256];

static const char *workdir(void) {
    if (!dir[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        snprintf(dir, sizeof dir, "%s/retort-fuzz-XXXXXX", base);
        if (!mkdtemp(dir)) abort();
    }
    return dir;
}

static const char *put(const char *name, const uint8_t *data, size_t size) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", workdir(), name);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size) fwrite(data, 1, size, f);
    fclose(f);
    return path;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
#if defined(FUZZ_SAFETENSORS)
    rt_safetensors *st = NULL;
    if (rt_st_open(put("x.safetensors", data, size), &st) == RT_OK) rt_st_close(st);
#elif defined(FUZZ_CONFIG_JSON)
    rt_llama_config c;
    (void)rt_llama_config_load(put("config.json", data, size), &c);
#elif defined(FUZZ_ADAPTER_CONFIG)
    static char model[512];
    if (!model[0]) snprintf(model, sizeof model, "%s", getenv("RETORT_FUZZ_MODEL") ? getenv("RETORT_FUZZ_MODEL") : "");
    put("adapter_config.json", data, size);
    rt_llama_opts o = {.device = RT_CPU};
    rt_llama *m = NULL;
    if (model[0] && rt_llama_load(model, &o, &m) == RT_OK) {
        (void)rt_adapter_apply(m, workdir());
        rt_llama_free(m);
    }
#elif defined(FUZZ_TOKENIZER_JSON) || defined(FUZZ_TOKENIZER_BIN) || defined(FUZZ_GPT2_BPE)
#if defined(FUZZ_TOKENIZER_JSON)
    put("tokenizer.json", data, size);
    const char *path = workdir();
#elif defined(FUZZ_TOKENIZER_BIN)
    const char *path = put("tokenizer.bin", data, size);
    static char keep[512];
    snprintf(keep, sizeof keep, "%s", path);
    path = keep;
#else
    const uint8_t *nul = memchr(data, 0, size);
    size_t a = nul ? (size_t)(nul - data) : size;
    put("encoder.json", data, a);
    put("vocab.bpe", nul ? nul + 1 : data, nul ? size - a - 1 : 0);
    const char *path = workdir();
#endif
    rt_tokenizer *t = NULL;
    if (rt_tokenizer_load(path, &t) == RT_OK) {
        int32_t *ids = NULL;
        size_t n = 0;
        static const char text[] = "Call me Ishmael. Some years ago\n\xe2\x80\x94 \xf0\x9f\x90\x8b 1234";
        (void)rt_tokenizer_encode(t, text, sizeof text - 1, true, &ids, &n);
        free(ids);
        rt_tokenizer_free(t);
    }
#elif defined(FUZZ_LLAMA2C)
    rt_weights *w = NULL;
    rt_llama_config c;
    if (rt_weights_open(put("model.bin", data, size), &w, &c) == RT_OK) rt_weights_close(w);
#elif defined(FUZZ_RECIPE)
    rt_recipe r;
    if (rt_recipe_load(put("recipe.yaml", data, size), &r) == RT_OK) {
        (void)rt_recipe_validate(&r);
        rt_recipe_free(&r);
    }
#elif defined(FUZZ_DATASET)
    static rt_tokenizer *tok;
    if (!tok && rt_tokenizer_load(getenv("RETORT_FUZZ_TOKENIZER") ? getenv("RETORT_FUZZ_TOKENIZER") : "", &tok) != RT_OK)
        return 0;
    const char *path = put("data.jsonl", data, size);
    rt_recipe r;
    char kv[700];
    if (rt_recipe_init(&r) != RT_OK) return 0;
    snprintf(kv, sizeof kv, "datasets.0.path=%s", path);
    if (rt_recipe_set(&r, kv) == RT_OK && rt_recipe_set(&r, "datasets.0.type=jsonl") == RT_OK &&
        rt_recipe_set(&r, "datasets.0.field=text") == RT_OK && rt_recipe_set(&r, "sequence_len=32") == RT_OK &&
        rt_recipe_set(&r, "val_set_size=0") == RT_OK) {
        rt_dataset *tr = NULL, *va = NULL;
        if (rt_data_load(&r, tok, &tr, &va) == RT_OK) {
            rt_dataset_free(tr);
            rt_dataset_free(va);
        }
    }
    rt_recipe_free(&r);
#elif defined(FUZZ_CHECKPOINT)
    /* The sizes the seed (stories260K, lora_r 8, all-linear, 1 rank) has. */
    static float p[46272], mm[46272], v[46272];
    put("trainer_state-rank0.bin", data, size);
    rt_train_state s = {.world = 1, .rank = 0, .zero_stage = 0, .optimizer = 0, .n_params = 46272,
                        .moment_begin = 0, .moment_n = 46272, .params = p, .m = mm, .v = v};
    (void)rt_checkpoint_read_state(workdir(), &s);
#elif defined(FUZZ_GGUF)
    rt_gguf *g = NULL;
    if (rt_gguf_open(put("model.gguf", data, size), &g) == RT_OK) rt_gguf_close(g);
#elif defined(FUZZ_TEACHER_CACHE)
    /* The reader checks a shard against the key of the run's dataset: a
     * fixed 16-token text dataset, key (teacher 1, k 4, T 1), built once. */
    static rt_tokenizer *tok;
    static rt_dataset *train;
    static rt_teacher_cache_key key;
    static char cache[600];
    if (!train) {
        const char *tp = getenv("RETORT_FUZZ_TOKENIZER");
        if (!tp || rt_tokenizer_load(tp, &tok) != RT_OK) return 0;
        static const char text[] = "Call me Ishmael. Some years ago, never mind how long precisely.\n";
        char kv[700];
        snprintf(kv, sizeof kv, "datasets.0.path=%s", put("text.txt", (const uint8_t *)text, sizeof text - 1));
        rt_recipe r;
        rt_dataset *val = NULL;
        if (rt_recipe_init(&r) != RT_OK) return 0;
        bool ok = rt_recipe_set(&r, kv) == RT_OK && rt_recipe_set(&r, "datasets.0.type=text") == RT_OK &&
                  rt_recipe_set(&r, "sequence_len=16") == RT_OK && rt_recipe_set(&r, "val_set_size=0") == RT_OK &&
                  rt_data_load(&r, tok, &train, &val) == RT_OK &&
                  rt_teacher_cache_key_for(train, 1, 4, 1.0f, &key) == RT_OK;
        rt_recipe_free(&r);
        rt_dataset_free(val);
        if (!ok) return 0;
        snprintf(cache, sizeof cache, "%s/cache", workdir());
    }
    char name[64];
    snprintf(name, sizeof name, "cache/shard-%05d.rtkc", 0);
    mkdir(cache, 0755);
    put(name, data, size);
    rt_teacher_cache *c = NULL;
    rt_teacher_cache_stats st;
    if (rt_teacher_cache_open(cache, &key, NULL, train, 1, false, RT_CPU, &c, &st) == RT_OK)
        rt_teacher_cache_free(c);
#else
#error "define one FUZZ_<TARGET>"
#endif
    rt_error_clear();
    return 0;
}
