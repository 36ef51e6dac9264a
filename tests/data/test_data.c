/* Tests for train/data/data.c + train/data/data_load.c with the stories260K tokenizer,
 * the shared data files and small files written here. References: the
 * tokenizer's own encoding of the same text, the Stanford Alpaca template
 * written out literally, the ORDER formula of data.h evaluated by hand, and
 * the examples themselves (packing must neither lose nor duplicate one). */
#include "train/data/data.h"

#include <stdint.h>
#include <string.h>

#include "tests/cli_util.h"

static const rt_tokenizer *tok;
static char files[32][512];
static int n_files;

static const char *write_tmp(const char *name, const char *data, size_t len) {
    char *p = files[n_files++ % 32];
    snprintf(p, 512, "%s/%s", rt_test_tmpdir(), name);
    FILE *f = fopen(p, "wb");
    if (!f) { perror(p); exit(1); }
    fwrite(data, 1, len, f);
    fclose(f);
    return p;
}
static const char *write_str(const char *name, const char *s) { return write_tmp(name, s, strlen(s)); }

/* A recipe with one dataset (YAML flow text for `datasets`). */
static void recipe(rt_recipe *r, const char *path, const char *type, int seq_len, double val) {
    char buf[1200];
    rt_recipe_init(r);
    snprintf(buf, sizeof buf, "datasets=[{path: '%s', type: %s}]", path, type);
    if (rt_recipe_set(r, buf) != RT_OK) { fprintf(stderr, "%s\n", rt_error_message()); exit(1); }
    r->sequence_len = seq_len;
    r->val_set_size = val;
}

static rt_status load(const rt_recipe *r, rt_dataset **tr, rt_dataset **va) {
    rt_error_clear();
    return rt_data_load(r, tok, tr, va);
}

static int32_t *encode(const char *s, size_t len, bool bos, size_t *n) {
    int32_t *ids = NULL;
    if (rt_tokenizer_encode(tok, s, len, bos, &ids, n) != RT_OK) { fprintf(stderr, "encode\n"); exit(1); }
    return ids;
}

static char *decode(const int32_t *ids, size_t n) {
    char *s = NULL;
    if (rt_tokenizer_decode(tok, ids, n, &s) != RT_OK) { fprintf(stderr, "decode\n"); exit(1); }
    return s;
}

static uint64_t fnv(const int32_t *v, int64_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < 4; k++) h = (h ^ (((uint32_t)v[i] >> (8 * k)) & 0xff)) * 1099511628211ULL;
    return h ^ (uint64_t)n;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Appends to h[] the hash of every example (segment) of batch line b:
 * its ids plus, when it runs to the end of the row, the last label (the
 * example's final token is then only a label). */
static int segment_hashes(const rt_batch *bt, int b, uint64_t *h) {
    const int32_t *ids = bt->ids + b * bt->T, *lab = bt->labels + b * bt->T, *seg = bt->seg + b * bt->T;
    int n = 0, t = 0, T = bt->T;
    int32_t tmp[4096];
    while (t < T && seg[t] >= 0) {
        int s = t, k = 0;
        while (t < T && seg[t] == seg[s]) tmp[k++] = ids[t++];
        if (t == T && lab[T - 1] != RT_LABEL_IGNORE) tmp[k++] = lab[T - 1];
        h[n++] = fnv(tmp, k);
    }
    return n;
}

/* ---- text: every token after the first is a target exactly once ---------- */
static void test_text_windows(void) {
    const char *path = rt_test_shared("data/moby-dick.txt");
    size_t len, n;
    char *text = rt_slurp(path, &len);
    if (!text) { SKIP("%s missing", path); return; }
    int32_t *ref = encode(text, len, true, &n);
    free(text);
    rt_recipe r;
    recipe(&r, path, "text", 256, 0);
    rt_dataset *tr, *va;
    CHECK(load(&r, &tr, &va) == RT_OK, "%s", rt_error_message());
    int64_t T = 256, want_rows = ((int64_t)n - 1 + T - 1) / T;
    CHECK(rt_dataset_rows(tr) == want_rows, "rows %lld want %lld", (long long)rt_dataset_rows(tr),
          (long long)want_rows);
    CHECK(rt_dataset_rows(va) == 0, "no val");
    CHECK(rt_dataset_targets(tr) == (int64_t)n - 1, "targets %lld want %zu", (long long)rt_dataset_targets(tr), n - 1);
    rt_batch b;
    rt_batch_alloc(&b, 8, 256);
    size_t next = 1; /* the next stream token expected as a target */
    bool ids_ok = true, lab_ok = true, pos_ok = true;
    for (int64_t row = 0; row < rt_dataset_rows(tr); row += 8) {
        rt_data_val_batch(tr, row, &b);
        for (int i = 0; i < 8 && row + i < rt_dataset_rows(tr); i++) {
            size_t start = (size_t)(row + i) * 256;
            for (int t = 0; t < 256; t++) {
                int k = i * 256 + t;
                if (start + t < n) {
                    ids_ok &= b.ids[k] == ref[start + t] && b.seg[k] == 0;
                    pos_ok &= b.pos[k] == t;
                } else
                    ids_ok &= b.seg[k] == -1 && b.ids[k] == 0;
                if (b.labels[k] != RT_LABEL_IGNORE) {
                    lab_ok &= next < n && b.labels[k] == ref[next] && start + t + 1 == next;
                    next++;
                }
            }
        }
    }
    CHECK(ids_ok && pos_ok, "window ids/pos follow the stream");
    CHECK(lab_ok && next == n, "targets are the stream once each (%zu of %zu)", next, n);
    rt_batch_free(&b);
    rt_dataset_free(tr), rt_dataset_free(va), rt_recipe_free(&r);
    free(ref);

    /* hand case: 5 tokens "BOS a b c d"-like with T = 2 gives windows of 3, 3
     * tokens -> [0,3) [2,5); T = 4 gives one window [0,5). */
    const char *small = write_str("small.txt", "abcd");
    size_t ns;
    int32_t *sref = encode("abcd", 4, true, &ns);
    for (int T2 = 1; T2 <= 5; T2++) {
        recipe(&r, small, "text", T2, 0);
        CHECK(load(&r, &tr, &va) == RT_OK, "%s", rt_error_message());
        int64_t want = ((int64_t)ns - 1 + T2 - 1) / T2;
        CHECK(rt_dataset_examples(tr) == want, "T %d: %lld windows want %lld", T2,
              (long long)rt_dataset_examples(tr), (long long)want);
        const int32_t *tk;
        const uint8_t *tg;
        int64_t m;
        rt_dataset_example(tr, want - 1, &tk, &tg, &m);
        CHECK(m >= 2 && tk[m - 1] == sref[ns - 1] && tg[0] == 0 && tg[m - 1] == 1, "last window");
        rt_dataset_free(tr), rt_dataset_free(va), rt_recipe_free(&r);
    }
    free(sref);
}

/* ---- jsonl ------------------------------------------------------------------ */
static void test_jsonl(void) {
    /* hand-made: 2 records, one longer than a window, one blank line, one empty text */
    const char *p = write_str("two.jsonl", "{\"text\": \"Once upon a time there was a cat.\", \"x\": 1}\n"
                                           "\n{\"text\": \"\"}\n{\"text\": \"Hi\"}\n");
    rt_recipe r;
    recipe(&r, p, "jsonl", 8, 0);
    rt_dataset *tr, *va;
    CHECK(load(&r, &tr, &va) == RT_OK, "%s", rt_error_message());
    size_t n1, n2;
    int32_t *a = encode("Once upon a time there was a cat.", strlen("Once upon a time there was a cat."), true, &n1);
    int32_t *c = encode("Hi", 2, true, &n2);
    n1++, n2++; /* + EOS */
    int64_t w1 = ((int64_t)n1 - 1 + 7) / 8;
    CHECK(rt_dataset_examples(tr) == w1 + 1, "examples %lld want %lld", (long long)rt_dataset_examples(tr),
          (long long)w1 + 1);
    CHECK(rt_dataset_targets(tr) == (int64_t)(n1 - 1 + n2 - 1), "targets");
    const int32_t *tk;
    const uint8_t *tg;
    int64_t m;
    rt_dataset_example(tr, 0, &tk, &tg, &m);
    CHECK(m == 9 && tk[0] == rt_tokenizer_bos(tok) && !memcmp(tk, a, 9 * sizeof *tk), "first window");
    rt_dataset_example(tr, w1, &tk, &tg, &m);
    CHECK(m == (int64_t)n2 && !memcmp(tk, c, (n2 - 1) * sizeof *tk) && tk[m - 1] == rt_tokenizer_eos(tok),
          "BOS Hi EOS");
    rt_dataset_example(tr, w1 - 1, &tk, &tg, &m);
    CHECK(tk[m - 1] == rt_tokenizer_eos(tok), "long record ends with EOS");
    free(a), free(c);
    rt_dataset_free(tr), rt_dataset_free(va), rt_recipe_free(&r);

    /* the real file: 233 addresses -> 233 windows starting with BOS and 233 ending with EOS */
    const char *path = rt_test_shared("data/sotu.jsonl");
    FILE *f = fopen(path, "rb");
    if (!f) { SKIP("%s missing", path); return; }
    fclose(f);
    recipe(&r, path, "jsonl", 1024, 0);
    CHECK(load(&r, &tr, &va) == RT_OK, "%s", rt_error_message());
    int64_t bos = 0, eos = 0;
    for (int64_t i = 0; i < rt_dataset_examples(tr); i++) {
        rt_dataset_example(tr, i, &tk, &tg, &m);
        bos += tk[0] == rt_tokenizer_bos(tok);
        eos += tk[m - 1] == rt_tokenizer_eos(tok);
    }
    CHECK(bos == 233 && eos == 233, "records: %lld BOS, %lld EOS", (long long)bos, (long long)eos);
    rt_dataset_example(tr, 0, &tk, &tg, &m);
    char *s = decode(tk, 12);
    CHECK(!strncmp(s, "Fellow-Citizens of the Senate", 29 < strlen(s) ? 29 : strlen(s)) && strlen(s) > 10,
          "first window decodes to the 1790 address: '%s'", s);
    free(s);
    rt_dataset_free(tr), rt_dataset_free(va), rt_recipe_free(&r);
}

/* ---- alpaca ------------------------------------------------------------------- */
static const char WASHINGTON_PROMPT[] =
    "Below is an instruction that describes a task. Write a response that appropriately completes "
    "the request.\n\n### Instruction:\nWrite the opening of the State of the Union address that "
    "George Washington gave in 1790.\n\n### Response:\n";

/* Checks example e: BOS + prompt (no targets) + output + EOS (targets). */
static void check_alpaca_example(const rt_dataset *d, int64_t e, const char *prompt, const char *output) {
    const int32_t *tk;
    const uint8_t *tg;
    int64_t m, k = 1;
    rt_dataset_example(d, e, &tk, &tg, &m);
    while (k < m && !tg[k]) k++;
    bool flags = tk[0] == rt_tokenizer_bos(tok) && tk[m - 1] == rt_tokenizer_eos(tok);
    for (int64_t j = k; j < m; j++) flags &= tg[j] == 1;
    CHECK(flags, "BOS first, EOS last, every token after the prompt a target");
    char *ps = decode(tk + 1, (size_t)(k - 1)), *rs = decode(tk + k, (size_t)(m - 1 - k));
    CHECK(!strcmp(ps, prompt), "prompt tokens render the template:\n'%s'\nvs\n'%s'", ps, prompt);
    CHECK(!strcmp(rs, output), "response tokens are the output: '%s'", rs);
    size_t np, no;
    int32_t *pi = encode(prompt, strlen(prompt), true, &np), *oi = encode(output, strlen(output), false, &no);
    CHECK((int64_t)np == k && (int64_t)(np + no + 1) == m && !memcmp(pi, tk, np * 4) && !memcmp(oi, tk + k, no * 4),
          "prompt and response encoded separately (%lld tokens, %zu + %zu + 1)", (long long)m, np, no);
    free(pi), free(oi), free(ps), free(rs);
}

static void test_alpaca(void) {
    char *lit = NULL;
    rt_data_alpaca_prompt("Write the opening of the State of the Union address that George Washington gave in 1790.",
                          "", &lit);
    CHECK(lit && !strcmp(lit, WASHINGTON_PROMPT), "no-input template");
    free(lit);
    rt_data_alpaca_prompt("Sum.", "1 2", &lit);
    CHECK(lit && !strcmp(lit, "Below is an instruction that describes a task, paired with an input that "
                              "provides further context. Write a response that appropriately completes the "
                              "request.\n\n### Instruction:\nSum.\n\n### Input:\n1 2\n\n### Response:\n"),
          "input template");
    free(lit);

    const char *path = rt_test_shared("data/sotu-openings.alpaca.jsonl");
    size_t len;
    char *text = rt_slurp(path, &len);
    if (!text) { SKIP("%s missing", path); return; }
    rt_recipe r;
    recipe(&r, path, "alpaca", 1024, 0);
    rt_dataset *tr, *va;
    CHECK(load(&r, &tr, &va) == RT_OK, "%s", rt_error_message());
    CHECK(rt_dataset_examples(tr) == 225, "225 records: %lld", (long long)rt_dataset_examples(tr));
    /* record 0's output, straight from the file (no JSON escapes in it) */
    char *o = strstr(text, "\"output\": \"") + 11;
    *strchr(o, '"') = 0;
    check_alpaca_example(tr, 0, WASHINGTON_PROMPT, o);
    /* batch labels: -100 over the prompt, the next token over the response */
    rt_batch b;
    rt_batch_alloc(&b, 1, 1024);
    rt_data_val_batch(tr, 0, &b);
    const int32_t *tk;
    const uint8_t *tg;
    int64_t m, k = 1;
    rt_dataset_example(tr, 0, &tk, &tg, &m);
    while (!tg[k]) k++;
    bool ok = b.n_targets == m - k;
    for (int64_t t = 0; t < 1024; t++)
        ok &= b.labels[t] == (t >= k - 1 && t < m - 1 ? tk[t + 1] : RT_LABEL_IGNORE);
    CHECK(ok, "labels: %lld prompt positions ignored, %lld targets", (long long)k - 1, (long long)b.n_targets);
    rt_batch_free(&b);
    rt_dataset_free(tr), rt_dataset_free(va), rt_recipe_free(&r);
    free(text);

    /* hand-made: with input, missing input, and truncation to T + 1 */
    const char *p = write_str("a.alpaca.jsonl",
                              "{\"instruction\": \"Add the numbers.\", \"input\": \"2 and 3\", \"output\": \"5\"}\n"
                              "{\"instruction\": \"Say hi.\", \"output\": \"Hi there, friend.\"}\n");
    recipe(&r, p, "alpaca", 512, 0);
    CHECK(load(&r, &tr, &va) == RT_OK, "%s", rt_error_message());
    check_alpaca_example(tr, 0,
                         "Below is an instruction that describes a task, paired with an input that provides "
                         "further context. Write a response that appropriately completes the request.\n\n"
                         "### Instruction:\nAdd the numbers.\n\n### Input:\n2 and 3\n\n### Response:\n",
                         "5");
    check_alpaca_example(tr, 1,
                         "Below is an instruction that describes a task. Write a response that appropriately "
                         "completes the request.\n\n### Instruction:\nSay hi.\n\n### Response:\n",
                         "Hi there, friend.");
    rt_dataset_example(tr, 1, &tk, &tg, &m);
    k = 1;
    while (!tg[k]) k++;
    int32_t hi[512];
    memcpy(hi, tk, (size_t)m * 4);
    rt_dataset_free(tr), rt_dataset_free(va), rt_recipe_free(&r);
    /* T = k + 2: BOS + prompt (k tokens) + 3 response tokens = T + 1 */
    recipe(&r, p, "alpaca", (int)k + 2, 0);
    CHECK(load(&r, &tr, &va) == RT_OK, "%s", rt_error_message());
    const int32_t *tk2;
    int64_t m2;
    CHECK(rt_dataset_examples(tr) == 1, "the long input prompt is dropped");
    rt_dataset_example(tr, 0, &tk2, &tg, &m2);
    CHECK(m2 == k + 3 && !memcmp(tk2, hi, (size_t)m2 * 4) && tg[k] && tg[k + 2], "truncated to T + 1 = %lld",
          (long long)m2);
    rt_dataset_free(tr), rt_dataset_free(va), rt_recipe_free(&r);
}

/* ---- packing ------------------------------------------------------------------ */
static const char *many_lines(const char *name, int n) {
    static char buf[16384];
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        at += (size_t)snprintf(buf + at, sizeof buf - at, "{\"text\": \"Line %d:", i);
        for (int w = 0; w < (i * 7) % 5; w++) at += (size_t)snprintf(buf + at, sizeof buf - at, " w%d", w);
        at += (size_t)snprintf(buf + at, sizeof buf - at, "\"}\n");
    }
    return write_tmp(name, buf, at);
}

static void test_packing(void) {
    const char *p = many_lines("pack.jsonl", 40);
    rt_recipe r;
    recipe(&r, p, "jsonl", 48, 0);
    r.sample_packing = true;
    rt_dataset *tr, *va, *ref, *rva;
    CHECK(load(&r, &tr, &va) == RT_OK, "%s", rt_error_message());
    r.sample_packing = false;
    CHECK(load(&r, &ref, &rva) == RT_OK, "%s", rt_error_message());
    int64_t ne = rt_dataset_examples(tr), nr = rt_dataset_rows(tr);
    CHECK(ne == 40 && rt_dataset_examples(ref) == 40 && rt_dataset_rows(ref) == 40, "40 examples");
    CHECK(nr < ne / 2, "packed into %lld rows", (long long)nr);
    CHECK(rt_dataset_targets(tr) == rt_dataset_targets(ref), "same targets packed or not");
    uint64_t want[64], got[64 * 2];
    for (int64_t e = 0; e < ne; e++) {
        const int32_t *tk;
        const uint8_t *tg;
        int64_t m;
        rt_dataset_example(ref, e, &tk, &tg, &m);
        want[e] = fnv(tk, m);
    }
    qsort(want, (size_t)ne, 8, cmp_u64);
    rt_data_plan plan = {1, 1, 1, 0, 42};
    rt_batch b;
    rt_batch_alloc(&b, 1, 48);
    bool seg_ok = true, pos_ok = true, lab_ok = true, pad_ok = true;
    int64_t sum_targets = 0;
    for (int epoch = 0; epoch < 2; epoch++) {
        int ng = 0;
        for (int64_t s = epoch * nr; s < (epoch + 1) * nr; s++) {
            CHECK(rt_data_train_batch(tr, &plan, s, 0, &b) == RT_OK, "%s", rt_error_message());
            sum_targets += b.n_targets;
            for (int t = 0; t < 48; t++) {
                if (b.seg[t] < 0) {
                    pad_ok &= b.ids[t] == 0 && b.pos[t] == 0 && b.labels[t] == RT_LABEL_IGNORE &&
                              (t == 47 || b.seg[t + 1] == -1);
                    continue;
                }
                bool first = t == 0 || b.seg[t] != b.seg[t - 1];
                seg_ok &= t == 0 ? b.seg[0] == 0 : (first ? b.seg[t] == b.seg[t - 1] + 1 : true);
                pos_ok &= first ? b.pos[t] == 0 : b.pos[t] == b.pos[t - 1] + 1;
                if (b.labels[t] != RT_LABEL_IGNORE && t + 1 < 48)
                    lab_ok &= b.seg[t + 1] == b.seg[t] && b.ids[t + 1] == b.labels[t];
            }
            ng += segment_hashes(&b, 0, got + ng);
        }
        qsort(got, (size_t)ng, 8, cmp_u64);
        CHECK(ng == ne && !memcmp(got, want, (size_t)ne * 8), "epoch %d: every example once (%d seen)", epoch, ng);
    }
    CHECK(seg_ok && pos_ok && pad_ok, "segments count up, positions restart, padding seg -1");
    CHECK(lab_ok, "no label crosses a segment");
    CHECK(sum_targets == 2 * rt_dataset_targets(tr), "two epochs give every target twice");
    rt_batch_free(&b);
    rt_dataset_free(tr), rt_dataset_free(va), rt_dataset_free(ref), rt_dataset_free(rva);
    rt_recipe_free(&r);
}

/* ---- order across ranks and accumulation ----------------------------------------- */
static bool same_batch(const rt_batch *a, const rt_batch *b) {
    size_t n = (size_t)a->B * a->T * 4;
    return a->B == b->B && !memcmp(a->ids, b->ids, n) && !memcmp(a->labels, b->labels, n) &&
           !memcmp(a->pos, b->pos, n) && !memcmp(a->seg, b->seg, n) && a->n_targets == b->n_targets;
}

static void test_order(void) {
    const char *p = many_lines("order.jsonl", 23);
    rt_recipe r;
    recipe(&r, p, "jsonl", 32, 0);
    rt_dataset *tr, *va;
    CHECK(load(&r, &tr, &va) == RT_OK, "%s", rt_error_message());
    int64_t nr = rt_dataset_rows(tr);
    CHECK(nr == 23, "23 rows");
    rt_data_plan one = {2, 2, 1, 0, 7}, two0 = {2, 1, 2, 0, 7}, two1 = {2, 1, 2, 1, 7};
    rt_data_plan single = {1, 1, 1, 0, 7};
    rt_batch a, b, c;
    rt_batch_alloc(&a, 2, 32), rt_batch_alloc(&b, 2, 32), rt_batch_alloc(&c, 1, 32);
    bool same = true, formula = true, tsum = true;
    for (int64_t s = 0; s < 20; s++) { /* 80 samples: crosses 3 epoch boundaries */
        int64_t sum = 0;
        for (int m = 0; m < 2; m++) {
            rt_data_train_batch(tr, &one, s, m, &a);
            rt_data_train_batch(tr, m ? &two1 : &two0, s, 0, &b);
            same &= same_batch(&a, &b);
            sum += b.n_targets;
            /* sample i of micro m, rank 0, G = 4: stream position 4s + 2m + i */
            for (int i = 0; i < 2; i++) {
                rt_data_train_batch(tr, &single, 4 * s + 2 * m + i, 0, &c);
                formula &= !memcmp(c.ids, a.ids + i * 32, 32 * 4) && !memcmp(c.labels, a.labels + i * 32, 32 * 4);
            }
        }
        /* world 2, accum 2, B 1, rank 1: micro m is position 4s + 2m + 1 */
        rt_data_plan w2a2 = {1, 2, 2, 1, 7};
        for (int m = 0; m < 2; m++) {
            rt_batch d;
            rt_batch_alloc(&d, 1, 32);
            rt_data_train_batch(tr, &w2a2, s, m, &d);
            rt_data_train_batch(tr, &single, 4 * s + 2 * m + 1, 0, &c);
            formula &= same_batch(&c, &d);
            rt_batch_free(&d);
        }
        tsum &= rt_data_step_targets(tr, &one, s) == sum && rt_data_step_targets(tr, &two0, s) == sum &&
                rt_data_step_targets(tr, &two1, s) == sum;
    }
    CHECK(same, "(world 1, accum 2) and (world 2, accum 1) see the same samples");
    CHECK(formula, "stream position s*G + (m*W + r)*B + i");
    CHECK(tsum, "step targets = sum over micro-batches and ranks");
    /* epochs are permutations of the rows, and differ from each other */
    uint64_t rows[23], ep[2][23];
    for (int64_t i = 0; i < 23; i++) {
        rt_data_val_batch(tr, i, &c);
        rows[i] = fnv(c.ids, 32);
    }
    for (int e = 0; e < 2; e++)
        for (int64_t i = 0; i < 23; i++) {
            rt_data_train_batch(tr, &single, e * 23 + i, 0, &c);
            ep[e][i] = fnv(c.ids, 32);
        }
    CHECK(memcmp(ep[0], ep[1], sizeof ep[0]) != 0 && memcmp(ep[0], rows, sizeof rows) != 0, "shuffled per epoch");
    qsort(rows, 23, 8, cmp_u64), qsort(ep[0], 23, 8, cmp_u64), qsort(ep[1], 23, 8, cmp_u64);
    CHECK(!memcmp(ep[0], rows, sizeof rows) && !memcmp(ep[1], rows, sizeof rows), "each epoch is a permutation");
    /* total steps: ceil(epochs * rows / G) */
    CHECK(rt_data_total_steps(tr, &one, 1, -1) == 6, "ceil(23/4) = 6");
    CHECK(rt_data_total_steps(tr, &one, 2, -1) == 12, "ceil(46/4) = 12");
    CHECK(rt_data_total_steps(tr, &one, 0.5, -1) == 3, "ceil(11.5/4) = 3");
    CHECK(rt_data_total_steps(tr, &single, 3, 0) == 69, "3 * 23");
    CHECK(rt_data_total_steps(tr, &one, 2, 5) == 5, "max_steps wins");
    /* shape and plan errors */
    rt_error_clear();
    CHECK(rt_data_train_batch(tr, &single, 0, 0, &a) == RT_EINTERNAL && strstr(rt_error_message(), "batch"),
          "batch shape mismatch: %s", rt_error_message());
    CHECK(rt_data_train_batch(tr, &one, 0, 2, &a) == RT_EINTERNAL, "micro out of range");
    /* val batch beyond the end is padding */
    rt_data_val_batch(tr, 22, &a);
    CHECK(a.seg[0] == 0 && a.seg[32] == -1 && a.labels[32] == RT_LABEL_IGNORE && a.ids[40] == 0, "tail padding");
    rt_batch_free(&a), rt_batch_free(&b), rt_batch_free(&c);
    rt_dataset_free(tr), rt_dataset_free(va), rt_recipe_free(&r);
}

/* ---- validation split -------------------------------------------------------------- */
static int example_hashes(const rt_dataset *d, uint64_t *h) {
    for (int64_t e = 0; e < rt_dataset_examples(d); e++) {
        const int32_t *tk;
        const uint8_t *tg;
        int64_t m;
        rt_dataset_example(d, e, &tk, &tg, &m);
        h[e] = fnv(tk, m);
    }
    return (int)rt_dataset_examples(d);
}

static void test_split(void) {
    const char *p = many_lines("split.jsonl", 20);
    rt_recipe r;
    rt_dataset *all, *none, *tr, *va, *tr2, *va2;
    recipe(&r, p, "jsonl", 64, 0);
    CHECK(load(&r, &all, &none) == RT_OK, "%s", rt_error_message());
    rt_recipe_free(&r);
    recipe(&r, p, "jsonl", 64, 0.25);
    CHECK(load(&r, &tr, &va) == RT_OK && load(&r, &tr2, &va2) == RT_OK, "%s", rt_error_message());
    CHECK(rt_dataset_examples(va) == 5 && rt_dataset_examples(tr) == 15, "ceil(0.25 * 20) = 5 held out");
    uint64_t h_all[20], h_tr[20], h_va[20], h_va2[20], u[20];
    example_hashes(all, h_all);
    int ntr = example_hashes(tr, h_tr), nva = example_hashes(va, h_va);
    example_hashes(va2, h_va2);
    CHECK(!memcmp(h_va, h_va2, (size_t)nva * 8), "same split on every load");
    memcpy(u, h_tr, (size_t)ntr * 8), memcpy(u + ntr, h_va, (size_t)nva * 8);
    qsort(u, 20, 8, cmp_u64), qsort(h_all, 20, 8, cmp_u64);
    bool distinct = true;
    for (int i = 1; i < 20; i++) distinct &= u[i] != u[i - 1];
    CHECK(distinct && !memcmp(u, h_all, sizeof u), "train and val are disjoint and cover every example");
    rt_dataset_free(tr), rt_dataset_free(va), rt_dataset_free(tr2), rt_dataset_free(va2);
    r.val_set_size = 3;
    CHECK(load(&r, &tr, &va) == RT_OK && rt_dataset_examples(va) == 3, "count 3");
    rt_dataset_free(tr), rt_dataset_free(va);
    r.val_set_size = 20;
    CHECK(load(&r, &tr, &va) == RT_EINPUT && strstr(rt_error_message(), "val_set_size") && !tr && !va,
          "holding out everything: %s", rt_error_message());
    rt_recipe_free(&r);
    /* test_datasets give the validation set */
    const char *q = write_str("test.jsonl", "{\"text\": \"held out\"}\n");
    recipe(&r, p, "jsonl", 64, 0);
    char buf[700];
    snprintf(buf, sizeof buf, "test_datasets=[{path: '%s', type: jsonl}]", q);
    rt_recipe_set(&r, buf);
    CHECK(load(&r, &tr, &va) == RT_OK && rt_dataset_examples(tr) == 20 && rt_dataset_examples(va) == 1,
          "test_datasets: %s", rt_error_message());
    rt_dataset_free(tr), rt_dataset_free(va), rt_recipe_free(&r);
    /* shards: 20 examples in 3 contiguous shards of 7, 7, 6 (datasets'
     * Dataset.shard(3, i, contiguous=True)); the split applies to the shard */
    uint64_t h_sh[20];
    example_hashes(all, h_all);
    const int first[3] = {0, 7, 14}, size[3] = {7, 7, 6};
    for (int i = 0; i < 3; i++) {
        recipe(&r, p, "jsonl", 64, 0);
        snprintf(buf, sizeof buf, "datasets.0.shards_idx=%d", i);
        CHECK(rt_recipe_set(&r, "datasets.0.shards=3") == RT_OK && rt_recipe_set(&r, buf) == RT_OK, "set");
        CHECK(load(&r, &tr, &va) == RT_OK && rt_dataset_examples(tr) == size[i], "shard %d: %lld examples", i,
              (long long)(tr ? rt_dataset_examples(tr) : -1));
        int nsh = example_hashes(tr, h_sh);
        CHECK(nsh == size[i] && !memcmp(h_sh, h_all + first[i], (size_t)nsh * 8), "shard %d is examples %d..%d",
              i, first[i], first[i] + size[i] - 1);
        rt_dataset_free(tr), rt_dataset_free(va), rt_recipe_free(&r);
    }
    recipe(&r, p, "jsonl", 64, 2);
    rt_recipe_set(&r, "datasets.0.shards=3");
    CHECK(load(&r, &tr, &va) == RT_OK && rt_dataset_examples(tr) == 5 && rt_dataset_examples(va) == 2,
          "val_set_size 2 of shard 0");
    rt_dataset_free(tr), rt_dataset_free(va), rt_recipe_free(&r);
    rt_dataset_free(all), rt_dataset_free(none);
}

/* ---- bad data ------------------------------------------------------------------------- */
static void expect_error(const char *name, const char *type, const char *data, size_t len, const char *want) {
    const char *p = len ? write_tmp(name, data, len) : write_str(name, data);
    rt_recipe r;
    recipe(&r, p, type, 64, 0);
    rt_dataset *tr = (rt_dataset *)1, *va = (rt_dataset *)1;
    rt_status st = load(&r, &tr, &va);
    const char *msg = rt_error_message();
    CHECK(st == RT_EINPUT && strstr(msg, name) && strstr(msg, want) && !strchr(msg, '\n') && !tr && !va,
          "%s: '%s' (want '%s')", name, msg, want);
    rt_recipe_free(&r);
}

static void test_errors(void) {
    rt_recipe r;
    recipe(&r, "/nonexistent/missing.txt", "text", 64, 0);
    rt_dataset *tr, *va;
    CHECK(load(&r, &tr, &va) == RT_EINPUT && strstr(rt_error_message(), "/nonexistent/missing.txt"),
          "missing: %s", rt_error_message());
    rt_recipe_free(&r);
    expect_error("empty.txt", "text", "", 0, "no examples");
    expect_error("empty.jsonl", "jsonl", "\n\n", 0, "no examples");
    expect_error("bad.jsonl", "jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": \"c\"\n", 0,
                 "bad.jsonl:3: malformed JSON");
    expect_error("arr.jsonl", "jsonl", "[1, 2]\n", 0, "arr.jsonl:1: malformed JSON");
    expect_error("nofield.jsonl", "jsonl", "{\"text\": \"a\"}\n{\"body\": \"b\"}\n", 0,
                 "nofield.jsonl:2: no string field \"text\"");
    expect_error("noout.alpaca.jsonl", "alpaca", "{\"instruction\": \"x\", \"input\": \"\"}\n", 0,
                 "noout.alpaca.jsonl:1: no string field \"output\"");
    expect_error("utf8.txt", "text", "hello\n\xff world", 13, "invalid UTF-8 at byte offset 6 (line 2)");
    expect_error("utf8.jsonl", "jsonl", "{\"text\": \"ok\"}\n{\"text\": \"\xc3\x28\"}\n", 30,
                 "invalid UTF-8 at byte offset 25 (line 2)");
    expect_error("surrogate.txt", "text", "ab\xed\xa0\x80", 5, "invalid UTF-8 at byte offset 2");
    expect_error("long.alpaca.jsonl", "alpaca",
                 "{\"instruction\": \"A long instruction that cannot fit in sixty four tokens of a tiny "
                 "vocabulary at all, not even close.\", \"output\": \"x\"}\n",
                 0, "no examples");
}

/* ---- texts added by the distillation code ------------------------------------------------ */
static void test_add_text(void) {
    rt_dataset *d;
    CHECK(rt_dataset_new(16, true, 3, &d) == RT_OK, "new");
    const char *s = "The little dog ran to the park and played with a red ball all day long.";
    size_t n;
    int32_t *ref = encode(s, strlen(s), true, &n);
    n++; /* EOS */
    CHECK(rt_dataset_add_text(d, tok, s, strlen(s), 16) == RT_OK, "%s", rt_error_message());
    CHECK(rt_dataset_add_text(d, tok, "Hi", 2, 16) == RT_OK, "%s", rt_error_message());
    size_t nh;
    free(encode("Hi", 2, true, &nh));
    int64_t w = ((int64_t)n - 1 + 15) / 16;
    CHECK(rt_dataset_examples(d) == w + 1 && rt_dataset_targets(d) == (int64_t)n - 1 + (int64_t)nh,
          "windows %lld want %lld", (long long)rt_dataset_examples(d), (long long)w + 1);
    CHECK(rt_dataset_rows(d) >= 1 && rt_dataset_rows(d) <= w + 1, "rows rebuilt: %lld", (long long)rt_dataset_rows(d));
    CHECK(rt_dataset_add_text(d, tok, "x", 1, 8) == RT_EINTERNAL, "seq_len mismatch");
    CHECK(rt_dataset_add_text(d, tok, "\xff", 1, 16) == RT_EINPUT && rt_dataset_examples(d) == w + 1,
          "invalid UTF-8 leaves d unchanged");
    free(ref);
    rt_dataset_free(d);
    /* a recipe whose only dataset is teacher_generate loads an empty train set */
    rt_recipe r;
    recipe(&r, "prompts.txt", "teacher_generate", 64, 0.05);
    rt_dataset *tr, *va;
    CHECK(load(&r, &tr, &va) == RT_OK && rt_dataset_rows(tr) == 0 && rt_dataset_rows(va) == 0, "%s",
          rt_error_message());
    rt_data_plan p = rt_data_plan_from_recipe(&r, 1, 0);
    CHECK(rt_data_total_steps(tr, &p, 1, -1) == 0 && rt_data_step_targets(tr, &p, 0) == 0, "empty: 0 steps");
    rt_dataset_free(tr), rt_dataset_free(va), rt_recipe_free(&r);
}

int main(void) {
    rt_tokenizer *t = NULL;
    const char *tp = rt_test_shared("models/stories260K/tok512.bin");
    if (rt_tokenizer_load(tp, &t) != RT_OK) {
        SKIP("tokenizer %s: %s", tp, rt_error_message());
        return rt_test_summary();
    }
    tok = t;
    test_text_windows();
    printf("text windows done\n");
    test_jsonl();
    printf("jsonl done\n");
    test_alpaca();
    printf("alpaca done\n");
    test_packing();
    printf("packing done\n");
    test_order();
    printf("order done\n");
    test_split();
    printf("split done\n");
    test_errors();
    printf("errors done\n");
    test_add_text();
    printf("add_text done\n");
    rt_tokenizer_free(t);
    return rt_test_summary();
}
