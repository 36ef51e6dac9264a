/* A byte-level BPE tokenizer.json written as GGUF tokenizer.ggml.* metadata
 * (rt_tokenizer_gguf_meta, what `retort export gguf` writes for an HF
 * directory) reads back as the same tokenizer: Llama 3 from
 * ../shared/tokenizers encodes 8,000 characters of Moby-Dick and its
 * special tokens to the same ids from the GGUF as from tokenizer.json, with
 * the same BOS/EOS and chat template; so does a small hand-made
 * tokenizer.json with merges as pairs; a pre_tokenizer GGUF has no name for
 * is one error. (llama.cpp reading such a file: tests/interop/
 * test_smollm2_student.py.) */
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "tests/cli_util.h"
#include "train/formats/gguf.h"
#include "train/tokenizer/tokenizer.h"

/* tokenizer -> GGUF (metadata only) at path; RT_OK or the writer's error */
static rt_status write_meta(const rt_tokenizer *t, const char *path) {
    rt_gguf_writer *w = NULL;
    rt_status st = rt_gguf_writer_new(&w);
    if (st == RT_OK) st = rt_tokenizer_gguf_meta(t, w);
    if (st == RT_OK) st = rt_gguf_write(w, path);
    rt_gguf_writer_free(w);
    return st;
}

static void same_ids(const rt_tokenizer *a, const rt_tokenizer *b, const char *text, size_t len, bool bos,
                     const char *what) {
    int32_t *ia = NULL, *ib = NULL;
    size_t na = 0, nb = 0;
    CHECK(rt_tokenizer_encode(a, text, len, bos, &ia, &na) == RT_OK &&
              rt_tokenizer_encode(b, text, len, bos, &ib, &nb) == RT_OK,
          "%s: encode: %s", what, rt_error_message());
    CHECK(na > 0 && rt_same_ids(ib, nb, ia, na, what), "%s (%zu ids)", what, na);
    free(ia), free(ib);
}

static void round_trip(const char *name, const char *moby, size_t n) {
    char src[600], out[700];
    snprintf(src, sizeof src, "%s", rt_test_shared(name));
    snprintf(out, sizeof out, "%s", rt_tmp(strrchr(name, '/') + 1));
    strcat(out, ".gguf");
    rt_tokenizer *a = NULL, *b = NULL;
    CHECK(rt_tokenizer_load(src, &a) == RT_OK, "load %s: %s", src, rt_error_message());
    if (!a) return;
    CHECK(write_meta(a, out) == RT_OK, "%s as GGUF metadata: %s", name, rt_error_message());
    CHECK(rt_tokenizer_load(out, &b) == RT_OK, "load %s: %s", out, rt_error_message());
    if (b) {
        CHECK(rt_tokenizer_vocab_size(a) == rt_tokenizer_vocab_size(b) && rt_tokenizer_bos(a) == rt_tokenizer_bos(b) &&
                  rt_tokenizer_eos(a) == rt_tokenizer_eos(b) && rt_tokenizer_adds_bos(a) == rt_tokenizer_adds_bos(b),
              "%s: vocabulary size, BOS/EOS, add_bos", name);
        const char *ta = rt_tokenizer_chat_template(a), *tb = rt_tokenizer_chat_template(b);
        CHECK((!ta && !tb) || (ta && tb && !strcmp(ta, tb)), "%s: chat template", name);
        same_ids(a, b, moby, n, true, name);
        char buf[64];
        const char *bos = rt_tokenizer_piece(a, -1, rt_tokenizer_bos(a), buf);
        char sp[200];
        snprintf(sp, sizeof sp, "%s Hello 12345 world\n\n  tabs\t!", bos);
        same_ids(a, b, sp, strlen(sp), false, "special token and digits");
    }
    rt_tokenizer_free(a);
    rt_tokenizer_free(b);
}

/* Hand-made: byte-level pieces ("Ġ" is the space), merges as [a, b] pairs,
 * a special added token. */
static const char *small_json(const char *pre) {
    static char buf[1024];
    snprintf(buf, sizeof buf,
             "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":5,\"content\":\"<s>\",\"single_word\":false,"
             "\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}],"
             "\"normalizer\":null,\"pre_tokenizer\":%s,\"post_processor\":null,"
             "\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true},"
             "\"model\":{\"type\":\"BPE\",\"byte_fallback\":false,\"vocab\":{\"a\":0,\"b\":1,\"\\u0120\":2,"
             "\"ab\":3,\"\\u0120ab\":4},\"merges\":[[\"a\",\"b\"],[\"\\u0120\",\"ab\"]]}}",
             pre);
    return buf;
}

static void test_small(void) {
    char p[700], out[700];
    snprintf(p, sizeof p, "%s", rt_tmp("small-bpe"));
    mkdir(p, 0755);
    strcat(p, "/tokenizer.json");
    const char *byte_level = "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}";
    const char *j = small_json(byte_level);
    rt_spit(p, j, strlen(j));
    rt_tokenizer *a = NULL, *b = NULL;
    CHECK(rt_tokenizer_load(p, &a) == RT_OK, "load %s: %s", p, rt_error_message());
    if (!a) return;
    snprintf(out, sizeof out, "%s", rt_tmp("small-bpe.gguf"));
    CHECK(write_meta(a, out) == RT_OK, "small tokenizer.json as GGUF: %s", rt_error_message());
    CHECK(rt_tokenizer_load(out, &b) == RT_OK, "load %s: %s", out, rt_error_message());
    if (b) {
        CHECK(rt_tokenizer_vocab_size(b) == 6, "6 ids (got %d)", rt_tokenizer_vocab_size(b));
        const char *s = "ab ab<s>ab";
        const int32_t want[] = {3, 4, 5, 3};
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK(rt_tokenizer_encode(b, s, strlen(s), false, &ids, &n) == RT_OK &&
                  rt_same_ids(ids, n, want, 4, "merges given as pairs"),
              "small BPE from GGUF");
        free(ids);
        same_ids(a, b, s, strlen(s), false, "small BPE");
    }
    rt_tokenizer_free(a);
    rt_tokenizer_free(b);
    /* ByteLevel with add_prefix_space: no tokenizer.ggml.pre says that */
    j = small_json("{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true}");
    rt_spit(p, j, strlen(j));
    a = NULL;
    CHECK(rt_tokenizer_load(p, &a) == RT_OK, "load %s: %s", p, rt_error_message());
    if (a) {
        rt_status st = write_meta(a, rt_tmp("small-bpe-2.gguf"));
        CHECK(st == RT_EINPUT && strstr(rt_error_message(), "tokenizer.ggml.pre"),
              "unnamed pre_tokenizer: %d %s", st, rt_error_message());
    }
    rt_tokenizer_free(a);
}

int main(void) {
    size_t n = 0;
    char *moby = rt_slurp(rt_test_shared("data/moby-dick.txt"), &n);
    CHECK(moby != NULL, "moby-dick.txt");
    if (moby) {
        n = n > 8000 ? 8000 : n;
        while (n && (moby[n] & 0xc0) == 0x80) n--; /* whole UTF-8 characters */
        round_trip("tokenizers/llama3", moby, n);
    }
    test_small();
    free(moby);
    return rt_test_summary();
}
