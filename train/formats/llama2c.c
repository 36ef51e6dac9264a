/* retort — llama2.c checkpoint reader (legacy and version-1 .bin), mapped
 * to HF names and layout. Formats: karpathy/llama2.c run.c
 * (read_checkpoint, memory_map_weights) and export.py (legacy_export,
 * version1_export); see llama2c.h. */
#include "train/formats/llama2c.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define L2C_MAGIC 0x616b3432u /* "ak42" */
#define L2C_V1_HEADER 256

typedef struct {
    int dim, hidden, layers, heads, kv_heads, vocab, seq;
    int shared;
} l2c_params;

static rt_status l2c_check_params(const char *path, const l2c_params *p) {
    const int v[7] = {p->dim, p->hidden, p->layers, p->heads, p->kv_heads, p->vocab, p->seq};
    static const char *k[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads",
                               "vocab_size", "seq_len"};
    for (int i = 0; i < 7; i++)
        if (v[i] <= 0)
            return rt_errorf(RT_EINPUT, "%s: not a llama2.c checkpoint: header %s = %d", path, k[i], v[i]);
    if (p->dim % p->heads || (p->dim / p->heads) % 2 || p->heads % p->kv_heads)
        return rt_errorf(RT_EINPUT, "%s: not a llama2.c checkpoint: dim %d, n_heads %d, "
                         "n_kv_heads %d are inconsistent", path, p->dim, p->heads, p->kv_heads);
    return RT_OK;
}

/* Permutes rows of w [nh * hd, cols] from interleaved RoPE pairs (2i, 2i+1)
 * to rotate-half pairs (i, i + hd/2), like convert_llama_weights_to_hf.py
 * permute(): w.view(nh, hd/2, 2, cols).transpose(1, 2).reshape(nh*hd, cols). */
static void l2c_permute(float *dst, const float *src, int nh, int hd, int cols) {
    for (int h = 0; h < nh; h++)
        for (int j = 0; j < 2; j++)
            for (int i = 0; i < hd / 2; i++)
                memcpy(dst + ((size_t)h * hd + (size_t)j * (hd / 2) + i) * cols,
                       src + ((size_t)h * hd + 2 * (size_t)i + j) * cols, (size_t)cols * sizeof *dst);
}

/* Adds tensor `name` for one layer (l >= 0) or the whole model (l < 0). */
static rt_status l2c_add(rt_weights *w, const char *name, int l, const float *data, int ndim,
                         int64_t a, int64_t b) {
    char n[128];
    if (l >= 0) snprintf(n, sizeof n, "model.layers.%d.%s", l, name);
    else snprintf(n, sizeof n, "%s", name);
    const int64_t shape[2] = {a, b};
    return rt_weights_add(w, n, RT_ST_F32, ndim, shape, data, false);
}

static rt_status l2c_add_perm(rt_weights *w, const char *name, int l, const float *src, int nh,
                              int hd, int cols) {
    float *dst = malloc((size_t)nh * hd * cols * sizeof *dst);
    if (!dst) return rt_errorf(RT_EINTERNAL, "%s: out of memory", rt_weights_source(w));
    l2c_permute(dst, src, nh, hd, cols);
    char n[128];
    snprintf(n, sizeof n, "model.layers.%d.%s", l, name);
    const int64_t shape[2] = {(int64_t)nh * hd, cols};
    return rt_weights_add(w, n, RT_ST_F32, 2, shape, dst, true);
}

static rt_status l2c_build(rt_weights *w, const char *path, const float *base, size_t nfloats,
                           const l2c_params *p, int v1) {
    const uint64_t D = (uint64_t)p->dim, F = (uint64_t)p->hidden, L = (uint64_t)p->layers,
                   V = (uint64_t)p->vocab, hd = D / (uint64_t)p->heads,
                   KV = hd * (uint64_t)p->kv_heads, S = (uint64_t)p->seq;
    /* Offsets (in floats) of each section, in the file's order. */
    enum { EMB, ATT, WQ, WK, WV, WO, FFN, W1, W2, W3, FIN, FREQ, CLS, NSEC };
    const uint64_t size[NSEC] = {
        [EMB] = V * D, [ATT] = L * D, [WQ] = L * D * D, [WK] = L * KV * D, [WV] = L * KV * D,
        [WO] = L * D * D, [FFN] = L * D, [W1] = L * F * D, [W2] = L * D * F, [W3] = L * F * D,
        [FIN] = D, [FREQ] = v1 ? 0 : S * hd, /* freq_cis_real + imag: 2 * seq * hd/2 */
        [CLS] = p->shared ? 0 : V * D,
    };
    static const int legacy_order[NSEC] = {EMB, ATT, WQ, WK, WV, WO, FFN, W1, W2, W3, FIN, FREQ, CLS};
    static const int v1_order[NSEC] = {ATT, FFN, FIN, EMB, WQ, WK, WV, WO, W1, W2, W3, CLS, FREQ};
    const int *order = v1 ? v1_order : legacy_order;
    uint64_t off[NSEC], total = 0;
    for (int k = 0; k < NSEC; k++) {
        off[order[k]] = total;
        total += size[order[k]];
    }
    if (total != nfloats) {
        uint64_t hdr = v1 ? L2C_V1_HEADER : 28;
        return rt_errorf(RT_EINPUT, "%s: %s: file is %" PRIu64 " bytes, header (dim %d, hidden %d, "
                         "layers %d, heads %d, kv_heads %d, vocab %d, seq %d, %s) says %" PRIu64,
                         path, total > nfloats ? "truncated" : "wrong size", hdr + (uint64_t)nfloats * 4,
                         p->dim, p->hidden, p->layers, p->heads, p->kv_heads, p->vocab, p->seq,
                         p->shared ? "shared classifier" : "own classifier", hdr + total * 4);
    }
    const float *s[NSEC];
    for (int k = 0; k < NSEC; k++) s[k] = base + off[k];
    RT_TRY(l2c_add(w, "model.embed_tokens.weight", -1, s[EMB], 2, (int64_t)V, (int64_t)D));
    RT_TRY(l2c_add(w, "model.norm.weight", -1, s[FIN], 1, (int64_t)D, 0));
    if (!p->shared) RT_TRY(l2c_add(w, "lm_head.weight", -1, s[CLS], 2, (int64_t)V, (int64_t)D));
    for (int l = 0; l < p->layers; l++) {
        RT_TRY(l2c_add(w, "input_layernorm.weight", l, s[ATT] + l * D, 1, (int64_t)D, 0));
        RT_TRY(l2c_add(w, "post_attention_layernorm.weight", l, s[FFN] + l * D, 1, (int64_t)D, 0));
        RT_TRY(l2c_add_perm(w, "self_attn.q_proj.weight", l, s[WQ] + l * D * D, p->heads, (int)hd, p->dim));
        RT_TRY(l2c_add_perm(w, "self_attn.k_proj.weight", l, s[WK] + l * KV * D, p->kv_heads, (int)hd, p->dim));
        RT_TRY(l2c_add(w, "self_attn.v_proj.weight", l, s[WV] + l * KV * D, 2, (int64_t)KV, (int64_t)D));
        RT_TRY(l2c_add(w, "self_attn.o_proj.weight", l, s[WO] + l * D * D, 2, (int64_t)D, (int64_t)D));
        RT_TRY(l2c_add(w, "mlp.gate_proj.weight", l, s[W1] + l * F * D, 2, (int64_t)F, (int64_t)D));
        RT_TRY(l2c_add(w, "mlp.down_proj.weight", l, s[W2] + l * D * F, 2, (int64_t)D, (int64_t)F));
        RT_TRY(l2c_add(w, "mlp.up_proj.weight", l, s[W3] + l * F * D, 2, (int64_t)F, (int64_t)D));
    }
    return RT_OK;
}

static int32_t l2c_i32(const unsigned char *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t v;
    memcpy(&v, &u, 4);
    return v;
}

/* Reads the header of a mapped file; *data_off is where the floats start. */
static rt_status l2c_header(const char *path, const unsigned char *b, size_t size, l2c_params *p,
                            size_t *data_off, int *v1) {
    if (size < 28)
        return rt_errorf(RT_EINPUT, "%s: truncated: %zu bytes, shorter than a llama2.c header", path, size);
    const unsigned char *h = b;
    *v1 = (uint32_t)l2c_i32(b) == L2C_MAGIC;
    if (*v1) {
        if (size < L2C_V1_HEADER)
            return rt_errorf(RT_EINPUT, "%s: truncated: %zu bytes, shorter than the 256-byte "
                             "llama2.c v1 header", path, size);
        int version = l2c_i32(b + 4);
        if (version != 1)
            return rt_errorf(RT_EINPUT, "%s: llama2.c format version %d is not supported (only "
                             "legacy and version 1, fp32)", path, version);
        h = b + 8;
        *data_off = L2C_V1_HEADER;
    } else {
        *data_off = 28;
    }
    p->dim = l2c_i32(h);
    p->hidden = l2c_i32(h + 4);
    p->layers = l2c_i32(h + 8);
    p->heads = l2c_i32(h + 12);
    p->kv_heads = l2c_i32(h + 16);
    p->vocab = l2c_i32(h + 20);
    p->seq = l2c_i32(h + 24);
    if (*v1) {
        p->shared = b[36] != 0;
    } else {
        /* legacy: a negative vocab_size flags an unshared classifier (run.c) */
        p->shared = p->vocab > 0;
        if (p->vocab < 0 && p->vocab != INT32_MIN) p->vocab = -p->vocab;
    }
    RT_TRY(l2c_check_params(path, p));
    if ((size - *data_off) % 4)
        return rt_errorf(RT_EINPUT, "%s: size %zu is not a header plus whole fp32 values", path, size);
    return RT_OK;
}

rt_status rt_llama2c_open(const char *path, rt_weights **out, rt_llama_config *cfg) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return rt_errorf(RT_EINPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return rt_errorf(RT_EINPUT, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size < 28) {
        close(fd);
        return rt_errorf(RT_EINPUT, "%s: truncated: %zu bytes, shorter than a llama2.c header", path, size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    if (map == MAP_FAILED) return rt_errorf(RT_EINPUT, "%s: cannot mmap: %s", path, strerror(err));

    rt_weights *w;
    rt_status s = rt_weights_new(path, &w);
    if (s) { munmap(map, size); return s; }
    if ((s = rt_weights_keep_map(w, map, size))) { rt_weights_close(w); return s; }
    l2c_params p = {0};
    size_t data_off = 0;
    int v1 = 0;
    s = l2c_header(path, map, size, &p, &data_off, &v1);
    if (!s)
        s = l2c_build(w, path, (const float *)((const char *)map + data_off), (size - data_off) / 4, &p, v1);
    if (s) { rt_weights_close(w); return s; }

    rt_llama_config c = {
        .hidden_size = p.dim, .intermediate_size = p.hidden, .num_hidden_layers = p.layers,
        .num_attention_heads = p.heads, .num_key_value_heads = p.kv_heads, .vocab_size = p.vocab,
        .max_position_embeddings = p.seq, .bos_token_id = 1, .eos_token_id = 2,
        .rms_norm_eps = 1e-5f, .rope_theta = 10000.0f, .tie_word_embeddings = p.shared != 0,
        .attention_bias = false, .torch_dtype = "float32",
    };
    *cfg = c;
    *out = w;
    return RT_OK;
}
